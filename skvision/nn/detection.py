"""Backbones and the image transform of skvision's Faster R-CNN detector.

torchvision's ``FasterRCNN`` takes any module with ``out_channels`` that maps
images to one feature map or an ordered dict of them (a feature pyramid);
these are the two skvision offers, and a transform that leaves image sizes
alone. torchvision's own whole Faster R-CNN detectors (COCO-pretrained) are
built by name with :func:`torchvision_faster_rcnn`.
"""

import functools
from collections import OrderedDict

import torchvision
from torch import nn
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.misc import FrozenBatchNorm2d

from .backbones import MultiScaleFeatures
from .blocks import ConvBlock

__all__ = [
    "KeepSizeTransform",
    "PretrainedDetectionBody",
    "detection_transform",
    "faster_rcnn_names",
    "freeze_detector_body",
    "small_cnn_body",
    "torchvision_faster_rcnn",
]


def small_cnn_body(in_channels):
    """Stride-8 features: a strided stem, then two conv + pool stages (cheap on a CPU).

    Returns a ``torch.nn.Sequential`` with ``out_channels = 128`` and
    ``map_names = ["0"]``.
    """
    layers = [nn.Conv2d(in_channels, 32, 3, stride=2, padding=1, bias=False),
              nn.BatchNorm2d(32), nn.ReLU(inplace=True)]
    width = 32
    for filters in (64, 128):
        layers += [ConvBlock(width, filters), ConvBlock(filters, filters), nn.MaxPool2d(2)]
        width = filters
    body = nn.Sequential(*layers)
    body.out_channels = width
    body.map_names = ["0"]  # torchvision names a single feature map "0"
    return body


class PretrainedDetectionBody(nn.Module):
    """A pretrained backbone as a detector's body, with an optional feature pyramid.

    Without a pyramid the body returns the backbone's map at stride 16 (fine
    enough for small objects, deep enough to know what they are). With one,
    the maps at strides 8, 16 and 32 go through torchvision's
    ``FeaturePyramidNetwork`` and come out as ``{"0", "1", "2"}`` with
    ``pyramid_channels`` channels each, finest first.

    Parameters
    ----------
    backbone : Backbone
        Pretrained stages (:func:`~skvision.nn.build_backbone`).
    fpn : bool, default=False
        Add the feature pyramid.
    n_trainable_stages : int or None, default=None
        Train only the last ``n`` stages kept; None trains all.
    pyramid_channels : int, default=128
        Channels of every pyramid level.

    Attributes
    ----------
    out_channels : int
        Channels of every returned map.
    map_names : list of str
        Keys of the returned maps, finest first.
    """

    strides_without_fpn = (16,)
    strides_with_fpn = (8, 16, 32)

    def __init__(self, backbone, fpn=False, n_trainable_stages=None, pyramid_channels=128):
        super().__init__()
        strides = self.strides_with_fpn if fpn else self.strides_without_fpn
        self.features = MultiScaleFeatures(backbone, strides, n_trainable_stages)
        if fpn:
            self.fpn = FeaturePyramidNetwork(self.features.channels, pyramid_channels)
            self.out_channels = pyramid_channels
        else:
            self.fpn = None
            self.out_channels = self.features.channels[-1]
        # The keys of the maps forward returns (a single tensor counts as "0").
        self.map_names = [str(level) for level in range(len(strides))]

    def forward(self, x):
        maps = self.features(x)
        if self.fpn is None:
            return maps[-1]
        return self.fpn(OrderedDict((str(level), m) for level, m in enumerate(maps)))


class KeepSizeTransform(GeneralizedRCNNTransform):
    """torchvision's detection transform without its resize step.

    Images keep their size (a model trained on 128 px crops finds objects of
    the same pixel size in a 512 px photo); they are still normalized and
    padded into one batch, and the boxes come back in image pixels.
    """

    def __init__(self, image_mean, image_std, size_divisible=32):
        super().__init__(1, 1, image_mean, image_std, size_divisible=size_divisible)

    def resize(self, image, target=None):
        return image, target



def detection_transform(image_mean, image_std, min_size=None, max_size=None):
    """The detector's image transform: normalize, then keep sizes or resize.

    ``min_size=None``: :class:`KeepSizeTransform` (images keep their size).
    Otherwise torchvision's ``GeneralizedRCNNTransform``: the shorter side
    resized to ``min_size``, the longer capped at ``max_size`` (None: no cap).
    """
    if min_size is None:
        return KeepSizeTransform(image_mean, image_std)
    return GeneralizedRCNNTransform(min_size, max_size or 2**31, image_mean, image_std)


@functools.cache
def faster_rcnn_names():
    """torchvision's whole Faster R-CNN detectors, by model name (``fasterrcnn_*``)."""
    return tuple(sorted(name for name in torchvision.models.list_models(
        module=torchvision.models.detection) if name.startswith("fasterrcnn_")))


