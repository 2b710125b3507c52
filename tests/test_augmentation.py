"""ImageAugmenter: seeding, per-image parameters, geometry of masks and boxes, the three uses."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline

from skvision import CNNClassifier, CNNRegressor
from skvision.augmentation import AugmentationSampler, ImageAugmenter, tta_predict
from skvision.datasets import load_digit_images

ALL_STEPS = dict(
    horizontal_flip=0.5, vertical_flip=0.5, crop_scale=(0.5, 1.0), degrees=20, translate=0.1,
    scale=(0.9, 1.1), shear=10, brightness=0.3, contrast=0.3, saturation=0.3, hue=0.1,
    grayscale=0.2, blur_sigma=1.0, noise_std=0.05, erasing=0.5,
)


@pytest.fixture(scope="module")
def rgb_images():
    return np.random.default_rng(0).random((16, 24, 32, 3), dtype=np.float32)


def _square_image(height=40, width=60, box=(10, 8, 26, 20)):
    """One gray image, black except a white rectangle at ``box`` (x1, y1, x2, y2)."""
    image = torch.zeros(1, 1, height, width)
    x1, y1, x2, y2 = box
    image[..., y1:y2, x1:x2] = 1.0
    mask = (image[:, 0] > 0.5).long() * 2
    return image, mask, [{"boxes": np.array([box], dtype=np.float32), "labels": np.array(["sq"])}]


def _bounding_box(binary):
    rows, cols = np.nonzero(binary)
    return np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1], dtype=np.float32)


# -- seeding -------------------------------------------------------------------


def test_same_int_seed_same_output_every_call(rgb_images):
    augmenter = ImageAugmenter(**ALL_STEPS, random_state=3).fit(rgb_images)
    first = augmenter.transform(rgb_images)
    assert np.array_equal(first, augmenter.transform(rgb_images))
    assert np.array_equal(first, clone(augmenter).fit_transform(rgb_images))
    other = ImageAugmenter(**ALL_STEPS, random_state=4).fit_transform(rgb_images)
    assert not np.allclose(first, other)


@pytest.mark.parametrize("make_rng", [np.random.default_rng, np.random.RandomState])
def test_generator_instance_advances_between_calls(rgb_images, make_rng):
    augmenter = ImageAugmenter(**ALL_STEPS, random_state=make_rng(0)).fit(rgb_images)
    first, second = augmenter.transform(rgb_images), augmenter.transform(rgb_images)
    assert not np.allclose(first, second)
    replay = ImageAugmenter(**ALL_STEPS, random_state=make_rng(0)).fit(rgb_images)
    assert np.array_equal(first, replay.transform(rgb_images))


def test_parameters_differ_within_a_batch():
    """Identical images in one batch come out different: one draw per image."""
    image = np.random.default_rng(1).random((1, 32, 32, 3), dtype=np.float32)
    batch = np.repeat(image, 12, axis=0)
    for params in (dict(degrees=30), dict(crop_scale=(0.3, 0.9)), dict(brightness=0.5),
                   dict(hue=0.2, horizontal_flip=0)):
        out = ImageAugmenter(**params, random_state=0).fit_transform(batch)
        distinct = {out[i].tobytes() for i in range(len(out))}
        assert len(distinct) == len(out), params


def test_input_never_modified_and_dtype_form_kept(rgb_images):
    uint8 = (rgb_images * 255).astype(np.uint8)
    for X in (rgb_images, rgb_images.astype(np.float64), uint8, rgb_images[..., 0],
              rgb_images.reshape(16, -1)):
        before = X.copy()
        augmenter = ImageAugmenter(**ALL_STEPS, image_shape=(24, 32), random_state=0)
        out = augmenter.fit_transform(X)
        assert np.array_equal(X, before)
        assert out.shape == X.shape and out.dtype == X.dtype
    tensor = torch.from_numpy(rgb_images).permute(0, 3, 1, 2)
    out = ImageAugmenter(random_state=0).fit_transform(tensor)
    assert isinstance(out, torch.Tensor) and out.shape == tensor.shape


def test_flips_are_exact(rgb_images):
    out = ImageAugmenter(horizontal_flip=1.0, random_state=0).fit_transform(rgb_images)
    assert np.array_equal(out, rgb_images[:, :, ::-1])
    out = ImageAugmenter(horizontal_flip=0, vertical_flip=1.0).fit_transform(rgb_images)
    assert np.array_equal(out, rgb_images[:, ::-1])


def test_identity_when_every_step_is_off(rgb_images):
    out = ImageAugmenter(horizontal_flip=0).fit_transform(rgb_images)
    assert np.array_equal(out, rgb_images)


def test_color_steps_keep_gray_pixels_and_grayscale_input():
    gray = np.full((4, 8, 8, 3), 0.4, dtype=np.float32)
    # Saturation, hue and grayscale leave a gray image unchanged.
    out = ImageAugmenter(horizontal_flip=0, saturation=0.9, hue=0.5, grayscale=1.0,
                         random_state=0).fit_transform(gray)
    np.testing.assert_allclose(out, gray, atol=1e-5)
    # Brightness scales; grayscale input ignores the RGB-only steps.
    one_channel = gray[..., :1]
    out = ImageAugmenter(horizontal_flip=0, brightness=0.5, saturation=0.9, hue=0.5,
                         random_state=0).fit_transform(one_channel)
    factors = out.reshape(4, -1) / 0.4
    assert np.allclose(factors, factors[:, :1], atol=1e-5)  # one factor per image
    assert ((factors > 0.49) & (factors < 1.51)).all() and np.ptp(factors[:, 0]) > 0.01


def test_grayscale_step_gives_equal_channels(rgb_images):
    out = ImageAugmenter(horizontal_flip=0, grayscale=1.0).fit_transform(rgb_images)
    np.testing.assert_allclose(out[..., 0], out[..., 2], atol=1e-6)
    luma = rgb_images @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    np.testing.assert_allclose(out[..., 1], luma, atol=1e-5)


def test_blur_noise_erasing(rgb_images):
    blurred = ImageAugmenter(horizontal_flip=0, blur_sigma=2.0).fit_transform(rgb_images)
    assert blurred.std() < 0.8 * rgb_images.std()
    np.testing.assert_allclose(blurred.mean(), rgb_images.mean(), atol=0.02)
    noisy = ImageAugmenter(horizontal_flip=0, noise_std=0.1, random_state=0).fit_transform(
        rgb_images)
    assert 0.09 < (noisy - rgb_images).std() < 0.11
    erased = ImageAugmenter(horizontal_flip=0, erasing=1.0, erasing_scale=(0.2, 0.2),
                            random_state=0).fit_transform(rgb_images + 1)
    zero_share = (erased == 0).all(axis=-1).mean(axis=(1, 2))
    np.testing.assert_allclose(zero_share, 0.2, atol=0.06)


# -- masks and boxes -----------------------------------------------------------


@pytest.mark.parametrize("params", [
    dict(horizontal_flip=1.0),
    dict(horizontal_flip=0, vertical_flip=1.0),
    dict(horizontal_flip=0.5, crop_scale=(0.5, 0.9)),
    dict(horizontal_flip=0, translate=0.2, scale=(0.8, 1.2)),
    dict(horizontal_flip=0.5, degrees=90, crop_scale=(0.6, 1.0)),
], ids=["hflip", "vflip", "crop", "shift-zoom", "rotate-crop"])
def test_masks_and_boxes_follow_the_image(params):
    image, mask, boxes = _square_image()
    augmenter = ImageAugmenter(**params, padding_mode="zeros")
    for seed in range(5):
        out, out_mask, out_boxes = augmenter.augment_batch(
            image, masks=mask, boxes=boxes, random_state=seed)
        visible = out[0, 0].numpy() > 0.5
        assert out_mask.dtype == torch.int64
        assert set(np.unique(out_mask.numpy())) <= {0, 2}
        # The mask moved exactly where the pixels went (nearest vs bilinear
        # edges may differ by one pixel).
        assert (visible != (out_mask[0].numpy() == 2)).mean() < 0.03
        if visible.sum() < 4:
            continue
        assert len(out_boxes[0]["boxes"]) == 1 and list(out_boxes[0]["labels"]) == ["sq"]
        # Axis-aligned moves keep the box tight; a rotation gives the box
        # around the rotated corners, which contains the object.
        moved, seen = out_boxes[0]["boxes"][0].numpy(), _bounding_box(visible)
        if params.get("degrees"):
            assert (moved[:2] <= seen[:2] + 1.5).all() and (moved[2:] >= seen[2:] - 1.5).all()
        else:
            np.testing.assert_allclose(moved, seen, atol=1.5)


def test_boxes_leaving_the_image_are_dropped_with_labels():
    image, _, _ = _square_image(box=(0, 0, 6, 6))
    targets = [{"boxes": np.array([[0, 0, 6, 6], [20, 10, 40, 30]], dtype=np.float32),
                "labels": np.array([7, 8])}]
    # Zoom in 2x around the centre: the corner box leaves the image.
    _, moved = ImageAugmenter(horizontal_flip=0, scale=(2.0, 2.0)).augment_batch(
        image, boxes=targets)
    assert list(moved[0]["labels"]) == [8]
    np.testing.assert_allclose(moved[0]["boxes"][0].numpy(), [10, 0, 50, 40], atol=1e-4)
    assert targets[0]["labels"].tolist() == [7, 8]  # input untouched


def test_augment_batch_validates_masks_and_boxes():
    image, mask, _ = _square_image()
    augmenter = ImageAugmenter()
    with pytest.raises(ValueError, match="masks must have shape"):
        augmenter.augment_batch(image, masks=mask[:, :10])
    with pytest.raises(ValueError, match="not inside"):
        augmenter.augment_batch(image, boxes=[{"boxes": [[5, 5, 100, 10]]}])
    with pytest.raises(ValueError, match=r"shape \(k, 4\)"):
        augmenter.augment_batch(image, boxes=[{"boxes": [[5, 5, 10]]}])
    with pytest.raises(ValueError, match="tensor of shape"):
        augmenter.augment_batch(np.zeros((1, 3, 8, 8)))


# -- parameters ------------------------------------------------------------------


@pytest.mark.parametrize("params, message", [
    (dict(horizontal_flip=1.5), "horizontal_flip"),
    (dict(crop_scale=(0.9, 0.1)), "crop_scale"),
    (dict(crop_scale=0.5), "crop_scale"),
    (dict(hue=0.7), "hue"),
    (dict(padding_mode="wrap"), "padding_mode"),
    (dict(n_copies=0), "n_copies"),
])
def test_bad_parameters_raise_clear_errors(rgb_images, params, message):
    with pytest.raises(ValueError, match=message):
        ImageAugmenter(**params).fit(rgb_images)


def test_presets():
    assert ImageAugmenter.preset("light").crop_scale == (0.8, 1.0)
    strong = ImageAugmenter.preset("strong", horizontal_flip=0, random_state=1)
    assert strong.horizontal_flip == 0 and strong.mixup_alpha > 0 and strong.random_state == 1
    with pytest.raises(ValueError, match="Unknown preset"):
        ImageAugmenter.preset("extreme")


def test_pickle_and_clone(rgb_images):
    augmenter = ImageAugmenter(**ALL_STEPS, random_state=0).fit(rgb_images)
    restored = pickle.loads(pickle.dumps(augmenter))
    assert np.array_equal(restored.transform(rgb_images), augmenter.transform(rgb_images))


# -- the three uses ----------------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    return load_digit_images(return_X_y=True)


def test_augment_in_training_is_seeded_and_changes_each_epoch(digits):
    X, y = digits[0][:200], digits[1][:200]
    calls = []

    class Recording(ImageAugmenter):
        def _augment_training_batch(self, X, y, **kwargs):
            out = super()._augment_training_batch(X, y, **kwargs)
            calls.append(out[0].clone())
            return out

    params = dict(filters=(8, 16), epochs=2, batch_size=200, device="cpu", random_state=0)
    augmenter = Recording(horizontal_flip=0, degrees=15, random_state=123)
    first = CNNClassifier(**params, augment=augmenter).fit(X, y)
    epoch_1, epoch_2 = calls[0], calls[1]
    assert not torch.allclose(epoch_1, epoch_2)  # new draws every epoch
    assert len(calls) == 2  # one training batch per epoch
    calls.clear()
    second = CNNClassifier(**params, augment=augmenter).fit(X, y)
    assert torch.equal(calls[0], epoch_1)  # the estimator's seed replays them
    np.testing.assert_array_equal(first.predict_proba(X), second.predict_proba(X))
    calls.clear()
    second.predict(X)
    assert not calls  # never at prediction
    # With early stopping, the validation batches are not augmented either.
    CNNClassifier(**dict(params, batch_size=180), augment=augmenter, early_stopping=True,
                  validation_fraction=0.1).fit(X, y)
    assert [len(batch) for batch in calls] == [180, 180]
    # A fitted model with its augmenter pickles; the augmenter's parameters
    # are searchable as augment__<name>.
    plain = CNNClassifier(**params, augment=ImageAugmenter(degrees=15)).fit(X, y)
    restored = pickle.loads(pickle.dumps(plain))
    np.testing.assert_array_equal(restored.predict(X), plain.predict(X))
    assert plain.get_params()["augment__degrees"] == 15


@pytest.mark.parametrize("Estimator", [CNNClassifier, CNNRegressor])
def test_mixup_and_cutmix_in_training(digits, Estimator):
    X, y = digits[0][:300], digits[1][:300]
    augmenter = ImageAugmenter(horizontal_flip=0, mixup_alpha=0.4, cutmix_alpha=1.0)
    model = Estimator(filters=(8, 16), epochs=3, batch_size=50, device="cpu", random_state=0,
                      augment=augmenter).fit(X, y)
    assert np.isfinite(model.history_["train_loss"]).all()
    if Estimator is CNNClassifier:
        assert set(model.predict(X)) <= set(range(10))


def test_mixed_targets_are_probabilities():
    X = torch.rand(6, 3, 8, 8)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    augmenter = ImageAugmenter(horizontal_flip=0, mixup_alpha=1.0)
    weights = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 0.0])
    mixed_X, mixed_y, mixed_weights = augmenter._augment_training_batch(
        X, y, rng=np.random.default_rng(0), n_classes=3, sample_weight=weights)
    assert mixed_y.shape == (6, 3)
    np.testing.assert_allclose(mixed_y.sum(dim=1).numpy(), 1.0, atol=1e-6)
    assert not torch.equal(mixed_X, X)
    # A weight follows its image into the pair: class 0's images carry weight 1
    # here, so each mixed weight is the share of class 0 in the mixed target.
    np.testing.assert_allclose(mixed_weights.numpy(), mixed_y[:, 0].numpy(), atol=1e-6)


def test_fit_resample_in_imblearn_pipeline_augments_training_folds_only(digits):
    imblearn_pipeline = pytest.importorskip("imblearn.pipeline")
    X, y = digits[0][:300], digits[1][:300]
    augmenter = ImageAugmenter(horizontal_flip=0, degrees=10, n_copies=2, random_state=0)
    X_more, y_more = augmenter.fit_resample(X, y)
    assert X_more.shape == (900, 8, 8) and np.array_equal(X_more[:300], X)
    assert np.array_equal(y_more, np.tile(y, 3))

    seen = []

    class RecordingLogistic(LogisticRegression):
        def fit(self, X, y):
            seen.append(("fit", len(X)))
            return super().fit(X, y)

        def predict(self, X):
            seen.append(("predict", len(X)))
            return super().predict(X)

    # Flat rows in, flat rows out: the augmenter reads them as 8x8 images.
    pipeline = imblearn_pipeline.make_pipeline(
        AugmentationSampler(augmenter=clone(augmenter).set_params(image_shape=(8, 8))),
        RecordingLogistic(max_iter=300))
    scores = cross_val_score(pipeline, X.reshape(300, -1), y, cv=3)
    assert scores.mean() > 0.8
    assert [n for kind, n in seen if kind == "fit"] == [600] * 3  # 200 originals x 3
    assert [n for kind, n in seen if kind == "predict"] == [100] * 3  # test folds untouched


def test_fit_resample_moves_masks_and_boxes_with_the_copies():
    """Copies are flipped: their masks flip, their boxes mirror and a box frame is renumbered."""
    import pandas as pd

    from skvision._validation import targets_to_frame

    image, mask, targets = _square_image()
    images = torch.cat([image, image.flip(-1)]).permute(0, 2, 3, 1).numpy()[..., 0]
    masks = np.concatenate([mask.numpy(), mask.flip(-1).numpy()]).astype(np.uint8)
    mirrored = [{"boxes": np.array([[34, 8, 50, 20]], np.float32), "labels": np.array(["sq"])}]
    targets = targets + mirrored
    flip = ImageAugmenter(horizontal_flip=1.0, n_copies=2, random_state=0)
    X_more, masks_more = flip.fit_resample(images, masks)
    assert masks_more.dtype == np.uint8 and masks_more.shape == (6, 40, 60)
    np.testing.assert_array_equal(masks_more, masks[[0, 1, 1, 0, 1, 0]])
    np.testing.assert_array_equal(X_more, images[[0, 1, 1, 0, 1, 0]])

    _, boxes_more = flip.fit_resample(images, targets)
    assert [target["labels"].tolist() for target in boxes_more] == [["sq"]] * 6
    for target, source in zip(boxes_more, [0, 1, 1, 0, 1, 0]):
        np.testing.assert_allclose(target["boxes"], targets[source]["boxes"])

    frame = targets_to_frame(targets).assign(difficult=[True, False])
    _, frame_more = flip.fit_resample(images, frame)
    # Every column but the boxes' follows the image: copies of image 0 are "difficult".
    expected = targets_to_frame(boxes_more).assign(difficult=[True, False] * 3)
    pd.testing.assert_frame_equal(frame_more, expected, check_dtype=False)


def test_tta_predict(digits):
    X, y = digits
    clf = CNNClassifier(filters=(8, 16), epochs=5, device="cpu", random_state=0).fit(
        X[:800], y[:800])
    augmenter = ImageAugmenter(horizontal_flip=0, degrees=5, random_state=0)
    labels = tta_predict(clf, X[800:1000], augmenter, n_augmentations=4)
    proba = tta_predict(clf, X[800:1000], augmenter, n_augmentations=4, return_proba=True)
    np.testing.assert_allclose(proba.sum(axis=1), 1, atol=1e-5)
    assert np.array_equal(labels, clf.classes_[proba.argmax(axis=1)])
    assert (labels == y[800:1000]).mean() >= (clf.predict(X[800:1000]) == y[800:1000]).mean() - 0.03
    with pytest.raises(TypeError, match="ImageAugmenter"):
        tta_predict(clf, X[:5], make_pipeline())


def test_sampler_rejects_other_augmenters(digits):
    with pytest.raises(TypeError, match="'augmenter' parameter of AugmentationSampler must be None or an ImageAugmenter"):
        AugmentationSampler(augmenter="flip").fit_resample(*digits)


def test_color_map_matches_torchvision_sequence():
    """The one-pass color map equals torchvision's brightness -> contrast -> saturation."""
    from torchvision.transforms.v2 import functional as TF

    images = 0.3 + 0.4 * torch.rand(5, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    augmenter = ImageAugmenter(horizontal_flip=0, brightness=0.2, contrast=0.2, saturation=0.3)
    out, params = augmenter.augment_batch(images, random_state=np.random.default_rng(7),
                                          return_params=True)
    # The factors drawn per image; the saturation map is s I + (1 - s) gray.
    bright, contrast = params.brightness, params.contrast
    saturation = 1 - params.color_matrix[:, 0, 1] / 0.587
    assert ((bright >= 0.8) & (bright <= 1.2)).all() and np.ptp(bright) > 0.01
    assert ((saturation > 0.7 - 1e-9) & (saturation < 1.3 + 1e-9)).all()
    for i, image in enumerate(images):
        expected = TF.adjust_brightness(image, float(bright[i]))
        expected = TF.adjust_contrast(expected, float(contrast[i]))
        expected = TF.adjust_saturation(expected, float(saturation[i]))
        torch.testing.assert_close(out[i], expected, atol=2e-4, rtol=0)


# -- drawing apart from applying: one random stream per operation, replay ----------


def _drawn(params):
    """The fields of AugmentationParams that hold drawn values."""
    return {name: getattr(params, name) for name in (
        "matrix", "brightness", "contrast", "color_matrix", "blur_sigma", "noise_seed",
        "erasing")}


def _flip_signs(params):
    # matrix = diag(flips) @ (crop-free affine with positive determinant), so the
    # sign of the 2x2 determinant is the horizontal flip (no vertical flip here).
    return np.sign(np.linalg.det(params.matrix[:, :2, :2]))


def test_each_operation_draws_from_its_own_stream():
    images = torch.rand(32, 3, 24, 32, generator=torch.Generator().manual_seed(0))
    steps = dict(horizontal_flip=0.5, degrees=10, brightness=0.3, contrast=0.3, blur_sigma=1.5,
                 noise_std=0.05, erasing=0.5)

    def params_of(**changes):
        augmenter = ImageAugmenter(**{**steps, **changes})
        return _drawn(augmenter.augment_batch(images, random_state=11, return_params=True)[1])

    base = params_of()
    # Streams differ between operations: equal strengths, different factors.
    assert not np.allclose(base["brightness"], base["contrast"])
    with_hue = params_of(hue=0.1)
    assert with_hue["color_matrix"] is not None and base["color_matrix"] is None
    for name in ("matrix", "brightness", "contrast", "blur_sigma", "noise_seed", "erasing"):
        np.testing.assert_array_equal(with_hue[name], base[name], err_msg=name)
    # A stronger rotation changes the matrices, not the flips nor any other draw.
    rotated = ImageAugmenter(**{**steps, "degrees": 40}).augment_batch(
        images, random_state=11, return_params=True)[1]
    original = ImageAugmenter(**steps).augment_batch(images, random_state=11,
                                                     return_params=True)[1]
    assert not np.allclose(rotated.matrix, original.matrix)
    flips = _flip_signs(original)
    assert 0 < (flips < 0).sum() < len(flips)
    np.testing.assert_array_equal(_flip_signs(rotated), flips)
    for name in ("brightness", "contrast", "blur_sigma", "noise_seed", "erasing"):
        np.testing.assert_array_equal(_drawn(rotated)[name], base[name], err_msg=name)
    assert (base["erasing"][:, 2] > base["erasing"][:, 0]).any()  # some images erased


def test_color_steps_leave_the_noise_and_erasing_pixels_unchanged():
    """On a black image, color jitter keeps zeros: the noise and the erased
    rectangles of the same seed must come out identical with it on or off."""
    black = torch.zeros(16, 3, 20, 20)
    base = dict(horizontal_flip=0, noise_std=0.1, erasing=0.7)
    plain = ImageAugmenter(**base).augment_batch(black, random_state=5)
    assert (plain == 0).any() and (plain != 0).any()
    for color in (dict(brightness=0.5), dict(contrast=0.4, saturation=0.4),
                  dict(hue=0.2, grayscale=0.5)):
        jittered = ImageAugmenter(**base, **color).augment_batch(black, random_state=5)
        assert torch.equal(jittered, plain), color


def test_same_seed_twice_gives_identical_output():
    image, mask, boxes = _square_image()
    batch, masks = image.repeat(6, 3, 1, 1), mask.repeat(6, 1, 1)
    augmenter = ImageAugmenter(**ALL_STEPS)
    first = augmenter.augment_batch(batch, masks=masks, boxes=boxes * 6, random_state=9)
    second = augmenter.augment_batch(batch, masks=masks, boxes=boxes * 6, random_state=9)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    for a, b in zip(first[2], second[2]):
        assert torch.equal(a["boxes"], b["boxes"])
    other = augmenter.augment_batch(batch, random_state=10)
    assert not torch.equal(other, first[0])


def test_replay_gives_the_same_output_bit_for_bit(rgb_images):
    x = torch.from_numpy(rgb_images).permute(0, 3, 1, 2)
    augmenter = ImageAugmenter(**ALL_STEPS, random_state=0)
    out, params = augmenter.augment_batch(x, random_state=0, return_params=True)
    assert params.n_samples == 16 and params.image_size == (24, 32)
    assert torch.equal(augmenter.augment_batch(x, params=params), out)
    # random_state is ignored on replay; params survive pickling.
    restored = pickle.loads(pickle.dumps(params))
    assert torch.equal(augmenter.augment_batch(x, params=restored, random_state=123), out)
    # The arrays are read-only, so a replay cannot be altered by accident.
    with pytest.raises(ValueError, match="read-only"):
        params.matrix[0, 0, 0] = 2.0
    # Without params, the draws are the seed's own: the same as the first call.
    assert torch.equal(augmenter.augment_batch(x, random_state=0), out)


def test_replay_on_masks_and_boxes_separately_equals_the_joint_call():
    image, mask, boxes = _square_image()
    batch, masks, targets = image.repeat(8, 1, 1, 1), mask.repeat(8, 1, 1), boxes * 8
    augmenter = ImageAugmenter(horizontal_flip=0.5, crop_scale=(0.6, 1.0), degrees=30,
                               brightness=0.3, noise_std=0.05)
    out, out_masks, out_boxes, params = augmenter.augment_batch(
        batch, masks=masks, boxes=targets, random_state=3, return_params=True)
    images_only = augmenter.augment_batch(batch, params=params)
    _, masks_only = augmenter.augment_batch(batch, masks=masks, params=params)
    _, boxes_only = augmenter.augment_batch(batch, boxes=targets, params=params)
    assert torch.equal(images_only, out)
    assert torch.equal(masks_only, out_masks)
    assert len(boxes_only) == len(out_boxes) == 8
    for separate, joint in zip(boxes_only, out_boxes):
        assert torch.equal(separate["boxes"], joint["boxes"])
        assert list(separate["labels"]) == list(joint["labels"])
    # The images differ from one another: eight different draws were replayed.
    assert len({out_masks[i].numpy().tobytes() for i in range(8)}) > 1


def test_replay_moves_other_images_the_same_way(rgb_images):
    x = torch.from_numpy(rgb_images).permute(0, 3, 1, 2)
    other = torch.rand(x.shape, generator=torch.Generator().manual_seed(1))
    flips = ImageAugmenter(horizontal_flip=0.5)
    out, params = flips.augment_batch(x, random_state=2, return_params=True)
    flipped = params.matrix[:, 0, 0] < 0
    assert params.flips_only and 0 < flipped.sum() < len(flipped)
    replayed = flips.augment_batch(other, params=params)
    for i in range(len(x)):
        assert torch.equal(out[i], x[i].flip(-1) if flipped[i] else x[i])
        assert torch.equal(replayed[i], other[i].flip(-1) if flipped[i] else other[i])


def test_replay_on_a_batch_of_another_shape_raises():
    x = torch.rand(4, 3, 16, 20)
    augmenter = ImageAugmenter(degrees=10)
    _, params = augmenter.augment_batch(x, random_state=0, return_params=True)
    message = r"drawn for 4 images of size \(height, width\) \(16, 20\); this batch has 3 images"
    with pytest.raises(ValueError, match=message):
        augmenter.augment_batch(x[:3], params=params)
    with pytest.raises(ValueError, match=r"\(16, 20\); this batch has 4 images of size \(16, 16\)"):
        augmenter.augment_batch(x[..., :16], params=params)
    with pytest.raises(TypeError, match="AugmentationParams"):
        augmenter.augment_batch(x, params={"matrix": None})


def test_training_batch_draws_one_seed_and_mixes_from_its_own_stream():
    X = torch.rand(8, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.arange(8) % 3
    results = []
    for extra in ({}, dict(hue=0.2, brightness=0.3)):
        augmenter = ImageAugmenter(horizontal_flip=0, mixup_alpha=0.5, cutmix_alpha=1.0, **extra)
        rng = np.random.default_rng(4)
        results.append(augmenter._augment_training_batch(X, y, rng=rng, n_classes=3))
        # The training loop's generator advanced by exactly one draw (the batch seed).
        expected = np.random.default_rng(4)
        expected.integers(2**31 - 1)
        assert rng.bit_generator.state == expected.bit_generator.state
    # The color steps changed the pixels, not the mixing of the targets.
    assert not torch.allclose(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1], rtol=0, atol=0)
    assert not torch.equal(results[0][1], torch.nn.functional.one_hot(y, 3).float())
