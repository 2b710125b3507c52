"""Targets follow their images: ``select_targets`` for every kind of target.

Wherever images are left out or repeated (files ``on_error="skip"`` leaves
out, ``ImageAugmenter.fit_resample``'s copies), one function takes their
targets: by position for one-target-per-image containers, by ``image_id``
for detection frames (one row per box).
"""

import numpy as np
import pandas as pd
import pytest
import torch

from skvision._validation import select_targets, targets_to_frame

POSITIONS = [3, 0, 3]  # image 1 and 2 left out, image 3 twice


def test_labels_are_taken_by_position_in_their_container():
    labels = np.array(["a", "b", "c", "d"])
    np.testing.assert_array_equal(select_targets(labels, POSITIONS, 4), ["d", "a", "d"])
    values = np.arange(8.0).reshape(4, 2)  # multi-output regression
    np.testing.assert_array_equal(select_targets(values, POSITIONS, 4), values[POSITIONS])
    assert select_targets(list("abcd"), POSITIONS, 4) == ["d", "a", "d"]
    series = pd.Series(list("abcd"), index=[10, 11, 12, 13])
    selected = select_targets(series, POSITIONS, 4)
    assert list(selected) == ["d", "a", "d"] and list(selected.index) == [13, 10, 13]
    with pytest.raises(ValueError, match="4 images but 3 targets"):
        select_targets(labels[:3], POSITIONS, 4)


def test_dicts_of_boxes_are_taken_by_position():
    targets = [{"boxes": np.full((1, 4), i, np.float32), "labels": np.array([i])}
               for i in range(4)]
    selected = select_targets(targets, POSITIONS, 4)
    assert [target["labels"][0] for target in selected] == [3, 0, 3]
    assert selected[0] is targets[3]


def test_masks_are_taken_by_position():
    masks = np.arange(4 * 2 * 3).reshape(4, 2, 3)
    np.testing.assert_array_equal(select_targets(masks, POSITIONS, 4), masks[POSITIONS])
    tensor = torch.from_numpy(masks)
    assert torch.equal(select_targets(tensor, POSITIONS, 4), tensor[POSITIONS])


def test_a_box_frame_is_taken_by_image_id_and_renumbered():
    """Rows are boxes: image 3's two boxes become image 0's and 2's; other columns follow."""
    frame = pd.DataFrame({
        "image_id": [3, 0, 2, 3],  # any row order; image 1 has no boxes
        "x_min": [1.0, 2.0, 3.0, 4.0], "y_min": 0.0, "x_max": 9.0, "y_max": 9.0,
        "label": ["d1", "a", "c", "d2"], "difficult": [0, 1, 0, 1],
    }, index=[7, 8, 9, 10])
    selected = select_targets(frame, POSITIONS, 4)
    expected = pd.DataFrame({
        "image_id": [0, 0, 1, 2, 2],
        "x_min": [1.0, 4.0, 2.0, 1.0, 4.0], "y_min": 0.0, "x_max": 9.0, "y_max": 9.0,
        "label": ["d1", "d2", "a", "d1", "d2"], "difficult": [0, 1, 1, 0, 1],
    })
    pd.testing.assert_frame_equal(selected, expected)
    # An image left out takes its boxes with it; one without boxes stays without.
    assert select_targets(frame, [1, 2], 4)["image_id"].tolist() == [1]
    with pytest.raises(ValueError, match=r"image_id must be the integer position .* \(0 to 2\)"):
        select_targets(frame, [0], 3)


def test_selecting_a_box_frame_is_selecting_its_dicts():
    from skvision.datasets import make_shapes

    _, targets = make_shapes(n_samples=6, image_size=16, task="detection", random_state=0)
    positions = [5, 1, 2, 2]
    from_frame = select_targets(targets_to_frame(targets), positions, 6)
    pd.testing.assert_frame_equal(from_frame,
                                  targets_to_frame(select_targets(targets, positions, 6)))
