"""The data layer: where batches of images come from, for training and inference alike.

:func:`skvision._validation.check_image_data` turns every accepted input into
an *image set*; the training core's batch iterator and the one inference
entry point (:func:`skvision._torch.predict_batches`) read batches from it with
:func:`read_batches`. An image set is any object with

* ``len(images)``, ``images.image_shape`` (``(height, width, channels)``, sides
  None where the images differ), ``images.original_sizes`` and ``images.kept``
  (the positions of the inputs kept by ``on_error="skip"``, or None);
* ``images.subset(positions)``: the set of those images, nothing read;
* ``images.read(positions)``: those images as one uint8 or float tensor
  ``(n, c, h, w)``, or, for images of different sizes, a list of ``(c, h, w)``
  tensors, uint8 or float (:func:`to_float` takes both);
* ``images.prefetch``: how many batches to read ahead of the one in use,
  where reading is slow enough to overlap with compute (0: none).

Three kinds of sets:

* :class:`ArrayImages`: an in-memory or memory-mapped array, kept in its own
  dtype (uint8 stays uint8: four times less memory than a float32 copy);
* :class:`FileImages`: image files, decoded batch by batch by a pool of
  threads (Pillow and torch release the GIL while they decode and resize)
  along the one pixel path of :mod:`skvision._pixels`, JPEGs at a reduced
  DCT scale when the target is much smaller than the file; files
  at URLs are fetched a batch at a time, concurrently, by
  :mod:`skvision._storage`, and read further ahead;
* :class:`ListImages`: a list of differently sized images (the detector).

A batch becomes float32 (uint8 and uint16 scaled to [0, 1], other numbers
kept: :func:`skvision._pixels.scale_to_unit`) only on the device it is used
on, by :func:`to_float`, which resizes arrays with the same function that
resized the files.
"""

import io
import os
import threading
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from PIL import Image

from ._pixels import (
    decode_file,
    read_header,
    scale_to_unit,
    to_unit_batch,
)
from ._storage import display_name, is_url, open_sources, read_bytes, redact_text
from .nn._resize import resize_images

__all__ = [
    "ArrayImages",
    "FileImages",
    "ListImages",
    "as_paths",
    "decode_array",
    "decode_arrays",
    "decode_masks",
    "resize_masks",
    "read_batches",
    "scan_files",
    "to_float",
]

# Decoding threads per process. Pillow releases the GIL while it decodes, so
# threads scale with the cores without the start-up and pickling cost of
# DataLoader worker processes (bench/file_loading.py measures both).
DECODE_THREADS = max(2, min(8, os.cpu_count() or 1))
# Batches read ahead of the one in use, so decoding overlaps computing.
PREFETCH_BATCHES = 2
# Remote batches wait on the network: read further ahead, several at once.
REMOTE_PREFETCH_BATCHES = 6
# Memory-mapped pages are handed back to the OS after this many bytes read.
RELEASE_BYTES = 32 * 2**20

_pool_lock = threading.Lock()
_pool = None
_pool_pid = None


def _decode_pool():
    """The process's decoding threads (made anew in a forked child process)."""
    global _pool, _pool_pid
    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid():
            _pool = ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="skvision-decode")
            _pool_pid = os.getpid()
        return _pool


# --------------------------------------------------------------------------
# File paths as data.


def as_paths(X):
    """The file paths in ``X`` as a list of str, or None when ``X`` is not paths.

    Paths are a 1-D list, tuple, array or Series of ``str``/``PathLike``, or
    a DataFrame with one such column (as sklearn's text vectorizers take
    strings). Anything else (numbers, images) gives None.
    """
    if isinstance(X, (str, bytes, os.PathLike)):
        raise ValueError(
            f"Expected a list, array, Series or one-column DataFrame of image paths; got a "
            f"single path {X!r}. Wrap it in a list."
        )
    if hasattr(X, "columns"):
        if X.shape[1] != 1 or len(X) == 0:
            return None
        values = list(X.iloc[:, 0])
    elif hasattr(X, "iloc") or (isinstance(X, np.ndarray) and X.dtype.kind in "OUS"):
        if np.ndim(X) == 2 and np.shape(X)[1] == 1:
            X = np.asarray(X).reshape(-1)
        if np.ndim(X) != 1 or len(X) == 0:
            return None
        values = list(X)
    elif isinstance(X, (list, tuple)) and X:
        values = list(X)
    else:
        return None
    if not isinstance(values[0], (str, os.PathLike)):
        return None
    for index, value in enumerate(values):
        if not isinstance(value, (str, os.PathLike)):
            raise TypeError(
                f"Expected every item to be a file path like the first; item {index} is "
                f"{type(value).__name__} ({value!r})."
            )
    return [os.fspath(value) for value in values]


