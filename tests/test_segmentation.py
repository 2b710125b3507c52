"""UNetSegmenter, the segmentation metrics and plot_masks."""

import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score

from skvision.augmentation import ImageAugmenter
from skvision.datasets import make_shapes
from skvision.metrics import dice_score, dice_scorer, mean_iou, mean_iou_scorer, pixel_accuracy
from skvision.nn import UNet
from skvision.segmentation import UNetSegmenter

FAST = dict(depth=2, base_filters=8, epochs=3, device="cpu", random_state=0)


@pytest.fixture(scope="module")
def shapes():
    return make_shapes(n_samples=300, image_size=64, task="segmentation", random_state=0)


@pytest.fixture(scope="module")
def shapes_32():
    """The accuracy tests' images: 32 px, a quarter of the pixels of ``shapes``'s.

    Measured with the defaults: held-out mean IoU 0.895 (every class >= 0.858)
    at 32 px, as at 64 px, for a quarter of the training time.
    """
    return make_shapes(n_samples=300, image_size=32, task="segmentation", random_state=0)


@pytest.fixture(scope="module")
def small(shapes):
    X, masks = shapes
    return X[:48, ::2, ::2], masks[:48, ::2, ::2]  # 32 x 32


@pytest.mark.slow
def test_held_out_mean_iou_on_shapes(shapes_32):
    """The acceptance bar: held-out mean IoU >= 0.85 with the defaults."""
    X, masks = shapes_32
    seg = UNetSegmenter(device="cpu", random_state=0).fit(X[:240], masks[:240])
    assert seg.score(X[240:], masks[240:]) >= 0.85
    per_class = mean_iou(masks[240:], seg.predict(X[240:]), average=None)
    assert per_class.min() >= 0.7  # every shape, not just the background


def test_predict_shapes_labels_and_proba(small):
    X, masks = small
    labels = np.array([10, 20, 30, 40])[masks]  # any label values
    seg = UNetSegmenter(**FAST).fit(X, labels)
    assert list(seg.classes_) == [10, 20, 30, 40]
    predicted = seg.predict(X[:5])
    assert predicted.shape == (5, 32, 32) and set(np.unique(predicted)) <= {10, 20, 30, 40}
    proba = seg.predict_proba(X[:5])
    assert proba.shape == (5, 4, 32, 32)
    np.testing.assert_allclose(proba.sum(axis=1), 1, atol=1e-5)
    np.testing.assert_array_equal(seg.classes_[proba.argmax(axis=1)], predicted)
    assert {"train_loss", "train_acc"} <= set(seg.history_.columns)


def test_any_image_size_and_flat_masks():
    X, masks = make_shapes(n_samples=16, image_size=24, task="segmentation", random_state=1)
    X, masks = X[:, :21, :19], masks[:, :21, :19]  # not a multiple of 2**depth
    seg = UNetSegmenter(**dict(FAST, depth=3)).fit(X, masks.reshape(16, -1))
    assert seg.predict(X).shape == (16, 21, 19)
    assert UNet(3, 2, depth=3).eval()(torch.zeros(1, 3, 5, 7)).shape == (1, 2, 5, 7)


def test_ignore_index_and_class_weight(small):
    X, masks = small
    masks = masks.copy()
    masks[:, :4] = 255  # an unlabelled band
    seg = UNetSegmenter(**FAST, ignore_index=255, class_weight="balanced").fit(X, masks)
    assert 255 not in seg.classes_ and len(seg.classes_) == 4
    assert seg.class_weight_.shape == (4,) and seg.class_weight_[0] < seg.class_weight_[1]
    assert 255 not in np.unique(seg.predict(X))
    score = seg.score(X, masks)
    assert score == pytest.approx(mean_iou(masks, seg.predict(X), ignore_index=255))


@pytest.mark.parametrize("loss", ["ce", "dice", "ce+dice"])
def test_losses_train(small, loss):
    X, masks = small
    seg = UNetSegmenter(**dict(FAST, epochs=4), loss=loss).fit(X, masks)
    losses = seg.history_["train_loss"].to_numpy()
    assert np.isfinite(losses).all() and losses[-1] < losses[0]


