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
)
from .cnn import CNN

__all__ = [
    "CNN",
    "ConvBlock",
    "Downsample",
    "GlobalAvgPool",
    "MultiHeadSelfAttention",
    "ResidualBlock",
    "SelfAttention2d",
]
