"""box_iou and mean_average_precision against torchmetrics' COCO evaluation."""

import numpy as np
import pytest
import torch

from skvision.metrics import box_iou, mean_average_precision


def _random_boxes(rng, n, size=100):
    corners = rng.uniform(0, size - 10, (n, 2))
    sides = rng.uniform(5, 40, (n, 2))
    return np.hstack([corners, np.minimum(corners + sides, size)])


def _random_case(seed, n_images=6):
    rng = np.random.default_rng(seed)
    truth, found = [], []
    for _ in range(n_images):
        n = rng.integers(0, 5)
        boxes = _random_boxes(rng, n)
        labels = rng.integers(0, 3, n)
        truth.append({"boxes": boxes, "labels": labels})
        # Noisy copies of some true boxes, some wrong labels, and false positives.
        keep = rng.random(n) < 0.8
        noisy = boxes[keep] + rng.normal(0, 4, (keep.sum(), 4))
        noisy[:, 2:] = np.maximum(noisy[:, 2:], noisy[:, :2] + 1)
        extra = _random_boxes(rng, rng.integers(0, 4))
        pred_labels = np.concatenate([np.where(rng.random(keep.sum()) < 0.9, labels[keep],
                                               rng.integers(0, 3, keep.sum())),
                                      rng.integers(0, 3, len(extra))])
        found.append({"boxes": np.vstack([noisy, extra]), "labels": pred_labels,
                      "scores": rng.random(len(pred_labels))})
    return truth, found


@pytest.mark.parametrize("seed", range(6))
def test_mean_average_precision_equals_torchmetrics(seed):
    detection = pytest.importorskip("torchmetrics.detection")
    pytest.importorskip("pycocotools")
    truth, found = _random_case(seed)
    metric = detection.MeanAveragePrecision(iou_type="bbox", backend="pycocotools")
    metric.update(
        [{key: torch.as_tensor(value, dtype=torch.float32 if key != "labels" else torch.int64)
          for key, value in image.items()} for image in found],
        [{key: torch.as_tensor(value, dtype=torch.float32 if key != "labels" else torch.int64)
          for key, value in image.items()} for image in truth],
    )
    expected = metric.compute()
    # torchmetrics passes float32 boxes: compare on the same values.
    truth32 = [{**image, "boxes": np.float32(image["boxes"])} for image in truth]
    found32 = [{**image, "boxes": np.float32(image["boxes"])} for image in found]
    assert mean_average_precision(truth32, found32) == pytest.approx(
        float(expected["map_50"]), abs=1e-6)
    assert mean_average_precision(truth32, found32, iou_thresholds="coco") == pytest.approx(
        float(expected["map"]), abs=1e-6)


def _with_boxes_without_area(truth, found, rng):
    """A case with some true boxes collapsed to lines or points, found exactly.

    Also detections without area elsewhere, and some images emptied of true
    boxes or of detections.
    """
    truth = [{key: np.array(value, copy=True) for key, value in image.items()}
             for image in truth]
    found = [{key: np.array(value, copy=True) for key, value in image.items()}
             for image in found]
    for true, detected in zip(truth, found):
        boxes = true["boxes"]
        collapse = rng.random(len(boxes)) < 0.4
        side = rng.integers(0, 3, len(boxes))  # a vertical line, a horizontal one, a point
        boxes[collapse & (side != 1), 2] = boxes[collapse & (side != 1), 0]
        boxes[collapse & (side != 0), 3] = boxes[collapse & (side != 0), 1]
        copies = collapse & (rng.random(len(boxes)) < 0.7)
        flat = boxes[copies] if rng.random() < 0.5 else np.zeros((0, 4))
        extra = rng.uniform(0, 90, (int(rng.integers(0, 2)), 2))
        new_boxes = np.vstack([flat, np.hstack([extra, extra])])
        new_labels = np.concatenate([true["labels"][copies][:len(flat)],
                                     rng.integers(0, 3, len(extra))])
        detected["boxes"] = np.vstack([detected["boxes"].reshape(-1, 4), new_boxes])
        detected["labels"] = np.concatenate([detected["labels"], new_labels]).astype(int)
        detected["scores"] = np.concatenate([detected["scores"], rng.random(len(new_labels))])
        if rng.random() < 0.15:
            true["boxes"], true["labels"] = np.zeros((0, 4)), np.zeros(0, int)
        if rng.random() < 0.15:
            detected.update(boxes=np.zeros((0, 4)), labels=np.zeros(0, int), scores=np.zeros(0))
    return truth, found


