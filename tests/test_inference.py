"""The one inference entry point, for every torch estimator and map method.

Every ``predict``, ``predict_proba``, ``transform`` and map method must read
its batches through ``skvision._torch.predict_batches``; through it, a batch
that runs out of memory is retried at half the size, and eight threads
calling at once get what one thread gets.
"""

import threading
import warnings

import numpy as np
import pytest
import torch

import skvision._torch
from skvision import (
    CNNClassifier,
    CNNRegressor,
    FasterRCNNDetector,
    FineTunedClassifier,
    FineTunedRegressor,
    PretrainedFeatureExtractor,
    UNetSegmenter,
    VisionTransformerClassifier,
    VisionTransformerRegressor,
)
from skvision.datasets import load_digit_images, make_shapes

NEURAL = dict(epochs=1, batch_size=16, device="cpu", random_state=0)


@pytest.fixture(scope="module")
def fitted():
    X, y = load_digit_images(return_X_y=True)
    X, y = X[:48], y[:48]
    boxes_X, targets = make_shapes(8, image_size=32, task="detection", random_state=0)
    tiny_vit = dict(embed_dim=8, depth=1, n_heads=2)
    tiny_backbone = dict(backbone="test_efficientnet", weights=False, image_size=16)
    return {
        "CNNClassifier": (CNNClassifier(filters=(4,), **NEURAL).fit(X, y), X),
        "CNNRegressor": (CNNRegressor(filters=(4,), **NEURAL).fit(X, y), X),
        "VisionTransformerClassifier": (
            VisionTransformerClassifier(**tiny_vit, **NEURAL).fit(X, y), X),
        "VisionTransformerRegressor": (
            VisionTransformerRegressor(**tiny_vit, **NEURAL).fit(X, y), X),
        "FineTunedClassifier": (FineTunedClassifier(**tiny_backbone, **NEURAL).fit(X, y), X),
        "FineTunedRegressor": (FineTunedRegressor(**tiny_backbone, **NEURAL).fit(X, y), X),
        "UNetSegmenter": (UNetSegmenter(depth=1, base_filters=4, **NEURAL).fit(X, X > 0.5), X),
        "FasterRCNNDetector": (FasterRCNNDetector(epochs=1, batch_size=4, device="cpu",
                                                  random_state=0).fit(boxes_X, targets), boxes_X),
        "PretrainedFeatureExtractor": (
            PretrainedFeatureExtractor(image_size=32, batch_size=16, device="cpu").fit(X), X),
    }


# (estimator, method) for every inference method of the torch estimators.
CALLS = [
    ("CNNClassifier", "predict"), ("CNNClassifier", "predict_proba"),
    ("CNNClassifier", "feature_maps"), ("CNNClassifier", "class_activation_maps"),
    ("CNNRegressor", "predict"), ("CNNRegressor", "feature_maps"),
    ("VisionTransformerClassifier", "predict_proba"),
    ("VisionTransformerClassifier", "attention_maps"),
    ("VisionTransformerRegressor", "predict"), ("VisionTransformerRegressor", "attention_maps"),
    ("FineTunedClassifier", "predict_proba"), ("FineTunedRegressor", "predict"),
    ("UNetSegmenter", "predict"), ("UNetSegmenter", "predict_proba"),
    ("FasterRCNNDetector", "predict"), ("FasterRCNNDetector", "predict_proposals"),
    ("PretrainedFeatureExtractor", "transform"),
]
IDS = [f"{name}.{method}" for name, method in CALLS]


def _outputs(value):
    """Outputs as a flat list of arrays (detections are lists of dicts)."""
    if isinstance(value, list):
        return [np.asarray(part) for item in value
                for part in (item.values() if isinstance(item, dict) else [item])]
    return [np.asarray(value)]


def _assert_same(actual, expected):
    for left, right in zip(_outputs(actual), _outputs(expected), strict=True):
        if left.dtype.kind in "fc":
            # float32 kernels may round differently with memory alignment.
            np.testing.assert_allclose(left, right, rtol=1e-5, atol=1e-5)
        else:
            np.testing.assert_array_equal(left, right)  # labels


def _limit_batches(limit):
    """A read_batches that fails like an out-of-memory forward above ``limit`` images."""
    read_batches = skvision._torch.read_batches
    sizes = []

    def limited(*args, **kwargs):
        for batch in read_batches(*args, **kwargs):
            sizes.append(len(batch))
            if len(batch) > limit:
                raise torch.OutOfMemoryError("simulated: the batch does not fit")
            yield batch

    return limited, sizes


@pytest.mark.parametrize("name, method", CALLS, ids=IDS)
def test_every_inference_method_goes_through_the_entry_point(fitted, name, method, monkeypatch):
    estimator, X = fitted[name]
    calls = []
    sequential = skvision._torch.sequential_batches
    monkeypatch.setattr(skvision._torch, "sequential_batches",
                        lambda *args: calls.append(args) or sequential(*args))
    getattr(estimator, method)(X[:6])
    assert calls, f"{name}.{method} did not read its batches through predict_batches"


@pytest.mark.parametrize("name, method", CALLS, ids=IDS)
def test_out_of_memory_halves_the_batch_for_every_method(fitted, name, method, monkeypatch):
    estimator, X = fitted[name]
    X = X[:8]
    expected = getattr(estimator, method)(X)
    limited, sizes = _limit_batches(limit=2)
    monkeypatch.setattr(skvision._torch, "read_batches", limited)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        actual = getattr(estimator, method)(X)
    assert any("Out of memory" in str(warning.message) for warning in record)
    assert max(sizes[-3:]) <= 2  # the last batches ran at the halved size
    _assert_same(actual, expected)


@pytest.mark.parametrize("name, method", CALLS, ids=IDS)
def test_eight_threads_get_what_one_thread_gets(fitted, name, method):
    estimator, X = fitted[name]
    parts = [X[index::3][:4] for index in range(3)]
    serial = [getattr(estimator, method)(part) for part in parts]
    errors = []

    def worker(offset):
        try:
            for call in range(3):
                index = (offset + call) % len(parts)
                _assert_same(getattr(estimator, method)(parts[index]), serial[index])
        except Exception as error:  # reported below, with the thread's failure
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(offset,)) for offset in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[0]


@pytest.mark.parametrize("name, method", [call for call in CALLS if call[0] != "FasterRCNNDetector"],
                         ids=[id_ for id_ in IDS if not id_.startswith("FasterRCNNDetector")])
def test_outputs_do_not_depend_on_sample_order(fitted, name, method):
    # sklearn's check_methods_sample_order_invariance asks rtol=1e-7, below
    # float32 rounding on some CPUs (see test_common); this asks 1e-5. The
    # detector's outputs are per image too, but proposals are ranked by score.
    estimator, X = fitted[name]
    X = X[:24]
    order = np.random.default_rng(0).permutation(len(X))
    reordered = getattr(estimator, method)(X[order])
    _assert_same(reordered, np.asarray(getattr(estimator, method)(X))[order])
