"""Plain PyTorch modules used by skvision's estimators.

Nothing in this sub-package imports scikit-learn: the modules can be used in a
hand-written PyTorch script as they are.
"""

from .blocks import (
    ConvBlock,
    Downsample,
    GlobalAvgPool,
    MultiHeadSelfAttention,
    ResidualBlock,
    SelfAttention2d,
    global_pool,
)
from .backbones import Backbone, BackboneClassifier, build_backbone
from .cnn import CNN

__all__ = [
    "Backbone",
    "BackboneClassifier",
    "build_backbone",
    "global_pool",
    "CNN",
    "ConvBlock",
    "Downsample",
    "GlobalAvgPool",
    "MultiHeadSelfAttention",
    "ResidualBlock",
    "SelfAttention2d",
]
