"""The training core's promises: the precision a model trained in, the only
weight penalty, augmentation that moves targets, data placement under
accelerate and parameters checked before data.

Each test here failed on 4e4c92a, before the core was split by concern.
Those of what a fitted model keeps (nothing of its training data) failed on
3cc17f0, whose models kept early stopping's validation split: a view of the
whole training array, or the list of its files.
"""

import gc
import pickle
import types

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from skorch.callbacks import Callback, EpochScoring, GradientNormClipping
from torchvision.transforms import v2

import skvision
from skvision import (
    CNNClassifier,
    CNNRegressor,
    FasterRCNNDetector,
    FineTunedClassifier,
    FineTunedRegressor,
    ImageAugmenter,
    PretrainedFeatureExtractor,
    StyleTransfer,
    UNetSegmenter,
    VisionTransformerClassifier,
    VisionTransformerRegressor,
)
from skvision import _torch as torch_helpers
from skvision._batching import BatchIterator, ImageDataset, TrainingAugment
from skvision._data import ArrayImages, FileImages, ListImages
from skvision._params import InvalidParameterError
from skvision.datasets import load_digit_images, make_shapes

SMALL_CNN = dict(filters=(8,), epochs=1, batch_size=32, device="cpu", random_state=0)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digit_images(return_X_y=True)
    return X[:200], y[:200]


def _bf16_cpu(monkeypatch, native):
    monkeypatch.setattr(torch_helpers, "cpu_has_native_bf16", lambda: native)


@pytest.mark.parametrize("trained_native", [False, True])
def test_a_loaded_model_keeps_its_precision_unless_bf16_would_be_emulated(
        digits, tmp_path, monkeypatch, trained_native):
    # Trained where "auto" meant one precision, served where it means the other.
    X, y = digits
    _bf16_cpu(monkeypatch, trained_native)
    clf = CNNClassifier(**SMALL_CNN, precision="auto").fit(X, y)
    assert clf.precision_ == ("bf16" if trained_native else "32")
    expected = clf.predict_proba(X)
    skvision.save(clf, tmp_path / "model.skv")
    pickled = pickle.dumps(clf)

    _bf16_cpu(monkeypatch, not trained_native)
    for restore in (lambda: skvision.load(tmp_path / "model.skv"),
                    lambda: pickle.loads(pickled)):
        if trained_native:
            # bfloat16 would be emulated here: float32, said once (tests/test_devices.py
            # checks its predictions against the network's own float32 ones).
            with pytest.warns(UserWarning, match="float32 here"):
                assert restore().precision_ == "32"
        else:  # float32 stays float32 where bfloat16 is native
            loaded = restore()
            assert loaded.precision_ == "32"
            np.testing.assert_array_equal(loaded.predict_proba(X), expected)


def test_skvision_bf16_overrides_the_cpu_check(monkeypatch):
    monkeypatch.setenv("SKVISION_BF16", "0")
    assert torch_helpers.resolve_precision("auto", "cpu") == "32"
    monkeypatch.setenv("SKVISION_BF16", "1")
    assert torch_helpers.resolve_precision("auto", "cpu") == "bf16"
    # A GPU's "auto" stays float32 whatever the CPU is said to have.
    assert torch_helpers.resolve_precision("auto", "cuda") == "32"
    monkeypatch.setenv("SKVISION_BF16", "yes")
    with pytest.raises(ValueError, match="SKVISION_BF16 must be '0' or '1'"):
        torch_helpers.resolve_precision("auto", "cpu")


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_alpha_is_the_only_weight_penalty(digits, optimizer):
    X, y = digits
    clf = CNNClassifier(**SMALL_CNN, optimizer=optimizer, alpha=0.0).fit(X, y)
    assert [group["weight_decay"] for group in clf.net_.optimizer_.param_groups] == [0.0]
    # Discriminative learning rates: every group of a fine-tuned model too.
    tuned = FineTunedClassifier(weights=False, epochs=1, freeze="none", image_size=32,
                                alpha=0.0, device="cpu", random_state=0).fit(X[:16], y[:16])
    groups = tuned.net_.optimizer_.param_groups
    assert len(groups) == 2 and all(group["weight_decay"] == 0.0 for group in groups)


