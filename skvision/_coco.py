"""COCO JSON in and out: :func:`load_coco`, :func:`save_coco`, :func:`coco_categories`.

Re-exported by :mod:`skvision.datasets`, where they are documented. The file
is read with ``json``; polygons and RLE become masks through
``pycocotools.mask`` (optional, imported only for ``task="segmentation"``).
"""

import json
import numbers
import os
import tempfile

import numpy as np

from ._annotations import (
    Record,
    check_options,
    check_recorded_size,
    checked_box,
    finish,
    image_sizes,
    import_mask_api,
    join,
    parent,
    polygon_rle,
    read_file,
    warn_empty_boxes,
)
from ._data import as_paths, scan_files
from ._storage import _filesystem, display_name, is_url
from ._validation import frame_to_targets

__all__ = ["coco_categories", "load_coco", "save_coco"]


def _read_coco(annotations, storage_options):
    """The parsed COCO file (a dict with images, annotations and categories)."""
    name = display_name(annotations)
    content = read_file(annotations, storage_options)
    try:
        data = json.loads(content)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"Cannot read {name!r} as JSON: {error}.") from None
    if isinstance(data, list):
        raise ValueError(
            f"{name!r} is a list: a COCO results file (detections of images given by id), "
            "which names no image files. load_coco reads annotation files: a JSON object "
            "with 'images', 'annotations' and 'categories'."
        )
    missing = [key for key in ("images", "categories") if not isinstance(data, dict)
               or not isinstance(data.get(key), list)]
    if missing:
        raise ValueError(
            f"{name!r} is not a COCO annotation file: expected a JSON object with the lists "
            f"'images', 'annotations' and 'categories'; {missing} missing."
        )
    if not isinstance(data.get("annotations", []), list):
        raise ValueError(f"'annotations' of {name!r} must be a list.")
    return data


