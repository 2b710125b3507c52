"""Any timm architecture as a backbone, through timm's generic feature API.

One architecture per family (CNNs and transformers of several kinds, built
with random weights: no weights are reachable offline): features equal to
timm's own pre-logits features, fine-tuning, and a save/load round trip.
"""

import sys

import numpy as np
import pytest
import timm
import torch
from _networks import SmallNet

from skvision import FineTunedClassifier, PretrainedFeatureExtractor, load, save
from skvision.datasets import make_shapes
from skvision.nn import backbones, build_backbone

# (timm name, image side): small sides keep the suite fast; patch-14
# transformers need a multiple of 14.
FAMILIES = [
    ("test_efficientnet.r160_in1k", 32),  # EfficientNet / MobileNet
    ("test_resnet.r160_in1k", 32),  # ResNet
    ("test_convnext.r160_in1k", 32),  # ConvNeXt
    ("regnetx_002", 32),  # RegNet
    ("test_vit.r160_in1k", 32),  # ViT (class token)
    ("test_maxvit", 64),  # MaxViT (fixed input size, built at 64 px)
    ("vit_small_patch14_reg4_dinov2", 28),  # DINOv2 with registers
]


@pytest.fixture(scope="module")
def shapes():
    X, y = make_shapes(24, image_size=24, random_state=0)
    return X, y


def _reference(name, side, backbone):
    """timm's own model with the backbone's weights, for the same input size."""
    if not timm.get_pretrained_cfg(name).fixed_input_size:
        model = timm.create_model(name, pretrained=False)
    elif name.startswith("test_maxvit"):  # no dynamic size: built for the input size
        model = timm.create_model(name, pretrained=False, img_size=side)
    else:
        model = timm.create_model(name, pretrained=False, dynamic_img_size=True)
    model.reset_classifier(0)
    model.load_state_dict(backbone.network.state_dict())
    return model.eval()


@pytest.mark.parametrize("name, side", FAMILIES, ids=[name for name, _ in FAMILIES])
def test_timm_families_give_timm_features_fine_tune_and_round_trip(name, side, shapes, tmp_path):
    X, y = shapes
    extractor = PretrainedFeatureExtractor(backbone=name, weights=False, image_size=side).fit(X)
    backbone = extractor.backbone_
    reference = _reference(name, side, backbone)
    images = torch.from_numpy(X[:4]).permute(0, 3, 1, 2).float() / 255.0
    inputs = backbone.preprocessing(images, (side, side))
    with torch.no_grad():
        expected = reference.forward_head(reference.forward_features(inputs), pre_logits=True)
        torch.testing.assert_close(backbone.pool(inputs), expected, rtol=0, atol=1e-5)
    # The estimator end to end: the same preprocessing and features.
    np.testing.assert_allclose(extractor.transform(X[:4]), expected.numpy(), rtol=0, atol=1e-5)
    assert extractor.n_features_out_ == expected.shape[1]

    clf = FineTunedClassifier(backbone=name, weights=False, image_size=side, epochs=1,
                              batch_size=8, precision="32", random_state=0).fit(X, y)
    assert np.isfinite(clf.history_["train_loss"].iloc[-1])
    path = tmp_path / "model.skv"
    save(clf, path)
    np.testing.assert_array_equal(load(path).predict_proba(X[:6]), clf.predict_proba(X[:6]))


def test_levels_cut_and_freeze_generically():
    """layer= cuts at timm's stages; freezing owns every parameter exactly once."""
    full = build_backbone("test_vit.r160_in1k", weights=False, image_size=(32, 32))
    n_blocks = len(full.network.blocks)
    assert len(full.levels) == n_blocks + 1  # each block, then the final (normalized) tokens
    assert full.levels[-1]["final"] and full.levels[-1]["module"] is None
    groups = full.level_parameters()
    assert sum(len(group) for group in groups) == len(list(full.network.parameters()))
    assert any(p is full.network.cls_token for p in groups[0])  # prefix tokens: first level
    assert any(p is full.network.norm.weight for p in groups[-1])  # last norm: final level
    cut = build_backbone("test_vit.r160_in1k", weights=False, image_size=(32, 32), layer=1)
    assert len(cut.network.blocks) == 2  # pruned after the level kept
    assert cut(torch.zeros(2, 3, 32, 32)).shape == (2, full.out_channels, 2, 2)
    assert cut.n_features("auto") == cut.out_channels  # average pooling of a cut level


