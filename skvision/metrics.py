"""Segmentation metrics: intersection over union, Dice, pixel accuracy, and scorers.

All take label masks of any shape (``(n, h, w)`` or one ``(h, w)`` mask)
with sklearn-style signatures ``metric(y_true, y_pred, ...)``. The scorers
``mean_iou_scorer``, ``dice_scorer`` and ``pixel_accuracy_scorer`` go where
sklearn takes ``scoring=``; ``UNetSegmenter.score`` is the mean IoU, so
``scoring=None`` gives it too. (Names such as ``scoring="mean_iou"`` are not
possible: sklearn validates scoring strings against its own fixed list.)
"""

import numpy as np
from sklearn.metrics import make_scorer

__all__ = [
    "dice_score",
    "dice_scorer",
    "mean_iou",
    "mean_iou_scorer",
    "pixel_accuracy",
    "pixel_accuracy_scorer",
]


def _confusion(y_true, y_pred, labels, ignore_index):
    """Per-class intersection, predicted and true pixel counts, and the labels."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"y_true and y_pred must have the same shape; got {y_true.shape} and {y_pred.shape}."
        )
    if y_true.size == 0:
        raise ValueError("Found empty masks; expected at least one pixel.")
    valid = np.ones(y_true.shape, dtype=bool) if ignore_index is None else y_true != ignore_index
    y_true, y_pred = y_true[valid], y_pred[valid]
    if labels is None:
        labels = np.union1d(np.unique(y_true), np.unique(y_pred))
    labels = np.asarray(labels)
    true_index = np.searchsorted(labels, y_true)
    pred_index = np.searchsorted(labels, y_pred)
    n_labels = len(labels)
    # Pixels of labels outside `labels` count as wrong predictions, not as a class.
    known_true = (true_index < n_labels) & (labels[np.minimum(true_index, n_labels - 1)] == y_true)
    known_pred = (pred_index < n_labels) & (labels[np.minimum(pred_index, n_labels - 1)] == y_pred)
    true_counts = np.bincount(true_index[known_true], minlength=n_labels)
    pred_counts = np.bincount(pred_index[known_pred], minlength=n_labels)
    hits = known_true & known_pred & (y_true == y_pred)
    intersection = np.bincount(true_index[hits], minlength=n_labels)
    return intersection, pred_counts, true_counts, labels


def _average(per_class, present, average):
    if average is None:
        return per_class
    if average != "mean":
        raise ValueError(f"average must be 'mean' or None; got {average!r}.")
    # Classes absent from both masks have no defined score: left out of the mean.
    return float(per_class[present].mean()) if present.any() else 1.0


def mean_iou(y_true, y_pred, *, labels=None, ignore_index=None, average="mean"):
    """Intersection over union (Jaccard index) per class, averaged over classes.

    For each class, the pixels where both masks have it divided by the
    pixels where either has it; counted over all images together.

    Parameters
    ----------
    y_true : array-like of int, shape (n_samples, height, width) or (height, width)
        True class of each pixel.
    y_pred : array-like of the same shape
        Predicted class of each pixel.
    labels : array-like, default=None
        Classes to score; by default every class in either mask.
    ignore_index : int, default=None
        Pixels with this value in ``y_true`` are left out.
    average : {"mean", None}, default="mean"
        None returns one score per class (NaN for a class in neither mask).

    Returns
    -------
    score : float or ndarray of shape (n_labels,)

    Examples
    --------
    >>> import numpy as np
    >>> from skvision.metrics import mean_iou
    >>> y_true = np.array([[0, 0, 1, 1]])
    >>> y_pred = np.array([[0, 1, 1, 1]])
    >>> round(mean_iou(y_true, y_pred), 4)   # class 0: 1/2, class 1: 2/3
    0.5833
    """
    intersection, pred_counts, true_counts, _ = _confusion(y_true, y_pred, labels, ignore_index)
    union = pred_counts + true_counts - intersection
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = intersection / union
    return _average(per_class, union > 0, average)


def dice_score(y_true, y_pred, *, labels=None, ignore_index=None, average="mean"):
    """Dice coefficient (F1 score of the pixels) per class, averaged over classes.

    ``2 |true ∩ pred| / (|true| + |pred|)`` for each class.

    Parameters
    ----------
    y_true : array-like of int, shape (n_samples, height, width) or (height, width)
        True class of each pixel.
    y_pred : array-like of the same shape
        Predicted class of each pixel.
    labels : array-like, default=None
        Classes to score; by default every class in either mask.
    ignore_index : int, default=None
        Pixels with this value in ``y_true`` are left out.
    average : {"mean", None}, default="mean"
        None returns one score per class.

    Returns
    -------
    score : float or ndarray of shape (n_labels,)

    Examples
    --------
    >>> import numpy as np
    >>> from skvision.metrics import dice_score
    >>> round(dice_score(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])), 4)
    0.7333
    """
    intersection, pred_counts, true_counts, _ = _confusion(y_true, y_pred, labels, ignore_index)
    total = pred_counts + true_counts
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = 2 * intersection / total
    return _average(per_class, total > 0, average)


def pixel_accuracy(y_true, y_pred, *, labels=None, ignore_index=None, average="mean"):
    """Share of pixels classified correctly; per class it is the recall.

    Parameters
    ----------
    y_true : array-like of int, shape (n_samples, height, width) or (height, width)
        True class of each pixel.
    y_pred : array-like of the same shape
        Predicted class of each pixel.
    labels : array-like, default=None
        Classes for the per-class scores; by default every class in either
        mask.
    ignore_index : int, default=None
        Pixels with this value in ``y_true`` are left out.
    average : {"mean", None}, default="mean"
        "mean" gives the overall pixel accuracy; None the accuracy within
        each true class.

    Returns
    -------
    score : float or ndarray of shape (n_labels,)

    Examples
    --------
    >>> import numpy as np
    >>> from skvision.metrics import pixel_accuracy
    >>> pixel_accuracy(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]))
    0.75
    """
    intersection, _, true_counts, _ = _confusion(y_true, y_pred, labels, ignore_index)
    if average is None:
        with np.errstate(invalid="ignore", divide="ignore"):
            return intersection / true_counts
    if average != "mean":
        raise ValueError(f"average must be 'mean' or None; got {average!r}.")
    y_true = np.asarray(y_true)
    n_valid = y_true.size if ignore_index is None else int((y_true != ignore_index).sum())
    return float(intersection.sum() / n_valid) if n_valid else 1.0


mean_iou_scorer = make_scorer(mean_iou)
dice_scorer = make_scorer(dice_score)
pixel_accuracy_scorer = make_scorer(pixel_accuracy)