def test_alpha_zero_leaves_weights_untouched_without_gradient():
    # With a zero loss gradient, any decay would still shrink the weights.
    X = np.zeros((32, 8, 8), np.float32)
    y = np.tile([0, 1], 16)
    clf = CNNClassifier(filters=(4,), batch_norm=False, epochs=1, lr=0.1, lr_schedule=None,
                        alpha=0.0, device="cpu", random_state=0, precision="32")
    clf.fit(X, y)
    before = {name: tensor.clone() for name, tensor in clf.module_.state_dict().items()}
    # On all-zero images the first convolution's kernel gets a zero gradient.
    clf.partial_fit(X, y)
    first_conv = next(name for name, tensor in before.items() if tensor.dim() == 4)
    torch.testing.assert_close(clf.module_.state_dict()[first_conv], before[first_conv],
                               rtol=0, atol=0)


@pytest.mark.parametrize("make_estimator, task", [
    (lambda augment: UNetSegmenter(augment=augment, epochs=1), "segmentation"),
    (lambda augment: FasterRCNNDetector(augment=augment, epochs=1), "detection"),
])
def test_a_plain_callable_cannot_augment_masks_or_boxes(make_estimator, task):
    X, targets = make_shapes(n_samples=4, image_size=32, task=task, random_state=0)
    estimator = make_estimator(v2.RandomHorizontalFlip(p=1.0))
    with pytest.raises(InvalidParameterError, match="'augment' parameter .* an ImageAugmenter"):
        estimator.fit(X, targets)
    # An ImageAugmenter is accepted: it moves masks and boxes with the images.
    make_estimator(ImageAugmenter(horizontal_flip=0.5, random_state=0)).fit(X, targets)


@pytest.mark.parametrize("augment", [None, lambda X: X.flip(-1)])
def test_targets_reach_the_training_device_under_accelerate(augment):
    # "meta" stands in for an accelerator's device: the CPU tests see where
    # the targets were sent, as a GPU run would need them.
    dataset = ImageDataset(ArrayImages(np.zeros((8, 4, 4, 1), np.uint8)), torch.arange(8))
    iterator = BatchIterator(
        dataset, 4, shuffle=True, generator=torch.Generator().manual_seed(0),
        augment=None if augment is None else TrainingAugment(augment, None, "labels"),
        device="meta", move_targets=True)
    batches = list(iterator)
    assert len(batches) == 2
    for images, targets in batches:
        assert images.device.type == "meta" and targets.device.type == "meta"


def _record_precisions(monkeypatch, module, seen):
    """Record in ``seen`` the precision every predict_batches call of ``module`` is given."""
    original = module.predict_batches

    def recording(*args, precision="32", **kwargs):
        seen.append(precision)
        return original(*args, precision=precision, **kwargs)

    monkeypatch.setattr(module, "predict_batches", recording)


def test_every_inference_path_uses_the_trained_precision(digits, monkeypatch):
    X, y = digits
    # Parameters changed after fit do not change what the trained net computes.
    vit = VisionTransformerClassifier(epochs=1, embed_dim=16, depth=1, n_heads=2, patch_size=4,
                                      precision="32", device="cpu", random_state=0).fit(X, y)
    vit.set_params(precision="bf16")
    seen = []
    _record_precisions(monkeypatch, skvision.attention, seen)
    _record_precisions(monkeypatch, skvision._training, seen)
    vit.attention_maps(X[:2])
    vit.predict(X[:2])
    assert seen == ["32", "32"]

    X_boxes, boxes = make_shapes(n_samples=4, image_size=32, task="detection", random_state=0)
    detector = FasterRCNNDetector(epochs=1, precision="32", device="cpu",
                                  random_state=0).fit(X_boxes, boxes)
    detector.set_params(precision="bf16")
    seen = []
    _record_precisions(monkeypatch, skvision.detection, seen)
    detector.predict(X_boxes[:1])
    detector.predict_proposals(X_boxes[:1])
    assert seen == ["32", "32"]


