"""UNetSegmenter: semantic segmentation with a U-Net, as a scikit-learn estimator."""

import numbers

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils.validation import check_is_fitted

from ._data import as_paths, decode_masks, resize_masks, to_float
from ._docstrings import fill_doc
from ._params import (
    BOOLEAN,
    CLASSIFIER_CONSTRAINTS,
    IMAGE_AUGMENTER,
    TRAINING_CONSTRAINTS,
    Interval,
    Options,
)
from ._training import BaseNeuralEstimator
from ._validation import check_image_list, check_masks, class_weights, encode_labels
from .metrics import mean_iou
from .nn import UNet, build_backbone
from .nn._resize import resize_images
from .nn.unet import CrossEntropyDiceLoss, DiceLoss
from .transfer import BACKBONE_CONSTRAINTS

__all__ = ["UNetSegmenter"]

# torch's CrossEntropyLoss default: pixels with this target are left out.
_IGNORED = -100
_LOSSES = ("ce", "dice", "ce+dice")

_ARCHITECTURE_DOC = """\
depth : int, default=3
        Number of 2x downsamplings in the encoder (and upsamplings in the
        decoder). Images of any size work: they are padded to a multiple of
        ``2 ** depth`` and the masks cropped back.

    base_filters : int, default=16
        Filters of the first level; each level down doubles them.

    batch_norm : bool, default=True
        Batch normalization after every convolution.

    dropout : float, default=0.0
        Channel dropout in the two deepest levels.

    upsampling : {"transpose", "bilinear"}, default="transpose"
        Learned transposed convolutions or fixed bilinear upsampling in the
        decoder.

    encoder : str, default=None
        A pretrained backbone (e.g. "efficientnet_lite0", see
        :func:`skvision.nn.list_backbones`) whose stages become the
        encoder (transfer learning for segmentation); None trains a plain
        U-Net encoder from scratch. Images must have 1 or 3 channels.

    encoder_weights : None, False, path or dict, default=None
        Weights of ``encoder``: None uses the shipped ones, False a random
        initialization, a path or dict a state dict (as
        :func:`~skvision.nn.build_backbone`)."""


