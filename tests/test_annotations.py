"""Labels as annotation tools export them: COCO, Pascal VOC and YOLO in, COCO out.

One small generated data set (make_shapes detection images plus images
without objects, one not square) is written in the three formats by the
helpers below and must load to the same targets; masks are compared with
pycocotools' own ``annToMask``; every error names its file and annotation.
"""

import json
import os

import numpy as np
import pytest
from PIL import Image

from skvision.datasets import (
    coco_categories,
    load_coco,
    load_voc,
    load_yolo,
    make_shapes,
    save_coco,
)

N_SHAPES = 6


# --------------------------------------------------------------------------
# Writers of the three formats (as annotation tools write them).


def _write_voc(root, names, sizes, targets):
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        os.makedirs(root / sub, exist_ok=True)
    for name, (height, width), target in zip(names, sizes, targets):
        objects = "".join(
            f"<object><name>{label}</name><difficult>0</difficult><bndbox>"
            # 1-based inclusive pixel indices: integers, as VOC tools write them.
            f"<xmin>{round(box[0]) + 1}</xmin><ymin>{round(box[1]) + 1}</ymin>"
            f"<xmax>{round(box[2])}</xmax><ymax>{round(box[3])}</ymax></bndbox></object>"
            for box, label in zip(target["boxes"], target["labels"]))
        (root / "Annotations" / f"{name[:-4]}.xml").write_text(
            f"<annotation><filename>{name}</filename><size><width>{width}</width>"
            f"<height>{height}</height><depth>3</depth></size>{objects}</annotation>")
    (root / "ImageSets/Main/val.txt").write_text(
        "".join(f"{name[:-4]}\n" for name in names[-2:]))


def _yolo_lines(target, height, width, classes):
    lines = []
    for box, label in zip(target["boxes"], target["labels"]):
        cx, cy = (box[0] + box[2]) / 2 / width, (box[1] + box[3]) / 2 / height
        w, h = (box[2] - box[0]) / width, (box[3] - box[1]) / height
        lines.append(f"{classes.index(label)} {cx:.4f} {cy:.4f} {w:.4f} {h:.4f}")
    return "\n".join(lines) + ("\n" if lines else "")


def _write_yolo(root, names, sizes, targets, classes, images):
    """Ultralytics' layout with train and val splits and a data.yaml (names as a mapping)."""
    for index, (name, (height, width), target) in enumerate(zip(names, sizes, targets)):
        split = "val" if index >= len(names) - 2 else "train"
        for sub in ("images", "labels"):
            os.makedirs(root / sub / split, exist_ok=True)
        Image.fromarray(images[index]).save(root / "images" / split / name)
        if len(target["boxes"]) or index % 2:  # an empty label file, and a missing one
            (root / "labels" / split / f"{name[:-4]}.txt").write_text(
                _yolo_lines(target, height, width, classes))
    (root / "data.yaml").write_text(
        "path: .\ntrain: images/train\nval: images/val\nnames:\n"
        + "".join(f"  {i}: {name}\n" for i, name in enumerate(classes)))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """The same images and boxes as COCO, VOC and YOLO folders."""
    root = tmp_path_factory.mktemp("labels")
    X, targets = make_shapes(N_SHAPES, image_size=32, task="detection", random_state=0)
    images = list(X) + [np.full((24, 40, 3), 90, np.uint8), np.full((32, 32, 3), 30, np.uint8)]
    targets = targets + [{"boxes": np.zeros((0, 4), np.float32),
                          "labels": np.array([], dtype=object)}] * 2
    # The not-square image gets a box too: YOLO normalises x and y by different sides.
    targets[-2] = {"boxes": np.array([[3.5, 2.25, 30.0, 20.0]], np.float32),
                   "labels": np.array(["circle"], dtype=object)}
    names = [f"img{index}.jpg" for index in range(len(images))]
    sizes = [image.shape[:2] for image in images]
    (root / "voc").mkdir()
    _write_voc(root / "voc", names, sizes, targets)
    paths = []
    for name, image in zip(names, images):
        paths.append(str(root / "voc" / "JPEGImages" / name))
        Image.fromarray(image).save(paths[-1], quality=95)
    save_coco(paths, targets, root / "voc" / "coco.json")
    _write_yolo(root / "yolo", names, sizes, targets, ["circle", "square", "triangle"], images)
    return {"root": root, "paths": paths, "targets": targets, "names": names}


