"""The engine behind ImageAugmenter: draw per-image parameters, then apply them.

Drawing and applying are separate steps (kornia's design): :func:`draw_params`
turns an augmenter's settings and one seed per batch into an
:class:`AugmentationParams` of small numpy arrays, without touching a pixel;
:func:`apply_params` applies such parameters to a batch of images and to its
masks and boxes. So the parameters of a batch can be returned, inspected and
replayed (on the images, then on their masks in another call).

Every operation draws from its own random stream: stream ``STREAMS[name]``
of the batch's seed (:func:`skvision._torch.stream_generator`). Turning one
operation on or off, or changing its strength, leaves the draws of every
other operation unchanged for the same seed.

Geometry: all geometric steps of an image (random resized crop, flips,
rotation, translation, scale, shear) are composed into one 3x3 matrix, so a
whole batch is resampled by one ``affine_grid`` + ``grid_sample`` call. Color:
brightness, contrast, saturation, hue and grayscale are linear in RGB and
are folded into one 3x3 map and one offset per image.
"""

import dataclasses
import math

import numpy as np
import torch
import torch.nn.functional as F

from ._torch import draw_seed, stream_generator, torch_generator
from ._validation import LUMA

# The stream of each operation. The numbers are fixed: a new operation takes
# the next free one, and none is ever renumbered (that would change what
# every existing seed draws).
STREAMS = {
    "crop": 0, "horizontal_flip": 1, "vertical_flip": 2, "affine": 3,
    "brightness": 4, "contrast": 5, "saturation": 6, "hue": 7, "grayscale": 8,
    "blur": 9, "noise": 10, "erasing": 11, "mix": 12,
}

