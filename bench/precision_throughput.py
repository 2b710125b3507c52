"""CNNClassifier.fit at each precision against a plain autocast loop, with accuracy.

For ``precision`` in "32", "bf16" and "16-mixed", the same network
(skvision.nn.CNN) is trained on the same images by ``CNNClassifier`` and by
the hand-written loop of ``_harness.plain_training_loop`` under the same
``torch.autocast`` / ``GradScaler`` recipe, on the best device ("auto": CUDA
when present). Reports training images/s of both, their ratio, and the
held-out accuracy of skvision's model at each precision on a shapes task.
Mixed precision pays off on GPUs with tensor cores; on a CPU, float16
autocast runs ~7x slower than float32 (measured), so "16-mixed" is only
timed there with ``--all``.

Usage: python bench/precision_throughput.py [--quick] [--all]
Writes bench/results/precision_throughput.json.
"""

import argparse

import numpy as np
import torch
from _harness import best_throughput, machine, plain_training_loop, write_result

from skvision import CNNClassifier
from skvision._torch import resolve_device
from skvision.datasets import make_shapes
from skvision.nn import CNN

PRECISIONS = ("32", "bf16", "16-mixed")
FILTERS, LR, BATCH_SIZE = (32, 64, 128), 0.003, 64


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images and repeats")
    parser.add_argument("--all", action="store_true", help="16-mixed on a CPU too")
    args = parser.parse_args()
    device = resolve_device("auto")
    precisions = PRECISIONS if args.all or device != "cpu" else PRECISIONS[:2]
    n_samples, epochs, repeats = (512, 1, 1) if args.quick else (2048, 1, 3)
    X, y = make_shapes(n_samples + 512, image_size=32, random_state=0)
    X_train, y_train, X_test, y_test = X[:n_samples], y[:n_samples], X[n_samples:], y[n_samples:]
    classes, codes = np.unique(y_train, return_inverse=True)
    images = torch.from_numpy(X_train).permute(0, 3, 1, 2).float() / 255
    labels = torch.from_numpy(codes)
    result = {"machine": machine(device), "n_samples": n_samples, "epochs": epochs,
              "precisions": {}}
    for precision in precisions:
        # Called within this iteration: the default binds this precision.
        def plain(precision=precision):
            torch.manual_seed(0)
            model = CNN(3, len(classes), (32, 32), filters=FILTERS, dropout=0.1)
            plain_training_loop(model, images, labels, batch_size=BATCH_SIZE, epochs=epochs,
                                lr=LR, device=device, precision=precision)

        def skvision(precision=precision):
            return CNNClassifier(filters=FILTERS, lr=LR, alpha=0.0, epochs=epochs,
                                 batch_size=BATCH_SIZE, device=device, precision=precision,
                                 random_state=0).fit(X_train, y_train)

        timings = best_throughput({"plain_torch": plain, "skvision": skvision},
                                  n_images=n_samples * epochs, repeats=repeats)
        accuracy = CNNClassifier(filters=FILTERS, lr=LR, epochs=5, device=device,
                                 precision=precision, random_state=0
                                 ).fit(X_train, y_train).score(X_test, y_test)
        ratio = timings["skvision"]["images_per_s"] / timings["plain_torch"]["images_per_s"]
        result["precisions"][precision] = {**timings, "ratio": ratio,
                                           "held_out_accuracy": accuracy}
        print(f"{precision:>8} on {device}: skvision {timings['skvision']['images_per_s']:.0f} "
              f"images/s, plain {timings['plain_torch']['images_per_s']:.0f} "
              f"(ratio {ratio:.3f}); held-out accuracy {accuracy:.3f}")
    base = result["precisions"]["32"]["skvision"]["images_per_s"]
    for precision in precisions[1:]:
        speed = result["precisions"][precision]["skvision"]["images_per_s"] / base
        result["precisions"][precision]["speedup_vs_32"] = speed
        print(f"{precision} vs 32: {speed:.2f}x the float32 throughput")
    write_result("precision_throughput", result)


if __name__ == "__main__":
    main()
