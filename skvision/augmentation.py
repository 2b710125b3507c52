"""ImageAugmenter: batched, per-sample random augmentation of images, masks and boxes.

Every geometric step (random resized crop, flips, rotation, translation,
scale, shear) of one image is composed into a single 3x3 matrix, so a whole
batch is resampled by one ``affine_grid`` + ``grid_sample`` call: one
interpolation per image instead of one per step, and no per-image Python
loop. The color steps (brightness, contrast, saturation, hue, grayscale) are
all linear in RGB and are likewise folded into one 3x3 matrix and one offset
per image. ``bench/augment_throughput.py`` measures this engine against a
per-image torchvision v2 loop and against kornia.augmentation.

The random parameters of a batch are drawn apart from their application
(see ``skvision/_augment_engine.py``), each operation from its own random
stream, so they can be returned and replayed (``augment_batch``'s
``return_params`` and ``params``).
"""

import numbers

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin, clone
from sklearn.utils.validation import check_is_fitted, check_scalar

from ._augment_engine import (
    AugmentationParams,
    apply_params,
    draw_params,
    draw_rectangles,
    rectangle_masks,
    stream,
)
from ._output import ImageOutputMixin
from ._params import (
    CHANNELS,
    DEVICE,
    IMAGE_SHAPE,
    RANDOM_STATE,
    InstanceOf,
    Interval,
    Options,
    TupleOf,
    validate_params,
)
from ._torch import draw_seed, numpy_generator, resolve_device
from ._validation import (
    BOX_COLUMNS,
    _check_targets_length,
    check_boxes,
    check_images,
    check_masks,
    frame_to_targets,
    images_like,
    is_box_frame,
    select_targets,
)

__all__ = ["AugmentationParams", "AugmentationSampler", "ImageAugmenter", "tta_predict"]

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
_SHARE = [Interval(numbers.Real, 0, 1)]
_STRENGTH = [Interval(numbers.Real, 0, None)]
_POSITIVE = Interval(numbers.Real, 0, None, closed="neither")


