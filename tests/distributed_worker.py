"""One process of the data-parallel runs of ``tests/test_distributed.py``.

Started by torchrun (``python -m torch.distributed.run --nproc_per_node 2``)
on CPU processes; writes what each process ends with to ``OUT`` for the
test to compare. Usage: ``distributed_worker.py OUT {fit,fail,resume,remote}``.
"""

import pickle
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits

from skvision import (
    CNNClassifier,
    FineTunedClassifier,
    UNetSegmenter,
    VisionTransformerClassifier,
    load,
    save,
)
from skvision.datasets import make_shapes

# Batch norm off: on CPUs each process normalizes over its own batch, which
# one process with twice the batch cannot reproduce. Dropout off: the draws
# differ. A one-cycle schedule and the elastic-net penalty stay on. Two
# epochs: the float rounding of the gradient sums differs between the two
# runs (2.6e-7 on the weights after 2 epochs); a third epoch without weight
# decay (alpha the only penalty since AdamW's own decay is off) amplified it
# to 2.4e-3 at this seed, which says nothing about the steps taken.
PARAMS = dict(filters=(16, 32), batch_norm=False, dropout=0.0, epochs=2, batch_size=16,
              random_state=0)
N_TRAIN = 600  # even, and 300 images a process end in a partial batch of 16 (12)


def fit(out, accelerator):
    rank = accelerator.process_index
    X, y = load_digits(return_X_y=True)
    X = X.reshape(-1, 8, 8)
    X_train, y_train, X_test = X[:N_TRAIN], y[:N_TRAIN], X[N_TRAIN:]

    clf = CNNClassifier(**PARAMS, accelerator=accelerator).fit(X_train, y_train)
    torch.save(clf.module_.state_dict(), out / f"weights_{rank}.pt")
    proba = clf.predict_proba(X_test)
    np.save(out / f"proba_{rank}.npy", proba)
    clf.history_.to_csv(out / f"history_{rank}.csv", index=False)
    save(clf, out / f"model_{rank}.skv")
    assert np.array_equal(load(out / f"model_{rank}.skv").predict_proba(X_test), proba)
    assert np.array_equal(pickle.loads(pickle.dumps(clf)).predict_proba(X_test), proba)

    # With batch norm: its running statistics must agree too.
    bn = CNNClassifier(filters=(8,), epochs=1, random_state=0, accelerator=accelerator)
    torch.save(bn.fit(X_train, y_train).module_.state_dict(), out / f"weights_bn_{rank}.pt")

    # The other estimators that take an accelerator, briefly.
    shapes, labels = make_shapes(40, image_size=32, random_state=0)
    _, masks = make_shapes(40, image_size=32, task="segmentation", random_state=0)
    others = {
        "vit": (VisionTransformerClassifier(patch_size=4, embed_dim=32, depth=1, n_heads=2,
                                            epochs=1, batch_size=8, random_state=0), labels),
        "finetuned": (FineTunedClassifier(image_size=32, freeze=1, epochs=1, batch_size=8,
                                          random_state=0), labels),
        "unet": (UNetSegmenter(depth=2, base_filters=8, epochs=1, batch_size=8,
                               random_state=0), masks),
    }
    for name, (estimator, targets) in others.items():
        estimator.set_params(accelerator=accelerator).fit(shapes, targets)
        torch.save(estimator.module_.state_dict(), out / f"weights_{name}_{rank}.pt")

    # One huge image, in one process's share: its loss diverges there only.
    X_bad = X_train.astype(np.float32)
    X_bad[3] = 3e38
    try:
        CNNClassifier(**PARAMS, accelerator=accelerator).fit(X_bad, y_train)
    except FloatingPointError as error:
        (out / f"diverged_{rank}.txt").write_text(str(error))

    if rank == 0:  # the reference: one process, twice the batch
        # precision="32": the arithmetic an accelerator without mixed precision trains in
        # ("auto" would be bfloat16 on CPUs with bfloat16 instructions).
        reference = CNNClassifier(**{**PARAMS, "batch_size": 2 * PARAMS["batch_size"]},
                                  device="cpu", precision="32").fit(X_train, y_train)
        torch.save(reference.module_.state_dict(), out / "weights_reference.pt")
        np.save(out / "proba_reference.npy", reference.predict_proba(X_test))