def test_swin_final_features_are_channels_last_and_come_back_as_maps():
    backbone = build_backbone("swin_tiny_patch4_window7_224", weights=False, image_size=(64, 64))
    assert backbone.network.output_fmt == "NHWC"
    with torch.no_grad():
        maps = backbone.eval()(torch.zeros(1, 3, 64, 64))
    assert maps.shape == (1, 768, 2, 2)


def test_weights_for_another_input_size_are_resampled_by_timm(tmp_path):
    """A fixed-size transformer built at 64 px loads weights trained at 160 px."""
    assert hasattr(sys.modules["timm.models.maxxvit"], backbones.TIMM_CHECKPOINT_FILTER)
    assert hasattr(sys.modules["timm.models.vision_transformer"], backbones.TIMM_CHECKPOINT_FILTER)
    native = timm.create_model("test_maxvit", pretrained=False)
    path = tmp_path / "maxvit.pth"
    torch.save(native.state_dict(), path)
    backbone = build_backbone("test_maxvit", weights=path, image_size=(64, 64))
    assert backbone(torch.zeros(1, 3, 64, 64)).shape[-1] == 2
    resized = backbone.network.state_dict()
    stem = next(key for key in resized if key.startswith("stem."))
    torch.testing.assert_close(resized[stem], native.state_dict()[stem])


def test_torchvision_models_go_through_the_same_levels():
    backbone = build_backbone("mobilenet_v3_small", weights=False, image_size=(64, 64))
    assert isinstance(backbone.network, backbones.StagesNetwork)
    assert backbone.levels[-1]["final"] and backbone.out_channels == 576
    with torch.no_grad():
        assert backbone.pool(torch.zeros(2, 3, 64, 64)).shape == (2, 576)
    with pytest.raises(ValueError, match="does not know the stages of torchvision's 'vit_b_16'"):
        build_backbone("vit_b_16", weights=False)


def _user_classifier(**params):
    # Trained from scratch: the whole network at the head's learning rate.
    return FineTunedClassifier(**{
        "backbone": SmallNet, "backbone__width": 8, "freeze": "none", "backbone_lr": 1.0,
        "image_size": 8, "epochs": 8, "lr": 0.01, "precision": "32", "random_state": 0,
        **params})


@pytest.fixture(scope="module")
def small_shapes():
    from skvision.datasets import load_digit_images

    X, y = load_digit_images(return_X_y=True)
    return X[:240], y[:240]


def test_user_network_class_clones_cross_validates_and_grid_searches(small_shapes):
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV, cross_val_score

    X, y = small_shapes
    clf = _user_classifier()
    assert clone(clf).get_params()["backbone__width"] == 8
    assert clf.set_params(backbone__width=4).backbone__width == 4
    scores = cross_val_score(_user_classifier(), X, y, cv=3)
    assert scores.mean() >= 0.6  # ten classes: chance is 0.1
    search = GridSearchCV(_user_classifier(epochs=2), {"backbone__width": [2, 6]}, cv=2).fit(X, y)
    assert len(search.cv_results_["params"]) == 2
    width = search.best_params_["backbone__width"]
    assert search.best_estimator_.module_.backbone.network.stages[0].body[0].out_channels == width