def _file_error(path, error):
    """The error to raise for a file that cannot be read, naming the file (a URL redacted)."""
    name = display_name(path)
    if isinstance(error, FileNotFoundError):
        return FileNotFoundError(f"Image file not found: {name!r}.")
    if isinstance(error, Image.DecompressionBombError):
        return ValueError(f"Image file {name!r} is too large to decode safely: {error}")
    return ValueError(f"Cannot decode image file {name!r}: {redact_text(str(error))}")


# What Pillow, tifffile and torchvision's PNG decoder raise for a file they cannot decode.
DECODE_ERRORS = (OSError, SyntaxError, ValueError, RuntimeError, Image.DecompressionBombError)
# Bytes of a remote file read to find its size and mode (a JPEG's EXIF block
# fits), and of its end, checked for the end-of-image marker.
HEAD_BYTES = 64 * 1024
TAIL_BYTES = 1024
_END_MARKERS = {"JPEG": b"\xff\xd9", "PNG": b"IEND"}


def _header(source):
    """(height, width) after EXIF orientation, mode and format of a file, from its header."""
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as file:
            return read_header(file)
    return read_header(source)


def _scanned(path, header, tail):
    """The scan result of a file whose header parsed: truncated files are errors.

    A JPEG or PNG file without its end marker in its last bytes is a
    truncated download.
    """
    marker = _END_MARKERS.get(header[2])
    if marker is not None and marker not in tail:
        return None, _file_error(path, OSError("the file is truncated (no end-of-image marker)"))
    return header[:2], None


def _scan_local(path):
    try:
        header = _header(path)
        with open(path, "rb") as file:
            file.seek(0, os.SEEK_END)
            file.seek(max(0, file.tell() - TAIL_BYTES))
            return _scanned(path, header, file.read())
    except DECODE_ERRORS as error:
        return None, _file_error(path, error)


def _scan_remote(urls):
    """The scan results of URLs: one ranged request each (two for files over HEAD_BYTES)."""
    results = [None] * len(urls)
    tails, wholes = [], []  # files to read the end of, and whose header needs more
    for index, (url, head) in enumerate(zip(urls, read_bytes(urls, 0, HEAD_BYTES))):
        if isinstance(head, BaseException):
            results[index] = None, head
            continue
        complete = len(head) < HEAD_BYTES
        try:
            header = _header(io.BytesIO(head))
        except DECODE_ERRORS as error:
            if complete:
                results[index] = None, _file_error(url, error)
            else:
                wholes.append(index)
            continue
        if complete:
            results[index] = _scanned(url, header, head[-TAIL_BYTES:])
        else:
            tails.append((index, header))
    for (index, header), tail in zip(
            tails, read_bytes([urls[i] for i, _ in tails], -TAIL_BYTES)):
        results[index] = (None, tail) if isinstance(tail, BaseException) else _scanned(
            urls[index], header, tail)
    for index, content in zip(wholes, read_bytes([urls[i] for i in wholes])):
        if isinstance(content, BaseException):
            results[index] = None, content
            continue
        try:
            results[index] = _scanned(urls[index], _header(io.BytesIO(content)),
                                      content[-TAIL_BYTES:])
        except DECODE_ERRORS as error:
            results[index] = None, _file_error(urls[index], error)
    return results


def _scan(paths):
    """(size, None) or (None, error to raise) for each of ``paths``, in order."""
    remote, local = [], []
    for index, path in enumerate(paths):
        (remote if is_url(path) else local).append(index)
    results = [None] * len(paths)
    for index, result in zip(local, _decode_pool().map(_scan_local,
                                                        [paths[i] for i in local])):
        results[index] = result
    if remote:
        for index, result in zip(remote, _scan_remote([paths[i] for i in remote])):
            results[index] = result
    return results


