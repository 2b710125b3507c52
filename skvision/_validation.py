"""Input validation: the one place where user images and targets are checked.

Every estimator validates its images here at the top of ``fit`` (with
``reset=True``) and of ``predict``/``transform`` (with ``reset=False``):
the neural estimators with :func:`check_image_data`, which also takes file
paths and returns an image set read batch by batch (``skvision._data``),
the image transformers with :func:`check_images`, which returns one float32
tensor ``(n, channels, height, width)``. Both accept every image form listed
in the user guide (docs/architecture.rst shows the data flow); the caller's
data is never modified.
"""

import math
import numbers
import os
import warnings

import numpy as np
import torch
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import (
    assert_all_finite,
    check_array,
    column_or_1d,
    validate_data,
)

from ._data import ArrayImages, FileImages, ListImages, as_paths, scan_files
from ._pixels import file_channels, scale_to_unit

__all__ = [
    "check_images",
    "check_image_data",
    "input_kind",
    "as_height_width",
    "is_image_shape",
    "check_masks",
    "check_boxes",
    "images_like",
    "images_as",
    "image_dtype",
    "image_layout",
    "check_class_labels",
    "encode_labels",
    "check_regression_targets",
    "check_multilabel_targets",
    "is_multilabel",
    "multilabel_positive_weights",
    "check_sample_weight",
    "class_weights",
    "check_image_list",
    "pad_images",
    "frame_to_targets",
    "is_box_frame",
    "select_targets",
    "targets_to_frame",
    "BOX_COLUMNS",
    "LUMA",
]

# ITU-R 601-2 luma weights of R, G, B, as torchvision's rgb_to_grayscale; they
# sum to 1, so the gray image of a gray image is itself. One definition for
# every RGB-to-gray conversion (Grayscale, the augmenter, plot_masks).
LUMA = np.array([0.299, 0.587, 0.114])


def as_height_width(image_size):
    """``(height, width)`` of an ``image_size``-like parameter: an int or a pair; None stays None.

    The parameter itself is checked once, by its declared constraint
    (``skvision._params.image_size``) at the top of ``fit``; this only
    gives it one form.
    """
    if image_size is None:
        return None
    if isinstance(image_size, numbers.Integral):
        return (int(image_size), int(image_size))
    return tuple(int(side) for side in image_size)


def _estimator_name(estimator):
    return type(estimator).__name__ if estimator is not None else "the estimator"


def _list_to_array(images):
    """Stack a list of equally sized images, with clear errors otherwise."""
    if len(images) == 0:
        raise ValueError("Found an empty list of images; expected at least one image.")
    if any(isinstance(image, (str, bytes, os.PathLike)) for image in images):
        raise TypeError(
            "Got file paths where image arrays were expected. Read the files into "
            "arrays first (skvision.preprocessing.ImageReader does this in a "
            "Pipeline)."
        )
    arrays = [
        image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
        for image in images
    ]
    shapes = {array.shape for array in arrays}
    if len(shapes) > 1:
        raise ValueError(
            f"All images must have the same shape; got {len(shapes)} different shapes "
            f"(e.g. {sorted(shapes)[:3]}). Resize them to one size first."
        )
    return np.stack(arrays)


def is_image_shape(image_shape):
    """Whether ``image_shape`` is ``(h, w)`` or ``(h, w, c)`` of ints > 0 (or -1 to infer)."""
    return (isinstance(image_shape, (tuple, list)) and len(image_shape) in (2, 3)
            and all(isinstance(side, numbers.Integral) and not isinstance(side, bool)
                    and (side > 0 or side == -1) for side in image_shape))


