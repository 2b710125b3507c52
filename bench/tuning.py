"""Tuning a CNN: EpochHalvingGridSearchCV against GridSearchCV and HalvingGridSearchCV.

On a subset of MNIST (fetched once by ``_harness.load_mnist``), 9
candidates of CNNClassifier (3 learning rates x 3 widths), ``cv=3``, 9
epochs, in one run and one process:

* ``GridSearchCV`` with ``epochs=9``: every candidate trains 9 epochs on
  every fold (81 epoch-runs a fold);
* ``HalvingGridSearchCV(resource="epochs", factor=3, min_resources=1,
  max_resources=9)``: rungs of 1, 3 and 9 epochs, each survivor retrained
  from scratch (27 epoch-runs a fold);
* ``EpochHalvingGridSearchCV(factor=3, min_epochs=1, max_epochs=9)``: the
  same rungs, each survivor continuing its 9-epoch fit (21 epoch-runs a fold).

One torch thread. Each search refits its best candidate on the whole
subset for 9 epochs; the time includes it. Reported: the wall and CPU
times (the process's, one torch thread: the work, whatever else shared
cores run) and their ratios, the best parameters and the held-out
accuracy of each best estimator on MNIST test images. Every fit has
``random_state=0``: a survivor of the epoch-halving search's last rung is
the very fit ``GridSearchCV`` makes of it.

The candidates' learning rate follows a cosine schedule over the 9 epochs
(``--schedule onecycle``: CNNClassifier's default, whose first
``pct_start=0.3`` of the epochs warm the rate up). On a subset this small an epoch of a training
fold is 16 batches, and after the first one every candidate is still near
chance: the epoch-halving search's first rung keeps candidates nearly at
random (see the Tuning page), which is what these runs measured.

Usage: python bench/tuning.py [--quick] [--schedule cosine|onecycle]
Writes bench/results/tuning.json (tuning_onecycle.json with --schedule onecycle).
"""

import argparse
import os
import time

import numpy as np
import torch
from _harness import load_mnist, machine, write_result
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.model_selection import GridSearchCV, HalvingGridSearchCV, StratifiedKFold

from skvision import CNNClassifier
from skvision.model_selection import EpochHalvingGridSearchCV

GRID = {"lr": [1e-3, 3e-3, 1e-2], "filters": [(4, 8), (8, 16), (16, 32)]}


def _describe(params):
    return {key: list(value) if isinstance(value, tuple) else value
            for key, value in params.items() if key != "epochs"}


def _epoch_runs_per_fold(results, continued):
    """Epochs trained per fold: every row's (from scratch), or each candidate's last (continued)."""
    if not continued:
        return int(np.sum(results["n_resources"]))
    last = {}
    for params, epochs in zip(results["params"], results["n_resources"]):
        last[repr(sorted(params.items()))] = epochs
    return int(sum(last.values()))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a smaller subset and 3 epochs (a smoke test, not the figures)")
    parser.add_argument("--schedule", choices=["cosine", "onecycle"], default="cosine",
                        help="the candidates' lr_schedule (onecycle writes tuning_onecycle.json)")
    args = parser.parse_args()
    n_train, n_test, epochs = (600, 500, 3) if args.quick else (1500, 2000, 9)
    X_train, y_train, X_test, y_test = load_mnist()
    rng = np.random.default_rng(0)
    train = rng.choice(len(X_train), n_train, replace=False)
    test = rng.choice(len(X_test), n_test, replace=False)
    X, y, X_test, y_test = X_train[train], y_train[train], X_test[test], y_test[test]
    estimator = CNNClassifier(epochs=epochs, lr_schedule=args.schedule, device="cpu",
                              random_state=0)
    cv = StratifiedKFold(3)
    searches = {
        "grid_search": GridSearchCV(estimator, GRID, cv=cv),
        "halving_grid_search": HalvingGridSearchCV(
            estimator, GRID, resource="epochs", factor=3, min_resources=1,
            max_resources=epochs, cv=cv, random_state=0),
        "epoch_halving_grid_search": EpochHalvingGridSearchCV(
            estimator, GRID, factor=3, min_epochs=1, max_epochs=epochs, cv=cv),
    }
    result = {"machine": machine(), "images": {"train": n_train, "test": n_test},
              "lr_schedule": args.schedule,
              "candidates": 9, "cv": 3, "max_epochs": epochs, "factor": 3, "searches": {}}
    for name, search in searches.items():
        start, cpu_start = time.perf_counter(), time.process_time()
        search.fit(X, y)
        seconds = time.perf_counter() - start
        cpu_seconds = time.process_time() - cpu_start
        accuracy = float(search.score(X_test, y_test))
        row = {"seconds": seconds, "cpu_seconds": cpu_seconds,
               "refit_seconds": search.refit_time_,
               "best_params": _describe(search.best_params_),
               "best_cv_score": float(search.best_score_), "test_accuracy": accuracy}
        if name != "grid_search":
            row["n_resources"] = [int(n) for n in search.n_resources_]
            row["epoch_runs_per_fold"] = _epoch_runs_per_fold(
                search.cv_results_, continued=name == "epoch_halving_grid_search")
        else:
            row["epoch_runs_per_fold"] = 9 * epochs
        result["searches"][name] = row
        print(f"{name}: {seconds:.1f} s ({cpu_seconds:.1f} s CPU), best {row['best_params']}, "
              f"test accuracy {accuracy:.4f}, {row['epoch_runs_per_fold']} epoch-runs a fold")
    searches_ = result["searches"]
    ours = searches_["epoch_halving_grid_search"]
    result["time_ratio_vs_grid_search"] = ours["seconds"] / searches_["grid_search"]["seconds"]
    result["time_ratio_vs_halving_grid_search"] = (
        ours["seconds"] / searches_["halving_grid_search"]["seconds"])
    # The process's CPU time: one torch thread, so the work itself, whatever
    # else the shared cores run meanwhile (wall times drift with their load).
    result["cpu_time_ratio_vs_grid_search"] = (
        ours["cpu_seconds"] / searches_["grid_search"]["cpu_seconds"])
    result["cpu_time_ratio_vs_halving_grid_search"] = (
        ours["cpu_seconds"] / searches_["halving_grid_search"]["cpu_seconds"])
    result["same_best_params_as_grid_search"] = (
        ours["best_params"] == searches_["grid_search"]["best_params"])
    result["test_accuracy_minus_grid_search"] = (
        ours["test_accuracy"] - searches_["grid_search"]["test_accuracy"])
    result["load_average_1_min"] = os.getloadavg()[0]
    print(f"time ratio vs GridSearchCV {result['time_ratio_vs_grid_search']:.2f} (CPU "
          f"{result['cpu_time_ratio_vs_grid_search']:.2f}), vs HalvingGridSearchCV "
          f"{result['time_ratio_vs_halving_grid_search']:.2f} (CPU "
          f"{result['cpu_time_ratio_vs_halving_grid_search']:.2f}); same best "
          f"params as GridSearchCV: {result['same_best_params_as_grid_search']}, held-out "
          f"accuracy difference {result['test_accuracy_minus_grid_search']:+.4f}")
    name = "tuning" + ("_onecycle" if args.schedule == "onecycle" else "")
    write_result(name + ("_quick" if args.quick else ""), result)


if __name__ == "__main__":
    # One torch thread: the three searches run the same kind of fits, and on
    # shared cores two threads spin-waiting for each other measured many
    # times slower than one.
    torch.set_num_threads(1)
    main()