def _scan_shared(paths, share):
    """:func:`_scan` of ``paths``, each process of ``share`` scanning its part of them.

    ``share`` is ``(rank, world, gather)``: this process scans positions
    ``rank::world``, and ``gather(results)`` gives every process the results
    of each, in process order, from which every process puts together the
    same complete list (errors included, pickled across).
    """
    if share is None:
        return _scan(paths)
    rank, world, gather = share
    parts = gather(_scan(paths[rank::world]))
    results = [None] * len(paths)
    for part_rank, part in enumerate(parts):
        results[part_rank::world] = part
    return results


def scan_files(paths, on_error="raise", share=None):
    """Read the headers of ``paths`` (in parallel): sizes, modes and which files fail.

    A missing file, an unreadable header or a JPEG/PNG without its end marker
    (a truncated download) raises an error naming the file, or with
    ``on_error="skip"`` is left out with one warning listing them. URLs are
    read with ranged requests, concurrently (:mod:`skvision._storage`); an
    object that cannot be fetched (missing, forbidden, timed out after the
    retries) counts as a file that cannot be read.

    ``share=(rank, world, gather)``: the processes of a data-parallel fit
    share the reading, each scanning positions ``rank::world`` only;
    ``gather(value)`` returns every process's value in process order
    (:func:`skvision._accelerate.gather_from_processes`), so every process
    returns the same result and raises the same error. Every process must
    call it (the gather is collective).

    Returns
    -------
    kept : ndarray of int
        Positions of the readable files.
    sizes : list of (height, width)
        Their sizes.
    modes : list of str
        Their Pillow modes.
    """
    results = _scan_shared(list(paths), share)
    failed = [(path, error) for path, (_, error) in zip(paths, results) if error is not None]
    if failed and on_error != "skip":
        raise failed[0][1]
    if failed:
        warnings.warn(
            f"Skipped {len(failed)} image file(s) that cannot be read: "
            f"{[display_name(path) for path, _ in failed]}", UserWarning, stacklevel=4,
        )
    kept = np.array([index for index, (info, _) in enumerate(results) if info is not None],
                    dtype=np.intp)
    if not len(kept):
        raise ValueError(f"None of the {len(paths)} image files can be read.")
    return kept, [results[i][0][0] for i in kept], [results[i][0][1] for i in kept]


def decode_array(path, source=None, draft_size=None):
    """Decode one image file to an array at full bit depth, upright.

    See :func:`skvision._pixels.decode_file`.

    ``source``: what to read instead of ``path`` (a URL's bytes, see
    :func:`skvision._storage.open_sources`); errors name ``path``.
    """
    try:
        if source is not None and not isinstance(source, (str, os.PathLike)):
            return decode_file(source, draft_size)
        with open(path if source is None else source, "rb") as file:
            return decode_file(file, draft_size)
    except DECODE_ERRORS as error:
        raise _file_error(path, error) from error


def decode_arrays(paths, draft_size=None):
    """:func:`decode_array` of every path on the decoding threads (URLs fetched first,
    concurrently); a list of arrays at full bit depth, upright."""
    return list(_decode_pool().map(
        lambda path, source: decode_array(path, source, draft_size), paths,
        open_sources(paths)))


def _decode_mask(path, size, source=None):
    try:
        with Image.open(path if source is None else source) as image:
            if image.mode not in ("1", "L", "P", "I", "I;16", "I;16B", "I;16L"):
                raise ValueError(
                    f"mask files hold one class index per pixel (a gray or palette PNG); "
                    f"got mode {image.mode}"
                )
            mask = np.asarray(image)
    except DECODE_ERRORS as error:
        raise _file_error(path, error) from error
    # The nearest-neighbour resize of mask arrays, so a mask file and the
    # same mask as an array give the same training targets.
    return mask if size is None else resize_masks(mask[np.newaxis], size)[0]


def decode_masks(paths, size=None):
    """Decode mask files (class index per pixel) to one integer array ``(n, h, w)``.

    ``size=(height, width)`` resizes them with nearest neighbours
    (:func:`resize_masks`), so no class index is ever blended into another.
    Without it, mask files of different sizes give a list of ``(h, w)``
    arrays, one per file at its own size.
    """
    masks = list(_decode_pool().map(lambda path, source: _decode_mask(path, size, source),
                                    paths, open_sources(paths)))
    if len({mask.shape for mask in masks}) > 1:
        return masks
    return np.stack(masks)


