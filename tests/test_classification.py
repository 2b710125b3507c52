"""CNNClassifier / CNNRegressor behaviour on real and synthetic images."""

import pickle

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import skvision
from skvision import CNNClassifier, CNNRegressor
from skvision._data import to_float
from skvision._torch import autocast
from skvision.datasets import load_digit_images, make_shapes

FAST = dict(filters=(16, 32), epochs=10, batch_size=32, lr=0.01, device="cpu", random_state=0)


@pytest.fixture(scope="module")
def digits():
    return load_digit_images(return_X_y=True)


@pytest.fixture(scope="module")
def small_digits(digits):
    X, y = digits
    return X[:400], y[:400], X[400:600], y[400:600]


def test_auto_epochs_scale_with_the_number_of_images(small_digits):
    X, y, _, _ = small_digits
    clf = CNNClassifier(**dict(FAST, epochs="auto"))
    assert len(clf.fit(X[:60], y[:60]).history_) == 10  # few images: the most epochs
    # ceil(budget / n_images) epochs, n_images after the validation split.
    clf._auto_epochs = (10, 250)
    assert len(clf.fit(X[:100], y[:100]).history_) == 3
    assert len(clf.fit(X[:300], y[:300]).history_) == 1
    clf.set_params(early_stopping=True, validation_fraction=0.5)
    assert len(clf.fit(X[:200], y[:200]).history_) == 3
    assert len(clf.partial_fit(X[:300], y[:300]).history_) == 4  # partial_fit: one epoch
    assert "min(10, ceil(50000 / n_images))" in " ".join(CNNClassifier.__doc__.split())


def test_auto_filters_narrow_the_network_on_large_sets(small_digits, tmp_path):
    X, y, X_test, _ = small_digits

    def first_stage_width(clf):
        return next(m for m in clf.module_.modules() if isinstance(m, torch.nn.Conv2d)).out_channels

    params = dict(FAST, filters="auto", epochs=1)
    wide = CNNClassifier(**params).fit(X[:60], y[:60])
    assert wide.filters_ == (32, 64, 128) and first_stage_width(wide) == 32
    # The threshold counts every image given to fit (before a validation split).
    narrow = CNNClassifier(**params)
    narrow._auto_filters = (100, (32, 64, 128), (16, 32, 64))
    narrow.fit(X[:100], y[:100])
    assert narrow.filters_ == (16, 32, 64) and first_stage_width(narrow) == 16
    assert CNNClassifier(**dict(FAST, filters=[8, 16])).fit(X[:60], y[:60]).filters_ == (8, 16)
    # A saved model rebuilds the network it chose, not the default of "auto".
    path = tmp_path / "narrow.skv"
    skvision.save(narrow, path)
    loaded = skvision.load(path)
    assert first_stage_width(loaded) == 16
    np.testing.assert_array_equal(loaded.predict_proba(X_test), narrow.predict_proba(X_test))


@pytest.mark.parametrize("filters, channels_last", [((4,), False), ((8, 16), True)])
def test_memory_layout_follows_the_network_width(filters, channels_last):
    def is_channels_last(tensor):
        return tensor.is_contiguous(memory_format=torch.channels_last) and \
            not tensor.is_contiguous()

    X, y = make_shapes(n_samples=40, image_size=12, random_state=0)  # RGB
    seen = []
    clf = CNNClassifier(**dict(FAST, filters=filters, epochs=1, warm_start=True)).fit(X, y)
    first_conv = next(m for m in clf.module_.modules() if isinstance(m, torch.nn.Conv2d))
    assert is_channels_last(first_conv.weight) == channels_last
    first_conv.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0]))
    clf.fit(X, y)
    clf.predict(X[:5])
    assert [is_channels_last(batch) for batch in seen] == [channels_last] * len(seen)


def test_shapes_classification_rgb_uint8():
    X, y = make_shapes(600, image_size=24, random_state=0)
    clf = CNNClassifier(filters=(16, 32, 64), epochs=25, batch_size=32, random_state=0)
    clf.fit(X[:400], y[:400])
    assert clf.image_shape_ == (24, 24, 3)
    assert clf.score(X[400:], y[400:]) >= 0.9