def _is_id(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _entries(data, section, kind, field, name):
    """The dicts of ``data[section]``: unique integer ids, a str ``field`` (``kind`` names one)."""
    seen = set()
    for position, entry in enumerate(data[section]):
        if not isinstance(entry, dict) or not _is_id(entry.get("id")) \
                or not isinstance(entry.get(field), str):
            raise ValueError(
                f"{kind.capitalize()} {position} of {name!r} must have an integer 'id' and a "
                f"str {field!r}; got {entry!r}."
            )
        if entry["id"] in seen:
            raise ValueError(f"{name!r} has two {section} of id {entry['id']}.")
        seen.add(entry["id"])
        yield entry


def _categories(data, name):
    categories = {category["id"]: category["name"]
                  for category in _entries(data, "categories", "category", "name", name)}
    names = list(categories.values())
    if len(set(names)) != len(names):
        repeated = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(
            f"{name!r} gives the category names {repeated} to several ids: labels are the "
            "names, so each must name one category."
        )
    return dict(sorted(categories.items()))


def coco_categories(annotations, *, storage_options=None):
    """The categories of a COCO annotation file: ``{id: name}``, sorted by id.

    :func:`load_coco` gives labels as category names; this gives their ids
    back, for :func:`save_coco` to write predictions with the file's own
    ids. With ``task="segmentation"``, mask value ``k`` is the ``k``-th
    category of this dict (from 1; 0 is background).

    Parameters
    ----------
    annotations : str or path-like
        The COCO JSON file, a local path or a URL.
    storage_options : dict, default=None
        Options of the fsspec filesystem that reads a URL.

    Returns
    -------
    categories : dict of int to str

    See Also
    --------
    load_coco : Images and targets of a COCO file.
    save_coco : Write targets or predictions as COCO JSON.

    Examples
    --------
    >>> import json, os, tempfile
    >>> from skvision.datasets import coco_categories
    >>> file = os.path.join(tempfile.mkdtemp(), "annotations.json")
    >>> with open(file, "w") as handle:
    ...     json.dump({"images": [], "annotations": [],
    ...                "categories": [{"id": 3, "name": "dog"}, {"id": 1, "name": "cat"}]},
    ...               handle)
    >>> coco_categories(file)
    {1: 'cat', 3: 'dog'}
    """
    annotations = os.fspath(annotations)
    return _categories(_read_coco(annotations, storage_options), display_name(annotations))


def _image_records(data, folder, name):
    """``(id, path, recorded (width, height))`` of each image, in the file's order."""
    return [(image["id"], join(folder, image["file_name"]),
             (image.get("width"), image.get("height")))
            for image in _entries(data, "images", "image", "file_name", name)]


def _where(annotation, position, image_path, name):
    ident = annotation.get("id", f"#{position}") if isinstance(annotation, dict) else position
    image = "" if image_path is None else f" (image {display_name(image_path)!r})"
    return f"Annotation {ident}{image} of {name!r}"


def _add_box(record, annotation, where, keep_crowd, empty):
    bbox = annotation.get("bbox")
    if (not isinstance(bbox, (list, tuple)) or len(bbox) != 4
            or not all(isinstance(v, numbers.Real) for v in bbox)):
        raise ValueError(f"{where}: 'bbox' must be [x, y, width, height] (4 numbers, pixels); "
                         f"got {bbox!r}.")
    x, y, w, h = (float(v) for v in bbox)
    height, width = record.size
    box = checked_box([x, y, x + w, y + h], width, height, where)
    crowd = bool(annotation.get("iscrowd", 0))
    if box is None:
        empty.append(where)
    elif keep_crowd or not crowd:
        record.boxes.append(box)
        record.labels.append(annotation["_name"])
        if keep_crowd:
            record.flags["iscrowd"].append(crowd)


def _add_shape(record, annotation, where, index):
    """pycocotools' ``annToRLE``: polygons merged, uncompressed RLE compressed, RLE as it is."""
    segmentation = annotation.get("segmentation")
    height, width = record.size
    if isinstance(segmentation, list) and segmentation:
        rle = polygon_rle(segmentation, height, width, where)
    elif isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation:
        if list(segmentation["size"]) != [height, width]:
            raise ValueError(
                f"{where}: the RLE's size {segmentation['size']} (height, width) is not its "
                f"image's {[height, width]}."
            )
        mask_api = import_mask_api()
        try:
            rle = (mask_api.frPyObjects(segmentation, height, width)
                   if isinstance(segmentation["counts"], list) else segmentation)
            mask_api.area(rle)  # a malformed compressed string raises here, not later
        except Exception as error:
            raise ValueError(f"{where}: the RLE cannot be decoded ({error}).") from None
    else:
        raise ValueError(
            f"{where} has no 'segmentation' (polygons or RLE); task='segmentation' draws "
            "masks from them (a box-only file loads with task='detection')."
        )
    record.shapes.append((index, rle))


def load_coco(annotations, images=None, *, task="detection", as_frame=False,
              keep_crowd=False, on_error="raise", storage_options=None):
    """Load a COCO annotation file: image paths and their targets.

    Reads a COCO "instances" JSON file (as CVAT, Label Studio, Roboflow and
    pycocotools write it) with ``json``. Boxes ``[x, y, width, height]``
    become the detector's xyxy pixel boxes; polygons and RLE the U-Net's
    class-index masks. Every image of the file is kept, in the file's order,
    those without annotations with empty targets.

    Boxes and masks are in the pixels of the image as skvision decodes it,
    EXIF orientation applied. The image files' headers are read to check
    that each is there and has the ``width`` and ``height`` the file
    records; where they differ the error says so, and whether the file's
    EXIF rotation explains it. Corners up to one pixel outside the image (the
    rounding of annotation tools) are clipped to it; a box further out
    raises an error naming the file and the annotation; a box without area
    is left out with a warning.

    Parameters
    ----------
    annotations : str or path-like
        The COCO JSON file: a local path or a URL (read through fsspec, as
        image URLs are).
    images : str or path-like, default=None
        The folder (or URL prefix) the images' ``file_name`` is relative to;
        None: the folder of ``annotations``.
    task : {"detection", "segmentation"}, default="detection"
        "detection": one dict per image with ``"boxes"`` ``(k, 4)`` float32
        xyxy pixels and ``"labels"`` ``(k,)`` the category names, as
        :class:`~skvision.detection.FasterRCNNDetector` takes them.
        "segmentation": one integer mask per image, 0 for background and
        ``k`` for the ``k``-th category by id (:func:`coco_categories`),
        drawn from each annotation's polygons or RLE as pycocotools'
        ``annToMask`` draws them, a later annotation over an earlier one
        where they overlap; crowd annotations are drawn too (their pixels
        are of their category). Needs pycocotools (``pip install
        "scikit-vision[coco]"``), which is the reference implementation of
        COCO's polygon and RLE formats.
    as_frame : bool, default=False
        With ``task="detection"``, the targets as the detector's box
        DataFrame: one row per box, columns ``image_id`` (the position in
        ``paths``), ``x_min, y_min, x_max, y_max`` and ``label``.
    keep_crowd : bool, default=False
        Whether detection targets keep the boxes marked ``iscrowd`` (a
        region of many objects). By default they are left out, as
        torchvision's detection training does. Kept, each target has an
        ``"iscrowd"`` bool array (an ``iscrowd`` column with ``as_frame``):
        :func:`~skvision.metrics.mean_average_precision` then treats them
        as COCO's evaluation does (detections on them count neither way),
        and :class:`~skvision.detection.FasterRCNNDetector` does not train
        on them.
    on_error : {"raise", "skip"}, default="raise"
        What an image file that is missing or cannot be read does: raise an
        error naming it, or be left out (with its annotations) with one
        warning listing them.
    storage_options : dict, default=None
        Options of the fsspec filesystem that reads ``annotations`` at a URL
        (e.g. ``{"anon": True}``). The image files are read with fsspec's
        configuration, as in :func:`load_image_folder`.

    Returns
    -------
    paths : ndarray of str, shape (n_images,)
        The image files, to pass as ``X``.
    targets : list of dict, DataFrame, ndarray of shape (n_images, height, width) or list
        Detection targets, or masks: one array when all images share a
        size, else a list of ``(height, width)`` masks (uint8, or int32 for
        255 categories or more).

    See Also
    --------
    coco_categories : The file's category ids and names.
    save_coco : Write targets or predictions as COCO JSON.
    load_voc, load_yolo : The other annotation formats.

    Examples
    --------
    >>> import os, tempfile
    >>> from skvision.datasets import load_coco, make_shapes, save_coco
    >>> from PIL import Image
    >>> folder = tempfile.mkdtemp()
    >>> X, targets = make_shapes(2, image_size=32, task="detection", random_state=0)
    >>> paths = [os.path.join(folder, f"{i}.png") for i in range(2)]
    >>> for path, image in zip(paths, X):
    ...     Image.fromarray(image).save(path)
    >>> save_coco(paths, targets, os.path.join(folder, "annotations.json"))
    >>> paths, targets = load_coco(os.path.join(folder, "annotations.json"))
    >>> [os.path.basename(path) for path in paths], targets[0]["labels"]
    (['0.png', '1.png'], array(['square', 'triangle'], dtype=object))
    """
    check_options(task, as_frame, on_error)
    annotations = os.fspath(annotations)
    name = display_name(annotations)
    data = _read_coco(annotations, storage_options)
    categories = _categories(data, name)
    folder = parent(annotations) if images is None else os.fspath(images)
    image_list = _image_records(data, folder, name)
    paths = [path for _, path, _ in image_list]
    kept, sizes = image_sizes(paths, on_error, annotations)
    records, by_id = [], {}
    for position, size in zip(kept, sizes):
        image_id, path, recorded = image_list[position]
        check_recorded_size(path, recorded, size, f"Image {image_id} of {name!r}")
        by_id[image_id] = Record(path, size, ("iscrowd",) if keep_crowd else ())
        records.append(by_id[image_id])
    known_images = {image_id for image_id, _, _ in image_list}
    index_of = {category_id: k + 1 for k, category_id in enumerate(categories)}
    paths_by_id = {image_id: path for image_id, path, _ in image_list}
    empty = []
    for position, annotation in enumerate(data.get("annotations", [])):
        image_id = annotation.get("image_id") if isinstance(annotation, dict) else None
        where = _where(annotation, position, paths_by_id.get(image_id), name)
        if image_id not in known_images:
            raise ValueError(f"{where}: its image_id {image_id!r} is not the id of an image "
                             "in 'images'.")
        category = annotation.get("category_id")
        if category not in categories:
            raise ValueError(
                f"{where}: its category_id {category!r} is not in 'categories' (ids "
                f"{list(categories)[:20]}).")
        record = by_id.get(image_id)
        if record is None:
            continue  # its image was left out (on_error="skip")
        if task == "detection":
            _add_box(record, {**annotation, "_name": categories[category]}, where,
                     keep_crowd, empty)
        else:
            _add_shape(record, annotation, where, index_of[category])
    warn_empty_boxes(empty, annotations)
    return finish(records, task, as_frame, n_classes=len(categories) + 1)


# --------------------------------------------------------------------------
# Writing.


def _category_ids(categories, labels):
    """``{label name: category id}`` and the categories list to write."""
    if categories is None:
        names = sorted({str(label) for label in labels})
        categories = dict(enumerate(names, start=1))
    elif isinstance(categories, dict):
        categories = {int(key): str(value) for key, value in categories.items()}
    else:
        categories = dict(enumerate((str(name) for name in categories), start=1))
    categories = dict(sorted(categories.items()))
    ids = {name: category_id for category_id, name in categories.items()}
    if len(ids) != len(categories):
        raise ValueError("categories must give each name one id; some names repeat.")
    return ids, [{"id": category_id, "name": name} for category_id, name in categories.items()]


def _reference_ids(reference, paths):
    """The image id of each path in the COCO file ``reference`` (matched as load_coco joins)."""
    data = _read_coco(reference, None)
    name = display_name(reference)
    images = _image_records(data, parent(reference), name)
    by_path = {os.path.normpath(path) if not is_url(path) else path: image_id
               for image_id, path, _ in images}
    by_base = {}
    for image_id, path, _ in images:
        by_base.setdefault(os.path.basename(path), []).append(image_id)
    ids = []
    for path in paths:
        key = os.path.normpath(os.path.abspath(path)) if not is_url(path) else path
        image_id = by_path.get(key, by_path.get(os.path.normpath(path)))
        if image_id is None and len(by_base.get(os.path.basename(path), ())) == 1:
            image_id = by_base[os.path.basename(path)][0]
        if image_id is None:
            raise ValueError(f"The image {display_name(path)!r} is not one of {name!r}'s images: "
                             "its predictions would have no image id.")
        ids.append(image_id)
    return ids, _categories(data, name)


def _write_json(document, file):
    text = json.dumps(document)
    if is_url(file):
        fs, inner = _filesystem(file)
        with fs.open(inner, "w") as handle:
            handle.write(text)
        return
    folder = os.path.dirname(os.path.abspath(file))
    # Written whole or not at all: a temporary file renamed over the target.
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".coco-", suffix=".json")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.replace(temporary, file)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def _targets_list(targets, n_images):
    if hasattr(targets, "columns"):
        targets = frame_to_targets(targets, n_images)
        return targets
    if not isinstance(targets, (list, tuple)) or len(targets) != n_images:
        length = len(targets) if hasattr(targets, "__len__") else None
        raise ValueError(f"Expected one target dict per image ({n_images}); got "
                         f"{type(targets).__name__} of length {length}.")
    for index, target in enumerate(targets):
        if not hasattr(target, "keys") or "boxes" not in target or "labels" not in target:
            raise ValueError(f"Target {index} must be a dict with 'boxes' (k, 4) xyxy and "
                             f"'labels' (k,); got {type(target).__name__}.")
    return targets


