"""Three routes on real photographs, from a folder of JPEG files: score and wall time.

The data and settings of ``examples/plot_real_photos.py``: scikit-image's LFW
subset (100 faces and 100 non-faces, 25x25 grayscale photos, the largest
collection of real photographs that ships inside a wheel on the package
registry), written as JPEG files, one folder per class, listed with
``load_image_folder`` and cross-validated (3 folds) from the paths:

* ``features_logreg``: PretrainedFeatureExtractor(image_size=64) and a
  LogisticRegression;
* ``fine_tuned``: FineTunedClassifier(image_size=64, epochs=3), head only;
* ``cnn_scratch``: CNNClassifier(filters=(16, 32), batch_size=16);
* ``cnn_scratch_defaults``: CNNClassifier() with its defaults, for reference
  (leave it out with ``--skip-defaults``).

``seconds`` is the wall time of the whole 3-fold cross-validation (three
fits and three predictions), file decoding included;
``load_average_1min_after`` is the machine's load after each route (above
the number of cores, other work shared them and the times are inflated).

Usage: python bench/real_photos.py [--skip-defaults]
Writes bench/results/real_photos.json (after each route, so a partial run
keeps what it measured).
"""

import argparse
import os
import tempfile
import time

import numpy as np
from _harness import machine, write_result
from PIL import Image
from skimage import data
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline

from skvision import CNNClassifier, FineTunedClassifier, PretrainedFeatureExtractor
from skvision.datasets import load_image_folder


def write_photos(root):
    """The LFW subset as ``root/face/*.jpg`` and ``root/not_face/*.jpg``."""
    photos = (data.lfw_subset() * 255).round().astype(np.uint8)  # faces first
    for index, photo in enumerate(photos):
        label = "face" if index < 100 else "not_face"
        os.makedirs(os.path.join(root, label), exist_ok=True)
        Image.fromarray(photo).save(os.path.join(root, label, f"{index:03d}.jpg"), quality=95)
    return load_image_folder(root)


def routes(skip_defaults):
    models = {
        "features_logreg": make_pipeline(PretrainedFeatureExtractor(image_size=64),
                                         LogisticRegression(max_iter=2000)),
        "fine_tuned": FineTunedClassifier(image_size=64, epochs=3, random_state=0),
        "cnn_scratch": CNNClassifier(filters=(16, 32), batch_size=16, random_state=0),
    }
    if not skip_defaults:
        models["cnn_scratch_defaults"] = CNNClassifier(random_state=0)
    return models


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-defaults", action="store_true",
                        help="leave out CNNClassifier() with its defaults")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        paths, labels = write_photos(root)
        result = {"machine": machine(), "data": "skimage.data.lfw_subset as JPEG files",
                  "n_images": len(paths), "classes": sorted(set(labels)), "cv": 3,
                  "scores": {}, "score_std": {}, "seconds": {}}
        for name, model in routes(args.skip_defaults).items():
            start = time.perf_counter()
            scores = cross_val_score(model, paths, labels, cv=3)
            seconds = time.perf_counter() - start
            result["scores"][name] = float(scores.mean())
            result["score_std"][name] = float(scores.std())
            result["seconds"][name] = seconds
            # Other processes on the machine stretch wall times: say how busy it was.
            result["load_average_1min_after"] = dict(
                result.get("load_average_1min_after", {}), **{name: os.getloadavg()[0]})
            print(f"{name:22s} accuracy {scores.mean():.3f} ± {scores.std():.3f}  "
                  f"{seconds:6.1f} s", flush=True)
            write_result("real_photos", result)


if __name__ == "__main__":
    main()
