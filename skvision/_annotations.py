"""What the annotation loaders share: reading files, image sizes, boxes, masks, targets.

:mod:`skvision._coco` (COCO JSON) and :mod:`skvision._voc_yolo` (Pascal VOC
XML and YOLO txt folders) turn an annotation format into one list of
:class:`Record`, one per image; :func:`finish` turns those into the
targets the estimators take (box dicts, a box DataFrame, or class-index
masks). Every error names the file and the annotation (``where``).

Libraries do the parsing: ``json``, ``xml.etree.ElementTree``, PyYAML's
``safe_load`` and ``pycocotools.mask`` (an optional dependency, imported only
to draw masks).
"""

import io
import os
import posixpath
import warnings

import numpy as np

from ._data import scan_files
from ._pixels import _QUARTER_TURNS, _orientation
from ._storage import _filesystem, display_name, is_url, list_files, read_bytes, redact_text
from ._validation import targets_to_frame

_COCO_EXTRA = 'pip install "scikit-vision[coco]"'
# Box corners this far outside the image (pixels) are annotation tools'
# rounding: clipped to the image. Further out is an error.
BOX_TOLERANCE = 1.0


def check_options(task, as_frame, on_error):
    if task not in ("detection", "segmentation"):
        raise ValueError(f"task must be 'detection' or 'segmentation'; got {task!r}.")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip'; got {on_error!r}.")
    if as_frame and task == "segmentation":
        raise ValueError("as_frame=True gives detection targets as a box DataFrame; "
                         "task='segmentation' gives masks: leave as_frame False.")


def import_mask_api():
    """``pycocotools.mask``, or an ImportError naming the extra that installs it."""
    try:
        from pycocotools import mask
    except ImportError as error:
        raise ImportError(
            "Masks from polygons and RLE (task='segmentation') are drawn with pycocotools, "
            f"an optional dependency: {_COCO_EXTRA}."
        ) from error
    return mask


# --------------------------------------------------------------------------
# Files: local paths or URLs.


def join(folder, name):
    """``folder/name`` for a local folder or a URL prefix; an absolute path or URL as it is."""
    name = str(name)
    if is_url(name) or os.path.isabs(name):
        return name
    if is_url(folder):
        base, sep, chain = folder.partition("::")
        return posixpath.join(base.rstrip("/"), name) + (sep + chain if sep else "")
    return os.path.normpath(os.path.join(folder, name))


def parent(path):
    if is_url(path):
        base, sep, chain = path.partition("::")
        return base.rstrip("/").rsplit("/", 1)[0] + (sep + chain if sep else "")
    return os.path.dirname(os.path.abspath(path))


def read_file(path, storage_options=None, what="Annotation file"):
    """The bytes of one file (a URL read through fsspec); FileNotFoundError names it."""
    try:
        if is_url(path):
            fs, inner = _filesystem(path, storage_options)
            return fs.cat_file(inner)
        with open(path, "rb") as file:
            return file.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} not found: {display_name(path)!r}.") from None
    except IsADirectoryError:
        raise FileNotFoundError(f"{what} {display_name(path)!r} is a folder, not a file.") \
            from None


def read_files(paths, what):
    """The bytes of each file, None where it does not exist (URLs read concurrently)."""
    contents = [None] * len(paths)
    remote = [index for index, path in enumerate(paths) if is_url(path)]
    for index, path in enumerate(paths):
        if not is_url(path) and os.path.isfile(path):
            with open(path, "rb") as file:
                contents[index] = file.read()
    for index, content in zip(remote, read_bytes([paths[i] for i in remote])):
        if isinstance(content, FileNotFoundError):
            continue
        if isinstance(content, BaseException):
            raise content
        contents[index] = content
    return contents


def list_folder(folder, storage_options=None):
    """Every file under ``folder``: ``(path relative to it with '/', full path)``, sorted."""
    if is_url(folder):
        return list_files(folder, storage_options)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"Folder not found: {folder!r}.")
    found = []
    for root, subfolders, files in os.walk(folder):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        for name in files:
            full = os.path.join(root, name)
            found.append((os.path.relpath(full, folder).replace(os.sep, "/"), full))
    return sorted(found)


# --------------------------------------------------------------------------
# Images: their decoded sizes, checked against what the annotations recorded.


def image_sizes(paths, on_error, source):
    """Positions of the readable image files and their (height, width) as decoded.

    The sizes come from the files' headers, EXIF orientation applied
    (:func:`skvision._data.scan_files`). A file that cannot be read raises an
    error naming it and ``source``, or is left out with ``on_error="skip"``.
    """
    if not paths:
        raise ValueError(f"{display_name(source)!r} lists no images.")
    try:
        kept, sizes, _ = scan_files(paths, on_error)
    except (OSError, ValueError) as error:
        raise type(error)(
            f"{error} It is an image of {display_name(source)!r}; on_error='skip' leaves out "
            "images that cannot be read."
        ) from error
    return kept, sizes


