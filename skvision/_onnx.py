"""Export to ONNX: a fitted skvision estimator, or a pipeline ending in scikit-learn steps.

The graph does what skvision's inference path does to an input array
(:func:`skvision._validation.check_image_data` then
:func:`skvision._torch.predict_batches`): flat rows reshaped, channels
moved first, uint8 and uint16 scaled to [0, 1], the resize of ``image_size``
(the one resize of :mod:`skvision.nn._resize`), then the
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
import io
import warnings

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

from ._net import output_probabilities
from ._pixels import scale_to_unit
from .nn._resize import resize_images

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

    def __init__(self, layout, image_shape, size):
        super().__init__()
        self.layout = layout
        self.image_shape = tuple(int(side) for side in image_shape)
        self.size = size

    def forward(self, x):
        if self.layout == "flat":
            x = x.reshape(-1, *self.image_shape)
        elif self.layout == "gray":
            x = x.unsqueeze(-1)
        if self.layout != "first":
            x = x.permute(0, 3, 1, 2)
        # predict's own scaling and resize (skvision._pixels), traced into the graph.
        x = scale_to_unit(x)
        if self.size is not None:
            x = resize_images(x, self.size)
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
    """Logits → (predicted index or indicator matrix, probabilities), as ``predict`` maps them.

    The probabilities come from :func:`skvision._net.output_probabilities`,
    the mapping every classifier's ``predict_proba`` uses.
    """

    def __init__(self, target_kind):
        super().__init__()
        self.target_kind = target_kind

    def forward(self, logits):
        logits = logits.float()
        probabilities = output_probabilities(logits, self.target_kind)
        if self.target_kind == "multilabel":
            return (logits > 0).long(), probabilities
        return logits.argmax(dim=1), probabilities


class _ScoresAt(torch.nn.Module):
    """Class scores resized back to the input images' size, as ``UNetSegmenter.predict`` does."""

    def __init__(self, size):
        super().__init__()
        self.size = tuple(int(side) for side in size)

    def forward(self, scores):
        return resize_images(scores.float(), self.size)


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
            f"{name} cannot be exported to ONNX: a detector returns a different number "
            "of boxes per image, and torchvision's Faster R-CNN exports only with a fixed "
            "batch size and image size (TorchScript exporter), not with the dynamic batch "
            "axis of skvision's export."
        )


def _torch_part(estimator, X_sample, X, layout):
    """The torch module, its output names and the labels to look its indices up in.

    ``X_sample`` as given, ``X`` its array and ``layout`` (:func:`_input_layout`).
    """
    from ._training import BaseNeuralEstimator, NeuralClassifierMixin, NeuralRegressorMixin
    from .classification import CNNClassifier, CNNRegressor
    from .segmentation import UNetSegmenter
    from .transfer import PretrainedFeatureExtractor, _FineTunedMixin

    _check_exportable(estimator)
    if isinstance(estimator, PretrainedFeatureExtractor):
        check_is_fitted(estimator, "backbone_")
        # The estimator's own checks of the sample (channels, shape), with its messages.
        estimator._check_data(X_sample, reset=False)
        image_shape = tuple(estimator.image_shape_)
        network = _Features(_float32_copy(estimator.backbone_), estimator._image_size,
                            estimator._pooling)
        images = _ImageInput(layout, image_shape, None)
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
    estimator._check_data(X_sample, reset=False)
    image_shape = tuple(estimator.image_shape_)
    network = _float32_copy(estimator.net_.module_)
    # What predict_batches resizes to (the fine-tuned models resize inside the network).
    sample_shape = _sample_image_shape(X, layout, image_shape)
    size = estimator._image_size()
    if isinstance(estimator, _FineTunedMixin) or size is None or sample_shape[:2] == size:
        size = None
    images = _ImageInput(layout, image_shape, size)
    if isinstance(estimator, UNetSegmenter):
        output = _Classes("masks")
        if size is not None:
            # Masks at the input's own size: the scores at image_size resized back.
            output = torch.nn.Sequential(_ScoresAt(sample_shape[:2]), output)
        return (_Exported(images, network, output), ["label", "probabilities"],
                estimator.classes_)
    if isinstance(estimator, NeuralClassifierMixin):
        multilabel = estimator._target_kind == "multilabel"
        return (_Exported(images, network, _Classes(estimator._target_kind)),
                ["label", "probabilities"], None if multilabel else estimator.classes_)
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


