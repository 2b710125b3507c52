"""A detector trained from COCO files, scored by skvision and by pycocotools.

The ``make_shapes`` detection images (64x64, 1-3 circles, squares and
triangles, as in detector_finetune.py) are written as PNG files with a COCO
annotation file (``save_coco``), read back with ``load_coco`` and a
``FasterRCNNDetector`` (small CNN) is fitted on the file paths. Its
predictions on the held-out images are written as a COCO results file
(``save_coco`` with the annotation file as ``categories``) and scored twice
on the same detections: by ``mean_average_precision`` and by pycocotools'
``COCOeval`` on the two files. Also times ``load_coco`` (and the three
formats' round trip) on the whole set.

Usage: python bench/coco_labels.py [--quick]
(2 minutes on 2 idle cores; 8.5 on loaded, shared ones.) Writes bench/results/coco_labels.json.
"""

import argparse
import contextlib
import io
import os
import tempfile
import time

import numpy as np
from _harness import machine, write_result
from PIL import Image

from skvision.datasets import load_coco, make_shapes, save_coco
from skvision.detection import FasterRCNNDetector
from skvision.metrics import mean_average_precision


def cocoeval_stats(annotations, results, image_ids):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(annotations)
        found = truth.loadRes(results)
        evaluation = COCOeval(truth, found, "bbox")
        evaluation.params.imgIds = image_ids
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation.stats


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images and epochs")
    args = parser.parse_args()
    n_train, n_test, epochs = (48, 16, 2) if args.quick else (160, 40, 8)
    X, targets = make_shapes(n_samples=n_train + n_test, image_size=64, task="detection",
                             max_objects=3, random_state=0)
    folder = tempfile.mkdtemp(prefix="coco-labels-")
    paths = [os.path.join(folder, "images", f"{index:04d}.png") for index in range(len(X))]
    os.makedirs(os.path.dirname(paths[0]))
    for path, image in zip(paths, X):
        Image.fromarray(image).save(path)
    annotations = os.path.join(folder, "annotations.json")
    save_coco(paths, targets, annotations)
    start = time.perf_counter()
    paths, targets = load_coco(annotations)
    load_seconds = time.perf_counter() - start
    exact = all(np.array_equal(a["boxes"], b["boxes"]) and list(a["labels"]) == list(b["labels"])
                for a, b in zip(targets, make_shapes(n_samples=n_train + n_test, image_size=64,
                                                     task="detection", max_objects=3,
                                                     random_state=0)[1]))

    detector = FasterRCNNDetector(epochs=epochs, batch_size=8, device="cpu", random_state=0)
    start = time.perf_counter()
    detector.fit(paths[:n_train], targets[:n_train])
    fit_seconds = time.perf_counter() - start
    predictions = detector.predict(paths[n_train:])
    results = os.path.join(folder, "results.json")
    save_coco(paths[n_train:], predictions, results, categories=annotations)

    truth = targets[n_train:]
    skvision_map = mean_average_precision(truth, predictions, iou_thresholds="coco")
    skvision_map50 = mean_average_precision(truth, predictions, iou_thresholds=0.5)
    stats = cocoeval_stats(annotations, results, list(range(n_train + 1, n_train + n_test + 1)))
    result = {
        "machine": machine(), "n_train": n_train, "n_test": n_test, "image_size": 64,
        "epochs": epochs, "batch_size": 8,
        "load_coco_seconds": load_seconds, "round_trip_exact": exact,
        "fit_seconds": fit_seconds,
        "map50": skvision_map50, "map": skvision_map,
        "pycocotools_map50": float(stats[1]), "pycocotools_map": float(stats[0]),
        "map_difference": abs(skvision_map - float(stats[0])),
        "map50_difference": abs(skvision_map50 - float(stats[1])),
    }
    print(f"load_coco {load_seconds:.2f} s for {len(paths)} images, round trip exact: {exact}")
    print(f"fit on files {fit_seconds:.1f} s; held-out mAP@0.5 {skvision_map50:.3f} "
          f"(pycocotools {stats[1]:.3f}), mAP@[.5:.95] {skvision_map:.3f} "
          f"(pycocotools {stats[0]:.3f})")
    write_result("coco_labels", result)


if __name__ == "__main__":
    main()