@fill_doc(architecture=_ARCHITECTURE_DOC)
class UNetSegmenter(BaseNeuralEstimator):
    """Semantic segmentation: a class for every pixel, with a U-Net.

    The encoder captures what is in the image at coarse resolution; the
    decoder upsamples back and concatenates the encoder's maps of the same
    resolution (skip connections), recovering the fine detail of the object
    boundaries. ``fit(X, masks)`` takes integer class maps with any label
    values; ``predict`` returns masks in the same values and ``score`` the
    mean intersection over union. The network is fully convolutional, so
    ``predict`` takes images of any size (with the training channel count):
    train on crops, segment whole images. Images and masks may be file
    paths (mask files: gray or palette PNGs of class indices); with
    ``image_size`` set, images are resized to it for the network (their
    masks with nearest neighbours), and ``predict`` still answers at each
    image's own size: the class scores are resized back (bilinear) before
    the most probable class is taken. Masks are always of their image's own
    size, in ``fit`` as in ``score``.

    Read more in the :ref:`User Guide <user-guide-segmentation>`.

    Parameters
    ----------
    %(architecture)s

    loss : {"ce", "dice", "ce+dice"}, default="ce+dice"
        Per-pixel cross-entropy, soft Dice (every class weighs the same
        however few pixels it has), or their sum. Small objects on a large
        background are the usual case, where the Dice term helps: on
        ``make_shapes`` (64 px) "ce+dice" reached a higher held-out mean IoU
        than "ce" alone.

    class_weight : dict, "balanced" or None, default=None
        Weights of the classes in the cross-entropy, as in sklearn:
        "balanced" uses ``n_pixels / (n_classes * pixels_of_class)``.

    ignore_index : int, default=None
        Mask value of pixels to leave out of the loss and the score
        (unlabelled or "don't care" pixels).

    %(training_parameters)s

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The mask labels, in the order of ``predict_proba``'s channels.

    class_weight_ : ndarray of shape (n_classes,) or None
        The cross-entropy weights used, when ``class_weight`` is set.

    hub_config_ : dict or None
        For an ``hf-hub:`` encoder: the Hugging Face configuration it was built
        from (architecture, constructor arguments, pretrained configuration
        and revision), kept so that a saved model loads without the hub;
        None otherwise.

    %(fitted_attributes)s

    See Also
    --------
    skvision.metrics.mean_iou : The score.
    skvision.plotting.plot_masks : Overlays of masks on images.

    Examples
    --------
    >>> from skvision import UNetSegmenter
    >>> from skvision.datasets import make_shapes
    >>> X, masks = make_shapes(n_samples=60, image_size=32, task="segmentation",
    ...                        random_state=0)
    >>> seg = UNetSegmenter(depth=2, base_filters=8, epochs=3, random_state=0)
    >>> seg.fit(X, masks).predict(X[:2]).shape
    (2, 32, 32)
    >>> seg.predict_proba(X[:2]).shape[:2]
    (2, 4)
    """

    _target_kind = "masks"
    # Fully convolutional: trained on crops, it segments whole images.
    _any_image_size = True

    # Sets of a few hundred large images with masks: the former fixed 20
    # epochs, fewer only on larger sets.
    _auto_epochs = (20, 20_000)
    _parameter_constraints = {
        **TRAINING_CONSTRAINTS,
        # Only an ImageAugmenter moves the masks with the images.
        "augment": [None, IMAGE_AUGMENTER],
        "depth": [Interval(numbers.Integral, 1, 8)],
        "base_filters": [Interval(numbers.Integral, 1, None)],
        "batch_norm": [BOOLEAN],
        "dropout": [Interval(numbers.Real, 0, 1, closed="left")],
        "upsampling": [Options("transpose", "bilinear")],
        "encoder": [None, *BACKBONE_CONSTRAINTS["backbone"]],
        "encoder_weights": BACKBONE_CONSTRAINTS["weights"],
        "loss": [Options(*_LOSSES)],
        "class_weight": CLASSIFIER_CONSTRAINTS["class_weight"],
        "ignore_index": [None, Interval(numbers.Integral, None, None)],
    }

    def __init__(
        self,
        *,
        depth=3,
        base_filters=16,
        batch_norm=True,
        dropout=0.0,
        upsampling="transpose",
        encoder=None,
        encoder_weights=None,
        loss="ce+dice",
        class_weight=None,
        ignore_index=None,
        image_shape=None,
        channels="last",
        image_size=None,
        on_error="raise",
        epochs="auto",
        batch_size=8,
        lr=0.01,
        optimizer="adamw",
        lr_schedule="onecycle",
        alpha=0.0,
        l1_ratio=0.0,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=5,
        augment=None,
        warm_start=False,
        device="auto",
        precision="32",
        accelerator=None,
        callbacks=None,
        checkpoint=None,
        random_state=None,
        verbose=0,
    ):
        self.depth = depth
        self.base_filters = base_filters
        self.batch_norm = batch_norm
        self.dropout = dropout
        self.upsampling = upsampling
        self.encoder = encoder
        self.encoder_weights = encoder_weights
        self.loss = loss
        self.class_weight = class_weight
        self.ignore_index = ignore_index
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
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.augment = augment
        self.warm_start = warm_start
        self.device = device
        self.precision = precision
        self.accelerator = accelerator
        self.callbacks = callbacks
        self.checkpoint = checkpoint
        self.random_state = random_state
        self.verbose = verbose

    # -- hooks of the training core -------------------------------------------

    def _build_module(self, n_channels, n_outputs, input_size, pretrained=True):
        encoder, self.hub_config_ = None, None
        if self.encoder is not None:
            # pretrained=False (a saved model loading): the encoder's weights
            # come from the file, its weights file is not read again.
            # An hf-hub: encoder loading is built from the configuration its
            # fit kept (hub_config_): loading reads nothing from the hub.
            encoder = build_backbone(
                self.encoder, weights=self.encoder_weights if pretrained else False,
                hub_config=None if pretrained else getattr(self, "hub_config_", None))
            self.hub_config_ = encoder.hub_config
        return UNet(n_channels, n_outputs, depth=self.depth, base_filters=self.base_filters,
                    batch_norm=self.batch_norm, dropout=self.dropout,
                    upsampling=self.upsampling, encoder=encoder)

    def _criterion(self):
        weight = None if self.class_weight_ is None else torch.as_tensor(
            self.class_weight_, dtype=torch.float32)
        if self.loss == "ce":
            return torch.nn.CrossEntropyLoss(weight=weight, ignore_index=_IGNORED)
        if self.loss == "dice":
            return DiceLoss(ignore_index=_IGNORED)
        return CrossEntropyDiceLoss(ignore_index=_IGNORED, weight=weight)

    def _prepare_targets(self, y, images, *, reset, classes=None):
        if y is None:
            raise ValueError(
                "UNetSegmenter requires y to be passed, but the target y is None: pass the "
                "masks (n_samples, height, width)."
            )
        masks = self._check_masks(y, images)
        labelled = masks if self.ignore_index is None else masks[masks != self.ignore_index]
        if reset:
            self.classes_ = np.unique(labelled)
            if len(self.classes_) < 2:
                raise ValueError(
                    "Segmentation needs at least 2 classes in the masks; got only "
                    f"{self.classes_.tolist()}."
                )
            self.class_weight_ = self._class_weights(labelled)
        ignored = np.zeros(masks.shape, bool) if self.ignore_index is None else (
            masks == self.ignore_index)
        # int16 where the classes fit: a quarter of int64's memory (made int64 per batch).
        dtype = np.int16 if len(self.classes_) < 2**15 else np.int64
        index = np.full(masks.shape, _IGNORED, dtype=dtype)
        # The one label encoder of the package; it names labels unseen in the first fit.
        index[~ignored] = encode_labels(masks[~ignored], self.classes_, int((~ignored).sum()))
        return torch.from_numpy(index), len(self.classes_)

    def _adapt_inputs(self, X, y):
        """A list of differently sized images resized to ``image_size``, their masks with them.

        Images of different sizes as arrays (a list) are what image files of
        different sizes are as paths: with ``image_size`` both are resized
        for the network, the masks with nearest neighbours, each checked
        first against its own image's size.
        """
        images = check_image_list(X, channels=self.channels)
        if images is None:
            return X, y
        size = self._image_size()
        sizes = [tuple(image.shape[1:]) for image in images]
        if size is None:
            raise ValueError(
                f"The images have {len(set(sizes))} different sizes (height, width), e.g. "
                f"{sorted(set(sizes))[:3]}; a batch of training images must have one. Set "
                "image_size=(height, width) to resize them (and their masks) to one size."
            )
        X = torch.stack(to_float(images, "cpu", size, memory_channels_last=False))
        if y is not None and as_paths(y) is None:
            masks = check_masks(y, len(images), sizes)
            masks = [masks] if torch.is_tensor(masks) else masks
            y = np.concatenate([resize_masks(np.asarray(mask).reshape(-1, *mask.shape[-2:]),
                                             size) for mask in masks])
        return X, y

    def _check_masks(self, y, images):
        """Masks as an integer array ``(n, h, w)`` at the size the network sees.

        ``y`` holds one mask per image at the image's own size (for image
        files, the size their header gives: ``images.original_sizes``): an
        array, a list of arrays (image files of different sizes) or mask
        files. With ``image_size`` set they are resized to it with nearest
        neighbours (:func:`~skvision._data.resize_masks`), as the images
        are; without it, the images are seen at their own size, and so are
        the masks.
        """
        n_samples = len(images)
        size = self._image_size()
        paths = as_paths(y)
        if paths is not None:
            if len(paths) != n_samples:
                raise ValueError(
                    f"X and y have inconsistent numbers of samples: {n_samples} images but "
                    f"{len(paths)} mask files."
                )
            # Resized as each is decoded: only masks of the network's size are held.
            y = decode_masks(paths, size)
            if size is not None:
                return check_masks(y, n_samples, size).numpy()
        masks = check_masks(y, n_samples, images.original_sizes)
        if torch.is_tensor(masks):
            return masks.numpy() if size is None else resize_masks(masks.numpy(), size)
        if size is None:
            raise ValueError(
                "The image files have different sizes; a batch of training images must have "
                "one. Set image_size=(height, width) to resize them to one size."
            )
        return np.concatenate([resize_masks(mask.numpy()[np.newaxis], size) for mask in masks])

    def _class_weights(self, labelled):
        if self.class_weight is None:
            return None
        counts = [(labelled == label).sum() for label in self.classes_]
        return class_weights(self.class_weight, self.classes_, counts)

    # -- fitting and inference ----------------------------------------------

    def fit(self, X, y):
        """Train the U-Net on images ``X`` and their masks ``y``.

        Parameters
        ----------
        X : array-like of images, list of images of different sizes, or image file paths
            See :ref:`the accepted images <image-inputs>` for the accepted
            forms.
        y : array-like of int, shape (n_samples, height, width), list of arrays, or mask file paths
            The class of every pixel, each mask at its image's own size (for
            image files, the files' size, also with ``image_size``: the
            masks are resized with the images); a list of one ``(height,
            width)`` array per image where the files differ in size (flat
            ``(n_samples, height * width)`` rows work too). Any integer
            labels; ``ignore_index`` pixels are left out. Images of
            different sizes (files, or a list of arrays) need
            ``image_size``; their masks are resized with them.

        Returns
        -------
        self : object
            The fitted segmenter.
        """
        return self._fit(X, y, partial=False)

    def partial_fit(self, X, y):
        """Train for one epoch at the constant rate ``lr``, from the current weights.

        Parameters
        ----------
        X : array-like of images
            A batch of training images.
        y : array-like of int, shape (n_samples, height, width)
            Their masks; on the first call they must show every class.

        Returns
        -------
        self : object
            The updated segmenter.
        """
        return self._fit(X, y, partial=True)

    def _network_scores(self, batch):
        """The network's class scores of a batch: a tensor, or one per image of a list.

        A list holds images of different sizes (image files read at their
        own size, or a list of arrays); they go through one at a time.
        """
        module = self.net_.module_
        if torch.is_tensor(batch):
            return module(batch)
        return [module(image[np.newaxis])[0].float().cpu() for image in batch]

    def _class_scores(self, X):
        """The class scores of every pixel, each image at its own size.

        A tensor ``(n, n_classes, h, w)``, or a list of ``(n_classes, h,
        w)`` ones where the images differ in size. With ``image_size`` the
        network's scores at that size are resized back to each image's own
        size with the bilinear resize of the images (as torchvision's
        segmentation models upsample their logits), so the arg-max and the
        probabilities are taken at the image's own pixels.
        """
        check_is_fitted(self, "net_")
        images = self._check_data(X, reset=False)
        scores = self._forward_images(images, forward=self._network_scores)
        if self._image_size() is None:
            return scores
        return _resized_scores(scores, images.original_sizes)

    def predict_proba(self, X):
        """Class probabilities of every pixel, at each image's own size.

        Parameters
        ----------
        X : array-like of images, list of images of different sizes, or image file paths
            Images with the channels seen in ``fit``, of any size.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes, height, width), or list of ndarray
            At each image's own size, also with ``image_size`` (the class
            scores resized back, bilinear, before the softmax). A list of
            one ``(n_classes, height, width)`` array per image where the
            images differ in size (image files, or a list of arrays).
        """
        return _each_image(self._class_scores(X), lambda scores: F.softmax(scores, dim=1).numpy())

    def predict(self, X):
        """The most probable class of every pixel, at each image's own size.

        Parameters
        ----------
        X : array-like of images, list of images of different sizes, or image file paths
            Images with the channels seen in ``fit``, of any size.

        Returns
        -------
        masks : ndarray of shape (n_samples, height, width), or list of ndarray
            In the label values of the training masks, at each image's own
            size, also with ``image_size`` (the class scores resized back,
            bilinear, then the arg-max). A list of one ``(height, width)``
            mask per image where the images differ in size (image files, or
            a list of arrays).
        """
        return _each_image(self._class_scores(X),
                           lambda scores: self.classes_[scores.argmax(dim=1).numpy()])

    def score(self, X, y, sample_weight=None):
        """Mean intersection over union of the predicted masks.

        Parameters
        ----------
        X : array-like of images, list of images of different sizes, or image file paths
            Images.
        y : array-like of int, shape (n_samples, height, width), list of arrays, or mask file paths
            Their true masks, each at its image's own size (a list where
            the images differ in size).
        sample_weight : None
            Not supported; present for sklearn's signature.

        Returns
        -------
        score : float
            The mean IoU at the masks' own size (the predictions are at
            each image's own size, also with ``image_size``), counted over
            the pixels of all images together.
        """
        if sample_weight is not None:
            raise ValueError("UNetSegmenter.score does not support sample_weight.")
        check_is_fitted(self, "net_")
        predicted = self.predict(X)
        paths = as_paths(y)
        if paths is not None:
            y = decode_masks(paths)
        masks = check_masks(y, len(predicted), [mask.shape for mask in predicted])
        if torch.is_tensor(masks):
            return mean_iou(masks.numpy(), predicted, ignore_index=self.ignore_index)
        # Images of different sizes: their pixels counted together, as mean_iou counts them.
        return mean_iou(np.concatenate([mask.numpy().ravel() for mask in masks]),
                        np.concatenate([mask.ravel() for mask in predicted]),
                        ignore_index=self.ignore_index)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.target_tags.one_d_labels = False
        tags.target_tags.two_d_labels = True
        return tags


def _resized_scores(scores, sizes):
    """Class scores at the network's size resized (bilinear) to each image's own ``sizes``."""
    if torch.is_tensor(scores) and len(set(sizes)) == 1:
        return resize_images(scores, sizes[0])
    return [resize_images(score[np.newaxis], size)[0] for score, size in zip(scores, sizes)]


def _each_image(scores, function):
    """``function`` of class scores ``(n, k, h, w)``, or of each image's in a list of them.

    A list holds the scores of images of different sizes; the answer is then
    a list too, one item per image.
    """
    if torch.is_tensor(scores):
        return function(scores)
    return [function(score[np.newaxis])[0] for score in scores]