def _dynamic_batch(model):
    """Whether the model's input and outputs keep a symbolic batch axis."""
    values = list(model.graph.input) + list(model.graph.output)
    return all(value.type.tensor_type.shape.dim[0].dim_param for value in values)


def _export_torch(module, X, output_names):
    """``torch.onnx.export`` of ``module`` on the sample, the batch axis dynamic.

    torch's default exporter (``dynamo=True``: ``torch.export`` then
    onnxscript) first; the TorchScript exporter (``dynamo=False``) where it
    fails or fixes the batch size.
    """
    onnx = _require_onnx()
    # Two images: torch.export specializes a batch axis of size 1.
    sample = torch.from_numpy(np.ascontiguousarray(np.concatenate([X[:1], X[:1]])))
    with warnings.catch_warnings():
        # The exporters' notes on their own progress and deprecations, not the user's concern.
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(
                module, (sample,), input_names=["X"], output_names=output_names,
                dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
                opset_version=OPSET, dynamo=True, external_data=False, verbose=False,
                report=False,
            )
            model = program.model_proto
            if _dynamic_batch(model):
                return _mark_exporter(model, "dynamo")
            failure = "it fixed the batch size"
        except Exception as error:  # any failure: the other exporter may succeed
            failure = f"{type(error).__name__}: {error}"
        buffer = io.BytesIO()
        try:
            torch.onnx.export(
                module, (sample,), buffer, input_names=["X"], output_names=output_names,
                dynamic_axes={name: {0: "batch"} for name in ["X", *output_names]},
                opset_version=OPSET, dynamo=False,
            )
        except Exception as error:
            raise RuntimeError(
                f"torch.onnx.export could not export {type(module.network).__name__}: the "
                f"default exporter failed ({failure}), and the TorchScript exporter too "
                f"({type(error).__name__}: {error})."
            ) from error
    model = onnx.load_from_string(buffer.getvalue())
    if not _dynamic_batch(model):
        raise RuntimeError(
            f"torch.onnx.export fixed the batch size of {type(module.network).__name__}'s "
            "graph; the network's code converts the batch size to a Python int."
        )
    return _mark_exporter(model, "torchscript")


def _mark_exporter(model, exporter):
    """Record which of torch's exporters made the graph (metadata ``skvision_exporter``)."""
    entry = model.metadata_props.add()
    entry.key, entry.value = "skvision_exporter", exporter
    return model


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
    module, output_names, classes = _torch_part(estimator, X_sample, X, layout)
    model = _export_torch(module, X, output_names)
    if classes is not None:
        model = _label_lookup(model, classes)
    model.producer_name = "skvision"
    return model


# --------------------------------------------------------------------------
# Pipelines: the skvision step exported, the scikit-learn steps by skl2onnx, merged.


def _pipeline_steps(pipeline, prefix=""):
    """``(name, step)`` of a pipeline, nested pipelines flattened, passthrough left out."""
    from sklearn.pipeline import Pipeline

    steps = []
    for name, step in pipeline.steps:
        if step is None or (isinstance(step, str) and step == "passthrough"):
            continue
        if isinstance(step, Pipeline):
            steps += _pipeline_steps(step, f"{prefix}{name}__")
        else:
            steps.append((f"{prefix}{name}", step))
    return steps


def _is_skvision(step):
    return type(step).__module__.split(".")[0] == "skvision"


