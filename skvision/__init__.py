"""skvision: computer vision that drops into scikit-learn."""

from ._onnx import to_onnx
from ._persistence import ModelFileError, load, save
from ._version import __version__
from .attention import VisionTransformerClassifier, VisionTransformerRegressor
from .augmentation import AugmentationSampler, ImageAugmenter
from .boosting import BoostedTreesClassifier, BoostedTreesRegressor
from .classification import CNNClassifier, CNNRegressor
from .detection import FasterRCNNDetector
from .segmentation import UNetSegmenter
from .style import StyleTransfer
from .transfer import FineTunedClassifier, FineTunedRegressor, PretrainedFeatureExtractor

__all__ = [
    "AugmentationSampler",
    "BoostedTreesClassifier",
    "BoostedTreesRegressor",
    "CNNClassifier",
    "CNNRegressor",
    "FasterRCNNDetector",
    "FineTunedClassifier",
    "FineTunedRegressor",
    "ImageAugmenter",
    "ModelFileError",
    "PretrainedFeatureExtractor",
    "StyleTransfer",
    "UNetSegmenter",
    "VisionTransformerClassifier",
    "VisionTransformerRegressor",
    "__version__",
    "load",
    "save",
    "to_onnx",
]