def fail(out, accelerator):
    """Process 1 fails in the second epoch while process 0 trains on."""
    X, y = load_digits(return_X_y=True)
    batches = []

    def augment(images):
        batches.append(len(images))
        if accelerator.process_index == 1 and len(batches) == 25:  # 19 batches an epoch
            raise ValueError("process 1 failed on purpose")
        return images

    CNNClassifier(**PARAMS, augment=augment, accelerator=accelerator).fit(
        X[:N_TRAIN].reshape(-1, 8, 8), y[:N_TRAIN])
    (out / "not_stopped.txt").write_text("fit ended")


def resume(out, accelerator):
    """A fit with a checkpoint stopped after epoch 2 of 3 on both processes, then resumed.

    Stopped as Ctrl-C stops it (skorch ends the loop on KeyboardInterrupt),
    right after the checkpoint of epoch 2 was written; the resumed fit is a
    new estimator, as in a new launch.
    """
    from skvision._callbacks import TrainingCheckpoint
    from skvision._checkpoint import state_files
    from skvision.augmentation import ImageAugmenter

    rank = accelerator.process_index
    X, y = load_digits(return_X_y=True)
    X, y = X[:256].reshape(-1, 8, 8), y[:256]
    params = dict(filters=(8,), epochs=3, batch_size=16, random_state=0,
                  augment=ImageAugmenter(noise_std=0.05), accelerator=accelerator)
    reference = CNNClassifier(**params).fit(X, y)
    torch.save(reference.module_.state_dict(), out / f"resume_reference_{rank}.pt")

    directory = out / "checkpoint"
    write = TrainingCheckpoint.on_epoch_end

    def write_then_stop(self, net, **kwargs):
        write(self, net, **kwargs)
        if len(net.history) == 2:
            raise KeyboardInterrupt

    TrainingCheckpoint.on_epoch_end = write_then_stop
    try:
        CNNClassifier(**params, checkpoint=directory).fit(X, y)
    finally:
        TrainingCheckpoint.on_epoch_end = write
    assert len(state_files(directory)) == 1
    resumed = CNNClassifier(**params, checkpoint=directory).fit(X, y)
    assert not directory.exists()
    assert len(resumed.history_) == 3
    torch.save(resumed.module_.state_dict(), out / f"resumed_{rank}.pt")


def remote(out, accelerator):
    """A fit on image URLs (``OUT/remote.json``): the URLs each process reads, and when.

    ``read_bytes`` of skvision's storage layer, through which every URL is
    read, records what it is asked for: while the headers are scanned (in
    ``scan_files``), and after, while training. Written to ``reads_RANK.json``.
    """
    import json

    import skvision._data
    import skvision._storage
    import skvision._validation

    spec = json.loads((out / "remote.json").read_text())
    rank = accelerator.process_index
    reads = {"scan": [], "train": []}
    phase = ["train"]
    read_bytes, scan_files = skvision._storage.read_bytes, skvision._validation.scan_files

    def recording_read_bytes(urls, *args, **kwargs):
        reads[phase[0]].extend(urls)  # from the prefetching threads too: list.extend is atomic
        return read_bytes(urls, *args, **kwargs)

    def recording_scan_files(*args, **kwargs):
        phase[0] = "scan"
        try:
            return scan_files(*args, **kwargs)
        finally:
            phase[0] = "train"

    # _data took read_bytes by name; open_sources calls _storage's.
    skvision._storage.read_bytes = skvision._data.read_bytes = recording_read_bytes
    skvision._validation.scan_files = recording_scan_files
    try:
        clf = CNNClassifier(filters=(4,), epochs=1, batch_size=4, image_size=8,
                            early_stopping=False, random_state=0,
                            accelerator=accelerator).fit(spec["urls"], spec["labels"])
    finally:
        skvision._storage.read_bytes = skvision._data.read_bytes = read_bytes
        skvision._validation.scan_files = scan_files
    (out / f"reads_{rank}.json").write_text(json.dumps(reads))
    torch.save(clf.module_.state_dict(), out / f"weights_remote_{rank}.pt")


if __name__ == "__main__":
    from accelerate import Accelerator

    out, scenario = Path(sys.argv[1]), sys.argv[2]
    scenarios = {"fit": fit, "fail": fail, "resume": resume, "remote": remote}
    accelerator = Accelerator(cpu=True)
    # "fit+resume": two scenarios in one launch (a launch's start-up, torch and
    # skvision imported by each process, costs more than either scenario).
    for name in scenario.split("+"):
        scenarios[name](out, accelerator)