def test_augment_moves_masks_with_images(small):
    X, masks = small
    seen = []

    class Recording(ImageAugmenter):
        def _augment_training_batch(self, X, y, **kwargs):
            out = super()._augment_training_batch(X, y, **kwargs)
            seen.append(out)
            return out

    augmenter = Recording(horizontal_flip=1.0, degrees=0)
    UNetSegmenter(**dict(FAST, epochs=1, batch_size=48), augment=augmenter).fit(X, masks)
    images, flipped_masks, _ = seen[0]
    assert flipped_masks.shape == (48, 32, 32) and flipped_masks.dtype == torch.int64
    # Each training image is a flipped original and its mask is flipped alike:
    # find it among the originals through the mask.
    originals = torch.from_numpy(masks).flip(-1)
    for mask in flipped_masks[:5]:
        assert any(torch.equal(mask, original) for original in originals)
    # Rotations bring in pixels from outside: their mask value is the ignored -100.
    rotated = ImageAugmenter(horizontal_flip=0, degrees=45)._augment_training_batch(
        torch.rand(2, 3, 16, 16), torch.zeros(2, 16, 16, dtype=torch.int64),
        rng=np.random.default_rng(0), target_kind="masks")[1]
    assert set(torch.unique(rotated).tolist()) == {-100, 0}


def test_bad_masks_raise_clear_errors(small):
    X, masks = small
    seg = UNetSegmenter(**FAST)
    with pytest.raises(ValueError, match="masks must have shape"):
        seg.fit(X, masks[:, :10])
    with pytest.raises(ValueError, match="integer class"):
        seg.fit(X, masks + 0.5)
    with pytest.raises(ValueError, match="at least 2 classes"):
        seg.fit(X, np.zeros_like(masks))
    with pytest.raises(ValueError, match="requires y"):
        seg.fit(X, None)
    with pytest.raises(ValueError, match="'loss' parameter of UNetSegmenter must be one of"):
        UNetSegmenter(**FAST, loss="focal").fit(X, masks)
    fitted = UNetSegmenter(**dict(FAST, epochs=1)).fit(X, masks)
    with pytest.raises(ValueError, match="not seen in the first fit"):
        fitted.partial_fit(X, np.where(masks == 1, 7, masks))
    with pytest.raises(ValueError, match="channel"):
        fitted.predict(X[..., :1])
    # Fully convolutional: other image sizes are fine at predict time.
    assert fitted.predict(X[:2, :20, :24]).shape == (2, 20, 24)
    with pytest.raises(NotFittedError):
        UNetSegmenter().predict(X)


def test_sklearn_api_on_real_masks(small):
    """What sklearn's checks test, on masks (its checks only have 1-D y)."""
    X, masks = small
    X_before, masks_before = X.copy(), masks.copy()
    seg = UNetSegmenter(**FAST)
    assert seg.fit(X, masks) is seg
    assert np.array_equal(X, X_before) and np.array_equal(masks, masks_before)
    assert seg.n_features_in_ == 32 * 32 * 3 and seg.image_shape_ == (32, 32, 3)
    twin = clone(seg).fit(X, masks)  # same seed, same model
    np.testing.assert_array_equal(twin.predict_proba(X), seg.predict_proba(X))
    restored = pickle.loads(pickle.dumps(seg))
    np.testing.assert_array_equal(restored.predict(X), seg.predict(X))
    assert clone(seg).get_params() == seg.get_params()
    float64 = UNetSegmenter(**FAST).fit(X.astype(np.float64) / 255, masks)
    assert float64.predict(X.astype(np.float64) / 255).shape == masks.shape
    with pytest.raises(ValueError, match="NaN"):
        UNetSegmenter(**FAST).fit(np.full(X.shape, np.nan), masks)