def _by_name(paths, targets):
    return {os.path.basename(path): target for path, target in zip(paths, targets)}


def _assert_same_targets(expected, got, atol):
    assert sorted(expected) == sorted(got)
    for name, target in expected.items():
        order_e = np.lexsort(np.asarray(target["boxes"]).T[::-1])
        order_g = np.lexsort(np.asarray(got[name]["boxes"]).T[::-1])
        assert got[name]["boxes"].dtype == np.float32
        np.testing.assert_allclose(got[name]["boxes"][order_g],
                                   np.asarray(target["boxes"])[order_e], atol=atol, rtol=0)
        assert list(got[name]["labels"][order_g]) == list(target["labels"][order_e])


def test_the_three_formats_load_to_the_same_targets(dataset):
    expected = _by_name(dataset["paths"], dataset["targets"])
    root = dataset["root"]
    paths, targets = load_coco(root / "voc" / "coco.json")
    assert list(paths) == dataset["paths"]  # the file's order; images without objects kept
    _assert_same_targets(expected, _by_name(paths, targets), atol=0)
    paths, targets = load_voc(root / "voc")
    assert list(paths) == dataset["paths"]
    _assert_same_targets(expected, _by_name(paths, targets), atol=0.5)  # integer corners
    paths, targets = load_yolo(root / "yolo")
    assert len(paths) == len(expected)
    _assert_same_targets(expected, _by_name(paths, targets), atol=0.01)  # 4 decimals
    # One split: the folder of its images, or a VOC image set.
    paths, targets = load_yolo(root / "yolo" / "images" / "val")
    assert [os.path.basename(path) for path in paths] == dataset["names"][-2:]
    paths, _ = load_voc(root / "voc", image_set="val")
    assert [os.path.basename(path) for path in paths] == dataset["names"][-2:]


def test_as_frame_is_the_detectors_box_frame(dataset):
    from skvision._validation import targets_to_frame

    paths, targets = load_coco(dataset["root"] / "voc" / "coco.json")
    _, frame = load_coco(dataset["root"] / "voc" / "coco.json", as_frame=True)
    assert list(frame.columns) == ["image_id", "x_min", "y_min", "x_max", "y_max", "label"]
    assert frame.equals(targets_to_frame(targets))
    _, frame = load_yolo(dataset["root"] / "yolo", class_names=["circle", "square", "triangle"],
                         as_frame=True)
    assert len(frame) == sum(len(target["boxes"]) for target in dataset["targets"])


def test_save_coco_load_coco_round_trip_exactly(dataset, tmp_path):
    paths, targets = dataset["paths"], dataset["targets"]
    crowded = [{**target, "iscrowd": np.arange(len(target["boxes"])) % 2 == 1}
               for target in targets]
    file = tmp_path / "gt.json"
    save_coco(paths, crowded, file, categories={5: "triangle", 2: "circle", 9: "square"})
    assert coco_categories(file) == {2: "circle", 5: "triangle", 9: "square"}
    loaded_paths, loaded = load_coco(file, keep_crowd=True)
    assert list(loaded_paths) == paths
    # Images outside the JSON's folder are named relative to it: the two move together.
    assert json.loads(file.read_text())["images"][0]["file_name"].startswith("../")
    for original, back in zip(crowded, loaded):
        np.testing.assert_array_equal(back["boxes"], original["boxes"])  # bit for bit
        assert back["boxes"].dtype == np.float32
        assert list(back["labels"]) == list(original["labels"])
        np.testing.assert_array_equal(back["iscrowd"], original["iscrowd"])
    # Crowd boxes left out by default.
    _, plain = load_coco(file)
    assert [len(t["boxes"]) for t in plain] == [int((~t["iscrowd"]).sum()) for t in crowded]
    # Writing what was read gives the same file.
    again = tmp_path / "again.json"
    save_coco(loaded_paths, loaded, again, categories=coco_categories(file))
    assert json.loads(again.read_text()) == json.loads(file.read_text())


