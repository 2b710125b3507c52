"""FasterRCNNDetector: object detection with torchvision's Faster R-CNN, as an estimator."""

import inspect
import numbers
import os

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted
from skorch.callbacks import Callback

from ._data import to_float
from ._docstrings import fill_doc
from ._net import Net
from ._params import (
    BOOLEAN,
    IMAGE_AUGMENTER,
    TRAINING_CONSTRAINTS,
    Interval,
    Options,
    Relation,
    TupleOf,
)
from ._torch import predict_batches
from ._training import BaseNeuralEstimator
from ._validation import (
    check_boxes,
    check_image_list,
    encode_labels,
    pad_images,
    targets_to_frame,
)
from .metrics import mean_average_precision
from .nn.backbones import build_backbone, load_weights_file
from .nn.detection import (
    PretrainedDetectionBody,
    detection_transform,
    faster_rcnn_names,
    small_cnn_body,
    torchvision_faster_rcnn,
)
from .transfer import BACKBONE_CONSTRAINTS

__all__ = ["FasterRCNNDetector"]

_POSITIVE = Interval(numbers.Real, 0, None, closed="neither")
_COUNT = [Interval(numbers.Integral, 1, None)]
_SHARE = [Interval(numbers.Real, 0, 1)]

# The training core's parameters the detector has not: its own training step
# (no accelerator), and no early stopping, whose validation loss would need
# torchvision's detection models in training mode (score() held-out images).
_NOT_DETECTION_PARAMETERS = ("accelerator", "early_stopping", "validation_fraction",
                             "n_iter_no_change")

def _is_whole_detector(backbone):
    return isinstance(backbone, str) and backbone in faster_rcnn_names()


def _default(name):
    return inspect.signature(FasterRCNNDetector.__init__).parameters[name].default


def _as_nested_tuple(value):
    return tuple(_as_nested_tuple(item) for item in value) if isinstance(
        value, (tuple, list)) else value


# What a whole torchvision detector brings along: its own anchors and weights.
_WHOLE_DETECTOR_RELATIONS = (
    Relation(("backbone", "weights"), lambda backbone, weights: (
        weights is None or _is_whole_detector(backbone)),
        "weights= loads a whole torchvision detector (backbone='fasterrcnn_...'); with "
        "another backbone it must be None (a pretrained classification backbone's weights "
        "go to backbone_weights=)."),
    Relation(("backbone", "backbone_weights"), lambda backbone, weights: (
        weights is None or not _is_whole_detector(backbone)),
        "A whole torchvision detector loads its weights, backbone included, from weights=; "
        "backbone_weights must be None with one."),
    Relation(("backbone", "anchor_sizes", "aspect_ratios"), lambda backbone, sizes, ratios: (
        not _is_whole_detector(backbone)
        or (_as_nested_tuple(sizes) == _default("anchor_sizes")
            and _as_nested_tuple(ratios) == _default("aspect_ratios"))),
        "A whole torchvision detector keeps the anchors its region proposal network was "
        "trained with (one size per pyramid level for the ResNet ones, 15 anchors per "
        "position for the MobileNet ones): leave anchor_sizes and aspect_ratios at their "
        "defaults with one, or use a backbone body (backbone='efficientnet_lite0', "
        "fpn=True) to choose anchors."),
    Relation(("backbone", "fpn"), lambda backbone, fpn: (
        not fpn or not _is_whole_detector(backbone)),
        "A whole torchvision detector has its own feature pyramid: fpn must be False with "
        "one."),
)

_LOSS_NAMES = ("loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg")