def test_the_detector_checks_its_parameters_before_its_data():
    detector = FasterRCNNDetector(epochs=0)
    with pytest.raises(InvalidParameterError, match="'epochs' parameter of FasterRCNNDetector"):
        detector.fit("not images", "not boxes")
    assert not hasattr(detector, "target_format_")
    # It has no early stopping (its validation loss needs training mode), so
    # it has none of the three parameters that would do nothing.
    assert {"early_stopping", "validation_fraction", "n_iter_no_change"}.isdisjoint(
        FasterRCNNDetector().get_params())


@pytest.mark.parametrize("estimator", [
    PretrainedFeatureExtractor(backbone="no_such_net"),
    FineTunedClassifier(backbone="no_such_net"),
    UNetSegmenter(encoder="no_such_net"),
    FasterRCNNDetector(backbone="no_such_net"),
    StyleTransfer(backbone="no_such_net"),
], ids=lambda estimator: type(estimator).__name__)
def test_an_unknown_backbone_is_reported_before_the_data(estimator):
    with pytest.raises(InvalidParameterError, match="backbone name.*Got 'no_such_net'"):
        estimator.fit("not images", None)


def test_the_extractor_keeps_the_pooling_it_was_fitted_with():
    X = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
    extractor = PretrainedFeatureExtractor(weights=False, pooling="avg", image_size=32,
                                           device="cpu").fit(X)
    extractor.set_params(pooling="avgmax")
    features = extractor.transform(X)
    assert features.shape == (2, extractor.n_features_out_)
    assert len(extractor.get_feature_names_out()) == features.shape[1]


# -- callbacks passed through -------------------------------------------------


class _EpochProbe(Callback):
    """Counts the epochs it sees and records one column."""

    def initialize(self):
        self.epochs_ = []
        return self

    def on_epoch_end(self, net, **kwargs):
        self.epochs_.append(len(net.history))
        net.history.record("probe", float(len(net.history)))


class _GradientNormProbe(Callback):
    """The largest total gradient norm it sees after the callbacks before it."""

    def initialize(self):
        self.largest_ = 0.0
        return self

    def on_grad_computed(self, net, named_parameters, **kwargs):
        norm = torch.linalg.vector_norm(torch.stack([
            torch.linalg.vector_norm(parameter.grad) for _, parameter in named_parameters
            if parameter.grad is not None]))
        self.largest_ = max(self.largest_, float(norm))


def test_a_user_callback_sees_every_epoch_and_records_in_history(digits):
    X, y = digits
    probe = _EpochProbe()
    clf = CNNClassifier(**dict(SMALL_CNN, epochs=30, lr=0.05, lr_schedule=None),
                        early_stopping=True, n_iter_no_change=1, callbacks=[probe]).fit(X, y)
    assert len(clf.history_) < 30  # early stopping ended it
    # The callback ran at every epoch, the one that stopped training included.
    assert probe.epochs_ == list(range(1, len(clf.history_) + 1))
    assert clf.history_["probe"].tolist() == [float(epoch) for epoch in probe.epochs_]


def test_gradient_norm_clipping_bounds_the_gradient(digits):
    X, y = digits
    unclipped, clipped = _GradientNormProbe(), _GradientNormProbe()
    CNNClassifier(**SMALL_CNN, callbacks=[("probe", unclipped)]).fit(X, y)
    CNNClassifier(**SMALL_CNN, callbacks=[GradientNormClipping(gradient_clip_value=0.05),
                                          ("probe", clipped)]).fit(X, y)
    assert unclipped.largest_ > 0.5
    assert clipped.largest_ <= 0.05 * (1 + 1e-4)


@pytest.mark.parametrize("callbacks, message", [
    ([("progress", _EpochProbe())], "none of epoch_timer"),
    ([("early_stopping", _EpochProbe())], "none of epoch_timer"),
    ([_EpochProbe(), _EpochProbe()], "distinct names"),
    ([lambda net: None], "skorch callbacks"),
])
def test_callback_names_of_skvision_or_skorch_are_refused(digits, callbacks, message):
    X, y = digits
    with pytest.raises(InvalidParameterError, match=f"'callbacks' parameter.*{message}"):
        CNNClassifier(**SMALL_CNN, callbacks=callbacks).fit(X, y)


