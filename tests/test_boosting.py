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
    np.testing.assert_allclose(ours.predict_proba(X), raw.predict_proba(X), rtol=1e-6)


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
