"""skvision.save / skvision.load of whole scikit-learn pipelines, without pickle.

Every meta-estimator holding skvision estimators round-trips with equal
outputs, and a file with a pickle payload or a type off the allow-list is
refused before anything in it is built. Kept cheap: one-epoch 8-filter CNNs
on 120 digits.
"""

import io
import json
import pickle
import zipfile

import numpy as np
import pytest
import skops.io
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.ensemble import StackingClassifier, VotingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV
from sklearn.pipeline import FeatureUnion, Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from skorch.callbacks import Callback, EpochScoring, LRScheduler

from skvision import (
    CNNClassifier,
    CNNRegressor,
    PretrainedFeatureExtractor,
    load,
    save,
)
from skvision.datasets import load_digit_images
from skvision.preprocessing import ChannelStandardizer, ImageFlattener

# Side effects of loading, recorded here: none may happen when a file is refused.
EVENTS = []


class SideEffect(TransformerMixin, BaseEstimator):
    """A transformer whose reconstruction leaves a trace in EVENTS."""

    def fit(self, X, y=None):
        self.fitted_ = True
        return self

    def transform(self, X):
        return X

    def __setstate__(self, state):
        EVENTS.append("SideEffect built")
        super().__setstate__(state)


def _explode():
    EVENTS.append("pickle payload ran")
    return "boom"


class Payload:
    def __reduce__(self):
        return _explode, ()


class UserCallback(Callback):
    def __init__(self, every=1):
        self.every = every


@pytest.fixture(autouse=True)
def no_events():
    EVENTS.clear()
    yield
    EVENTS.clear()


@pytest.fixture(scope="module")
def digits():
    X, y = load_digit_images(return_X_y=True)
    return X[:120], y[:120]


def _cnn(**params):
    return CNNClassifier(filters=(8,), epochs=1, device="cpu", random_state=0, **params)


def _linear():
    return make_pipeline(ImageFlattener(), LogisticRegression(max_iter=200))


def _extractor(**params):
    return PretrainedFeatureExtractor(backbone="test_efficientnet", weights=False,
                                      image_size=16, device="cpu", **params)


def _flat_with_extra(X):
    extra = np.arange(len(X), dtype=np.float32)[:, None] % 7
    return np.hstack([X.reshape(len(X), -1), extra])


# name: (unfitted model, fit data (X, y) from digits, output method)
CASES = {
    "Pipeline": (lambda: make_pipeline(ChannelStandardizer(), _cnn()), "images", "predict_proba"),
    "ColumnTransformer": (lambda: ColumnTransformer([
        ("features", _extractor(image_shape=(8, 8)), slice(0, 64)),
        ("extra", StandardScaler(), [64]),
    ]), "flat", "transform"),
    "FeatureUnion": (lambda: FeatureUnion([
        ("features", _extractor()), ("pixels", ImageFlattener())]), "images", "transform"),
    "GridSearchCV": (lambda: GridSearchCV(_cnn(), {"lr": [1e-3, 3e-3]}, cv=2), "images",
                     "predict_proba"),
    "RandomizedSearchCV": (lambda: RandomizedSearchCV(
        make_pipeline(ChannelStandardizer(), _cnn()), {"cnnclassifier__lr": [1e-3, 3e-3]},
        n_iter=2, cv=2, random_state=0), "images", "predict_proba"),
    "VotingClassifier": (lambda: VotingClassifier(
        [("cnn", _cnn()), ("linear", _linear())], voting="soft"), "images", "predict_proba"),
    "StackingClassifier": (lambda: StackingClassifier(
        [("cnn", _cnn()), ("linear", _linear())],
        final_estimator=LogisticRegression(max_iter=200), cv=2), "images", "predict_proba"),
    "CalibratedClassifierCV": (lambda: CalibratedClassifierCV(_cnn(), cv=2), "images",
                               "predict_proba"),
    "TransformedTargetRegressor": (lambda: TransformedTargetRegressor(
        CNNRegressor(filters=(8,), epochs=1, device="cpu", random_state=0),
        transformer=StandardScaler()), "images", "predict"),
    "StandardScaler": (StandardScaler, "flat", "transform"),
    "LogisticRegression": (lambda: LogisticRegression(max_iter=200), "flat", "predict_proba"),
}


