"""skvision.save / skvision.load: round trips, atomic writes, refusing unsafe files."""

import json
import os
import pickle
import zipfile

import numpy as np
import pytest
import torch

import skvision
from skvision import (
    AugmentationSampler,
    BoostedTreesClassifier,
    BoostedTreesRegressor,
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
    load,
    save,
)
from skvision.datasets import load_digit_images, make_shapes
from skvision.preprocessing import ChannelStandardizer, Grayscale, ImageFlattener, Resize


@pytest.fixture(scope="module")
def digits():
    X, y = load_digit_images(return_X_y=True)
    return X[:120], y[:120]


def _digits_case(Estimator, **params):
    def run(digits):
        X, y = digits
        model = Estimator(**params).fit(X, y)
        method = "predict_proba" if hasattr(model, "predict_proba") else "predict"
        return model, lambda fitted: getattr(fitted, method)(X[:20])
    return run


def _transformer_case(Estimator, **params):
    def run(digits):
        X, _ = digits
        model = Estimator(**params).fit(X)
        return model, lambda fitted: fitted.transform(X[:20])
    return run


def _segmenter(digits):
    X, masks = make_shapes(n_samples=16, image_size=16, task="segmentation", random_state=0)
    model = UNetSegmenter(depth=1, base_filters=4, epochs=1, device="cpu",
                          random_state=0).fit(X, masks)
    return model, lambda fitted: fitted.predict_proba(X[:4])


def _detector(digits):
    X, targets = make_shapes(n_samples=12, image_size=48, task="detection", random_state=0)
    model = FasterRCNNDetector(epochs=1, device="cpu", random_state=0).fit(X, targets)
    return model, lambda fitted: np.concatenate(
        [found["scores"] for found in fitted.predict(X[:3])] + [np.zeros(1, np.float32)])


def _style(digits):
    rng = np.random.default_rng(0)
    style = rng.integers(0, 256, (1, 24, 24, 3), dtype=np.uint8)
    model = StyleTransfer(image_size=16, n_iter=3, device="cpu").fit(style)
    content = rng.integers(0, 256, (1, 20, 20, 3), dtype=np.uint8)
    return model, lambda fitted: fitted.transform(content)


def _sampler(digits):
    X, y = digits
    model = AugmentationSampler(augmenter=ImageAugmenter(degrees=10, random_state=0)).fit(X, y)
    return model, lambda fitted: fitted.fit_resample(X[:10], y[:10])[0]


def _boosting(Estimator):
    def run(digits):
        X, y = digits
        flat = X.reshape(len(X), -1)
        model = Estimator(n_estimators=10, early_stopping=True, random_state=0).fit(flat, y)
        method = "predict_proba" if hasattr(model, "predict_proba") else "predict"
        return model, lambda fitted: getattr(fitted, method)(flat[:20])
    return run


NEURAL = dict(epochs=1, device="cpu", random_state=0)
CASES = {
    "CNNClassifier": _digits_case(CNNClassifier, filters=(8,), augment=ImageAugmenter(
        horizontal_flip=0, degrees=5), **NEURAL),
    "CNNRegressor": _digits_case(CNNRegressor, filters=(8,), **NEURAL),
    "VisionTransformerClassifier": _digits_case(VisionTransformerClassifier, embed_dim=16,
                                                depth=1, n_heads=2, **NEURAL),
    "FineTunedClassifier": _digits_case(FineTunedClassifier, backbone="test_efficientnet",
                                        weights=False, image_size=16, **NEURAL),
    "FineTunedRegressor": _digits_case(FineTunedRegressor, backbone="test_efficientnet",
                                       weights=False, image_size=16, **NEURAL),
    "VisionTransformerRegressor": _digits_case(VisionTransformerRegressor, embed_dim=16,
                                               depth=1, n_heads=2, **NEURAL),
    "UNetSegmenter": _segmenter,
    "FasterRCNNDetector": _detector,
    "PretrainedFeatureExtractor": _transformer_case(PretrainedFeatureExtractor, image_size=32,
                                                    device="cpu"),
    "StyleTransfer": _style,
    "ImageAugmenter": _transformer_case(ImageAugmenter, degrees=10, random_state=0),
    "AugmentationSampler": _sampler,
    "BoostedTreesClassifier": _boosting(BoostedTreesClassifier),
    "BoostedTreesRegressor": _boosting(BoostedTreesRegressor),
    "Resize": _transformer_case(Resize, image_size=4),
    "Grayscale": _transformer_case(Grayscale),
    "ChannelStandardizer": _transformer_case(ChannelStandardizer),
    "ImageFlattener": _transformer_case(ImageFlattener),
}


