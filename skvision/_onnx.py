"""Export to ONNX: a fitted skvision estimator, or a pipeline ending in scikit-learn steps.

The graph does what skvision's inference path does to an input array
(:func:`skvision._validation.check_image_data` then
:func:`skvision._torch.predict_batches`): flat rows reshaped, channels
moved first, uint8 scaled to [0, 1], the resize of ``image_size``, then the
fitted network (a pretrained backbone's own resize and normalization
included) and the estimator's output step (softmax, label lookup, the
regressor's target scaling). The torch part is a small wrapper module around
the fitted network, exported by ``torch.onnx.export``; the label lookup is
added to the ONNX graph afterwards (a ``Gather`` on the constant
``classes_``, so string labels work too). Steps of scikit-learn that follow
in a pipeline are converted by skl2onnx and joined to the exported graph
with ``onnx.compose.merge_models``: one model whose input is the images.
"""

import copy
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils.validation import check_is_fitted

__all__ = ["to_onnx"]

# Opset 18: Resize's antialias attribute (the bilinear resizes with antialiasing).
OPSET = 18
# IR version onnxruntime 1.17 and later read; both halves of a pipeline get it.
IR_VERSION = 9


def _require_onnx():
    try:
        import onnx
    except ImportError as error:  # pragma: no cover - the "onnx" extra installs it
        raise ImportError(
            "ONNX export needs the onnx package (and onnxscript for torch's exporter; "
            "skl2onnx for pipelines): pip install 'scikit-vision[onnx]'."
        ) from error
    return onnx


# --------------------------------------------------------------------------
# The input: X_sample's dtype and layout, one dynamic batch axis.


def _input_layout(estimator, X_sample):
    """``(array, layout)`` of ``X_sample``: layout "flat", "gray", "last" or "first"."""
    if isinstance(X_sample, torch.Tensor):
        return X_sample.detach().cpu().numpy(), "first"
    if isinstance(X_sample, (list, tuple)) or not hasattr(X_sample, "ndim"):
        raise TypeError(
            "to_onnx needs X_sample as a numpy array of images (n, h, w, c), (n, h, w) or "
            f"flat rows (n, h*w*c); got {type(X_sample).__name__}. The graph takes decoded "
            "images: read image files into an array first."
        )
    X = np.asarray(X_sample)
    if X.dtype.kind not in "uif":
        raise TypeError(
            f"to_onnx needs X_sample as an array of numbers (uint8 or float images); got "
            f"dtype {X.dtype}."
        )
    if X.ndim == 2:
        return X, "flat"
    if X.ndim == 3:
        return X, "gray"
    if X.ndim == 4:
        return X, "first" if getattr(estimator, "channels", "last") == "first" else "last"
    raise ValueError(f"X_sample must have 2, 3 or 4 dimensions; got shape {X.shape}.")


class _ImageInput(torch.nn.Module):
    """An input array of the sample's layout → float32 ``(n, c, h, w)`` in [0, 1], resized."""

    def __init__(self, layout, image_shape, uint8, size):
        super().__init__()
        self.layout = layout
        self.image_shape = tuple(int(side) for side in image_shape)
        self.uint8 = uint8
        self.size = size

    def forward(self, x):
        if self.layout == "flat":
            x = x.reshape(-1, *self.image_shape)
        elif self.layout == "gray":
            x = x.unsqueeze(-1)
        if self.layout != "first":
            x = x.permute(0, 3, 1, 2)
        x = x.float() / 255 if self.uint8 else x.float()
        if self.size is not None and tuple(x.shape[-2:]) != tuple(self.size):
            x = F.interpolate(x, size=tuple(self.size), mode="bilinear", antialias=True,
                              align_corners=False)
        return x


class _Exported(torch.nn.Module):
    """The input step, then the network, then the estimator's output step."""

    def __init__(self, images, network, output):
        super().__init__()
        self.images = images
        self.network = network
        self.output = output

    def forward(self, x):
        return self.output(self.network(self.images(x)))