def test_callbacks_clone_grid_search_and_save(digits, tmp_path):
    X, y = digits
    clf = CNNClassifier(**SMALL_CNN, callbacks=[GradientNormClipping(gradient_clip_value=1.0)])
    copy = clone(clf)
    assert copy.callbacks[0] is not clf.callbacks[0]
    assert copy.callbacks[0].gradient_clip_value == 1.0
    search = GridSearchCV(clf, {"lr": [0.003, 0.01]}, cv=2).fit(X, y)
    assert search.best_estimator_.callbacks[0].gradient_clip_value == 1.0
    # skorch's own callbacks are saved by class and parameters, without pickle.
    skvision.save(search.best_estimator_, tmp_path / "model.skv")
    loaded = skvision.load(tmp_path / "model.skv")
    assert isinstance(loaded.callbacks[0], GradientNormClipping)
    assert loaded.callbacks[0].gradient_clip_value == 1.0
    np.testing.assert_array_equal(loaded.predict(X), search.best_estimator_.predict(X))


def _targets_of_weighted_batches(y):
    return y[0]


def test_an_epoch_scoring_callback_sees_predictions_and_records_a_column(digits):
    X, y = digits
    scoring = EpochScoring("accuracy", lower_is_better=False, name="valid_accuracy")
    clf = CNNClassifier(**dict(SMALL_CNN, epochs=3), early_stopping=True, n_iter_no_change=5,
                        callbacks=[scoring]).fit(X, y)
    # Scored on the validation split with the predicted classes: skvision's own
    # valid_acc, computed from the same batches, agrees.
    np.testing.assert_allclose(clf.history_["valid_accuracy"], clf.history_["valid_acc"])
    # Weighted batches carry (targets, weights): the documented target_extractor.
    weighted = CNNClassifier(**SMALL_CNN, early_stopping=True, callbacks=[EpochScoring(
        "accuracy", lower_is_better=False, target_extractor=_targets_of_weighted_batches)])
    weighted.fit(X, y, sample_weight=np.where(y == 0, 2.0, 1.0))
    assert 0 <= weighted.history_["accuracy"].iloc[0] <= 1
    # Multilabel targets: a scorer of indicator matrices (a score of logits would fail).
    X_tags, tags = make_shapes(n_samples=64, image_size=16, task="multilabel", random_state=0)
    tagger = CNNClassifier(**SMALL_CNN, early_stopping=True, validation_fraction=0.25,
                           callbacks=[EpochScoring("f1_samples", lower_is_better=False)])
    scores = tagger.fit(X_tags, tags).history_["f1_samples"]
    assert len(scores) == 1 and 0 <= scores.iloc[0] <= 1


def _reachable(root):
    """Every object ``root`` holds in memory, directly or through others (gc's view).

    Classes, modules and functions' globals are not followed: through them
    the whole interpreter is reachable, the test's own data included.
    """
    seen, stack = {}, [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (type, types.ModuleType)):
            continue
        seen[id(obj)] = obj
        if isinstance(obj, types.FunctionType):
            stack += [obj.__closure__ or (), obj.__defaults__ or (), obj.__kwdefaults__ or {}]
        else:
            stack += gc.get_referents(obj)
    return list(seen.values())


def _shares_memory(tensor, array):
    if tensor.device.type != "cpu" or tensor.layout != torch.strided:
        return False
    storage = tensor.untyped_storage()
    start, stop = array.ctypes.data, array.ctypes.data + array.nbytes
    return storage.data_ptr() < stop and start < storage.data_ptr() + storage.nbytes()


def _training_data_held(model, X, paths=()):
    """What ``model`` still holds of its training images ``X`` (or of their files ``paths``)."""
    held, paths = [], set(paths)
    for obj in _reachable(model):
        if isinstance(obj, (ArrayImages, FileImages, ListImages, BatchIterator,
                            torch.utils.data.Dataset)):
            held.append(type(obj).__name__)
        elif isinstance(obj, np.ndarray) and np.may_share_memory(obj, X):
            held.append(f"an array {obj.shape} in X's memory")
        elif isinstance(obj, torch.Tensor) and _shares_memory(obj, X):
            held.append(f"a tensor {tuple(obj.shape)} in X's memory")
        elif isinstance(obj, str) and obj in paths:
            held.append(f"the path {obj}")
    return held