_ARCHITECTURE_DOC = """\
backbone : str, default="small_cnn"
        Feature extractor, or a whole detector. "small_cnn": three
        convolution stages (32, 64, 128 filters, stride 8) trained from
        scratch, fast on a CPU. A pretrained classification backbone by
        name, e.g. "efficientnet_lite0" (weights shipped; see
        :func:`skvision.nn.build_backbone` for others): its map at stride 16,
        or strides 8/16/32 with ``fpn=True``; images need 1 or 3 channels in
        [0, 1]. Or one of torchvision's whole Faster R-CNN detectors,
        ``"fasterrcnn_mobilenet_v3_large_fpn"``,
        ``"fasterrcnn_mobilenet_v3_large_320_fpn"``,
        ``"fasterrcnn_resnet50_fpn"``, ``"fasterrcnn_resnet50_fpn_v2"``
        (``skvision.nn.detection.faster_rcnn_names()``), loaded from
        ``weights`` and fine-tuned: ``fit`` replaces its box predictor for
        the classes of ``y`` and keeps the rest, its own anchors, region
        proposal network, feature pyramid and box head included; images
        need 3 channels (RGB) in [0, 1], normalized with ImageNet's mean and
        standard deviation as torchvision's detectors expect.

    backbone_weights : None, False, path or dict, default=None
        Weights of a pretrained classification ``backbone``: None uses the
        shipped ones, False a random initialization, a path a local weights
        file. Must be None with a whole detector (use ``weights``).

    weights : None, False, path or dict, default=None
        Weights of a whole detector ``backbone`` (must be None otherwise):
        None torchvision's COCO-trained weights, downloaded once and cached
        (see :ref:`user-guide-detection`; with ``HF_HUB_OFFLINE=1`` or without internet
        they must already be in the cache, else ``fit`` raises
        ``BackboneWeightsError`` (a ``ValueError``)); a path a local
        file of the whole model's state dict (``.pth``/``.pt`` read with
        ``torch.load(weights_only=True)``, or ``.safetensors``) for any
        number of classes; a state dict; False a random initialization
        (ordinary batch norm, the whole body trained). A file or state dict
        of another architecture raises an error naming it. Pretrained
        weights freeze the body's batch norm (torchvision's
        ``FrozenBatchNorm2d``, as in its pretrained detectors). A saved
        model (:func:`skvision.save`) keeps its weights: loading it never
        reads ``weights`` again.

    fpn : bool, default=False
        With a pretrained classification backbone, combine its maps at
        strides 8, 16 and 32 in a feature pyramid (torchvision's
        ``FeaturePyramidNetwork``): better over a wide range of object
        sizes, slower. Whole detectors have their own pyramid: must be False.

    trainable_layers : int, default=3
        With a pretrained backbone, how many of its last stages are trained;
        the others keep their pretrained weights and batch-norm statistics.
        With a whole detector, torchvision's ``trainable_backbone_layers``:
        the body is frozen but for its last ``trainable_layers`` layers (a
        ResNet's ``layer4`` ... ``conv1``, 0 to 5; a MobileNetV3's strided
        stages, 0 to 6); the pyramid and heads always train. With
        ``weights=False`` the whole body trains, as in torchvision.

    anchor_sizes : tuple of int, default=(16, 32, 64)
        Sides in pixels of the anchor boxes the region proposal network
        starts from at every feature-map position. With ``fpn=True`` they
        are spread over the three pyramid levels, smallest on the finest
        (one each by default), or given per level as torchvision takes them:
        ``((16,), (32,), (64,))``. A whole detector keeps its own anchors
        (torchvision's: one size from 32 to 512 px per pyramid level for the
        ResNet ones, all five on each map for the MobileNet ones, in 3
        ratios): this and ``aspect_ratios`` must keep their defaults with one.

    aspect_ratios : tuple of float, default=(0.5, 1.0, 2.0)
        Height/width ratios of the anchors; each size comes in every ratio.

    rpn_pre_nms_top_n : int, default=500
        Proposals kept per image before the RPN's non-maximum suppression.
        This and the RPN and box parameters below apply to whole detectors
        too, in place of torchvision's defaults (1000 to 2000 proposals and
        512 sampled per training image, tuned for COCO's crowded photos).

    rpn_post_nms_top_n : int, default=100
        Proposals kept per image after it.

    rpn_nms_thresh : float, default=0.7
        IoU above which the RPN suppresses overlapping proposals.

    box_score_thresh : float, default=0.05
        Detections scoring below this are dropped.

    box_nms_thresh : float, default=0.5
        IoU above which overlapping detections of a class are suppressed.

    box_detections_per_img : int, default=100
        Most detections returned per image.

    box_batch_size_per_image : int, default=32
        Proposals per training image the box head learns from (a quarter
        of them objects when there are enough). torchvision's detectors use
        512 for photos crowded with objects; a few objects per image need
        far fewer, and every one costs training time.

    min_size : int, default=None
        Images are resized so their shorter side is ``min_size`` (and their
        longer at most ``max_size``), as torchvision's detectors do. None
        keeps every image at its own size: objects are found at the pixel
        sizes they were trained at, in images of any size. Whole detectors
        too: torchvision's resizing (800 px, 320 px for the ``_320_``
        variant) applies only when set here.

    max_size : int, default=None
        Cap on the longer side when ``min_size`` is set; None: no cap."""

