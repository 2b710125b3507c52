"""A whole torchvision Faster R-CNN fine-tuned against the small-CNN default.

Both ``FasterRCNNDetector`` models train on the same ``make_shapes``
detection images (64x64, 1-3 circles, squares and triangles) for the same
epochs, batch size and learning rate, and are scored by mAP@0.5 on the same
held-out images. ``fasterrcnn_mobilenet_v3_large_fpn`` starts here from
random whole-model weights (``weights=False``): this machine reaches no COCO
weights, so the figures measure the architecture and its cost, not what
COCO pretraining adds (on photos, most of the point).

Usage: python bench/detector_finetune.py [--quick]
(4.5 minutes on 2 shared, loaded cores; less on idle ones.)
Writes bench/results/detector_finetune.json.
"""

import argparse
import time

from _harness import machine, write_result

from skvision.datasets import make_shapes
from skvision.detection import FasterRCNNDetector

CANDIDATES = {
    "small_cnn": dict(backbone="small_cnn"),
    "fasterrcnn_mobilenet_v3_large_fpn": dict(backbone="fasterrcnn_mobilenet_v3_large_fpn",
                                              weights=False),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images and epochs")
    args = parser.parse_args()
    n_train, n_test, epochs = (48, 16, 2) if args.quick else (160, 40, 8)
    X, targets = make_shapes(n_samples=n_train + n_test, image_size=64, task="detection",
                             max_objects=3, random_state=0)
    results = {}
    for name, params in CANDIDATES.items():
        detector = FasterRCNNDetector(**params, epochs=epochs, batch_size=8, device="cpu",
                                      random_state=0)
        start = time.perf_counter()
        detector.fit(X[:n_train], targets[:n_train])
        fit_seconds = time.perf_counter() - start
        score = detector.score(X[n_train:], targets[n_train:])
        n_parameters = sum(p.numel() for p in detector.module_.parameters())
        results[name] = {"map50": score, "fit_seconds": fit_seconds,
                         "n_parameters": n_parameters,
                         "final_train_loss": float(detector.history_["train_loss"].iloc[-1])}
        print(f"{name:>34}: mAP@0.5 {score:.3f}, fit {fit_seconds:.1f} s, "
              f"{n_parameters / 1e6:.1f} M parameters")
    write_result("detector_finetune", {
        "machine": machine(), "n_train": n_train, "n_test": n_test, "image_size": 64,
        "epochs": epochs, "batch_size": 8, "results": results,
    })


if __name__ == "__main__":
    main()