def _pycocotools_maps(cases):
    """pycocotools' COCOeval mAP@0.5 and mAP@[.5:.95] of each (truth, found) case.

    One evaluation for all cases (COCOeval costs milliseconds a call): case
    k's classes become categories 10 k + label + 1, its images keep their
    positions. COCOeval scores each image and category alone and ranks the
    detections of a category, so cases share no ranking; each case's mAP is
    the mean over its own categories with true boxes.
    """
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def dataset(which):
        annotations = []
        for case, images in enumerate(cases):
            for image_id, image in enumerate(images[which]):
                boxes = np.asarray(image["boxes"], dtype=np.float64).reshape(-1, 4)
                for index, (box, label) in enumerate(zip(boxes, image["labels"])):
                    width, height = box[2] - box[0], box[3] - box[1]
                    annotations.append({
                        # Ids from 1: COCOeval takes a matched id of 0 for no match.
                        "id": len(annotations) + 1, "image_id": image_id,
                        "category_id": 10 * case + int(label) + 1, "iscrowd": 0,
                        "bbox": [box[0], box[1], width, height], "area": width * height,
                        **({"score": float(image["scores"][index])} if which else {}),
                    })
        coco = COCO()
        coco.dataset = {
            "images": [{"id": index} for index in range(max(len(case[0]) for case in cases))],
            "categories": [{"id": 10 * case + label + 1} for case in range(len(cases))
                           for label in range(3)],
            "annotations": annotations,
        }
        coco.createIndex()
        return coco

    with contextlib.redirect_stdout(io.StringIO()):  # COCO and COCOeval print progress
        evaluation = COCOeval(dataset(0), dataset(1), "bbox")
        # Only what mean_average_precision computes: every area, 100 detections.
        evaluation.params.areaRng, evaluation.params.areaRngLbl = [[0, 1e10]], ["all"]
        evaluation.params.maxDets = [100]
        evaluation.evaluate()
        evaluation.accumulate()
    # (thresholds, recall points, categories) at the most detections per image.
    precision = evaluation.eval["precision"][:, :, :, 0, -1]
    category_ids = np.asarray(evaluation.params.catIds)
    maps = []
    for case in range(len(cases)):
        own = precision[:, :, (category_ids - 1) // 10 == case]
        own = own[:, :, (own > -1).all(axis=(0, 1))]  # categories with true boxes
        maps.append((own[0].mean(), own.mean()) if own.size else (np.nan, np.nan))
    return np.array(maps)


def test_mean_average_precision_equals_pycocotools_with_boxes_without_area():
    """Boxes without area (lines, points) never match, even an identical one.

    Their IoU is 0/0; pycocotools counts it as 0. Random cases of two
    images, with true boxes collapsed to lines and points and found exactly,
    detections without area, and images without true boxes or detections;
    at least 300 of them have a true box (mAP is undefined otherwise).
    """
    pytest.importorskip("pycocotools")
    rng = np.random.default_rng(0)
    cases = [_with_boxes_without_area(*_random_case(seed, n_images=2), rng)
             for seed in range(335)]
    expected = _pycocotools_maps(cases)
    mine = np.full_like(expected, np.nan)
    for index, (truth, found) in enumerate(cases):
        if any(len(image["labels"]) for image in truth):  # else mAP is undefined
            mine[index] = (mean_average_precision(truth, found),
                           mean_average_precision(truth, found, iou_thresholds="coco"))
    np.testing.assert_array_equal(np.isnan(mine), np.isnan(expected))
    n_scored = int((~np.isnan(mine[:, 0])).sum())
    assert n_scored >= 300
    difference = np.nanmax(np.abs(mine - expected))
    print(f"{n_scored} cases, largest mAP difference from pycocotools {difference:.1e}")
    assert difference <= 1e-9


def test_boxes_without_area_never_match():
    point = {"boxes": [[5, 5, 5, 5]], "labels": [1]}
    assert mean_average_precision([point], [{**point, "scores": [0.9]}]) == 0.0
    line = {"boxes": [[0, 5, 10, 5]], "labels": [1]}
    assert mean_average_precision([line], [{**line, "scores": [0.9]}]) == 0.0
    inverted = {"boxes": [[10, 10, 0, 0]], "labels": [1]}
    assert mean_average_precision([inverted], [{**inverted, "scores": [0.9]}]) == 0.0


def test_box_iou_and_simple_cases():
    np.testing.assert_allclose(box_iou([[0, 0, 2, 2]], [[1, 1, 3, 3], [0, 0, 2, 2]]),
                               [[1 / 7, 1.0]])
    truth = [{"boxes": [[0, 0, 10, 10]], "labels": ["a"]},
             {"boxes": [[0, 0, 10, 10], [20, 20, 30, 30]], "labels": ["a", "b"]}]
    perfect = [{**image, "scores": np.ones(len(image["labels"]))} for image in truth]
    assert mean_average_precision(truth, perfect) == 1.0
    nothing = [{"boxes": np.zeros((0, 4)), "labels": [], "scores": []} for _ in truth]
    assert mean_average_precision(truth, nothing) == 0.0
    with pytest.raises(ValueError, match="2 images"):
        mean_average_precision(truth, perfect[:1])
    with pytest.raises(ValueError, match="'scores'"):
        mean_average_precision(truth, truth)


def test_plot_boxes_draws_every_kind():
    import matplotlib

    matplotlib.use("Agg")
    from skvision.datasets import make_shapes
    from skvision.plotting import plot_boxes

    X, targets = make_shapes(n_samples=3, image_size=64, task="detection", random_state=0)
    predicted = [{**target, "scores": np.linspace(0.9, 0.1, len(target["labels"]))}
                 for target in targets]
    proposals = [np.array([[0, 0, 10, 10], [5, 5, 30, 30]])] * 3
    fig = plot_boxes(X, y_true=targets, y_pred=predicted, proposals=proposals,
                     score_threshold=0.5)
    n_true = sum(len(target["labels"]) for target in targets)
    n_shown = sum(int((p["scores"] >= 0.5).sum()) for p in predicted)
    assert sum(len(ax.patches) for ax in fig.axes) == 6 + n_true + n_shown
    assert sum(len(ax.texts) for ax in fig.axes) == n_shown
    with pytest.raises(ValueError, match="2 entries for 3 images"):
        plot_boxes(X, y_true=targets[:2])


def test_plot_boxes_draws_boxes_on_the_object_pixels():
    """A box is in pixel corners: (3, 2, 7, 6) outlines columns 3..6 of rows 2..5.

    Rendered, the outline lies on the object's edges; with imshow's default
    extent (pixel centres at integers) it lay half an image pixel right of
    and below them.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from skvision.plotting import plot_boxes

    image = np.ones((8, 8))
    image[2:6, 3:7] = 0  # a black object on white; the axes are off
    fig = plot_boxes(image[None], proposals=[np.array([[3, 2, 7, 6]])], ax_size=4)
    ax = fig.axes[0]
    assert list(ax.images[0].get_extent()) == [0, 8, 8, 0]
    fig.canvas.draw()
    pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3]
    rows, columns = np.nonzero((pixels <= 5).all(axis=-1))
    outline = ax.patches[0].get_window_extent(fig.canvas.get_renderer())
    height = pixels.shape[0]  # display y counts up from the bottom, rows down from the top
    np.testing.assert_allclose(
        [columns.min(), columns.max() + 1, height - rows.max() - 1, height - rows.min()],
        [outline.x0, outline.x1, outline.y0, outline.y1], atol=2)
    plt.close(fig)


def test_mean_average_precision_takes_dataframes():
    """One row per box (image_id, x_min, ..., label[, score]) scores as the dicts do."""
    from skvision._validation import targets_to_frame

    truth, found = _random_case(0)
    truth[-1] = {"boxes": np.zeros((0, 4)), "labels": np.zeros(0, int)}  # no row in the frame
    expected = mean_average_precision(truth, found)
    both_frames = mean_average_precision(targets_to_frame(truth), targets_to_frame(found))
    assert both_frames == pytest.approx(expected, abs=1e-6)
    assert mean_average_precision(truth, targets_to_frame(found)) == pytest.approx(expected,
                                                                                   abs=1e-6)


def _crowded_case(seed, n_images=12, size=320):
    """Truths of every area range, some crowd regions with detections on them, images
    without truths and images without detections."""
    rng = np.random.default_rng(seed)
    truth, found = [], []
    for index in range(n_images):
        n = 0 if index in (1, 6) else int(rng.integers(1, 6))
        corners = rng.uniform(0, size - 20, (n, 2))
        sides = np.exp(rng.uniform(np.log(6), np.log(250), (n, 2)))  # small to large
        boxes = np.hstack([corners, np.minimum(corners + sides, size)])
        labels = rng.integers(0, 3, n)
        crowd = rng.random(n) < 0.2
        truth.append({"boxes": boxes, "labels": labels, "iscrowd": crowd,
                      "area": _box_areas(boxes) * rng.uniform(0.6, 1.0, n)})
        noisy = boxes + rng.normal(0, 3, (n, 4))
        noisy[:, 2:] = np.maximum(noisy[:, 2:], noisy[:, :2] + 1)
        # Several detections inside each crowd region, and false positives.
        inside = [_inside(box, rng) for box in boxes[crowd] for _ in range(2)]
        extra = _random_boxes(rng, int(rng.integers(0, 3)), size)
        dt = np.vstack([noisy, *inside, extra]) if len(inside) else np.vstack([noisy, extra])
        dt_labels = np.concatenate([labels, np.repeat(labels[crowd], 2),
                                    rng.integers(0, 3, len(extra))])
        if index in (2, 7):
            dt, dt_labels = np.zeros((0, 4)), np.zeros(0, int)
        found.append({"boxes": dt, "labels": dt_labels, "scores": rng.random(len(dt))})
    return truth, found


def _inside(box, rng):
    """A random box inside ``box``."""
    xs = np.sort(rng.uniform(box[0], box[2], 2))
    ys = np.sort(rng.uniform(box[1], box[3], 2))
    return np.array([xs[0], ys[0], xs[1], ys[1]])


def _box_areas(boxes):
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _cocoeval_stats(truth, found):
    """COCOeval's summary (AP, AP50, AP75, AP small, medium, large) with its default params."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def dataset(images, with_scores):
        annotations = []
        for image_id, image in enumerate(images):
            for k, (box, label) in enumerate(zip(image["boxes"], image["labels"])):
                width, height = box[2] - box[0], box[3] - box[1]
                annotations.append({
                    "id": len(annotations) + 1, "image_id": image_id,
                    "category_id": int(label) + 1, "bbox": [*box[:2], width, height],
                    "iscrowd": int(image["iscrowd"][k]) if not with_scores else 0,
                    "area": float(image["area"][k]) if not with_scores else width * height,
                    **({"score": float(image["scores"][k])} if with_scores else {}),
                })
        coco = COCO()
        coco.dataset = {"images": [{"id": i} for i in range(len(truth))],
                        "categories": [{"id": k + 1} for k in range(3)],
                        "annotations": annotations}
        coco.createIndex()
        return coco

    with contextlib.redirect_stdout(io.StringIO()):
        evaluation = COCOeval(dataset(truth, False), dataset(found, True), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation.stats[:6]


@pytest.mark.parametrize("seed", [0, 2, 3])  # seeds with objects in every area range
def test_mean_average_precision_equals_cocoeval_with_crowd_regions_and_area_ranges(seed):
    pytest.importorskip("pycocotools")
    truth, found = _crowded_case(seed)
    expected = _cocoeval_stats(truth, found)
    mine = [mean_average_precision(truth, found, iou_thresholds=thresholds, area_range=area)
            for thresholds, area in [("coco", "all"), (0.5, "all"), (0.75, "all"),
                                     ("coco", "small"), ("coco", "medium"), ("coco", "large")]]
    assert (expected > -1).all()  # every range has objects to find
    np.testing.assert_allclose(mine, expected, atol=1e-9, rtol=0)
    # Crowd regions matter: without them the detections on them are false positives.
    plain = [{key: value for key, value in image.items() if key != "iscrowd"} for image in truth]
    assert mean_average_precision(plain, found, iou_thresholds="coco") != pytest.approx(mine[0])


def test_crowd_and_area_columns_of_box_frames():
    from skvision._validation import targets_to_frame

    truth, found = _crowded_case(0)
    frame = targets_to_frame(truth)
    frame["iscrowd"] = np.concatenate([image["iscrowd"] for image in truth])
    frame["area"] = np.concatenate([image["area"] for image in truth])
    assert mean_average_precision(frame, found, area_range="small") == pytest.approx(
        mean_average_precision(truth, found, area_range="small"))
    with pytest.raises(ValueError, match="area_range must be one of"):
        mean_average_precision(truth, found, area_range="tiny")
    only_crowd = [{"boxes": [[0, 0, 10, 10]], "labels": [1], "iscrowd": [True]}]
    with pytest.raises(ValueError, match="only crowd regions"):
        mean_average_precision(only_crowd, [{"boxes": [], "labels": [], "scores": []}])