def test_cross_val_score_with_named_scorer_and_grid_search(small):
    X, masks = small
    scores = cross_val_score(UNetSegmenter(**FAST), X, masks, cv=3, scoring=mean_iou_scorer)
    assert scores.shape == (3,) and ((0 <= scores) & (scores <= 1)).all()
    # score() is the mean IoU, so the default scoring gives the same numbers.
    np.testing.assert_allclose(cross_val_score(UNetSegmenter(**FAST), X, masks, cv=3), scores)
    dice = cross_val_score(UNetSegmenter(**FAST), X, masks, cv=3, scoring=dice_scorer)
    assert ((0 <= dice) & (dice <= 1)).all()
    # At lr=1e-7 three epochs leave the weights where they started: the
    # search must find the trained rate better, fold by fold.
    search = GridSearchCV(UNetSegmenter(**FAST), {"lr": [1e-7, 0.01]}, cv=2).fit(X, masks)
    assert search.best_params_["lr"] == 0.01
    untrained, trained = search.cv_results_["mean_test_score"]
    assert trained > untrained + 0.1, search.cv_results_["mean_test_score"]
    assert search.predict(X[:2]).shape == (2, 32, 32)


# -- metrics ---------------------------------------------------------------------


def _naive_scores(y_true, y_pred, labels):
    iou, dice, recall = [], [], []
    for label in labels:
        true, pred = y_true == label, y_pred == label
        inter, union = np.logical_and(true, pred).sum(), np.logical_or(true, pred).sum()
        iou.append(inter / union if union else np.nan)
        dice.append(2 * inter / (true.sum() + pred.sum()) if true.sum() + pred.sum() else np.nan)
        recall.append(inter / true.sum() if true.sum() else np.nan)
    return np.array(iou), np.array(dice), np.array(recall)


@pytest.mark.parametrize("seed", range(5))
def test_metrics_equal_naive_implementation(seed):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 4, (3, 9, 11))
    y_pred = np.where(rng.random(y_true.shape) < 0.6, y_true, rng.integers(0, 5, y_true.shape))
    labels = np.union1d(y_true, y_pred)
    iou, dice, recall = _naive_scores(y_true, y_pred, labels)
    np.testing.assert_allclose(mean_iou(y_true, y_pred, average=None), iou)
    np.testing.assert_allclose(mean_iou(y_true, y_pred), np.nanmean(iou))
    np.testing.assert_allclose(dice_score(y_true, y_pred, average=None), dice)
    np.testing.assert_allclose(dice_score(y_true, y_pred), np.nanmean(dice))
    np.testing.assert_allclose(pixel_accuracy(y_true, y_pred, average=None), recall)
    assert pixel_accuracy(y_true, y_pred) == pytest.approx((y_true == y_pred).mean())
    # ignore_index drops those pixels from both masks.
    keep = y_true != 2
    np.testing.assert_allclose(mean_iou(y_true, y_pred, ignore_index=2),
                               np.nanmean(_naive_scores(y_true[keep], y_pred[keep],
                                                        np.union1d(y_true[keep],
                                                                   y_pred[keep]))[0]))


def _sklearn_per_class(y_true, y_pred, labels):
    """scikit-learn's per-class IoU, Dice and recall of flattened masks, NaN where undefined.

    f1_score and recall_score say NaN themselves (``zero_division=np.nan``);
    jaccard_score has no NaN option: a class is undefined for it where
    zero_division=0 and =1 give different answers.
    """
    from sklearn.metrics import f1_score, jaccard_score, recall_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # labels absent from both masks
        iou = jaccard_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
        undefined = iou != jaccard_score(y_true, y_pred, labels=labels, average=None,
                                         zero_division=1)
    return {"iou": np.where(undefined, np.nan, iou),
            "dice": f1_score(y_true, y_pred, labels=labels, average=None, zero_division=np.nan),
            "recall": recall_score(y_true, y_pred, labels=labels, average=None,
                                   zero_division=np.nan)}


def _random_label_cases(n_cases, seed):
    """Tiny masks (3 to 24 pixels, classes 0..3) with labels drawn from 0..5 in any order.

    So some labels are absent from both masks and some classes of the masks
    are not labels; every fourth case ignores class 3.
    """
    rng = np.random.default_rng(seed)
    for case in range(n_cases):
        shape = (int(rng.integers(1, 3)), int(rng.integers(1, 4)), int(rng.integers(3, 5)))
        y_true = rng.integers(0, 4, shape)
        y_pred = np.where(rng.random(shape) < 0.5, y_true, rng.integers(0, 4, shape))
        labels = rng.permutation(6)[:int(rng.integers(1, 7))]
        yield y_true, y_pred, labels, 3 if case % 4 == 0 else None