def _rename(graph, old, new):
    """Rename the value ``old`` to ``new`` everywhere in ``graph`` (not in subgraphs)."""
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        if value.name == old:
            value.name = new


def _export_pipeline(pipeline, X_sample):
    onnx = _require_onnx()
    from sklearn.base import is_classifier
    from sklearn.pipeline import Pipeline

    steps = _pipeline_steps(pipeline)
    if not steps:
        raise ValueError("The pipeline has no steps to export.")
    for name, step in steps:
        _check_exportable(step, where=f" (pipeline step {name!r})")
    (first_name, first), rest = steps[0], steps[1:]
    if not _is_skvision(first):
        raise ValueError(
            f"The pipeline's first step {first_name!r} ({type(first).__name__}) is not a "
            "skvision estimator: to_onnx exports pipelines whose first step takes the images "
            "(e.g. PretrainedFeatureExtractor), followed by scikit-learn steps. Convert "
            "pipelines of scikit-learn steps only with skl2onnx.to_onnx."
        )
    later = [(name, step) for name, step in rest if _is_skvision(step)]
    if later:
        name, step = later[0]
        raise NotImplementedError(
            f"Pipeline step {name!r} ({type(step).__name__}) cannot be exported: only the "
            "first step of an exported pipeline may be a skvision estimator (it takes the "
            "images); the steps after it must be scikit-learn steps skl2onnx converts."
        )
    from .transfer import PretrainedFeatureExtractor

    if rest and not isinstance(first, PretrainedFeatureExtractor):
        raise NotImplementedError(
            f"Pipeline step {first_name!r} ({type(first).__name__}) is followed by other "
            "steps; only a PretrainedFeatureExtractor (whose output is features) can feed "
            "scikit-learn steps in an exported pipeline."
        )
    head = _export_estimator(first, X_sample)
    if not rest:
        return head
    try:
        import skl2onnx
        from skl2onnx.common.data_types import FloatTensorType
    except ImportError as error:  # pragma: no cover - the "onnx" extra installs it
        raise ImportError(
            "Exporting a pipeline with scikit-learn steps needs skl2onnx: "
            "pip install 'scikit-vision[onnx]'."
        ) from error
    tail_steps = [step for _, step in rest]
    last = tail_steps[-1]
    options = {id(last): {"zipmap": False}} if is_classifier(last) else None
    tail = skl2onnx.to_onnx(
        Pipeline([(name, step) for name, step in rest]),
        initial_types=[("features", FloatTensorType([None, first.n_features_out_]))],
        target_opset={"": OPSET, "ai.onnx.ml": 3}, options=options,
    )
    return _merge(onnx, head, tail)


def _merge(onnx, head, tail):
    """``tail`` (input "features") fed by ``head``'s output "features": one model."""
    from onnx import compose

    outputs = [output.name for output in tail.graph.output]
    tail = compose.add_prefix(tail, "sklearn_")
    head = compose.add_prefix(head, "skvision_")
    ir_version = max(head.ir_version, tail.ir_version)
    head.ir_version = tail.ir_version = ir_version
    domains = {entry.domain: entry.version for entry in head.opset_import}
    for entry in tail.opset_import:
        domains[entry.domain] = max(entry.version, domains.get(entry.domain, 0))
    for model in (head, tail):
        del model.opset_import[:]
        model.opset_import.extend(
            onnx.helper.make_opsetid(domain, version) for domain, version in domains.items())
    merged = compose.merge_models(head, tail, io_map=[("skvision_features", "sklearn_features")])
    del merged.opset_import[:]
    merged.opset_import.extend(
        onnx.helper.make_opsetid(domain, version) for domain, version in domains.items())
    _rename(merged.graph, "skvision_X", "X")
    for name in outputs:
        _rename(merged.graph, f"sklearn_{name}", name)
    merged.producer_name = "skvision"
    onnx.checker.check_model(merged)
    return merged