def _frozen_batch_norm(module):
    """Every ``BatchNorm2d`` under ``module`` replaced by torchvision's ``FrozenBatchNorm2d``.

    As torchvision's pretrained detectors build their bodies: fixed
    statistics and affine parameters, loaded from the weights (whose
    ``num_batches_tracked`` entries it ignores). Its default eps (1e-5) is
    the one torchvision's pretrained models use.
    """
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features)
            frozen.weight.copy_(child.weight.detach())
            frozen.bias.copy_(child.bias.detach())
            frozen.running_mean.copy_(child.running_mean)
            frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen)
        else:
            _frozen_batch_norm(child)


def freeze_detector_body(body, n_trainable):
    """Freeze a torchvision detector's body except its last ``n_trainable`` layers.

    torchvision's ``trainable_backbone_layers`` rule, applied to a built
    body: a ResNet's layers are ``layer4, layer3, layer2, layer1, conv1``
    (and ``bn1`` with all 5), as in ``_resnet_fpn_extractor``; a MobileNet's
    are its stem, its strided blocks and its last block (6 for
    MobileNetV3-Large), as in ``_mobilenet_extractor``. Frozen parameters
    get ``requires_grad=False``.
    """
    children = list(body.named_children())
    if hasattr(body, "layer4"):
        n_layers = 5
        trained = ["layer4", "layer3", "layer2", "layer1", "conv1"][:n_trainable]
        if n_trainable == 5:
            trained.append("bn1")
        frozen = [child for name, child in children if name not in trained]
    else:
        stages = [0] + [index for index, (_, child) in enumerate(children)
                        if getattr(child, "_is_cn", False)] + [len(children) - 1]
        n_layers = len(stages)
        first_trained = (len(children) if n_trainable == 0
                         else stages[max(n_layers - n_trainable, 0)])
        frozen = [child for _, child in children[:first_trained]]
    if n_trainable > n_layers:
        raise ValueError(
            f"trainable_layers={n_trainable}, but this detector's body has {n_layers} "
            f"layers to train (0 to {n_layers}).")
    for child in frozen:
        child.requires_grad_(False)
    return body


def torchvision_faster_rcnn(name, n_classes, *, state=None, frozen_batch_norm=False,
                            trainable_layers=None, source="the weights", **options):
    """torchvision's Faster R-CNN ``name``, its weights loaded, with a new box predictor.

    Parameters
    ----------
    name : str
        One of :func:`faster_rcnn_names`.
    n_classes : int
        Outputs of the new box predictor (``FastRCNNPredictor``), the
        background included.
    state : dict or None
        A whole-model state dict (any number of classes: the predictor it
        holds is replaced); None keeps the random initialization.
    frozen_batch_norm : bool
        Freeze the body's batch norm, as torchvision's pretrained detectors do.
    trainable_layers : int or None
        :func:`freeze_detector_body`'s rule; None trains the whole body.
    source : str
        How errors name the weights (e.g. the file).
    **options
        ``FasterRCNN`` keyword arguments (thresholds, proposal counts).
    """
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor

    from .backbones import BackboneWeightsError

    predictor_key = "roi_heads.box_predictor.cls_score.weight"
    n_weights_classes = 91  # COCO's, as torchvision's builders
    if state is not None and predictor_key in state and state[predictor_key].ndim == 2:
        n_weights_classes = int(state[predictor_key].shape[0])
    model = torchvision.models.get_model(name, weights=None, weights_backbone=None,
                                         num_classes=n_weights_classes, **options)
    if frozen_batch_norm:
        _frozen_batch_norm(model.backbone.body)
    if state is not None:
        target = model.state_dict()
        missing = [key for key in target if key not in state]
        unexpected = [key for key in state if key not in target
                      and not key.endswith("num_batches_tracked")]
        shapes = [f"{key} {tuple(state[key].shape)} instead of {tuple(target[key].shape)}"
                  for key in target if key in state and state[key].shape != target[key].shape]
        problems = [f"{len(found)} {what} (e.g. {found[:3]})" for found, what in (
            (missing, f"of its {len(target)} tensors missing"), (unexpected, "unexpected"),
            (shapes, "of another shape")) if found]
        if problems:
            raise BackboneWeightsError(
                f"{source} do not fit torchvision's {name}: {', '.join(problems)}. "
                f"weights= takes a whole {name} detector's state dict "
                f"(torchvision.models.get_model({name!r}).state_dict()); a classification "
                "network's weights go to a backbone body: backbone='<its name>', "
                "backbone_weights=<file>."
            )
        model.load_state_dict(state, strict=False)
    if trainable_layers is not None:
        freeze_detector_body(model.backbone.body, trainable_layers)
    in_features = model.roi_heads.box_predictor.cls_score.in_features
    model.roi_heads.box_predictor = FastRCNNPredictor(in_features, n_classes)
    return model
