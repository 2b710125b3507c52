"""Scaling out on a dask LocalCluster: grid search, block-wise prediction, boosting."""

import sys

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_validate
from sklearn.pipeline import make_pipeline

from skvision import (
    BoostedTreesClassifier,
    BoostedTreesRegressor,
    CNNClassifier,
    PretrainedFeatureExtractor,
)
from skvision.datasets import load_digit_images
from skvision.parallel import apply_blocks, is_dask_collection

CNN = dict(filters=(8, 16), epochs=2, batch_size=64, device="cpu", random_state=0)


class ThreadProbeCNN(CNNClassifier):
    """Records the torch threads its fit ran with (the test reads them back)."""

    def fit(self, X, y):
        self.torch_threads_ = torch.get_num_threads()
        return super().fit(X, y)


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    import dask

    from skvision.parallel import worker_config

    with dask.config.set(worker_config()), distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True,
            dashboard_address=":0") as cluster:
        with distributed.Client(cluster) as dask_client:
            yield dask_client


@pytest.fixture(scope="module")
def digits():
    X, y = load_digit_images(return_X_y=True)
    return X, y


@pytest.mark.slow
def test_cross_validation_and_grid_search_on_dask(client, digits):
    """joblib's dask backend: the same scores as local workers, one torch thread per fit."""
    X, y = digits[0][:300], digits[1][:300]
    with joblib.parallel_backend("dask"):
        on_dask = cross_validate(ThreadProbeCNN(**CNN), X, y, cv=2, return_estimator=True)
    on_loky = cross_validate(ThreadProbeCNN(**CNN), X, y, cv=2, n_jobs=2, return_estimator=True)
    # Same seeds and the same thread count per fit: bit-identical results.
    np.testing.assert_array_equal(on_dask["test_score"], on_loky["test_score"])
    # No oversubscription: two workers on two cores, one torch thread each.
    assert [fitted.torch_threads_ for fitted in on_dask["estimator"]] == [1, 1]
    assert [fitted.torch_threads_ for fitted in on_loky["estimator"]] == [1, 1]

    pipeline = make_pipeline(PretrainedFeatureExtractor(image_size=(32, 32), device="cpu"),
                             LogisticRegression(max_iter=300))
    grid = {"logisticregression__C": [0.01, 1.0]}
    with joblib.parallel_backend("dask"):
        search = GridSearchCV(pipeline, grid, cv=2).fit(X[:120], y[:120])
    local = GridSearchCV(pipeline, grid, cv=2).fit(X[:120], y[:120])
    assert search.best_params_ == local.best_params_
    # The local fit computes features with 2 threads, the workers with 1: equal to
    # float rounding, which a linear model's accuracy does not notice.
    np.testing.assert_allclose(search.cv_results_["mean_test_score"],
                               local.cv_results_["mean_test_score"], atol=0.011)


class _CountingModel(BaseEstimator):
    """Counts how often it is unpickled in each process (the worker reports it)."""

    unpickled = 0

    def __init__(self, estimator=None):
        self.estimator = estimator

    def __setstate__(self, state):
        type(self).unpickled += 1
        super().__setstate__(state)

    def fit(self, X, y=None):
        return self

    def __sklearn_is_fitted__(self):
        return True

    def predict(self, X):
        return self.estimator.predict(X)


@pytest.mark.slow
def test_apply_blocks_on_the_cluster(client, digits):
    """Prediction and features over a chunked dask array equal the in-memory ones."""
    da = pytest.importorskip("dask.array")
    X, y = digits
    images = np.concatenate([X, X[:, ::-1]])  # 3594 images
    lazy_images = da.from_array(images, chunks=(400, 8, 8))
    classifier = CNNClassifier(**CNN).fit(X, y)
    predicted = apply_blocks(classifier, lazy_images)
    assert is_dask_collection(predicted) and predicted.shape == (len(images),)
    np.testing.assert_array_equal(predicted.compute(), classifier.predict(images))
    proba = apply_blocks(classifier, lazy_images, "predict_proba").compute()
    np.testing.assert_allclose(proba, classifier.predict_proba(images), atol=1e-5)

    extractor = PretrainedFeatureExtractor(image_size=(32, 32), device="cpu").fit(X[:2])
    features = apply_blocks(extractor, lazy_images[:800], "transform").compute()
    assert features.shape == (800, 1280)
    np.testing.assert_allclose(features, extractor.transform(images[:800]), atol=1e-4)

    # The model travels to each worker, not with each block (36 blocks here). Once
    # per worker is not a bound: dask's active memory manager may drop a broadcast
    # replica that no queued task waits on, and the worker then fetches it again
    # (seen once in CI: 2 + 1 transfers for 2 workers).
    counting = _CountingModel(classifier)
    small_blocks = lazy_images.rechunk((100, 8, 8))
    apply_blocks(counting, small_blocks).compute()
    per_worker = client.run(lambda: sys.modules[__name__]._CountingModel.unpickled)
    assert 1 <= sum(per_worker.values()) <= small_blocks.numblocks[0] // 4


