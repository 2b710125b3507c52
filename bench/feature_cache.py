"""A grid search over an extractor pipeline with and without PretrainedFeatureExtractor(memory=).

``GridSearchCV(make_pipeline(PretrainedFeatureExtractor(), LogisticRegression()))``
over 4 values of ``C`` with ``cv=5`` runs the backbone over every image
about 20 times without a cache (each fold's and candidate's ``fit`` and
``score``, and the refit); with ``memory=`` each image's features are
computed once. Three searches of the same pipeline on the same images, in
one run: without ``memory``, with an empty cache (cold) and with the cache
the cold search left (warm); their ``cv_results_`` test scores (accuracy)
must be identical. The log-loss of each candidate is recorded too, with its
largest difference to the search without a cache. The images: 300 shapes
of 96x96 px with pixel noise (``make_shapes(noise=0.3)``, hard enough that
the candidates score differently), features of the default
EfficientNet-Lite0 at 96 px.

Usage: python bench/feature_cache.py [--quick]
Writes bench/results/feature_cache.json.
"""

import argparse
import shutil
import tempfile
import time

import numpy as np
from _harness import machine, write_result
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline

from skvision.datasets import make_shapes
from skvision.transfer import PretrainedFeatureExtractor

# Small values of C: the candidates score differently, so identical scores mean something.
GRID = {"logisticregression__C": [1e-4, 1e-3, 1e-2, 1e-1]}
IMAGE_SIZE = 96


def search(X, y, memory):
    pipe = make_pipeline(
        PretrainedFeatureExtractor(image_size=IMAGE_SIZE, device="cpu", memory=memory),
        LogisticRegression(max_iter=2000))
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    start = time.perf_counter()
    fitted = GridSearchCV(pipe, GRID, cv=cv, scoring=["accuracy", "neg_log_loss"],
                          refit="accuracy").fit(X, y)
    return fitted, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="60 images instead of 300")
    args = parser.parse_args()
    X, y = make_shapes(60 if args.quick else 300, image_size=IMAGE_SIZE, noise=0.3,
                       random_state=0)
    directory = tempfile.mkdtemp(prefix="skvision-feature-cache-")
    try:
        plain, plain_seconds = search(X, y, None)
        cold, cold_seconds = search(X, y, directory)
        warm, warm_seconds = search(X, y, directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    keys = [key for key in plain.cv_results_ if key.endswith("_test_accuracy")]
    for fitted in (cold, warm):
        for key in keys:
            # Identical, not close: the cache must not change a result.
            np.testing.assert_array_equal(fitted.cv_results_[key], plain.cv_results_[key])
    losses = [key for key in plain.cv_results_ if key.endswith("_test_neg_log_loss")]
    log_loss_difference = max(
        float(np.max(np.abs(fitted.cv_results_[key] - plain.cv_results_[key])))
        for fitted in (cold, warm) for key in losses)
    result = {
        "seconds": {"no_cache": plain_seconds, "cold_cache": cold_seconds,
                    "warm_cache": warm_seconds},
        "cold_cache_time_ratio": cold_seconds / plain_seconds,
        "warm_cache_time_ratio": warm_seconds / plain_seconds,
        "best_params": plain.best_params_,
        "best_score": float(plain.best_score_),
        "mean_test_accuracy": [float(score)
                               for score in plain.cv_results_["mean_test_accuracy"]],
        "mean_test_neg_log_loss": [float(score)
                                   for score in plain.cv_results_["mean_test_neg_log_loss"]],
        "accuracy_identical": True,
        "log_loss_max_abs_difference": log_loss_difference,
        "machine": dict(machine("cpu"), n_images=len(X), image_size=IMAGE_SIZE,
                        backbone="efficientnet_lite0", cv=5, n_candidates=len(GRID[
                            "logisticregression__C"])),
    }
    print(f"no cache {plain_seconds:.1f} s | cold cache {cold_seconds:.1f} s "
          f"({result['cold_cache_time_ratio']:.3f}x) | warm cache {warm_seconds:.1f} s "
          f"({result['warm_cache_time_ratio']:.3f}x) | best {plain.best_params_} "
          f"{plain.best_score_:.3f}; accuracies identical, log-loss differs by at most "
          f"{log_loss_difference:.3g}")
    write_result("feature_cache", result)


if __name__ == "__main__":
    main()