def test_every_public_estimator_has_a_case():
    public = {name for name in skvision.__all__ if name[0].isupper()} - {"ModelFileError"}
    assert public <= set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_round_trip_gives_identical_outputs(name, digits, tmp_path):
    model, output = CASES[name](digits)
    expected = output(model)
    path = tmp_path / "model.skv"
    save(model, path)
    restored = load(path)
    assert type(restored) is type(model)
    assert restored.get_params(deep=False).keys() == model.get_params(deep=False).keys()
    actual = output(restored)
    if isinstance(expected, torch.Tensor):
        expected, actual = expected.numpy(), actual.numpy()
    np.testing.assert_array_equal(actual, expected)


def test_loaded_neural_model_keeps_training(digits, tmp_path):
    X, y = digits
    clf = CNNClassifier(filters=(8,), epochs=2, device="cpu", random_state=0).fit(X, y)
    save(clf, tmp_path / "clf.skv")
    restored = load(tmp_path / "clf.skv")
    pd_history = restored.history_
    assert len(pd_history) == 2 and len(restored.net_.history) == 2
    restored.partial_fit(X, y)  # optimizer state came back too
    clf.partial_fit(X, y)
    np.testing.assert_allclose(restored.predict_proba(X), clf.predict_proba(X), atol=1e-6)


GPU_DEVICES = {"cuda": "cuda", "cuda:0": "cuda:0", "torch.device": torch.device("cuda")}


@pytest.mark.parametrize("recorded", sorted(GPU_DEVICES))
def test_gpu_fitted_model_loads_on_cpu(recorded, digits, tmp_path):
    X, y = digits
    clf = CNNClassifier(filters=(8,), epochs=1, device="cpu", random_state=0).fit(X, y)
    extractor = PretrainedFeatureExtractor(backbone="test_efficientnet", weights=False,
                                           image_size=16, device="cpu").fit(X)
    expected = clf.predict_proba(X), extractor.transform(X[:10])
    for model in (clf, extractor):
        # As if fitted on a GPU: the weights are saved from the CPU anyway.
        model.device = model.device_ = GPU_DEVICES[recorded]
    save([clf, extractor], tmp_path / "gpu.skv")
    restored, restored_extractor = load(tmp_path / "gpu.skv")
    if not torch.cuda.is_available():
        assert restored.device_ == restored_extractor.device_ == "cpu"
    np.testing.assert_array_equal(restored.predict_proba(X), expected[0])
    np.testing.assert_array_equal(restored_extractor.transform(X[:10]), expected[1])
    # Unpickling follows the same rule (the extractor compared device == "cuda").
    extractor.device_ = "cpu"
    unpickled = pickle.loads(pickle.dumps(extractor))
    if not torch.cuda.is_available():
        assert unpickled.device_ == "cpu"
    np.testing.assert_array_equal(unpickled.transform(X[:10]), expected[1])


@pytest.mark.parametrize("device, here, expected", [
    ("cuda", False, "cpu"), ("cuda:0", False, "cpu"), (torch.device("cuda"), False, "cpu"),
    (torch.device("cuda:1"), False, "cpu"), ("mps", False, "cpu"), ("cpu", False, "cpu"),
    ("cuda:3", True, "cuda"), ("cuda:0", True, "cuda:0"), (torch.device("cuda"), True, "cuda"),
])
def test_loadable_device(device, here, expected, monkeypatch):
    from skvision._torch import loadable_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: here)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1 if here else 0)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert loadable_device(device) == expected