@pytest.mark.parametrize(
    "make_labels",
    [
        lambda y: np.array(["zero", "one", "two", "three", "four", "five", "six", "seven",
                            "eight", "nine"])[y],
        lambda y: y * 10 + 3,
        lambda y: pd.Series(y.astype(str), name="digit"),
    ],
    ids=["strings", "non-contiguous-ints", "pandas-series"],
)
def test_any_labels(small_digits, make_labels):
    X, y, X_test, y_test = small_digits
    labels = make_labels(y)
    clf = CNNClassifier(**FAST).fit(X, labels)
    expected = np.unique(np.asarray(labels))
    np.testing.assert_array_equal(clf.classes_, expected)
    predicted = clf.predict(X_test)
    assert set(predicted) <= set(expected)
    assert np.mean(predicted == np.asarray(make_labels(y_test))) > 0.7
    proba = clf.predict_proba(X_test)
    assert proba.shape == (len(X_test), 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)


def test_flat_pipeline_grid_search_and_parallel_cv(digits):
    X, y = digits
    flat = X.reshape(len(X), -1)[:600]
    pipe = make_pipeline(StandardScaler(), CNNClassifier(image_shape=(8, 8), **FAST))
    search = GridSearchCV(pipe, {"cnnclassifier__filters": [(8,), (8, 16)]}, cv=3, n_jobs=2)
    search.fit(flat, y[:600])
    assert search.best_score_ > 0.8
    assert search.best_estimator_.predict(flat[:5]).shape == (5,)
    parallel = cross_val_score(CNNClassifier(**FAST), X[:600], y[:600], cv=3, n_jobs=2)
    serial = cross_val_score(CNNClassifier(**FAST), X[:600], y[:600], cv=3, n_jobs=1)
    # Workers run torch with fewer threads, which changes float rounding: close, not equal.
    np.testing.assert_allclose(parallel, serial, atol=0.02)


def test_clone_pickle_and_joblib_round_trip(small_digits, tmp_path):
    X, y, X_test, _ = small_digits
    clf = CNNClassifier(**FAST).fit(X, y)
    unfitted = clone(clf)
    assert unfitted.get_params() == clf.get_params()
    assert not hasattr(unfitted, "net_")
    expected = clf.predict_proba(X_test)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(clf)).predict_proba(X_test), expected)
    joblib.dump(clf, tmp_path / "model.joblib")
    reloaded = joblib.load(tmp_path / "model.joblib")
    np.testing.assert_array_equal(reloaded.predict_proba(X_test), expected)
    assert reloaded.history_.equals(clf.history_)


def test_random_state_reproduces_predictions(small_digits):
    X, y, X_test, _ = small_digits
    params = dict(FAST, dropout=0.3)
    first = CNNClassifier(**params).fit(X, y).predict_proba(X_test)
    second = CNNClassifier(**params).fit(X, y).predict_proba(X_test)
    np.testing.assert_array_equal(first, second)
    other = CNNClassifier(**dict(params, random_state=1)).fit(X, y).predict_proba(X_test)
    assert not np.allclose(first, other)


def _weight_norm(estimator):
    return sum(p.pow(2).sum().item() for p in estimator.module_.parameters() if p.dim() > 1)


def test_alpha_shrinks_weights(small_digits):
    X, y, _, _ = small_digits
    norms = [_weight_norm(CNNClassifier(**dict(FAST, alpha=alpha)).fit(X, y))
             for alpha in (0.0, 0.05)]
    assert norms[1] < 0.8 * norms[0]


def test_l1_penalty_makes_weights_sparse(small_digits):
    X, y, _, _ = small_digits

    def small_share(l1_ratio):
        clf = CNNClassifier(**dict(FAST, alpha=0.01, l1_ratio=l1_ratio, epochs=5)).fit(X, y)
        weights = torch.cat([p.detach().flatten() for p in clf.module_.parameters() if p.dim() > 1])
        return (weights.abs() < 1e-2).float().mean().item()

    assert small_share(1.0) > small_share(0.0) + 0.1


def test_history_and_schedules(small_digits):
    X, y, _, _ = small_digits
    clf = CNNClassifier(**dict(FAST, epochs=4)).fit(X, y)
    history = clf.history_
    assert list(history.columns) == ["epoch", "train_loss", "train_acc", "lr", "dur"]
    assert history["epoch"].tolist() == [1, 2, 3, 4]
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    assert history["lr"].iloc[-1] < 1e-4  # one-cycle anneals to nearly zero
    constant = CNNClassifier(**dict(FAST, lr_schedule=None, lr=0.002)).fit(X, y)
    assert constant.history_["lr"].tolist() == [0.002] * FAST["epochs"]
    cosine = CNNClassifier(**dict(FAST, lr_schedule="cosine", optimizer="sgd", lr=0.05)).fit(X, y)
    assert cosine.history_["lr"].is_monotonic_decreasing