# Hue rotates the chroma plane (I, Q) of YIQ, which keeps the luma: a linear
# map in RGB, unlike torchvision's HSV round trip.
_RGB_TO_YIQ = np.array([LUMA, [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)
_GRAY = np.outer(np.ones(3), LUMA)  # every channel becomes the luma

_ARRAYS = ("matrix", "brightness", "contrast", "color_matrix", "blur_sigma", "erasing")


def stream(seed, name):
    """The random stream of operation ``name`` for a batch seeded with ``seed``."""
    return stream_generator(seed, STREAMS[name])


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class AugmentationParams:
    """The random parameters of one augmented batch, one row per image.

    Returned by ``ImageAugmenter.augment_batch(..., return_params=True)`` and
    replayed by ``augment_batch(..., params=...)``: on the same images the
    output is the same bit for bit; masks and boxes of the batch, given in
    the same call or in another, follow the same geometry. A field is None
    when its step is off. The arrays are read-only copies.

    Parameters
    ----------
    n_samples : int
        The batch size they were drawn for.
    image_size : (int, int)
        ``(height, width)`` they were drawn for.
    matrix : ndarray of shape (n_samples, 3, 3) or None
        Per image, the map from output to input pixel coordinates (centred
        on the image) that composes crop, flips, rotation, translation,
        scale and shear.
    flips_only : bool
        Whether ``matrix`` holds flips only (applied exactly, without
        interpolation).
    brightness : ndarray of shape (n_samples,) or None
        Factors multiplying the pixel values.
    contrast : ndarray of shape (n_samples,) or None
        Factors scaling each image's deviations from its mean gray level
        (the mean of the image it is applied to, computed then).
    color_matrix : ndarray of shape (n_samples, 3, 3) or None
        Saturation, hue and grayscale as one linear map of RGB values
        (ignored on images that are not RGB).
    blur_sigma : ndarray of shape (n_samples,) or None
        Standard deviation of the gaussian blur, in pixels.
    noise_std : float
        Standard deviation of the additive gaussian noise (0: none).
    noise_seed : int or None
        Seed of the torch generator the noise is drawn from.
    erasing : ndarray of shape (n_samples, 4) or None
        Erased rectangle ``(top, left, bottom, right)`` as fractions of the
        height and width; an empty rectangle for images not erased.

    See Also
    --------
    skvision.ImageAugmenter : Its ``augment_batch`` returns and replays them.

    Examples
    --------
    >>> import torch
    >>> from skvision import ImageAugmenter
    >>> augmenter = ImageAugmenter(horizontal_flip=0.5, degrees=10)
    >>> images = torch.rand(4, 3, 16, 16)
    >>> out, params = augmenter.augment_batch(images, random_state=0, return_params=True)
    >>> params.matrix.shape
    (4, 3, 3)
    >>> torch.equal(augmenter.augment_batch(images, params=params), out)
    True
    """

    n_samples: int
    image_size: tuple
    matrix: np.ndarray = None
    flips_only: bool = True
    brightness: np.ndarray = None
    contrast: np.ndarray = None
    color_matrix: np.ndarray = None
    blur_sigma: np.ndarray = None
    noise_std: float = 0.0
    noise_seed: int = None
    erasing: np.ndarray = None

    def __post_init__(self):
        object.__setattr__(self, "image_size", tuple(int(side) for side in self.image_size))
        for name in _ARRAYS:
            value = getattr(self, name)
            if value is not None:
                value = np.array(value, dtype=np.float64)
                value.setflags(write=False)
                object.__setattr__(self, name, value)

    def __repr__(self):
        steps = [name for name in _ARRAYS if getattr(self, name) is not None]
        steps += ["noise"] if self.noise_seed is not None else []
        return (f"AugmentationParams(n_samples={self.n_samples}, image_size={self.image_size}, "
                f"steps={steps})")

    def check_batch(self, n_samples, image_size):
        """Raise a ValueError unless the parameters were drawn for this batch's shape."""
        image_size = tuple(int(side) for side in image_size)
        if (n_samples, image_size) != (self.n_samples, self.image_size):
            raise ValueError(
                f"params were drawn for {self.n_samples} images of size (height, width) "
                f"{self.image_size}; this batch has {n_samples} images of size {image_size}. "
                "Replay them on a batch of that shape, or draw new ones (params=None)."
            )


# --------------------------------------------------------------------------
# Drawing.


def draw_params(augmenter, n_samples, image_size, seed):
    """Draw the parameters of a batch of ``n_samples`` images of ``(height, width)``.

    ``augmenter`` supplies the settings (an ImageAugmenter); every operation
    draws from its own stream of ``seed``. Nothing is applied here.
    """
    height, width = image_size
    matrix, flips_only = _draw_geometry(augmenter, n_samples, height, width, seed)
    noise_seed = draw_seed(stream(seed, "noise")) if augmenter.noise_std > 0 else None
    return AugmentationParams(
        n_samples=n_samples, image_size=(height, width), matrix=matrix, flips_only=flips_only,
        brightness=_factors(seed, "brightness", augmenter.brightness, n_samples),
        contrast=_factors(seed, "contrast", augmenter.contrast, n_samples),
        color_matrix=_draw_color_matrix(augmenter, n_samples, seed),
        blur_sigma=_draw_blur(augmenter.blur_sigma, n_samples, seed),
        noise_std=float(augmenter.noise_std), noise_seed=noise_seed,
        erasing=_draw_erasing(augmenter, n_samples, height, width, seed),
    )


def _draw_geometry(augmenter, n, height, width, seed):
    """Per-image 3x3 maps from output to input pixels (centred coordinates).

    Returns ``(None, True)`` when no geometric step is enabled, and a flag
    telling whether the maps are flips only (done exactly, no resampling).
    """
    affine = augmenter.degrees > 0 or augmenter.translate > 0 or augmenter.shear > 0 or (
        tuple(augmenter.scale) != (1.0, 1.0))
    flips = augmenter.horizontal_flip > 0 or augmenter.vertical_flip > 0
    crop = augmenter.crop_scale is not None
    if not (affine or flips or crop):
        return None, True
    if crop:
        matrix = _crop_maps(augmenter, n, height, width, stream(seed, "crop"))
    else:
        matrix = np.tile(np.eye(3), (n, 1, 1))
    if flips:
        flip = np.ones((n, 3))
        for column, name in enumerate(("horizontal_flip", "vertical_flip")):
            if getattr(augmenter, name) > 0:
                drawn = stream(seed, name).random(n) < getattr(augmenter, name)
                flip[:, column] = np.where(drawn, -1.0, 1.0)
        matrix = matrix * flip[:, np.newaxis, :]  # right-multiply by diag(flip)
    if affine:
        matrix = matrix @ invert_affine(_affine_maps(augmenter, n, height, width,
                                                     stream(seed, "affine")))
    return matrix, not (affine or crop)


def _crop_maps(augmenter, n, height, width, rng):
    """Random resized crop: a box of the input (share ``area``, aspect ``ratio``)
    stretched over the output, so output -> input is a scale plus a shift."""
    area = rng.uniform(*augmenter.crop_scale, n)
    ratio = np.exp(rng.uniform(*np.log(augmenter.crop_ratio), n))
    crop_w = np.minimum(np.sqrt(area * ratio), 1.0)
    crop_h = np.minimum(np.sqrt(area / ratio), 1.0)
    matrix = np.tile(np.eye(3), (n, 1, 1))
    matrix[:, 0, 0], matrix[:, 1, 1] = crop_w, crop_h
    matrix[:, 0, 2] = rng.uniform(-1, 1, n) * (1 - crop_w) * width / 2
    matrix[:, 1, 2] = rng.uniform(-1, 1, n) * (1 - crop_h) * height / 2
    return matrix


def _affine_maps(augmenter, n, height, width, rng):
    """Input -> output maps: translate @ rotate @ shear @ zoom, per image.

    All five draws are made whenever any affine step is on, so changing one
    strength (e.g. ``degrees``) changes only its own values.
    """
    angle = np.deg2rad(rng.uniform(-augmenter.degrees, augmenter.degrees, n))
    shear = np.tan(np.deg2rad(rng.uniform(-augmenter.shear, augmenter.shear, n)))
    zoom = rng.uniform(*augmenter.scale, n)
    shift_x = rng.uniform(-augmenter.translate, augmenter.translate, n) * width
    shift_y = rng.uniform(-augmenter.translate, augmenter.translate, n) * height
    cos, sin = np.cos(angle), np.sin(angle)
    forward = np.zeros((n, 3, 3))
    forward[:, 0, 0] = zoom * cos
    forward[:, 0, 1] = zoom * (cos * shear - sin)
    forward[:, 1, 0] = zoom * sin
    forward[:, 1, 1] = zoom * (sin * shear + cos)
    forward[:, 0, 2], forward[:, 1, 2], forward[:, 2, 2] = shift_x, shift_y, 1.0
    return forward


def invert_affine(maps):
    """Inverses of (n, 3, 3) affine maps (last row 0, 0, 1), in closed form.

    Several times faster than ``np.linalg.inv`` on a stack of small matrices.
    """
    a, b, c, d = maps[:, 0, 0], maps[:, 0, 1], maps[:, 1, 0], maps[:, 1, 1]
    shift_x, shift_y = maps[:, 0, 2], maps[:, 1, 2]
    det = a * d - b * c
    inverse = np.zeros_like(maps)
    inverse[:, 0, 0], inverse[:, 0, 1] = d / det, -b / det
    inverse[:, 1, 0], inverse[:, 1, 1] = -c / det, a / det
    inverse[:, 0, 2] = -(inverse[:, 0, 0] * shift_x + inverse[:, 0, 1] * shift_y)
    inverse[:, 1, 2] = -(inverse[:, 1, 0] * shift_x + inverse[:, 1, 1] * shift_y)
    inverse[:, 2, 2] = 1.0
    return inverse


def _factors(seed, name, strength, n):
    """Factors drawn from ``[max(0, 1 - strength), 1 + strength]``; None when off."""
    if strength <= 0:
        return None
    return stream(seed, name).uniform(max(0, 1 - strength), 1 + strength, n)


def _draw_color_matrix(augmenter, n, seed):
    """Saturation, then hue, then grayscale, as one linear RGB map per image.

    Each step keeps gray pixels gray. None when all three are off.
    """
    if not (augmenter.saturation > 0 or augmenter.hue > 0 or augmenter.grayscale > 0):
        return None
    maps = np.tile(np.eye(3), (n, 1, 1))
    saturation = _factors(seed, "saturation", augmenter.saturation, n)
    if saturation is not None:
        maps = saturation[:, None, None] * np.eye(3) + (1 - saturation)[:, None, None] * _GRAY
    if augmenter.hue > 0:
        turn = stream(seed, "hue").uniform(-augmenter.hue, augmenter.hue, n) * 2 * np.pi
        rotation = np.tile(np.eye(3), (n, 1, 1))
        rotation[:, 1, 1] = rotation[:, 2, 2] = np.cos(turn)
        rotation[:, 1, 2], rotation[:, 2, 1] = -np.sin(turn), np.sin(turn)
        maps = _YIQ_TO_RGB @ rotation @ _RGB_TO_YIQ @ maps
    if augmenter.grayscale > 0:
        to_gray = stream(seed, "grayscale").random(n) < augmenter.grayscale
        maps[to_gray] = _GRAY @ maps[to_gray]
    return maps


def _draw_blur(blur_sigma, n, seed):
    if blur_sigma <= 0:
        return None
    return stream(seed, "blur").uniform(min(0.1, blur_sigma), blur_sigma, n)


def _draw_erasing(augmenter, n, height, width, seed):
    """Erased rectangles as fractions of the image; empty where not erased."""
    if augmenter.erasing <= 0:
        return None
    rng = stream(seed, "erasing")
    erase = rng.random(n) < augmenter.erasing
    area = rng.uniform(*augmenter.erasing_scale, n)
    bounds = draw_rectangles(area, height, width, rng) / [height, width, height, width]
    bounds[~erase] = 0.0
    return bounds


def draw_rectangles(area, height, width, rng):
    """One random rectangle per image, as (n, 4) pixel bounds (top, left, bottom, right).

    ``area`` is each rectangle's share of the image; the aspect ratio is
    drawn log-uniform from [0.3, 3.3] as in random erasing.
    """
    n = len(area)
    ratio = np.exp(rng.uniform(np.log(0.3), np.log(3.3), n))
    rect_h = np.clip(np.rint(np.sqrt(area * height * width * ratio)), 0, height)
    rect_w = np.clip(np.rint(np.sqrt(area * height * width / ratio)), 0, width)
    top = np.floor(rng.random(n) * (height - rect_h + 1))
    left = np.floor(rng.random(n) * (width - rect_w + 1))
    return np.stack([top, left, top + rect_h, left + rect_w], axis=1)


# --------------------------------------------------------------------------
# Applying.


def apply_params(params, images, masks=None, boxes=None, *, padding_mode="zeros", mask_fill=0):
    """Geometry, then color, blur, noise and erasing; returns ``(images, masks, boxes)``.

    ``params`` must have been drawn for the shape of ``images`` (checked by
    the caller). ``mask_fill`` is the class given to mask pixels brought in
    from outside the image.
    """
    height, width = images.shape[2:]
    if params.matrix is not None:
        images, masks = _resample(images, masks, params.matrix, params.flips_only,
                                  padding_mode, mask_fill)
        if boxes is not None:
            boxes = _move_boxes(boxes, params.matrix, height, width)
    images = _apply_colors(images, params.brightness, params.contrast, params.color_matrix)
    if params.blur_sigma is not None:
        images = _gaussian_blur(images, params.blur_sigma)
    if params.noise_seed is not None:
        noise = torch.randn(
            images.shape, generator=torch_generator(params.noise_seed, images.device),
            device=images.device, dtype=images.dtype,
        )
        images = images + params.noise_std * noise
    if params.erasing is not None:
        bounds = np.rint(params.erasing * [height, width, height, width])
        images = images.masked_fill(rectangle_masks(bounds, height, width, images.device), 0.0)
    return images, masks, boxes


def _apply_colors(images, brightness, contrast, color_matrix):
    """Brightness, contrast and the linear map L as one affine color map per image.

    With factors b (brightness), c (contrast), L (saturation, hue, grayscale;
    it keeps gray pixels gray) and m the mean luma of the image:
    ``x -> c b L x + (1 - c) b m``, the same as applying the steps one after
    the other in torchvision's order.
    """
    n_samples, n_channels = images.shape[:2]
    rgb = n_channels == 3
    linear = rgb and color_matrix is not None
    if not (linear or brightness is not None or contrast is not None):
        return images
    bright = np.ones(n_samples) if brightness is None else brightness
    factor = np.ones(n_samples) if contrast is None else contrast
    as_tensor = {"dtype": images.dtype, "device": images.device}
    gain = factor * bright
    offset = images.new_zeros(n_samples)
    if contrast is not None:
        channel_means = images.mean(dim=(2, 3))
        mean = channel_means @ torch.as_tensor(LUMA, **as_tensor) if rgb else (
            channel_means.mean(dim=1))
        offset = torch.as_tensor((1 - factor) * bright, **as_tensor) * mean
    if not linear:
        gain = torch.as_tensor(gain, **as_tensor).view(-1, 1, 1, 1)
        return torch.addcmul(offset.view(-1, 1, 1, 1), images, gain)
    maps = torch.as_tensor(color_matrix * gain[:, None, None], **as_tensor)
    # One fused pass: offset + maps @ pixels, image by image.
    result = torch.baddbmm(offset.view(-1, 1, 1).expand(-1, 3, 1), maps,
                           images.reshape(n_samples, 3, -1))
    return result.view(images.shape)


def _column(values, device):
    """A boolean numpy vector as a (n, 1, 1, 1) tensor for broadcasting."""
    return torch.as_tensor(values, device=device).view(-1, 1, 1, 1)


def _resample(images, masks, matrix, flips_only, padding_mode, mask_fill=0):
    """Apply per-image output->input maps to images (bilinear) and masks (nearest)."""
    if flips_only:
        # A flip moves whole pixels: exact, without interpolation.
        flip_x = _column(matrix[:, 0, 0] < 0, images.device)
        flip_y = _column(matrix[:, 1, 1] < 0, images.device)
        images = torch.where(flip_x, images.flip(-1), images)
        images = torch.where(flip_y, images.flip(-2), images)
        if masks is not None:
            masks = torch.where(flip_x[:, 0], masks.flip(-1), masks)
            masks = torch.where(flip_y[:, 0], masks.flip(-2), masks)
        return images, masks
    height, width = images.shape[2:]
    # grid_sample works in [-1, 1] coordinates (align_corners=False): rescale
    # the pixel-space maps, so rotations stay rotations on non-square images.
    to_unit = np.diag([2 / width, 2 / height, 1.0])
    theta = to_unit @ matrix @ np.linalg.inv(to_unit)
    theta = torch.as_tensor(theta[:, :2], dtype=images.dtype, device=images.device)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode=padding_mode,
                           align_corners=False)
    if masks is not None:
        # Sampled as offsets from mask_fill, so the zero padding becomes mask_fill.
        shifted = (masks - mask_fill)[:, None].to(grid.dtype)
        masks = F.grid_sample(shifted, grid, mode="nearest", padding_mode="zeros",
                              align_corners=False)[:, 0].round().long() + mask_fill
    return images, masks


def _move_boxes(targets, matrix, height, width):
    """Map xyxy boxes through the inverse (input -> output) maps, clip, drop the lost."""
    forward = invert_affine(matrix)
    counts = [len(target["boxes"]) for target in targets]
    if not sum(counts):
        return targets
    boxes = torch.cat([target["boxes"] for target in targets]).double().numpy()
    owner = np.repeat(np.arange(len(targets)), counts)
    corners = np.stack([boxes[:, [0, 1]], boxes[:, [2, 1]], boxes[:, [0, 3]], boxes[:, [2, 3]]],
                       axis=1) - [width / 2, height / 2]
    moved = np.einsum("bij,bkj->bki", forward[owner, :2, :2], corners) + forward[owner, None, :2, 2]
    moved = moved + [width / 2, height / 2]
    new = np.concatenate([moved.min(axis=1), moved.max(axis=1)], axis=1)
    new = np.clip(new, 0, [width, height, width, height])
    keep = (new[:, 2] - new[:, 0] >= 1) & (new[:, 3] - new[:, 1] >= 1)
    result, start = [], 0
    for target, count in zip(targets, counts):
        kept = keep[start : start + count]
        entry = {key: value[kept] if np.ndim(value) else value
                 for key, value in target.items() if key != "boxes"}
        entry["boxes"] = torch.as_tensor(new[start : start + count][kept], dtype=torch.float32)
        result.append(entry)
        start += count
    return result


def rectangle_masks(bounds, height, width, device):
    """Boolean (n, 1, h, w) masks of the rectangles ``bounds`` (pixel top, left, bottom, right)."""
    rows = torch.arange(height, device=device).view(1, 1, -1, 1)
    cols = torch.arange(width, device=device).view(1, 1, 1, -1)
    top, left, bottom, right = (torch.as_tensor(column, device=device).view(-1, 1, 1, 1)
                                for column in np.asarray(bounds).T)
    return (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)


def _gaussian_blur(images, sigmas):
    """Separable gaussian blur with one sigma per image, as two grouped convolutions."""
    n_samples, n_channels, height, width = images.shape
    radius = max(1, math.ceil(3 * float(np.max(sigmas))))
    offsets = np.arange(-radius, radius + 1)
    kernels = np.exp(-(offsets[None, :] ** 2) / (2 * np.asarray(sigmas)[:, None] ** 2))
    kernels = kernels / kernels.sum(axis=1, keepdims=True)
    kernels = torch.as_tensor(np.repeat(kernels, n_channels, axis=0), dtype=images.dtype,
                              device=images.device)
    groups = n_samples * n_channels
    flat = images.reshape(1, groups, height, width)
    # Reflect padding needs the pad to be smaller than the side.
    pad_h, pad_w = min(radius, height - 1), min(radius, width - 1)
    if pad_h:
        flat = F.pad(flat, (0, 0, pad_h, pad_h), mode="reflect")
        kernel = kernels[:, radius - pad_h : radius + pad_h + 1]
        flat = F.conv2d(flat, kernel[:, None, :, None] / kernel.sum(1).view(-1, 1, 1, 1),
                        groups=groups)
    if pad_w:
        flat = F.pad(flat, (pad_w, pad_w, 0, 0), mode="reflect")
        kernel = kernels[:, radius - pad_w : radius + pad_w + 1]
        flat = F.conv2d(flat, kernel[:, None, None, :] / kernel.sum(1).view(-1, 1, 1, 1),
                        groups=groups)
    return flat.reshape(n_samples, n_channels, height, width)