class _Classes(torch.nn.Module):
    """Logits → (index of the most probable class, probabilities); sigmoids for multilabel."""

    def __init__(self, multilabel, axis=1):
        super().__init__()
        self.multilabel = multilabel
        self.axis = axis

    def forward(self, logits):
        logits = logits.float()
        if self.multilabel:
            return (logits > 0).long(), torch.sigmoid(logits)
        return logits.argmax(dim=self.axis), torch.softmax(logits, dim=self.axis)


class _Targets(torch.nn.Module):
    """Standardized outputs → targets in their own scale, ``(n, n_outputs)``."""

    def __init__(self, mean, scale):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(np.asarray(mean), dtype=torch.float32))
        self.register_buffer("scale", torch.as_tensor(np.asarray(scale), dtype=torch.float32))

    def forward(self, outputs):
        return outputs.float() * self.scale + self.mean


class _Features(torch.nn.Module):
    """A backbone's preprocessing and pooling: the extractor's ``transform``."""

    def __init__(self, backbone, image_size, pooling):
        super().__init__()
        self.backbone = backbone
        self.image_size = image_size
        self.pooling = pooling

    def forward(self, x):
        return self.backbone.pool(self.backbone.preprocessing(x, self.image_size), self.pooling)


def _float32_copy(module):
    """The fitted network as a float32 CPU copy in eval mode (the estimator is left as it is)."""
    module = copy.deepcopy(module).cpu().float().eval()
    # The training layout is a speed choice; the exported graph is the same either way.
    return module.to(memory_format=torch.contiguous_format)


# --------------------------------------------------------------------------
# One skvision estimator → (torch module, outputs, classes).


def _check_exportable(estimator, where=""):
    from .augmentation import AugmentationSampler, ImageAugmenter
    from .detection import FasterRCNNDetector
    from .style import StyleTransfer

    name = type(estimator).__name__ + where
    if isinstance(estimator, StyleTransfer):
        raise NotImplementedError(
            f"{name} cannot be exported to ONNX: its transform optimizes every image "
            "(gradient steps on the pixels), which is no fixed graph."
        )
    if isinstance(estimator, (ImageAugmenter, AugmentationSampler)):
        raise NotImplementedError(
            f"{name} cannot be exported to ONNX: it draws random augmentations, for "
            "training only. Export the pipeline without it (e.g. a fitted pipeline's "
            "steps after it)."
        )
    if isinstance(estimator, FasterRCNNDetector):
        raise NotImplementedError(
            f"{name} cannot be exported to ONNX: a detector's output has a different "
            "number of boxes per image (torchvision's Faster R-CNN export needs a "
            "batch of one image and fixed image sizes, outside skvision's API)."
        )


