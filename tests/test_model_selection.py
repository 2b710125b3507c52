"""Epoch-halving searches: survivors continue their fits, and end as plain max_epochs fits.

Tiny CNNs on 8x8 digits, one torch thread (tests/conftest.py in pytest-xdist
workers, the fixture below otherwise), so that "the same" means equal.
"""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import loguniform
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from skvision import CNNClassifier, UNetSegmenter
from skvision._params import InvalidParameterError
from skvision.datasets import make_shapes
from skvision.model_selection import EpochHalvingGridSearchCV, EpochHalvingRandomSearchCV

PARAMS = dict(filters=(4,), batch_size=50, device="cpu", precision="32", random_state=0)
GRID = {"lr": [1e-3, 1e-2, 3e-2, 1e-1]}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Module-scoped: before the module-scoped search below.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:200].reshape(-1, 8, 8) / 16, y[:200]


def _weights(estimator):
    return {key: value.clone() for key, value in estimator.module_.state_dict().items()}


@pytest.fixture(scope="module")
def search(digits):
    """4 candidates, factor 2, 4 epochs: rungs of 1, 2 and 4 epochs; each fit's weights recorded."""
    X, y = digits
    recorded = []

    def scorer(estimator, X_test, y_test):
        recorded.append((estimator.lr, len(estimator.history_), _weights(estimator),
                         estimator.history_.copy()))
        return estimator.score(X_test, y_test)

    cv = list(StratifiedKFold(2).split(X, y))
    search = EpochHalvingGridSearchCV(
        CNNClassifier(**PARAMS), GRID, factor=2, max_epochs=4, cv=cv, scoring=scorer,
    ).fit(X, y)
    return search, recorded, cv


def test_a_survivor_of_the_last_rung_equals_a_plain_max_epochs_fit(search, digits):
    X, y = digits
    search, recorded, cv = search
    train = cv[0][0]
    best = search.best_params_["lr"]
    # The recorded fits of the best candidate at 4 epochs: one per fold, in fold order.
    finals = [entry for entry in recorded if entry[0] == best and entry[1] == 4]
    assert len(finals) == 2
    _, _, weights, history = finals[0]
    plain = CNNClassifier(**PARAMS, lr=best, epochs=4).fit(X[train], y[train])
    reference = _weights(plain)
    assert weights.keys() == reference.keys()
    for key in weights:
        torch.testing.assert_close(weights[key], reference[key], rtol=0, atol=1e-6)
    # The same one-cycle schedule, epoch by epoch: planned for 4 epochs from the start.
    np.testing.assert_allclose(history["lr"], plain.history_["lr"], rtol=1e-6)
    np.testing.assert_allclose(history["train_loss"], plain.history_["train_loss"], rtol=1e-5)
    # And the refit is that plain fit on all the data.
    refit = CNNClassifier(**PARAMS, lr=best, epochs=4).fit(X, y)
    for key, value in _weights(refit).items():
        torch.testing.assert_close(_weights(search.best_estimator_)[key], value, rtol=0,
                                   atol=1e-6)


def test_cv_results_have_the_rungs_as_sklearns_halving(search):
    search, recorded, _ = search
    results = pd.DataFrame(search.cv_results_)
    assert search.n_resources_ == [1, 2, 4]
    assert search.n_candidates_ == [4, 2, 1]
    assert search.n_iterations_ == 3 and search.n_remaining_candidates_ == 1
    assert list(results["iter"]) == [0, 0, 0, 0, 1, 1, 2]
    assert list(results["n_resources"]) == [1, 1, 1, 1, 2, 2, 4]
    assert {"params", "param_lr", "mean_test_score", "std_test_score", "rank_test_score",
            "split0_test_score", "split1_test_score", "mean_fit_time"} <= set(results)
    # Each rung keeps the best half of the previous one's.
    first = results[results["iter"] == 0]
    kept = first.nlargest(2, "mean_test_score")["param_lr"]
    assert set(results[results["iter"] == 1]["param_lr"]) == set(kept)
    # The best is the last rung's; best_score_ is its mean score.
    assert search.best_index_ == 6
    assert search.best_score_ == results["mean_test_score"][6]
    assert search.best_params_ == results["params"][6]
    # Continuing, not retraining: 4x1 + 2x(2-1) + 1x(4-2) epochs per fold.
    assert sorted(length for _, length, _, _ in recorded) == sorted([1] * 8 + [2] * 4 + [4] * 2)
    assert search.max_epochs_ == 4 and search.best_estimator_.epochs == 4
    assert search.predict(np.zeros((2, 8, 8))).shape == (2,)


def test_parallel_fits_give_the_same_search(digits):
    X, y = digits
    make = lambda n_jobs: EpochHalvingGridSearchCV(  # noqa: E731
        CNNClassifier(**PARAMS), {"lr": [1e-2, 1e-1]}, factor=2, max_epochs=2, cv=2,
        n_jobs=n_jobs, refit=False)
    # Worker processes (loky): the training states travel between rungs pickled.
    # (Not threads: fits in threads share torch's global random generator.)
    serial, parallel = make(1).fit(X, y), make(2).fit(X, y)
    for key in ("iter", "n_resources", "mean_test_score", "split0_test_score"):
        np.testing.assert_allclose(serial.cv_results_[key], parallel.cv_results_[key])
    assert serial.best_params_ == parallel.best_params_
    assert not hasattr(serial, "best_estimator_")


