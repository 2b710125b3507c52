"""Faults during fit and predict, and predicting from several threads at once."""

import threading
import warnings

import numpy as np
import pytest
import torch
from _memory import PEAK_HELPERS, peak_environment

import skvision._training
from skvision import CNNClassifier
from skvision._torch import predict_batches
from skvision.datasets import load_digit_images

FAST = dict(filters=(8, 16), batch_size=50, device="cpu", random_state=0)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digit_images(return_X_y=True)
    return X[:200], y[:200]


class _FailAt:
    """An ``augment`` hook that raises (or poisons the batch) at the n-th training batch."""

    def __init__(self, batch, fault):
        self.batch, self.fault, self.calls = batch, fault, 0

    def __call__(self, X):
        self.calls += 1
        if self.calls < self.batch:
            return X
        if self.fault == "interrupt":
            raise KeyboardInterrupt
        return X * float("nan")


def test_keyboard_interrupt_keeps_a_usable_model(digits):
    X, y = digits
    # 4 batches per epoch: the 6th batch is in epoch 2.
    clf = CNNClassifier(**FAST, epochs=5, augment=_FailAt(6, "interrupt"))
    with pytest.warns(RuntimeWarning, match="interrupted during epoch 2"):
        clf.fit(X, y)
    assert len(clf.history_) == 2 and np.isfinite(clf.history_["train_loss"].iloc[0])
    assert clf.predict(X[:10]).shape == (10,)
    # The weights are those reached: one full epoch and a batch, not the initial ones.
    fresh = CNNClassifier(**FAST, epochs=1).fit(X, y)
    assert not np.allclose(clf.predict_proba(X), fresh.predict_proba(X))


