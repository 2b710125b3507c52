"""Every accepted image form, and a clear error for every bad input."""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import BaseEstimator

from skvision import CNNClassifier
from skvision._validation import (
    _plain_numeric_array,
    check_class_labels,
    check_image_data,
    check_images,
    check_regression_targets,
    encode_labels,
)


class _Holder(BaseEstimator):
    """A bare estimator that receives the fitted attributes."""


@pytest.mark.parametrize(
    "X, kwargs, expected",
    [
        (np.zeros((4, 8, 8)), {}, (4, 1, 8, 8)),
        (np.zeros((4, 8, 6, 3)), {}, (4, 3, 8, 6)),
        (np.zeros((4, 3, 8, 6)), {"channels": "first"}, (4, 3, 8, 6)),
        (torch.zeros(4, 3, 8, 6), {}, (4, 3, 8, 6)),
        (np.zeros((4, 64)), {}, (4, 1, 8, 8)),
        (np.zeros((4, 48)), {}, (4, 3, 4, 4)),
        (np.zeros((4, 60)), {"image_shape": (6, 10)}, (4, 1, 6, 10)),
        (np.zeros((4, 60)), {"image_shape": (2, 10)}, (4, 3, 2, 10)),
        (np.zeros((4, 60)), {"image_shape": (1, -1)}, (4, 1, 1, 60)),
        ([np.zeros((8, 8)), np.ones((8, 8))], {}, (2, 1, 8, 8)),
        (pd.DataFrame(np.zeros((4, 16))), {}, (4, 1, 4, 4)),
    ],
)
def test_accepted_forms(X, kwargs, expected):
    images = check_images(X, **kwargs)
    assert isinstance(images, torch.Tensor)
    assert images.dtype == torch.float32
    assert tuple(images.shape) == expected


def test_channels_last_and_first_agree():
    rng = np.random.default_rng(0)
    last = rng.random((3, 5, 7, 3))
    first = last.transpose(0, 3, 1, 2)
    torch.testing.assert_close(check_images(last), check_images(first, channels="first"))
    flat = last.reshape(3, -1)
    torch.testing.assert_close(check_images(last), check_images(flat, image_shape=(5, 7, 3)))


def test_uint8_scaled_float_kept():
    X = np.full((2, 4, 4), 255, dtype=np.uint8)
    assert check_images(X).max().item() == 1.0
    assert check_images(X.astype(np.float64) * 2).max().item() == 510.0


def test_fit_sets_and_predict_checks_shape():
    holder = _Holder()
    check_images(np.zeros((3, 6, 5, 3)), estimator=holder)
    assert holder.image_shape_ == (6, 5, 3)
    assert holder.n_features_in_ == 90
    with pytest.raises(ValueError, match=r"X has 1 channel\(s\), but _Holder was fitted on images with 3"):
        check_images(np.zeros((3, 6, 5)), estimator=holder, reset=False)
    with pytest.raises(ValueError, match=r"shape \(5, 6, 3\), but _Holder was fitted on images of shape \(6, 5, 3\)"):
        check_images(np.zeros((3, 5, 6, 3)), estimator=holder, reset=False)
    with pytest.raises(ValueError, match="X has 10 features, but _Holder is expecting 90 features"):
        check_images(np.zeros((3, 10)), estimator=holder, reset=False)
    # Flat rows at predict time are reshaped with the fitted image shape.
    assert check_images(np.zeros((2, 90)), estimator=holder, reset=False).shape == (2, 3, 6, 5)


@pytest.mark.parametrize(
    "X, kwargs, error, message",
    [
        (np.zeros((0, 8, 8)), {}, ValueError, "0 sample"),
        (np.zeros((3, 0)), {}, ValueError, "0 feature"),
        (np.full((2, 4, 4), np.nan), {}, ValueError, "NaN"),
        (np.full((2, 4, 4), np.inf), {}, ValueError, "infinity"),
        (np.zeros(5), {}, ValueError, "Expected 2D array"),
        (np.zeros((2, 3, 4, 4, 1)), {}, ValueError, "got 5 dimensions"),
        (np.zeros((2, 5)), {}, ValueError, "Cannot infer the image shape of flat input with 5 features"),
        (np.zeros((2, 10)), {"image_shape": (3, 3)}, ValueError, "cannot be reshaped to image_shape"),
        (np.zeros((2, 10)), {"image_shape": (3,)}, ValueError, r"image_shape must be \(height, width\)"),
        (np.array([["a", "b"], ["c", "d"]], dtype=object), {}, ValueError, "could not convert|strings"),
        (np.zeros((2, 4), dtype=complex), {}, ValueError, "Complex data not supported"),
        ([np.zeros((4, 4)), np.zeros((5, 5))], {}, ValueError, "same shape"),
        (["a.png", "b.png"], {}, TypeError, "ImageReader"),
        ([], {}, ValueError, "empty list"),
    ],
)
def test_bad_images_give_clear_errors(X, kwargs, error, message):
    with pytest.raises(error, match=message):
        check_images(X, **kwargs)


