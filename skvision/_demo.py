"""``skvision demo``: four techniques on built-in data, a results table and an HTML report.

Each section trains on data that ships offline and returns rows of the
results table and figures; the report embeds the figures, so the one HTML
file can be mailed or opened anywhere.
"""

import base64
import datetime
import html
import io
import os
import platform
import tempfile
import time

import numpy as np

# (full, quick) sizes: the full demo stays under 5 minutes on 2 CPU cores.
_SETTINGS = {
    False: {"cnn_epochs": 10, "cv": 5, "texture_patches": 20, "augment_epochs": 40,
            "shapes": 300, "unet_epochs": 30},
    True: {"cnn_epochs": 3, "cv": 3, "texture_patches": 8, "augment_epochs": 10,
           "shapes": 120, "unet_epochs": 8},
}


class _Section:
    """What one part of the demo measured: table rows, figures and a sentence."""

    def __init__(self, title, text):
        self.title, self.text = title, text
        self.rows, self.figures = [], []

    def add_row(self, model, metric, score, seconds, spread=None):
        self.rows.append({"task": self.title, "model": model, "metric": metric,
                          "score": score, "± (folds)": spread, "fit time (s)": seconds})

    def add_figure(self, figure, caption):
        import matplotlib.pyplot as plt

        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
        plt.close(figure)
        self.figures.append((buffer.getvalue(), caption))


def _cross_validate(model, X, y, cv, desc, groups=None):
    """Cross-validate with a progress bar over the folds; scores and mean fit time."""
    from sklearn.base import clone
    from tqdm.auto import tqdm

    scores, seconds, predicted = [], [], np.empty_like(y)
    for train, test in tqdm(list(cv.split(X, y, groups)), desc=desc, unit="fold", leave=True):
        start = time.perf_counter()
        fitted = clone(model).fit(X[train], y[train])
        seconds.append(time.perf_counter() - start)
        predicted[test] = fitted.predict(X[test])
        scores.append(np.mean(predicted[test] == y[test]))
    return np.array(scores), float(np.mean(seconds)), predicted


def _classification(settings):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from . import CNNClassifier
    from .datasets import load_digit_images
    from .plotting import plot_history, plot_images
    from .preprocessing import ImageFlattener

    section = _Section(
        "Digit classification",
        "sklearn's 1,797 handwritten digits (8x8 pixels): a CNN against a logistic "
        f"regression on the pixels, {settings['cv']}-fold cross-validation.")
    X, y = load_digit_images(return_X_y=True)
    cv = StratifiedKFold(settings["cv"], shuffle=True, random_state=0)
    models = {
        "pixels + StandardScaler + LogisticRegression": make_pipeline(
            ImageFlattener(), StandardScaler(), LogisticRegression(max_iter=2000)),
        "CNNClassifier": CNNClassifier(epochs=settings["cnn_epochs"], random_state=0),
    }
    for name, model in models.items():
        scores, seconds, predicted = _cross_validate(model, X, y, cv, name)
        section.add_row(name, "accuracy", scores.mean(), seconds, scores.std())
    wrong = np.flatnonzero(predicted != y)[:20]  # the CNN's out-of-fold mistakes
    section.add_figure(
        plot_images(X[wrong], [f"true {y[i]}, said {predicted[i]}" for i in wrong],
                    n_cols=10, ax_size=1.2),
        f"The CNN's out-of-fold mistakes ({np.sum(predicted != y)} of {len(y)}; first 20).")
    print("One more CNN with 10% held out, for its training curves:")
    cnn = CNNClassifier(epochs=settings["cnn_epochs"], early_stopping=True,
                        n_iter_no_change=settings["cnn_epochs"], random_state=0, verbose=1)
    section.add_figure(plot_history(cnn.fit(X, y)),
                       "Loss and accuracy per epoch, training and held-out 10%.")
    return section


def _transfer(settings):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from .datasets import load_textures
    from .plotting import plot_images
    from .preprocessing import ImageFlattener
    from .transfer import PretrainedFeatureExtractor

    section = _Section(
        "Transfer learning",
        "Patches of scikit-image's brick, grass and gravel photos; every test fold comes "
        "from a photo region never seen in training. Pretrained EfficientNet-Lite0 "
        "features (ImageNet weights, shipped offline) against raw pixels.")
    X, y, groups = load_textures(n_per_region=settings["texture_patches"])
    cv = GroupKFold(4)
    models = {
        "pixels + LogisticRegression": make_pipeline(
            ImageFlattener(), StandardScaler(), LogisticRegression(max_iter=2000)),
        "PretrainedFeatureExtractor + LogisticRegression": make_pipeline(
            PretrainedFeatureExtractor(image_size=112), StandardScaler(),
            LogisticRegression(max_iter=2000)),
    }
    for name, model in models.items():
        scores, seconds, predicted = _cross_validate(model, X, y, cv, name, groups=groups)
        section.add_row(name, "accuracy", scores.mean(), seconds, scores.std())
    shown = np.linspace(0, len(X) - 1, 12).astype(int)
    section.add_figure(
        plot_images(X[shown], [f"{y[i]}\nsaid {predicted[i]}" for i in shown], n_cols=6,
                    ax_size=1.6),
        "Texture patches and the feature model's out-of-region predictions.")
    return section


