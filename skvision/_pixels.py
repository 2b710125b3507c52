"""One pixel path: how a file or an array becomes the float image a network sees.

The same picture must give the same answer however it arrives (an array,
a local file, a URL, a file inside an archive), so every input goes through
the same steps, in this order:

1. **decode** (:func:`decode_file`) at full bit depth: 8-bit files to uint8,
   16-bit PNG and TIFF files to uint16 (Pillow keeps 16-bit gray but not
   16-bit colour, so colour PNGs go through ``torchvision.io.decode_png``
   and TIFFs through ``tifffile``), float files to float32;
2. **orientation**: the EXIF orientation tag applied (Pillow's
   ``ImageOps.exif_transpose``; the same transposition for the other
   decoders), so a phone photo stored sideways is seen upright;
3. **channels**: alpha dropped (an opaque RGBA file is its RGB file), palette,
   CMYK and other colour modes converted to RGB, gray images repeated to
   RGB where the set is colour (:func:`match_channels`);
4. **scale** to float (:func:`scale_to_unit`): an integer image divided by
   its type's maximum (uint8 by 255, 16-bit by 65535, as
   ``skimage.img_as_float``), a float image taken as it is;
5. **resize** with :func:`skvision.nn._resize.resize_images`, the one resize
   of arrays, files, backbones and ONNX graphs.

Arrays enter at step 3 (their dtype says how to scale them).
"""

import numpy as np
import torch
from PIL import Image, ImageOps

from .nn._resize import resize_images

__all__ = [
    "decode_file",
    "read_header",
    "file_channels",
    "is_gray_mode",
    "match_channels",
    "oriented_size",
    "scale_to_unit",
    "to_unit_batch",
]

# Pillow modes of one gray channel (alpha, if any, dropped).
_GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
# Integer dtypes scaled by their maximum. Other integer arrays (int64 counts,
# labels) are numbers, kept as they are, as before.
SCALED_DTYPES = (torch.uint8, torch.uint16)
# EXIF orientations that swap width and height (a quarter turn).
_QUARTER_TURNS = {5, 6, 7, 8}
_ORIENTATION_TAG = 0x0112
# The first bytes of TIFF and BigTIFF files, little- and big-endian.
_TIFF_MAGIC = {b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"}
# Pillow's raw modes of 16-bit colour PNGs, which it decodes to 8 bits.
_PNG_16BIT_COLOUR = {"RGB;16B", "RGBA;16B"}


def is_gray_mode(mode):
    """Whether files of Pillow mode ``mode`` decode to one (gray) channel."""
    return mode in _GRAY_MODES


def file_channels(modes):
    """The channel count of a set of files: 3 if any of them is colour, else 1.

    Each file is converted on its own (:func:`match_channels`), so a folder
    of colour photos with a few gray ones is a colour set.
    """
    return 1 if all(is_gray_mode(mode) for mode in modes) else 3


def _orientation(image):
    try:
        return int(image.getexif().get(_ORIENTATION_TAG, 1) or 1)
    except Exception:  # a broken EXIF block is no orientation
        return 1


def oriented_size(image):
    """(height, width) of a Pillow image as it will be decoded: after EXIF orientation."""
    width, height = image.size
    return (width, height) if _orientation(image) in _QUARTER_TURNS else (height, width)


# ImageOps.exif_transpose's transpositions, as numpy operations on (h, w, ...) arrays.
_ORIENT_ARRAY = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: a.swapaxes(0, 1)[:, ::-1],
    7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],
    8: lambda a: a.swapaxes(0, 1)[::-1],
}


def _oriented(array, orientation):
    turn = _ORIENT_ARRAY.get(orientation)
    return array if turn is None else np.ascontiguousarray(turn(array))


def _pillow_array(image, draft_size):
    """A Pillow image as an array in its own bit depth, upright, alpha dropped."""
    if draft_size is not None and image.format == "JPEG":
        # A reduced DCT scale (2-5x faster decoding), never below twice the
        # target, so the one resize still does the filtering that counts.
        image.draft(image.mode, (2 * draft_size[1], 2 * draft_size[0]))
    image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(image).astype(np.uint16, copy=False)
    if mode in ("I", "F"):
        return np.asarray(image)
    if is_gray_mode(mode):  # "1", "L", "LA", "La"
        return np.asarray(image if mode == "L" else image.convert("L"))
    return np.asarray(image if mode == "RGB" else image.convert("RGB"))


def _png_16bit_colour(image):
    tile = getattr(image, "tile", None) or []
    return image.format == "PNG" and bool(tile) and tile[0][3] in _PNG_16BIT_COLOUR


def _decode_png_16bit(data):
    import warnings

    from torchvision.io import ImageReadMode, decode_png

    with warnings.catch_warnings():
        # torchvision 0.29 deprecates its image codecs in favour of TorchCodec;
        # until skvision takes that dependency, its PNG decoder is the one at
        # hand that keeps 16-bit colour.
        warnings.simplefilter("ignore", DeprecationWarning)
        tensor = decode_png(torch.frombuffer(bytearray(data), dtype=torch.uint8),
                            ImageReadMode.RGB, apply_exif_orientation=True)
    return tensor.permute(1, 2, 0).numpy()