def to_onnx(estimator, X_sample):
    """Export a fitted skvision estimator, or a pipeline starting with one, to ONNX.

    The graph takes arrays of ``X_sample``'s dtype and layout, with a
    dynamic batch axis (height, width and channels are ``X_sample``'s):
    uint8 images ``(n, h, w, c)`` stay uint8, float images float, grayscale
    ``(n, h, w)`` and flat rows ``(n, h*w*c)`` (with the estimator's
    ``image_shape``) keep their form. Everything skvision does to an input
    array at prediction is inside it: the reshape of flat rows, channels
    moved first, uint8 and uint16 scaled to [0, 1], the resize to ``image_size``, a
    pretrained backbone's own resize and normalization, the network, and
    the output step. The network runs in float32 whatever the estimator's
    ``precision_`` (its ``predict`` may use bfloat16 or float16 on some
    hardware; the exported model matches ``precision="32"``).

    Outputs, named as skl2onnx names them (``options={"zipmap": False}``):

    * classifiers: ``label`` (shape ``(n,)``, in the values of ``classes_``:
      int64 for integer labels, strings for string labels; with multilabel
      ``y`` the int64 indicator matrix) and ``probabilities``
      ``(n, n_classes)``;
    * regressors: ``variable``, ``(n, n_outputs)`` (``(n, 1)`` for one target);
    * :class:`PretrainedFeatureExtractor`: ``features``, ``(n, n_features_out_)``;
    * :class:`UNetSegmenter`: ``label`` ``(n, h, w)``, the class of every pixel,
      and ``probabilities`` ``(n, n_classes, h, w)``, at the input's size
      (with ``image_size``, the scores resized back to it, as ``predict``).

    A :class:`~sklearn.pipeline.Pipeline` whose first step is a skvision
    estimator (a :class:`PretrainedFeatureExtractor` when other steps
    follow) and whose other steps are scikit-learn's becomes one model whose
    input is the images: the scikit-learn steps are converted by skl2onnx
    (classifiers without ZipMap) and joined to the exported network.

    Parameters
    ----------
    estimator : fitted estimator or Pipeline
        A fitted :class:`CNNClassifier`, :class:`CNNRegressor`,
        :class:`VisionTransformerClassifier`,
        :class:`VisionTransformerRegressor`, :class:`FineTunedClassifier`,
        :class:`FineTunedRegressor`, :class:`PretrainedFeatureExtractor` or
        :class:`UNetSegmenter`, or a fitted pipeline starting with one.
        :class:`StyleTransfer` (an optimization per image), the augmenters
        (random, for training) and :class:`FasterRCNNDetector` (a varying
        number of boxes per image) raise ``NotImplementedError``.
    X_sample : ndarray
        A few input images, in the dtype and layout the model will be given
        (not file paths: the graph takes decoded images).

    Returns
    -------
    model : onnx.ModelProto
        Opset 18; one input ``X``. Run it with onnxruntime:
        ``onnxruntime.InferenceSession(model.SerializeToString()).run(None, {"X": images})``.

    Examples
    --------
    >>> import onnxruntime
    >>> from skvision import CNNClassifier, to_onnx
    >>> from skvision.datasets import load_digit_images
    >>> X, y = load_digit_images(return_X_y=True)
    >>> clf = CNNClassifier(filters=(8,), epochs=1, precision="32", random_state=0)
    >>> clf = clf.fit(X[:100], y[:100])
    >>> model = to_onnx(clf, X[:5])
    >>> session = onnxruntime.InferenceSession(model.SerializeToString())
    >>> label, probabilities = session.run(None, {"X": X[:3]})
    >>> probabilities.shape
    (3, 10)
    """
    from sklearn.pipeline import Pipeline

    if isinstance(estimator, Pipeline):
        return _export_pipeline(estimator, X_sample)
    return _export_estimator(estimator, X_sample)