class ImageAugmenter(ImageOutputMixin, OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Random augmentation of image batches, with per-image random parameters.

    Flips, random resized crop, rotation/translation/scale/shear, color
    jitter, random grayscale, gaussian blur, gaussian noise and random
    erasing, drawn independently for every image of a batch and applied to
    whole batches of tensors (on the GPU when the data is there). All
    geometric steps of an image are composed into one affine matrix and the
    image is resampled once. Integer masks (nearest neighbour) and xyxy
    boxes (clipped; boxes that leave the image are dropped with their labels)
    follow the same geometry through ``augment_batch``.

    Three uses:

    * ``CNNClassifier(augment=ImageAugmenter(...))`` (any neural estimator):
      fresh augmentation of every training batch at every epoch, never of
      validation or prediction batches; only there do ``mixup_alpha`` and
      ``cutmix_alpha`` apply, as they mix the labels too;
    * ``fit_resample``: the originals plus ``n_copies`` augmented copies;
      wrapped in :class:`AugmentationSampler` it is a sampler step of an
      imbalanced-learn ``Pipeline``, so that cross-validation augments the
      training folds only;
    * ``transform``: augment once (offline expansion, test-time
      augmentation; see :func:`~skvision.augmentation.tta_predict`).

    Every step is off by default except the horizontal flip;
    ``preset`` gives tuned combinations ("light", "standard", "strong").

    Read more in the :ref:`User Guide <user-guide-augmentation>`.

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
        Augmented copies per image added by ``fit_resample``.

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
    skvision.augmentation.tta_predict : Test-time augmentation: predictions averaged over copies.
    torchvision.transforms.v2 : Per-image transforms (one parameter draw per
        call, even on a batch).

    Examples
    --------
    >>> import numpy as np
    >>> from skvision import ImageAugmenter
    >>> images = np.random.default_rng(0).random((8, 32, 32, 3), dtype=np.float32)
    >>> augmenter = ImageAugmenter.preset("standard", random_state=0)
    >>> augmenter.fit_transform(images).shape
    (8, 32, 32, 3)
    >>> X_more, y_more = ImageAugmenter(n_copies=2, random_state=0).fit_resample(
    ...     images, np.arange(8) % 2)
    >>> X_more.shape, y_more.shape
    ((24, 32, 32, 3), (24,))

    Batch tensors, with the random parameters returned and replayed:

    >>> import torch
    >>> batch = torch.rand(8, 3, 32, 32)
    >>> out, params = augmenter.augment_batch(batch, return_params=True)
    >>> torch.equal(augmenter.augment_batch(batch, params=params), out)
    True
    """

    _parameter_constraints = {
        "horizontal_flip": _SHARE,
        "vertical_flip": _SHARE,
        "crop_scale": [None, TupleOf(Interval(numbers.Real, 0, 1, closed="right"), length=2,
                                     ordered=True)],
        "crop_ratio": [TupleOf(_POSITIVE, length=2, ordered=True)],
        "degrees": _STRENGTH,
        "translate": _SHARE,
        "scale": [TupleOf(_POSITIVE, length=2, ordered=True)],
        "shear": [Interval(numbers.Real, 0, 80)],
        "brightness": _STRENGTH,
        "contrast": _STRENGTH,
        "saturation": _STRENGTH,
        "hue": [Interval(numbers.Real, 0, 0.5)],
        "grayscale": _SHARE,
        "blur_sigma": _STRENGTH,
        "noise_std": _STRENGTH,
        "erasing": _SHARE,
        "erasing_scale": [TupleOf(Interval(numbers.Real, 0, 1), length=2, ordered=True)],
        "mixup_alpha": _STRENGTH,
        "cutmix_alpha": _STRENGTH,
        "padding_mode": [Options(*_PADDING_MODES)],
        "n_copies": [Interval(numbers.Integral, 1, None)],
        "image_shape": IMAGE_SHAPE,
        "channels": CHANNELS,
        "batch_size": [Interval(numbers.Integral, 1, None)],
        "device": DEVICE,
        "random_state": RANDOM_STATE,
    }

    def __init__(
        self,
        *,
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
        validate_params(self)
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
        validate_params(self)  # set_params may have changed them since fit
        images = check_images(X, estimator=self, reset=False, channels=self.channels)
        augmented = self._augment_in_batches(images, numpy_generator(self.random_state))[0]
        return images_like(augmented, X, channels=self.channels)

    def fit_resample(self, X, y):
        """Return the images plus ``n_copies`` augmented copies of each, with their targets.

        The imbalanced-learn sampler API: in an ``imblearn.pipeline.Pipeline``
        this runs on the training data only, so cross-validation scores
        unaugmented test folds.

        Parameters
        ----------
        X : array-like of images
            Training images.
        y : array-like, list of dict or pandas DataFrame
            Their targets: labels or values ``(n_samples,)`` or
            ``(n_samples, n_outputs)``, repeated for every copy; integer
            masks ``(n_samples, height, width)``, or detection targets (one
            dict of ``"boxes"`` per image, or a DataFrame with a row per box
            and an ``image_id`` column), which move with each copy's
            geometry as in ``augment_batch`` (mask pixels brought in from
            outside the image get class 0; boxes that leave it are dropped).

        Returns
        -------
        X_resampled : array or tensor of ``(n_copies + 1) * n_samples`` images
            The originals first, then each round of copies, in the form and
            dtype of ``X``.
        y_resampled : ndarray, list of dict or pandas DataFrame
            The targets of ``X_resampled``: an array (masks in the dtype of
            ``y``), a list of dicts (the copies' boxes as float32 arrays),
            or a box DataFrame whose ``image_id`` is the position in
            ``X_resampled`` (the copies' box columns float).
        """
        validate_params(self)
        images = check_images(
            X, estimator=self, reset=True, image_shape=self.image_shape, channels=self.channels
        )
        n_samples = len(images)
        masks, boxes = _moving_targets(y, images)
        rng = numpy_generator(self.random_state)
        copies = [self._augment_in_batches(images, rng, masks, boxes)
                  for _ in range(self.n_copies)]
        X_resampled = images_like(torch.cat([images, *(copy[0] for copy in copies)]), X,
                                  channels=self.channels)
        if boxes is not None:
            return X_resampled, _with_copied_boxes(y, [copy[2] for copy in copies], n_samples)
        if masks is not None:
            y = np.asarray(y)
            moved = [copy[1].numpy().astype(y.dtype).reshape(y.shape) for copy in copies]
            return X_resampled, np.concatenate([y, *moved])
        # Labels and values: the copies keep their image's.
        positions = np.tile(np.arange(n_samples), self.n_copies + 1)
        return X_resampled, np.asarray(select_targets(y, positions, n_samples))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        tags.input_tags.allow_nan = False
        return tags

    # -- tensor API -------------------------------------------------------------

    def augment_batch(self, images, *, masks=None, boxes=None, random_state=None, params=None,
                      return_params=False):
        """Augment a batch tensor, moving masks and boxes with the images.

        Works on an unfitted augmenter; this is what the training loop calls.
        The random parameters are drawn first, without touching the pixels,
        then applied; ``return_params=True`` returns them and ``params=``
        replays them (on the same images: the same output bit for bit;
        masks and boxes of the batch may come in a later call and follow
        the same geometry).

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
            Overrides the augmenter's ``random_state`` for this call. One
            seed is drawn from it per call, and every operation (crop,
            flips, affine, each color step, blur, noise, erasing) draws from
            its own stream of that seed: enabling or changing one operation
            leaves the others' draws unchanged. Ignored when ``params`` is
            given.
        params : AugmentationParams, default=None
            Parameters returned by an earlier call with
            ``return_params=True``, applied instead of new draws. They must
            have been drawn for a batch of the same size and image height
            and width (a ValueError says otherwise). The augmenter's
            ``padding_mode`` still applies.
        return_params : bool, default=False
            Also return the parameters applied (an ``AugmentationParams``,
            last in the returned tuple).

        Returns
        -------
        images : torch.Tensor
            The augmented batch, on the input's device. When ``masks`` or
            ``boxes`` are given, a tuple ``(images, masks)``,
            ``(images, boxes)`` or ``(images, masks, boxes)``.
        params : AugmentationParams
            Only with ``return_params=True``, appended last to the tuple:
            the per-image parameters applied (see
            ``skvision.augmentation.AugmentationParams``).

        Examples
        --------
        >>> import torch
        >>> from skvision import ImageAugmenter
        >>> images = torch.rand(4, 3, 16, 16)
        >>> augmenter = ImageAugmenter(degrees=20, brightness=0.3)
        >>> out, params = augmenter.augment_batch(images, random_state=0, return_params=True)
        >>> params
        AugmentationParams(n_samples=4, image_size=(16, 16), steps=['matrix', 'brightness'])
        >>> torch.equal(augmenter.augment_batch(images, params=params), out)
        True
        """
        validate_params(self)
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
        if params is None:
            rng = numpy_generator(self.random_state if random_state is None else random_state)
            params = self._draw_params(len(images), size, draw_seed(rng))
        elif isinstance(params, AugmentationParams):
            params.check_batch(len(images), size)
        else:
            raise TypeError("params must be the AugmentationParams that augment_batch returns "
                            f"with return_params=True; got {type(params).__name__}.")
        images, masks, boxes = self._apply_params(params, images.float(), masks, boxes)
        outputs = tuple(item for item in (images, masks, boxes) if item is not None)
        outputs += (params,) if return_params else ()
        return outputs if len(outputs) > 1 else images

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
        seed = draw_seed(rng)  # the one draw per batch; every operation has its own stream
        params = self._draw_params(len(X), tuple(X.shape[2:]), seed)
        if target_kind == "masks":
            X, masks, _ = self._apply_params(params, X, masks=y.to(X.device), mask_fill=-100)
            return X, masks, sample_weight
        if target_kind == "boxes":  # detection targets: a list of dicts per image
            X, _, boxes = self._apply_params(params, X, boxes=y)
            return X, boxes, sample_weight
        X, _, _ = self._apply_params(params, X)
        if self.mixup_alpha > 0 or self.cutmix_alpha > 0:
            y = y.to(X.device)
            targets = F.one_hot(y, n_classes).float() if n_classes else y.float()
            X, y, sample_weight = self._mix(X, targets, stream(seed, "mix"), sample_weight)
        return X, y, sample_weight

    # -- the engine (skvision/_augment_engine.py) ------------------------------------

    def _augment_in_batches(self, images, rng, masks=None, boxes=None):
        """Augment ``images`` batch by batch, moving ``masks`` and ``boxes`` with them.

        Returns ``(images, masks, boxes)`` on the CPU; masks and boxes are
        None when not given.
        """
        device = resolve_device(self.device)
        parts = []
        for start in range(0, len(images), self.batch_size):
            batch = slice(start, start + self.batch_size)
            parts.append(self._augment(images[batch].to(device), rng,
                                       None if masks is None else masks[batch].to(device),
                                       None if boxes is None else boxes[batch]))
        images = torch.cat([part[0].cpu() for part in parts])
        if masks is not None:
            masks = torch.cat([part[1].cpu() for part in parts])
        if boxes is not None:
            boxes = [target for part in parts for target in part[2]]
        return images, masks, boxes

    def _augment(self, images, rng, masks=None, boxes=None, mask_fill=0):
        """Draw one seed from ``rng``, the batch's parameters from it, and apply them.

        Returns ``(images, masks, boxes)``; ``mask_fill`` is the class given
        to mask pixels brought in from outside the image.
        """
        params = self._draw_params(len(images), tuple(images.shape[2:]), draw_seed(rng))
        return self._apply_params(params, images, masks, boxes, mask_fill)

    def _draw_params(self, n_samples, image_size, seed):
        """The random parameters of a batch (an AugmentationParams), pixels untouched.

        Every operation draws from its own stream of ``seed`` (an int).
        """
        return draw_params(self, n_samples, image_size, seed)

    def _apply_params(self, params, images, masks=None, boxes=None, mask_fill=0):
        """Apply drawn parameters to images, masks and boxes: ``(images, masks, boxes)``."""
        return apply_params(params, images, masks, boxes, padding_mode=self.padding_mode,
                            mask_fill=mask_fill)

    def _mix(self, images, targets, rng, sample_weight=None):
        """Mixup or cutmix of a batch with a shuffled copy of itself (and of its weights).

        ``rng`` is the batch's own "mix" stream.
        """
        use_cutmix = self.cutmix_alpha > 0 and (self.mixup_alpha == 0 or rng.random() < 0.5)
        alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
        weight = float(rng.beta(alpha, alpha))
        order = torch.as_tensor(rng.permutation(len(images)), device=images.device)
        if use_cutmix:
            height, width = images.shape[2:]
            bounds = draw_rectangles(np.array([1 - weight]), height, width, rng)
            inside = rectangle_masks(bounds, height, width, images.device)
            images = torch.where(inside, images[order], images)
            weight = 1 - float(inside.float().mean())  # the area actually pasted
        else:
            images = weight * images + (1 - weight) * images[order]
        if sample_weight is not None:
            sample_weight = sample_weight.to(images.device)
            sample_weight = weight * sample_weight + (1 - weight) * sample_weight[order]
        return images, weight * targets + (1 - weight) * targets[order], sample_weight


def _moving_targets(y, images):
    """The targets of ``images`` that move with their geometry, checked: ``(masks, boxes)``.

    Integer masks (3 or more dimensions) and detection targets (dicts of
    ``"boxes"``, or a box DataFrame, each box then carrying its row of it as
    ``"rows"``) move; labels and values do not (their length is checked
    and ``(None, None)`` returned).
    """
    n_samples, size = len(images), tuple(images.shape[2:])
    if is_box_frame(y):
        return None, check_boxes(frame_to_targets(y, n_samples, rows=True), n_samples, size)
    if isinstance(y, (list, tuple)) and len(y) and hasattr(y[0], "keys"):
        return None, check_boxes(y, n_samples, size)
    if np.ndim(y) >= 3:
        return check_masks(y, n_samples, size), None
    _check_targets_length(y, n_samples)
    return None, None


def _with_copied_boxes(y, copies, n_samples):
    """Detection targets ``y`` of the originals, then those of each round of ``copies``.

    ``copies`` holds per round the moved targets of every image (from
    :func:`_moving_targets`). A box DataFrame stays one: the boxes of copy
    ``k`` (1 to ``len(copies)``) of image ``i`` get ``image_id``
    ``k * n_samples + i`` and the other columns of their row in ``y``.
    """
    moved = [target for copy in copies for target in copy]
    if not is_box_frame(y):
        return [*y, *({**target, "boxes": target["boxes"].numpy()} for target in moved)]
    import pandas as pd

    counts = [len(target["boxes"]) for target in moved]
    boxes = torch.cat([target["boxes"].reshape(-1, 4) for target in moved]).numpy()
    rows = np.concatenate([target["rows"] for target in moved]).astype(np.intp)
    copied = y.iloc[rows].reset_index(drop=True).assign(
        image_id=n_samples + np.repeat(np.arange(len(moved)), counts),
        **dict(zip(BOX_COLUMNS, boxes.T)),
    )
    originals = select_targets(y, np.arange(n_samples), n_samples)
    return pd.concat([originals, copied], ignore_index=True)


class AugmentationSampler(BaseEstimator):
    """Offline augmentation as a sampler step of an imbalanced-learn Pipeline.

    ``imblearn.pipeline.Pipeline`` runs ``fit_resample`` of a step on the
    training data only, so ``cross_val_score`` and ``GridSearchCV`` train on
    augmented folds and score untouched ones. imbalanced-learn refuses a
    step that has both ``transform`` and ``fit_resample``, hence this
    wrapper around ``ImageAugmenter.fit_resample``.

    Read more in the :ref:`User Guide <user-guide-augmentation>`.

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
    >>> from skvision import AugmentationSampler, ImageAugmenter
    >>> from skvision.datasets import load_digit_images
    >>> X, y = load_digit_images(return_X_y=True)
    >>> sampler = AugmentationSampler(augmenter=ImageAugmenter(horizontal_flip=0, degrees=10,
    ...                                                        image_shape=(8, 8), random_state=0))
    >>> model = make_pipeline(sampler, LogisticRegression(max_iter=500))
    >>> cross_val_score(model, X[:300].reshape(300, -1), y[:300], cv=3).shape
    (3,)
    """

    _parameter_constraints = {"augmenter": [None, InstanceOf(ImageAugmenter, "an ImageAugmenter")]}

    def __init__(self, *, augmenter=None):
        self.augmenter = augmenter

    def _validated_augmenter(self):
        validate_params(self)  # the augmenter's parameters too
        return clone(ImageAugmenter() if self.augmenter is None else self.augmenter)

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
        images = check_images(X, estimator=augmenter, reset=True,
                              image_shape=augmenter.image_shape, channels=augmenter.channels)
        _moving_targets(y, images)  # checked as fit_resample reads it
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
            See ``ImageAugmenter.fit_resample``.
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
    validate_params(augmenter)
    classifier = hasattr(estimator, "predict_proba") and hasattr(estimator, "classes_")
    method = estimator.predict_proba if classifier else estimator.predict
    rng = numpy_generator(augmenter.random_state)
    # X is read the way the estimator reads it.
    channels = getattr(estimator, "channels", augmenter.channels)
    images = check_images(X, image_shape=getattr(estimator, "image_shape_", None),
                          channels=channels)
    total = np.asarray(method(X), dtype=np.float64)
    for _ in range(n_augmentations):
        copy = images_like(augmenter._augment_in_batches(images, rng)[0], X, channels=channels)
        total += method(copy)
    average = total / (n_augmentations + 1)
    if classifier and not return_proba:
        return estimator.classes_[average.argmax(axis=1)]
    return average