def test_early_stopping_is_not_reported_as_an_interrupt(digits):
    X, y = digits
    clf = CNNClassifier(**FAST, epochs=40, early_stopping=True, n_iter_no_change=1, lr=0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        clf.fit(X, y)
    assert len(clf.history_) < 40


def test_diverged_loss_names_the_batch_and_restores_the_best_weights(digits, monkeypatch):
    X, y = digits
    # Keep early stopping's copy of the best weights (dropped after a fit) to compare.
    monkeypatch.setattr(skvision._training, "drop_fit_state", lambda net: None)
    # 180 training images (early stopping holds out 20) in 4 batches per epoch:
    # batch 13 is the first of epoch 4.
    clf = CNNClassifier(**FAST, epochs=10, early_stopping=True, validation_fraction=0.1,
                        n_iter_no_change=10, augment=_FailAt(13, "nan"))
    with pytest.raises(FloatingPointError, match="epoch 4, batch 1.*lower lr"):
        clf.fit(X, y)
    stopping = dict(clf.net_.callbacks_)["early_stopping"]
    best = stopping.best_model_weights_
    for name, tensor in clf.net_.module_.state_dict().items():
        torch.testing.assert_close(tensor, best[name])
    assert np.isfinite(clf.predict_proba(X)).all()


class _OutOfMemoryAbove(torch.nn.Module):
    """Doubles its input, but 'runs out of memory' on batches larger than ``limit``."""

    def __init__(self, limit):
        super().__init__()
        self.limit = limit
        self.sizes = []

    def forward(self, x):
        self.sizes.append(len(x))
        if len(x) > self.limit:
            raise torch.OutOfMemoryError("simulated: CUDA out of memory")
        return 2 * x


def test_out_of_memory_halves_the_batch():
    X = torch.arange(40, dtype=torch.float32).view(10, 1, 2, 2)
    module = _OutOfMemoryAbove(limit=3)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        out = predict_batches(module, X, batch_size=16, device="cpu")
    assert [str(warning.message).split("batch_size=")[1] for warning in record] == [
        "8.", "4.", "2."]
    torch.testing.assert_close(out, 2 * X)
    assert max(module.sizes[-3:]) <= 3
    with pytest.raises(MemoryError, match="even with one image"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        predict_batches(_OutOfMemoryAbove(limit=0), X, batch_size=4, device="cpu")


def test_out_of_memory_in_a_fitted_estimator(digits):
    X, y = digits
    clf = CNNClassifier(**FAST, epochs=1).fit(X, y)
    expected = clf.predict_proba(X)
    network = clf.net_.module_
    original_forward = network.forward

    def forward(batch):
        if len(batch) > 20:
            raise torch.OutOfMemoryError("simulated")
        return original_forward(batch)

    network.forward = forward
    with pytest.warns(RuntimeWarning, match="Out of memory"):
        np.testing.assert_allclose(clf.predict_proba(X), expected, rtol=1e-5, atol=1e-6)


def test_concurrent_predict_matches_serial(digits):
    X, y = digits
    clf = CNNClassifier(**FAST, epochs=2).fit(X, y)
    clf.net_.module_.train()  # as right after fit: the first predictions switch to eval
    batches = [X[i * 20 : i * 20 + 20] for i in range(10)]
    serial = [clf.predict_proba(batch) for batch in batches]
    errors, mismatches = [], []

    def worker(offset):
        try:
            for call in range(50):
                index = (offset + call) % len(batches)
                if not np.array_equal(clf.predict_proba(batches[index]), serial[index]):
                    mismatches.append(index)
        except Exception as error:
            errors.append(error)

    clf.net_.module_.train()
    threads = [threading.Thread(target=worker, args=(offset,)) for offset in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and not mismatches


def test_streamed_prediction_equals_whole_batch(digits):
    """Inference reads the data batch by batch; the batch size does not change the result."""
    X, y = digits
    clf = CNNClassifier(**FAST, epochs=1).fit(X, y)
    whole = clf.predict_proba(X)
    clf.batch_size = 7
    np.testing.assert_allclose(clf.predict_proba(X), whole, rtol=1e-5, atol=1e-6)


_MEMORY_SCRIPT = PEAK_HELPERS + r"""
import os, sys
import numpy as np
from skvision import CNNClassifier

path = sys.argv[1]
n = 60_000
images = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, 32, 32, 3))
rng = np.random.default_rng(0)
for start in range(0, n, 20_000):
    images[start:start + 20_000] = rng.integers(0, 256, (20_000, 32, 32, 3), dtype=np.uint8)
images.flush()
del images
X = np.load(path, mmap_mode="r")
clf = CNNClassifier(filters=(4,), epochs=1, batch_size=512, device="cpu", random_state=0)
clf.fit(np.asarray(X[:256]), np.arange(256) % 3)
before = rss_mib("VmRSS")
reset_peak()
labels = clf.predict(X)
peak = rss_mib("VmHWM")
print(len(labels), round(before), round(peak), round(peak - before))
"""


@pytest.mark.slow
def test_prediction_memory_is_bounded_on_a_memmap(tmp_path):
    """60,000 images of 32x32x3 (176 MiB on disk): peak memory grows < 150 MiB.

    Measured 85 MiB (see ``_memory.peak_environment``); a uint8 copy of the
    data would add 176 MiB, a float32 one 703 MiB. (200,000 images stayed
    under 300 MiB too.)
    """
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", _MEMORY_SCRIPT, str(tmp_path / "images.npy")],
        capture_output=True, text=True, timeout=600, check=True, env=peak_environment(),
    )
    n_labels, before, peak, growth = map(int, result.stdout.split())
    assert n_labels == 60_000
    assert growth < 150, f"peak resident memory grew by {growth} MiB (from {before} MiB)"


_DETERMINISM_SCRIPT = r"""
import hashlib
import numpy as np
from skvision import CNNClassifier, ImageAugmenter
from skvision.datasets import load_digit_images
X, y = load_digit_images(return_X_y=True)
clf = CNNClassifier(filters=(8, 16), epochs=2, device="cpu", random_state=7,
                    augment=ImageAugmenter(horizontal_flip=0, degrees=10))
proba = clf.fit(X[:300], y[:300]).predict_proba(X[300:400])
print(hashlib.sha256(proba.tobytes()).hexdigest())
"""


def test_same_seed_same_predictions_in_separate_processes():
    import subprocess
    import sys

    digests = {
        subprocess.run([sys.executable, "-c", _DETERMINISM_SCRIPT], capture_output=True,
                       text=True, timeout=300, check=True).stdout.strip()
        for _ in range(2)
    }
    assert len(digests) == 1
