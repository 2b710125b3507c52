"""skvision.to_onnx: onnxruntime gives skvision's own predictions, at any batch size.

Tiny networks and one epoch: the point is the graph (input step, network,
output step), not the accuracy. Every estimator runs in float32
(``precision="32"``), the precision the graph is exported in.
"""

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skvision import (
    CNNClassifier,
    CNNRegressor,
    FasterRCNNDetector,
    FineTunedClassifier,
    FineTunedRegressor,
    ImageAugmenter,
    PretrainedFeatureExtractor,
    StyleTransfer,
    UNetSegmenter,
    VisionTransformerClassifier,
    VisionTransformerRegressor,
    to_onnx,
)
from skvision.datasets import load_digit_images, make_shapes

BATCH_SIZES = (1, 5)
# A timm test network with random weights: no download, fast at 32 px.
BACKBONE = dict(backbone="test_efficientnet.r160_in1k", weights=False)
TRAINING = dict(epochs=1, device="cpu", precision="32", random_state=0)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digit_images(return_X_y=True)
    return X[:60], y[:60]  # float32 (n, 8, 8), integer labels


@pytest.fixture(scope="module")
def shapes():
    X, y = make_shapes(n_samples=30, image_size=16, random_state=0)
    return X, y  # uint8 (n, 16, 16, 3), string labels


def _session(model):
    return onnxruntime.InferenceSession(model.SerializeToString(),
                                        providers=["CPUExecutionProvider"])


def _input_type(model):
    return onnx.helper.tensor_dtype_to_np_dtype(model.graph.input[0].type.tensor_type.elem_type)


def _exporter(model):
    return {entry.key: entry.value for entry in model.metadata_props}["skvision_exporter"]


def _check_classifier(model, estimator, X):
    # torch's default exporter, not the fallback, made every graph of these tests.
    assert _exporter(model) == "dynamo"
    assert [output.name for output in model.graph.output] == ["label", "probabilities"]
    session = _session(model)
    differences = []
    for n in BATCH_SIZES:
        label, probabilities = session.run(None, {"X": X[:n]})
        expected = estimator.predict_proba(X[:n])
        assert probabilities.shape == expected.shape
        differences.append(float(np.abs(probabilities - expected).max()))
        np.testing.assert_array_equal(label, estimator.predict(X[:n]))
    assert max(differences) <= 1e-4, differences
    return differences


def _check_regressor(model, estimator, X):
    assert [output.name for output in model.graph.output] == ["variable"]
    assert _exporter(model) == "dynamo"
    session = _session(model)
    for n in BATCH_SIZES:
        (variable,) = session.run(None, {"X": X[:n]})
        expected = estimator.predict(X[:n]).reshape(n, -1)
        assert variable.shape == expected.shape
        np.testing.assert_allclose(variable, expected, rtol=1e-4, atol=1e-4)


def test_cnn_classifier_float_grayscale(digits):
    X, y = digits
    clf = CNNClassifier(filters=(4, 8), **TRAINING).fit(X, y)
    model = to_onnx(clf, X[:5])
    assert _input_type(model) == np.float32
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.INT64
    _check_classifier(model, clf, X)
    # The sample is checked as predict checks its images.
    with pytest.raises(ValueError, match="channel"):
        to_onnx(clf, np.zeros((2, 8, 8, 3), np.float32))


def test_cnn_classifier_uint8_string_labels_and_resize(shapes):
    X, y = shapes
    clf = CNNClassifier(filters=(4,), image_size=12, **TRAINING).fit(X, y)
    model = to_onnx(clf, X[:5])
    # uint8 stays uint8; scaling and the antialiased resize are inside the graph.
    assert _input_type(model) == np.uint8
    assert "Resize" in {node.op_type for node in model.graph.node}
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.STRING
    _check_classifier(model, clf, X)


def test_cnn_regressor_multi_output_flat_rows(shapes):
    X, _ = shapes
    # Flat uint8 rows with image_shape: the reshape is in the graph.
    flat = X.reshape(len(X), -1)
    y = np.random.default_rng(0).normal(size=(len(X), 2)) * 10 + 3
    reg = CNNRegressor(filters=(4,), image_shape=(16, 16, 3), **TRAINING).fit(flat, y)
    model = to_onnx(reg, flat[:5])
    assert _input_type(model) == np.uint8
    _check_regressor(model, reg, flat)


