"""Resumable training (``checkpoint=``): a killed fit continues where it stood.

A fit killed with SIGKILL in a subprocess right after the checkpoint of
epoch 2 of 4 is resumed here and ends with the weights of an uninterrupted
fit; a checkpoint of other parameters or data is refused; an interrupted
write leaves the previous checkpoint as it was. One-thread CPU float32
arithmetic throughout, so that "the same" means equal. (The data-parallel
case is in ``tests/test_distributed.py``.)
"""

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

import skvision
from skvision import CNNClassifier, UNetSegmenter, VisionTransformerClassifier
from skvision._callbacks import TrainingCheckpoint
from skvision._checkpoint import read_state, state_files
from skvision.augmentation import ImageAugmenter
from skvision.datasets import make_shapes

ROOT = Path(__file__).resolve().parent.parent
PARAMS = dict(filters=(8,), epochs=4, batch_size=32, device="cpu", precision="32",
              random_state=0)

# Fits the classifier of PARAMS with a checkpoint and kills its own process
# (SIGKILL: no cleanup of any kind) once the checkpoint of epoch 2 is written.
KILLED_FIT = """
import os, signal, sys
import torch
torch.set_num_threads(1)
from sklearn.datasets import load_digits
from skvision import CNNClassifier
from skvision._callbacks import TrainingCheckpoint

write = TrainingCheckpoint.on_epoch_end

def write_then_die(self, net, **kwargs):
    write(self, net, **kwargs)
    if len(net.history) == 2:
        os.kill(os.getpid(), signal.SIGKILL)

TrainingCheckpoint.on_epoch_end = write_then_die
X, y = load_digits(return_X_y=True)
CNNClassifier(**{params!r}, checkpoint=sys.argv[1]).fit(X[:300].reshape(-1, 8, 8) / 16, y[:300])
print("not killed")
"""


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    # Scaled to [0, 1]: raw 0-16 levels would warn at fit (input_kind_), and
    # one test here asserts that fitting with a checkpoint warns of nothing.
    # KILLED_FIT scales its copy the same way.
    return X[:300].reshape(-1, 8, 8) / 16, y[:300]


def _max_difference(model, other):
    state, other = model.module_.state_dict(), other.module_.state_dict()
    assert state.keys() == other.keys()
    return max((state[key].double() - other[key].double()).abs().max().item() for key in state)


def _stopped_fit(estimator, X, y, after_epoch):
    """Fit ``estimator`` and stop it (as Ctrl-C does) once the checkpoint of ``after_epoch`` is written."""
    write = TrainingCheckpoint.on_epoch_end

    def write_then_stop(self, net, **kwargs):
        write(self, net, **kwargs)
        if len(net.history) == after_epoch:
            raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TrainingCheckpoint, "on_epoch_end", write_then_stop)
        with pytest.warns(RuntimeWarning, match="resumes from the checkpoint"):
            estimator.fit(X, y)
    return estimator


def test_a_killed_fit_resumes_to_the_uninterrupted_model(tmp_path, digits):
    X, y = digits
    directory = tmp_path / "checkpoint"
    script = tmp_path / "killed_fit.py"
    script.write_text(textwrap.dedent(KILLED_FIT.format(params=PARAMS)))
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    run = subprocess.run([sys.executable, str(script), str(directory)], capture_output=True,
                         text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"})
    assert run.returncode == -9, run.stdout + run.stderr  # killed by SIGKILL
    [name] = state_files(directory)
    assert read_state(directory / name)["epochs"] == 2

    resumed = CNNClassifier(**PARAMS, checkpoint=directory).fit(X, y)
    reference = CNNClassifier(**PARAMS).fit(X, y)

    assert _max_difference(resumed, reference) < 1e-6
    assert not directory.exists()
    assert list(resumed.history_["epoch"]) == [1, 2, 3, 4]
    np.testing.assert_allclose(resumed.history_.drop(columns="dur").to_numpy(),
                               reference.history_.drop(columns="dur").to_numpy(), atol=1e-6)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, digits):
    """A checkpoint of a CNN fit (PARAMS) stopped after epoch 1."""
    directory = tmp_path_factory.mktemp("stopped") / "checkpoint"
    _stopped_fit(CNNClassifier(**PARAMS, checkpoint=directory), *digits, after_epoch=1)
    return directory


