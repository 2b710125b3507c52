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

from ._validation import frame_to_targets

__all__ = [
    "box_iou",
    "dice_score",
    "dice_scorer",
    "mean_iou",
    "mean_average_precision",
    "mean_average_precision_scorer",
    "mean_iou_scorer",
    "pixel_accuracy",
    "pixel_accuracy_scorer",
]


def _valid_pixels(y_true, y_pred, ignore_index):
    """Both masks flattened, without the pixels ``ignore_index`` marks in ``y_true``."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"y_true and y_pred must have the same shape; got {y_true.shape} and {y_pred.shape}."
        )
    if y_true.size == 0:
        raise ValueError("Found empty masks; expected at least one pixel.")
    valid = np.ones(y_true.shape, dtype=bool) if ignore_index is None else y_true != ignore_index
    return y_true[valid], y_pred[valid]


def _label_positions(labels, values):
    """Position of each value in ``labels`` (in the caller's order), and whether it is there."""
    # searchsorted needs sorted labels, but the caller's come in any order:
    # search a sorted copy and map its positions back.
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    found = np.minimum(np.searchsorted(sorted_labels, values), len(labels) - 1)
    return order[found], sorted_labels[found] == values


def _confusion(y_true, y_pred, labels, ignore_index):
    """Per-class intersection, predicted and true pixel counts, and the labels."""
    y_true, y_pred = _valid_pixels(y_true, y_pred, ignore_index)
    if labels is None:
        labels = np.union1d(np.unique(y_true), np.unique(y_pred))
    labels = np.asarray(labels).reshape(-1)
    if len(np.unique(labels)) != len(labels):
        raise ValueError(f"labels must not repeat a class; got {labels}.")
    n_labels = len(labels)
    if not n_labels:  # no label given, or every pixel ignored
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty, empty, labels
    true_index, known_true = _label_positions(labels, y_true)
    pred_index, known_pred = _label_positions(labels, y_pred)
    # Pixels of classes outside `labels` count as wrong predictions, not as a
    # class: scikit-learn's per-label counts.
    true_counts = np.bincount(true_index[known_true], minlength=n_labels)
    pred_counts = np.bincount(pred_index[known_pred], minlength=n_labels)
    hits = known_true & (y_true == y_pred)
    intersection = np.bincount(true_index[hits], minlength=n_labels)
    return intersection, pred_counts, true_counts, labels


def _average(per_class, present, average):
    if average is None:
        return per_class
    if average != "mean":
        raise ValueError(f"average must be 'mean' or None; got {average!r}.")
    # Classes absent from both masks have no defined score: left out of the
    # mean, which is NaN when no class is left (scikit-learn's macro average
    # with zero_division=np.nan).
    return float(per_class[present].mean()) if present.any() else np.nan


def mean_iou(y_true, y_pred, *, labels=None, ignore_index=None, average="mean"):
    """Intersection over union (Jaccard index) per class, averaged over classes.

    For each class, the pixels where both masks have it divided by the
    pixels where either has it; counted over all images together. Per class
    it is scikit-learn's ``jaccard_score(y_true.ravel(), y_pred.ravel(),
    labels=labels, average=None)``, but NaN, not ``zero_division``, for a
    class in neither mask; the mean is over the other classes.

    Parameters
    ----------
    y_true : array-like of int, shape (n_samples, height, width) or (height, width)
        True class of each pixel.
    y_pred : array-like of the same shape
        Predicted class of each pixel.
    labels : array-like, default=None
        Classes to score, in any order; by default every class in either
        mask, sorted. Pixels of other classes are not scored as a class,
        but a pixel of another class predicted as one of these counts
        against it.
    ignore_index : int, default=None
        Pixels with this value in ``y_true`` are left out.
    average : {"mean", None}, default="mean"
        "mean" averages the classes in either mask (NaN if none of
        ``labels`` is); None returns one score per class in ``labels``
        order (NaN for a class in neither mask).

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

    ``2 |true ∩ pred| / (|true| + |pred|)`` for each class. Equals
    scikit-learn's ``f1_score(y_true.ravel(), y_pred.ravel(), labels=labels,
    average="macro", zero_division=np.nan)`` (``average=None`` likewise).

    Parameters
    ----------
    y_true : array-like of int, shape (n_samples, height, width) or (height, width)
        True class of each pixel.
    y_pred : array-like of the same shape
        Predicted class of each pixel.
    labels : array-like, default=None
        Classes to score, in any order; by default every class in either
        mask, sorted. Pixels of other classes are not scored as a class,
        but a pixel of another class predicted as one of these counts
        against it.
    ignore_index : int, default=None
        Pixels with this value in ``y_true`` are left out.
    average : {"mean", None}, default="mean"
        "mean" averages the classes in either mask (NaN if none of
        ``labels`` is); None returns one score per class in ``labels``
        order (NaN for a class in neither mask).

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

    The overall accuracy counts every pixel (but those ``ignore_index``
    marks), whatever ``labels`` says: scikit-learn's
    ``accuracy_score(y_true.ravel(), y_pred.ravel())``. Per class it is
    ``recall_score(y_true.ravel(), y_pred.ravel(), labels=labels,
    average=None, zero_division=np.nan)``.

    Parameters
    ----------
    y_true : array-like of int, shape (n_samples, height, width) or (height, width)
        True class of each pixel.
    y_pred : array-like of the same shape
        Predicted class of each pixel.
    labels : array-like, default=None
        Classes for the per-class scores, in any order; by default every
        class in either mask, sorted. The overall accuracy does not use it.
    ignore_index : int, default=None
        Pixels with this value in ``y_true`` are left out.
    average : {"mean", None}, default="mean"
        "mean" gives the overall pixel accuracy (NaN if every pixel is
        ignored); None the accuracy within each true class, in ``labels``
        order (NaN for a class with no true pixel).

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
    if average is None:
        intersection, _, true_counts, _ = _confusion(y_true, y_pred, labels, ignore_index)
        with np.errstate(invalid="ignore", divide="ignore"):
            return intersection / true_counts
    if average != "mean":
        raise ValueError(f"average must be 'mean' or None; got {average!r}.")
    y_true, y_pred = _valid_pixels(y_true, y_pred, ignore_index)
    return float((y_true == y_pred).mean()) if y_true.size else np.nan


# --------------------------------------------------------------------------
# Object detection.


def box_iou(boxes_a, boxes_b):
    """Intersection over union of every pair of xyxy boxes.

    Parameters
    ----------
    boxes_a : array-like of shape (n, 4)
    boxes_b : array-like of shape (m, 4)

    Returns
    -------
    iou : ndarray of shape (n, m)
        NaN for two boxes without area (0 / 0).

    Examples
    --------
    >>> from skvision.metrics import box_iou
    >>> box_iou([[0, 0, 2, 2]], [[1, 0, 3, 2], [4, 4, 5, 5]])
    array([[0.33333333, 0.        ]])
    """
    import torch
    from torchvision.ops import box_iou as torch_box_iou

    boxes_a = torch.as_tensor(np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4))
    boxes_b = torch.as_tensor(np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4))
    return torch_box_iou(boxes_a, boxes_b).numpy()


# COCO's area ranges (pixels²): objects up to 32x32, up to 96x96, and larger.
AREA_RANGES = {"all": (0.0, 1e10), "small": (0.0, 32.0**2), "medium": (32.0**2, 96.0**2),
               "large": (96.0**2, 1e10)}


def _box_areas(boxes):
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _detections(targets, name, with_scores):
    """Per image ``(boxes, labels, scores, iscrowd, areas)`` as arrays (scores 1 for truths)."""
    rows = []
    for index, target in enumerate(targets):
        required = ("boxes", "labels", "scores") if with_scores else ("boxes", "labels")
        if not hasattr(target, "keys") or any(key not in target for key in required):
            raise ValueError(
                f"{name}[{index}] must be a dict with 'boxes' (k, 4) and 'labels' (k,)"
                + (" and 'scores' (k,)" if with_scores else "") + "."
            )
        boxes = np.asarray(target["boxes"], dtype=np.float64).reshape(-1, 4)
        labels = np.asarray(target["labels"]).reshape(-1)
        scores = (np.asarray(target["scores"], dtype=np.float64).reshape(-1) if with_scores
                  else np.ones(len(boxes)))
        if not len(boxes) == len(labels) == len(scores):
            raise ValueError(f"{name}[{index}] has {len(boxes)} boxes, {len(labels)} labels"
                             + (f" and {len(scores)} scores." if with_scores else "."))
        crowd = np.zeros(len(boxes), dtype=bool)
        areas = _box_areas(boxes)
        if not with_scores:
            if "iscrowd" in target:
                crowd = np.asarray(target["iscrowd"]).astype(bool).reshape(-1)
            if "area" in target:
                areas = np.asarray(target["area"], dtype=np.float64).reshape(-1)
            if not len(crowd) == len(areas) == len(boxes):
                raise ValueError(f"{name}[{index}] has {len(boxes)} boxes but 'iscrowd' or "
                                 "'area' of another length.")
        rows.append((boxes, labels, scores, crowd, areas))
    return rows


def _target_lists(y_true, y_pred):
    """Both detection target sets as lists of dicts (DataFrames are converted)."""
    frames = [y for y in (y_true, y_pred) if hasattr(y, "columns")]
    if not frames:
        return y_true, y_pred
    lists = [len(y) for y in (y_true, y_pred) if not hasattr(y, "columns")]
    # A frame has no row for an image without boxes: the list (if any) says
    # how many images there are, else the largest image_id does.
    n_images = lists[0] if lists else max(
        (int(frame["image_id"].max()) + 1 for frame in frames if len(frame)), default=0)
    return tuple(frame_to_targets(y, n_images) if hasattr(y, "columns") else y
                 for y in (y_true, y_pred))


def _coco_iou(detected, truth, crowd):
    """pycocotools' box IoU: intersection over the detection's area for crowd truths.

    Boxes without a positive intersection (lines, points, inverted boxes)
    overlap nothing.
    """
    width = (np.minimum(detected[:, None, 2], truth[None, :, 2])
             - np.maximum(detected[:, None, 0], truth[None, :, 0]))
    height = (np.minimum(detected[:, None, 3], truth[None, :, 3])
              - np.maximum(detected[:, None, 1], truth[None, :, 1]))
    positive = (width > 0) & (height > 0)
    intersection = np.where(positive, width * height, 0.0)
    area_detected = _box_areas(detected)[:, None]
    union = np.where(crowd[None, :], area_detected,
                     area_detected + _box_areas(truth)[None, :] - intersection)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(positive, intersection / union, 0.0)


def _match_image(ious, crowd, ignored, thresholds):
    """COCOeval's greedy matching of one image and class: (matched, ignored) per detection.

    Detections come best first, truths not ignored first. A detection takes
    the unmatched truth of best IoU at or above the threshold, a real truth
    before an ignored one (crowd, or outside the area range); crowd truths
    can take any number of detections.
    """
    n_detected, n_true = ious.shape
    matched = np.zeros((len(thresholds), n_detected), dtype=bool)
    on_ignored = np.zeros((len(thresholds), n_detected), dtype=bool)
    for t_index, threshold in enumerate(thresholds):
        taken = np.zeros(n_true, dtype=bool)
        for d in range(n_detected):
            best, match = min(threshold, 1 - 1e-10), -1
            for g in range(n_true):
                if taken[g] and not crowd[g]:
                    continue
                if match > -1 and not ignored[match] and ignored[g]:
                    break
                if ious[d, g] < best:
                    continue
                best, match = ious[d, g], g
            if match >= 0:
                matched[t_index, d] = taken[match] = True
                on_ignored[t_index, d] = ignored[match]
    return matched, on_ignored


def _average_precision(scores, matched, ignored, n_true, recall_points):
    """Precision averaged at ``recall_points`` for each threshold (rows of ``matched``)."""
    order = np.argsort(-scores, kind="mergesort")
    matched, ignored = matched[:, order], ignored[:, order]
    precisions = np.zeros(len(matched))
    for t_index in range(len(matched)):
        true_positives = np.cumsum(matched[t_index] & ~ignored[t_index])
        false_positives = np.cumsum(~matched[t_index] & ~ignored[t_index])
        recall = true_positives / n_true
        precision = true_positives / (true_positives + false_positives + np.spacing(1))
        precision = np.maximum.accumulate(precision[::-1])[::-1]  # monotone envelope
        positions = np.searchsorted(recall, recall_points, side="left")
        valid = positions < len(precision)
        sampled = np.zeros(len(recall_points))
        sampled[valid] = precision[positions[valid]]
        precisions[t_index] = sampled.mean()
    return precisions


def _class_average_precision(label, truths, predictions, thresholds, max_detections,
                             area_range):
    """AP of one class at each threshold, or NaN where it has no truth to find."""
    low, high = area_range
    scores, matches, ignores, n_true = [], [], [], 0
    for (true_boxes, true_labels, _, crowd, areas), (boxes, labels, confidences, _, _) in zip(
            truths, predictions):
        own = true_labels == label
        ignored = crowd[own] | (areas[own] < low) | (areas[own] > high)
        order = np.argsort(ignored, kind="mergesort")  # truths to find first
        gt, gt_crowd, ignored = true_boxes[own][order], crowd[own][order], ignored[order]
        keep = labels == label
        best = np.argsort(-confidences[keep], kind="mergesort")[:max_detections]
        dt, dt_scores = boxes[keep][best], confidences[keep][best]
        matched, on_ignored = _match_image(_coco_iou(dt, gt, gt_crowd), gt_crowd, ignored,
                                           thresholds)
        # Unmatched detections outside the area range count neither way.
        dt_areas = _box_areas(dt)
        on_ignored |= ~matched & ((dt_areas < low) | (dt_areas > high))
        scores.append(dt_scores)
        matches.append(matched)
        ignores.append(on_ignored)
        n_true += int((~ignored).sum())
    if not n_true:
        return np.full(len(thresholds), np.nan)
    return _average_precision(np.concatenate(scores), np.concatenate(matches, axis=1),
                              np.concatenate(ignores, axis=1), n_true, np.linspace(0, 1, 101))


def mean_average_precision(y_true, y_pred, *, iou_thresholds=0.5, max_detections=100,
                           area_range="all"):
    """Mean average precision of detected boxes, COCO's way (VOC's at IoU 0.5).

    For each class and IoU threshold, detections of all images are ranked by
    score and matched greedily to unmatched true boxes of the same image
    (the best overlap at or above the threshold; boxes without area overlap
    nothing, so never match); precision is made
    monotone and averaged at 101 recall points. The result is the mean over
    classes that have true boxes, and over the thresholds. This is
    pycocotools' ``COCOeval`` for boxes, crowd regions and area ranges
    included: a true box marked ``iscrowd`` is an ignore region (a detection
    on it, measured by the share of the detection inside it, counts neither
    way, and any number may fall on it), and outside ``area_range`` true
    boxes are ignored and unmatched detections not counted.

    Parameters
    ----------
    y_true : list of dict or DataFrame
        One dict per image with ``"boxes"`` (k, 4) xyxy and ``"labels"`` (k,),
        or a DataFrame with a row per box and the columns ``image_id``
        (position of the image), ``x_min, y_min, x_max, y_max`` and ``label``.
        Optionally ``"iscrowd"`` (k,) bools (crowd regions, as
        :func:`~skvision.datasets.load_coco` keeps them with
        ``keep_crowd=True``) and ``"area"`` (k,), the area the range
        applies to (COCO's annotation area, the mask's; by default the
        box's); or columns of those names.
    y_pred : list of dict or DataFrame
        Detections per image: ``"boxes"``, ``"labels"`` and ``"scores"``, or
        a DataFrame as ``y_true`` with a ``score`` column.
    iou_thresholds : float, array-like or "coco", default=0.5
        0.5 is PASCAL VOC's mAP@0.5; "coco" averages over 0.5, 0.55, ..., 0.95.
    max_detections : int, default=100
        Highest-scoring detections kept per image and class.
    area_range : {"all", "small", "medium", "large"} or (float, float), default="all"
        The objects scored, by area in pixels²: COCO's small (up to 32²),
        medium (32² to 96²) and large (above 96²), or ``(min, max)``.

    Returns
    -------
    score : float

    See Also
    --------
    skvision.datasets.load_coco : Ground truth from a COCO file, crowd regions included.

    Examples
    --------
    >>> from skvision.metrics import mean_average_precision
    >>> truth = [{"boxes": [[0, 0, 10, 10]], "labels": ["cat"]}]
    >>> found = [{"boxes": [[1, 0, 10, 10], [20, 20, 30, 30]], "labels": ["cat", "cat"],
    ...           "scores": [0.9, 0.4]}]
    >>> round(mean_average_precision(truth, found), 3)
    1.0
    """
    y_true, y_pred = _target_lists(y_true, y_pred)
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} images but y_pred has {len(y_pred)}.")
    if isinstance(area_range, str):
        if area_range not in AREA_RANGES:
            raise ValueError(f"area_range must be one of {sorted(AREA_RANGES)} or (min, max); "
                             f"got {area_range!r}.")
        area_range = AREA_RANGES[area_range]
    truths = _detections(y_true, "y_true", with_scores=False)
    predictions = _detections(y_pred, "y_pred", with_scores=True)
    thresholds = (np.linspace(0.5, 0.95, 10) if isinstance(iou_thresholds, str)
                  and iou_thresholds == "coco" else np.atleast_1d(iou_thresholds).astype(float))
    classes = np.unique(np.concatenate([labels for _, labels, _, _, _ in truths] or [[]]))
    average_precisions = np.array([
        _class_average_precision(label, truths, predictions, thresholds, max_detections,
                                 tuple(area_range)) for label in classes]).reshape(-1)
    if not len(classes) or np.isnan(average_precisions).all():
        raise ValueError("y_true holds no boxes to find (none, or only crowd regions or boxes "
                         "outside area_range): mean average precision is undefined.")
    return float(np.nanmean(average_precisions))


mean_iou_scorer = make_scorer(mean_iou)
dice_scorer = make_scorer(dice_score)
pixel_accuracy_scorer = make_scorer(pixel_accuracy)
mean_average_precision_scorer = make_scorer(mean_average_precision)
