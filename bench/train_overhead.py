"""Training throughput of CNNClassifier.fit against a plain PyTorch loop.

Both train the same network (skvision.nn.CNN) on the same data with the same
optimizer (AdamW), one-cycle schedule, loss, batch size, epochs and threads,
in one run, alternating repeats. The plain loop is the fast hand-written kind
(a random permutation and tensor slicing per batch, channels-last layout as
skvision uses); the same loop in the default layout and a DataLoader-based
loop, what most scripts use, are timed too for reference. Two workloads:

* ``cnn``:  the default CNN on 28x28 single-channel images;
* ``tiny``: a one-stage 4-filter net on 8x8 images, where the per-batch
  overhead of the training framework dominates.

Usage: python bench/train_overhead.py [--quick]
Writes bench/results/train_overhead.json.
"""

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from skvision import CNNClassifier
from skvision.nn import CNN

WORKLOADS = {
    "cnn": dict(n_samples=2048, image_size=28, filters=(32, 64, 128), batch_size=64, epochs=2),
    "tiny": dict(n_samples=8192, image_size=8, filters=(4,), batch_size=32, epochs=2),
}
LR = 0.003


def make_data(n_samples, image_size, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((n_samples, image_size, image_size), dtype=np.float32)
    y = rng.integers(0, 10, n_samples)
    return X, y


def plain_torch(X, y, filters, batch_size, epochs, use_dataloader=False, channels_last=False):
    torch.manual_seed(0)
    images = torch.from_numpy(X).unsqueeze(1)
    labels = torch.from_numpy(y)
    model = CNN(1, 10, tuple(images.shape[2:]), filters=filters, dropout=0.1)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    n_batches = -(-len(images) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=LR, total_steps=epochs * n_batches)
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
            batches = (
                (images[index], labels[index])
                for index in order.split(batch_size)
            )
        for batch_images, batch_labels in batches:
            loss = F.cross_entropy(model(batch_images), batch_labels, label_smoothing=0.1)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    return model


def skvision_fit(X, y, filters, batch_size, epochs):
    return CNNClassifier(
        filters=filters, batch_size=batch_size, epochs=epochs, lr=LR, alpha=0.0,
        device="cpu", random_state=0,
    ).fit(X, y)


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    function(*args, **kwargs)
    return time.perf_counter() - start


def run(workload, repeats):
    X, y = make_data(workload["n_samples"], workload["image_size"])
    args = (X, y, workload["filters"], workload["batch_size"], workload["epochs"])
    candidates = {
        "plain_torch": lambda: plain_torch(*args, channels_last=True),
        "plain_torch_default_layout": lambda: plain_torch(*args),
        "plain_torch_dataloader": lambda: plain_torch(*args, use_dataloader=True),
        "skvision": lambda: skvision_fit(*args),
    }
    for candidate in candidates.values():  # warm-up: allocator, kernels
        candidate()
    times = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, candidate in candidates.items():
            times[name].append(timed(candidate))
    images = workload["n_samples"] * workload["epochs"]
    result = {name: {"seconds": statistics.median(t), "images_per_s": images / statistics.median(t)}
              for name, t in times.items()}
    result["ratio_vs_plain_torch"] = (
        result["skvision"]["images_per_s"] / result["plain_torch"]["images_per_s"]
    )
    for baseline in ("plain_torch_default_layout", "plain_torch_dataloader"):
        result[f"ratio_vs_{baseline}"] = (
            result["skvision"]["images_per_s"] / result[baseline]["images_per_s"]
        )
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 repeat instead of 5")
    parser.add_argument("--output", default=os.path.join(os.path.dirname(__file__), "results",
                                                         "train_overhead.json"))
    args = parser.parse_args()
    repeats = 1 if args.quick else 5
    results = {
        "machine": {"platform": platform.platform(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "device": "cpu"},
        "workloads": {},
    }
    for name, workload in WORKLOADS.items():
        result = run(workload, repeats)
        results["workloads"][name] = dict(workload, **result)
        print(f"{name:5s} skvision {result['skvision']['images_per_s']:7.0f} img/s | "
              f"plain torch (same work, channels-last) "
              f"{result['plain_torch']['images_per_s']:7.0f} img/s | "
              f"ratio {result['ratio_vs_plain_torch']:.3f} | vs plain default layout "
              f"{result['ratio_vs_plain_torch_default_layout']:.3f}, vs DataLoader loop "
              f"{result['ratio_vs_plain_torch_dataloader']:.3f}", flush=True)
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    tmp = args.output + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(results, handle, indent=2, default=list)
    os.replace(tmp, args.output)  # never leave a half-written result
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
