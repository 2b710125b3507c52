"""Training throughput of CNNClassifier.fit against a plain PyTorch loop.

Both train the same network (skvision.nn.CNN) on the same data with the same
optimizer (AdamW), one-cycle schedule, loss, batch size, epochs and threads,
in one run, alternating repeats. The reference is the fast hand-written loop
(a random permutation and tensor slicing per batch, channels-last layout as
skvision uses); the same loop in the default layout and a DataLoader-based
loop, what most scripts use, are timed too. Two workloads:

* ``cnn``:  the default CNN on 28x28 single-channel images;
* ``tiny``: a one-stage 4-filter net on 8x8 images, where the per-batch
  overhead of the training framework dominates.

Usage: python bench/train_overhead.py [--quick]
Writes bench/results/train_overhead.json.
"""

import argparse

import numpy as np
import torch
from _harness import best_throughput, machine, plain_training_loop, write_result

from skvision import CNNClassifier
from skvision.nn import CNN

WORKLOADS = {
    "cnn": dict(n_samples=2048, image_size=28, filters=(32, 64, 128), batch_size=64, epochs=2),
    "tiny": dict(n_samples=8192, image_size=8, filters=(4,), batch_size=32, epochs=2),
}
LR = 0.003


def run(workload, repeats):
    rng = np.random.default_rng(0)
    size = workload["image_size"]
    X = rng.random((workload["n_samples"], size, size), dtype=np.float32)
    y = rng.integers(0, 10, workload["n_samples"])
    images, labels = torch.from_numpy(X).unsqueeze(1), torch.from_numpy(y)
    common = dict(batch_size=workload["batch_size"], epochs=workload["epochs"])

    def plain(**options):
        torch.manual_seed(0)
        model = CNN(1, 10, (size, size), filters=workload["filters"], dropout=0.1)
        plain_training_loop(model, images, labels, lr=LR, **common, **options)

    def skvision():
        # precision="32": the plain loop's arithmetic ("auto" may pick bfloat16).
        CNNClassifier(filters=workload["filters"], lr=LR, alpha=0.0, device="cpu",
                      precision="32", random_state=0, **common).fit(X, y)

    result = best_throughput(
        {
            "plain_torch": plain,
            "plain_torch_default_layout": lambda: plain(channels_last=False),
            "plain_torch_dataloader": lambda: plain(channels_last=False, use_dataloader=True),
            "skvision": skvision,
        },
        n_images=workload["n_samples"] * workload["epochs"],
        repeats=repeats,
    )
    for baseline in ("plain_torch", "plain_torch_default_layout", "plain_torch_dataloader"):
        result[f"ratio_vs_{baseline}"] = (
            result["skvision"]["images_per_s"] / result[baseline]["images_per_s"]
        )
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 repeat instead of 5")
    args = parser.parse_args()
    results = {"machine": machine(), "workloads": {}}
    for name, workload in WORKLOADS.items():
        result = run(workload, 1 if args.quick else 5)
        results["workloads"][name] = dict(workload, **result)
        print(f"{name:5s} skvision {result['skvision']['images_per_s']:7.0f} img/s | "
              f"plain torch (same work, channels-last) "
              f"{result['plain_torch']['images_per_s']:7.0f} img/s | "
              f"ratio {result['ratio_vs_plain_torch']:.3f} | vs plain default layout "
              f"{result['ratio_vs_plain_torch_default_layout']:.3f}, vs DataLoader loop "
              f"{result['ratio_vs_plain_torch_dataloader']:.3f}", flush=True)
    write_result("train_overhead", results)


if __name__ == "__main__":
    main()