@pytest.mark.slow
def test_boosting_trains_with_xgboost_dask(client):
    da = pytest.importorskip("dask.array")
    dd = pytest.importorskip("dask.dataframe")
    import pandas as pd
    from sklearn.datasets import make_classification

    X, y = make_classification(4000, 20, n_informative=8, n_classes=3, random_state=0)
    labels = np.array(["cat", "dog", "owl"])[y]
    lazy_X = da.from_array(X, chunks=(1000, 20))
    params = dict(n_estimators=60, early_stopping=True, random_state=0)
    local = BoostedTreesClassifier(**params).fit(X, labels)
    on_dask = BoostedTreesClassifier(**params).fit(lazy_X, da.from_array(labels, chunks=1000))
    np.testing.assert_array_equal(on_dask.classes_, ["cat", "dog", "owl"])
    assert on_dask.n_features_in_ == 20 and 1 <= on_dask.n_iter_ <= 60
    assert len(on_dask.validation_loss_) >= on_dask.n_iter_
    lazy_predicted = on_dask.predict(lazy_X)
    assert is_dask_collection(lazy_predicted)
    predicted = lazy_predicted.compute()
    # Distributed training sketches the histograms per worker: close, not identical.
    assert (predicted == local.predict(X)).mean() > 0.97
    np.testing.assert_array_equal(on_dask.predict(X[:50]), predicted[:50])  # in memory too

    frame = dd.from_pandas(pd.DataFrame(X, columns=[f"pixel_{i}" for i in range(20)]),
                           npartitions=4)
    regressor = BoostedTreesRegressor(n_estimators=60, random_state=0).fit(frame, X[:, 0])
    assert list(regressor.feature_names_in_[:2]) == ["pixel_0", "pixel_1"]
    fitted = regressor.predict(frame).compute()
    assert np.corrcoef(fitted, X[:, 0])[0, 1] > 0.99


def test_worker_config_unsets_malloc_trim():
    """The nanny's environment for new workers no longer holds MALLOC_TRIM_THRESHOLD_."""
    dask = pytest.importorskip("dask")
    pytest.importorskip("distributed")
    from distributed.nanny import _get_env_variables

    from skvision.parallel import worker_config

    key = "distributed.nanny.pre-spawn-environ"
    with dask.config.set({f"{key}.MALLOC_TRIM_THRESHOLD_": 65536}):  # dask's default
        assert "MALLOC_TRIM_THRESHOLD_" in _get_env_variables(key)
        with dask.config.set(worker_config()):
            environment = _get_env_variables(key)
    assert "MALLOC_TRIM_THRESHOLD_" not in environment
    with dask.config.set(worker_config()):
        environment = _get_env_variables(key)
    assert "MALLOC_TRIM_THRESHOLD_" not in environment
    assert environment["OMP_NUM_THREADS"] == "1"


def test_without_dask_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "dask", None)
    assert not is_dask_collection(np.zeros(3))
    with pytest.raises(ImportError, match=r"scikit-vision\[distributed\]"):
        apply_blocks(LogisticRegression(), np.zeros((2, 2)))


def test_apply_blocks_errors():
    da = pytest.importorskip("dask.array")
    X, y = load_digit_images(return_X_y=True)
    with pytest.raises(TypeError, match="takes a dask array"):
        apply_blocks(LogisticRegression(), X)
    with pytest.raises(AttributeError, match="no method 'transform'"):
        apply_blocks(LogisticRegression(), da.from_array(X.reshape(len(X), -1)), "transform")
    fitted = LogisticRegression(max_iter=500).fit(X.reshape(len(X), -1), y)
    # Without a distributed client the local scheduler runs the blocks.
    lazy = apply_blocks(fitted, da.from_array(X.reshape(len(X), -1), chunks=(600, 64)))
    np.testing.assert_array_equal(lazy.compute(), fitted.predict(X.reshape(len(X), -1)))