def test_predictions_are_a_coco_results_file_pycocotools_reads(dataset, tmp_path):
    coco_module = pytest.importorskip("pycocotools.coco")
    gt = dataset["root"] / "voc" / "coco.json"
    paths, targets = load_coco(gt)
    predictions = [{**target, "scores": np.linspace(0.9, 0.5, len(target["boxes"]))}
                   for target in targets]
    file = tmp_path / "results.json"
    # A subset of the images: ids come from the annotation file, matched by path.
    save_coco(paths[3:], predictions[3:], file, categories=gt)
    results = json.loads(file.read_text())
    assert {entry["image_id"] for entry in results} <= set(range(4, len(paths) + 1))
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        truth = coco_module.COCO(str(gt))
        found = truth.loadRes(str(file))
    assert len(found.getAnnIds()) == sum(len(t["boxes"]) for t in targets[3:])


# --------------------------------------------------------------------------
# Masks.


def _polygon(cx, cy, r, n=7):
    angles = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.column_stack([cx + r * np.cos(angles), cy + r * np.sin(angles)]).ravel().tolist()


@pytest.fixture(scope="module")
def mask_dataset(tmp_path_factory):
    """Polygons, compressed and uncompressed RLE, overlapping, on images of two sizes."""
    mask_api = pytest.importorskip("pycocotools.mask")
    root = tmp_path_factory.mktemp("masks")
    sizes = [(30, 40), (30, 40), (24, 20)]
    for index, (height, width) in enumerate(sizes):
        Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(root / f"{index}.png")
    blob = np.zeros((24, 20), np.uint8, order="F")
    blob[3:15, 2:9] = 1
    compressed = mask_api.encode(np.asfortranarray(blob))
    compressed["counts"] = compressed["counts"].decode("ascii")
    crowd = np.zeros((30, 40), np.uint8)
    crowd[5:25, 20:38] = 1
    # Uncompressed RLE: lengths of the runs of 0s and 1s down the columns, 0s first.
    pixels = crowd.ravel(order="F")
    changes = np.flatnonzero(np.diff(pixels)) + 1
    counts = np.diff(np.concatenate([[0], changes, [len(pixels)]])).tolist()
    annotations = [
        {"image_id": 10, "category_id": 7, "segmentation": [_polygon(12, 12, 9)]},
        {"image_id": 10, "category_id": 3, "segmentation": {"size": [30, 40], "counts": counts},
         "iscrowd": 1},
        # Over both: the later annotation wins. Two polygons in one annotation.
        {"image_id": 10, "category_id": 11,
         "segmentation": [_polygon(20, 15, 6), [30, 2, 39.5, 2, 39.5, 10, 30, 10]]},
        {"image_id": 30, "category_id": 3, "segmentation": compressed},
        {"image_id": 30, "category_id": 7, "segmentation": [[10.5, 0, 19.7, 23.9, 4, 20]]},
    ]
    for index, annotation in enumerate(annotations):
        annotation.update(id=index + 1, bbox=[0, 0, 1, 1], area=1,
                          iscrowd=annotation.get("iscrowd", 0))
    document = {
        "images": [{"id": 10, "file_name": "0.png", "width": 40, "height": 30},
                   {"id": 20, "file_name": "1.png", "width": 40, "height": 30},
                   {"id": 30, "file_name": "2.png", "width": 20, "height": 24}],
        "annotations": annotations,
        "categories": [{"id": 11, "name": "c"}, {"id": 3, "name": "a"}, {"id": 7, "name": "b"}],
    }
    (root / "masks.json").write_text(json.dumps(document))
    return root