def _torch_part(estimator, X, layout):
    """The torch module, its output names and the labels to look its indices up in."""
    from .classification import CNNClassifier, CNNRegressor
    from .segmentation import UNetSegmenter
    from .transfer import PretrainedFeatureExtractor, _FineTunedMixin

    _check_exportable(estimator)
    from ._training import BaseNeuralEstimator, NeuralClassifierMixin, NeuralRegressorMixin

    image_shape = tuple(estimator.image_shape_) if hasattr(estimator, "image_shape_") else None
    if isinstance(estimator, PretrainedFeatureExtractor):
        check_is_fitted(estimator, "backbone_")
        network = _Features(_float32_copy(estimator.backbone_), estimator._image_size,
                            estimator._pooling)
        images = _ImageInput(layout, image_shape, X.dtype == np.uint8, None)
        return _Exported(images, network, torch.nn.Identity()), ["features"], None
    if not isinstance(estimator, BaseNeuralEstimator) or not isinstance(
            estimator, (CNNClassifier, CNNRegressor, UNetSegmenter, _FineTunedMixin)
            + _vision_transformers()):
        raise NotImplementedError(
            f"{type(estimator).__name__} has no ONNX export; skvision exports "
            "CNNClassifier, CNNRegressor, VisionTransformerClassifier, "
            "VisionTransformerRegressor, FineTunedClassifier, FineTunedRegressor, "
            "PretrainedFeatureExtractor and UNetSegmenter (and pipelines that start with one "
            "of them followed by scikit-learn steps)."
        )
    check_is_fitted(estimator, "net_")
    network = _float32_copy(estimator.net_.module_)
    # What predict_batches resizes to (the fine-tuned models resize inside the network).
    sample_shape = _sample_image_shape(X, layout, image_shape)
    size = estimator._image_size()
    if isinstance(estimator, _FineTunedMixin) or size is None or sample_shape[:2] == size:
        size = None
    images = _ImageInput(layout, image_shape, X.dtype == np.uint8, size)
    if isinstance(estimator, UNetSegmenter):
        return (_Exported(images, network, _Classes(False)), ["label", "probabilities"],
                estimator.classes_)
    if isinstance(estimator, NeuralClassifierMixin):
        multilabel = estimator._target_kind == "multilabel"
        return (_Exported(images, network, _Classes(multilabel)), ["label", "probabilities"],
                None if multilabel else estimator.classes_)
    if isinstance(estimator, NeuralRegressorMixin):
        output = _Targets(estimator.y_mean_, estimator.y_scale_)
        return _Exported(images, network, output), ["variable"], None
    raise NotImplementedError(f"{type(estimator).__name__} has no ONNX export.")


def _vision_transformers():
    from .attention import VisionTransformerClassifier, VisionTransformerRegressor

    return (VisionTransformerClassifier, VisionTransformerRegressor)


def _sample_image_shape(X, layout, image_shape):
    """(h, w, c) of the sample's images."""
    if layout == "flat":
        return tuple(image_shape)
    if layout == "gray":
        return (*X.shape[1:], 1)
    if layout == "first":
        return (X.shape[2], X.shape[3], X.shape[1])
    return tuple(X.shape[1:])


def _export_torch(module, X, output_names):
    """``torch.onnx.export`` of ``module`` on the sample, the batch axis dynamic."""
    onnx = _require_onnx()
    sample = torch.from_numpy(np.ascontiguousarray(X[:2] if len(X) >= 2 else X))
    batch = torch.export.Dim("batch", min=1)
    with warnings.catch_warnings():
        # The exporter's notes on its own progress and deprecations, not the user's concern.
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module, (sample,), input_names=["X"], output_names=output_names,
            dynamic_shapes=({0: batch},), opset_version=OPSET, dynamo=True,
            external_data=False, verbose=False,
        )
    return program.model_proto


def _label_lookup(model, classes):
    """Replace the output ``label`` (class indices) by the labels: a Gather on ``classes``."""
    onnx = _require_onnx()
    from onnx import helper, numpy_helper

    graph = model.graph
    classes = np.asarray(classes)
    if classes.dtype.kind in "iub":
        values = classes.astype(np.int64)
    elif classes.dtype.kind == "f":
        values = classes.astype(np.float64) if classes.dtype == np.float64 else classes
    else:
        values = np.array([str(label) for label in classes], dtype=object)
    index_name = "label_index"
    for node in graph.node:
        node.output[:] = [index_name if name == "label" else name for name in node.output]
    constant = numpy_helper.from_array(values, name="classes")
    graph.node.append(helper.make_node("Constant", [], ["classes_constant"], value=constant))
    graph.node.append(helper.make_node("Gather", ["classes_constant", index_name], ["label"],
                                       axis=0))
    output = next(output for output in graph.output if output.name == "label")
    output.type.tensor_type.elem_type = helper.np_dtype_to_tensor_dtype(values.dtype)
    return onnx.shape_inference.infer_shapes(model)


def _export_estimator(estimator, X_sample):
    X, layout = _input_layout(estimator, X_sample)
    module, output_names, classes = _torch_part(estimator, X, layout)
    model = _export_torch(module, X, output_names)
    if classes is not None:
        model = _label_lookup(model, classes)
    model.producer_name = "skvision"
    return model