def resize_masks(masks, size):
    """Resize integer masks ``(n, h, w)`` to ``size`` with nearest neighbours.

    Each output pixel takes the input pixel under its centre (half-pixel
    centres, as the image resize).
    """
    height, width = masks.shape[1:]
    if (height, width) == tuple(size):
        return masks
    rows = np.minimum(((np.arange(size[0]) + 0.5) * height / size[0]).astype(int), height - 1)
    cols = np.minimum(((np.arange(size[1]) + 0.5) * width / size[1]).astype(int), width - 1)
    return masks[:, rows][:, :, cols]


# --------------------------------------------------------------------------
# Image sets: read a batch of positions as a CPU tensor (n, c, h, w).


class ArrayImages:
    """Images ``(n, h, w, c)`` of an array, read batch by batch in their own dtype.

    ``index`` selects rows without copying them (a validation split).
    Memory-mapped arrays hand their pages back to the operating system as
    batches are read, so the process's memory does not grow with the file.
    """

    prefetch = 0
    kept = None

    def __init__(self, array, index=None, mapped=None):
        self.array = array
        self.index = index
        self.mapped = mapped
        self._bytes_read = 0

    def __len__(self):
        return len(self.array) if self.index is None else len(self.index)

    @property
    def image_shape(self):
        return tuple(int(side) for side in self.array.shape[1:])

    @property
    def original_sizes(self):
        return [self.image_shape[:2]] * len(self)

    def subset(self, positions):
        positions = np.asarray(positions)
        index = positions if self.index is None else self.index[positions]
        return ArrayImages(self.array, index, self.mapped)

    def read(self, positions):
        positions = np.asarray(positions)
        rows = positions if self.index is None else self.index[positions]
        batch = np.ascontiguousarray(self.array[rows])  # fancy indexing: a copy
        if self.mapped is not None:
            self._bytes_read += batch.nbytes
            if self._bytes_read > RELEASE_BYTES:
                _release_pages(self.mapped)
                self._bytes_read = 0
        # (n, h, w, c) seen as (n, c, h, w): channels-last strides, no copy.
        return torch.from_numpy(batch).permute(0, 3, 1, 2)


class FileImages:
    """Image files decoded batch by batch along the pixel path, by a pool of threads.

    Each file is decoded at full bit depth, turned upright, given the set's
    ``n_channels``, scaled and resized to ``size`` with ``interpolation``
    (:mod:`skvision._pixels`), so a batch of files equals the batch of the
    same pixels given as an array. Files of 8-bit depth already at ``size``
    stay uint8 (a quarter of the bytes to a GPU) and are scaled on the
    device, as arrays are. ``resize=False``: every file must already have
    ``size`` (an error names the first that does not). ``size=None``: each
    file at its own size (a fully convolutional network's prediction); a
    batch of files of different sizes is then read as a list of ``(c, h,
    w)`` tensors, as :class:`ListImages` reads. Paths may be URLs
    (:mod:`skvision._storage`).
    """

    kept = None

    def __init__(self, paths, size, n_channels, original_sizes=None, resize=True,
                 interpolation="bilinear"):
        self.paths = list(paths)
        self.prefetch = (REMOTE_PREFETCH_BATCHES if any(is_url(path) for path in self.paths)
                         else PREFETCH_BATCHES)
        self.size = None if size is None else tuple(int(side) for side in size)
        self.n_channels = int(n_channels)
        self.resize = resize and size is not None
        self.interpolation = interpolation
        self._original_sizes = original_sizes

    def __len__(self):
        return len(self.paths)

    @property
    def image_shape(self):
        return (*(self.size or (None, None)), self.n_channels)

    @property
    def original_sizes(self):
        if self._original_sizes is None:
            _, self._original_sizes, _ = scan_files(self.paths)
        return self._original_sizes

    def subset(self, positions):
        sizes = self._original_sizes
        return FileImages(
            [self.paths[i] for i in positions], self.size, self.n_channels,
            None if sizes is None else [sizes[i] for i in positions], self.resize,
            self.interpolation,
        )

    def _decode(self, path, source):
        array = decode_array(path, source, self.size if self.resize else None)
        size = array.shape[:2] if self.size is None else self.size
        if array.shape[:2] != size and not self.resize:
            raise ValueError(
                f"Image file {display_name(path)!r} is {array.shape[1]}x{array.shape[0]} "
                f"pixels, but the images are {size[1]}x{size[0]} (width x height); "
                "set image_size to resize them all to one size."
            )
        return array

    def read(self, positions):
        paths = [self.paths[i] for i in np.asarray(positions).reshape(-1)]
        arrays = list(_decode_pool().map(self._decode, paths, open_sources(paths)))
        if self.size is None:
            # Files of any size, each at its own (size=None): a list where they differ.
            if len({array.shape[:2] for array in arrays}) > 1:
                return [to_unit_batch([array], self.n_channels)[0] for array in arrays]
            return to_unit_batch(arrays, self.n_channels)
        if all(array.dtype == np.uint8 and array.shape[:2] == self.size
               and (array.ndim == 2) == (self.n_channels == 1) for array in arrays):
            # 8-bit files at the size, of the set's channels: uint8, scaled on the device.
            batch = np.stack(arrays)
            batch = batch[..., np.newaxis] if batch.ndim == 3 else batch
            return torch.from_numpy(batch).permute(0, 3, 1, 2)
        return to_unit_batch(arrays, self.n_channels, self.size, self.interpolation)


