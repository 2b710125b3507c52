"""Pascal VOC XML and YOLO txt folders in: :func:`load_voc`, :func:`load_yolo`.

Re-exported by :mod:`skvision.datasets`, where they are documented. VOC's XML
is parsed by ``xml.etree.ElementTree`` (expat), YOLO's ``data.yaml`` by
PyYAML's ``safe_load``; a YOLO label line is whitespace-separated numbers.
"""

import os
import pyexpat
import re
import xml.etree.ElementTree as ElementTree

import numpy as np

from ._annotations import (
    Record,
    check_options,
    check_recorded_size,
    checked_box,
    finish,
    image_sizes,
    join,
    list_folder,
    parent,
    polygon_rle,
    read_file,
    read_files,
    warn_empty_boxes,
)
from ._storage import display_name, is_url

__all__ = ["load_voc", "load_yolo"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
# expat 2.4.1 and later refuse entity expansion beyond a fixed amplification
# ("billion laughs"); ElementTree never resolves external entities.
_EXPAT_LIMITS_ENTITIES = pyexpat.version_info >= (2, 4, 1)


# --------------------------------------------------------------------------
# Pascal VOC.


def _parse_xml(content, name):
    if not _EXPAT_LIMITS_ENTITIES and b"<!ENTITY" in content:
        raise ValueError(f"{name!r} declares XML entities, which this Python's expat "
                         f"{pyexpat.EXPAT_VERSION} does not limit: refused.")
    try:
        return ElementTree.fromstring(content)
    except ElementTree.ParseError as error:
        raise ValueError(f"Cannot parse {name!r} as XML: {error}.") from None


def _number(element, tag, where):
    child = element.find(tag)
    try:
        return float(child.text)
    except (AttributeError, TypeError, ValueError):
        raise ValueError(f"{where}: expected a number in <{tag}>; got "
                         f"{None if child is None else child.text!r}.") from None


def _voc_ids(folder, image_set, storage_options):
    annotations = join(folder, "Annotations")
    if image_set is None:
        names = [relative for relative, _ in list_folder(annotations, storage_options)
                 if relative.lower().endswith(".xml") and "/" not in relative]
        if not names:
            raise ValueError(f"Found no .xml files in {display_name(annotations)!r}; expected "
                             "the Pascal VOC layout Annotations/*.xml, JPEGImages/.")
        return [name[:-4] for name in names]
    listing = join(folder, f"ImageSets/Main/{image_set}.txt")
    text = read_file(listing, storage_options, "Image set file").decode("utf-8")
    # A line is an image id, or in the per-class sets "id 1" / "id -1".
    return [line.split()[0] for line in text.splitlines() if line.strip()]


def _voc_objects(root, where_file, keep_difficult):
    objects = []
    for number, element in enumerate(root.iter("object")):
        name = element.findtext("name")
        where = f"Object {number} ({name!r}) of {where_file}"
        if not name or not name.strip():
            raise ValueError(f"{where} has no <name>.")
        difficult = element.findtext("difficult", "0").strip() not in ("0", "", "false")
        if difficult and not keep_difficult:
            continue
        box = element.find("bndbox")
        if box is None:
            raise ValueError(f"{where} has no <bndbox> with <xmin>, <ymin>, <xmax>, <ymax>.")
        corners = [_number(box, tag, where) for tag in ("xmin", "ymin", "xmax", "ymax")]
        # 1-based pixel indices, both ends inclusive: pixel i spans [i - 1, i).
        objects.append((name.strip(), difficult, [corners[0] - 1, corners[1] - 1,
                                                  corners[2], corners[3]], where))
    return objects


def load_voc(folder, *, image_set=None, keep_difficult=False, as_frame=False, on_error="raise",
             storage_options=None):
    """Load a Pascal VOC folder: image paths and their boxes.

    The layout of the PASCAL VOC challenge, which LabelImg, CVAT and
    Roboflow also export: ``Annotations/<id>.xml`` (one file per image,
    read with ``xml.etree.ElementTree``), the images in ``JPEGImages/``
    (the file ``<filename>`` names, else ``<id>.jpg``), and optionally
    ``ImageSets/Main/<set>.txt`` listing the ids of a split. Box corners
    are VOC's 1-based inclusive pixel indices (``xmin=1`` is the first
    column): ``xmin - 1, ymin - 1, xmax, ymax`` are the 0-based xyxy pixel
    coordinates returned. Images without objects are kept with empty
    targets. As in :func:`load_coco`, the files' headers are read to check
    them against ``<size>``, boxes outside the image raise an error naming
    the XML file and the object, and labels are the ``<name>`` of each
    object.

    Parameters
    ----------
    folder : str or path-like
        The folder holding ``Annotations/`` and ``JPEGImages/`` (or a URL
        prefix).
    image_set : str, default=None
        A split, e.g. "train": the ids listed in
        ``ImageSets/Main/<image_set>.txt``. None: every XML file of
        ``Annotations/``, sorted.
    keep_difficult : bool, default=False
        Whether objects marked ``<difficult>1`` are kept. By default they
        are left out, as VOC's evaluation ignores them. Kept, each target
        has a ``"difficult"`` bool array (a ``difficult`` column with
        ``as_frame``).
    as_frame : bool, default=False
        The targets as the detector's box DataFrame (columns ``image_id,
        x_min, y_min, x_max, y_max, label``).
    on_error : {"raise", "skip"}, default="raise"
        What an image file that is missing or cannot be read does: raise an
        error naming it, or be left out with one warning listing them.
    storage_options : dict, default=None
        Options of the fsspec filesystem that lists and reads the
        annotations at a URL; the images are read with fsspec's
        configuration, as in :func:`load_image_folder`.

    Returns
    -------
    paths : ndarray of str, shape (n_images,)
        The image files.
    targets : list of dict or DataFrame
        One dict per image with ``"boxes"`` ``(k, 4)`` float32 xyxy pixels
        and ``"labels"`` ``(k,)`` str, or the box DataFrame.

    See Also
    --------
    load_coco, load_yolo : The other annotation formats.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from PIL import Image
    >>> from skvision.datasets import load_voc
    >>> root = tempfile.mkdtemp()
    >>> for sub in ("Annotations", "JPEGImages"):
    ...     os.makedirs(os.path.join(root, sub))
    >>> Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(
    ...     os.path.join(root, "JPEGImages", "a.jpg"))
    >>> with open(os.path.join(root, "Annotations", "a.xml"), "w") as file:
    ...     _ = file.write("<annotation><filename>a.jpg</filename><object><name>cat</name>"
    ...                    "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>10</xmax>"
    ...                    "<ymax>20</ymax></bndbox></object></annotation>")
    >>> paths, targets = load_voc(root)
    >>> targets[0]["boxes"], targets[0]["labels"]
    (array([[ 0.,  0., 10., 20.]], dtype=float32), array(['cat'], dtype=object))
    """
    check_options("detection", as_frame, on_error)
    folder = os.fspath(folder)
    ids = _voc_ids(folder, image_set, storage_options)
    xml_paths = [join(folder, f"Annotations/{ident}.xml") for ident in ids]
    contents = read_files(xml_paths, "Annotation file")
    parsed = []
    for ident, path, content in zip(ids, xml_paths, contents):
        name = display_name(path)
        if content is None:
            raise FileNotFoundError(f"Annotation file not found: {name!r} (image id {ident!r}).")
        root = _parse_xml(content, name)
        filename = (root.findtext("filename") or "").strip() or f"{ident}.jpg"
        size = root.find("size")
        recorded = (None, None) if size is None else tuple(
            int(_number(size, tag, repr(name))) for tag in ("width", "height"))
        parsed.append((join(folder, f"JPEGImages/{filename}"), name, recorded,
                       _voc_objects(root, repr(name), keep_difficult)))
    kept, sizes = image_sizes([image for image, _, _, _ in parsed], on_error,
                              join(folder, "Annotations"))
    records, empty = [], []
    for position, size in zip(kept, sizes):
        image, name, recorded, objects = parsed[position]
        check_recorded_size(image, recorded, size, repr(name))
        record = Record(image, size, ("difficult",) if keep_difficult else ())
        for label, difficult, corners, where in objects:
            box = checked_box(corners, size[1], size[0], where)
            if box is None:
                empty.append(where)
                continue
            record.boxes.append(box)
            record.labels.append(label)
            if keep_difficult:
                record.flags["difficult"].append(difficult)
        records.append(record)
    warn_empty_boxes(empty, folder)
    return finish(records, "detection", as_frame)


# --------------------------------------------------------------------------
# YOLO (Ultralytics).


def _label_path(image):
    """Ultralytics' rule: the last ``images`` folder of the path becomes ``labels``, ``.txt``."""
    separator = "/" if is_url(image) else os.sep
    before, _, after = image.rpartition(f"{separator}images{separator}")
    return f"{before}{separator}labels{separator}{os.path.splitext(after)[0]}.txt"


def _yolo_images(folder, storage_options):
    """The image files under an ``images`` folder below ``folder`` (or ``folder`` is in one)."""
    files = [(relative, full) for relative, full in list_folder(folder, storage_options)
             if relative.lower().endswith(IMAGE_SUFFIXES)
             and not relative.rsplit("/", 1)[-1].startswith(".")]
    paths = [full for relative, full in files if re.search(r"(^|/)images/", relative)]
    if not paths:  # folder is itself inside an images folder: one split
        separator = "/" if is_url(folder) else os.sep
        paths = [full for _, full in files if f"{separator}images{separator}" in full]
    if not paths:
        raise ValueError(
            f"Found no image files in an images/ folder under {display_name(folder)!r}; "
            "expected Ultralytics' layout: images/ and labels/ side by side (each with "
            "the same split sub-folders, if any), one .txt per image."
        )
    return paths


def _class_names(folder, class_names, storage_options):
    """``{class id: name}`` from ``class_names`` or the nearest ``data.yaml``."""
    if class_names is None:
        import yaml

        candidates = [folder, parent(folder), parent(parent(folder))]
        for candidate in candidates:
            file = join(candidate, "data.yaml")
            try:
                content = read_file(file, storage_options)
            except FileNotFoundError:
                continue
            try:
                document = yaml.safe_load(content)
            except yaml.YAMLError as error:
                raise ValueError(f"Cannot read {display_name(file)!r} as YAML: {error}") \
                    from None
            class_names = document.get("names") if isinstance(document, dict) else None
            if class_names is None:
                raise ValueError(f"{display_name(file)!r} has no 'names:' (a list of class "
                                 "names, or a mapping of class id to name).")
            source = repr(display_name(file))
            break
        else:
            raise ValueError(
                f"Found no data.yaml in {display_name(folder)!r} or the two folders above it; "
                "pass class_names=[...] (the name of class 0, 1, ...)."
            )
    else:
        source = "class_names"
    if isinstance(class_names, dict):
        items = list(class_names.items())
    elif isinstance(class_names, (list, tuple)):
        items = list(enumerate(class_names))
    else:
        raise ValueError(f"The class names of {source} must be a list or a mapping of id to "
                         f"name; got {type(class_names).__name__}.")
    if not all(isinstance(key, int) and not isinstance(key, bool) for key, _ in items):
        raise ValueError(f"The class ids of {source} must be integers; got "
                         f"{[key for key, _ in items][:10]}.")
    return {key: str(value) for key, value in items}


def _yolo_line(line, number, where_file, names):
    """``(class id, coordinates)`` of one label line, or a ValueError naming it."""
    where = f"Line {number} of {where_file}"
    values = line.split()
    try:
        class_value = float(values[0])
        coordinates = [float(value) for value in values[1:]]
    except ValueError:
        class_value, coordinates = None, []
    if (class_value is None or class_value != int(class_value)
            or not (len(values) == 5 or (len(values) >= 7 and len(values) % 2))
            or not np.isfinite(coordinates).all()):
        raise ValueError(
            f"{where} is {line.strip()[:80]!r}; expected 'class x_center y_center width "
            "height' or a polygon 'class x1 y1 x2 y2 ...' (at least 3 points): an integer "
            "class and numbers normalised to [0, 1]."
        )
    class_id = int(class_value)
    if class_id not in names:
        raise ValueError(f"{where}: class {class_id} is not one of the classes "
                         f"{sorted(names)[:20]} (data.yaml's names or class_names).")
    return class_id, np.array(coordinates), where


def _yolo_box(coordinates, width, height, where):
    if len(coordinates) == 4:
        cx, cy, w, h = coordinates
        corners = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
    else:  # a polygon: its extent, as Ultralytics' segments2boxes
        xs, ys = coordinates[0::2], coordinates[1::2]
        corners = [xs.min(), ys.min(), xs.max(), ys.max()]
    return checked_box(np.multiply(corners, [width, height, width, height]), width, height,
                       where)


def load_yolo(folder, *, class_names=None, task="detection", as_frame=False, on_error="raise",
              storage_options=None):
    """Load a YOLO (Ultralytics) folder: image paths and their boxes or masks.

    Ultralytics' layout, which Roboflow, CVAT and Label Studio also export:
    ``images/`` and ``labels/`` side by side, with or without split
    sub-folders (``images/train/a.jpg`` and ``labels/train/a.txt``, or
    ``train/images/a.jpg`` and ``train/labels/a.txt``). Every image file
    under an ``images`` folder below ``folder`` is loaded; its label file is
    the same path with the last ``images`` folder replaced by ``labels``
    and a ``.txt`` suffix, one object a line: ``class x_center y_center
    width height`` normalised to [0, 1] by the image's width and height, or
    a polygon ``class x1 y1 x2 y2 ...``. An image without a label file, or
    with an empty one, has no objects. The images' sizes come from their
    headers, EXIF orientation applied. Pass ``folder/images/train`` (or
    ``folder/train``) to load one split.

    Parameters
    ----------
    folder : str or path-like
        The dataset folder (or URL prefix), or one split of it.
    class_names : list of str or dict of int to str, default=None
        The name of each class id. None: the ``names:`` of the first
        ``data.yaml`` found in ``folder`` or the two folders above it (a
        list, or a mapping of id to name), read with PyYAML's
        ``safe_load``.
    task : {"detection", "segmentation"}, default="detection"
        "detection": box dicts with the class names as labels (a polygon's
        box is its extent). "segmentation": polygon lines drawn into
        integer masks, 0 for background and ``class id + 1`` for each
        object, later lines over earlier ones; needs pycocotools (``pip
        install "scikit-vision[coco]"``), which draws them as it draws
        COCO polygons.
    as_frame : bool, default=False
        With ``task="detection"``, the targets as the detector's box
        DataFrame (columns ``image_id, x_min, y_min, x_max, y_max,
        label``).
    on_error : {"raise", "skip"}, default="raise"
        What an image file that cannot be read does: raise an error naming
        it, or be left out with one warning listing them.
    storage_options : dict, default=None
        Options of the fsspec filesystem that lists the folder and reads
        ``data.yaml`` at a URL; images and label files are read with
        fsspec's configuration, as in :func:`load_image_folder`.

    Returns
    -------
    paths : ndarray of str, shape (n_images,)
        The image files, sorted.
    targets : list of dict, DataFrame, ndarray of shape (n_images, height, width) or list
        Box dicts (``"boxes"`` float32 xyxy pixels, ``"labels"`` str), the
        box DataFrame, or masks (one array when all images share a size,
        else a list).

    See Also
    --------
    load_coco, load_voc : The other annotation formats.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from PIL import Image
    >>> from skvision.datasets import load_yolo
    >>> root = tempfile.mkdtemp()
    >>> for sub in ("images", "labels"):
    ...     os.makedirs(os.path.join(root, sub))
    >>> Image.fromarray(np.zeros((20, 40, 3), np.uint8)).save(os.path.join(root, "images", "a.png"))
    >>> with open(os.path.join(root, "labels", "a.txt"), "w") as file:
    ...     _ = file.write("0 0.25 0.5 0.5 1.0\\n")
    >>> paths, targets = load_yolo(root, class_names=["cat"])
    >>> targets[0]["boxes"], targets[0]["labels"]
    (array([[ 0.,  0., 20., 20.]], dtype=float32), array(['cat'], dtype=object))
    """
    check_options(task, as_frame, on_error)
    folder = os.fspath(folder)
    names = _class_names(folder, class_names, storage_options)
    images = _yolo_images(folder, storage_options)
    kept, sizes = image_sizes(images, on_error, folder)
    label_files = [_label_path(images[position]) for position in kept]
    records, empty = [], []
    for position, size, label_file, content in zip(kept, sizes, label_files,
                                                     read_files(label_files, "Label file")):
        record = Record(images[position], size)
        height, width = size
        lines = [] if content is None else content.decode("utf-8").splitlines()
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            class_id, coordinates, where = _yolo_line(line, number,
                                                      repr(display_name(label_file)), names)
            if task == "detection":
                box = _yolo_box(coordinates, width, height, where)
                if box is None:
                    empty.append(where)
                    continue
                record.boxes.append(box)
                record.labels.append(names[class_id])
                continue
            if len(coordinates) == 4:
                raise ValueError(f"{where} is a box (class and 4 numbers); task='segmentation' "
                                 "needs polygon lines 'class x1 y1 x2 y2 ...'.")
            _yolo_box(coordinates, width, height, where)  # its points inside the image
            polygon = (coordinates.reshape(-1, 2) * [width, height]).ravel().tolist()
            record.shapes.append((class_id + 1, polygon_rle([polygon], height, width, where)))
        records.append(record)
    warn_empty_boxes(empty, folder)
    return finish(records, task, as_frame, n_classes=max(names) + 2)
