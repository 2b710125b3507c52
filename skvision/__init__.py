"""skvision: computer vision that drops into scikit-learn."""

from .classification import CNNClassifier, CNNRegressor

__version__ = "0.1.0"

__all__ = ["CNNClassifier", "CNNRegressor", "__version__"]