def check_recorded_size(path, recorded, decoded, where):
    """Raise when the (width, height) an annotation recorded is not the decoded image's.

    The error says whether the file's EXIF orientation explains it (the
    annotations were made on the unrotated pixels).
    """
    width, height = recorded
    if width is None or height is None or (height, width) == tuple(decoded):
        return
    message = (f"{where} records the image {display_name(path)!r} as {width}x{height} "
               f"(width x height), but it decodes to {decoded[1]}x{decoded[0]}")
    rotated = (width, height) == tuple(decoded) and width != height
    orientation = _file_orientation(path) if rotated else 1
    if orientation in _QUARTER_TURNS:
        message += (f": its EXIF orientation ({orientation}) turns it a quarter turn, and the "
                    "annotations were made on the unrotated pixels. skvision reads every image "
                    "upright (EXIF applied); re-export the annotations from the upright image, "
                    "or save the file without its EXIF orientation.")
    else:
        message += ("; no EXIF rotation explains it. Are the annotations of another version "
                    "of this image (resized, cropped)?")
    raise ValueError(message)


def _file_orientation(path):
    from PIL import Image

    try:
        source = path if not is_url(path) else io.BytesIO(read_bytes([path])[0])
        with Image.open(source) as image:
            return _orientation(image)
    except Exception:  # only words an error message
        return 1


# --------------------------------------------------------------------------
# Boxes.


def checked_box(box, width, height, where):
    """An xyxy box in pixels, clipped where it passes the image by tool rounding.

    Returns None for a box without area (a warning counts them); raises a
    ValueError naming ``where`` for a box outside the image.
    """
    box = np.asarray(box, dtype=np.float64)
    x1, y1, x2, y2 = box
    if not np.isfinite(box).all() or x2 < x1 or y2 < y1:
        raise ValueError(
            f"{where}: box {box.tolist()} (x_min, y_min, x_max, y_max pixels) is not a box: "
            "expected finite numbers with x_min <= x_max and y_min <= y_max."
        )
    tol = BOX_TOLERANCE
    if x1 < -tol or y1 < -tol or x2 > width + tol or y2 > height + tol:
        raise ValueError(
            f"{where}: box {[round(float(v), 3) for v in box]} (x_min, y_min, x_max, y_max "
            f"pixels) is outside its {width}x{height} image (width x height)."
        )
    box = np.clip(box, 0, [width, height, width, height])
    if box[2] <= box[0] or box[3] <= box[1]:
        return None
    return box


def warn_empty_boxes(empty, source):
    if empty:
        warnings.warn(
            f"Left out {len(empty)} box(es) without area (width or height 0) of "
            f"{display_name(source)!r}, e.g. {empty[0]}: a detector cannot learn from them.",
            UserWarning, stacklevel=3,
        )


# --------------------------------------------------------------------------
# Per-image records, and the targets made of them.


class Record:
    """One image: its file, its decoded size, and its objects.

    ``boxes``: xyxy float64 pixel boxes; ``labels``: names; ``flags``: per
    box booleans such as ``iscrowd``; ``shapes``: for masks, ``(class index,
    RLE)`` pairs in drawing order.
    """

    __slots__ = ("path", "size", "boxes", "labels", "flags", "shapes")

    def __init__(self, path, size, flag_names=()):
        self.path, self.size = path, size
        self.boxes, self.labels, self.shapes = [], [], []
        self.flags = {name: [] for name in flag_names}


def finish(records, task, as_frame, n_classes=None):
    """``(paths, targets)`` of the records: box dicts, a box DataFrame, or masks."""
    paths = np.array([record.path for record in records], dtype=object)
    if task == "segmentation":
        return paths, _masks(records, n_classes)
    targets = []
    for record in records:
        target = {"boxes": np.asarray(record.boxes, dtype=np.float32).reshape(-1, 4),
                  "labels": np.array(record.labels, dtype=object)}
        for name, values in record.flags.items():
            target[name] = np.array(values, dtype=bool)
        targets.append(target)
    if not as_frame:
        return paths, targets
    frame = targets_to_frame(targets)
    for name in records[0].flags if records else ():
        frame[name] = np.concatenate([target[name] for target in targets]).astype(bool)
    return paths, frame


def _masks(records, n_classes):
    mask_api = import_mask_api() if any(record.shapes for record in records) else None
    dtype = np.uint8 if n_classes < 256 else np.int32
    masks = []
    for record in records:
        mask = np.zeros(record.size, dtype=dtype)
        for index, rle in record.shapes:
            with warnings.catch_warnings():
                # pycocotools 2.0 (its Cython decoder) under numpy 2 warns of its
                # own __array__ signature on every call: nothing the user can act on.
                warnings.filterwarnings("ignore", category=DeprecationWarning,
                                        module="pycocotools")
                # pycocotools' annToMask: the decoded RLE, nonzero pixels inside.
                mask[mask_api.decode(rle) > 0] = index  # later objects drawn on top
        masks.append(mask)
    if len({mask.shape for mask in masks}) == 1:
        return np.stack(masks)
    return masks


def polygon_rle(polygons, height, width, where):
    """pycocotools' RLE of polygons ``[[x1, y1, x2, y2, ...], ...]`` in pixels (merged)."""
    mask_api = import_mask_api()
    for polygon in polygons:
        if (not isinstance(polygon, (list, tuple)) or len(polygon) < 6 or len(polygon) % 2
                or not all(isinstance(v, (int, float)) and np.isfinite(v) for v in polygon)):
            raise ValueError(
                f"{where}: a polygon must be a list of at least 3 points as x1, y1, x2, y2, "
                f"... (an even number, at least 6, of finite numbers); got "
                f"{redact_text(repr(polygon))[:80]}."
            )
    return mask_api.merge(mask_api.frPyObjects([list(map(float, p)) for p in polygons],
                                               height, width))