@pytest.fixture
def weights_file(tmp_path):
    """Random weights of timm's tiny test_efficientnet, saved as a user's weights file."""
    import timm

    network = timm.create_model("test_efficientnet.r160_in1k", pretrained=False)
    path = tmp_path / "test_efficientnet.pth"
    torch.save(network.state_dict(), path)
    return path


_FRESH_PROCESS = """
import socket, sys
import numpy as np

def no_network(*args, **kwargs):
    raise AssertionError("loading touched the network")

socket.socket.connect = socket.create_connection = no_network
import torch
import skvision

assert not torch.cuda.is_available()
model = skvision.load(sys.argv[1])
assert model.device_ == "cpu", model.device_
X = np.load(sys.argv[2])
np.save(sys.argv[3], model.predict_proba(X))
"""


def test_a_model_file_loads_anywhere(digits, weights_file, tmp_path):
    """Without its weights file, in a fresh CPU-only process without network."""
    import subprocess
    import sys

    X, y = digits
    model = FineTunedClassifier(backbone="test_efficientnet", weights=weights_file,
                                image_size=16, **NEURAL).fit(X[:60], y[:60])
    model.device = model.device_ = "cuda:0"  # as if fitted on a GPU
    save(model, tmp_path / "model.skv")
    weights_file.unlink()
    np.save(tmp_path / "X.npy", X[:10])
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.path.dirname(os.path.dirname(skvision.__file__))}
    subprocess.run(
        [sys.executable, "-c", _FRESH_PROCESS, str(tmp_path / "model.skv"),
         str(tmp_path / "X.npy"), str(tmp_path / "proba.npy")],
        check=True, env=env, timeout=300,
    )
    model.device_ = "cpu"
    np.testing.assert_allclose(np.load(tmp_path / "proba.npy"), model.predict_proba(X[:10]),
                               rtol=1e-5, atol=1e-6)


def _segmenter_with_encoder(weights):
    X, masks = make_shapes(n_samples=8, image_size=32, task="segmentation", random_state=0)
    model = UNetSegmenter(encoder="test_efficientnet", encoder_weights=weights, epochs=1,
                          device="cpu", random_state=0).fit(X, masks)
    return model, lambda fitted: fitted.predict_proba(X[:2])


def _detector_with_body(weights):
    X, targets = make_shapes(n_samples=6, image_size=48, task="detection", random_state=0)
    model = FasterRCNNDetector(backbone="test_efficientnet", backbone_weights=weights,
                               epochs=1, device="cpu", random_state=0).fit(X, targets)
    return model, lambda fitted: np.concatenate(
        [found["scores"] for found in fitted.predict(X[:2])] + [np.zeros(1, np.float32)])


@pytest.mark.parametrize("case", [_segmenter_with_encoder, _detector_with_body])
def test_pretrained_parts_load_without_their_weights_file(case, weights_file, tmp_path):
    model, output = case(weights_file)
    expected = output(model)
    save(model, tmp_path / "model.skv")
    weights_file.unlink()  # loading must not read it again
    np.testing.assert_array_equal(output(load(tmp_path / "model.skv")), expected)