def _infer_flat_shape(n_features, image_shape):
    """Turn a flat row length into ``(height, width, channels)``."""
    if image_shape is None:
        for channels in (1, 3):
            side = math.isqrt(n_features // channels)
            if side * side * channels == n_features:
                return (side, side, channels)
        raise ValueError(
            f"Cannot infer the image shape of flat input with {n_features} features "
            "(neither a square grayscale image nor a square RGB image). Pass "
            "image_shape=(height, width) or (height, width, channels)."
        )
    if not is_image_shape(image_shape):
        raise ValueError(
            "image_shape must be (height, width) or (height, width, channels) with "
            f"positive sides (one side may be -1 to infer it); got {image_shape!r}."
        )
    shape = tuple(int(side) for side in image_shape)
    if len(shape) == 2:
        shape = shape + (-1,) if -1 not in shape else shape + (1,)
    known = math.prod(side for side in shape if side != -1)
    if shape.count(-1) > 1 or n_features % known:
        raise ValueError(
            f"X has {n_features} features per row, which cannot be reshaped to "
            f"image_shape={tuple(image_shape)}."
        )
    shape = tuple(n_features // known if side == -1 else side for side in shape)
    if math.prod(shape) != n_features:
        raise ValueError(
            f"X has {n_features} features per row, but image_shape={tuple(image_shape)} "
            f"holds {math.prod(shape)} pixels."
        )
    return shape


def check_images(X, *, estimator=None, reset=True, image_shape=None, channels="last",
                 dtype=np.float32):
    """Validate images in any accepted form and return a float32 tensor.

    For small data and the image transformers; the neural estimators read
    their data batch by batch through :func:`check_image_data` instead.

    Parameters
    ----------
    X : array-like, torch.Tensor, list of arrays or pandas DataFrame
        ``(n, h, w)`` grayscale, ``(n, h, w, c)`` channels-last (or
        ``(n, c, h, w)`` with ``channels="first"``; torch tensors are taken as
        channels-first), a flat ``(n, h*w*c)`` array, or a list of equally
        sized images. uint8 and uint16 data are scaled to [0, 1] (divided by
        255 and 65535); other numbers are kept.
    estimator : estimator instance, optional
        With ``reset=True`` its ``n_features_in_``, ``image_shape_`` and
        ``feature_names_in_`` are set; with ``reset=False`` X is checked
        against them.
    reset : bool, default=True
        True in ``fit``; False in ``predict``/``transform``.
    image_shape : tuple, optional
        ``(h, w)`` or ``(h, w, c)`` of flat rows (one side may be -1). When
        None, a square grayscale or RGB image is inferred.
    channels : {"last", "first"}, default="last"
        Axis of the channels of 4-D numpy input.
    dtype : numpy dtype or None, default=np.float32
        Output dtype; None keeps float64 input in float64 (for exact
        transformers) and gives float32 otherwise.

    Returns
    -------
    images : torch.Tensor of shape (n, c, h, w), dtype float32 (or float64)
    """
    X = _validated_array(X, estimator=estimator, reset=reset, image_shape=image_shape,
                         channels=channels)
    if dtype is None:
        dtype = np.float64 if X.dtype == np.float64 else np.float32
    if X.dtype in (np.uint8, np.uint16):
        X = scale_to_unit(torch.from_numpy(np.ascontiguousarray(X))).numpy()
    images = np.ascontiguousarray(X.transpose(0, 3, 1, 2), dtype=dtype)
    if not images.flags.owndata or not images.flags.writeable:
        # A view of the caller's array: copy, so no in-place tensor operation can
        # ever write into it (and read-only input works).
        images = images.copy()
    return torch.from_numpy(images)


def check_image_data(X, *, estimator=None, reset=True, image_shape=None, channels="last",
                     image_size=None, on_error="raise", file_size=None, share=None,
                     interpolation="bilinear"):
    """Validate images in any accepted form, file paths included; return an image set.

    The entry point of every neural estimator's ``fit`` and inference: the
    images are not converted here but read batch by batch from the returned
    :class:`~skvision._data.ArrayImages` (the array in its own dtype, never
    a float32 copy of all of it) or :class:`~skvision._data.FileImages`
    (files decoded per batch). See :func:`check_images` for the array forms.

    Parameters
    ----------
    X : array-like of images, or of file paths
        As :func:`check_images`, or a 1-D list/array/Series of file paths or
        URLs (read through :mod:`skvision._storage`), or a one-column
        DataFrame of them.
    estimator, reset, image_shape, channels
        As :func:`check_images`.
    image_size : (height, width) or None, default=None
        The size the estimator resizes images to: files are decoded at it;
        at prediction, images of any size (with the fitted channels) are
        accepted. None: files must all have one size, but at prediction an
        estimator that takes images of any size (``_any_image_size``)
        reads each file at its own size, and takes a list of differently
        sized arrays (a :class:`~skvision._data.ListImages`).
    on_error : {"raise", "skip"}, default="raise"
        With ``reset=True``, what an unreadable file does: raise an error
        naming it, or be left out with a warning (the set's ``kept`` then
        holds the positions kept, to select the targets with).
    file_size : (height, width) or None, default=None
        Size files are decoded at when ``image_size`` is None (a pretrained
        backbone's input size).
    share : (rank, world, gather) or None, default=None
        In a data-parallel fit, how the processes share the scan of the
        files' headers (see :func:`skvision._data.scan_files`): each reads
        its part, and every process ends with the same image set.
    interpolation : {"bilinear", "bicubic"}, default="bilinear"
        How files are resized: as the estimator resizes arrays (a pretrained
        backbone's own interpolation), so both give the same pixels.

    Returns
    -------
    images : ArrayImages, FileImages or ListImages
    """
    paths = as_paths(X)
    if paths is not None:
        images = _check_files(paths, estimator, reset, image_size, on_error, file_size, share,
                              interpolation)
        _check_input_kind(estimator, "files", reset)
        return images
    if not reset and getattr(estimator, "_any_image_size", False):
        tensors = check_image_list(X, channels=channels)
        if tensors is not None:
            _check_fitted_channels(estimator, len(tensors[0]))
            return ListImages(tensors)
    array = _validated_array(X, estimator=estimator, reset=reset, image_shape=image_shape,
                             channels=channels, any_size=image_size is not None)
    _check_input_kind(estimator, input_kind(array), reset, array)
    return ArrayImages(array, mapped=X if isinstance(X, np.memmap) else None)


# Input kinds whose pixels reach a network in [0, 1]: integer images scaled by
# their type's maximum, files likewise, float images already in that range.
_UNIT_KINDS = ("uint8", "uint16", "files", "float in [0, 1]")
# Rows looked at to tell the kind of a memory-mapped array (not read whole for it).
_KIND_SAMPLE_ROWS = 256


def input_kind(array):
    """What an image array holds, as far as its scale goes.

    "uint8" and "uint16" (scaled to [0, 1] by their maximum), "float in
    [0, 1]", "float" (other floats, taken as they are) or "integer" (other
    integers, kept as numbers). A memory-mapped array is judged by its
    first rows.
    """
    if array.dtype in (np.uint8, np.uint16):
        return array.dtype.name
    if array.dtype.kind != "f":
        return "integer"
    sample = array[:_KIND_SAMPLE_ROWS] if isinstance(array, np.memmap) else array
    return "float in [0, 1]" if sample.min() >= 0 and sample.max() <= 1 else "float"


def _whole_numbers_above_one(array):
    """Whether images hold pixel levels (0-255, 0-16, ...) as plain numbers: judged on a sample."""
    sample = array[:64]
    return sample.max() > 1 and bool(np.all(sample == np.floor(sample)))


def _check_input_kind(estimator, kind, reset, array=None):
    """Record the kind of input at ``fit`` (``input_kind_``); warn where predict's differs.

    A model fitted on uint8 images and given the same pixels as float 0-255
    (or the reverse) sees them 255 times brighter or darker, with no error:
    such a change of scale warns, naming both kinds. Kinds of the same scale
    (uint8 arrays, 16-bit arrays, files, floats in [0, 1]) mix freely. At
    ``fit``, pixel levels held as plain numbers (floats or int64 of 0-255)
    warn too: they are taken as they are, not scaled.
    """
    if estimator is None:
        return
    name = _estimator_name(estimator)
    if reset:
        estimator.input_kind_ = kind
        if kind in ("float", "integer") and _whole_numbers_above_one(array):
            warnings.warn(
                f"{name} got {array.dtype} images of whole numbers up to "
                f"{array[:64].max():g}: {array.dtype} pixels are taken as they are, while "
                "uint8 and uint16 images are scaled to [0, 1]. If these are pixel levels, "
                "pass them as uint8 (X.astype(np.uint8)) or scaled to [0, 1] (e.g. "
                "X / 255), and give predict the same.", UserWarning, stacklevel=4)
        return
    fitted = getattr(estimator, "input_kind_", None)
    if fitted is None or (fitted in _UNIT_KINDS) == (kind in _UNIT_KINDS):
        return
    warnings.warn(
        f"X holds {kind} images, but {name} was fitted on {fitted} images. uint8 and "
        "uint16 images and image files are scaled to [0, 1]; other numbers are taken as "
        "they are, so these images reach the network on another scale than the training "
        "images did. Give predict the kind of input fit had (e.g. uint8 pixels as uint8, "
        "or float pixels divided by 255 if fit had uint8).", UserWarning, stacklevel=4)


def _check_files(paths, estimator, reset, image_size, on_error, file_size, share=None,
                 interpolation="bilinear"):
    name = _estimator_name(estimator)
    size = image_size or file_size
    if reset:
        kept, sizes, modes = scan_files(paths, on_error=on_error, share=share)
        distinct = sorted(set(sizes))
        if size is None and len(distinct) > 1:
            raise ValueError(
                f"The image files have {len(distinct)} different sizes (height, width), e.g. "
                f"{distinct[:3]}; set image_size=(height, width) to resize them to one size."
            )
        images = FileImages([paths[i] for i in kept], size or sizes[0], file_channels(modes),
                            sizes, resize=size is not None, interpolation=interpolation)
        images.kept = kept if len(kept) < len(paths) else None
        if estimator is not None:
            estimator.image_shape_ = images.image_shape
            estimator.n_features_in_ = math.prod(images.image_shape)
            estimator.__dict__.pop("feature_names_in_", None)
        return images
    expected = tuple(getattr(estimator, "image_shape_", (None, None, 3)))
    if expected[2] not in (1, 3):
        raise ValueError(
            f"{name} was fitted on images with {expected[2]} channels; image files decode to "
            "1 (gray) or 3 (RGB) channels. Read them into arrays of that shape first."
        )
    if size is None and getattr(estimator, "_any_image_size", False):
        # A fully convolutional network reads each file at its own size, as
        # it takes arrays of any size; nothing is resized, so nothing scanned.
        return FileImages(paths, None, expected[2], interpolation=interpolation)
    return FileImages(paths, size or expected[:2], expected[2], resize=size is not None,
                      interpolation=interpolation)


def _validated_array(X, *, estimator=None, reset=True, image_shape=None, channels="last",
                     any_size=False):
    """Check images in any array form; return them ``(n, h, w, c)`` in their own dtype.

    No copy is made where none is needed (a memory map stays one); the
    caller must not write into the result.
    """
    # ``channels`` is an estimator parameter, checked by its constraint in ``fit``.
    name = _estimator_name(estimator)
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
        channels = "first"
    elif isinstance(X, (list, tuple)):
        X = _list_to_array(X)
    original = X
    if _plain_numeric_array(X):
        # What check_array would do to it, without its dataframe and dtype
        # detection: a few hundred microseconds that dominate predict on one
        # small image (bench/serving.py).
        if X.dtype.kind == "f":
            assert_all_finite(X, allow_nan=False, estimator_name=name, input_name="X")
    else:
        X = check_array(
            X, dtype="numeric", allow_nd=True, ensure_all_finite=True, estimator=estimator,
            input_name="X", copy=False,
        )
    if X.ndim > 4:
        raise ValueError(
            f"Expected images as a 2-D (n, h*w*c), 3-D (n, h, w) or 4-D (n, h, w, c) "
            f"array; got {X.ndim} dimensions with shape {X.shape}."
        )
    if X.ndim == 2:
        if reset:
            height, width, n_channels = _infer_flat_shape(X.shape[1], image_shape)
        else:
            height, width, n_channels = getattr(estimator, "image_shape_", (1, X.shape[1], 1))
        if not reset and X.shape[1] != height * width * n_channels:
            # Same words as sklearn's own check so tools that parse it still work.
            raise ValueError(
                f"X has {X.shape[1]} features, but {name} is expecting "
                f"{height * width * n_channels} features as input (images of shape "
                f"{(height, width, n_channels)})."
            )
        X = X.reshape(len(X), height, width, n_channels)
    elif X.ndim == 3:
        X = X[..., np.newaxis]
    elif channels == "first":
        X = X.transpose(0, 2, 3, 1)
    shape = tuple(int(side) for side in X.shape[1:])
    if 0 in shape:
        raise ValueError(
            f"Found empty images of shape {shape} (height, width, channels); every side must "
            "be at least 1."
        )
    if not reset and estimator is not None and hasattr(estimator, "image_shape_"):
        expected = tuple(estimator.image_shape_)
        _check_fitted_channels(estimator, shape[2])
        # Fully convolutional estimators (``_any_image_size = True``) and those
        # that resize (``image_size``) predict on images of any size.
        other_size = shape != expected
        any_size = any_size or getattr(estimator, "_any_image_size", False)
        if other_size and not any_size:
            raise ValueError(
                f"X has images of shape {shape}, but {name} was fitted on images of "
                f"shape {expected} (height, width, channels)."
            )
        if other_size:
            estimator = None  # n_features_in_ describes the training size only
    if estimator is not None:
        if (not reset and not hasattr(original, "columns")
                and not hasattr(estimator, "feature_names_in_")
                and getattr(estimator, "n_features_in_", None) == math.prod(shape)):
            return X  # what validate_data would find: no names, the fitted row length
        # Feature names (pandas input) and n_features_in_ the sklearn way.
        # Only the row length is read: a zero-strided stand-in, never a copy of X.
        flat = original if hasattr(original, "columns") else np.broadcast_to(
            np.zeros((), X.dtype), (len(X), math.prod(shape)))
        validate_data(estimator, flat, reset=reset, skip_check_array=True)
        if reset:
            estimator.image_shape_ = shape
    return X


def _check_fitted_channels(estimator, n_channels):
    """Images given to a fitted estimator must have the channels it was fitted on."""
    expected = tuple(estimator.image_shape_)
    if n_channels != expected[2]:
        raise ValueError(
            f"X has {n_channels} channel(s), but {_estimator_name(estimator)} was fitted on "
            f"images with {expected[2]} channel(s) (shape {expected})."
        )


def _plain_numeric_array(X):
    """A non-empty numpy array of at least 2-D of bools, integers or floats.

    Such an array passes ``check_array(dtype="numeric", allow_nd=True)``
    unchanged once its values are finite; anything else (lists, frames,
    object or complex arrays, empty or 1-D ones) goes through it.
    """
    return (isinstance(X, np.ndarray) and X.ndim >= 2 and X.dtype.kind in "biuf"
            and X.shape[0] > 0 and X.size > 0)


def image_layout(X, channels="last"):
    """How the images ``X`` are laid out, as :func:`images_as` writes them back.

    One of "tensor" (a torch tensor ``(n, c, h, w)``), "flat" (rows
    ``(n, h*w*c)`` in channels-last order, DataFrames too), "gray"
    ``(n, h, w)``, "channels_last" ``(n, h, w, c)`` or "channels_first"
    ``(n, c, h, w)`` (4-D numpy input with ``channels="first"``).
    """
    if isinstance(X, torch.Tensor):
        return "tensor"
    if hasattr(X, "columns"):
        return "flat"
    if isinstance(X, (list, tuple)):
        ndim = np.asarray(X[0]).ndim + 1  # one dimension more than each image
    else:
        ndim = X.ndim if hasattr(X, "ndim") else np.asarray(X).ndim
    if ndim in (2, 3):
        return {2: "flat", 3: "gray"}[ndim]
    return "channels_first" if channels == "first" else "channels_last"


def image_dtype(X):
    """The numpy dtype of the images ``X`` (a tensor's numpy equivalent, a list's common type)."""
    if isinstance(X, torch.Tensor):
        return torch.empty(0, dtype=X.dtype).numpy().dtype
    if hasattr(X, "columns"):
        return np.result_type(*X.dtypes)
    if isinstance(X, (list, tuple)):
        return np.result_type(*(np.asarray(image).dtype for image in X))
    return X.dtype if hasattr(X, "dtype") else np.asarray(X).dtype


def images_as(images, layout, dtype):
    """Images ``(n, c, h, w)`` (a tensor or array) in an :func:`image_layout` and a dtype.

    The inverse of :func:`check_images`'s reading: uint8 and uint16 pixels
    were read as [0, 1] and are scaled back by their maximum (255, 65535);
    integer dtypes are rounded and clipped to their range, bool is
    ``>= 0.5``, floats are cast.
    """
    array = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else images
    if layout == "tensor":
        return torch.from_numpy(_cast_pixels(array, dtype))
    if layout != "channels_first":
        array = array.transpose(0, 2, 3, 1)
        if layout == "gray":
            array = array[..., 0]
        elif layout == "flat":
            array = array.reshape(len(array), -1)
    return _cast_pixels(array, dtype)


# The dtypes check_images reads as [0, 1] (by their maximum; _pixels.SCALED_DTYPES).
_SCALED = (np.uint8, np.uint16)


def _cast_pixels(array, dtype):
    dtype = np.dtype(dtype)
    if dtype in _SCALED:
        array = np.clip(array, 0, 1) * np.iinfo(dtype).max
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        array = np.clip(np.rint(array), info.min, info.max)
    elif dtype.kind == "b":
        array = array >= 0.5
    return np.ascontiguousarray(array, dtype=dtype)


def images_like(images, X, *, channels="last", keep_uint8=True, flat=False):
    """Return a float tensor ``(n, c, h, w)`` in the form and dtype of the input ``X``.

    The inverse of :func:`check_images` for transformers whose output is
    images: flat input gives flat rows, ``(n, h, w)`` gives ``(n, h, w)``,
    channels-last stays channels-last, tensors stay tensors, and uint8
    (uint16) arrays give uint8 (uint16), clipped to [0, 1] and rounded, so
    a step changes pixels, not the data's type. With ``keep_uint8=False``
    (values no longer in [0, 1], e.g. standardized), they give float32, as
    do other integer types and integer tensors. ``flat=True`` always gives 2-D
    numpy rows ``(n, h*w*c)`` in channels-last order.
    """
    layout = "flat" if flat else image_layout(X, channels)
    dtype = image_dtype(X)
    keep = dtype.kind == "f" or (
        dtype in _SCALED and keep_uint8 and not isinstance(X, torch.Tensor))
    return images_as(images, layout, dtype if keep else np.float32)


def check_masks(masks, n_samples, image_size):
    """Validate integer segmentation masks: an int64 tensor ``(n, h, w)``, or a list of them.

    ``masks`` holds one integer class label per pixel of each image: an
    array ``(n, h, w)`` (or ``(n, h, w, 1)``, or flat ``(n, h*w)`` rows), or
    a list of one mask per image. ``image_size`` is the images' ``(height,
    width)``, or one such pair per image (image files of different sizes,
    as :func:`check_boxes` takes them); each mask must have its image's
    size. Returns an int64 tensor ``(n, h, w)``, or, where the images'
    sizes differ, a list of ``(h, w)`` ones.
    """
    sizes = ([tuple(size) for size in image_size] if np.ndim(image_size) == 2
             else [tuple(image_size)] * n_samples)
    if isinstance(masks, torch.Tensor):
        masks = masks.detach().cpu().numpy()
    if isinstance(masks, (list, tuple)):
        _check_targets_length(masks, n_samples)
        checked = [_integer_masks(mask, size, f"mask {index}", "(height, width)")
                   for index, (mask, size) in enumerate(zip(masks, sizes))]
        if len(set(sizes)) > 1:
            return [torch.from_numpy(mask) for mask in checked]
        return torch.from_numpy(np.stack(checked))
    if len(set(sizes)) > 1:
        raise ValueError(
            f"The images have {len(set(sizes))} different sizes (height, width), e.g. "
            f"{sorted(set(sizes))[:3]}: give the masks as a list of one (height, width) "
            "array per image, of its image's size."
        )
    return torch.from_numpy(_integer_masks(masks, (n_samples, *sizes[0]), "masks",
                                           "(n_images, height, width)"))


def _integer_masks(masks, expected, name, axes):
    """``masks`` as an int64 array of shape ``expected``; ``name`` and ``axes`` word the errors.

    A trailing channel of one and flat rows (the last two axes as one) are
    taken, as images are.
    """
    masks = np.asarray(masks)
    if masks.ndim == len(expected) + 1 and masks.shape[-1] == 1:
        masks = masks[..., 0]
    if masks.shape == (*expected[:-2], math.prod(expected[-2:])):
        masks = masks.reshape(expected)  # flat rows, like flat images
    if masks.shape != tuple(expected):
        raise ValueError(
            f"{name} must have shape {axes} = {tuple(expected)}, one class index per pixel; "
            f"got shape {masks.shape}."
        )
    if not (np.issubdtype(masks.dtype, np.integer) or masks.dtype == bool):
        if not np.issubdtype(masks.dtype, np.floating) or np.any(masks != np.round(masks)):
            raise ValueError(
                f"{name} must hold integer class indices; got dtype {masks.dtype} with "
                "non-integer values."
            )
    return masks.astype(np.int64)


def check_boxes(targets, n_samples, image_size):
    """Validate detection targets: one dict per image with xyxy ``"boxes"``.

    Each target is a mapping with ``"boxes"`` of shape ``(k, 4)`` in pixels,
    ``x1 < x2 <= width`` and ``y1 < y2 <= height``, and optionally
    ``"labels"`` (and other per-box arrays) of length ``k``; a DataFrame in
    the :func:`frame_to_targets` layout is accepted too. ``image_size`` is
    ``(height, width)``, or one such pair per image. Returns a list of dicts
    whose ``"boxes"`` are float32 tensors; the other entries are kept as
    numpy arrays. The caller's dicts are not modified.
    """
    if hasattr(targets, "columns"):
        targets = frame_to_targets(targets, n_samples)
    if not isinstance(targets, (list, tuple)) or len(targets) != n_samples:
        length = len(targets) if hasattr(targets, "__len__") else None
        raise ValueError(
            f"Expected a list of {n_samples} detection targets (one dict with a "
            f"'boxes' array per image); got {type(targets).__name__} of length {length}."
        )
    sizes = image_size if np.ndim(image_size) == 2 else [image_size] * n_samples
    checked = []
    for index, target in enumerate(targets):
        height, width = sizes[index]
        if not hasattr(target, "keys") or "boxes" not in target:
            raise ValueError(
                f"Detection target {index} must be a dict with a 'boxes' array of "
                f"shape (k, 4); got {type(target).__name__}."
            )
        boxes = target["boxes"]
        boxes = boxes.detach().cpu().numpy() if isinstance(boxes, torch.Tensor) else boxes
        try:
            boxes = np.asarray(boxes, dtype=np.float32)
        except (TypeError, ValueError) as error:
            raise ValueError(f"boxes of image {index} must be numbers; {error}") from None
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(
                f"boxes of image {index} must have shape (k, 4) as x1, y1, x2, y2; got "
                f"{boxes.shape}."
            )
        bad = ~np.isfinite(boxes).all(axis=1)
        bad |= (boxes[:, 0] >= boxes[:, 2]) | (boxes[:, 1] >= boxes[:, 3])
        bad |= (boxes[:, :2] < 0).any(axis=1) | (boxes[:, 2] > width) | (boxes[:, 3] > height)
        if bad.any():
            raise ValueError(
                f"Box {boxes[bad][0].tolist()} of image {index} is not inside the "
                f"{width}x{height} image as x1 < x2 <= width, y1 < y2 <= height (pixels)."
            )
        entry = {}
        for key, value in target.items():
            if key == "boxes":
                continue
            value = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
            value = np.asarray(value)
            if value.ndim and len(value) != len(boxes):
                raise ValueError(
                    f"'{key}' of image {index} has {len(value)} entries for "
                    f"{len(boxes)} boxes."
                )
            entry[key] = value.copy()
        entry["boxes"] = torch.from_numpy(boxes.copy())
        checked.append(entry)
    return checked


BOX_COLUMNS = ("x_min", "y_min", "x_max", "y_max")


def is_box_frame(y):
    """Whether ``y`` holds detection targets as a DataFrame: one row per box, with an ``image_id``.

    Its rows are boxes, not images: it is selected by ``image_id``
    (:func:`select_targets`), never by row position.
    """
    return hasattr(y, "columns") and "image_id" in y.columns


def _rows_by_image(frame, n_images):
    """The rows of a box frame grouped by image: ``(order, bounds)``.

    The rows of image ``i`` are ``order[bounds[i]:bounds[i + 1]]``, in their
    order in the frame. ``image_id`` must be positions 0 to ``n_images - 1``
    (a ValueError says otherwise).
    """
    ids = frame["image_id"].to_numpy()
    if len(ids) and (ids.dtype.kind not in "iu" or ids.min() < 0 or ids.max() >= n_images):
        raise ValueError(
            f"image_id must be the integer position of each box's image in X (0 to "
            f"{n_images - 1}); got values of dtype {ids.dtype} from {ids.min()!r} to "
            f"{ids.max()!r}."
        )
    order = np.argsort(ids, kind="stable")
    return order, np.searchsorted(ids[order], np.arange(n_images + 1))


def frame_to_targets(frame, n_images, rows=False):
    """Detection targets as a DataFrame → one dict per image.

    ``frame`` has one row per box and the columns ``image_id`` (the image's
    position in X, 0 to ``n_images - 1``), ``x_min, y_min, x_max, y_max``
    (pixels) and ``label``; a ``score`` column, if present, becomes
    ``"scores"``; ``iscrowd`` and ``area`` columns keep their names. Images
    with no row have no objects. ``rows=True`` adds
    ``"rows"``, each box's row position in ``frame`` (so that boxes moved
    elsewhere can take their other columns with them).
    """
    missing = [column for column in ("image_id", *BOX_COLUMNS, "label")
               if column not in frame.columns]
    if missing:
        raise ValueError(
            f"Detection targets as a DataFrame need the columns image_id, x_min, y_min, "
            f"x_max, y_max and label (one row per box); {missing} missing."
        )
    order, bounds = _rows_by_image(frame, n_images)
    boxes = frame[list(BOX_COLUMNS)].to_numpy(dtype=np.float32)[order]
    columns = {"labels": frame["label"].to_numpy()[order]}
    if "score" in frame.columns:
        columns["scores"] = frame["score"].to_numpy(dtype=np.float32)[order]
    for name in ("iscrowd", "area"):  # COCO's evaluation reads them
        if name in frame.columns:
            columns[name] = frame[name].to_numpy()[order]
    if rows:
        columns["rows"] = order
    return [
        {"boxes": boxes[start:stop],
         **{key: values[start:stop] for key, values in columns.items()}}
        for start, stop in zip(bounds[:-1], bounds[1:])
    ]


def select_targets(y, positions, n_samples):
    """The targets of the images at ``positions`` among ``n_samples`` inputs.

    The one place where targets follow a selection of their images (the
    files ``on_error="skip"`` leaves out, the originals and copies of
    ``ImageAugmenter.fit_resample``): labels, values and masks (arrays,
    tensors, lists, lists of dicts, Series and DataFrames) are taken by
    position, in their own container; detection targets as a DataFrame
    (:func:`is_box_frame`) by ``image_id``, the boxes of image
    ``positions[i]`` becoming those of image ``i`` (rows renumbered, other
    columns kept). Positions may repeat.

    Parameters
    ----------
    y : array-like, tensor, list or DataFrame
        One target per input (a box frame: one row per box).
    positions : array-like of int
        The inputs selected, in their new order.
    n_samples : int
        The number of inputs ``y`` describes (checked).

    Returns
    -------
    y_selected : same container as ``y``
    """
    positions = np.asarray(positions, dtype=np.intp)
    if is_box_frame(y):
        order, bounds = _rows_by_image(y, n_samples)
        starts, counts = bounds[:-1][positions], np.diff(bounds)[positions]
        # Row k of the selection is the (k - first)-th box of its image.
        firsts = np.repeat(np.cumsum(counts) - counts, counts)
        rows = order[np.repeat(starts, counts) + np.arange(counts.sum()) - firsts]
        selected = y.iloc[rows].reset_index(drop=True)
        selected["image_id"] = np.repeat(np.arange(len(positions)), counts).astype(
            y["image_id"].dtype)
        return selected
    y = _check_targets_length(y, n_samples)
    if hasattr(y, "iloc"):
        return y.iloc[positions]
    if isinstance(y, torch.Tensor):
        return y[torch.from_numpy(positions)]
    if isinstance(y, (list, tuple)):
        return [y[position] for position in positions]
    return np.asarray(y)[positions]


def targets_to_frame(targets):
    """One dict per image → a DataFrame with a row per box (see :func:`frame_to_targets`)."""
    import pandas as pd

    counts = [len(target["boxes"]) for target in targets]
    boxes = np.concatenate([np.asarray(t["boxes"], np.float32).reshape(-1, 4) for t in targets])
    frame = pd.DataFrame(boxes, columns=list(BOX_COLUMNS))
    frame.insert(0, "image_id", np.repeat(np.arange(len(targets)), counts))
    frame["label"] = np.concatenate([np.asarray(t["labels"]).reshape(-1) for t in targets])
    if all("scores" in target for target in targets):
        frame["score"] = np.concatenate(
            [np.asarray(t["scores"], np.float32).reshape(-1) for t in targets])
    return frame


def check_image_list(images, channels="last"):
    """Validate a list of images of different sizes; return a list of (c, h, w) tensors.

    Each image is checked as :func:`check_images` checks a batch; all must
    have the same number of channels. Returns None when ``images`` is not a
    list of differently sized images (then :func:`check_images` applies).
    """
    if not isinstance(images, (list, tuple)) or len({np.shape(i) for i in images}) < 2:
        return None
    tensors = [check_images([image], channels=channels)[0] for image in images]
    n_channels = {len(tensor) for tensor in tensors}
    if len(n_channels) > 1:
        raise ValueError(
            f"The images have different numbers of channels {sorted(n_channels)}; convert "
            "them to one (e.g. all RGB) first."
        )
    return tensors


def pad_images(tensors):
    """Stack (c, h, w) tensors of different sizes, zero-padded at the bottom and right.

    Padding there keeps every pixel (and box) where it was.
    """
    height = max(tensor.shape[1] for tensor in tensors)
    width = max(tensor.shape[2] for tensor in tensors)
    batch = tensors[0].new_zeros((len(tensors), tensors[0].shape[0], height, width))
    for index, tensor in enumerate(tensors):
        batch[index, :, : tensor.shape[1], : tensor.shape[2]] = tensor
    return batch


def check_class_labels(y, n_samples):
    """Validate classification labels and return the sorted classes."""
    y = column_or_1d(_check_targets_length(y, n_samples), warn=True)
    check_classification_targets(y)
    classes = np.unique(y)
    if len(classes) < 2:
        raise ValueError(
            f"Classifier can't train when only one class is present (got only "
            f"{classes[0]!r}); y needs at least 2 classes."
        )
    return classes


def encode_labels(y, classes, n_samples):
    """Map labels to their indices in ``classes`` as an int64 tensor."""
    y = column_or_1d(_check_targets_length(y, n_samples), warn=True)
    index = np.clip(np.searchsorted(classes, y), 0, len(classes) - 1)
    unknown = classes[index] != y
    if np.any(unknown):
        raise ValueError(
            f"y contains labels not seen in the first fit: {np.unique(y[unknown])[:5]}; "
            f"known classes are {classes}."
        )
    return torch.from_numpy(index.astype(np.int64))


def is_multilabel(y):
    """Whether ``y`` is a multilabel-indicator matrix ``(n_samples, n_labels)`` of 0 and 1."""
    return type_of_target(y) == "multilabel-indicator"


def check_multilabel_targets(y, n_samples, n_labels=None):
    """A multilabel-indicator ``y`` as a float32 array ``(n_samples, n_labels)`` of 0 and 1.

    ``n_labels`` is the number the model was fitted with (None on a first fit).
    """
    if hasattr(y, "toarray"):  # scipy sparse, as MultiLabelBinarizer(sparse_output=True) gives
        y = y.toarray()
    y = check_array(_check_targets_length(y, n_samples), dtype="numeric", input_name="y")
    if n_labels is not None and y.shape[1] != n_labels:
        raise ValueError(
            f"y has {y.shape[1]} labels (columns), but the model was fitted with {n_labels}.")
    return y.astype(np.float32)


def multilabel_positive_weights(class_weight, y):
    """The weight of each label's positives in the loss, from ``class_weight``.

    "balanced": each label's negatives over its positives, so a rare tag
    counts as much as it is missed (``pos_weight`` of
    :class:`torch.nn.BCEWithLogitsLoss`); a dict ``{column: weight}``
    (unlisted labels weigh 1). Returns None for None.
    """
    if class_weight is None:
        return None
    n_samples, n_labels = y.shape
    if isinstance(class_weight, str):
        positives = y.sum(axis=0)
        if np.any(positives == 0):
            raise ValueError(
                "class_weight='balanced' needs every label to occur in y; never set: columns "
                f"{np.flatnonzero(positives == 0).tolist()}. Pass a dict instead.")
        return ((n_samples - positives) / positives).astype(np.float64)
    unknown = [key for key in class_weight if not (
        isinstance(key, numbers.Integral) and 0 <= key < n_labels)]
    if unknown:
        raise ValueError(
            f"With multilabel y, class_weight's keys are column indices 0..{n_labels - 1}; "
            f"got {unknown}.")
    weights = np.ones(n_labels)
    for column, weight in class_weight.items():
        weights[column] = weight
    return weights


def check_regression_targets(y, n_samples):
    """Validate regression targets; return a float64 array of 1 or 2 dimensions.

    float64, not the network's float32: targets far from zero (1e8 plus
    noise of 1) keep their variation until they are standardized.
    """
    y = _check_targets_length(y, n_samples)
    y = check_array(
        y, ensure_2d=False, dtype="numeric", ensure_all_finite=True, input_name="y"
    )
    if y.ndim not in (1, 2):
        raise ValueError(f"y must be 1-D or 2-D (multi-output); got shape {y.shape}.")
    return y.astype(np.float64)


def check_sample_weight(sample_weight, n_samples):
    """Validate sample weights: finite, non-negative, one per sample (image), not all zero.

    Returns a float64 array (a number is the same weight for every image),
    or None for None.
    """
    if sample_weight is None:
        return None
    if isinstance(sample_weight, numbers.Number):
        sample_weight = np.full(n_samples, sample_weight)
    weights = check_array(sample_weight, ensure_2d=False, dtype=np.float64,
                          ensure_all_finite=True, input_name="sample_weight")
    if weights.ndim != 1 or len(weights) != n_samples:
        raise ValueError(
            f"sample_weight must have shape ({n_samples},), one weight per sample; got shape "
            f"{weights.shape}."
        )
    if np.any(weights < 0):
        raise ValueError(
            f"sample_weight must be non-negative; got {weights.min()} at index "
            f"{int(np.argmin(weights))}."
        )
    if not weights.any():
        raise ValueError(
            "sample_weight is zero for every image: at least one needs a positive weight.")
    return weights


def class_weights(class_weight, classes, counts):
    """Weight of each class from ``class_weight`` (None, "balanced" or a dict).

    ``counts`` holds how often each of ``classes`` occurs (images, or pixels
    for masks): "balanced" gives ``counts.sum() / (n_classes * counts)``, as
    sklearn's ``compute_class_weight``. Returns None for None.
    """
    if class_weight is None:
        return None
    if isinstance(class_weight, str) and class_weight == "balanced":
        counts = np.asarray(counts, dtype=np.float64)
        if np.any(counts == 0):
            raise ValueError(
                "class_weight='balanced' needs every class in y; missing: "
                f"{np.asarray(classes)[counts == 0].tolist()}. Pass a dict instead."
            )
        return counts.sum() / (len(classes) * counts)
    if not isinstance(class_weight, dict):
        raise ValueError(f"class_weight must be None, 'balanced' or a dict; got {class_weight!r}.")
    known = set(np.asarray(classes).tolist())
    unknown = [key for key in class_weight if key not in known]
    if unknown:
        raise ValueError(
            f"class_weight names classes that are not in y: {unknown}; the classes are "
            f"{np.asarray(classes).tolist()}."
        )
    weights = np.array([class_weight.get(label, 1.0) for label in np.asarray(classes).tolist()],
                       dtype=np.float64)
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise ValueError(
            f"class_weight values must be finite and non-negative; got {class_weight!r}.")
    return weights


def _check_targets_length(y, n_samples):
    if y is None:
        raise ValueError("This estimator requires y to be passed, but the target y is None.")
    if not hasattr(y, "__len__") and hasattr(y, "__array__"):
        y = np.asarray(y)
    length = len(y) if hasattr(y, "__len__") else None
    if length != n_samples:
        raise ValueError(
            f"X and y have inconsistent numbers of samples: {n_samples} images but "
            f"{length} targets."
        )
    return y