class ListImages:
    """Differently sized images: a list of float tensors ``(c, h, w)``.

    ``read`` returns a list of them, not one tensor: their sizes differ.
    """

    prefetch = 0
    kept = None

    def __init__(self, tensors):
        self.tensors = list(tensors)

    def __len__(self):
        return len(self.tensors)

    @property
    def image_shape(self):
        return (None, None, int(self.tensors[0].shape[0]))

    @property
    def original_sizes(self):
        return [tuple(tensor.shape[1:]) for tensor in self.tensors]

    def subset(self, positions):
        return ListImages([self.tensors[i] for i in positions])

    def read(self, positions):
        return [self.tensors[i] for i in np.asarray(positions).reshape(-1)]


def _release_pages(mapped):
    mapping = getattr(mapped, "_mmap", None)
    if mapping is None or getattr(mapped, "mode", "c") not in ("r", "r+"):
        return  # copy-on-write mappings would lose their private changes
    try:
        import mmap

        mapping.madvise(mmap.MADV_DONTNEED)
    except (AttributeError, OSError, ValueError):
        pass


# --------------------------------------------------------------------------
# Batches on the device.


def to_float(batch, device, size=None, memory_channels_last=True):
    """A batch read from an image set as float32 on ``device``, channels-last
    (or in the default layout with ``memory_channels_last=False``).

    The conversion happens after the transfer, so a uint8 batch crosses to a
    GPU at a quarter of the float32 bytes. uint8 and uint16 are scaled to
    [0, 1]; other numbers are kept (:func:`skvision._pixels.scale_to_unit`).
    ``size=(height, width)`` resizes (bilinear with antialiasing, the
    resize files of the set were decoded with) where the batch has another size.
    """
    if isinstance(batch, list):
        return [to_float(image[None], device, size, memory_channels_last)[0] for image in batch]
    batch = scale_to_unit(batch.to(device, non_blocking=True))
    if size is not None:
        batch = resize_images(batch, size)
    if not memory_channels_last:
        return batch.contiguous()
    return batch.contiguous(memory_format=torch.channels_last)


def read_batches(images, batches, device, size=None, memory_channels_last=True):
    """Yield the float batch of each array of positions in ``batches``.

    For sets that are slow to read (files), the next ``images.prefetch``
    batches are read in background threads while the caller computes on the
    current one: one thread for local files (their decoding is already
    spread over the decoding threads), several for remote ones, whose
    fetches then overlap.
    """
    depth = images.prefetch
    if not depth:
        for positions in batches:
            yield to_float(images.read(positions), device, size, memory_channels_last)
        return
    readers = 1 if depth <= PREFETCH_BATCHES else max(2, depth // 2)
    reader = ThreadPoolExecutor(readers, thread_name_prefix="skvision-prefetch")
    pending = deque()
    try:
        for positions in batches:
            pending.append(reader.submit(images.read, positions))
            if len(pending) > depth:
                yield to_float(pending.popleft().result(), device, size, memory_channels_last)
        while pending:
            yield to_float(pending.popleft().result(), device, size, memory_channels_last)
    finally:
        # An abandoned loop (early stopping, Ctrl-C, an error) leaves no reads behind.
        reader.shutdown(wait=True, cancel_futures=True)


def sequential_batches(start, stop, batch_size):
    """Position arrays ``[start, start + batch_size)``, ... up to ``stop``."""
    return (np.arange(first, min(first + batch_size, stop))
            for first in range(start, stop, batch_size))
