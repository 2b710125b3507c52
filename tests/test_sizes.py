"""Sizes in, sizes out: images of any size in, masks and boxes at each image's own size out.

Image files are known by their own size (the header scan), so masks given
at that size are resized with the files, as mask files are; the estimators
that take images of any size read files at their own size; and
UNetSegmenter answers at each input image's own size, also when its network
sees ``image_size``.
"""

import numpy as np
import pytest
import torch
from PIL import Image

from skvision import FasterRCNNDetector, UNetSegmenter
from skvision.datasets import make_shapes
from skvision.metrics import mean_iou
from skvision.nn._resize import resize_images

UNET = dict(depth=1, base_filters=4, epochs=1, batch_size=8, device="cpu", random_state=0)


def _png(folder, images):
    folder.mkdir(exist_ok=True)
    paths = [str(folder / f"{index}.png") for index in range(len(images))]
    for image, path in zip(images, paths):
        Image.fromarray(image).save(path)
    return paths


def _scenes(sizes, task="segmentation"):
    """One make_shapes scene cropped to each (height, width): images and their masks."""
    X, y = make_shapes(len(sizes), image_size=max(max(size) for size in sizes), task=task,
                       random_state=0)
    images = [image[:height, :width] for image, (height, width) in zip(X, sizes)]
    if task != "segmentation":
        return images
    return images, [mask[:height, :width].astype(np.uint8) for mask, (height, width)
                    in zip(y, sizes)]


@pytest.fixture(scope="module")
def segmentation():
    return make_shapes(8, image_size=24, task="segmentation", random_state=0)


@pytest.fixture(scope="module")
def detector():
    X, targets = make_shapes(8, image_size=32, task="detection", random_state=0)
    return FasterRCNNDetector(epochs=1, batch_size=4, device="cpu", random_state=0).fit(
        X, targets)


def _assert_each_equal(actual, expected):
    assert len(actual) == len(expected)
    for left, right in zip(actual, expected):
        np.testing.assert_array_equal(left, right)


def test_unet_takes_mask_arrays_of_the_files_own_size(tmp_path):
    """With image_size, mask arrays of the files' own size are resized as mask files are."""
    images, masks = _scenes([(40, 48)] * 6)
    paths = _png(tmp_path / "images", images)
    from_arrays = UNetSegmenter(image_size=32, **UNET).fit(paths, np.stack(masks))
    from_files = UNetSegmenter(image_size=32, **UNET).fit(
        paths, _png(tmp_path / "masks", masks))
    np.testing.assert_array_equal(from_arrays.predict(paths), from_files.predict(paths))
    # Files of different sizes: a list of masks, each of its file's size.
    images, masks = _scenes([(40, 48), (30, 36)] * 3)
    paths = _png(tmp_path / "mixed", images)
    from_list = UNetSegmenter(image_size=32, **UNET).fit(paths, masks)
    from_files = UNetSegmenter(image_size=32, **UNET).fit(
        paths, _png(tmp_path / "mixed_masks", masks))
    _assert_each_equal(from_list.predict(paths), from_files.predict(paths))
    with pytest.raises(ValueError, match=r"mask 1 must have shape .*\(30, 36\)"):
        UNetSegmenter(image_size=32, **UNET).fit(paths, [masks[0]] * 6)


def test_unet_reads_files_of_any_size_at_their_own_size(segmentation, tmp_path):
    X, masks = segmentation
    seg = UNetSegmenter(**UNET).fit(X, masks)
    images, _ = _scenes([(24, 24), (40, 32), (20, 28), (40, 32)])
    paths = _png(tmp_path, images)
    predicted, proba = seg.predict(paths), seg.predict_proba(paths)
    assert [mask.shape for mask in predicted] == [image.shape[:2] for image in images]
    for image, mask, probabilities in zip(images, predicted, proba, strict=True):
        np.testing.assert_array_equal(mask, seg.predict(image[np.newaxis])[0])
        np.testing.assert_allclose(probabilities, seg.predict_proba(image[np.newaxis])[0],
                                   atol=1e-6)
    # Files of one size, another than the training images': one array.
    assert seg.predict(paths[1::2]).shape == (2, 40, 32)


def test_detector_reads_files_of_any_size_at_their_own_size(detector, tmp_path):
    images = _scenes([(32, 32), (40, 48), (24, 36)], task="detection")
    from_files = detector.predict(_png(tmp_path, images))
    # The same images as a list of arrays of different sizes, each at its own size.
    for on_file, on_array in zip(from_files, detector.predict(images), strict=True):
        np.testing.assert_allclose(on_file["boxes"], on_array["boxes"], atol=1e-4)
        np.testing.assert_array_equal(on_file["labels"], on_array["labels"])


def test_unet_predicts_at_each_images_own_size_with_image_size(segmentation, tmp_path):
    X, masks = segmentation
    seg = UNetSegmenter(image_size=16, **UNET).fit(X, masks)
    proba = seg.predict_proba(X)
    assert proba.shape == (8, len(seg.classes_), 24, 24)
    np.testing.assert_allclose(proba.sum(axis=1), 1, atol=1e-5)
    predicted = seg.predict(X)
    np.testing.assert_array_equal(seg.classes_[proba.argmax(axis=1)], predicted)
    # The network's class scores at 16 px, resized back with the one bilinear resize.
    with torch.inference_mode():
        scores = seg.module_(resize_images(torch.from_numpy(X).permute(0, 3, 1, 2) / 255,
                                           (16, 16)))
    np.testing.assert_array_equal(
        predicted, seg.classes_[resize_images(scores, (24, 24)).argmax(dim=1).numpy()])
    # The score compares at the masks' own size.
    assert seg.score(X, masks) == mean_iou(masks, predicted)
    # Files of different sizes: one mask (and probabilities) per file, at its size.
    images, image_masks = _scenes([(24, 24), (40, 32), (20, 28)])
    paths = _png(tmp_path / "images", images)
    proba = seg.predict_proba(paths)
    assert [p.shape for p in proba] == [(len(seg.classes_), *image.shape[:2]) for image in images]
    for image, probabilities in zip(images, proba):
        np.testing.assert_allclose(probabilities, seg.predict_proba(image[np.newaxis])[0],
                                   atol=1e-5)
    pooled = mean_iou(np.concatenate([mask.ravel() for mask in image_masks]),
                      np.concatenate([mask.ravel() for mask in seg.predict(paths)]))
    assert seg.score(paths, image_masks) == pytest.approx(pooled)
    assert seg.score(paths, _png(tmp_path / "masks", image_masks)) == pytest.approx(pooled)