def test_a_fit_of_other_parameters_or_data_starts_afresh_beside_it(checkpoint, digits):
    """Each fit has its own state file: another fit neither resumes nor touches it."""
    X, y = digits
    [name] = state_files(checkpoint)
    written = (checkpoint / name).read_bytes()
    for params, X_fit, y_fit in [({**PARAMS, "lr": 0.01}, X, y),
                                 (PARAMS, X[::-1], y[::-1])]:  # other rows, as many
        model = CNNClassifier(**{**params, "epochs": 2}, checkpoint=checkpoint).fit(X_fit, y_fit)
        assert list(model.history_["epoch"]) == [1, 2]  # not resumed from epoch 1
    assert state_files(checkpoint) == [name]  # theirs removed at the end, this one kept
    assert (checkpoint / name).read_bytes() == written


def test_a_state_file_of_another_fit_under_this_fits_name_is_refused(tmp_path, checkpoint,
                                                                      digits):
    other = {**PARAMS, "lr": 0.01}
    _stopped_fit(CNNClassifier(**other, checkpoint=tmp_path / "other"), *digits, after_epoch=1)
    [own_name] = state_files(tmp_path / "other")
    [name] = state_files(checkpoint)
    (tmp_path / "edited").mkdir()
    (tmp_path / "edited" / own_name).write_bytes((checkpoint / name).read_bytes())
    with pytest.raises(ValueError, match=r"other parameters: lr=0\.003 there, 0\.01 here"):
        CNNClassifier(**other, checkpoint=tmp_path / "edited").fit(*digits)
    assert state_files(tmp_path / "edited") == [own_name]  # left as it was


def test_a_parallel_search_resumes_each_fit_from_its_own_state(tmp_path, digits):
    """Candidates and folds share the cloned directory; each resumes its own file."""
    from sklearn.model_selection import GridSearchCV

    X, y = digits
    directory = tmp_path / "checkpoint"

    def search(checkpoint, n_jobs=2):
        # 3 candidates x 2 folds; the log loss tells any difference in the weights.
        return GridSearchCV(CNNClassifier(**{**PARAMS, "epochs": 2}, checkpoint=checkpoint),
                            {"lr": [0.001, 0.003, 0.01]}, cv=2, refit=False,
                            scoring="neg_log_loss", n_jobs=n_jobs).fit(X, y)

    write = TrainingCheckpoint.on_epoch_end

    def write_then_stop(self, net, **kwargs):
        write(self, net, **kwargs)
        raise KeyboardInterrupt  # the search killed after every fit's first epoch

    with pytest.MonkeyPatch.context() as patch, warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "Training was interrupted"
        patch.setattr(TrainingCheckpoint, "on_epoch_end", write_then_stop)
        search(directory, n_jobs=1)  # in this process, where the stop is patched in
    assert len(state_files(directory)) == 6
    resumed = search(directory)
    assert not directory.exists()  # every fit found its own state and removed it
    plain = search(None)
    np.testing.assert_allclose(resumed.cv_results_["mean_test_score"],
                               plain.cv_results_["mean_test_score"], rtol=1e-6)


def test_an_interrupted_write_leaves_the_previous_checkpoint(tmp_path, digits, monkeypatch):
    X, y = digits
    directory = tmp_path / "checkpoint"
    _stopped_fit(CNNClassifier(**PARAMS, checkpoint=directory), X, y, after_epoch=1)
    [name] = state_files(directory)
    written = (directory / name).read_bytes()

    import skvision._persistence._archive

    def fail(tensors):
        raise OSError("disk full")

    # Fails in the middle of writing the epoch-2 checkpoint: metadata.json
    # and the arrays are in the temporary file, the tensors not.
    monkeypatch.setattr(skvision._persistence._archive, "save_tensors", fail)
    with pytest.raises(OSError, match="disk full"):
        CNNClassifier(**PARAMS, checkpoint=directory).fit(X, y)
    assert os.listdir(directory) == [name]  # no temporary file
    assert (directory / name).read_bytes() == written

    # And the checkpoint still resumes.
    monkeypatch.undo()
    resumed = CNNClassifier(**PARAMS, checkpoint=directory).fit(X, y)
    assert _max_difference(resumed, CNNClassifier(**PARAMS).fit(X, y)) < 1e-6