def test_user_network_instance_is_copied_and_needs_the_class_form_to_save(small_shapes, tmp_path):
    X, y = small_shapes
    network = SmallNet(width=4)
    before = {key: value.clone() for key, value in network.state_dict().items()}
    clf = FineTunedClassifier(backbone=network, freeze="none", image_size=8, epochs=1,
                              precision="32", random_state=0).fit(X, y)
    assert all(torch.equal(before[key], value) for key, value in network.state_dict().items())
    with pytest.raises(TypeError, match="module instance.*Pass its class"):
        save(clf, tmp_path / "instance.skv")
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_user_network_saves_by_class_and_loads_only_when_trusted(small_shapes, tmp_path):
    X, y = small_shapes
    clf = _user_classifier(epochs=1).fit(X, y)
    path = tmp_path / "user.skv"
    save(clf, path)
    class_path = f"{SmallNet.__module__}.SmallNet"
    with pytest.raises(ValueError, match=f"names the type '{class_path}'.*trusted="):
        load(path)
    loaded = load(path, trusted=[class_path])
    assert loaded.backbone is SmallNet and loaded.backbone__width == 8
    np.testing.assert_array_equal(loaded.predict_proba(X[:10]), clf.predict_proba(X[:10]))
    with pytest.raises(TypeError, match="list of class import paths"):
        load(path, trusted=class_path)


def test_user_network_vectors_take_auto_pooling_only():
    class Pooled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(3, 5)

        def forward(self, x):
            return self.linear(x.mean(dim=(2, 3)))

    backbone = build_backbone(Pooled(), image_size=(16, 16))
    assert backbone.n_features("auto") == 5
    with torch.no_grad():
        assert backbone.pool(torch.zeros(2, 3, 16, 16)).shape == (2, 5)
        with pytest.raises(ValueError, match="returns feature vectors"):
            backbone.pool(torch.zeros(2, 3, 16, 16), "max")


def test_unet_encoders_from_timm_with_and_without_a_stride_2_level():
    """As segmentation-models-pytorch: ConvNeXt starts at stride 4, so no skip at 2."""
    from skvision.segmentation import UNetSegmenter

    X, masks = make_shapes(12, image_size=32, task="segmentation", random_state=0)
    seg = UNetSegmenter(encoder="test_convnext.r160_in1k", encoder_weights=False, epochs=1,
                        precision="32", random_state=0).fit(X, masks)
    assert seg.module_.encoder.channels[0] == 0  # the empty stride-2 map
    assert seg.predict(X[:2]).shape == (2, 32, 32)
    with pytest.raises(ValueError, match="no feature level at stride 8; its levels reach "
                                         r"strides \[16\]"):
        UNetSegmenter(encoder="test_vit.r160_in1k", encoder_weights=False, epochs=1).fit(
            X, masks)


def test_a_hub_configuration_passes_only_the_architecture_arguments():
    """What a config.json or a model file holds reaches timm as constructor arguments only."""
    from skvision.nn._hub import checked_hub_config

    name = "hf-hub:org/repo"
    config = {"id": name, "architecture": "test_resnet", "revision": "main",
              "model_args": {"drop_rate": 0.1, "checkpoint_path": "/etc/passwd",
                             "pretrained_cfg_overlay": {"file": "/tmp/x"}},
              "pretrained_cfg": {"input_size": [3, 160, 160], "mean": [0.5] * 3}}
    with pytest.warns(UserWarning, match="checkpoint_path.*pretrained_cfg_overlay"):
        checked = checked_hub_config(config, name, warn=True)
    assert checked["model_args"] == {"drop_rate": 0.1}
    assert config["model_args"]["checkpoint_path"] == "/etc/passwd"  # not changed in place
    network, preprocessing = backbones._create_network(name, hub_config=config)
    assert network.drop_rate == 0.1 and preprocessing.input_size == (160, 160)
    with pytest.raises(ValueError, match="no timm model"):
        checked_hub_config({**config, "architecture": "os.system"}, name)
    with pytest.raises(ValueError, match="not the one of backbone"):
        checked_hub_config(config, "hf-hub:org/other")
    with pytest.raises(ValueError, match="plain values"):
        checked_hub_config({**config, "model_args": {"act_layer": torch.nn.ReLU}}, name)