def _random_images(n_images, size=8, seed=0):
    # uint8 (n, h, w, c): the layout the estimators train from without a copy,
    # so that whatever holds the training set holds X's own memory.
    return np.random.default_rng(seed).integers(0, 256, (n_images, size, size, 3), np.uint8)


_EARLY_STOPPING = dict(epochs=1, device="cpu", random_state=0, early_stopping=True,
                       validation_fraction=0.1)


def _labels_case(Estimator, **params):
    def case():
        X = _random_images(24)
        return Estimator(**params, **_EARLY_STOPPING), X, np.arange(24) % 2
    return case


def _values_case(Estimator, **params):
    def case():
        X = _random_images(24)
        return Estimator(**params, **_EARLY_STOPPING), X, np.linspace(0, 1, 24)
    return case


def _segmenter_case():
    X, masks = make_shapes(n_samples=12, image_size=16, task="segmentation", random_state=0)
    return UNetSegmenter(depth=1, base_filters=4, **_EARLY_STOPPING), X, masks


def _detector_case():
    # The detector has no early stopping; what it keeps is checked all the same.
    X, targets = make_shapes(n_samples=4, image_size=32, task="detection", random_state=0)
    return FasterRCNNDetector(epochs=1, device="cpu", random_state=0), X, targets


_TINY_VIT = dict(embed_dim=8, depth=1, n_heads=2)
_TINY_BACKBONE = dict(backbone="test_efficientnet", weights=False, image_size=8)
NEURAL_CASES = {
    "CNNClassifier": _labels_case(CNNClassifier, filters=(4,), callbacks=[EpochScoring(
        "accuracy")], augment=ImageAugmenter(degrees=5, mixup_alpha=0.2, random_state=0)),
    "CNNRegressor": _values_case(CNNRegressor, filters=(4,)),
    "VisionTransformerClassifier": _labels_case(VisionTransformerClassifier, **_TINY_VIT),
    "VisionTransformerRegressor": _values_case(VisionTransformerRegressor, **_TINY_VIT),
    "FineTunedClassifier": _labels_case(FineTunedClassifier, **_TINY_BACKBONE),
    "FineTunedRegressor": _values_case(FineTunedRegressor, **_TINY_BACKBONE),
    "UNetSegmenter": _segmenter_case,
    "FasterRCNNDetector": _detector_case,
}


def test_every_trained_estimator_has_a_case():
    trained = {name for name in skvision.__all__
               if hasattr(getattr(skvision, name), "_run_epochs")}
    assert trained == set(NEURAL_CASES)


@pytest.mark.parametrize("name", sorted(NEURAL_CASES))
def test_a_fitted_model_holds_nothing_of_its_training_data(name):
    model, X, y = NEURAL_CASES[name]()
    assert _training_data_held(model.fit(X, y), X) == []


def test_nor_after_partial_fit_or_a_warm_start():
    model, X, y = NEURAL_CASES["CNNClassifier"]()
    model.fit(X, y).partial_fit(X, y)
    assert _training_data_held(model, X) == []
    # A warm start draws a validation split again, and keeps none of it either.
    model.set_params(warm_start=True).fit(X, y)
    assert _training_data_held(model, X) == []


def test_a_model_fitted_on_files_holds_none_of_their_paths(tmp_path):
    X = _random_images(24)
    paths = [str(tmp_path / f"{index}.png") for index in range(len(X))]
    for image, path in zip(X, paths):
        Image.fromarray(image).save(path)
    clf = CNNClassifier(filters=(4,), **_EARLY_STOPPING).fit(paths, np.arange(24) % 2)
    assert _training_data_held(clf, X, paths) == []


def test_a_pickled_model_does_not_grow_with_its_training_set():
    # Early stopping's validation split, 4 images of 8x8 or 40, would add 7 kB to 30.
    sizes = []
    for n_images in (40, 400):
        clf = CNNClassifier(filters=(4,), batch_size=100, precision="32", **_EARLY_STOPPING)
        clf.fit(_random_images(n_images), np.arange(n_images) % 2)
        sizes.append(len(pickle.dumps(clf)))
    assert sizes[1] < 1.05 * sizes[0], sizes
