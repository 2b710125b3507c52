"""Backbones and the image transform of skvision's Faster R-CNN detector.

torchvision's ``FasterRCNN`` takes any module with ``out_channels`` that maps
images to one feature map or an ordered dict of them (a feature pyramid);
these are the two skvision offers, and a transform that leaves image sizes
alone.
"""

from collections import OrderedDict

from torch import nn
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import FeaturePyramidNetwork

from .backbones import MultiScaleFeatures
from .blocks import ConvBlock

__all__ = ["KeepSizeTransform", "PretrainedDetectionBody", "small_cnn_body"]


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

