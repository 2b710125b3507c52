"""FasterRCNNDetector on synthetic shapes."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.model_selection import GridSearchCV, KFold

from skvision.datasets import make_shapes
from skvision.detection import FasterRCNNDetector

FAST = dict(epochs=1, batch_size=8, device="cpu", random_state=0)


@pytest.fixture(scope="module")
def small():
    return make_shapes(n_samples=24, image_size=64, task="detection", max_objects=2,
                       random_state=1)


@pytest.mark.slow
def test_held_out_map_on_shapes():
    """The acceptance bar: mAP@0.5 >= 0.7 on held-out images, from scratch.

    64-px images (0.85 measured, 50 s on one thread) rather than 128 px at
    15 epochs (380 s of the suite): the same bar for a ninth of the work.
    """
    X, targets = make_shapes(n_samples=200, image_size=64, task="detection", max_objects=3,
                             random_state=0)
    detector = FasterRCNNDetector(epochs=8, device="cpu", random_state=0).fit(
        X[:160], targets[:160])
    assert detector.score(X[160:], targets[160:]) >= 0.7
    history = detector.history_
    for column in ("loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"):
        assert history[column].iloc[-1] < history[column].iloc[0]


@pytest.mark.slow
def test_pretrained_backbone_learns_fast():
    """ImageNet features: the efficientnet_lite0 body reaches the bar in a few epochs.

    96-px images, 160 of them: mAP@0.5 0.94 measured after 5 epochs (on 64-px
    images the backbone's stride of 32 leaves it 2x2 maps, and 0.48).
    """
    X, targets = make_shapes(n_samples=200, image_size=96, task="detection", max_objects=3,
                             random_state=0)
    detector = FasterRCNNDetector(backbone="efficientnet_lite0", epochs=5, device="cpu",
                                  random_state=0).fit(X[:160], targets[:160])
    assert detector.score(X[160:], targets[160:]) >= 0.7


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
    grid = {"anchor_sizes": [(8, 16, 32), (16, 32, 64)]}
    search = GridSearchCV(FasterRCNNDetector(**FAST), grid, cv=2).fit(X, targets)
    # Each fold's score is that of a detector trained on the fold alone (the
    # same seed trains the same model), and the best is the higher mean.
    train, test = next(KFold(2).split(X))
    for index, anchor_sizes in enumerate(grid["anchor_sizes"]):
        fold = FasterRCNNDetector(**FAST, anchor_sizes=anchor_sizes).fit(
            X[train], [targets[i] for i in train])
        assert search.cv_results_["split0_test_score"][index] == pytest.approx(
            fold.score(X[test], [targets[i] for i in test]))
    means = search.cv_results_["mean_test_score"]
    assert search.best_params_ == search.cv_results_["params"][int(np.argmax(means))]
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


def test_dataframe_targets_round_trip(small):
    """A DataFrame in (one row per box), a DataFrame out, and the same model as from dicts."""
    import pandas as pd

    from skvision._validation import frame_to_targets, targets_to_frame

    X, targets = small
    frame = targets_to_frame(targets)
    assert list(frame.columns) == ["image_id", "x_min", "y_min", "x_max", "y_max", "label"]
    assert len(frame) == sum(len(target["boxes"]) for target in targets)
    # Drop the boxes of image 3: it becomes an image without objects.
    frame = frame[frame["image_id"] != 3].sample(frac=1.0, random_state=0)  # any row order
    back = frame_to_targets(frame, len(X))
    assert len(back[3]["boxes"]) == 0
    np.testing.assert_array_equal(back[5]["boxes"], targets[5]["boxes"])

    from_frame = FasterRCNNDetector(**FAST).fit(X, frame)
    from_dicts = FasterRCNNDetector(**FAST).fit(X, back)
    predicted = from_frame.predict(X[:4])
    assert isinstance(predicted, pd.DataFrame)
    assert list(predicted.columns) == ["image_id", "x_min", "y_min", "x_max", "y_max", "label",
                                       "score"]
    assert set(predicted["image_id"]) <= {0, 1, 2, 3}
    expected = targets_to_frame(from_dicts.predict(X[:4]))
    np.testing.assert_allclose(predicted[["x_min", "y_min", "x_max", "y_max", "score"]],
                               expected[["x_min", "y_min", "x_max", "y_max", "score"]])
    assert from_frame.score(X, frame) == pytest.approx(from_dicts.score(X, back))


def test_dataframe_target_errors(small):
    import pandas as pd

    X, _ = small
    good = pd.DataFrame({"image_id": [0], "x_min": [1.0], "y_min": [1.0], "x_max": [9.0],
                         "y_max": [9.0], "label": ["a"]})
    with pytest.raises(ValueError, match=r"columns .*\['label'\] missing"):
        FasterRCNNDetector(**FAST).fit(X, good.drop(columns="label"))
    with pytest.raises(ValueError, match="integer position of each box's image"):
        FasterRCNNDetector(**FAST).fit(X, good.assign(image_id=len(X)))
    with pytest.raises(ValueError, match="integer position"):
        FasterRCNNDetector(**FAST).fit(X, good.assign(image_id="photo.png"))
    with pytest.raises(ValueError, match="not inside"):
        FasterRCNNDetector(**FAST).fit(X, good.assign(x_max=65.0))


def test_images_of_different_sizes(small):
    """Lists of differently sized images train (padded) and predict at their own size."""
    X, targets = small
    images = [image if index % 2 else image[:48, :56] for index, image in enumerate(X)]
    cropped = []
    for index, target in enumerate(targets):
        boxes = np.asarray(target["boxes"])
        if index % 2 == 0:  # keep the boxes inside the crop
            inside = (boxes[:, 2] <= 56) & (boxes[:, 3] <= 48)
            target = {"boxes": boxes[inside], "labels": np.asarray(target["labels"])[inside]}
        cropped.append(target)
    detector = FasterRCNNDetector(**FAST).fit(images, cropped)
    assert detector.image_shape_ == (64, 64, 3)  # the padded size
    detections = detector.predict(images[:4])
    for image, found in zip(images[:4], detections):
        height, width = image.shape[:2]
        assert (found["boxes"][:, 2] <= width + 1e-3).all()
        assert (found["boxes"][:, 3] <= height + 1e-3).all()
    # A single small image predicts alone exactly as inside the list.
    alone = detector.predict(images[0][np.newaxis])[0]
    np.testing.assert_allclose(alone["boxes"], detections[0]["boxes"], atol=1e-4)
    # Boxes are checked against each image's own size, not the padded one.
    wrong = list(cropped)
    wrong[0] = {"boxes": [[40.0, 40.0, 60.0, 47.0]], "labels": ["circle"]}
    with pytest.raises(ValueError, match="not inside the 56x48 image"):
        FasterRCNNDetector(**FAST).fit(images, wrong)
    with pytest.raises(ValueError, match="channel"):
        detector.predict([image.mean(axis=-1) for image in images[:2]])


def test_min_size_resizes_and_maps_boxes_back(small):
    X, targets = small
    detector = FasterRCNNDetector(**FAST, min_size=96).fit(X, targets)
    transform = detector.module_.transform
    resized, _ = transform([torch.zeros(3, 64, 64)])
    assert resized.image_sizes == [(96, 96)]
    boxes = detector.predict_proposals(X[:2])[0]
    assert (boxes <= 64 + 1e-3).all()  # proposals in the original image's pixels


def test_pretrained_backbone_with_frozen_stages_and_fpn(small):
    """efficientnet_lite0 as the body: frozen stages keep their weights; FPN spreads anchors."""
    from skvision.nn.backbones import build_backbone

    X, targets = small
    detector = FasterRCNNDetector(**FAST, backbone="efficientnet_lite0", trainable_layers=2)
    detector.fit(X, targets)
    features = detector.module_.backbone.features
    levels = features.backbone.level_parameters()
    assert features.frozen_stages == list(range(len(levels) - 2))
    pretrained = build_backbone("efficientnet_lite0", layer=-2).level_parameters()
    for index, changed in ((0, False), (len(levels) - 1, True)):
        before = torch.cat([p.flatten() for p in pretrained[index]])
        after = torch.cat([p.flatten() for p in levels[index]])
        assert (not torch.equal(before, after)) is changed
    assert detector.module_.backbone(torch.zeros(1, 3, 64, 64)).shape[-1] == 4  # stride 16
    assert len(detector.predict(X[:2])) == 2

    fpn = FasterRCNNDetector(**FAST, backbone="efficientnet_lite0", fpn=True,
                             anchor_sizes=(8, 16, 32, 64, 96, 128)).fit(X, targets)
    generator = fpn.module_.rpn.anchor_generator
    assert generator.sizes == ((8, 16), (32, 64), (96, 128))
    assert generator.num_anchors_per_location() == [6, 6, 6]
    maps = fpn.module_.backbone(torch.zeros(1, 3, 64, 64))
    assert [m.shape[-1] for m in maps.values()] == [8, 4, 2]  # strides 8, 16, 32
    assert len(fpn.predict_proposals(X[:1])[0]) > 0
    with pytest.raises(ValueError, match="one size per pyramid level"):
        FasterRCNNDetector(**FAST, backbone="efficientnet_lite0", fpn=True,
                           anchor_sizes=(16, 32)).fit(X, targets)
    with pytest.raises(ValueError, match="1 \\(grayscale\\) or 3 \\(RGB\\) channels"):
        FasterRCNNDetector(**FAST, backbone="efficientnet_lite0").fit(
            np.concatenate([X, X[..., :1]], axis=-1), targets)
    with pytest.raises(ValueError, match="backbone name.*Got 'no_such_net'"):
        FasterRCNNDetector(**FAST, backbone="no_such_net").fit(X, targets)


def test_anchor_sizes_per_level_as_torchvision_takes_them():
    """Nested sizes (torchvision's format) give each pyramid level its own; one map merges them."""
    nested = FasterRCNNDetector(fpn=True, anchor_sizes=((8, 12), (32,), (64, 96)))
    assert nested._anchor_generator(3).sizes == ((8, 12), (32,), (64, 96))
    assert FasterRCNNDetector(anchor_sizes=((8,), (32,)))._anchor_generator(1).sizes == (
        (8, 32),)
    with pytest.raises(ValueError, match="needs 3 tuples"):
        FasterRCNNDetector(anchor_sizes=((8,), (32,)))._anchor_generator(3)
    with pytest.raises(ValueError, match="'anchor_sizes' parameter of FasterRCNNDetector"):
        FasterRCNNDetector(anchor_sizes=(0, 8)).fit("not images", None)


def test_save_load_pretrained_fpn_detector_fitted_on_a_frame(small, tmp_path):
    """The file rebuilds the FPN body and keeps the DataFrame answer format."""
    from skvision import load, save
    from skvision._validation import targets_to_frame

    X, targets = small
    detector = FasterRCNNDetector(**FAST, backbone="efficientnet_lite0", fpn=True,
                                  trainable_layers=1).fit(X, targets_to_frame(targets))
    save(detector, tmp_path / "detector.skv")
    restored = load(tmp_path / "detector.skv")
    before, after = detector.predict(X[:3]), restored.predict(X[:3])
    assert list(after.columns) == list(before.columns)
    np.testing.assert_allclose(after[["x_min", "y_min", "x_max", "y_max", "score"]],
                               before[["x_min", "y_min", "x_max", "y_max", "score"]],
                               rtol=1e-5, atol=1e-5)


# -- torchvision's whole Faster R-CNN detectors, fine-tuned ------------------------------------

WHOLE = "fasterrcnn_mobilenet_v3_large_fpn"
NEW_CLASSES = {"circle": "ball", "square": "box", "triangle": "tent"}


@pytest.fixture(scope="module")
def whole_weights(tmp_path_factory):
    """Random whole-model weights of WHOLE in a local file (COCO's would need the internet)."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.get_model(WHOLE, weights=None, weights_backbone=None)
    path = tmp_path_factory.mktemp("weights") / f"{WHOLE}.pth"
    torch.save(model.state_dict(), path)
    return path


def _renamed(targets):
    return [{"boxes": target["boxes"],
             "labels": np.array([NEW_CLASSES[label] for label in target["labels"]],
                                dtype=object)} for target in targets]


def test_whole_torchvision_detector_fine_tuned(small, whole_weights):
    """A COCO-style whole detector: new box predictor, its own anchors, RPN and normalization."""
    from torchvision.ops.misc import FrozenBatchNorm2d

    from skvision.nn.detection import KeepSizeTransform

    X, targets = small
    X, targets = X[:12], _renamed(targets[:12])
    detector = FasterRCNNDetector(**FAST, backbone=WHOLE, weights=whole_weights)
    detector.fit(X, targets)
    assert set(detector.classes_) <= set(NEW_CLASSES.values())
    n_classes = len(detector.classes_)
    for found in detector.predict(X[:3]):
        assert found["boxes"].shape[1:] == (4,) and found["boxes"].dtype == np.float32
        assert set(found["labels"]) <= set(detector.classes_)
        assert len(found["scores"]) == len(found["labels"]) == len(found["boxes"])
    module = detector.module_
    predictor = module.roi_heads.box_predictor
    assert predictor.cls_score.out_features == n_classes + 1
    assert predictor.bbox_pred.out_features == 4 * (n_classes + 1)
    # torchvision's anchors and RPN head: 5 sizes x 3 ratios on each map.
    assert module.rpn.head.cls_logits.out_channels == 15
    assert set(module.rpn.anchor_generator.num_anchors_per_location()) == {15}
    assert isinstance(module.transform, KeepSizeTransform)
    assert module.transform.image_mean == [0.485, 0.456, 0.406]
    # The file's weights, batch norm frozen, body trained in its last 3 layers only.
    body = module.backbone.body
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in body.modules())
    assert any(isinstance(m, FrozenBatchNorm2d) for m in body.modules())
    saved = torch.load(whole_weights, weights_only=True)
    np.testing.assert_array_equal(body["0"][0].weight.detach(),
                                  saved["backbone.body.0.0.weight"])
    assert not body["0"][0].weight.requires_grad and body["16"][0].weight.requires_grad
    assert not torch.equal(body["16"][0].weight.detach(), saved["backbone.body.16.0.weight"])
    assert 0.0 <= detector.score(X, targets) <= 1.0

    # weights=False: torchvision's random initialization, ordinary batch norm, all trained.
    scratch = FasterRCNNDetector(**FAST, backbone=WHOLE, weights=False, min_size=96)
    scratch.fit(X, targets)
    body = scratch.module_.backbone.body
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in body.modules())
    assert all(p.requires_grad for p in body.parameters())
    resized, _ = scratch.module_.transform([torch.zeros(3, 64, 64)])
    assert resized.image_sizes == [(96, 96)]


@pytest.mark.parametrize("name, n_layers", [("mobilenet_v3_large", 6), ("resnet18", 5)])
def test_trainable_layers_follow_torchvision(name, n_layers):
    """freeze_detector_body on a built body freezes what torchvision's extractors freeze."""
    import torchvision
    from torchvision.models.detection import backbone_utils

    from skvision.nn.detection import freeze_detector_body

    for n_trainable in range(n_layers + 1):
        network = torchvision.models.get_model(name, weights=None)
        if name.startswith("resnet"):
            reference = backbone_utils._resnet_fpn_extractor(
                torchvision.models.get_model(name, weights=None), n_trainable).body
        else:
            reference = backbone_utils._mobilenet_extractor(
                torchvision.models.get_model(name, weights=None), True, n_trainable).body
            network = network.features
        body = backbone_utils.BackboneWithFPN(
            network, {"layer4" if name.startswith("resnet") else "16": "0"},
            [512 if name.startswith("resnet") else 960], 8).body
        freeze_detector_body(body, n_trainable)
        assert ([n for n, p in body.named_parameters() if p.requires_grad]
                == [n for n, p in reference.named_parameters() if p.requires_grad])
    with pytest.raises(ValueError, match=f"0 to {n_layers}"):
        freeze_detector_body(body, n_layers + 1)


def test_whole_detector_errors(small, whole_weights, tmp_path, monkeypatch):
    import sys
    import types

    import torchvision
    from safetensors.torch import save_file

    from skvision.nn.backbones import BackboneWeightsError

    X, targets = small
    X, targets = X[:4], targets[:4]
    # Weights of another detector, of a classification network, or no file.
    with pytest.raises(BackboneWeightsError, match=(
            rf"{whole_weights.name}.* do not fit torchvision's fasterrcnn_resnet50_fpn: .* "
            r"missing")):
        FasterRCNNDetector(**FAST, backbone="fasterrcnn_resnet50_fpn",
                           weights=whole_weights).fit(X, targets)
    classifier = tmp_path / "mobilenet_v3_large.safetensors"
    save_file(torchvision.models.mobilenet_v3_large().state_dict(), classifier)
    with pytest.raises(BackboneWeightsError, match=(
            rf"mobilenet_v3_large.safetensors.* do not fit torchvision's {WHOLE}.*"
            r"unexpected \(e.g. \[.classifier")):
        FasterRCNNDetector(**FAST, backbone=WHOLE, weights=classifier).fit(X, targets)
    with pytest.raises(BackboneWeightsError, match="does not exist"):
        FasterRCNNDetector(**FAST, backbone=WHOLE, weights=tmp_path / "none.pth").fit(
            X, targets)
    # Parameters that belong to the other kinds of backbone.
    for params, message in (
            (dict(backbone="small_cnn", weights=whole_weights), "with another backbone"),
            (dict(backbone="efficientnet_lite0", weights=False), "with another backbone"),
            (dict(backbone=WHOLE, weights=False, backbone_weights=False),
             "backbone_weights must be None"),
            (dict(backbone=WHOLE, weights=False, anchor_sizes=(8, 16)), "keeps the anchors"),
            (dict(backbone=WHOLE, weights=False, aspect_ratios=(1.0,)), "keeps the anchors"),
            (dict(backbone=WHOLE, weights=False, fpn=True), "fpn must be False")):
        with pytest.raises(ValueError, match=message):
            FasterRCNNDetector(**FAST, **params).fit("not images", None)  # before the data
    # A state dict in the message is named by its size, not printed.
    with pytest.raises(ValueError, match="weights=<dict of"):
        FasterRCNNDetector(**FAST, weights=torch.load(whole_weights, weights_only=True)).fit(
            X, targets)
    with pytest.raises(ValueError, match="gray or RGB images"):
        FasterRCNNDetector(**FAST, backbone=WHOLE, weights=False).fit(
            np.concatenate([X, X[..., :1]], axis=-1), targets)
    # Gray images fit: the detector's per-channel normalization repeats them over RGB.
    gray = FasterRCNNDetector(**FAST, backbone=WHOLE, weights=False).fit(X[..., :1], targets)
    assert gray.image_shape_ == (64, 64, 1) and len(gray.predict(X[:2, ..., :1])) == 2
    images = torch.from_numpy(X[:2, ..., :1]).permute(0, 3, 1, 2).float() / 255
    transform = gray.module_.transform.eval()
    torch.testing.assert_close(transform(list(images))[0].tensors,
                               transform(list(images.expand(-1, 3, -1, -1)))[0].tensors)
    # weights=None asks skvision.nn._hub for torchvision's COCO weights, by model name.
    asked = []

    def offline(name):
        asked.append(name)
        raise BackboneWeightsError("offline")

    monkeypatch.setitem(sys.modules, "skvision.nn._hub",
                        types.SimpleNamespace(hub_weights_file=offline))
    with pytest.raises(BackboneWeightsError, match="offline"):
        FasterRCNNDetector(**FAST, backbone=WHOLE).fit(X, targets)
    assert asked == [WHOLE]


def test_save_load_whole_detector_without_its_weights_file(small, whole_weights, tmp_path):
    """The saved model holds the fine-tuned weights: the weights file may be gone."""
    import shutil

    from skvision import load, save

    X, targets = small
    X, targets = X[:8], _renamed(targets[:8])
    local = tmp_path / "coco.pth"
    shutil.copy(whole_weights, local)
    detector = FasterRCNNDetector(**FAST, backbone=WHOLE, weights=local,
                                  trainable_layers=2).fit(X, targets)
    save(detector, tmp_path / "detector.skv")
    local.unlink()
    restored = load(tmp_path / "detector.skv")
    for before, after in zip(detector.predict(X[:3]), restored.predict(X[:3])):
        np.testing.assert_allclose(after["boxes"], before["boxes"], rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(after["scores"], before["scores"], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(after["labels"], before["labels"])
    assert restored.module_.roi_heads.box_predictor.cls_score.out_features == len(
        detector.classes_) + 1


def test_skipped_file_leaves_the_other_images_their_own_boxes(tmp_path):
    """on_error="skip" with DataFrame targets: boxes follow their image_id, not their row.

    The fit on the files with an unreadable one among them is the fit on the
    readable files alone (same seed, same boxes).
    """
    import pandas as pd
    from PIL import Image

    from skvision._validation import targets_to_frame

    X, targets = make_shapes(n_samples=5, image_size=32, task="detection", max_objects=2,
                             random_state=2)
    paths = [str(tmp_path / f"{index}.png") for index in range(len(X))]
    for image, path in zip(X, paths):
        Image.fromarray(np.rint(image * 255).astype(np.uint8)).save(path)
    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    frame = targets_to_frame(targets)
    # The broken file is input 2: the boxes of images 2.. have the next image_id.
    with_broken = frame.assign(image_id=frame["image_id"] + (frame["image_id"] >= 2))
    settings = dict(FAST, batch_size=5, min_size=32, max_size=32, anchor_sizes=(8, 16),
                    rpn_pre_nms_top_n=50, rpn_post_nms_top_n=20)
    with pytest.warns(UserWarning, match="Skipped 1 image file"):
        skipped = FasterRCNNDetector(**settings, on_error="skip").fit(
            [*paths[:2], str(broken), *paths[2:]], with_broken)
    alone = FasterRCNNDetector(**settings).fit(paths, frame)
    expected = alone.predict(paths)
    assert len(expected)  # boxes to compare
    pd.testing.assert_frame_equal(skipped.predict(paths), expected)