def test_torchscript_exporter_where_the_default_one_fails(digits, monkeypatch):
    X, y = digits
    clf = CNNClassifier(filters=(4,), **TRAINING).fit(X, y)
    export = torch.onnx.export

    def failing_default_exporter(*args, dynamo=True, **kwargs):
        if dynamo:
            raise RuntimeError("the default exporter failed")
        return export(*args, dynamo=dynamo, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", failing_default_exporter)
    model = to_onnx(clf, X[:5])
    assert _exporter(model) == "torchscript"
    for n in BATCH_SIZES:
        label, probabilities = _session(model).run(None, {"X": X[:n]})
        assert np.abs(probabilities - clf.predict_proba(X[:n])).max() <= 1e-4
        np.testing.assert_array_equal(label, clf.predict(X[:n]))


def test_vision_transformers(digits):
    X, y = digits
    vit = dict(embed_dim=8, depth=1, n_heads=2, **TRAINING)
    clf = VisionTransformerClassifier(**vit).fit(X, y)
    _check_classifier(to_onnx(clf, X[:5]), clf, X)
    reg = VisionTransformerRegressor(**vit).fit(X, y.astype(float))
    _check_regressor(to_onnx(reg, X[:5]), reg, X)


def test_fine_tuned_models(shapes):
    X, y = shapes
    # The backbone's resize (16 to 24 px) and normalization are in the graph.
    clf = FineTunedClassifier(image_size=24, **BACKBONE, **TRAINING)
    clf.fit(X, y)
    _check_classifier(to_onnx(clf, X[:5]), clf, X)
    # Downsizing (16 to 12 px) with the backbone's antialiased bicubic: the
    # exported Resize uses the same kernel (cubic_coeff_a=-0.5, exclude_outside).
    small = FineTunedClassifier(image_size=12, **BACKBONE, **TRAINING).fit(X, y)
    assert small.module_.backbone.preprocessing.interpolation == "bicubic"
    _check_classifier(to_onnx(small, X[:5]), small, X)
    reg = FineTunedRegressor(image_size=24, **BACKBONE, **TRAINING)
    reg.fit(X, np.arange(len(X), dtype=float))
    _check_regressor(to_onnx(reg, X[:5]), reg, X)


def test_feature_extractor(shapes):
    X, _ = shapes
    # 32 px images downsampled to 24 px (antialiased) and normalized inside the graph
    # (test_fine_tuned_models upsamples).
    images = np.repeat(np.repeat(X, 2, axis=1), 2, axis=2)
    extractor = PretrainedFeatureExtractor(image_size=24, device="cpu", **BACKBONE).fit(images)
    model = to_onnx(extractor, images[:5])
    assert [output.name for output in model.graph.output] == ["features"]
    assert _exporter(model) == "dynamo"
    session = _session(model)
    for n in BATCH_SIZES:
        (features,) = session.run(None, {"X": images[:n]})
        expected = extractor.transform(images[:n])
        assert features.shape == (n, extractor.n_features_out_)
        assert np.abs(features - expected).max() <= 1e-3 * np.abs(expected).max()


def test_unet_segmenter():
    X, masks = make_shapes(n_samples=12, image_size=16, task="segmentation", random_state=0)
    masks = masks * 10 + 1  # label values that are not indices
    segmenter = UNetSegmenter(depth=2, base_filters=4, **TRAINING).fit(X, masks)
    model = to_onnx(segmenter, X[:5])
    assert _exporter(model) == "dynamo"
    session = _session(model)
    for n in BATCH_SIZES:
        label, probabilities = session.run(None, {"X": X[:n]})
        expected = segmenter.predict_proba(X[:n])
        assert probabilities.shape == expected.shape == (n, len(segmenter.classes_), 16, 16)
        assert np.abs(probabilities - expected).max() <= 1e-3 * np.abs(expected).max()
        np.testing.assert_array_equal(label, segmenter.predict(X[:n]))


def test_unet_segmenter_with_image_size_answers_at_the_input_size():
    """As predict: the scores at image_size are resized back to the input's 16 px."""
    X, masks = make_shapes(n_samples=8, image_size=16, task="segmentation", random_state=0)
    segmenter = UNetSegmenter(depth=1, base_filters=4, image_size=12, **TRAINING).fit(X, masks)
    label, probabilities = _session(to_onnx(segmenter, X[:2])).run(None, {"X": X[:5]})
    expected = segmenter.predict_proba(X[:5])
    assert probabilities.shape == expected.shape == (5, len(segmenter.classes_), 16, 16)
    assert np.abs(probabilities - expected).max() <= 1e-3 * np.abs(expected).max()
    np.testing.assert_array_equal(label, segmenter.predict(X[:5]))


def test_extractor_scaler_logistic_regression_pipeline(shapes):
    X, y = shapes
    pipeline = make_pipeline(PretrainedFeatureExtractor(image_size=32, device="cpu", **BACKBONE),
                             StandardScaler(), LogisticRegression(max_iter=200)).fit(X, y)
    model = to_onnx(pipeline, X[:5])
    # One model whose one input is the uint8 images.
    assert [value.name for value in model.graph.input] == ["X"]
    assert _input_type(model) == np.uint8
    differences = _check_classifier(model, pipeline, X)
    assert max(differences) <= 1e-4


def test_what_cannot_be_exported(shapes):
    X, y = shapes
    style = StyleTransfer()
    with pytest.raises(NotImplementedError, match="StyleTransfer cannot be exported"):
        to_onnx(style, X[:2])
    pipeline = make_pipeline(ImageAugmenter(random_state=0), CNNClassifier(filters=(4,), **TRAINING))
    with pytest.raises(NotImplementedError, match="ImageAugmenter .pipeline step 'imageaugmenter'"):
        to_onnx(pipeline, X[:2])
    with pytest.raises(NotImplementedError, match="FasterRCNNDetector cannot be exported"):
        to_onnx(FasterRCNNDetector(), X[:2])
    # A skvision step after a scikit-learn step, and one after the extractor.
    with pytest.raises(ValueError, match="first step 'standardscaler'"):
        to_onnx(make_pipeline(StandardScaler(), CNNClassifier()), X[:2])
    with pytest.raises(NotImplementedError, match="step 'cnnclassifier'"):
        to_onnx(make_pipeline(PretrainedFeatureExtractor(), CNNClassifier()), X[:2])
    with pytest.raises(NotFittedError):
        to_onnx(CNNClassifier(), X[:2])
    with pytest.raises(TypeError, match="file paths|array of images"):
        to_onnx(CNNClassifier(), ["a.png", "b.png"])
