"""StyleTransfer: neural style transfer (Gatys et al., 2016) as a scikit-learn transformer."""

import numbers

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted
from tqdm.auto import tqdm

from ._output import ImageOutputMixin
from ._params import (
    CHANNELS,
    DEVICE,
    IMAGE_SHAPE,
    RANDOM_STATE,
    VERBOSE,
    InstanceOf,
    Interval,
    Options,
    Satisfies,
    TupleOf,
    validate_params,
)
from ._torch import resolve_device
from ._validation import check_images, images_like
from .nn import build_backbone
from .nn._resize import resize_images
from .nn.style import FeatureTaps, content_loss, gram_matrix, style_loss, total_variation_loss
from .transfer import BACKBONE_CONSTRAINTS

__all__ = ["StyleTransfer"]

# Layers per backbone, chosen by looking at results. EfficientNet's block
# outputs are linear bottlenecks (signed, few channels), whose Gram matrices
# carry little texture; the expanded activations after ReLU6 inside the
# blocks ("...bn1") are wide and non-negative, like VGG's ReLU outputs.
_LAYERS = [None, TupleOf(InstanceOf(str, "a module name (str)"), min_length=1)]
_WEIGHT = [Interval(numbers.Real, 0, None)]

_DEFAULT_LAYERS = {
    "efficientnet_lite0": {
        "content": ("network.blocks.3.1.bn1",),
        "style": ("network.bn1", "network.blocks.1.0.bn1", "network.blocks.1.1.bn1",
                  "network.blocks.2.1.bn1", "network.blocks.3.1.bn1"),
    },
}