def _is_tiff(source):
    position = source.tell()
    magic = source.read(4)
    source.seek(position)
    return magic in _TIFF_MAGIC


def _tiff_page(tiff):
    """The first page of a TIFF file: its shape ``(h, w[, samples])`` and EXIF orientation."""
    page = tiff.pages[0]
    orientation = page.tags.get(_ORIENTATION_TAG)
    return page, int(orientation.value) if orientation is not None else 1


def _tiff_header(source):
    import tifffile

    with tifffile.TiffFile(source) as tiff:
        page, orientation = _tiff_page(tiff)
        height, width = page.imagelength, page.imagewidth
        mode = "L" if page.samplesperpixel in (1, 2) else "RGB"
    size = (width, height) if orientation in _QUARTER_TURNS else (height, width)
    return size, mode, "TIFF"


def _decode_tiff(source):
    import tifffile

    with tifffile.TiffFile(source) as tiff:
        page, orientation = _tiff_page(tiff)
        array = page.asarray()
    if array.ndim == 3 and array.shape[-1] in (2, 4):
        array = array[..., :-1]  # gray + alpha, RGB + alpha: alpha dropped
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] != 3):
        raise ValueError(f"a TIFF image of shape {array.shape} is not a gray or RGB image")
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    return _oriented(array, orientation)


def read_header(source):
    """(height, width) after EXIF orientation, mode and format of an opened image file.

    The mode is Pillow's (for TIFF files, which tifffile reads: "L" for gray,
    "RGB" for colour); only the header is read.
    """
    if _is_tiff(source):
        return _tiff_header(source)
    with Image.open(source) as image:
        return oriented_size(image), image.mode, image.format


def decode_file(source, draft_size=None):
    """Decode an opened image file to an array ``(h, w)`` or ``(h, w, 3)``, upright.

    Steps 1-3 of the pixel path (module docstring), without converting
    gray to colour: uint8 for 8-bit files, uint16 for 16-bit PNG and TIFF
    files, int32 for 32-bit integer files and float32 for float files.
    ``draft_size=(height, width)``: a JPEG much larger than it may be decoded
    at a reduced DCT scale, never below twice that size. Raises Pillow's,
    torchvision's or tifffile's error for a file it cannot decode.
    """
    if _is_tiff(source):
        return _decode_tiff(source)
    with Image.open(source) as image:
        if _png_16bit_colour(image):
            source.seek(0)
            return _decode_png_16bit(source.read())
        return _pillow_array(image, draft_size)


def scale_to_unit(batch):
    """A tensor of images as float32 in [0, 1]: step 4 of the pixel path.

    uint8 is divided by 255 and uint16 by 65535 (as ``skimage.img_as_float``
    and ``torchvision.transforms.v2.ToDtype(scale=True)``); int32 (32-bit
    integer files) by 2**31 - 1; float images and other integer arrays are
    numbers taken as they are.
    """
    if batch.dtype == torch.uint8:
        return batch.float().div_(255)
    if batch.dtype == torch.uint16:
        return batch.float().div_(65535)
    if batch.dtype == torch.int32:
        return batch.double().div_(2**31 - 1).float()
    return batch if batch.dtype == torch.float32 else batch.float()


def match_channels(images, n_channels):
    """Float images ``(n, c, h, w)`` with ``n_channels`` channels: step 3 for one file.

    Gray becomes RGB by repetition (a gray file in a colour set) and RGB
    becomes gray by the ITU-R 601-2 luma weights (a colour file given to a
    model fitted on gray files), as Pillow's ``convert`` does.
    """
    have = images.shape[1]
    if have == n_channels:
        return images
    if have == 1 and n_channels == 3:
        return images.expand(-1, 3, -1, -1)
    if have == 3 and n_channels == 1:
        luma = images.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        return (images * luma).sum(dim=1, keepdim=True)
    raise ValueError(f"Cannot convert images of {have} channels to {n_channels}.")


def to_unit_batch(arrays, n_channels, size=None, interpolation="bilinear"):
    """Decoded image arrays as one float32 batch ``(n, c, h, w)``: steps 3-5 of the pixel path.

    Arrays of one shape are resized together, in one call, exactly as an
    array batch is (:func:`skvision._data.to_float`); ``size=None`` needs
    them all of one size. Torch runs here, in the thread that reads the
    batch, never in the decoding threads: torch's parallel kernels started
    from many threads at once oversubscribe the cores.
    """
    tensors = []
    for array in arrays:
        if array.ndim == 2:
            array = array[..., np.newaxis]
        if not array.flags.writeable:  # Pillow's arrays: torch wants writable memory
            array = array.copy()
        tensors.append(torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)[None])
    if size is None or len({tensor.shape for tensor in tensors}) == 1:
        batch = match_channels(scale_to_unit(torch.cat(tensors)), n_channels)
        return batch if size is None else resize_images(batch, size, interpolation)
    return torch.cat([resize_images(match_channels(scale_to_unit(tensor), n_channels), size,
                                    interpolation) for tensor in tensors])