def test_early_stopping_restores_best_weights(small_digits):
    X, y, _, _ = small_digits
    clf = CNNClassifier(**dict(FAST, epochs=40, lr=0.02, lr_schedule=None, early_stopping=True,
                               n_iter_no_change=3))
    clf.fit(X, y)
    history = clf.history_
    assert {"valid_loss", "valid_acc"} <= set(history.columns)
    assert len(history) < 40
    # The validation split early stopping scored (the fitted model keeps none), drawn again.
    dataset, _ = clf._prepare_inputs(X, y, reset=False, partial=False, classes=None,
                                     sample_weight=None)
    _, valid = clf._split_validation(dataset, clf._seed)
    # In the arithmetic the validation loss was recorded in (bf16 where "auto" chose it).
    with torch.no_grad(), autocast("cpu", clf.precision_):
        clf.module_.eval()
        images = to_float(valid.images.read(np.arange(len(valid))), "cpu")
        loss = clf.net_.get_loss(clf.module_(images), valid.y).item()
    assert loss == pytest.approx(history["valid_loss"].min(), rel=1e-4)


def test_nan_loss_stops_with_clear_error(small_digits):
    X, y, _, _ = small_digits
    clf = CNNClassifier(**dict(FAST, optimizer="sgd", lr=1e12, batch_norm=False, lr_schedule=None))
    with pytest.raises(FloatingPointError, match=r"at epoch \d+, batch \d+.*lower lr"):
        clf.fit(X * 1e3, y)


def test_partial_fit_and_warm_start(small_digits):
    X, y, X_test, y_test = small_digits
    clf = CNNClassifier(**FAST)
    clf.partial_fit(X[:200], y[:200], classes=np.arange(10))
    clf.partial_fit(X[200:], y[200:])
    assert len(clf.history_) == 2
    assert clf.classes_.tolist() == list(range(10))
    for _ in range(3):
        clf.partial_fit(X, y)
    # Five one-epoch calls on 300 images, measured over seeds 0-3: 0.74-0.885
    # in float32, 0.64-0.84 in bf16 (chance is 0.1).
    assert clf.score(X_test, y_test) > 0.5
    warm = CNNClassifier(**dict(FAST, warm_start=True)).fit(X, y)
    first = warm.predict_proba(X_test)
    warm.fit(X, y)
    assert len(warm.history_) == 2 * FAST["epochs"]
    assert not np.allclose(first, warm.predict_proba(X_test))
    cold = CNNClassifier(**FAST).fit(X, y).fit(X, y)
    assert len(cold.history_) == FAST["epochs"]


def test_augment_called_on_training_batches_only(small_digits):
    X, y, X_test, _ = small_digits
    calls = []

    def flip(batch):
        calls.append(len(batch))
        return batch.flip(-1)

    clf = CNNClassifier(**dict(FAST, batch_size=100, augment=flip)).fit(X, y)
    assert calls == [100] * 4 * FAST["epochs"]
    clf.predict(X_test)
    assert len(calls) == 4 * FAST["epochs"]


def test_verbose_levels(small_digits, capsys):
    X, y, _, _ = small_digits
    CNNClassifier(**dict(FAST, verbose=0)).fit(X, y)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    CNNClassifier(**dict(FAST, verbose=1)).fit(X, y)
    assert "130/130" in capsys.readouterr().err  # one bar over 10 epochs x 13 batches
    CNNClassifier(**dict(FAST, verbose=2)).fit(X, y)
    assert "train_loss" in capsys.readouterr().out


@pytest.mark.parametrize(
    "params",
    [
        dict(residual=True),
        dict(attention=True),
        dict(head="flatten", hidden_units=(32,)),
        dict(pooling="avg", batch_norm=False, kernel_size=5),
    ],
    ids=["residual", "attention", "flatten-hidden", "avg-nobn-k5"],
)
def test_architectures_train(small_digits, params):
    X, y, X_test, y_test = small_digits
    clf = CNNClassifier(**dict(FAST, **params)).fit(X, y)
    # Without batch norm a small net learns more slowly: a lower bar.
    assert clf.score(X_test, y_test) > (0.5 if params.get("batch_norm") is False else 0.8)


