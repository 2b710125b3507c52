"""Plain PyTorch modules used by skvision's estimators.

Nothing in this sub-package imports scikit-learn: the modules can be used in a
hand-written PyTorch script as they are.
"""

from .backbones import (
    Backbone,
    BackboneClassifier,
    MultiScaleFeatures,
    build_backbone,
    list_backbones,
)
from .blocks import (
    ConvBlock,
    Downsample,
    GlobalAvgPool,
    MultiHeadSelfAttention,
    ResidualBlock,
    SelfAttention2d,
    global_pool,
)
from .cnn import CNN
from .style import FeatureTaps, content_loss, gram_matrix, style_loss, total_variation_loss
from .unet import CrossEntropyDiceLoss, DiceLoss, UNet

__all__ = [
    "Backbone",
    "BackboneClassifier",
    "MultiScaleFeatures",
    "build_backbone",
    "list_backbones",
    "content_loss",
    "global_pool",
    "gram_matrix",
    "style_loss",
    "total_variation_loss",
    "CNN",
    "CrossEntropyDiceLoss",
    "DiceLoss",
    "FeatureTaps",
    "ConvBlock",
    "Downsample",
    "GlobalAvgPool",
    "MultiHeadSelfAttention",
    "ResidualBlock",
    "SelfAttention2d",
    "UNet",
]