def save_coco(paths, targets, file, *, categories=None):
    """Write detection targets, or a detector's predictions, as COCO JSON.

    Targets without scores are written as a COCO annotation file (images
    with their size and ``file_name`` relative to the file's folder,
    annotations, categories), which :func:`load_coco` reads back exactly
    (boxes as float32, labels as str). Targets with ``"scores"`` (as
    ``FasterRCNNDetector.predict`` returns them) are written as a COCO
    results file, a list of ``{"image_id", "category_id", "bbox",
    "score"}``, which pycocotools' ``COCO.loadRes`` and the annotation tools
    read. The file is written with ``json``, whole or not at all.

    Parameters
    ----------
    paths : array-like of str
        The image files, one per target.
    targets : list of dict or DataFrame
        One dict per image with ``"boxes"`` ``(k, 4)`` xyxy pixels and
        ``"labels"`` ``(k,)``, optionally ``"iscrowd"`` ``(k,)``; or the
        detector's box DataFrame. With ``"scores"`` (a ``score`` column),
        predictions.
    file : str or path-like
        The JSON file to write (a local path or a URL).
    categories : dict, list of str, str or None, default=None
        The category ids: ``{id: name}`` (:func:`coco_categories`), a list
        of names (ids 1, 2, ...), or None for the sorted label names with
        ids from 1. Or the COCO annotation file the predictions are of: its
        category ids, and the image ids of its images, each path matched to
        the image of that file (as :func:`load_coco` joins ``file_name``, or
        by file name where one image has it). Without it, image ids are the
        positions in ``paths`` plus 1, as an annotation file written by
        this function for the same paths numbers them.

    Returns
    -------
    None

    See Also
    --------
    load_coco : Read a COCO annotation file.
    coco_categories : A file's category ids.

    Examples
    --------
    >>> import json, os, tempfile
    >>> from skvision.datasets import save_coco
    >>> file = os.path.join(tempfile.mkdtemp(), "results.json")
    >>> predictions = [{"boxes": [[2, 2, 10, 12]], "labels": ["cat"], "scores": [0.9]}]
    >>> save_coco(["a.jpg"], predictions, file, categories={7: "cat"})
    >>> json.load(open(file))
    [{'image_id': 1, 'category_id': 7, 'bbox': [2.0, 2.0, 8.0, 10.0], 'score': 0.9}]
    """
    paths = as_paths(list(paths) if not hasattr(paths, "iloc") else paths) or []
    if not paths:
        raise ValueError("paths must be a non-empty list of image file paths.")
    targets = _targets_list(targets, len(paths))
    with_scores = ["scores" in target for target in targets]
    if any(with_scores) and not all(with_scores):
        raise ValueError("Either every target has 'scores' (predictions) or none (ground "
                         f"truth); target {with_scores.index(not with_scores[0])} differs.")
    labels = [label for target in targets for label in np.asarray(target["labels"]).ravel()]
    image_ids = list(range(1, len(paths) + 1))
    if isinstance(categories, (str, os.PathLike)):
        image_ids, categories = _reference_ids(os.fspath(categories), paths)
    ids, category_list = _category_ids(categories, labels)
    annotations = []
    for index, (image_id, target) in enumerate(zip(image_ids, targets)):
        boxes = np.asarray(target["boxes"], dtype=np.float64).reshape(-1, 4)
        names = [str(label) for label in np.asarray(target["labels"]).ravel()]
        if len(names) != len(boxes):
            raise ValueError(f"Target {index} has {len(boxes)} boxes and {len(names)} labels.")
        unknown = sorted(set(names) - set(ids))
        if unknown:
            raise ValueError(f"Target {index} has labels {unknown} that are not in categories "
                             f"{sorted(ids)}.")
        extra = np.asarray(target.get("scores" if all(with_scores) else "iscrowd",
                                      np.zeros(len(boxes)))).ravel()
        for box, label, value in zip(boxes, names, extra):
            x, y = float(box[0]), float(box[1])
            w, h = float(box[2]) - x, float(box[3]) - y
            entry = {"image_id": image_id, "category_id": ids[label], "bbox": [x, y, w, h]}
            if all(with_scores):
                entry["score"] = float(value)
            else:
                entry = {"id": len(annotations) + 1, **entry, "area": w * h,
                         "iscrowd": int(bool(value))}
            annotations.append(entry)
    file = os.fspath(file)
    if all(with_scores):
        _write_json(annotations, file)
        return
    _, sizes, _ = scan_files(paths)
    folder = parent(file)
    images = [{"id": image_id, "file_name": _relative(path, folder),
               "width": int(size[1]), "height": int(size[0])}
              for image_id, path, size in zip(image_ids, paths, sizes)]
    _write_json({"images": images, "annotations": annotations, "categories": category_list},
                file)


def _relative(path, folder):
    """``path`` relative to the JSON's ``folder`` ('/' separators), so that the two move
    together; a URL outside a URL folder, or a path on another drive, whole."""
    if is_url(path) or is_url(folder):
        prefix = folder.rstrip("/") + "/"
        return path[len(prefix):] if path.startswith(prefix) else path
    try:
        return os.path.relpath(os.path.abspath(path), folder).replace(os.sep, "/")
    except ValueError:  # another drive (Windows)
        return os.path.abspath(path)
