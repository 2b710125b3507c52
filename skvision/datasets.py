"""Built-in image data (sklearn's digits, synthetic shapes), image folders, and labels
as annotation tools export them: COCO JSON, Pascal VOC XML and YOLO txt folders."""

import numbers
import os
import warnings

import numpy as np
import pandas as pd
from sklearn.datasets import load_digits
from sklearn.utils import Bunch, check_random_state
from sklearn.utils.validation import check_scalar

from ._coco import coco_categories, load_coco, save_coco
from ._data import DECODE_ERRORS
from ._storage import display_name, is_url, list_files, open_sources
from ._voc_yolo import load_voc, load_yolo

__all__ = [
    "coco_categories",
    "load_coco",
    "load_digit_images",
    "load_image_folder",
    "load_textures",
    "load_voc",
    "load_yolo",
    "make_shapes",
    "pixel_feature_names",
    "save_coco",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")

SHAPE_NAMES = ("circle", "square", "triangle")


def pixel_feature_names(image_shape):
    """Names of the flattened pixels of ``(h, w, c)`` images: ``px_r{row}_c{col}_ch{c}``.

    Parameters
    ----------
    image_shape : tuple of int
        ``(height, width, channels)``.

    Returns
    -------
    names : ndarray of str, shape (height * width * channels,)
        In the order of a C-order flattening.

    Examples
    --------
    >>> from skvision.datasets import pixel_feature_names
    >>> pixel_feature_names((2, 2, 1))[:3]
    array(['px_r0_c0_ch0', 'px_r0_c1_ch0', 'px_r1_c0_ch0'], dtype=object)
    """
    height, width, channels = image_shape
    return np.array(
        [
            f"px_r{row}_c{col}_ch{channel}"
            for row in range(height)
            for col in range(width)
            for channel in range(channels)
        ],
        dtype=object,
    )


def load_digit_images(*, return_X_y=False, as_frame=False):
    """Load sklearn's handwritten digits as 8x8 grayscale images.

    The 1,797 images of :func:`sklearn.datasets.load_digits`, scaled from
    0..16 to [0, 1] float32 and kept in their image shape.

    Parameters
    ----------
    return_X_y : bool, default=False
        Return ``(images, target)`` instead of a Bunch.
    as_frame : bool, default=False
        Return the flattened pixels as a DataFrame (columns
        ``px_r{row}_c{col}_ch0``) and the target as a Series.

    Returns
    -------
    data : Bunch or tuple
        ``images`` (n, 8, 8), ``data`` (n, 64) flat pixels, ``target``,
        ``target_names``, ``frame`` (with ``as_frame=True``) and ``DESCR``;
        or ``(images, target)`` with ``return_X_y=True`` (with ``as_frame``:
        ``(DataFrame, Series)``).

    Examples
    --------
    >>> from skvision.datasets import load_digit_images
    >>> X, y = load_digit_images(return_X_y=True)
    >>> X.shape, X.dtype.name, float(X.max())
    ((1797, 8, 8), 'float32', 1.0)
    """
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    target = digits.target
    data = images.reshape(len(images), -1)
    frame = None
    if as_frame:
        data = pd.DataFrame(data, columns=pixel_feature_names((8, 8, 1)))
        target = pd.Series(target, name="target")
        frame = pd.concat([data, target], axis=1)
        if return_X_y:
            return data, target
    elif return_X_y:
        return images, target
    return Bunch(
        images=images,
        data=data,
        target=target,
        frame=frame,
        target_names=digits.target_names,
        DESCR=digits.DESCR,
    )


def _shape_mask(kind, rows, cols, center, radius):
    """Boolean mask of one shape on a pixel grid."""
    cy, cx = center
    if kind == "circle":
        return (rows - cy) ** 2 + (cols - cx) ** 2 <= radius**2
    if kind == "square":
        return (np.abs(rows - cy) <= radius) & (np.abs(cols - cx) <= radius)
    # An upward triangle: inside the base and the two slanted edges.
    top, bottom = cy - radius, cy + radius
    half_width = (rows - top) / (2 * radius) * radius
    return (rows >= top) & (rows <= bottom) & (np.abs(cols - cx) <= half_width)


def make_shapes(
    n_samples=100,
    image_size=32,
    *,
    task="classification",
    max_objects=3,
    noise=0.05,
    random_state=None,
):
    """Generate RGB images of circles, squares and triangles.

    Each image has a random background colour, pixel noise and shapes of
    random colour, size and position. The labels depend on ``task``.

    Parameters
    ----------
    n_samples : int, default=100
        Number of images.
    image_size : int, default=32
        Side of the square images (at least 8).
    task : {"classification", "segmentation", "detection", "multilabel"}, \
            default="classification"
        ``"classification"``: one shape per image, ``y`` its name.
        ``"segmentation"``: 1 to ``max_objects`` shapes, ``y`` an integer
        mask ``(n, h, w)`` with 0 for background and 1, 2, 3 for circle,
        square, triangle (later shapes drawn on top).
        ``"detection"``: 1 to ``max_objects`` non-overlapping shapes, ``y`` a
        list of dicts ``{"boxes": (k, 4) float xyxy, "labels": (k,) str}``.
        ``"multilabel"``: the detection images, ``y`` a multilabel-indicator
        matrix ``(n, 3)`` of int: which of circle, square and triangle each
        image contains (the tags of a multi-label classifier).
    max_objects : int, default=3
        Most shapes per image for segmentation and detection.
    noise : float, default=0.05
        Standard deviation of the gaussian pixel noise (on the [0, 1] scale).
    random_state : int, RandomState instance or None, default=None
        Seed for reproducible data.

    Returns
    -------
    X : ndarray of shape (n_samples, image_size, image_size, 3), dtype uint8
        The images.
    y : ndarray or list
        Labels, masks or box dicts, as described under ``task``.

    Examples
    --------
    >>> from skvision.datasets import make_shapes
    >>> X, y = make_shapes(10, image_size=16, random_state=0)
    >>> X.shape, sorted(set(y)) <= ["circle", "square", "triangle"]
    ((10, 16, 16, 3), True)
    """
    check_scalar(n_samples, "n_samples", numbers.Integral, min_val=1)
    check_scalar(image_size, "image_size", numbers.Integral, min_val=8)
    check_scalar(max_objects, "max_objects", numbers.Integral, min_val=1)
    if task not in ("classification", "segmentation", "detection", "multilabel"):
        raise ValueError(
            "task must be 'classification', 'segmentation', 'detection' or 'multilabel'; "
            f"got {task!r}."
        )
    rng = check_random_state(random_state)
    rows, cols = np.mgrid[0:image_size, 0:image_size].astype(np.float64)
    images = np.empty((n_samples, image_size, image_size, 3), dtype=np.float64)
    targets = []
    for index in range(n_samples):
        background = rng.uniform(0, 1, 3)
        image = np.broadcast_to(background, (image_size, image_size, 3)).copy()
        n_objects = 1 if task == "classification" else rng.randint(1, max_objects + 1)
        mask = np.zeros((image_size, image_size), dtype=np.int64)
        boxes, labels = [], []
        for _ in range(n_objects):
            kind = rng.randint(len(SHAPE_NAMES))
            radius = rng.uniform(0.12, 0.25) * image_size
            for _attempt in range(20):
                center = rng.uniform(radius, image_size - 1 - radius, 2)
                box = (center[1] - radius, center[0] - radius,
                       center[1] + radius, center[0] + radius)
                if task not in ("detection", "multilabel") or all(
                        not _overlap(box, other) for other in boxes):
                    break
            else:
                continue  # no free place left for another object
            colour = (background + rng.uniform(0.35, 0.65, 3)) % 1.0
            inside = _shape_mask(SHAPE_NAMES[kind], rows, cols, center, radius)
            image[inside] = colour
            mask[inside] = kind + 1
            boxes.append(box)
            labels.append(SHAPE_NAMES[kind])
        images[index] = image
        if task == "classification":
            targets.append(labels[0])
        elif task == "segmentation":
            targets.append(mask)
        else:
            targets.append(_boxes_dict(boxes, labels, image_size))
    images += rng.normal(0, noise, images.shape)
    X = (np.clip(images, 0, 1) * 255).round().astype(np.uint8)
    if task == "classification":
        return X, np.array(targets, dtype=object)
    if task == "segmentation":
        return X, np.stack(targets)
    if task == "multilabel":
        return X, np.array([[int(name in target["labels"]) for name in SHAPE_NAMES]
                            for target in targets])
    return X, targets


def _overlap(box, other):
    return not (box[2] < other[0] or other[2] < box[0] or box[3] < other[1] or other[3] < box[1])


def _boxes_dict(boxes, labels, image_size):
    boxes = np.clip(np.asarray(boxes, dtype=np.float32).reshape(-1, 4), 0, image_size)
    return {"boxes": boxes, "labels": np.array(labels, dtype=object)}


TEXTURE_NAMES = ("brick", "grass", "gravel")


def load_textures(*, patch_size=48, n_per_region=20, random_state=0):
    """Patches of scikit-image's brick, grass and gravel photographs.

    A small real-image set that ships offline: each 512x512 texture photo is
    split into 4 quadrants (regions) and ``n_per_region`` random patches are
    cut from each, randomly flipped and rotated by multiples of 90 degrees.
    Pass ``groups`` to :class:`~sklearn.model_selection.GroupKFold` so test
    patches come from regions never seen in training.

    Parameters
    ----------
    patch_size : int, default=48
        Side of the square grayscale patches (at most 256).
    n_per_region : int, default=20
        Patches per quadrant of each photo.
    random_state : int, RandomState instance or None, default=0
        Seed of the patch positions and orientations.

    Returns
    -------
    X : ndarray of shape (3 * 4 * n_per_region, patch_size, patch_size), uint8
    y : ndarray of str
        The texture of each patch.
    groups : ndarray of int
        The quadrant (0-3) each patch was cut from.

    Examples
    --------
    >>> from skvision.datasets import load_textures
    >>> X, y, groups = load_textures(n_per_region=5)
    >>> X.shape, sorted(set(y.tolist())), sorted(set(groups.tolist()))
    ((60, 48, 48), ['brick', 'grass', 'gravel'], [0, 1, 2, 3])
    """
    from skimage import data

    check_scalar(patch_size, "patch_size", numbers.Integral, min_val=8, max_val=256)
    check_scalar(n_per_region, "n_per_region", numbers.Integral, min_val=1)
    rng = check_random_state(random_state)
    images, labels, groups = [], [], []
    for name in TEXTURE_NAMES:
        photo = getattr(data, name)()
        half = photo.shape[0] // 2
        for region in range(4):
            top, left = (region // 2) * half, (region % 2) * half
            for _ in range(n_per_region):
                row = top + rng.randint(half - patch_size + 1)
                col = left + rng.randint(half - patch_size + 1)
                patch = np.rot90(photo[row : row + patch_size, col : col + patch_size],
                                 rng.randint(4))
                images.append(patch[:, ::-1] if rng.rand() < 0.5 else patch)
                labels.append(name)
                groups.append(region)
    return np.ascontiguousarray(np.stack(images)), np.array(labels), np.array(groups)



def load_image_folder(path, *, extensions=IMAGE_EXTENSIONS, as_frame=False, on_error="raise",
                      storage_options=None):
    """List the images of a ``root/class_name/image.png`` folder with their labels.

    The layout of torchvision's ``ImageFolder``: every sub-folder of ``path``
    is a class, named by the folder, and holds that class's image files
    (sub-folders of those are searched too). Files are returned in sorted
    order, so the result is the same on every machine. Pair it with
    :class:`~skvision.preprocessing.ImageReader` to decode the files inside a
    pipeline, so that only the images a step needs are read.

    ``path`` may be a prefix in object storage or any fsspec URL
    (``s3://bucket/train``, ``gs://...``, ``az://...``,
    ``zip://train::s3://bucket/images.zip``): the class is then the first
    sub-prefix, the objects are listed with fsspec's ``find``, and the
    result holds their URLs, which every skvision estimator reads.

    Parameters
    ----------
    path : str or path-like
        The root folder, or a URL prefix.
    extensions : tuple of str, default=IMAGE_EXTENSIONS
        File name endings (case-insensitive) that count as images.
    as_frame : bool, default=False
        Return a DataFrame with columns ``path`` and ``label`` instead of the
        ``(paths, labels)`` tuple.
    on_error : {"raise", "skip"}, default="raise"
        "raise" lists the files without opening them (a broken file raises
        an error naming it when ImageReader decodes it); "skip" checks every
        file now and leaves out those that cannot be decoded (truncated,
        corrupt, or over Pillow's decompression-bomb limit), with one warning
        listing them.
    storage_options : dict, default=None
        Options of the fsspec filesystem that lists a URL prefix (e.g.
        ``{"anon": True}`` for a public S3 bucket). They apply to the listing
        only: estimators read the URLs with fsspec's configuration
        (``fsspec.config.conf`` or ``FSSPEC_<PROTOCOL>_<OPTION>`` environment
        variables) and the cloud SDK's own, which these options do not change.

    Returns
    -------
    paths : ndarray of str, shape (n_images,)
        File paths (URLs for a URL prefix).
    labels : ndarray of str, shape (n_images,)
        The class (folder) name of each file.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from PIL import Image
    >>> from skvision.datasets import load_image_folder
    >>> root = tempfile.mkdtemp()
    >>> for label in ("cat", "dog"):
    ...     os.makedirs(os.path.join(root, label))
    ...     Image.fromarray(np.zeros((8, 8), np.uint8)).save(os.path.join(root, label, "a.png"))
    >>> paths, labels = load_image_folder(root)
    >>> labels
    array(['cat', 'dog'], dtype=object)
    """
    path = os.fspath(path)
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip'; got {on_error!r}.")
    suffixes = tuple(extension.lower() for extension in extensions)
    if is_url(path):
        paths, labels = _list_remote(path, suffixes, storage_options)
    else:
        paths, labels = _list_local(path, suffixes)
    if on_error == "skip":
        readable = _decodes(paths)
        skipped = [display_name(file) for file, ok in zip(paths, readable) if not ok]
        if skipped:
            warnings.warn(
                f"Skipped {len(skipped)} image file(s) that cannot be decoded: {skipped}",
                UserWarning, stacklevel=2,
            )
        labels = [label for label, ok in zip(labels, readable) if ok]
        paths = [file for file, ok in zip(paths, readable) if ok]
    if not paths:
        raise ValueError(
            f"Found no image files ({', '.join(suffixes)}) in class sub-folders of "
            f"{display_name(path)!r}; "
            "expected the layout root/class_name/image.png."
        )
    paths, labels = np.array(paths, dtype=object), np.array(labels, dtype=object)
    if as_frame:
        return pd.DataFrame({"path": paths, "label": labels})
    return paths, labels


def _is_image_name(name, suffixes):
    return name.lower().endswith(suffixes) and not name.startswith(".")


def _list_local(path, suffixes):
    if not os.path.isdir(path):
        raise FileNotFoundError(f"Image folder not found: {path!r}.")
    paths, labels = [], []
    classes = sorted(entry.name for entry in os.scandir(path)
                     if entry.is_dir() and not entry.name.startswith("."))
    for label in classes:
        for folder, subfolders, files in os.walk(os.path.join(path, label)):
            subfolders.sort()
            for name in sorted(files):
                if _is_image_name(name, suffixes):
                    paths.append(os.path.join(folder, name))
                    labels.append(label)
    return paths, labels


def _list_remote(url, suffixes, storage_options):
    """Image URLs under a prefix; the class is the first sub-prefix (hidden ones left out)."""
    paths, labels = [], []
    for relative, file_url in list_files(url, storage_options):
        parts = relative.split("/")
        if (len(parts) > 1 and not any(part.startswith(".") for part in parts)
                and _is_image_name(parts[-1], suffixes)):
            paths.append(file_url)
            labels.append(parts[0])
    return paths, labels


# Files decoded at once by on_error="skip": URLs fetched together, memory bounded.
_CHECK_CHUNK = 256


def _decodes(paths):
    """Whether Pillow decodes each whole file (its decompression-bomb guard on)."""
    from PIL import Image

    readable = []
    for first in range(0, len(paths), _CHECK_CHUNK):
        for source in open_sources(paths[first:first + _CHECK_CHUNK], errors="return"):
            try:
                if isinstance(source, BaseException):
                    raise OSError("cannot be read") from source
                with Image.open(source) as image:
                    image.load()
            except DECODE_ERRORS:
                readable.append(False)
            else:
                readable.append(True)
    return readable
