"""Command line: ``skvision demo`` and ``skvision info``."""

import argparse
import os
import platform
import sys
import time

import numpy as np


def _demo(args):
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import pandas as pd  # noqa: PLC0415
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415
    from sklearn.model_selection import StratifiedKFold, cross_validate  # noqa: PLC0415
    from sklearn.pipeline import make_pipeline  # noqa: PLC0415
    from sklearn.preprocessing import FunctionTransformer, StandardScaler  # noqa: PLC0415

    from . import CNNClassifier  # noqa: PLC0415
    from .datasets import load_digit_images  # noqa: PLC0415
    from .plotting import plot_history, plot_images  # noqa: PLC0415

    os.makedirs(args.output, exist_ok=True)
    X, y = load_digit_images(return_X_y=True)
    epochs = 3 if args.quick else 10
    models = {
        "pixels + StandardScaler + LogisticRegression": make_pipeline(
            FunctionTransformer(lambda images: images.reshape(len(images), -1)),
            StandardScaler(),
            LogisticRegression(max_iter=2000),
        ),
        "CNNClassifier": CNNClassifier(epochs=epochs, random_state=0),
    }
    cv = StratifiedKFold(5)
    print(f"Digits: {len(X)} images of {X.shape[1]}x{X.shape[2]} pixels, 5-fold cross-validation.")
    rows = []
    for name, model in models.items():
        result = cross_validate(model, X, y, cv=cv, return_estimator=True, return_indices=True)
        rows.append({
            "model": name,
            "accuracy": f"{result['test_score'].mean():.4f} ± {result['test_score'].std():.4f}",
            "fit time (s)": f"{result['fit_time'].mean():.2f}",
        })
        print(f"  {name}: {rows[-1]['accuracy']}", flush=True)
    table = pd.DataFrame(rows).set_index("model")
    print()
    print(table.to_string())

    # The CNN's out-of-fold mistakes: every image was predicted by a model
    # that did not see it.
    predicted = np.empty_like(y)
    for estimator, test in zip(result["estimator"], result["indices"]["test"]):
        predicted[test] = estimator.predict(X[test])
    wrong = np.flatnonzero(predicted != y)
    mistakes = os.path.join(args.output, "misclassified.png")
    titles = [f"true {y[i]} / pred {predicted[i]}" for i in wrong[:40]]
    plot_images(X[wrong[:40]], titles, n_cols=10).savefig(mistakes, dpi=120)

    print("\nTraining one CNN with 10% held out for validation, to plot its curves:")
    cnn = CNNClassifier(epochs=epochs, early_stopping=True, n_iter_no_change=epochs,
                        random_state=0, verbose=1)
    cnn.fit(X, y)
    curves = os.path.join(args.output, "training_curves.png")
    plot_history(cnn).savefig(curves, dpi=120)
    table.to_csv(os.path.join(args.output, "results.csv"))
    print(f"\nSaved to {os.path.abspath(args.output)}:")
    print("  results.csv            the table above")
    print("  training_curves.png    loss and accuracy per epoch")
    print(f"  misclassified.png      {len(wrong)} out-of-fold mistakes of the CNN (first 40)")
    return 0


def _info(args):
    import sklearn  # noqa: PLC0415
    import skorch  # noqa: PLC0415
    import torch  # noqa: PLC0415

    from . import __version__  # noqa: PLC0415
    from ._torch import resolve_device  # noqa: PLC0415

    print(f"skvision {__version__}")
    print(f"python {platform.python_version()} on {platform.platform()}")
    for module in (np, sklearn, skorch, torch):
        print(f"{module.__name__} {module.__version__}")
    print(f"device='auto' resolves to {resolve_device('auto')!r}; "
          f"torch threads: {torch.get_num_threads()}")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="skvision", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="compare a CNN with a pixel baseline on the digits and save plots"
    )
    demo.add_argument("--output", default="skvision-demo", help="folder for the plots")
    demo.add_argument("--quick", action="store_true", help="3 epochs instead of 10")
    demo.set_defaults(run=_demo)
    info = commands.add_parser("info", help="versions and the device in use")
    info.set_defaults(run=_info)
    args = parser.parse_args(argv)
    start = time.time()
    status = args.run(args)
    if args.command == "demo":
        print(f"Done in {time.time() - start:.0f} s.")
    return status


if __name__ == "__main__":
    sys.exit(main())
