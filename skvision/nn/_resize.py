"""The one resize of image batches: arrays, decoded files, backbones and ONNX graphs use it.

A model must give the same answer for the same picture however it arrives,
so every resize of pixels in skvision (the data layer's, a pretrained
backbone's own input resize, :class:`skvision.preprocessing.Resize`, the
input step of an exported ONNX graph) is this function: torch's
``interpolate`` on float images with antialiasing (the low-pass filter that
Pillow and ``torchvision.transforms.v2.functional.resize`` apply when
shrinking) and half-pixel centres (``align_corners=False``).
"""

import torch.nn.functional as F

__all__ = ["resize_images"]

#: The modes that low-pass filter when shrinking (torch antialiases only these).
ANTIALIASED_MODES = ("bilinear", "bicubic")


def resize_images(images, size, interpolation="bilinear", antialias=True):
    """Resize a float batch ``(n, c, h, w)`` to ``size = (height, width)``.

    Returns ``images`` itself when it already has that size. ``antialias``
    applies to "bilinear" and "bicubic" only (torch has no antialiased
    nearest or area resize; "area" averages by construction). Antialiased
    bicubic uses Keys' coefficient a = -0.5, as Pillow does; torch's ONNX
    exporter writes the same (``cubic_coeff_a=-0.5``, ``exclude_outside=1``,
    ``antialias=1``) into the Resize node, so exported graphs resize alike.
    """
    size = tuple(int(side) for side in size)
    if tuple(images.shape[-2:]) == size:
        return images
    if interpolation in ANTIALIASED_MODES:
        return F.interpolate(images, size=size, mode=interpolation,
                             antialias=bool(antialias), align_corners=False)
    return F.interpolate(images, size=size, mode=interpolation)
