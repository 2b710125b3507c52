"""BoostedTreesClassifier / BoostedTreesRegressor: labels, early stopping, pipelines."""

import pickle

import numpy as np
import pandas as pd
import pytest
import xgboost
from sklearn.datasets import make_classification, make_regression
from sklearn.feature_selection import SelectFromModel, SelectKBest
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from skvision.boosting import BoostedTreesClassifier, BoostedTreesRegressor
from skvision.datasets import load_digit_images
from skvision.preprocessing import ImageFlattener

NAMES = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                  "nine"])


@pytest.fixture(scope="module")
def digits():
    X, y = load_digit_images(return_X_y=True)
    return X, y


def test_string_labels_in_parallel_cross_validation(digits):
    X, y = digits
    X_flat, labels = X.reshape(len(X), -1), NAMES[y]
    clf = BoostedTreesClassifier(n_estimators=60, early_stopping=True, random_state=0)
    scores = cross_val_score(clf, X_flat, labels, cv=5, n_jobs=2)
    assert scores.mean() > 0.9
    clf.fit(X_flat, labels)
    predictions = clf.predict(X_flat[:20])
    assert predictions.dtype.kind == "U" and set(predictions) <= set(NAMES)
    assert list(clf.classes_) == sorted(NAMES)
    proba = clf.predict_proba(X_flat[:20])
    assert proba.shape == (20, 10)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(1)], predictions)


def test_non_contiguous_integer_labels():
    X, y = make_classification(n_samples=300, n_classes=3, n_informative=4, random_state=0)
    labels = np.array([-5, 10, 42])[y]
    clf = BoostedTreesClassifier(n_estimators=30, random_state=0).fit(X, labels)
    assert set(clf.predict(X)) <= {-5, 10, 42} and clf.score(X, labels) > 0.9


def test_early_stopping_stops_on_noise():
    """Labels independent of X: validation loss only gets worse after a few rounds."""
    rng = np.random.default_rng(0)
    X, y = rng.random((600, 10)), rng.integers(0, 2, 600)
    clf = BoostedTreesClassifier(n_estimators=500, early_stopping=True, n_iter_no_change=5,
                                 random_state=0).fit(X, y)
    assert clf.n_iter_ < 50
    assert len(clf.validation_loss_) == clf.n_iter_ + 5
    assert clf.validation_loss_.argmin() == clf.n_iter_ - 1
    no_stop = BoostedTreesClassifier(n_estimators=80, early_stopping=False).fit(X, y)
    assert no_stop.n_iter_ == 80 and not hasattr(no_stop, "validation_loss_")


def test_early_stopping_auto_depends_on_size():
    X, y = make_classification(n_samples=200, random_state=0)
    assert BoostedTreesClassifier(n_estimators=20).fit(X, y).n_iter_ == 20
    X, y = make_classification(n_samples=10_500, n_features=5, random_state=0)
    clf = BoostedTreesClassifier(n_estimators=400, learning_rate=0.5, n_iter_no_change=3,
                                 random_state=0).fit(X, y)
    assert hasattr(clf, "validation_loss_") and clf.n_iter_ < 400


def test_rare_classes_stay_in_training():
    X, y = make_classification(n_samples=60, n_classes=3, n_informative=4, random_state=0)
    y[0] = 3  # a class with one sample cannot be split
    clf = BoostedTreesClassifier(n_estimators=10, early_stopping=True, random_state=0)
    assert clf.fit(X, y).predict_proba(X).shape == (60, 4)


# The digits' blank border pixels are constant: SelectKBest warns (and divides by 0).
@pytest.mark.filterwarnings("ignore::UserWarning:sklearn.feature_selection")
@pytest.mark.filterwarnings("ignore::RuntimeWarning:sklearn.feature_selection")
def test_grid_search_over_image_pipeline(digits):
    """The acceptance bar: >= 0.95 CV accuracy on the digit images.

    Shuffled folds: sklearn's digits are ordered by writer, and unshuffled
    3-fold CV is a harder writer split (~0.93 for any tree ensemble).
    """
    X, y = digits
    pipeline = Pipeline([
        ("flatten", ImageFlattener()),
        ("scale", StandardScaler()),
        ("select", SelectKBest()),
        ("trees", BoostedTreesClassifier(n_estimators=150, max_depth=4, colsample_bytree=0.5,
                                         random_state=0, n_jobs=1)),
    ])
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    search = GridSearchCV(pipeline, {"select__k": [32, 64]}, cv=cv, n_jobs=2).fit(X, y)
    assert search.best_score_ >= 0.95
    assert search.predict(X[:5]).tolist() == search.best_estimator_.predict(X[:5]).tolist()