def _data(kind, digits):
    X, y = digits
    return (_flat_with_extra(X) if kind == "flat" else X), y


@pytest.mark.parametrize("name", sorted(CASES))
def test_round_trip_gives_identical_outputs(name, digits, tmp_path):
    make, kind, method = CASES[name]
    X, y = _data(kind, digits)
    model = make().fit(X, y)
    expected = getattr(model, method)(X[:30])
    save(model, tmp_path / "model.skv")
    restored = load(tmp_path / "model.skv")
    assert type(restored) is type(model)
    np.testing.assert_array_equal(getattr(restored, method)(X[:30]), expected)
    # The skvision parts come back as themselves, not as placeholders.
    assert "_EstimatorRef" not in repr(restored)


def test_fitted_search_keeps_its_results_and_shared_estimators(digits, tmp_path):
    X, y = digits
    search = GridSearchCV(_cnn(), {"lr": [1e-3, 3e-3]}, cv=2).fit(X, y)
    voting = VotingClassifier([("cnn", _cnn()), ("linear", _linear())]).fit(X, y)
    save([search, voting], tmp_path / "both.skv")
    restored_search, restored_voting = load(tmp_path / "both.skv")
    assert restored_search.best_params_ == search.best_params_
    np.testing.assert_array_equal(restored_search.cv_results_["mean_test_score"],
                                  search.cv_results_["mean_test_score"])
    assert isinstance(restored_search.best_estimator_, CNNClassifier)
    # One object referred to twice stays one object.
    assert restored_voting.named_estimators_["cnn"] is restored_voting.estimators_[0]


def test_the_users_model_is_not_changed_by_saving(digits, tmp_path):
    X, y = digits
    pipe = make_pipeline(ChannelStandardizer(), _cnn()).fit(X, y)
    step = pipe.steps[1][1]
    save(pipe, tmp_path / "model.skv")
    assert pipe.steps[1][1] is step and isinstance(step, CNNClassifier)


def _members(path):
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _write(path, members):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


@pytest.fixture
def pipeline_file(digits, tmp_path, monkeypatch):
    """A saved fitted pipeline, and a record of every network built while loading."""
    X, y = digits
    path = tmp_path / "pipe.skv"
    save(make_pipeline(ChannelStandardizer(), _cnn()).fit(X, y), path)
    original = CNNClassifier._rebuild_network

    def recording(self, *args, **kwargs):
        EVENTS.append("network built")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(CNNClassifier, "_rebuild_network", recording)
    return path


def test_a_pickle_payload_is_refused_before_anything_is_built(pipeline_file, tmp_path):
    members = _members(pipeline_file)
    array = next(name for name in members if name.startswith("arrays/"))
    buffer = io.BytesIO()
    np.save(buffer, np.array([Payload()], dtype=object), allow_pickle=True)
    crafted = tmp_path / "object_array.skv"
    _write(crafted, {**members, array: buffer.getvalue()})
    with pytest.raises(ValueError, match=f"{array}.*pickle payload"):
        load(crafted)

    extra = tmp_path / "extra_member.skv"
    _write(extra, {**members, "model.pkl": pickle.dumps(Payload())})
    with pytest.raises(ValueError, match=r"'model.pkl' \(a pickle\)"):
        load(extra)
    assert EVENTS == []


def test_an_unknown_type_is_refused_before_anything_is_built(digits, tmp_path, monkeypatch):
    X, y = digits
    path = tmp_path / "side.skv"
    save(Pipeline([("side", SideEffect()), ("cnn", _cnn())]).fit(X, y), path)
    EVENTS.clear()
    monkeypatch.setattr(skops.io, "loads", lambda *args, **kwargs: EVENTS.append("skops"))
    name = f"{SideEffect.__module__}.SideEffect"
    with pytest.raises(ValueError, match=f"{name}.*refusing.*trusted="):
        load(path)
    assert EVENTS == []  # neither the transformer nor the CNN was built
    monkeypatch.undo()
    restored = load(path, trusted=[name])
    assert EVENTS == ["SideEffect built"]
    np.testing.assert_array_equal(restored.predict(X[:10]), restored[-1].predict(X[:10]))