def test_random_search_samples_its_candidates_reproducibly(digits):
    X, y = digits
    make = lambda: EpochHalvingRandomSearchCV(  # noqa: E731
        CNNClassifier(**{**PARAMS, "random_state": None}), {"lr": loguniform(1e-3, 1e-1)},
        max_epochs=2, factor=2, cv=2, random_state=0, refit=False)
    first, second = make().fit(X, y), make().fit(X, y)
    # n_candidates="exhaust": max_epochs // min_epochs.
    assert first.n_candidates_ == [2, 1] and first.n_resources_ == [1, 2]
    assert first.cv_results_["params"] == second.cv_results_["params"]
    np.testing.assert_array_equal(first.cv_results_["mean_test_score"],
                                  second.cv_results_["mean_test_score"])


def test_a_candidate_that_stops_early_keeps_its_last_score(digits):
    X, y = digits
    # Early stopping after one epoch without improvement of the validation loss, at an
    # lr where that comes soon; the other candidate trains on.
    search = EpochHalvingGridSearchCV(
        CNNClassifier(**PARAMS, early_stopping=True, n_iter_no_change=1),
        {"lr": [0.5, 1.0]}, factor=1.5, max_epochs=6, min_epochs=2, cv=2, refit=False,
    ).fit(X, y)
    results = pd.DataFrame(search.cv_results_)
    assert search.n_resources_ == [2, 6]
    # lr=1.0 stops early on both folds before the last rung: nothing left to train.
    assert (results["mean_fit_time"] == 0).any()
    for _, rows in results.groupby("param_lr"):
        stopped = rows["mean_fit_time"].to_numpy() == 0
        if stopped.any():
            # Its rows after it stopped carry its score, at no cost.
            first = np.argmax(stopped)
            assert (rows["mean_test_score"].iloc[first:] ==
                    rows["mean_test_score"].iloc[first - 1]).all()


def test_other_neural_estimators(digits):
    images, _ = make_shapes(16, image_size=16, random_state=0)
    _, masks = make_shapes(16, image_size=16, task="segmentation", random_state=0)
    search = EpochHalvingGridSearchCV(
        UNetSegmenter(depth=1, base_filters=4, batch_size=8, device="cpu", precision="32",
                      random_state=0),
        {"lr": [1e-3, 1e-2]}, factor=2, max_epochs=2, cv=2,
    ).fit(images, masks)
    assert search.n_resources_ == [1, 2]
    assert search.best_estimator_.predict(images[:2]).shape == masks[:2].shape


def test_clone_and_get_params():
    search = EpochHalvingRandomSearchCV(CNNClassifier(**PARAMS), {"lr": [1e-3, 1e-2]},
                                        n_candidates=2, max_epochs=3)
    params = search.get_params()
    assert params["estimator__lr"] == 0.003 and params["n_candidates"] == 2
    copy = clone(search)
    assert copy.get_params(deep=False).keys() == params.keys() - {
        name for name in params if "__" in name}
    assert copy.set_params(estimator__lr=0.1).estimator.lr == 0.1


@pytest.mark.parametrize(("estimator", "params", "message"), [
    (LogisticRegression(), {}, "'estimator' parameter .* skvision neural estimator"),
    (CNNClassifier(**PARAMS), {"max_epochs": 2, "min_epochs": 3},
     "max_epochs must be at least min_epochs"),
    (CNNClassifier(**PARAMS), {"factor": 1}, "'factor' parameter"),
    (CNNClassifier(**PARAMS), {"scoring": "no-such-metric"}, "'scoring' parameter"),
    (CNNClassifier(**PARAMS), {"cv": 1}, "'cv' parameter"),
])
def test_bad_parameters_fail_before_the_data(estimator, params, message):
    search = EpochHalvingGridSearchCV(estimator, GRID, **params)
    with pytest.raises(InvalidParameterError, match=message):
        search.fit("not images", None)


def test_bad_grids_and_epochs_are_refused(digits):
    X, y = digits
    with pytest.raises(ValueError, match="sets epochs of every fit itself"):
        EpochHalvingGridSearchCV(CNNClassifier(**PARAMS), {"epochs": [1, 2]},
                                 max_epochs=2).fit(X, y)
    with pytest.raises(ValueError, match=r"max_epochs \(2, the estimator's epochs"):
        EpochHalvingGridSearchCV(CNNClassifier(**PARAMS, epochs=2), GRID,
                                 min_epochs=3).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # epochs="auto" resolves by the estimator's rule for len(X): 10 epochs here.
        search = EpochHalvingGridSearchCV(CNNClassifier(**PARAMS), GRID, cv=2)
        assert search._max_epochs(search.estimator, len(X)) == 10