def _assert_same_scores(mine, expected, what):
    mine, expected = np.atleast_1d(mine), np.atleast_1d(expected)
    np.testing.assert_array_equal(np.isnan(mine), np.isnan(expected), err_msg=what)
    difference = float(np.abs(np.nan_to_num(mine) - np.nan_to_num(expected)).max())
    assert difference <= 1e-12, (what, mine, expected)
    return difference


def test_metrics_with_labels_in_any_order_equal_sklearn():
    """labels shuffled, a subset, or naming absent classes: scikit-learn's answers.

    scikit-learn is slow per call, so the per-class scores of all cases come
    from one call per metric: each case's classes are shifted by 10 x its
    number, and a class's counts involve only its own pixels. The means are
    scikit-learn's macro average with ``zero_division=np.nan`` (the mean of
    the defined per-class scores), called directly on the first cases as a
    check of that reading; the overall accuracy is ``accuracy_score``'s.
    """
    from sklearn.metrics import accuracy_score, f1_score, jaccard_score

    cases = list(_random_label_cases(300, seed=0))
    shifted_true, shifted_pred, shifted_labels = [], [], []
    for case, (y_true, y_pred, labels, ignore_index) in enumerate(cases):
        keep = y_true != ignore_index
        shifted_true.append(y_true[keep] + 10 * case)
        shifted_pred.append(y_pred[keep] + 10 * case)
        shifted_labels.append(labels + 10 * case)
    expected = _sklearn_per_class(np.concatenate(shifted_true), np.concatenate(shifted_pred),
                                  np.concatenate(shifted_labels))
    bounds = np.cumsum([0] + [len(labels) for labels in shifted_labels])
    largest = 0.0
    for case, (y_true, y_pred, labels, ignore_index) in enumerate(cases):
        what = f"case {case}: labels {labels.tolist()}, ignore_index {ignore_index}"
        mine = {
            "iou": mean_iou(y_true, y_pred, labels=labels, ignore_index=ignore_index,
                            average=None),
            "dice": dice_score(y_true, y_pred, labels=labels, ignore_index=ignore_index,
                               average=None),
            "recall": pixel_accuracy(y_true, y_pred, labels=labels, ignore_index=ignore_index,
                                     average=None),
        }
        for name in mine:
            per_class = expected[name][bounds[case]:bounds[case + 1]]
            largest = max(largest, _assert_same_scores(mine[name], per_class,
                                                       f"{what}, {name}"))
            if name != "recall":  # pixel_accuracy's mean is the overall accuracy
                mean = np.nanmean(per_class) if not np.isnan(per_class).all() else np.nan
                scorer = mean_iou if name == "iou" else dice_score
                largest = max(largest, _assert_same_scores(
                    scorer(y_true, y_pred, labels=labels, ignore_index=ignore_index), mean,
                    f"{what}, mean {name}"))
        keep = y_true != ignore_index
        accuracy = (y_true[keep] == y_pred[keep]).mean()
        if case < 20:  # scikit-learn itself: its macro averages and accuracy
            defined = labels[~np.isnan(mine["iou"])]
            accuracy = accuracy_score(y_true[keep], y_pred[keep])
            if len(defined):
                assert mean_iou(y_true, y_pred, labels=labels,
                                ignore_index=ignore_index) == pytest.approx(
                    jaccard_score(y_true[keep], y_pred[keep], labels=defined, average="macro"),
                    abs=1e-12)
            assert dice_score(y_true, y_pred, labels=labels,
                              ignore_index=ignore_index) == pytest.approx(
                f1_score(y_true[keep], y_pred[keep], labels=labels, average="macro",
                         zero_division=np.nan), abs=1e-12, nan_ok=True)
        largest = max(largest, _assert_same_scores(
            pixel_accuracy(y_true, y_pred, labels=labels, ignore_index=ignore_index),
            accuracy, f"{what}, accuracy"))
    print(f"{len(cases)} cases, largest difference from scikit-learn {largest:.1e}")