@pytest.mark.parametrize("where", ["estimator", "callback"])
def test_an_unknown_type_in_skvisions_part_is_refused_first(where, pipeline_file, tmp_path,
                                                            monkeypatch):
    monkeypatch.setattr(skops.io, "loads", lambda *args, **kwargs: EVENTS.append("skops"))
    members = _members(pipeline_file)
    document = json.loads(members["metadata.json"])
    cnn = document["estimator"]["refs"][-1]
    if where == "estimator":
        cnn["__estimator__"] = f"{SideEffect.__module__}.SideEffect"
    else:
        cnn["state"]["__dict__"]["callbacks"] = {"__callbacks__": [
            {"class": "os.system", "name": None, "arguments": {"__dict__": {}}}]}
    crafted = tmp_path / "crafted.skv"
    _write(crafted, {**members, "metadata.json": json.dumps(document).encode()})
    with pytest.raises(ValueError, match="(SideEffect|os.system).*refusing"):
        load(crafted)
    assert EVENTS == []


def test_callbacks_are_saved_by_class_and_arguments(tmp_path):
    callbacks = [EpochScoring("accuracy", on_train=True, name="train_accuracy"),
                 ("steps", LRScheduler(policy="StepLR", step_size=2))]
    save(_cnn(callbacks=callbacks), tmp_path / "callbacks.skv")
    restored = load(tmp_path / "callbacks.skv").callbacks
    assert isinstance(restored[0], EpochScoring) and restored[1][0] == "steps"
    assert restored[0].get_params() == callbacks[0].get_params()
    assert restored[1][1].get_params() == callbacks[1][1].get_params()


def test_a_users_callback_loads_only_when_trusted(tmp_path):
    save(_cnn(callbacks=[UserCallback(every=3)]), tmp_path / "user.skv")
    name = f"{UserCallback.__module__}.UserCallback"
    with pytest.raises(ValueError, match=f"{name}.*refusing"):
        load(tmp_path / "user.skv")
    restored = load(tmp_path / "user.skv", trusted=[name])
    assert isinstance(restored.callbacks[0], UserCallback) and restored.callbacks[0].every == 3


def test_a_callback_that_writes_files_loads_only_when_trusted(tmp_path):
    """A file chooses a callback's class and arguments: one that writes is refused."""
    from skorch.callbacks import TrainEndCheckpoint

    (tmp_path / "notes.txt").write_text("mine")
    writer = TrainEndCheckpoint(dirname=str(tmp_path), fn_prefix="", f_params="notes.txt",
                                f_optimizer=None, f_criterion=None, f_history=None)
    save(_cnn(callbacks=[("ck", writer)]), tmp_path / "writer.skv")
    name = f"{TrainEndCheckpoint.__module__}.TrainEndCheckpoint"
    with pytest.raises(ValueError, match=rf"{name}.*refusing.*trusted=\['{name}'\]"):
        load(tmp_path / "writer.skv")
    restored = load(tmp_path / "writer.skv", trusted=[name])
    assert restored.callbacks[0][0] == "ck"
    assert restored.callbacks[0][1].get_params() == writer.get_params()
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_checkpoint_directory_in_a_file_is_not_written(tmp_path):
    """``checkpoint`` from a file comes back None: fit neither writes nor removes there."""
    directory = tmp_path / "theirs"
    directory.mkdir()
    (directory / "keep.txt").write_text("mine")
    X, y = load_digit_images(return_X_y=True)
    save(make_pipeline(ImageFlattener(), _cnn(checkpoint=str(directory))), tmp_path / "m.skv")
    with pytest.warns(UserWarning, match=r"checkpoint='.*theirs'.*is None.*set_params"):
        pipeline = load(tmp_path / "m.skv")
    assert pipeline[-1].checkpoint is None
    before = {path: path.stat().st_mtime_ns for path in directory.rglob("*")}
    pipeline.fit(X[:100], y[:100])
    assert {path: path.stat().st_mtime_ns for path in directory.rglob("*")} == before


def test_callbacks_with_code_in_their_parameters_are_saved_as_none(tmp_path):
    model = _cnn(callbacks=[EpochScoring(lambda net, X, y: 0.0, name="custom")])
    with pytest.warns(UserWarning, match="not plain data.*saved as None"):
        save(model, tmp_path / "code.skv")
    assert load(tmp_path / "code.skv").callbacks is None