def _augmentation(settings):
    from sklearn.model_selection import train_test_split

    from . import CNNClassifier, ImageAugmenter
    from .datasets import load_digit_images
    from .plotting import plot_images

    section = _Section(
        "Augmentation",
        "A CNN trained on only 150 digits, with and without random rotations, shifts and "
        "zooms applied to every training batch (new draws every epoch); scored on the "
        "other 1,647.")
    X, y = load_digit_images(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, train_size=150, stratify=y, random_state=0)
    augmenter = ImageAugmenter(horizontal_flip=0, degrees=12, translate=0.1,
                               scale=(0.9, 1.1), random_state=0)
    for name, augment in [("CNNClassifier", None), ("CNNClassifier + ImageAugmenter", augmenter)]:
        clf = CNNClassifier(epochs=settings["augment_epochs"], augment=augment, random_state=0,
                            verbose=1)
        start = time.perf_counter()
        clf.fit(X_train, y_train)
        section.add_row(name, "held-out accuracy", clf.score(X_test, y_test),
                        time.perf_counter() - start)
    # Row by row: each augmented copy sits below its original.
    copies = augmenter.fit_transform(np.tile(X_train[:10], (3, 1, 1)))
    section.add_figure(plot_images(np.concatenate([X_train[:10], copies]), n_cols=10,
                                   ax_size=1.0),
                       "First row: training digits; below: three augmented draws of each.")
    return section


def _segmentation(settings):
    from . import UNetSegmenter
    from .datasets import SHAPE_NAMES, make_shapes
    from .plotting import plot_masks

    section = _Section(
        "Segmentation",
        "A U-Net labels every pixel of synthetic 64x64 images as background, circle, "
        "square or triangle; trained on 80% of the images, scored on the rest.")
    n_train = int(0.8 * settings["shapes"])
    X, masks = make_shapes(settings["shapes"], image_size=64, task="segmentation",
                           random_state=0)
    segmenter = UNetSegmenter(epochs=settings["unet_epochs"], random_state=0, verbose=1)
    start = time.perf_counter()
    segmenter.fit(X[:n_train], masks[:n_train])
    section.add_row("UNetSegmenter", "held-out mean IoU",
                    segmenter.score(X[n_train:], masks[n_train:]), time.perf_counter() - start)
    shown = slice(n_train, n_train + 6)
    section.add_figure(
        plot_masks(X[shown], masks[shown], segmenter.predict(X[shown]),
                   class_names=dict(enumerate(SHAPE_NAMES, 1))),
        "Held-out images, their true masks and the U-Net's.")
    return section


SECTIONS = {"classification": _classification, "transfer": _transfer,
            "augmentation": _augmentation, "segmentation": _segmentation}


def results_table(sections):
    """The rows of every section as one DataFrame."""
    import pandas as pd

    frame = pd.DataFrame([row for section in sections for row in section.rows])
    return frame.set_index(["task", "model"])


def _format_table(table):
    return table.to_string(float_format=lambda value: f"{value:.3f}", na_rep="")


def write_report(sections, table, path, *, seconds, quick):
    """One HTML page with the table and the figures embedded; written atomically."""
    from . import __version__

    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<title>skvision demo report</title><style>",
        "body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;"
        "padding:0 1em;color:#222}",
        "table{border-collapse:collapse;margin:1em 0}th,td{padding:4px 10px;"
        "border-bottom:1px solid #ddd;text-align:left}td{font-variant-numeric:tabular-nums}",
        "figure{margin:1em 0}img{max-width:100%}figcaption{color:#555;font-size:90%}",
        "</style></head><body>",
        "<h1>skvision demo</h1>",
        f"<p>{'Quick mode. ' if quick else ''}Ran in {seconds:.0f} s on "
        f"{html.escape(platform.platform())}, python {platform.python_version()}, "
        f"skvision {__version__}, {datetime.datetime.now():%Y-%m-%d %H:%M}.</p>",
        "<h2>Results</h2>",
        table.to_html(float_format=lambda value: f"{value:.3f}", na_rep=""),
    ]
    for section in sections:
        parts += [f"<h2>{html.escape(section.title)}</h2>", f"<p>{html.escape(section.text)}</p>"]
        for png, caption in section.figures:
            data = base64.b64encode(png).decode("ascii")
            parts.append(f"<figure><img alt='{html.escape(caption)}' "
                         f"src='data:image/png;base64,{data}'>"
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    parts.append("</body></html>")
    folder = os.path.dirname(os.path.abspath(path))
    with tempfile.NamedTemporaryFile("w", dir=folder, suffix=".tmp", delete=False,
                                     encoding="utf-8") as handle:
        handle.write("\n".join(parts))
    umask = os.umask(0)  # temporary files are private; the report is not
    os.umask(umask)
    os.chmod(handle.name, 0o666 & ~umask)
    os.replace(handle.name, path)


def run_demo(output, *, quick=False, sections=None):
    """Run the demo's sections, print the table and write ``report.html`` and ``results.csv``.

    Returns the path of the report.
    """
    import matplotlib

    matplotlib.use("Agg")
    os.makedirs(output, exist_ok=True)
    settings = _SETTINGS[quick]
    sections = list(SECTIONS) if sections is None else sections
    start = time.perf_counter()
    done = []
    for number, name in enumerate(sections, 1):
        print(f"\n[{number}/{len(sections)}] {name}", flush=True)
        done.append(SECTIONS[name](settings))
    table = results_table(done)
    seconds = time.perf_counter() - start
    print("\n" + _format_table(table))
    report = os.path.join(output, "report.html")
    write_report(done, table, report, seconds=seconds, quick=quick)
    table.to_csv(os.path.join(output, "results.csv"))
    print(f"\nReport: {os.path.abspath(report)}  (and results.csv beside it)")
    return report