class _TargetList(list):
    """Per-image target dicts that the batch iterator can index with a tensor."""

    def __getitem__(self, index):
        if isinstance(index, torch.Tensor):
            return [list.__getitem__(self, int(i)) for i in index]
        if isinstance(index, slice):
            return _TargetList(list.__getitem__(self, index))
        return list.__getitem__(self, index)


def _scale_boxes(boxes, from_size, to_size):
    """xyxy boxes of an image of ``from_size`` (h, w) moved to one of ``to_size``."""
    scale_y, scale_x = (to / size for to, size in zip(to_size, from_size))
    return boxes * boxes.new_tensor([scale_x, scale_y, scale_x, scale_y])


class _SumOfLosses(torch.nn.Module):
    """The "criterion": Faster R-CNN computes its own losses; their sum is trained."""

    def forward(self, losses, targets=None):
        return sum(losses.values())


class _RecordLosses(Callback):
    """Each RPN and ROI-head loss as its own history column, averaged per epoch."""

    def on_epoch_begin(self, net, **kwargs):
        self.sums_, self.count_ = {}, 0

    def on_batch_end(self, net, batch, training, y_pred=None, **kwargs):
        if training and isinstance(y_pred, dict):
            for name, value in y_pred.items():
                self.sums_[name] = self.sums_.get(name, 0.0) + float(value.detach())
            self.count_ += 1

    def on_epoch_end(self, net, **kwargs):
        for name, total in self.sums_.items():
            net.history.record(name, total / max(self.count_, 1))


class _DetectionNet(Net):
    """The shared net, with Faster R-CNN's training step: images and targets in, losses out."""

    def _forward_loss(self, batch, **fit_params):
        images, targets = batch
        images = images.to(self.device)
        targets = [{key: value.to(self.device) for key, value in target.items()}
                   for target in targets]
        losses = self.module_(list(images), targets)
        return self.get_loss(losses, targets, X=images, training=True), losses