def test_feature_maps_and_class_activation_maps():
    X, y = make_shapes(120, image_size=16, random_state=0)
    clf = CNNClassifier(filters=(8, 16, 32), epochs=3, random_state=0).fit(X, y)
    assert clf.feature_maps(X[:4], stage=0).shape == (4, 8, 8, 8)
    assert clf.feature_maps(X[:4]).shape == (4, 32, 4, 4)
    with pytest.raises(ValueError, match="stage must be in"):
        clf.feature_maps(X[:4], stage=3)
    maps = clf.class_activation_maps(X[:4])
    assert maps.shape == (4, 16, 16)
    assert maps.min() >= 0 and maps.max() <= 1
    # By default the map explains the class predict() returns.
    np.testing.assert_allclose(maps, clf.class_activation_maps(X[:4], target=clf.predict(X[:4])))
    assert not np.allclose(maps, clf.class_activation_maps(X[:4], target="circle"))
    flatten = CNNClassifier(filters=(8,), epochs=1, head="flatten", random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="head='gap'"):
        flatten.class_activation_maps(X[:2])


def test_regressor_single_and_multi_output():
    rng = np.random.default_rng(0)
    X = rng.random((300, 8, 8)).astype(np.float32)
    X[:, :4] *= rng.random((300, 1, 1))  # targets: mean brightness of each half
    y = np.stack([X[:, :4].mean(axis=(1, 2)), X[:, 4:].mean(axis=(1, 2))], axis=1) * 100 + 50
    reg = CNNRegressor(filters=(8, 16), epochs=15, random_state=0).fit(X[:200], y[:200])
    assert reg.predict(X[200:]).shape == (100, 2)
    assert reg.score(X[200:], y[200:]) > 0.8
    single = CNNRegressor(filters=(8, 16), epochs=15, random_state=0).fit(X[:200], y[:200, 0])
    assert single.predict(X[200:]).shape == (100,)
    assert single.score(X[200:], y[200:, 0]) > 0.8


def test_regressor_targets_far_from_zero_learn_as_near_it():
    """Targets are standardized in float64: an offset of 1e9 (float32 steps of 64) changes
    nothing for noise of std 1 around a learnable signal (the brightness)."""
    rng = np.random.default_rng(0)
    brightness = rng.uniform(0, 1, 160)
    X = np.clip(brightness[:, None, None] + rng.normal(0, 0.1, (160, 6, 6)), 0, 1)
    y = 4 * brightness + rng.normal(0, 1, 160)
    scores = []
    for offset in (0.0, 1e6, 1e9):
        reg = CNNRegressor(filters=(4,), epochs=5, batch_size=16, lr=0.02, device="cpu",
                           random_state=0).fit(X[:120], y[:120] + offset)
        scores.append(reg.score(X[120:], y[120:] + offset))
    assert scores[0] > 0.3
    np.testing.assert_allclose(scores, scores[0], atol=0.02)
    assert reg.y_mean_.dtype == reg.y_scale_.dtype == np.float64


def test_errors(small_digits):
    X, y, _, _ = small_digits
    with pytest.raises(NotFittedError):
        CNNClassifier().predict(X)
    with pytest.raises(ValueError, match="'optimizer' parameter of CNNClassifier must be one of 'adamw', 'sgd'"):
        CNNClassifier(optimizer="adam").fit(X, y)
    with pytest.raises(ValueError, match=r"\'epochs\' parameter of CNNClassifier must be an int in the range \[1, inf\)"):
        CNNClassifier(epochs=0).fit(X, y)
    with pytest.raises(ValueError, match="'kernel_size' parameter of CNNClassifier must be an odd int"):
        CNNClassifier(kernel_size=2).fit(X, y)
    with pytest.raises(ValueError, match="'device' parameter of CNNClassifier must be"):
        CNNClassifier(device="tpu").fit(X, y)
    clf = CNNClassifier(**dict(FAST, epochs=1)).fit(X, y)
    with pytest.raises(ValueError, match=r"shape \(10, 10, 1\), but CNNClassifier was fitted on images of shape \(8, 8, 1\)"):
        clf.predict(np.zeros((2, 10, 10)))
    with pytest.raises(ValueError, match="not seen in the first fit"):
        clf.partial_fit(X[:10], np.full(10, 42))


def test_partial_fit_after_fit_runs_at_constant_lr(small_digits):
    """partial_fit after fit trains at lr, not with fit's one-cycle schedule again."""
    X, y, _, _ = small_digits
    clf = CNNClassifier(**dict(FAST, epochs=2, lr=0.004)).fit(X, y)
    assert clf.history_["lr"].iloc[-1] < 0.001  # one-cycle ends near zero
    clf.partial_fit(X, y)
    assert clf.history_["lr"].iloc[-1] == pytest.approx(0.004)
    assert len(clf.history_) == 3 and np.isfinite(clf.history_["train_acc"].iloc[-1])
