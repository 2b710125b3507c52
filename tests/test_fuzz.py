"""Fuzzed inputs: every public estimator either works or says what it expected.

Generated arrays of random shapes (0-5 dimensions, empty axes, one pixel),
dtypes (bool to complex, objects, strings), NaN/inf, non-contiguous and
read-only, plus lists of differently sized images, go to ``predict`` /
``transform`` of fitted estimators and to ``fit``. Each call must return
output of the documented shape or raise ``ValueError``/``TypeError`` with a
message; the input must come back unchanged. ``derandomize=True`` makes the
cases the same on every run. Valid input in each accepted form (channels-last
float32, read-only uint8, flat rows) must work for every estimator: an error
there fails, so a regression that rejects good images cannot hide among the
accepted errors.
"""

import hashlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import skvision
from skvision import (
    AugmentationSampler,
    BoostedTreesClassifier,
    BoostedTreesRegressor,
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
)
from skvision.datasets import load_digit_images
from skvision.preprocessing import ChannelStandardizer, Grayscale, ImageFlattener, Resize

DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "float16", "float32",
          "float64", "complex64", "object", "str"]
FUZZ = settings(max_examples=40, derandomize=True, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _array(seed, shape, dtype, special, layout):
    rng = np.random.default_rng(seed)
    values = np.asarray(rng.normal(size=shape) * 3)
    if dtype == "str":
        array = values.astype(str)
    elif dtype == "object":
        array = values.astype(object)
        if array.size:
            array.flat[0] = "x"
    else:
        array = values.astype(dtype)
    if special != "none" and array.size and array.dtype.kind == "f":
        array.flat[rng.integers(array.size)] = np.nan if special == "nan" else np.inf
    array = np.array(array)  # 0-d results stay arrays, not numpy scalars
    if layout == "non-contiguous" and array.ndim:
        array = np.repeat(array, 2, axis=0)[::2]  # 0-d results stay arrays, not numpy scalars
    if layout == "read-only":
        array.flags.writeable = False
    return array


arrays = st.builds(
    _array,
    seed=st.integers(0, 2**16),
    shape=st.lists(st.sampled_from([0, 1, 2, 3, 8]), min_size=0, max_size=5).map(tuple),
    dtype=st.sampled_from(DTYPES),
    special=st.sampled_from(["none", "nan", "inf"]),
    layout=st.sampled_from(["contiguous", "non-contiguous", "read-only"]),
)
# Valid-looking 8x8 images with a random dtype, to reach deeper than the shape checks.
images = st.builds(
    _array, seed=st.integers(0, 2**16), shape=st.sampled_from([(3, 8, 8), (1, 8, 8), (2, 64)]),
    dtype=st.sampled_from(DTYPES), special=st.sampled_from(["none", "nan"]),
    layout=st.sampled_from(["contiguous", "read-only"]),
)


def _digest(value):
    if isinstance(value, list):
        return [_digest(item) for item in value]
    return hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest() + str(
        value.dtype) + str(value.shape)


def _call(method, X, *args):
    before = _digest(X)
    try:
        output = method(X, *args)
    except (ValueError, TypeError) as error:
        assert str(error), f"{type(error).__name__} without a message"
        output = None
    assert _digest(X) == before, "the input was modified"
    return output


@pytest.fixture(scope="module")
def fitted():
    X, y = load_digit_images(return_X_y=True)
    X, y = X[:60], y[:60]
    masks = (X > 0.5).astype(int)
    neural = dict(epochs=1, device="cpu", random_state=0)
    return {
        "CNNClassifier": CNNClassifier(filters=(4,), **neural).fit(X, y),
        "CNNRegressor": CNNRegressor(filters=(4,), **neural).fit(X, y.astype(float)),
        "VisionTransformerClassifier": VisionTransformerClassifier(
            embed_dim=8, depth=1, n_heads=2, **neural).fit(X, y),
        "VisionTransformerRegressor": VisionTransformerRegressor(
            embed_dim=8, depth=1, n_heads=2, **neural).fit(X, y.astype(float)),
        "UNetSegmenter": UNetSegmenter(depth=1, base_filters=4, **neural).fit(X, masks),
        "FasterRCNNDetector": FasterRCNNDetector(**neural).fit(
            np.repeat(np.repeat(X[:8], 4, axis=1), 4, axis=2),
            [{"boxes": [[4, 4, 20, 20]], "labels": [label]} for label in y[:8] % 2]),
        "FineTunedClassifier": FineTunedClassifier(
            backbone="test_efficientnet", weights=False, image_size=16, **neural).fit(X, y),
        "FineTunedRegressor": FineTunedRegressor(
            backbone="test_efficientnet", weights=False, image_size=16, **neural).fit(
                X, y.astype(float)),
        "PretrainedFeatureExtractor": PretrainedFeatureExtractor(image_size=32,
                                                                 device="cpu").fit(X),
        "StyleTransfer": StyleTransfer(image_size=8, n_iter=1, device="cpu").fit(X[:1]),
        "AugmentationSampler": AugmentationSampler(augmenter=ImageAugmenter(random_state=0)).fit(X, y),
        "BoostedTreesClassifier": BoostedTreesClassifier(n_estimators=5).fit(
            X.reshape(60, -1), y),
        "BoostedTreesRegressor": BoostedTreesRegressor(n_estimators=5).fit(
            X.reshape(60, -1), y.astype(float)),
        "ImageAugmenter": ImageAugmenter(degrees=10, random_state=0).fit(X),
        "Resize": Resize(image_size=4).fit(X),
        "Grayscale": Grayscale().fit(X),
        "ChannelStandardizer": ChannelStandardizer().fit(X),
        "ImageFlattener": ImageFlattener().fit(X),
    }


def _method(estimator):
    if isinstance(estimator, AugmentationSampler):
        return lambda X: estimator.fit_resample(X, np.arange(len(X)) % 2)[0]
    for name in ("predict", "transform"):
        if hasattr(estimator, name):
            return getattr(estimator, name)
    raise AssertionError(type(estimator))


PUBLIC = sorted(
    [name for name in skvision.__all__ if name[0].isupper() and name != "ModelFileError"]
    + ["Resize", "Grayscale", "ChannelStandardizer", "ImageFlattener"]
)


def test_every_public_estimator_is_fuzzed(fitted):
    assert set(PUBLIC) == set(fitted)


@pytest.mark.parametrize("name", PUBLIC)
def test_predict_or_transform_on_fuzzed_input(fitted, name):
    estimator = fitted[name]
    method = _method(estimator)
    cases = []

    @FUZZ
    @given(X=st.one_of(arrays, images))
    def check(X):
        cases.append(X)
        output = _call(method, X)
        if output is not None and name != "AugmentationSampler":
            assert len(output) == len(X)

    check()
    assert len(cases) >= 40


def test_lists_of_differently_sized_images(fitted):
    for estimator in fitted.values():
        _call(_method(estimator), [np.zeros((8, 8)), np.zeros((6, 8))])


@pytest.mark.parametrize("Estimator, params", [
    (CNNClassifier, dict(filters=(4,), epochs=1, device="cpu")),
    (ImageFlattener, {}),
    (ChannelStandardizer, {}),
    (BoostedTreesClassifier, dict(n_estimators=3)),
], ids=lambda value: getattr(value, "__name__", ""))
def test_fit_on_fuzzed_input(Estimator, params):
    @settings(max_examples=25, derandomize=True, deadline=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(X=st.one_of(arrays, images), labels=st.sampled_from(["ints", "strings", "mixed",
                                                               "short", "none"]))
    def check(X, labels):
        n = len(X) if np.ndim(X) else 0
        y = {"ints": np.arange(n) % 2, "strings": np.array(["a", "b"] * n)[:n],
             "mixed": np.array([1, "b"] * n, dtype=object)[:n],
             "short": np.arange(max(n - 1, 0)), "none": None}[labels]
        _call(Estimator(**params).fit, X, y)

    check()


# Valid input for every fitted estimator above (fitted on 8x8 grayscale images,
# the detector on 32x32, boosting on flat pixels): it must work, not raise.
# Flat rows have the fitted estimator's own n_features_in_.
_VALID = {
    "float32 channels-last": lambda n, _: np.random.default_rng(n).random((n, 8, 8, 1),
                                                                         dtype=np.float32),
    "read-only uint8 images": lambda n, _: _read_only(
        np.random.default_rng(n).integers(0, 256, (n, 8, 8), np.uint8)),
    "float64 flat rows": lambda n, n_features: np.random.default_rng(n).random((n, n_features)),
}
_FLAT_ONLY = {"BoostedTreesClassifier", "BoostedTreesRegressor"}


def _read_only(array):
    array.flags.writeable = False
    return array


@pytest.mark.parametrize("name", PUBLIC)
@pytest.mark.parametrize("kind", sorted(_VALID))
def test_valid_input_always_works(fitted, name, kind):
    if name in _FLAT_ONLY and kind != "float64 flat rows":
        pytest.skip("boosting takes 2-D tabular rows (its documented input)")
    X = _VALID[kind](3, getattr(fitted[name], "n_features_in_", 64))
    before = _digest(X)
    output = _method(fitted[name])(X)  # no error allowed here
    assert _digest(X) == before
    if name != "AugmentationSampler":
        assert len(output) == 3
