"""FasterRCNNDetector on synthetic shapes."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.model_selection import GridSearchCV

from skvision.datasets import make_shapes
from skvision.detection import FasterRCNNDetector

FAST = dict(epochs=1, batch_size=8, device="cpu", random_state=0)


@pytest.fixture(scope="module")
def shapes():
    return make_shapes(n_samples=300, image_size=128, task="detection", max_objects=3,
                       random_state=0)


@pytest.fixture(scope="module")
def small():
    return make_shapes(n_samples=24, image_size=64, task="detection", max_objects=2,
                       random_state=1)


@pytest.mark.slow
def test_held_out_map_on_shapes(shapes):
    """The acceptance bar: mAP@0.5 >= 0.7 on held-out images within ~10 CPU minutes."""
    X, targets = shapes
    detector = FasterRCNNDetector(epochs=15, device="cpu", random_state=0).fit(
        X[:240], targets[:240])
    assert detector.score(X[240:], targets[240:]) >= 0.7
    history = detector.history_
    for column in ("loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"):
        assert history[column].iloc[-1] < history[column].iloc[0]


def test_predict_format_labels_and_proposals(small):
    X, targets = small
    detector = FasterRCNNDetector(**FAST).fit(X, targets)
    assert set(detector.classes_) <= {"circle", "square", "triangle"}
    detections = detector.predict(X[:3])
    assert len(detections) == 3
    for found in detections:
        assert found["boxes"].shape[1:] == (4,) and found["boxes"].dtype == np.float32
        assert set(found["labels"]) <= set(detector.classes_)
        assert len(found["scores"]) == len(found["labels"]) == len(found["boxes"])
        assert np.all(np.diff(found["scores"]) <= 1e-6)  # best first
    proposals = detector.predict_proposals(X[:2])
    assert len(proposals) == 2 and proposals[0].shape[1:] == (4,)
    assert len(proposals[0]) <= detector.rpn_post_nms_top_n
    assert (proposals[0] >= -1e-3).all() and (proposals[0] <= 64 + 1e-3).all()


def test_anchors_match_sizes_and_ratios(small):
    X, targets = small
    detector = FasterRCNNDetector(**FAST, anchor_sizes=(8, 16), aspect_ratios=(0.5, 1.0, 2.0))
    detector.fit(X, targets)
    generator = detector.module_.rpn.anchor_generator
    assert generator.num_anchors_per_location() == [6]
    base = generator.cell_anchors[0].numpy()
    # One anchor per (ratio, size): width size/sqrt(ratio), height size*sqrt(ratio),
    # centred on the cell and rounded to whole pixels, as torchvision builds them.
    expected = np.array([
        np.round([-size / np.sqrt(ratio) / 2, -size * np.sqrt(ratio) / 2,
                  size / np.sqrt(ratio) / 2, size * np.sqrt(ratio) / 2])
        for ratio in (0.5, 1.0, 2.0) for size in (8, 16)
    ])
    np.testing.assert_array_equal(base, expected)
    assert len(base) == len(detector.anchor_sizes) * len(detector.aspect_ratios)


def test_images_without_objects_and_errors(small):
    X, targets = small
    targets = list(targets)
    targets[0] = {"boxes": np.zeros((0, 4), np.float32), "labels": np.array([], dtype=object)}
    FasterRCNNDetector(**FAST).fit(X, targets)
    with pytest.raises(ValueError, match="not inside"):
        FasterRCNNDetector(**FAST).fit(X, [{"boxes": [[0, 0, 100, 10]], "labels": ["a"]}]
                                       + targets[1:])
    with pytest.raises(ValueError, match="x1 < x2"):
        FasterRCNNDetector(**FAST).fit(X, [{"boxes": [[10, 0, 5, 10]], "labels": ["a"]}]
                                       + targets[1:])
    with pytest.raises(ValueError, match="entries for"):
        FasterRCNNDetector(**FAST).fit(X, [{"boxes": [[0, 0, 5, 5]], "labels": ["a", "b"]}]
                                       + targets[1:])
    with pytest.raises(ValueError, match="list of 24 detection targets"):
        FasterRCNNDetector(**FAST).fit(X, targets[:-1])
    with pytest.raises(ValueError, match="early_stopping"):
        FasterRCNNDetector(**FAST, early_stopping=True).fit(X, targets)
    warm = FasterRCNNDetector(**FAST, warm_start=True).fit(X, targets)
    renamed = [{**target, "labels": np.where(target["labels"] == "circle", "oval",
                                             target["labels"])} for target in targets]
    if any("oval" in target["labels"] for target in renamed):
        with pytest.raises(ValueError, match="not seen in the first fit"):
            warm.fit(X, renamed)


def test_pickle_round_trip_and_grid_search(small):
    X, targets = small
    detector = FasterRCNNDetector(**FAST).fit(X, targets)
    restored = pickle.loads(pickle.dumps(detector))
    for before, after in zip(detector.predict(X[:4]), restored.predict(X[:4])):
        np.testing.assert_array_equal(before["boxes"], after["boxes"])
    search = GridSearchCV(FasterRCNNDetector(**FAST),
                          {"anchor_sizes": [(8, 16, 32), (16, 32, 64)]}, cv=2)
    search.fit(X, targets)
    assert search.best_params_["anchor_sizes"] in [(8, 16, 32), (16, 32, 64)]
    assert torch.is_tensor(detector.module_.rpn.anchor_generator.cell_anchors[0])


def test_sklearn_api_on_real_targets(small):
    """What sklearn's checks test, on detection targets (its checks only have 1-D y)."""
    from sklearn.base import clone

    X, targets = small
    X_before = X.copy()
    boxes_before = [target["boxes"].copy() for target in targets]
    detector = FasterRCNNDetector(**FAST)
    assert detector.fit(X, targets) is detector
    assert np.array_equal(X, X_before)
    assert all(np.array_equal(t["boxes"], b) for t, b in zip(targets, boxes_before))
    assert detector.n_features_in_ == 64 * 64 * 3
    twin = clone(detector).fit(X, targets)
    for first, second in zip(detector.predict(X[:4]), twin.predict(X[:4])):
        np.testing.assert_array_equal(first["scores"], second["scores"])
    assert 0.0 <= detector.score(X, targets) <= 1.0