# pycocotools' own annToMask warns under numpy 2 (its Cython decoder's __array__).
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_segmentation_masks_equal_pycocotools_ann_to_mask(mask_dataset):
    import contextlib
    import io

    from pycocotools.coco import COCO

    paths, masks = load_coco(mask_dataset / "masks.json", task="segmentation")
    assert isinstance(masks, list) and [m.shape for m in masks] == [(30, 40), (30, 40), (24, 20)]
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(mask_dataset / "masks.json"))
    index = {category_id: k + 1 for k, category_id in enumerate(sorted(coco.getCatIds()))}
    for image_id, mask in zip([10, 20, 30], masks):
        expected = np.zeros_like(mask)
        for annotation in coco.loadAnns(coco.getAnnIds(imgIds=image_id)):  # in file order
            expected[coco.annToMask(annotation) > 0] = index[annotation["category_id"]]
        np.testing.assert_array_equal(mask, expected)
    assert set(np.unique(masks[0])) == {0, 1, 2, 3}  # every kind drawn, none hidden whole
    assert not masks[1].any()  # no annotation: background


def test_yolo_polygons_draw_the_masks_of_the_same_coco_polygons(tmp_path):
    pytest.importorskip("pycocotools")
    polygons = [(0, [4, 4, 28, 4, 16, 24]), (2, [12, 8, 32, 8, 32, 28, 12, 28])]
    for sub in ("images", "labels"):
        (tmp_path / sub).mkdir()
    for name in ("a", "b"):
        Image.fromarray(np.zeros((32, 40, 3), np.uint8)).save(tmp_path / "images" / f"{name}.png")
    # Multiples of 4 on 32 and 40 pixels: exact in four decimals.
    (tmp_path / "labels" / "a.txt").write_text("".join(
        f"{c} " + " ".join(f"{v / (40 if i % 2 == 0 else 32):.4f}" for i, v in enumerate(p))
        + "\n" for c, p in polygons))
    paths, masks = load_yolo(tmp_path, class_names=["x", "y", "z"], task="segmentation")
    assert masks.shape == (2, 32, 40) and not masks[1].any()
    document = {
        "images": [{"id": 1, "file_name": "images/a.png"}],
        "annotations": [{"id": i + 1, "image_id": 1, "category_id": c + 1, "segmentation": [p],
                         "bbox": [0, 0, 1, 1], "iscrowd": 0} for i, (c, p) in enumerate(polygons)],
        "categories": [{"id": k + 1, "name": n} for k, n in enumerate("xyz")],
    }
    (tmp_path / "coco.json").write_text(json.dumps(document))
    _, coco_masks = load_coco(tmp_path / "coco.json", task="segmentation")
    np.testing.assert_array_equal(masks[0], coco_masks[0])
    assert set(np.unique(masks[0])) == {0, 1, 3}
    # The same file for detection: a polygon's box is its extent.
    _, targets = load_yolo(tmp_path, class_names=["x", "y", "z"])
    np.testing.assert_allclose(targets[0]["boxes"], [[4, 4, 28, 24], [12, 8, 32, 28]], atol=1e-3)


def test_unet_trains_on_coco_masks_of_different_sizes(mask_dataset):
    from skvision.segmentation import UNetSegmenter

    paths, masks = load_coco(mask_dataset / "masks.json", task="segmentation")
    segmenter = UNetSegmenter(epochs=1, depth=1, base_filters=4, image_size=(16, 16),
                              batch_size=3, random_state=0).fit(paths, masks)
    assert [m.shape for m in segmenter.predict(paths)] == [m.shape for m in masks]
    # The same masks with the images as arrays of different sizes.
    images = [np.asarray(Image.open(path)) for path in paths]
    segmenter.fit(images, masks)
    assert [m.shape for m in segmenter.predict(images)] == [m.shape for m in masks]


def test_detector_fits_on_load_coco_output(dataset):
    from skvision.detection import FasterRCNNDetector

    paths, targets = load_coco(dataset["root"] / "voc" / "coco.json", keep_crowd=True)
    targets[0]["iscrowd"][:] = True  # crowd boxes are not trained on
    detector = FasterRCNNDetector(epochs=1, batch_size=4, image_size=(32, 32),
                                  random_state=0).fit(paths, targets)
    assert len(detector.predict(paths[:2])) == 2


# --------------------------------------------------------------------------
# Errors name the file and the annotation.