def test_caller_array_never_modified():
    rng = np.random.default_rng(0)
    for X in (rng.random((3, 4, 4, 3)).astype(np.float32), (rng.random((3, 16)) * 255).astype(np.uint8)):
        before = X.copy()
        images = check_images(X, image_shape=(4, 4)) if X.ndim == 2 else check_images(X)
        images.mul_(0)  # even writing into the result leaves the caller's data alone
        np.testing.assert_array_equal(X, before)


def test_estimator_does_not_modify_input():
    X = np.random.default_rng(0).random((20, 6, 6)).astype(np.float32)
    y = np.array([0, 1] * 10)
    X_before, y_before = X.copy(), y.copy()
    clf = CNNClassifier(filters=(4,), epochs=1, random_state=0).fit(X, y)
    clf.predict(X)
    np.testing.assert_array_equal(X, X_before)
    np.testing.assert_array_equal(y, y_before)


def test_class_labels():
    assert list(check_class_labels(np.array(["b", "a", "b"]), 3)) == ["a", "b"]
    with pytest.raises(ValueError, match="only one class is present"):
        check_class_labels([1, 1, 1], 3)
    with pytest.raises(ValueError, match="inconsistent numbers of samples: 3 images but 2 targets"):
        check_class_labels([0, 1], 3)
    with pytest.raises(ValueError, match="Unknown label type"):
        check_class_labels([0.5, 1.5, 2.5], 3)
    classes = np.array([3, 7, 10])
    assert encode_labels([10, 3], classes, 2).tolist() == [2, 0]
    with pytest.raises(ValueError, match="not seen in the first fit"):
        encode_labels([4], classes, 1)


def test_regression_targets():
    assert check_regression_targets([1, 2, 3], 3).dtype == np.float64
    assert check_regression_targets(np.zeros((3, 2)), 3).shape == (3, 2)
    with pytest.raises(ValueError, match="NaN"):
        check_regression_targets([1.0, np.nan], 2)
    with pytest.raises(ValueError, match="requires y to be passed"):
        check_regression_targets(None, 2)


def test_tensor_never_shares_memory_with_the_input():
    X = np.random.default_rng(0).random((4, 6, 6), dtype=np.float32)
    X.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns on read-only numpy memory
        images = check_images(X)
    assert not np.shares_memory(images.numpy(), X)
    images.add_(1)  # in-place work on the tensor cannot reach the caller's array
    assert X.max() < 1


@pytest.mark.parametrize("X", [
    np.zeros((2, 4, 4), np.uint8), np.ones((3, 5, 5, 3), np.float32), np.ones((2, 16), bool),
    np.arange(32, dtype=np.int64).reshape(2, 4, 4), np.ones((2, 4, 4), np.float16),
    np.asfortranarray(np.ones((2, 4, 4, 3))), np.ones((2, 8, 8, 3))[:, ::2, ::2],
])
def test_the_plain_array_path_equals_check_array(X, monkeypatch):
    """Plain numeric arrays skip check_array (its cost dominates predict on one
    small image): the result and the fitted attributes are those it gives."""
    from skvision import _validation

    fast_estimator, slow_estimator = BaseEstimator(), BaseEstimator()
    fast = _validation._validated_array(X, estimator=fast_estimator, image_shape=(4, 4))
    monkeypatch.setattr(_validation, "_plain_numeric_array", lambda X: False)
    slow = _validation._validated_array(X, estimator=slow_estimator, image_shape=(4, 4))
    assert fast.dtype == slow.dtype and fast.shape == slow.shape
    np.testing.assert_array_equal(fast, slow)
    assert vars(fast_estimator) == vars(slow_estimator)
    again = _validation._validated_array(X, estimator=fast_estimator, reset=False)
    np.testing.assert_array_equal(again, slow)


@pytest.mark.parametrize("value, message", [(np.nan, "Input X contains NaN"),
                                            (np.inf, "Input X contains infinity")])
def test_the_plain_array_path_refuses_nan_and_inf(value, message):
    X = np.ones((2, 4, 4), np.float32)
    X[1, 2, 3] = value
    with pytest.raises(ValueError, match=message):
        check_image_data(X, estimator=CNNClassifier())
    assert _plain_numeric_array(X)  # the path under test
    for other in (np.zeros((0, 4, 4)), np.ones(4), np.ones((2, 4, 4), complex),
                  np.ones((2, 4), object), [[1.0, 2.0]], pd.DataFrame(np.ones((2, 4)))):
        assert not _plain_numeric_array(other)
