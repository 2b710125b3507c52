"""Built-in data."""

import numpy as np
import pandas as pd
import pytest

from skvision.datasets import load_digit_images, make_shapes, pixel_feature_names


def test_load_digit_images_forms():
    bunch = load_digit_images()
    assert bunch.images.shape == (1797, 8, 8)
    assert bunch.data.shape == (1797, 64)
    assert bunch.images.min() == 0 and bunch.images.max() == 1
    X, y = load_digit_images(return_X_y=True)
    np.testing.assert_array_equal(X, bunch.images)
    frame_X, frame_y = load_digit_images(return_X_y=True, as_frame=True)
    assert isinstance(frame_X, pd.DataFrame) and isinstance(frame_y, pd.Series)
    assert frame_X.columns[9] == "px_r1_c1_ch0"
    assert load_digit_images(as_frame=True).frame.shape == (1797, 65)


def test_pixel_feature_names():
    names = pixel_feature_names((2, 3, 2))
    assert len(names) == 12
    assert names[0] == "px_r0_c0_ch0" and names[-1] == "px_r1_c2_ch1"


def test_make_shapes_classification_is_seeded():
    X, y = make_shapes(30, image_size=20, random_state=0)
    assert X.shape == (30, 20, 20, 3) and X.dtype == np.uint8
    assert set(y) == {"circle", "square", "triangle"}
    X2, y2 = make_shapes(30, image_size=20, random_state=0)
    np.testing.assert_array_equal(X, X2)
    assert not np.array_equal(X, make_shapes(30, image_size=20, random_state=1)[0])


def test_make_shapes_segmentation_masks_match_images():
    X, masks = make_shapes(20, image_size=32, task="segmentation", noise=0.0, random_state=0)
    assert masks.shape == (20, 32, 32)
    assert set(np.unique(masks)) <= {0, 1, 2, 3}
    for image, mask in zip(X, masks):
        background = image[mask == 0].astype(int)
        # Noise-free background is one colour; the shapes differ from it.
        assert (np.ptp(background, axis=0) <= 1).all()
        assert np.abs(image[mask > 0].astype(int) - background[0]).sum(axis=1).min() > 0


def test_make_shapes_detection_boxes_enclose_objects():
    X, targets = make_shapes(15, image_size=48, task="detection", noise=0.0, random_state=0)
    assert len(targets) == 15
    for image, target in zip(X, targets):
        boxes = target["boxes"]
        assert boxes.shape == (len(target["labels"]), 4)
        assert 1 <= len(boxes) <= 3
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        assert boxes.min() >= 0 and boxes.max() <= 48
        colours, counts = np.unique(image.reshape(-1, 3), axis=0, return_counts=True)
        background = colours[counts.argmax()]
        outside = np.ones((48, 48), dtype=bool)
        for x_min, y_min, x_max, y_max in boxes:
            centre = image[int((y_min + y_max) / 2), int((x_min + x_max) / 2)]
            assert not np.array_equal(centre, background)  # an object at the box centre
            outside[int(y_min):int(np.ceil(y_max)) + 1, int(x_min):int(np.ceil(x_max)) + 1] = False
        assert (image[outside] == background).all()  # nothing drawn outside the boxes


def test_make_shapes_errors():
    with pytest.raises(ValueError, match="task must be"):
        make_shapes(5, task="tracking")
    with pytest.raises(ValueError, match="image_size"):
        make_shapes(5, image_size=4)
