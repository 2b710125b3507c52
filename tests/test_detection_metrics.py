"""box_iou and mean_average_precision against torchmetrics' COCO evaluation."""

import numpy as np
import pytest
import torch

from skvision.metrics import box_iou, mean_average_precision


def _random_boxes(rng, n, size=100):
    corners = rng.uniform(0, size - 10, (n, 2))
    sides = rng.uniform(5, 40, (n, 2))
    return np.hstack([corners, np.minimum(corners + sides, size)])


def _random_case(seed):
    rng = np.random.default_rng(seed)
    truth, found = [], []
    for _ in range(6):
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