@fill_doc(architecture=_ARCHITECTURE_DOC)
class FasterRCNNDetector(BaseNeuralEstimator):
    """Object detection with Faster R-CNN: a region proposal network and anchor boxes.

    A backbone turns the image into feature maps. At every position the
    region proposal network (RPN) scores anchor boxes of several sizes and
    aspect ratios as object or background and regresses them towards the
    objects; the best proposals are cropped from the feature maps (RoI
    Align) and a second head classifies each and refines its box. Built on
    ``torchvision.models.detection.FasterRCNN``; trained by the shared core.

    Read more in the :ref:`User Guide <user-guide-detection>`.

    Parameters
    ----------
    %(architecture)s

    %(training_parameters)s

    Attributes
    ----------
    classes_ : ndarray
        The object labels.

    hub_config_ : dict or None
        For an ``hf-hub:`` backbone: the Hugging Face configuration it was built
        from (architecture, constructor arguments, pretrained configuration
        and revision), kept so that a saved model loads without the hub;
        None otherwise.

    %(fitted_attributes)s

    See Also
    --------
    skvision.metrics.mean_average_precision : The score.
    skvision.plotting.plot_boxes : Draws detections and proposals.

    Examples
    --------
    >>> from skvision import FasterRCNNDetector
    >>> from skvision.datasets import make_shapes
    >>> X, targets = make_shapes(n_samples=16, image_size=64, task="detection",
    ...                          random_state=0)
    >>> detector = FasterRCNNDetector(epochs=1, random_state=0).fit(X, targets)
    >>> sorted(detector.predict(X[:1])[0])
    ['boxes', 'labels', 'scores']
    """

    _target_kind = "boxes"
    _history_extra_columns = _LOSS_NAMES
    # Detection is fully convolutional: predict takes images of any size.
    _any_image_size = True

    # Sets of tens to hundreds of annotated images: the former fixed 30
    # epochs, fewer only on larger sets.
    _auto_epochs = (30, 3_000)
    _parameter_constraints = {
        **{name: constraint for name, constraint in TRAINING_CONSTRAINTS.items()
           if name not in _NOT_DETECTION_PARAMETERS},
        # Only an ImageAugmenter moves the boxes with the images.
        "augment": [None, IMAGE_AUGMENTER],
        "backbone": [Options("small_cnn"), Options(*faster_rcnn_names()),
                     *BACKBONE_CONSTRAINTS["backbone"]],
        "backbone_weights": BACKBONE_CONSTRAINTS["weights"],
        "weights": BACKBONE_CONSTRAINTS["weights"],
        "fpn": [BOOLEAN],
        "trainable_layers": [Interval(numbers.Integral, 0, None)],
        "anchor_sizes": [TupleOf(_POSITIVE, min_length=1),
                         TupleOf(TupleOf(_POSITIVE, min_length=1), min_length=1)],
        "aspect_ratios": [TupleOf(_POSITIVE, min_length=1)],
        "rpn_pre_nms_top_n": _COUNT,
        "rpn_post_nms_top_n": _COUNT,
        "rpn_nms_thresh": _SHARE,
        "box_score_thresh": _SHARE,
        "box_nms_thresh": _SHARE,
        "box_detections_per_img": _COUNT,
        "box_batch_size_per_image": _COUNT,
        "min_size": [None, *_COUNT],
        "max_size": [None, *_COUNT],
    }
    # No accelerator parameter (its own training step); a whole detector's rules.
    _parameter_relations = _WHOLE_DETECTOR_RELATIONS

    def __init__(
        self,
        *,
        backbone="small_cnn",
        backbone_weights=None,
        weights=None,
        fpn=False,
        trainable_layers=3,
        anchor_sizes=(16, 32, 64),
        aspect_ratios=(0.5, 1.0, 2.0),
        rpn_pre_nms_top_n=500,
        rpn_post_nms_top_n=100,
        rpn_nms_thresh=0.7,
        box_score_thresh=0.05,
        box_nms_thresh=0.5,
        box_detections_per_img=100,
        box_batch_size_per_image=32,
        min_size=None,
        max_size=None,
        image_shape=None,
        channels="last",
        image_size=None,
        on_error="raise",
        epochs="auto",
        batch_size=8,
        lr=0.003,
        optimizer="adamw",
        lr_schedule="onecycle",
        alpha=0.0,
        l1_ratio=0.0,
        augment=None,
        warm_start=False,
        device="auto",
        precision="32",
        callbacks=None,
        checkpoint=None,
        random_state=None,
        verbose=0,
    ):
        self.backbone = backbone
        self.backbone_weights = backbone_weights
        self.weights = weights
        self.fpn = fpn
        self.trainable_layers = trainable_layers
        self.anchor_sizes = anchor_sizes
        self.aspect_ratios = aspect_ratios
        self.rpn_pre_nms_top_n = rpn_pre_nms_top_n
        self.rpn_post_nms_top_n = rpn_post_nms_top_n
        self.rpn_nms_thresh = rpn_nms_thresh
        self.box_score_thresh = box_score_thresh
        self.box_nms_thresh = box_nms_thresh
        self.box_detections_per_img = box_detections_per_img
        self.box_batch_size_per_image = box_batch_size_per_image
        self.min_size = min_size
        self.max_size = max_size
        self.image_shape = image_shape
        self.channels = channels
        self.image_size = image_size
        self.on_error = on_error
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.optimizer = optimizer
        self.lr_schedule = lr_schedule
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.augment = augment
        self.warm_start = warm_start
        self.device = device
        self.precision = precision
        self.callbacks = callbacks
        self.checkpoint = checkpoint
        self.random_state = random_state
        self.verbose = verbose

    # -- hooks of the training core -------------------------------------------

    _net_class = _DetectionNet

    def _criterion(self):
        return _SumOfLosses()

    def _extra_callbacks(self):
        return [("losses", _RecordLosses())]

    def _prepare_targets(self, y, images, *, reset, classes=None):
        n_samples = len(images)
        if y is None:
            raise ValueError(
                "FasterRCNNDetector requires y to be passed, but the target y is None: pass "
                "one dict of 'boxes' and 'labels' per image."
            )
        targets = check_boxes(y, n_samples, images.original_sizes)
        if self._image_size() is not None:
            # Boxes follow their image to the size the network sees.
            size = self._image_size()
            for target, original in zip(targets, images.original_sizes):
                target["boxes"] = _scale_boxes(target["boxes"], original, size)
        for index, target in enumerate(targets):
            if "labels" not in target:
                raise ValueError(f"Detection target {index} has no 'labels'.")
            if "iscrowd" in target:
                # COCO's crowd regions: ignored by the evaluation, not trained on.
                keep = ~np.asarray(target["iscrowd"], dtype=bool).reshape(-1)
                target["boxes"] = target["boxes"][torch.from_numpy(keep)]
                target["labels"] = np.asarray(target["labels"])[keep]
        if reset:
            labels = [target["labels"] for target in targets if len(target["labels"])]
            if not labels:
                raise ValueError("The targets hold no boxes: nothing to learn to detect.")
            self.classes_ = np.unique(np.concatenate(labels))
        counts = [len(target["labels"]) for target in targets]
        labels = np.concatenate([np.asarray(target["labels"]).reshape(-1) for target in targets])
        # torchvision reserves class 0 for the background.
        indices = np.split(encode_labels(labels, self.classes_, len(labels)).numpy() + 1,
                           np.cumsum(counts)[:-1])
        encoded = _TargetList(
            {"boxes": target["boxes"], "labels": torch.from_numpy(index)}
            for target, index in zip(targets, indices)
        )
        return encoded, len(self.classes_) + 1

    def _body(self, n_channels, pretrained=True):
        """The feature extractor and the names of the maps it returns.

        ``pretrained=False``: the backbone's architecture without reading its
        weights (a saved model loading: they come from the file).
        """
        if self.backbone == "small_cnn":
            self.hub_config_ = None
            body = small_cnn_body(n_channels)
            return body, body.map_names
        if n_channels not in (1, 3):
            raise ValueError(
                f"A pretrained backbone takes 1 (grayscale) or 3 (RGB) channels; got "
                f"{n_channels}. Use backbone='small_cnn' for other images."
            )
        # The last stage (the classifier's 1x1 "head" convolution) adds nothing
        # a detector needs but many channels.
        # An hf-hub: backbone loading is built from the configuration its fit
        # kept (hub_config_): loading reads nothing from the hub.
        backbone = build_backbone(
            self.backbone, weights=self.backbone_weights if pretrained else False, layer=-2,
            hub_config=None if pretrained else getattr(self, "hub_config_", None))
        self.hub_config_ = backbone.hub_config
        body = PretrainedDetectionBody(backbone, fpn=bool(self.fpn),
                                       n_trainable_stages=self.trainable_layers)
        return body, body.map_names

    def _anchor_generator(self, n_levels):
        from torchvision.models.detection.anchor_utils import AnchorGenerator

        nested = any(np.ndim(entry) for entry in self.anchor_sizes)
        levels = [np.ravel(entry) for entry in self.anchor_sizes] if nested else None
        sizes = np.concatenate(levels) if nested else np.asarray(self.anchor_sizes)
        ratios = tuple(float(ratio) for ratio in self.aspect_ratios)
        if nested and n_levels > 1 and len(levels) != n_levels:
            raise ValueError(
                f"anchor_sizes as one tuple per level needs {n_levels} tuples (the pyramid's "
                f"levels); got {len(levels)}."
            )
        if len(sizes) < n_levels:
            raise ValueError(
                f"With fpn=True, anchor_sizes needs at least one size per pyramid level "
                f"({n_levels}); got {self.anchor_sizes!r}."
            )
        if not (nested and n_levels > 1):
            levels = np.array_split(np.sort(sizes), n_levels)
        per_level = tuple(tuple(int(size) for size in level) for level in levels)
        return AnchorGenerator(per_level, (ratios,) * n_levels)

    def _head_options(self):
        """The RPN's and box head's settings, the same for every kind of backbone."""
        return dict(
            rpn_pre_nms_top_n_train=self.rpn_pre_nms_top_n,
            rpn_pre_nms_top_n_test=self.rpn_pre_nms_top_n,
            rpn_post_nms_top_n_train=self.rpn_post_nms_top_n,
            rpn_post_nms_top_n_test=self.rpn_post_nms_top_n,
            rpn_nms_thresh=self.rpn_nms_thresh,
            box_score_thresh=self.box_score_thresh, box_nms_thresh=self.box_nms_thresh,
            box_detections_per_img=self.box_detections_per_img,
            box_batch_size_per_image=self.box_batch_size_per_image,
        )

    def _whole_detector_state(self, pretrained):
        """The state dict ``weights`` names and how errors name it (None: random weights)."""
        if self.weights is False or not pretrained:
            # A saved model's weights are loaded after the rebuild: no file is read again.
            return None, None
        if isinstance(self.weights, dict):
            return self.weights, "The state dict given as weights"
        if self.weights is None:
            from .nn._hub import hub_weights_file

            path = hub_weights_file(self.backbone)
        else:
            path = os.fspath(self.weights)
        return load_weights_file(path), f"The weights file {path!r}"

    def _whole_detector(self, n_channels, n_outputs, pretrained):
        """torchvision's Faster R-CNN ``backbone`` with its weights and a new box predictor."""
        if n_channels not in (1, 3):
            raise ValueError(
                f"torchvision's detector {self.backbone!r} takes gray or RGB images (1 or 3 "
                f"channels); got {n_channels}. Use backbone='small_cnn' for other images."
            )
        # A gray image needs no conversion: the detector's transform normalizes
        # with a mean and std per RGB channel, which broadcast a (1, h, w) image
        # to the three equal channels that repeating it would give
        # (tests/test_detection.py checks the equality).
        state, source = self._whole_detector_state(pretrained)
        # The architecture follows weights=, also when a saved model is rebuilt.
        from_weights = self.weights is not False
        return torchvision_faster_rcnn(
            self.backbone, n_outputs, state=state, source=source,
            frozen_batch_norm=from_weights,
            trainable_layers=self.trainable_layers if from_weights else None,
            **self._head_options(),
        )

    def _build_module(self, n_channels, n_outputs, input_size, pretrained=True):
        from torchvision.models.detection import FasterRCNN
        from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
        from torchvision.ops import MultiScaleRoIAlign

        if _is_whole_detector(self.backbone):
            model = self._whole_detector(n_channels, n_outputs, pretrained)
            # Its own normalization (ImageNet's mean and std); sizes as set here.
            mean, std = model.transform.image_mean, model.transform.image_std
        else:
            body, map_names = self._body(n_channels, pretrained)
            representation = 256
            # Images arrive in [0, 1]; a pretrained body applies its own normalization.
            mean, std = [0.0] * n_channels, [1.0] * n_channels
            model = FasterRCNN(
                body, num_classes=None, image_mean=mean, image_std=std,
                rpn_anchor_generator=self._anchor_generator(len(map_names)),
                # One sample per RoI bin: RoIAlign's backward pass dominates training on
                # a CPU, and one sample halves it at no measured cost in mAP.
                box_roi_pool=MultiScaleRoIAlign(map_names, output_size=7, sampling_ratio=1),
                box_head=TwoMLPHead(body.out_channels * 7 * 7, representation),
                box_predictor=FastRCNNPredictor(representation, n_outputs),
                **self._head_options(),
            )
        model.transform = detection_transform(mean, std, self.min_size, self.max_size)
        return model

    # -- fitting and inference ----------------------------------------------

    def fit(self, X, y):
        """Train the detector.

        Parameters
        ----------
        X : array-like of images, list of images of different sizes, or file paths
            Images in any accepted form. Images of different sizes are
            zero-padded at the bottom and right to the largest (the padding
            stays empty: its pixels hold no boxes), or resized to
            ``image_size`` when it is set (their boxes with them).
        y : list of dict or pandas DataFrame
            One dict per image: ``"boxes"`` (k, 4) xyxy pixels and
            ``"labels"`` (k,), any label values; images without objects
            have ``k = 0``. Or a DataFrame with one row per box and the
            columns ``image_id`` (the image's position in X), ``x_min,
            y_min, x_max, y_max`` and ``label``; ``predict`` then answers
            with a DataFrame too. Boxes follow their ``image_id`` when
            ``on_error="skip"`` leaves a file out. scikit-learn's
            cross-validation splits ``y`` by row, which for a DataFrame
            is by box: there, pass the dicts. Boxes marked ``"iscrowd"``
            (an ``iscrowd`` column), as
            :func:`~skvision.datasets.load_coco` keeps them with
            ``keep_crowd=True``, are not trained on.

        Returns
        -------
        self : object
            The fitted detector.
        """
        return self._fit(X, y, partial=False)

    def _adapt_inputs(self, X, y):
        """Images of different sizes padded (or resized) to one, their boxes checked first."""
        self.target_format_ = "dataframe" if hasattr(y, "columns") else "dicts"
        images = check_image_list(X, channels=self.channels)
        if images is not None:
            # Boxes are checked against each image's own size before padding
            # (or resizing, which moves them with the image).
            sizes = [tuple(image.shape[1:]) for image in images]
            targets = check_boxes(y, len(images), sizes)
            size = self._image_size()
            if size is None:
                X = pad_images(images)
            else:
                X = torch.stack(to_float(images, "cpu", size))
                for target, original in zip(targets, sizes):
                    target["boxes"] = _scale_boxes(target["boxes"], original, size)
                y = targets
        return X, y

    def _run(self, X, step):
        """``step(module, images)`` over the images in batches; boxes in image pixels.

        ``step`` returns one box tensor per image, or one dict with "boxes".
        """
        check_is_fitted(self, "net_")
        # Lists of differently sized images and files of any size are read
        # at each image's own size (a ListImages, a FileImages without size).
        images = self._check_data(X, reset=False)
        size = self._image_size()
        module = self.net_.module_
        # torchvision's detection models take a list of images.
        results = predict_batches(
            module, images, batch_size=self.batch_size, device=self.device_,
            forward=lambda batch: step(module, list(batch)), precision=self.precision_,
            size=self._resize_to(images),
        )
        if size is not None:
            # Back from the network's size to each image's own.
            for index, original in enumerate(images.original_sizes):
                result = results[index]
                if isinstance(result, dict):
                    result["boxes"] = _scale_boxes(result["boxes"], size, original)
                else:
                    results[index] = _scale_boxes(result, size, original)
        return results

    def predict(self, X):
        """Detected objects of each image.

        Parameters
        ----------
        X : array-like of images, list of images of different sizes, or file paths
            Images with the channels seen in ``fit``, of any size (files too
            without ``image_size``: each is read at its own size).

        Returns
        -------
        detections : list of dict or pandas DataFrame
            Per image ``"boxes"`` (k, 4) xyxy float32 in the image's own
            pixels (also with ``image_size``), ``"labels"`` (k,) in
            the training label values and ``"scores"`` (k,), best first. A
            DataFrame (columns ``image_id, x_min, y_min, x_max, y_max,
            label, score``) when the detector was fitted on one.
        """
        outputs = self._run(X, lambda module, batch: module(batch))
        detections = [{"boxes": output["boxes"].float().cpu().numpy(),
                       "labels": self.classes_[output["labels"].cpu().numpy() - 1],
                       "scores": output["scores"].float().cpu().numpy()} for output in outputs]
        if getattr(self, "target_format_", "dicts") == "dataframe":
            return targets_to_frame(detections)
        return detections

    def predict_proposals(self, X):
        """The region proposal network's proposals, in image pixels.

        Parameters
        ----------
        X : array-like of images, list of images of different sizes, or file paths
            Images with the channels seen in ``fit``, of any size.

        Returns
        -------
        proposals : list of ndarray of shape (k, 4)
            Up to ``rpn_post_nms_top_n`` xyxy boxes per image, best first.
        """
        def propose(module, batch):
            original = [tuple(image.shape[-2:]) for image in batch]
            transformed, _ = module.transform(batch)
            features = module.backbone(transformed.tensors)
            if isinstance(features, torch.Tensor):
                features = {"0": features}
            proposals, _ = module.rpn(transformed, features)
            boxes = module.transform.postprocess(
                [{"boxes": boxes} for boxes in proposals], transformed.image_sizes, original)
            return [entry["boxes"] for entry in boxes]

        return [boxes.float().cpu().numpy() for boxes in self._run(X, propose)]

    def score(self, X, y, sample_weight=None):
        """Mean average precision at IoU 0.5 (PASCAL VOC) of the detections.

        Parameters
        ----------
        X : array-like of images
            Images.
        y : list of dict or pandas DataFrame
            Their true boxes and labels.
        sample_weight : None
            Not supported.

        Returns
        -------
        score : float
        """
        if sample_weight is not None:
            raise ValueError("FasterRCNNDetector.score does not support sample_weight.")
        return mean_average_precision(y, self.predict(X), iou_thresholds=0.5)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.target_tags.one_d_labels = False
        return tags
