"""skvision: computer vision that drops into scikit-learn."""

from ._persistence import load, save
from .attention import VisionTransformerClassifier
from .augmentation import AugmentationSampler, ImageAugmenter
from .boosting import BoostedTreesClassifier, BoostedTreesRegressor
from .classification import CNNClassifier, CNNRegressor
from .detection import FasterRCNNDetector
from .segmentation import UNetSegmenter
from .style import StyleTransfer
from .transfer import FineTunedClassifier, PretrainedFeatureExtractor

__version__ = "0.1.0"

__all__ = [
    "AugmentationSampler",
    "BoostedTreesClassifier",
    "BoostedTreesRegressor",
    "CNNClassifier",
    "CNNRegressor",
    "FasterRCNNDetector",
    "FineTunedClassifier",
    "ImageAugmenter",
    "PretrainedFeatureExtractor",
    "StyleTransfer",
    "UNetSegmenter",
    "VisionTransformerClassifier",
    "__version__",
    "load",
    "save",
]