@pytest.fixture(scope="module")
def shapes():
    images, labels = make_shapes(24, image_size=16, random_state=0)
    _, masks = make_shapes(24, image_size=16, task="segmentation", random_state=0)
    return images, labels, masks


@pytest.mark.parametrize("family", ["unet", "cnn_early_stopping_augment", "vit"])
def test_other_estimators_resume(tmp_path, digits, shapes, family):
    images, labels, masks = shapes
    make, X, y, stop = {
        "unet": (lambda: UNetSegmenter(depth=1, base_filters=4, epochs=3, batch_size=8,
                                       device="cpu", precision="32", random_state=0),
                 images, masks, 2),
        # Early stopping's state and augmentation's generator. At this lr the
        # validation loss is best at epoch 1: stopped after epoch 2 (one miss),
        # the resumed fit stops after epoch 3 and goes back to epoch 1's weights.
        "cnn_early_stopping_augment": (
            lambda: CNNClassifier(**{**PARAMS, "epochs": 8, "lr": 0.3}, early_stopping=True,
                                  n_iter_no_change=2, augment=ImageAugmenter(
                                      degrees=10, noise_std=0.05, mixup_alpha=0.2)),
            *digits, 2),
        "vit": (lambda: VisionTransformerClassifier(
            patch_size=4, embed_dim=16, depth=1, n_heads=2, epochs=3, batch_size=8,
            device="cpu", precision="32", random_state=0), images, labels, 1),
    }[family]
    directory = tmp_path / "checkpoint"
    _stopped_fit(make().set_params(checkpoint=directory), X, y, after_epoch=stop)
    resumed = make().set_params(checkpoint=directory).fit(X, y)
    reference = make().fit(X, y)
    assert _max_difference(resumed, reference) < 1e-6
    assert len(resumed.history_) == len(reference.history_)
    if family == "cnn_early_stopping_augment":
        assert len(reference.history_) == 3  # stopped early
    assert not directory.exists()


def test_a_fit_without_seed_resumes_with_the_seed_it_drew(tmp_path, digits):
    X, y = digits
    directory = tmp_path / "checkpoint"
    params = {**PARAMS, "epochs": 2, "random_state": None, "early_stopping": True}
    stopped = _stopped_fit(CNNClassifier(**params, checkpoint=directory), X, y, after_epoch=1)
    resumed = CNNClassifier(**params, checkpoint=directory).fit(X, y)
    # The same validation split (drawn from the seed): epoch 1's validation loss again.
    assert resumed.history_["valid_loss"][0] == stopped.history_["valid_loss"][0]
    assert len(resumed.history_) == 2 and not directory.exists()


def test_the_checkpoint_is_kept_next_to_other_files_and_partial_fit_ignores_it(tmp_path, digits):
    X, y = digits
    (tmp_path / "notes.txt").write_text("mine")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CNNClassifier(**{**PARAMS, "epochs": 1}, checkpoint=tmp_path).fit(X, y)
    assert os.listdir(tmp_path) == ["notes.txt"]  # the state file gone, the folder kept
    model = CNNClassifier(**PARAMS, checkpoint=tmp_path / "unused")
    model.partial_fit(X, y, classes=range(10))
    assert not (tmp_path / "unused").exists()
    # A path-like checkpoint saves (as a str); a loaded model does not write
    # where its file says (tests/test_persistence_pipelines.py), so it comes back None.
    skvision.save(model, tmp_path / "model.skv")
    with pytest.warns(UserWarning, match=r"checkpoint=.*unused.*is None"):
        assert skvision.load(tmp_path / "model.skv").checkpoint is None