def _stage_layers(backbone):
    """Fallback for other backbones: stage outputs (content: the middle one)."""
    names = [f"network.{level['module']}" for level in backbone.levels
             if level["module"] is not None]
    return {"content": (names[len(names) // 2],), "style": tuple(names[: min(5, len(names))])}


class StyleTransfer(ImageOutputMixin, TransformerMixin, BaseEstimator):
    """Paint images in the style of others: neural style transfer.

    ``fit(style_images)`` records the style: the Gram matrices (feature
    correlations) of the style images at ``style_layers`` of a pretrained
    network. ``transform(content_images)`` then optimizes, for each content
    image, an image whose deep features (``content_layers``) match the
    content image and whose Gram matrices match the style, plus a
    total-variation term against noise. The network is frozen; only the
    pixels are optimized.

    Read more in the :ref:`User Guide <user-guide-style-transfer>`.

    Parameters
    ----------
    backbone : str, default="efficientnet_lite0"
        Registry name of the pretrained network (any backbone of
        :func:`skvision.nn.build_backbone`, e.g. a local VGG19).

    weights : None, False, path or dict, default=None
        Weights of ``backbone``: None the shipped ones (see
        :func:`~skvision.nn.build_backbone`).

    content_layers : tuple of str, default=None
        Names of the backbone's modules whose activations define content;
        None uses tuned defaults for the registry backbones.

    style_layers : tuple of str, default=None
        Modules whose Gram matrices define style; None uses the defaults.

    content_weight : float, default=1.0
        Weight of the content loss.

    style_weight : float, default=1e5
        Weight of the style loss (Gram matrices are small numbers).

    tv_weight : float, default=1e-3
        Weight of the total-variation loss (smoothness).

    style_weights : array-like of shape (n_style_images,), default=None
        How much each style image counts in the mixed style; equal weights
        by default.

    n_iter : int, default=150
        Optimizer iterations per content image.

    optimizer : {"lbfgs", "adam"}, default="lbfgs"
        L-BFGS (with a strong-Wolfe line search) converges in far fewer
        iterations; Adam is steadier on large images.

    lr : float, default=1.0
        Step size (L-BFGS) or learning rate (Adam, e.g. 0.02).

    image_size : int, default=256
        The shorter side the images are optimized at (the result is resized
        back to the content image's size). Style images are resized to it too.

    init : {"content", "noise"}, default="content"
        Start from the content image (faster, keeps more structure) or from
        uniform noise seeded by ``random_state``.

    image_shape : tuple of int, default=None
        ``(height, width)`` or ``(height, width, channels)`` of flat 2-D input
        rows; None infers a square grayscale or RGB image.

    channels : {"last", "first"}, default="last"
        Channel axis of 4-D numpy input.

    device : {"auto", "cpu", "cuda", "mps"}, default="auto"
        Where the optimization runs.

    random_state : int, RandomState instance or None, default=None
        Seeds the noise initialization.

    verbose : int, default=0
        1 shows a progress bar per content image.

    Attributes
    ----------
    style_grams_ : dict of str to torch.Tensor
        The style's Gram matrix at each style layer (on the CPU).

    loss_history_ : pandas.DataFrame
        Per iteration of the last ``transform``'s last image: ``iteration``,
        ``content_loss``, ``style_loss``, ``tv_loss`` and ``total_loss``
        (weighted); ``skvision.plotting.plot_history`` can draw it.

    n_features_in_ : int
        Flat size of the style images seen in ``fit``.

    image_shape_ : tuple of int
        ``(height, width, channels)`` of the style images.

    See Also
    --------
    skvision.nn.style_loss : The style loss as a plain torch function (with
        ``content_loss``, ``gram_matrix`` and ``total_variation_loss``).

    Examples
    --------
    >>> import numpy as np
    >>> from skvision import StyleTransfer
    >>> rng = np.random.default_rng(0)
    >>> style = rng.integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    >>> content = np.full((1, 64, 64, 3), 128, dtype=np.uint8)
    >>> painter = StyleTransfer(image_size=64, n_iter=5).fit(style)
    >>> painter.transform(content).shape
    (1, 64, 64, 3)
    """

    # Content images may have any size; only the channel count must match.
    _any_image_size = True

    _parameter_constraints = {
        "backbone": BACKBONE_CONSTRAINTS["backbone"],
        "weights": BACKBONE_CONSTRAINTS["weights"],
        "content_layers": _LAYERS,
        "style_layers": _LAYERS,
        "content_weight": _WEIGHT,
        "style_weight": _WEIGHT,
        "tv_weight": _WEIGHT,
        # Their number is checked against the style images in fit.
        "style_weights": [None, Satisfies(
            lambda weights: np.ndim(weights) == 1 and (np.asarray(weights, float) >= 0).all(),
            "a 1-D array-like of non-negative numbers")],
        "n_iter": [Interval(numbers.Integral, 1, None)],
        "optimizer": [Options("lbfgs", "adam")],
        "lr": [Interval(numbers.Real, 0, None, closed="neither")],
        "image_size": [Interval(numbers.Integral, 8, None)],
        "init": [Options("content", "noise")],
        "image_shape": IMAGE_SHAPE,
        "channels": CHANNELS,
        "device": DEVICE,
        "random_state": RANDOM_STATE,
        "verbose": VERBOSE,
    }

    def __init__(
        self,
        *,
        backbone="efficientnet_lite0",
        weights=None,
        content_layers=None,
        style_layers=None,
        content_weight=1.0,
        style_weight=1e5,
        tv_weight=1e-3,
        style_weights=None,
        n_iter=150,
        optimizer="lbfgs",
        lr=1.0,
        image_size=256,
        init="content",
        image_shape=None,
        channels="last",
        device="auto",
        random_state=None,
        verbose=0,
    ):
        self.backbone = backbone
        self.weights = weights
        self.content_layers = content_layers
        self.style_layers = style_layers
        self.content_weight = content_weight
        self.style_weight = style_weight
        self.tv_weight = tv_weight
        self.style_weights = style_weights
        self.n_iter = n_iter
        self.optimizer = optimizer
        self.lr = lr
        self.image_size = image_size
        self.init = init
        self.image_shape = image_shape
        self.channels = channels
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # -- set-up ---------------------------------------------------------------

    def _network(self, device):
        """The frozen backbone with taps at the content and style layers (cached)."""
        key = (self.backbone, device)
        if getattr(self, "_taps_key", None) != key:
            backbone = build_backbone(self.backbone, weights=self.weights)
            defaults = _DEFAULT_LAYERS.get(self.backbone) or _stage_layers(backbone)
            self._content_layers = tuple(self.content_layers or defaults["content"])
            self._style_layers = tuple(self.style_layers or defaults["style"])
            taps = FeatureTaps(backbone, [*self._content_layers, *self._style_layers])
            self._taps, self._taps_key = taps.to(device), key
            self._preprocessing = backbone.preprocessing
        return self._taps

    def _prepare(self, images, device):
        """Images (n, c, h, w) in [0, 1] → normalized RGB at ``image_size``, on device."""
        height, width = images.shape[-2:]
        scale = self.image_size / min(height, width)
        size = (max(8, round(height * scale)), max(8, round(width * scale)))
        images = images.to(device)
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        elif images.shape[1] != 3:
            raise ValueError(f"StyleTransfer takes RGB or gray images; got {images.shape[1]} "
                             "channels.")
        return resize_images(images, size).clamp(0, 1)

    def _normalize(self, images):
        mean = images.new_tensor(self._preprocessing.mean).view(1, 3, 1, 1)
        std = images.new_tensor(self._preprocessing.std).view(1, 3, 1, 1)
        return (images - mean) / std

    # -- sklearn API ------------------------------------------------------------

    def fit(self, X, y=None):
        """Record the style of the style images.

        Parameters
        ----------
        X : array-like of images
            One or more style images (RGB or gray), any form the estimators
            accept. Several images give a mixed style (``style_weights``).
        y : None
            Ignored.

        Returns
        -------
        self : object
            The fitted transformer.
        """
        validate_params(self)
        images = check_images(X, estimator=self, reset=True, image_shape=self.image_shape,
                              channels=self.channels)
        weights = np.ones(len(images)) if self.style_weights is None else np.asarray(
            self.style_weights, dtype=float)
        if weights.shape != (len(images),) or np.any(weights < 0) or weights.sum() <= 0:
            raise ValueError(
                f"style_weights must be {len(images)} non-negative numbers, one per style "
                f"image, not all zero; got {self.style_weights!r}."
            )
        weights = weights / weights.sum()
        device = resolve_device(self.device)
        taps = self._network(device)
        grams = {name: 0.0 for name in self._style_layers}
        with torch.no_grad():
            for image, weight in zip(images, weights):
                features = taps(self._normalize(self._prepare(image[None], device)))
                for name in self._style_layers:
                    grams[name] = grams[name] + weight * gram_matrix(features[name])[0]
        self.style_grams_ = {name: gram.cpu() for name, gram in grams.items()}
        return self

    def transform(self, X):
        """Paint each image in the fitted style.

        Unlike the other estimators' ``predict`` and ``transform``, this is
        not safe to call from several threads on one estimator: each call
        optimizes pixels through one shared network whose forward hooks
        record the feature maps, and writes ``loss_history_``. Give each
        thread its own ``clone(...).fit(style)`` (the style targets are
        cheap to compute), or call it from one thread.

        Parameters
        ----------
        X : array-like of images
            Content images (any size; the channel count of the style
            images).

        Returns
        -------
        X_styled : array or tensor
            The stylized images at the content images' size, in their form
            and dtype (uint8 in, uint8 out).
        """
        check_is_fitted(self, "style_grams_")
        validate_params(self)
        images = check_images(X, estimator=self, reset=False, channels=self.channels)
        device = resolve_device(self.device)
        rng = check_random_state(self.random_state)
        outputs = []
        for image in images:
            styled = self._stylize(image[None], device, rng)
            outputs.append(resize_images(styled, image.shape[-2:]).clamp(0, 1).cpu())
        styled = torch.cat(outputs)
        if images.shape[1] == 1:
            styled = styled.mean(dim=1, keepdim=True)
        return images_like(styled, X, channels=self.channels)

    def _stylize(self, image, device, rng):
        """Optimize the pixels of one image; returns it in [0, 1] at the working size."""
        import pandas as pd

        taps = self._network(device)
        content = self._prepare(image, device)
        with torch.no_grad():
            content_targets = {name: maps.detach() for name, maps in
                               taps(self._normalize(content)).items()
                               if name in self._content_layers}
        grams = [self.style_grams_[name].to(device) for name in self._style_layers]
        if self.init == "content":
            start = content.clone()
        else:
            noise = rng.random_sample(tuple(content.shape)).astype(np.float32)
            start = torch.from_numpy(noise).to(device)
        pixels = start.requires_grad_(True)
        history = []

        def objective():
            picture = pixels.clamp(0, 1)
            features = taps(self._normalize(picture))
            content_value = sum(content_loss(features[name], content_targets[name])
                                for name in self._content_layers)
            style_value = style_loss([features[name] for name in self._style_layers], grams)
            tv_value = total_variation_loss(picture)
            total = (self.content_weight * content_value + self.style_weight * style_value
                     + self.tv_weight * tv_value)
            history.append([float(value.detach()) for value in
                            (content_value, style_value, tv_value, total)])
            return total

        bar = tqdm(total=self.n_iter, disable=not self.verbose, desc="style", unit="iter")
        if self.optimizer == "lbfgs":
            optimizer = torch.optim.LBFGS([pixels], lr=self.lr, max_iter=self.n_iter,
                                          max_eval=self.n_iter * 2,
                                          line_search_fn="strong_wolfe")

            def closure():
                optimizer.zero_grad()
                loss = objective()
                loss.backward()
                bar.update(1)
                return loss

            optimizer.step(closure)
        else:
            optimizer = torch.optim.Adam([pixels], lr=self.lr)
            for _ in range(self.n_iter):
                optimizer.zero_grad()
                objective().backward()
                optimizer.step()
                bar.update(1)
        bar.close()
        self.loss_history_ = pd.DataFrame(
            history, columns=["content_loss", "style_loss", "tv_loss", "total_loss"])
        self.loss_history_.insert(0, "iteration", np.arange(1, len(history) + 1))
        return pixels.detach().clamp(0, 1)

    def __getstate__(self):
        # The feature taps hold hooks (closures) and the backbone; they are
        # rebuilt from the registry on first use after unpickling.
        state = self.__dict__.copy()
        for key in ("_taps", "_taps_key", "_preprocessing"):
            state.pop(key, None)
        return state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        tags.non_deterministic = False
        return tags
