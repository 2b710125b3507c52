"""BoostedTreesClassifier.fit against raw xgboost.XGBClassifier.fit.

Same data (20,000 x 64 float32, 5 classes, from make_classification), same
parameters (300 trees, depth 6, learning rate 0.1, hist, same seed and
threads), no early stopping, in one run with alternating repeats. The
wrapper adds input validation, label encoding and bookkeeping; the ratio
``raw time / wrapper time`` shows what that costs (1.0 = nothing).

Usage: python bench/boosting_overhead.py [--quick]
Writes bench/results/boosting_overhead.json.
"""

import argparse

import numpy as np
import xgboost
from _harness import best_throughput, machine, write_result
from sklearn.datasets import make_classification

from skvision.boosting import BoostedTreesClassifier

PARAMS = dict(n_estimators=300, max_depth=6, learning_rate=0.1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller data, fewer repeats")
    args = parser.parse_args()
    n_samples, repeats = (5_000, 2) if args.quick else (20_000, 5)
    X, y = make_classification(n_samples=n_samples, n_features=64, n_informative=20,
                               n_classes=5, random_state=0)
    X = X.astype(np.float32)
    names = np.array(["a", "b", "c", "d", "e"])
    labels = names[y]  # the wrapper's users pass any labels

    wrapper = BoostedTreesClassifier(**PARAMS, early_stopping=False, device="cpu",
                                     random_state=0)
    seed = wrapper.fit(X[:100], labels[:100]).model_.get_params()["random_state"]
    raw = xgboost.XGBClassifier(**PARAMS, tree_method="hist", device="cpu", random_state=seed)

    timings = best_throughput(
        {"skvision": lambda: wrapper.fit(X, labels), "xgboost": lambda: raw.fit(X, y)},
        n_samples, repeats,
    )
    ratio = timings["skvision"]["images_per_s"] / timings["xgboost"]["images_per_s"]
    same = np.array_equal(wrapper.predict(X), names[raw.predict(X)])
    print(f"fit on {n_samples} x 64: skvision {timings['skvision']['seconds']:.2f} s, "
          f"xgboost {timings['xgboost']['seconds']:.2f} s; ratio {ratio:.3f} "
          f"(same predictions: {same})")
    write_result("boosting_overhead", {
        "machine": machine(), "n_samples": n_samples, "params": PARAMS, "repeats": repeats,
        "timings": timings, "ratio": ratio, "same_predictions": bool(same),
    })


if __name__ == "__main__":
    main()