def test_metrics_with_unsorted_labels():
    """The cases of the issue: unsorted labels used to be looked up as if sorted."""
    y_true, y_pred = np.array([[0, 0, 1, 1]]), np.array([[0, 1, 1, 1]])
    assert mean_iou(y_true, y_pred, labels=[1, 0]) == pytest.approx((1 / 2 + 2 / 3) / 2)
    np.testing.assert_allclose(mean_iou(y_true, y_pred, labels=[1, 0], average=None),
                               [2 / 3, 1 / 2])
    np.testing.assert_allclose(dice_score(y_true, y_pred, labels=[1, 0], average=None),
                               [4 / 5, 2 / 3])
    np.testing.assert_allclose(pixel_accuracy(y_true, y_pred, labels=[1, 0], average=None),
                               [1, 1 / 2])
    # A class in labels but in neither mask: NaN per class, left out of the mean.
    np.testing.assert_allclose(mean_iou(y_true, y_pred, labels=[0, 2, 1], average=None),
                               [1 / 2, np.nan, 2 / 3])
    assert mean_iou(y_true, y_pred, labels=[0, 2, 1]) == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert np.isnan(mean_iou(y_true, y_pred, labels=[2]))
    # The overall accuracy counts every pixel, whatever the labels.
    assert pixel_accuracy(y_true, y_pred, labels=[0]) == 0.75
    with pytest.raises(ValueError, match="repeat"):
        mean_iou(y_true, y_pred, labels=[0, 1, 0])


def test_metrics_errors():
    with pytest.raises(ValueError, match="same shape"):
        mean_iou(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="average"):
        dice_score(np.zeros(3), np.zeros(3), average="macro")
    assert mean_iou(np.zeros(4), np.zeros(4)) == 1.0


def test_plot_masks():
    import matplotlib

    matplotlib.use("Agg")
    from skvision.plotting import plot_masks

    X, masks = make_shapes(n_samples=3, image_size=16, task="segmentation", random_state=0)
    fig = plot_masks(X, masks, masks, class_names={1: "circle", 2: "square", 3: "triangle"})
    assert len(fig.axes) == 6
    legend = [text.get_text() for text in fig.legends[0].get_texts()]
    assert set(legend) <= {"circle", "square", "triangle"} and legend
    with pytest.raises(ValueError, match="to match the images"):
        plot_masks(X, masks[:, :8])
    # Colour photos are drawn in gray under the masks unless asked otherwise,
    # and the input is left as it was.
    before = X.copy()
    drawn = plot_masks(X, masks).axes[0].images[0].get_array()
    assert drawn.shape == (16, 16)
    assert plot_masks(X, masks, gray_images=False).axes[0].images[0].get_array().shape == (16, 16, 3)
    np.testing.assert_array_equal(X, before)


def test_pretrained_encoder(small):
    X, masks = small
    seg = UNetSegmenter(**dict(FAST, depth=3), encoder="test_efficientnet",
                        encoder_weights=False).fit(X, masks)
    assert seg.predict(X[:3]).shape == (3, 32, 32)
    assert seg.module_.encoder is not None and len(seg.module_.encoder.channels) == 3
    gray = UNetSegmenter(**FAST, encoder="test_efficientnet", encoder_weights=False)
    assert gray.fit(X[..., 0], masks).predict(X[:2, ..., 0]).shape == (2, 32, 32)
    with pytest.raises(ValueError, match="stride"):
        UNetSegmenter(**dict(FAST, depth=8), encoder="test_efficientnet",
                      encoder_weights=False).fit(X, masks)


@pytest.mark.slow
def test_pretrained_encoder_beats_scratch_on_few_images(shapes_32):
    """Transfer learning for segmentation: 120 images of 32 px, 10 epochs.

    Measured: the shipped ImageNet EfficientNet-Lite0 encoder 0.676 held-out
    mean IoU, the same budget from scratch 0.344 (0.686 and 0.242 on 64-px
    images, for four times the work).
    """
    X, masks = shapes_32
    params = dict(depth=3, epochs=10, device="cpu", random_state=0)
    pretrained = UNetSegmenter(encoder="efficientnet_lite0", **params).fit(X[:120], masks[:120])
    scratch = UNetSegmenter(**params).fit(X[:120], masks[:120])
    pretrained_iou = pretrained.score(X[240:], masks[240:])
    assert pretrained_iou >= 0.6
    assert pretrained_iou > scratch.score(X[240:], masks[240:]) + 0.2