def test_feature_importances_for_select_from_model(digits):
    X, y = digits
    X_flat = X.reshape(len(X), -1)
    trees = BoostedTreesClassifier(n_estimators=30, random_state=0).fit(X_flat, y)
    importances = trees.feature_importances_
    assert importances.shape == (64,) and np.isclose(importances.sum(), 1)
    # The always-blank border pixels of the digits carry no information.
    assert importances[0] == 0 and importances[27] > 0
    selector = SelectFromModel(trees, prefit=True, threshold="mean")
    kept = selector.get_support()
    assert 5 < kept.sum() < 40 and not kept[0]


def test_pandas_feature_names_and_missing_values():
    X, y = make_regression(n_samples=200, n_features=4, random_state=0)
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    frame.iloc[::7, 1] = np.nan  # XGBoost routes missing values itself
    reg = BoostedTreesRegressor(n_estimators=50, random_state=0).fit(frame, y)
    assert list(reg.feature_names_in_) == ["a", "b", "c", "d"]
    assert reg.score(frame, y) > 0.9
    with pytest.raises(ValueError, match="feature names"):
        reg.predict(frame[["d", "c", "b", "a"]])
    with pytest.raises(ValueError, match="infinity"):
        reg.fit(np.where(np.isnan(frame), np.inf, frame), y)


def test_same_seed_same_model_and_pickle():
    X, y = make_classification(n_samples=300, random_state=0)
    params = dict(n_estimators=30, subsample=0.7, colsample_bytree=0.7, early_stopping=True)
    first = BoostedTreesClassifier(**params, random_state=3).fit(X, y)
    second = BoostedTreesClassifier(**params, random_state=3).fit(X, y)
    np.testing.assert_array_equal(first.predict_proba(X), second.predict_proba(X))
    restored = pickle.loads(pickle.dumps(first))
    np.testing.assert_array_equal(restored.predict_proba(X), first.predict_proba(X))
    assert isinstance(first.model_, xgboost.XGBClassifier)


def test_matches_raw_xgboost():
    """Without early stopping, the same trees as XGBClassifier with the same parameters."""
    X, y = make_classification(n_samples=400, random_state=0)
    ours = BoostedTreesClassifier(n_estimators=25, max_depth=4, random_state=0).fit(X, y)
    seed = ours.model_.get_params()["random_state"]
    raw = xgboost.XGBClassifier(n_estimators=25, max_depth=4, learning_rate=0.1,
                                tree_method="hist", random_state=seed).fit(X, y)
    np.testing.assert_allclose(ours.model_.predict(X, output_margin=True),
                               raw.predict(X, output_margin=True), rtol=1e-6)
    # XGBoost's first column is 1 - p in float32, up to a float32 step (6e-8)
    # off near 0; ours is computed from the margin in float64.
    np.testing.assert_allclose(ours.predict_proba(X), raw.predict_proba(X), atol=1e-7)


@pytest.mark.parametrize("params, message", [
    (dict(early_stopping="yes"), "early_stopping"),
    (dict(subsample=0), "subsample"),
    (dict(device="tpu"), "device"),
    (dict(verbose=3), "verbose"),
])
def test_bad_parameters(params, message):
    X, y = make_classification(n_samples=50, random_state=0)
    with pytest.raises(ValueError, match=message):
        BoostedTreesClassifier(**params).fit(X, y)


def test_progress_bar(capsys):
    X, y = make_classification(n_samples=100, random_state=0)
    BoostedTreesClassifier(n_estimators=7, verbose=1).fit(X, y)
    assert "7/7" in capsys.readouterr().err


def test_regressor_in_pipeline():
    X, y = make_regression(n_samples=300, n_features=8, noise=5, random_state=0)
    model = make_pipeline(StandardScaler(), BoostedTreesRegressor(random_state=0))
    assert cross_val_score(model, X, y, cv=3).mean() > 0.7


def _offset_regression(offset):
    """A learnable signal of scale ~10 plus unit noise, on top of ``offset``."""
    rng = np.random.default_rng(0)
    X = rng.random((800, 4))
    y = 10 * np.sin(3 * X[:, 0]) + 5 * X[:, 1] ** 2 + rng.normal(0, 1, len(X)) + offset
    return X[:600], y[:600], X[600:], y[600:]


def test_regressor_learns_targets_far_from_zero():
    """XGBoost works in float32: y is standardized in float64 around fit and predict.

    Uncentred, 1e9 + a unit-scale signal keeps no digit of the signal in
    float32 (held-out R² far below 0, predictions constant); a signal of
    scale 1e-8 (split gains under XGBoost's 1e-6) or 1e20 (gains over
    float32's range) grows no useful tree unscaled.
    """
    scores = {}
    for offset, scale in ((0, 1), (1e6, 1), (1e9, 1), (0, 1e-8), (0, 1e20)):
        X, y, X_test, y_test = _offset_regression(offset)
        reg = BoostedTreesRegressor(n_estimators=60, n_jobs=1, random_state=0)
        reg.fit(X, y * scale)
        scores[offset, scale] = reg.score(X_test, y_test * scale)
        assert reg.predict(X_test).dtype == np.float64
    assert scores[0, 1] > 0.8, scores
    assert max(scores.values()) - min(scores.values()) <= 0.02, scores
    # Early stopping's validation set is standardized the same way: its loss
    # curve (RMSE, in units of y) does not depend on the offset.
    curves = [BoostedTreesRegressor(n_estimators=30, early_stopping=True, n_jobs=1,
                                    random_state=0).fit(*_offset_regression(offset)[:2])
              .validation_loss_ for offset in (0, 1e9)]
    np.testing.assert_allclose(curves[0], curves[1], rtol=1e-3)
    assert 0.5 < curves[0].min() < 2  # the noise's standard deviation is 1


