"""ImageAugmenter: batched, per-sample random augmentation of images, masks and boxes.

Every geometric step (random resized crop, flips, rotation, translation,
scale, shear) of one image is composed into a single 3x3 matrix, so a whole
batch is resampled by one ``affine_grid`` + ``grid_sample`` call: one
interpolation per image instead of one per step, and no per-image Python
loop. The color steps (brightness, contrast, saturation, hue, grayscale) are
all linear in RGB and are likewise folded into one 3x3 matrix and one offset
per image. ``bench/augment_throughput.py`` measures this engine against a
per-image torchvision v2 loop and against kornia.augmentation.
"""

import math
import numbers

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin, clone
from sklearn.utils.validation import check_is_fitted, check_scalar

from ._torch import numpy_generator, resolve_device, torch_generator
from ._validation import (
    LUMA,
    _check_targets_length,
    check_boxes,
    check_images,
    check_masks,
    images_like,
)

__all__ = ["AugmentationSampler", "ImageAugmenter", "tta_predict"]

# Hue rotates the chroma plane (I, Q) of YIQ, which keeps the luma: a linear
# map in RGB, unlike torchvision's HSV round trip.
_RGB_TO_YIQ = np.array([LUMA, [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)

_PRESETS = {
    "light": dict(horizontal_flip=0.5, crop_scale=(0.8, 1.0)),
    "standard": dict(
        horizontal_flip=0.5, crop_scale=(0.5, 1.0), degrees=10.0,
        brightness=0.2, contrast=0.2, saturation=0.2,
    ),
    "strong": dict(
        horizontal_flip=0.5, crop_scale=(0.25, 1.0), degrees=20.0, translate=0.1, shear=10.0,
        brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1, grayscale=0.1, blur_sigma=1.0,
        erasing=0.25, mixup_alpha=0.2, cutmix_alpha=1.0,
    ),
}
_PADDING_MODES = ("zeros", "border", "reflection")


def _check_range(value, name, low, high=None):
    """A ``(min, max)`` pair with ``low <= min <= max (<= high)``."""
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not all(isinstance(v, numbers.Real) for v in value)):
        raise ValueError(f"{name} must be a (min, max) pair of numbers; got {value!r}.")
    if not (low <= value[0] <= value[1]) or (high is not None and value[1] > high):
        bound = f"{low} <= min <= max" + (f" <= {high}" if high is not None else "")
        raise ValueError(f"{name} must satisfy {bound}; got {value!r}.")


class ImageAugmenter(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Random augmentation of image batches, with per-image random parameters.

    Flips, random resized crop, rotation/translation/scale/shear, color
    jitter, random grayscale, gaussian blur, gaussian noise and random
    erasing, drawn independently for every image of a batch and applied to
    whole batches of tensors (on the GPU when the data is there). All
    geometric steps of an image are composed into one affine matrix and the
    image is resampled once. Integer masks (nearest neighbour) and xyxy
    boxes (clipped; boxes that leave the image are dropped with their labels)
    follow the same geometry through :meth:`augment_batch`.

    Three uses:

    * ``CNNClassifier(augment=ImageAugmenter(...))`` (any neural estimator):
      fresh augmentation of every training batch at every epoch, never of
      validation or prediction batches; only there do ``mixup_alpha`` and
      ``cutmix_alpha`` apply, as they mix the labels too;
    * :meth:`fit_resample`: the originals plus ``n_copies`` augmented copies;
      wrapped in :class:`AugmentationSampler` it is a sampler step of an
      imbalanced-learn ``Pipeline``, so that cross-validation augments the
      training folds only;
    * :meth:`transform`: augment once (offline expansion, test-time
      augmentation; see :func:`tta_predict`).

    Every step is off by default except the horizontal flip;
    :meth:`preset` gives tuned combinations ("light", "standard", "strong").

    Parameters
    ----------
    horizontal_flip : float, default=0.5
        Probability of a left-right flip. Set 0 for digits and text.

    vertical_flip : float, default=0.0
        Probability of an upside-down flip.

    crop_scale : (float, float) or None, default=None
        Random resized crop: the crop covers a share of the image area drawn
        from this range and is resized back to the full image size (as
        torchvision's ``RandomResizedCrop(scale=...)``). None disables it.

    crop_ratio : (float, float), default=(0.75, 1.333)
        Range of the crop's aspect ratio (width / height), drawn log-uniform.

    degrees : float, default=0.0
        Rotation by an angle drawn from ``[-degrees, degrees]``.

    translate : float, default=0.0
        Shift by up to this fraction of the width and of the height.

    scale : (float, float), default=(1.0, 1.0)
        Zoom factor range (> 1 zooms in).

    shear : float, default=0.0
        Horizontal shear angle drawn from ``[-shear, shear]`` degrees.

    brightness : float, default=0.0
        Color jitter: the pixel values are multiplied by a factor drawn from
        ``[max(0, 1 - brightness), 1 + brightness]``.

    contrast : float, default=0.0
        Factor drawn likewise by which each image's deviations from its mean
        gray level are scaled.

    saturation : float, default=0.0
        Factor drawn likewise by which the colors' deviations from gray are
        scaled; RGB images only.

    hue : float, default=0.0
        Hue shift of up to this fraction of a full turn (at most 0.5), RGB
        only; a rotation of the YIQ chroma plane, which keeps the luma.

    grayscale : float, default=0.0
        Probability of turning an RGB image gray (kept as 3 channels).

    blur_sigma : float, default=0.0
        Gaussian blur with a standard deviation drawn from
        ``[0.1, blur_sigma]`` pixels per image; 0 disables it.

    noise_std : float, default=0.0
        Standard deviation of additive gaussian noise; 0 disables it.

    erasing : float, default=0.0
        Probability of random erasing: a rectangle covering
        ``erasing_scale`` of the area is set to 0 (Zhong et al., 2020).

    erasing_scale : (float, float), default=(0.02, 0.33)
        Range of the erased area as a share of the image.

    mixup_alpha : float, default=0.0
        Training only: mixup blends each batch with a shuffled copy of
        itself, labels included, with a weight drawn from
        ``Beta(alpha, alpha)``. 0 disables it.

    cutmix_alpha : float, default=0.0
        Training only: cutmix pastes a rectangle of a shuffled copy, labels
        mixed by area. When both alphas are set, each batch uses one of the
        two, chosen at random.

    padding_mode : {"zeros", "border", "reflection"}, default="zeros"
        How pixels that a transform brings in from outside the image are
        filled (``torch.nn.functional.grid_sample``'s modes).

    n_copies : int, default=1
        Augmented copies per image added by :meth:`fit_resample`.

    image_shape : tuple of int, default=None
        ``(height, width)`` or ``(height, width, channels)`` of flat 2-D
        input rows; None infers a square grayscale or RGB image.

    channels : {"last", "first"}, default="last"
        Channel axis of 4-D numpy input.

    batch_size : int, default=256
        Images augmented at a time by ``transform`` and ``fit_resample``.

    device : {"auto", "cpu", "cuda", "mps"}, default="auto"
        Where ``transform`` and ``fit_resample`` compute. In training the
        augmentation runs wherever the training batches are.

    random_state : int, RandomState instance, Generator or None, default=None
        Seeds the random parameters. As in scikit-learn, an int gives the
        same output at every call of ``transform``/``fit_resample``, while a
        generator instance advances between calls. In training, the
        estimator's own ``random_state`` is used instead, with new draws at
        every epoch.

    Attributes
    ----------
    n_features_in_ : int
        Flat size of the images seen in ``fit``.

    image_shape_ : tuple of int
        ``(height, width, channels)`` of the images seen in ``fit``.

    feature_names_in_ : ndarray of str
        Column names of DataFrame input. Defined only then.

    See Also
    --------
    skvision.CNNClassifier : Takes an augmenter as ``augment=``.
    AugmentationSampler : The augmenter as an imbalanced-learn sampler step.
    tta_predict : Test-time augmentation: predictions averaged over copies.
    torchvision.transforms.v2 : Per-image transforms (one parameter draw per
        call, even on a batch).

    Examples
    --------
    >>> import numpy as np
    >>> from skvision.augmentation import ImageAugmenter
    >>> images = np.random.default_rng(0).random((8, 32, 32, 3), dtype=np.float32)
    >>> augmenter = ImageAugmenter.preset("standard", random_state=0)
    >>> augmenter.fit_transform(images).shape
    (8, 32, 32, 3)
    >>> X_more, y_more = ImageAugmenter(n_copies=2, random_state=0).fit_resample(
    ...     images, np.arange(8) % 2)
    >>> X_more.shape, y_more.shape
    ((24, 32, 32, 3), (24,))
    """

    def __init__(
        self,
        horizontal_flip=0.5,
        vertical_flip=0.0,
        crop_scale=None,
        crop_ratio=(3 / 4, 4 / 3),
        degrees=0.0,
        translate=0.0,
        scale=(1.0, 1.0),
        shear=0.0,
        brightness=0.0,
        contrast=0.0,
        saturation=0.0,
        hue=0.0,
        grayscale=0.0,
        blur_sigma=0.0,
        noise_std=0.0,
        erasing=0.0,
        erasing_scale=(0.02, 0.33),
        mixup_alpha=0.0,
        cutmix_alpha=0.0,
        padding_mode="zeros",
        n_copies=1,
        image_shape=None,
        channels="last",
        batch_size=256,
        device="auto",
        random_state=None,
    ):
        self.horizontal_flip = horizontal_flip
        self.vertical_flip = vertical_flip
        self.crop_scale = crop_scale
        self.crop_ratio = crop_ratio
        self.degrees = degrees
        self.translate = translate
        self.scale = scale
        self.shear = shear
        self.brightness = brightness
        self.contrast = contrast
        self.saturation = saturation
        self.hue = hue
        self.grayscale = grayscale
        self.blur_sigma = blur_sigma
        self.noise_std = noise_std
        self.erasing = erasing
        self.erasing_scale = erasing_scale
        self.mixup_alpha = mixup_alpha
        self.cutmix_alpha = cutmix_alpha
        self.padding_mode = padding_mode
        self.n_copies = n_copies
        self.image_shape = image_shape
        self.channels = channels
        self.batch_size = batch_size
        self.device = device
        self.random_state = random_state

    @classmethod
    def preset(cls, name, **params):
        """An augmenter with a named set of tuned parameters.

        Parameters
        ----------
        name : {"light", "standard", "strong"}
            "light": flips and mild crops; "standard": crops, small
            rotations and color jitter (the usual ImageNet-style recipe);
            "strong": adds shear, hue, grayscale, blur, erasing, mixup and
            cutmix, for small data sets and long training.
        **params
            Parameters that override the preset's (e.g. ``random_state``,
            ``horizontal_flip=0`` for digits).

        Returns
        -------
        augmenter : ImageAugmenter
        """
        if name not in _PRESETS:
            raise ValueError(f"Unknown preset {name!r}; choose one of {list(_PRESETS)}.")
        return cls(**{**_PRESETS[name], **params})

    # -- validation -----------------------------------------------------------

    def _check_params(self):
        for name in ("horizontal_flip", "vertical_flip", "grayscale", "erasing"):
            check_scalar(getattr(self, name), name, numbers.Real, min_val=0, max_val=1)
        for name in ("degrees", "translate", "shear", "brightness", "contrast", "saturation",
                     "blur_sigma", "noise_std", "mixup_alpha", "cutmix_alpha"):
            check_scalar(getattr(self, name), name, numbers.Real, min_val=0)
        check_scalar(self.hue, "hue", numbers.Real, min_val=0, max_val=0.5)
        check_scalar(self.translate, "translate", numbers.Real, min_val=0, max_val=1)
        check_scalar(self.shear, "shear", numbers.Real, min_val=0, max_val=80)
        if self.crop_scale is not None:
            _check_range(self.crop_scale, "crop_scale", 1e-6, 1)
        _check_range(self.crop_ratio, "crop_ratio", 1e-6)
        _check_range(self.scale, "scale", 1e-6)
        _check_range(self.erasing_scale, "erasing_scale", 0, 1)
        if self.padding_mode not in _PADDING_MODES:
            raise ValueError(
                f"padding_mode must be one of {_PADDING_MODES}; got {self.padding_mode!r}."
            )
        check_scalar(self.n_copies, "n_copies", numbers.Integral, min_val=1)
        check_scalar(self.batch_size, "batch_size", numbers.Integral, min_val=1)

    # -- sklearn API ------------------------------------------------------------

    def fit(self, X, y=None):
        """Check the parameters and record the image shape of ``X``.

        Parameters
        ----------
        X : array-like of images
            Any form accepted by the estimators (see ``check_images``).
        y : None
            Ignored.

        Returns
        -------
        self : object
            The fitted augmenter.
        """
        self._check_params()
        check_images(
            X, estimator=self, reset=True, image_shape=self.image_shape, channels=self.channels
        )
        return self

    def transform(self, X):
        """Augment every image once.

        Parameters
        ----------
        X : array-like of images
            Images of the shape seen in ``fit``.

        Returns
        -------
        X_augmented : array or tensor
            In the form and dtype of ``X`` (flat rows stay flat, uint8 stays
            uint8). Mixup and cutmix do not apply here: they need labels.
        """
        check_is_fitted(self, "image_shape_")
        images = check_images(X, estimator=self, reset=False, channels=self.channels)
        augmented = self._augment_in_batches(images, numpy_generator(self.random_state))
        return images_like(augmented, X, channels=self.channels)

    def fit_resample(self, X, y):
        """Return the images plus ``n_copies`` augmented copies of each, with labels.

        The imbalanced-learn sampler API: in an ``imblearn.pipeline.Pipeline``
        this runs on the training data only, so cross-validation scores
        unaugmented test folds.

        Parameters
        ----------
        X : array-like of images
            Training images.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Their targets, repeated for every copy.

        Returns
        -------
        X_resampled : array or tensor of ``(n_copies + 1) * n_samples`` images
            The originals first, then each round of copies, in the form and
            dtype of ``X``.
        y_resampled : ndarray
            ``y`` repeated ``n_copies + 1`` times.
        """
        self._check_params()
        images = check_images(
            X, estimator=self, reset=True, image_shape=self.image_shape, channels=self.channels
        )
        y = np.asarray(_check_targets_length(y, len(images)))
        rng = numpy_generator(self.random_state)
        copies = [self._augment_in_batches(images, rng) for _ in range(self.n_copies)]
        X_resampled = images_like(torch.cat([images, *copies]), X, channels=self.channels)
        return X_resampled, np.concatenate([y] * (self.n_copies + 1))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        tags.input_tags.allow_nan = False
        return tags

    # -- tensor API -------------------------------------------------------------

    def augment_batch(self, images, *, masks=None, boxes=None, random_state=None):
        """Augment a batch tensor, moving masks and boxes with the images.

        Works on an unfitted augmenter; this is what the training loop calls.

        Parameters
        ----------
        images : torch.Tensor of shape (n, c, h, w)
            Float images, on any device.
        masks : array-like of shape (n, h, w), default=None
            Integer class index per pixel; resampled with nearest neighbour.
            Pixels brought in from outside the image get class 0.
        boxes : list of dict, default=None
            One dict per image with ``"boxes"`` of shape (k, 4) as xyxy
            pixels and optionally ``"labels"`` and other per-box arrays.
            Boxes are mapped to the box around their transformed corners,
            clipped to the image, and dropped (with their labels) when less
            than one pixel wide or high remains.
        random_state : int, Generator, RandomState or None, default=None
            Overrides the augmenter's ``random_state`` for this call.

        Returns
        -------
        images : torch.Tensor
            The augmented batch, on the input's device. When ``masks`` or
            ``boxes`` are given, a tuple ``(images, masks)``,
            ``(images, boxes)`` or ``(images, masks, boxes)``.
        """
        self._check_params()
        if not isinstance(images, torch.Tensor) or images.dim() != 4:
            raise ValueError(
                "augment_batch expects a float tensor of shape (n, c, h, w); got "
                f"{type(images).__name__} of shape {tuple(getattr(images, 'shape', ()))}."
            )
        size = tuple(images.shape[2:])
        if masks is not None:
            masks = check_masks(masks, len(images), size).to(images.device)
        if boxes is not None:
            boxes = check_boxes(boxes, len(images), size)
        rng = numpy_generator(self.random_state if random_state is None else random_state)
        images, masks, boxes = self._augment(images.float(), rng, masks=masks, boxes=boxes)
        extras = tuple(item for item in (masks, boxes) if item is not None)
        return (images, *extras) if extras else images

    def _augment_training_batch(self, X, y, *, rng, n_classes=None, target_kind="labels",
                                sample_weight=None):
        """One training batch: augment ``X``; with mixup/cutmix, mix ``y`` too.

        Returns ``(X, y, sample_weight)``. Classification labels become mixed
        one-hot probabilities (which ``torch.nn.CrossEntropyLoss`` accepts);
        regression targets are mixed as numbers; per-image weights (or None)
        are mixed with the same share as the targets, so a weight follows its
        image into the pair. Segmentation masks (``target_kind="masks"``)
        follow the geometry; pixels brought in from outside the image get the
        ignored index -100, and mixup/cutmix do not apply.
        """
        if target_kind == "masks":
            X, masks, _ = self._augment(X, rng, masks=y.to(X.device), mask_fill=-100)
            return X, masks, sample_weight
        if target_kind == "boxes":  # detection targets: a list of dicts per image
            X, _, boxes = self._augment(X, rng, boxes=y)
            return X, boxes, sample_weight
        X, _, _ = self._augment(X, rng)
        if self.mixup_alpha > 0 or self.cutmix_alpha > 0:
            y = y.to(X.device)
            targets = F.one_hot(y, n_classes).float() if n_classes else y.float()
            X, y, sample_weight = self._mix(X, targets, rng, sample_weight)
        return X, y, sample_weight

    # -- the engine -------------------------------------------------------------

    def _augment_in_batches(self, images, rng):
        device = resolve_device(self.device)
        parts = []
        for start in range(0, len(images), self.batch_size):
            batch = images[start : start + self.batch_size].to(device)
            parts.append(self._augment(batch, rng)[0].cpu())
        return torch.cat(parts)

    def _augment(self, images, rng, masks=None, boxes=None, mask_fill=0):
        """Geometry, then color, blur, noise and erasing; returns (images, masks, boxes).

        ``mask_fill`` is the class given to mask pixels brought in from
        outside the image.
        """
        n_samples, n_channels, height, width = images.shape
        matrix, flips_only = self._draw_geometry(n_samples, height, width, rng)
        if matrix is not None:
            images, masks = _resample(
                images, masks, matrix, flips_only, self.padding_mode, mask_fill
            )
            if boxes is not None:
                boxes = _move_boxes(boxes, matrix, height, width)
        images = self._jitter_colors(images, rng)
        if self.blur_sigma > 0:
            sigmas = rng.uniform(min(0.1, self.blur_sigma), self.blur_sigma, n_samples)
            images = _gaussian_blur(images, sigmas)
        if self.noise_std > 0:
            noise = torch.randn(
                images.shape, generator=torch_generator(rng, images.device),
                device=images.device, dtype=images.dtype,
            )
            images = images + self.noise_std * noise
        if self.erasing > 0:
            erase = rng.random(n_samples) < self.erasing
            area = rng.uniform(*self.erasing_scale, n_samples)
            inside = _random_rectangles(area, height, width, rng, images.device)
            images = images.masked_fill(inside & _column(erase, images.device), 0.0)
        return images, masks, boxes

    def _draw_geometry(self, n, height, width, rng):
        """Per-image 3x3 maps from output to input pixels (centred coordinates).

        Returns ``(None, True)`` when no geometric step is enabled, and a flag
        telling whether the maps are flips only (done exactly, no resampling).
        """
        affine = self.degrees > 0 or self.translate > 0 or self.shear > 0 or (
            tuple(self.scale) != (1.0, 1.0))
        flips = self.horizontal_flip > 0 or self.vertical_flip > 0
        if not (affine or flips or self.crop_scale is not None):
            return None, True
        matrix = np.tile(np.eye(3), (n, 1, 1))
        if self.crop_scale is not None:
            # Crop a box of the input (share `area`, aspect `ratio`) and stretch
            # it over the output: output -> input is a scale plus a shift.
            area = rng.uniform(*self.crop_scale, n)
            ratio = np.exp(rng.uniform(*np.log(self.crop_ratio), n))
            crop_w = np.minimum(np.sqrt(area * ratio), 1.0)
            crop_h = np.minimum(np.sqrt(area / ratio), 1.0)
            matrix[:, 0, 0], matrix[:, 1, 1] = crop_w, crop_h
            matrix[:, 0, 2] = rng.uniform(-1, 1, n) * (1 - crop_w) * width / 2
            matrix[:, 1, 2] = rng.uniform(-1, 1, n) * (1 - crop_h) * height / 2
        if flips:
            flip = np.ones((n, 3))
            flip[:, 0] = np.where(rng.random(n) < self.horizontal_flip, -1.0, 1.0)
            flip[:, 1] = np.where(rng.random(n) < self.vertical_flip, -1.0, 1.0)
            matrix = matrix * flip[:, np.newaxis, :]  # right-multiply by diag(flip)
        if affine:
            angle = np.deg2rad(rng.uniform(-self.degrees, self.degrees, n))
            shear = np.tan(np.deg2rad(rng.uniform(-self.shear, self.shear, n)))
            zoom = rng.uniform(*self.scale, n)
            shift_x = rng.uniform(-self.translate, self.translate, n) * width
            shift_y = rng.uniform(-self.translate, self.translate, n) * height
            cos, sin = np.cos(angle), np.sin(angle)
            # forward = translate @ rotate @ shear @ zoom (input -> output)
            forward = np.zeros((n, 3, 3))
            forward[:, 0, 0] = zoom * cos
            forward[:, 0, 1] = zoom * (cos * shear - sin)
            forward[:, 1, 0] = zoom * sin
            forward[:, 1, 1] = zoom * (sin * shear + cos)
            forward[:, 0, 2], forward[:, 1, 2], forward[:, 2, 2] = shift_x, shift_y, 1.0
            matrix = matrix @ np.linalg.inv(forward)
        flips_only = not affine and self.crop_scale is None
        return matrix, flips_only

    def _jitter_colors(self, images, rng):
        """Brightness, contrast, saturation, hue and grayscale as one affine color map.

        With factors b (brightness), c (contrast), a linear map L = G H S
        (saturation, hue, grayscale; each keeps gray pixels gray) and m the
        mean luma of the image: ``x -> c b L x + (1 - c) b m``, the same as
        applying the steps one after the other in torchvision's order.
        """
        n_samples, n_channels = images.shape[:2]
        rgb = n_channels == 3
        linear = rgb and (self.saturation > 0 or self.hue > 0 or self.grayscale > 0)
        if not (linear or self.brightness > 0 or self.contrast > 0):
            return images
        bright = rng.uniform(max(0, 1 - self.brightness), 1 + self.brightness, n_samples)
        contrast = rng.uniform(max(0, 1 - self.contrast), 1 + self.contrast, n_samples)
        as_tensor = {"dtype": images.dtype, "device": images.device}
        gain = torch.as_tensor(contrast * bright, **as_tensor)
        offset = images.new_zeros(n_samples)
        if self.contrast > 0:
            channel_means = images.mean(dim=(2, 3))
            mean = channel_means @ torch.as_tensor(LUMA, **as_tensor) if rgb else (
                channel_means.mean(dim=1))
            offset = torch.as_tensor((1 - contrast) * bright, **as_tensor) * mean
        if not linear:
            return torch.addcmul(offset.view(-1, 1, 1, 1), images, gain.view(-1, 1, 1, 1))
        gray = np.outer(np.ones(3), LUMA)
        saturation = rng.uniform(max(0, 1 - self.saturation), 1 + self.saturation, n_samples)
        maps = saturation[:, None, None] * np.eye(3) + (1 - saturation)[:, None, None] * gray
        if self.hue > 0:
            turn = rng.uniform(-self.hue, self.hue, n_samples) * 2 * np.pi
            rotation = np.tile(np.eye(3), (n_samples, 1, 1))
            rotation[:, 1, 1] = rotation[:, 2, 2] = np.cos(turn)
            rotation[:, 1, 2], rotation[:, 2, 1] = -np.sin(turn), np.sin(turn)
            maps = _YIQ_TO_RGB @ rotation @ _RGB_TO_YIQ @ maps
        to_gray = rng.random(n_samples) < self.grayscale
        maps[to_gray] = gray @ maps[to_gray]
        maps = torch.as_tensor(maps, **as_tensor) * gain.view(-1, 1, 1)
        # One fused pass: offset + maps @ pixels, image by image.
        result = torch.baddbmm(offset.view(-1, 1, 1).expand(-1, 3, 1), maps,
                               images.reshape(n_samples, 3, -1))
        return result.view(images.shape)

    def _mix(self, images, targets, rng, sample_weight=None):
        """Mixup or cutmix of a batch with a shuffled copy of itself (and of its weights)."""
        use_cutmix = self.cutmix_alpha > 0 and (self.mixup_alpha == 0 or rng.random() < 0.5)
        alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
        weight = float(rng.beta(alpha, alpha))
        order = torch.as_tensor(rng.permutation(len(images)), device=images.device)
        if use_cutmix:
            height, width = images.shape[2:]
            inside = _random_rectangles(np.array([1 - weight]), height, width, rng, images.device)
            images = torch.where(inside, images[order], images)
            weight = 1 - float(inside.float().mean())  # the area actually pasted
        else:
            images = weight * images + (1 - weight) * images[order]
        if sample_weight is not None:
            sample_weight = sample_weight.to(images.device)
            sample_weight = weight * sample_weight + (1 - weight) * sample_weight[order]
        return images, weight * targets + (1 - weight) * targets[order], sample_weight


class AugmentationSampler(BaseEstimator):
    """Offline augmentation as a sampler step of an imbalanced-learn Pipeline.

    ``imblearn.pipeline.Pipeline`` runs ``fit_resample`` of a step on the
    training data only, so ``cross_val_score`` and ``GridSearchCV`` train on
    augmented folds and score untouched ones. imbalanced-learn refuses a
    step that has both ``transform`` and ``fit_resample``, hence this
    wrapper around :meth:`ImageAugmenter.fit_resample`.

    Parameters
    ----------
    augmenter : ImageAugmenter, default=None
        The augmentation and its ``n_copies``; None uses ``ImageAugmenter()``.

    Attributes
    ----------
    augmenter_ : ImageAugmenter
        The fitted clone of ``augmenter``.

    n_features_in_ : int
        Flat size of the images seen in ``fit``.

    See Also
    --------
    ImageAugmenter : The augmentation itself.
    imblearn.FunctionSampler : imbalanced-learn's generic sampler.

    Examples
    --------
    >>> from imblearn.pipeline import make_pipeline
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.model_selection import cross_val_score
    >>> from skvision.augmentation import AugmentationSampler, ImageAugmenter
    >>> from skvision.datasets import load_digit_images
    >>> X, y = load_digit_images(return_X_y=True)
    >>> sampler = AugmentationSampler(ImageAugmenter(horizontal_flip=0, degrees=10,
    ...                                              image_shape=(8, 8), random_state=0))
    >>> model = make_pipeline(sampler, LogisticRegression(max_iter=500))
    >>> cross_val_score(model, X[:300].reshape(300, -1), y[:300], cv=3).shape
    (3,)
    """

    def __init__(self, augmenter=None):
        self.augmenter = augmenter

    def _validated_augmenter(self):
        augmenter = ImageAugmenter() if self.augmenter is None else self.augmenter
        if not isinstance(augmenter, ImageAugmenter):
            raise TypeError(
                f"augmenter must be an ImageAugmenter; got {type(augmenter).__name__}."
            )
        return clone(augmenter)

    def fit(self, X, y):
        """Check the input and the augmenter.

        Parameters
        ----------
        X : array-like of images
            Training images.
        y : array-like of shape (n_samples,)
            Their targets.

        Returns
        -------
        self : object
            The fitted sampler.
        """
        augmenter = self._validated_augmenter()
        augmenter._check_params()
        images = check_images(X, estimator=augmenter, reset=True,
                              image_shape=augmenter.image_shape, channels=augmenter.channels)
        _check_targets_length(y, len(images))
        self.augmenter_ = augmenter
        self.n_features_in_ = augmenter.n_features_in_
        return self

    def fit_resample(self, X, y):
        """The images plus ``n_copies`` augmented copies, and the repeated targets.

        Parameters
        ----------
        X : array-like of images
            Training images.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Their targets.

        Returns
        -------
        X_resampled : array or tensor
            See :meth:`ImageAugmenter.fit_resample`.
        y_resampled : ndarray
            ``y`` repeated ``n_copies + 1`` times.
        """
        self.augmenter_ = self._validated_augmenter()
        X_resampled, y_resampled = self.augmenter_.fit_resample(X, y)
        self.n_features_in_ = self.augmenter_.n_features_in_
        return X_resampled, y_resampled

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags


# --------------------------------------------------------------------------
# Batched helpers.


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
    forward = np.linalg.inv(matrix)
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


def _random_rectangles(area, height, width, rng, device):
    """Boolean (n, 1, h, w) masks of one random rectangle per image.

    ``area`` is each rectangle's share of the image; the aspect ratio is
    drawn log-uniform from [0.3, 3.3] as in random erasing.
    """
    n = len(area)
    ratio = np.exp(rng.uniform(np.log(0.3), np.log(3.3), n))
    rect_h = np.clip(np.rint(np.sqrt(area * height * width * ratio)), 0, height)
    rect_w = np.clip(np.rint(np.sqrt(area * height * width / ratio)), 0, width)
    top = np.floor(rng.random(n) * (height - rect_h + 1))
    left = np.floor(rng.random(n) * (width - rect_w + 1))
    rows = torch.arange(height, device=device).view(1, 1, -1, 1)
    cols = torch.arange(width, device=device).view(1, 1, 1, -1)

    def bounds(values):
        return torch.as_tensor(values, device=device).view(-1, 1, 1, 1)

    return ((rows >= bounds(top)) & (rows < bounds(top + rect_h))
            & (cols >= bounds(left)) & (cols < bounds(left + rect_w)))


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


def tta_predict(estimator, X, augmenter, *, n_augmentations=8, return_proba=False):
    """Test-time augmentation: average the predictions over augmented copies.

    Predictions (``predict_proba`` for classifiers, ``predict`` otherwise) of
    the original images and of ``n_augmentations`` augmented copies are
    averaged; mild, label-preserving augmentations (flips, small crops) often
    add a little accuracy at ``n_augmentations + 1`` times the inference cost.

    Parameters
    ----------
    estimator : fitted estimator
        A classifier with ``predict_proba`` and ``classes_``, or a regressor.
    X : array-like of images
        Images in a form ``estimator`` accepts.
    augmenter : ImageAugmenter
        The augmentation (it need not be fitted). Its ``random_state``
        seeds the copies; mixup and cutmix do not apply.
    n_augmentations : int, default=8
        Augmented copies per image.
    return_proba : bool, default=False
        Return the averaged class probabilities instead of the labels.

    Returns
    -------
    predictions : ndarray
        Labels (or probabilities) for classifiers, averaged predictions for
        regressors.

    Examples
    --------
    >>> from skvision import CNNClassifier, ImageAugmenter
    >>> from skvision.augmentation import tta_predict
    >>> from skvision.datasets import make_shapes
    >>> X, y = make_shapes(64, image_size=32, random_state=0)
    >>> clf = CNNClassifier(filters=(8, 16), epochs=2, random_state=0).fit(X, y)
    >>> flips = ImageAugmenter(horizontal_flip=0.5, random_state=0)
    >>> tta_predict(clf, X[:4], flips, n_augmentations=4, return_proba=True).shape
    (4, 3)
    """
    check_scalar(n_augmentations, "n_augmentations", numbers.Integral, min_val=1)
    if not isinstance(augmenter, ImageAugmenter):
        raise TypeError(f"augmenter must be an ImageAugmenter; got {type(augmenter).__name__}.")
    augmenter._check_params()
    classifier = hasattr(estimator, "predict_proba") and hasattr(estimator, "classes_")
    method = estimator.predict_proba if classifier else estimator.predict
    rng = numpy_generator(augmenter.random_state)
    # X is read the way the estimator reads it.
    channels = getattr(estimator, "channels", augmenter.channels)
    images = check_images(X, image_shape=getattr(estimator, "image_shape_", None),
                          channels=channels)
    total = np.asarray(method(X), dtype=np.float64)
    for _ in range(n_augmentations):
        copy = images_like(augmenter._augment_in_batches(images, rng), X, channels=channels)
        total += method(copy)
    average = total / (n_augmentations + 1)
    if classifier and not return_proba:
        return estimator.classes_[average.argmax(axis=1)]
    return average