def _coco(tmp_path, images=None, annotations=(), categories=None, size=(16, 16)):
    Image.fromarray(np.zeros((*size, 3), np.uint8)).save(tmp_path / "a.png")
    document = {
        "images": images if images is not None else
        [{"id": 1, "file_name": "a.png", "width": size[1], "height": size[0]}],
        "annotations": list(annotations),
        "categories": categories or [{"id": 1, "name": "cat"}],
    }
    file = tmp_path / "ann.json"
    file.write_text(json.dumps(document))
    return file


@pytest.mark.parametrize("annotation, message", [
    ({"id": 4, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 3]},
     r"Annotation 4 \(image '.*a.png'\) of '.*ann.json': box \[10.0, 10.0, 30.0, 13.0\].*outside its 16x16 image"),
    ({"id": 5, "image_id": 1, "category_id": 2, "bbox": [1, 1, 2, 2]},
     r"Annotation 5 .* of '.*ann.json': its category_id 2 is not in 'categories'"),
    ({"id": 6, "image_id": 9, "category_id": 1, "bbox": [1, 1, 2, 2]},
     r"Annotation 6 of '.*ann.json': its image_id 9 is not the id of an image"),
    ({"id": 7, "image_id": 1, "category_id": 1, "bbox": [1, 1, 2]},
     r"Annotation 7 .*'bbox' must be \[x, y, width, height\]"),
])
def test_coco_annotation_errors(tmp_path, annotation, message):
    file = _coco(tmp_path, annotations=[annotation])
    with pytest.raises(ValueError, match=message):
        load_coco(file)


def test_coco_boxes_clipped_within_a_pixel_and_empty_ones_warned(tmp_path):
    file = _coco(tmp_path, annotations=[
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [-0.4, 2, 16.8, 5]},
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [3, 3, 0, 4]}])
    with pytest.warns(UserWarning, match=r"1 box\(es\) without area .*Annotation 2"):
        _, targets = load_coco(file)
    np.testing.assert_array_equal(targets[0]["boxes"], [[0, 2, 16, 7]])


def test_coco_missing_image_file(tmp_path):
    file = _coco(tmp_path, images=[{"id": 1, "file_name": "a.png"},
                                   {"id": 2, "file_name": "gone.png"}],
                 annotations=[{"id": 1, "image_id": 2, "category_id": 1, "bbox": [1, 1, 2, 2]}])
    with pytest.raises(FileNotFoundError, match=r"gone.png.*an image of '.*ann.json'.*on_error"):
        load_coco(file)
    with pytest.warns(UserWarning, match="gone.png"):
        paths, targets = load_coco(file, on_error="skip")
    assert [os.path.basename(p) for p in paths] == ["a.png"] and len(targets[0]["boxes"]) == 0