def test_regressor_matches_raw_xgboost_in_units_of_y():
    """Standardizing y divides gamma and reg_alpha to match: the same trees as XGBRegressor."""
    X, y, X_test, _ = _offset_regression(0)
    y = 7 * y + 3
    params = dict(n_estimators=40, gamma=50.0, reg_alpha=30.0, reg_lambda=4.0, n_jobs=1)
    ours = BoostedTreesRegressor(**params, random_state=0).fit(X, y)
    raw = xgboost.XGBRegressor(**params, learning_rate=0.1, tree_method="hist",
                               random_state=ours.model_.get_params()["random_state"]).fit(X, y)
    assert (len(ours.model_.get_booster().trees_to_dataframe())
            == len(raw.get_booster().trees_to_dataframe()))
    # Float32 predictions of differently scaled targets: equal to float32 precision.
    np.testing.assert_allclose(ours.predict(X_test), raw.predict(X_test),
                               atol=1e-5 * y.std())


@pytest.mark.parametrize("early_stopping", [False, True])
def test_feature_importances_are_normalized_total_gain(early_stopping):
    """The booster's own total gain per feature, normalized, in the trees that predict."""
    X, y = make_classification(n_samples=300, n_features=8, n_informative=3,
                               n_redundant=0, random_state=0)
    clf = BoostedTreesClassifier(n_estimators=40, early_stopping=early_stopping,
                                 n_iter_no_change=3, n_jobs=1, random_state=0).fit(X, y)
    booster = clf.model_.get_booster()
    if early_stopping:
        assert clf.n_iter_ < booster.num_boosted_rounds()
        booster = booster[:clf.n_iter_]
    gains = booster.get_score(importance_type="total_gain")
    expected = np.array([gains.get(f"f{index}", 0.0) for index in range(8)])
    np.testing.assert_allclose(clf.feature_importances_, expected / expected.sum(), rtol=1e-12)
    assert clf.feature_importances_.sum() == pytest.approx(1, abs=1e-12)


def test_class_weight_is_sample_weight_per_class():
    from sklearn.utils.class_weight import compute_sample_weight

    X, y = make_classification(n_samples=300, n_classes=3, n_informative=4,
                               weights=[0.7, 0.2, 0.1], random_state=0)
    labels = np.array(["a", "b", "c"])[y]
    params = dict(n_estimators=20, early_stopping=True, n_jobs=1, random_state=0)
    balanced = BoostedTreesClassifier(**params, class_weight="balanced").fit(X, labels)
    weights = compute_sample_weight("balanced", labels)
    weighted = BoostedTreesClassifier(**params).fit(X, labels, sample_weight=weights)
    np.testing.assert_array_equal(balanced.predict_proba(X), weighted.predict_proba(X))
    np.testing.assert_allclose(balanced.class_weight_[y], weights, rtol=1e-12)
    assert weighted.class_weight_ is None
    # A dict (unlisted classes weigh 1), multiplied with sample_weight.
    sample_weight = np.random.default_rng(0).uniform(0.5, 2, len(y))
    by_dict = BoostedTreesClassifier(**params, class_weight={"c": 5.0}).fit(
        X, labels, sample_weight=sample_weight)
    by_hand = BoostedTreesClassifier(**params).fit(
        X, labels, sample_weight=sample_weight * np.where(labels == "c", 5.0, 1.0))
    np.testing.assert_array_equal(by_dict.predict_proba(X), by_hand.predict_proba(X))
    assert not np.array_equal(by_dict.predict_proba(X), weighted.predict_proba(X))
    with pytest.raises(ValueError, match="class_weight"):
        BoostedTreesClassifier(class_weight="auto").fit(X, labels)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_predict_proba_float64_rows_sum_to_one(n_classes):
    X, y = make_classification(n_samples=200, n_classes=n_classes, n_informative=4,
                               random_state=0)
    clf = BoostedTreesClassifier(n_estimators=30, n_jobs=1, random_state=0).fit(X, y)
    proba = clf.predict_proba(X)
    assert proba.dtype == np.float64 and proba.shape == (200, n_classes)
    assert np.abs(proba.sum(axis=1) - 1).max() <= 1e-12
    # XGBoost's own float32 probabilities, to float32 precision.
    np.testing.assert_allclose(proba, clf.model_.predict_proba(X), atol=1e-6)