def test_failed_write_leaves_the_old_file_intact(digits, tmp_path, monkeypatch):
    X, y = digits
    path = tmp_path / "model.skv"
    first = CNNClassifier(filters=(8,), epochs=1, device="cpu", random_state=0).fit(X, y)
    save(first, path)
    before = path.read_bytes()
    second = CNNClassifier(filters=(16,), epochs=1, device="cpu", random_state=1).fit(X, y)
    original = zipfile.ZipFile.writestr
    calls = []

    def failing(self, name, data, *args, **kwargs):
        calls.append(name)
        if len(calls) == 2:  # after part of the data
            raise OSError("disk full (simulated)")
        return original(self, name, data, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "writestr", failing)
    with pytest.raises(OSError, match="disk full"):
        save(second, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.skv"]  # no temporary file left behind


def _rewrite(path, edit):
    """Copy a model file with its metadata changed by ``edit``."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    document = json.loads(members["metadata.json"])
    edit(document)
    members["metadata.json"] = json.dumps(document).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def test_untrusted_types_truncation_and_versions(digits, tmp_path):
    X, y = digits
    clf = CNNClassifier(filters=(8,), epochs=1, device="cpu", random_state=0).fit(X, y)
    path = tmp_path / "model.skv"
    save(clf, path)
    data = path.read_bytes()

    untrusted = tmp_path / "untrusted.skv"
    untrusted.write_bytes(data)
    _rewrite(untrusted, lambda doc: doc["estimator"].update(__estimator__="os.system"))
    with pytest.raises(ValueError, match="'os.system'.*refusing"):
        load(untrusted)

    truncated = tmp_path / "truncated.skv"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable skvision model"):
        load(truncated)

    newer = tmp_path / "newer.skv"
    newer.write_bytes(data)
    _rewrite(newer, lambda doc: doc.update(format_version=99, skvision="9.0.0"))
    with pytest.raises(ValueError, match="Upgrade skvision"):
        load(newer)

    older = tmp_path / "older.skv"
    older.write_bytes(data)
    _rewrite(older, lambda doc: doc.update(skvision="-1.0.0"))
    with pytest.warns(UserWarning, match="written by skvision -1.0.0"):
        load(older)

    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("metadata.json", json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match="not a skvision model"):
        load(other)


def test_loading_runs_no_pickle(digits, tmp_path, monkeypatch):
    import pickle

    X, y = digits
    clf = CNNClassifier(filters=(8,), epochs=1, device="cpu", random_state=0).fit(X, y)
    save(clf, tmp_path / "model.skv")

    def forbidden(*args, **kwargs):
        raise AssertionError("load() must not unpickle")

    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    restored = load(tmp_path / "model.skv")
    assert restored.predict(X[:3]).shape == (3,)


def test_callable_augment_is_saved_as_none(digits, tmp_path):
    X, y = digits
    clf = CNNClassifier(filters=(8,), epochs=1, device="cpu", random_state=0,
                        augment=lambda batch: batch).fit(X, y)
    with pytest.warns(UserWarning, match="saved as None"):
        save(clf, tmp_path / "model.skv")
    assert load(tmp_path / "model.skv").augment is None


def test_a_file_written_by_an_earlier_version_still_loads():
    # Written by skvision at commit f37b2c8 (before the persistence hook and the
    # sample weights); its predictions then are stored beside it.
    data = os.path.join(os.path.dirname(__file__), "data")
    with open(os.path.join(data, "cnn_classifier_f37b2c8.json")) as file:
        expected = json.load(file)
    model = load(os.path.join(data, "cnn_classifier_f37b2c8.skv"))
    X, _ = load_digit_images(return_X_y=True)
    np.testing.assert_allclose(model.predict_proba(X[:10]), expected["predict_proba"],
                               rtol=1e-5, atol=1e-6)
    assert model.class_weight is None  # a parameter added since: its default
    model.partial_fit(X[:50], np.arange(50) % 10)  # and it keeps training


def test_loadable_classes_come_from_the_estimators_themselves():
    from skvision._persistence._trust import _trusted_classes

    trusted = set(_trusted_classes().values())
    public = {getattr(skvision, name) for name in skvision.__all__
              if name[0].isupper() and name != "ModelFileError"}
    assert public <= trusted
    assert all(not cls.__name__.startswith("_") for cls in trusted)
    assert {cls.__module__.split(".")[0] for cls in trusted} == {"skvision", "xgboost"}