def test_coco_size_disagreeing_with_the_decoded_image_names_the_exif_rotation(tmp_path):
    image = Image.fromarray(np.zeros((10, 20, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated a quarter turn: decodes 10 wide, 20 high
    image.save(tmp_path / "r.jpg", exif=exif)
    file = _coco(tmp_path, images=[{"id": 1, "file_name": "r.jpg", "width": 20, "height": 10}])
    with pytest.raises(ValueError, match=r"r.jpg' as 20x10 .*decodes to 10x20: its EXIF "
                                         r"orientation \(6\) turns it a quarter turn"):
        load_coco(file)
    file = _coco(tmp_path, images=[{"id": 1, "file_name": "a.png", "width": 17, "height": 16}])
    with pytest.raises(ValueError, match="no EXIF rotation explains it"):
        load_coco(file)


def test_coco_file_errors(tmp_path):
    (tmp_path / "results.json").write_text("[]")
    with pytest.raises(ValueError, match="results file"):
        load_coco(tmp_path / "results.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ValueError, match=r"Cannot read '.*broken.json' as JSON"):
        load_coco(tmp_path / "broken.json")
    with pytest.raises(FileNotFoundError, match="nothing.json"):
        load_coco(tmp_path / "nothing.json")
    file = _coco(tmp_path, annotations=[{"id": 3, "image_id": 1, "category_id": 1,
                                         "bbox": [1, 1, 2, 2]}])
    with pytest.raises(ValueError, match=r"Annotation 3 .* has no 'segmentation'"):
        load_coco(file, task="segmentation")
    with pytest.raises(ValueError, match="as_frame"):
        load_coco(file, task="segmentation", as_frame=True)
    with pytest.raises(ValueError, match="task must be"):
        load_coco(file, task="keypoints")


def test_masks_without_pycocotools_name_the_extra(tmp_path, monkeypatch):
    import sys

    file = _coco(tmp_path, annotations=[{"id": 3, "image_id": 1, "category_id": 1,
                                         "segmentation": [[1, 1, 5, 1, 5, 5]]}])
    monkeypatch.setitem(sys.modules, "pycocotools", None)
    monkeypatch.setitem(sys.modules, "pycocotools.mask", None)
    with pytest.raises(ImportError, match=r'scikit-vision\[coco\]'):
        load_coco(file, task="segmentation")


def test_save_coco_errors(tmp_path):
    target = {"boxes": [[1, 1, 4, 4]], "labels": ["dog"]}
    with pytest.raises(ValueError, match=r"labels \['dog'\] that are not in categories"):
        save_coco(["a.png"], [target], tmp_path / "x.json", categories=["cat"])
    with pytest.raises(ValueError, match="'scores'"):
        save_coco(["a.png", "b.png"], [target, {**target, "scores": [1.0]}], tmp_path / "x.json")
    with pytest.raises(ValueError, match="one target dict per image"):
        save_coco(["a.png", "b.png"], [target], tmp_path / "x.json")


def _voc(tmp_path, xml, name="a"):
    for sub in ("Annotations", "JPEGImages"):
        os.makedirs(tmp_path / sub, exist_ok=True)
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "JPEGImages" / f"{name}.jpg")
    (tmp_path / "Annotations" / f"{name}.xml").write_text(xml)


@pytest.mark.parametrize("xml, message", [
    ("<annotation><object><name>cat</name>", r"Cannot parse '.*a.xml' as XML"),
    ("<annotation><object><name>cat</name></object></annotation>",
     r"Object 0 \('cat'\) of '.*a.xml' has no <bndbox>"),
    ("<annotation><object><name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>30</xmax>"
     "<ymax>5</ymax></bndbox></object></annotation>",
     r"Object 0 \('cat'\) of '.*a.xml': box .* outside its 16x16 image"),
    ("<annotation><object><name>cat</name><bndbox><xmin>1</xmin><ymin>x</ymin><xmax>3</xmax>"
     "<ymax>5</ymax></bndbox></object></annotation>", r"expected a number in <ymin>; got 'x'"),
])
def test_voc_errors(tmp_path, xml, message):
    _voc(tmp_path, xml)
    with pytest.raises(ValueError, match=message):
        load_voc(tmp_path)


def test_voc_difficult_objects(tmp_path):
    _voc(tmp_path, "<annotation><object><name>cat</name><difficult>1</difficult><bndbox>"
                   "<xmin>2</xmin><ymin>2</ymin><xmax>8</xmax><ymax>9</ymax></bndbox></object>"
                   "</annotation>")
    assert len(load_voc(tmp_path)[1][0]["boxes"]) == 0
    _, frame = load_voc(tmp_path, keep_difficult=True, as_frame=True)
    assert frame[["x_min", "y_min", "x_max", "y_max"]].values.tolist() == [[1, 1, 8, 9]]
    assert frame["difficult"].tolist() == [True]


def _yolo(tmp_path, text):
    for sub in ("images", "labels"):
        os.makedirs(tmp_path / sub, exist_ok=True)
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "images" / "a.png")
    (tmp_path / "labels" / "a.txt").write_text(text)


@pytest.mark.parametrize("text, message", [
    ("0 0.5 0.5 0.2\n", r"Line 1 of '.*a.txt' is '0 0.5 0.5 0.2'; expected 'class x_center"),
    ("0 0.5 0.5 0.2 0.2\ncat 0.5 0.5 0.2 0.2\n", r"Line 2 of '.*a.txt' is 'cat 0.5"),
    ("0 0.5 0.5 0.2 nan\n", r"Line 1 of '.*a.txt'"),
    ("3 0.5 0.5 0.2 0.2\n", r"Line 1 of '.*a.txt': class 3 is not one of the classes \[0, 1\]"),
    ("1 0.9 0.5 0.5 0.2\n", r"Line 1 of '.*a.txt': box .* outside its 16x16 image"),
])
def test_yolo_errors(tmp_path, text, message):
    _yolo(tmp_path, text)
    with pytest.raises(ValueError, match=message):
        load_yolo(tmp_path, class_names=["cat", "dog"])


def test_yolo_needs_class_names(tmp_path):
    _yolo(tmp_path, "0 0.5 0.5 0.2 0.2\n")
    with pytest.raises(ValueError, match="Found no data.yaml .* pass class_names"):
        load_yolo(tmp_path)
    (tmp_path / "data.yaml").write_text("names: [cat]\n")
    assert list(load_yolo(tmp_path / "images")[1][0]["labels"]) == ["cat"]
    with pytest.raises(ValueError, match="is a box .* needs polygon lines"):
        load_yolo(tmp_path, task="segmentation")
    with pytest.raises(ValueError, match="Found no image files in an images/ folder"):
        load_yolo(tmp_path / "labels", class_names=["cat"])


def test_annotations_at_urls(tmp_path):
    """The three formats read through fsspec (its in-memory filesystem stands for a bucket)."""
    import io
    import uuid

    fsspec = pytest.importorskip("fsspec")
    fs, root = fsspec.filesystem("memory"), f"/labels-{uuid.uuid4().hex}"
    png = io.BytesIO()
    Image.fromarray(np.zeros((16, 20, 3), np.uint8)).save(png, format="PNG")
    files = {
        "coco/img/a.png": png.getvalue(),
        "coco/ann.json": json.dumps({
            "images": [{"id": 1, "file_name": "img/a.png", "width": 20, "height": 16}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]}],
            "categories": [{"id": 1, "name": "cat"}]}).encode(),
        "yolo/images/a.png": png.getvalue(), "yolo/labels/a.txt": b"0 0.5 0.5 0.5 0.5\n",
        "yolo/data.yaml": b"names: [cat]\n",
        "voc/JPEGImages/a.png": png.getvalue(),
        "voc/Annotations/a.xml": b"<annotation><filename>a.png</filename><object><name>cat"
                                 b"</name><bndbox><xmin>2</xmin><ymin>3</ymin><xmax>4</xmax>"
                                 b"<ymax>7</ymax></bndbox></object></annotation>",
    }
    try:
        for name, content in files.items():
            fs.pipe(f"{root}/{name}", content)
        for load, where in [(load_coco, "coco/ann.json"), (load_yolo, "yolo"), (load_voc, "voc")]:
            paths, targets = load(f"memory://{root}/{where}")
            assert paths[0].startswith("memory://") and list(targets[0]["labels"]) == ["cat"]
            np.testing.assert_array_equal(targets[0]["boxes"], [[1, 2, 4, 6]] if load is load_coco
                                          else [[5, 4, 15, 12]] if load is load_yolo
                                          else [[1, 2, 4, 7]])
    finally:
        fs.rm(root, recursive=True)


def test_voc_missing_image_and_annotation_files(tmp_path):
    _voc(tmp_path, "<annotation><filename>gone.jpg</filename></annotation>", name="b")
    (tmp_path / "Annotations" / "a.xml").write_text("<annotation><filename>a.jpg</filename>"
                                                    "</annotation>")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "JPEGImages" / "a.jpg")
    with pytest.raises(FileNotFoundError, match=r"gone.jpg.*an image of '.*Annotations'"):
        load_voc(tmp_path)
    with pytest.warns(UserWarning, match="gone.jpg"):
        paths, _ = load_voc(tmp_path, on_error="skip")
    assert [os.path.basename(p) for p in paths] == ["a.jpg"]
    os.makedirs(tmp_path / "ImageSets" / "Main")
    (tmp_path / "ImageSets" / "Main" / "val.txt").write_text("a\nc\n")
    with pytest.raises(FileNotFoundError, match=r"Annotation file not found: '.*c.xml' \(image id 'c'\)"):
        load_voc(tmp_path, image_set="val")
