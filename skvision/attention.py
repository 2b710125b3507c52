"""Vision transformer classifier and regressor: attention between all pairs of patches."""

import numbers

from sklearn.utils.validation import check_is_fitted

from ._docstrings import fill_doc
from ._params import (
    BOOLEAN,
    CLASSIFIER_CONSTRAINTS,
    TRAINING_CONSTRAINTS,
    Interval,
    Relation,
)
from ._torch import predict_batches
from ._training import BaseNeuralEstimator, NeuralClassifierMixin, NeuralRegressorMixin
from .nn.vit import VisionTransformer, attention_rollout

__all__ = ["VisionTransformerClassifier", "VisionTransformerRegressor"]

_VIT_DOC = """\
patch_size : int, default=None
        Side of the square patches that become tokens; None picks the
        smallest patches giving at most 7x7 of them (2x2 pixels for 8x8
        images, 4x4 for 28x28).

    embed_dim : int, default=64
        Size of each token.

    depth : int, default=4
        Number of transformer encoder blocks.

    n_heads : int, default=4
        Attention heads per block (``embed_dim`` must be divisible by it).

    mlp_ratio : float, default=2.0
        Hidden size of each block's MLP, as a multiple of ``embed_dim``.

    dropout : float, default=0.1
        Dropout on the token embeddings and block outputs.

    attention_dropout : float, default=0.0
        Dropout on the attention weights.

    conv_stem : bool, default=True
        See each pixel's 3x3 neighbourhood with two convolutions before
        cutting patches (a hybrid ViT): transformers then train far better
        on small data sets. False gives the original linear patch
        embedding."""


class _VisionTransformerMixin:
    """Constraints, network building and attention maps shared by both vision transformers."""

    # Attention learns its inductive bias from the data: more passes than a CNN.
    _auto_epochs = (30, 150_000)

    _parameter_constraints = {
        **TRAINING_CONSTRAINTS,
        "patch_size": [None, Interval(numbers.Integral, 1, None)],
        "embed_dim": [Interval(numbers.Integral, 1, None)],
        "depth": [Interval(numbers.Integral, 1, None)],
        "n_heads": [Interval(numbers.Integral, 1, None)],
        "mlp_ratio": [Interval(numbers.Real, 0, None, closed="neither")],
        "dropout": [Interval(numbers.Real, 0, 1, closed="left")],
        "attention_dropout": [Interval(numbers.Real, 0, 1, closed="left")],
        "conv_stem": [BOOLEAN],
    }
    _parameter_relations = (
        *BaseNeuralEstimator._parameter_relations,
        Relation(("embed_dim", "n_heads"), lambda dim, heads: dim % heads == 0,
                 "embed_dim must be divisible by n_heads (each head gets an equal share)."),
    )

    def _build_module(self, n_channels, n_outputs, input_size, pretrained=True):
        # No pretrained weights: ``pretrained`` changes nothing.
        return VisionTransformer(
            n_channels, n_outputs, input_size, patch_size=self.patch_size,
            embed_dim=self.embed_dim, depth=self.depth, n_heads=self.n_heads,
            mlp_ratio=self.mlp_ratio, dropout=self.dropout,
            attention_dropout=self.attention_dropout, conv_stem=self.conv_stem,
        )

    def attention_maps(self, X):
        """Where the class token looks: attention rollout at image resolution.

        Parameters
        ----------
        X : array-like of images
            Images in any accepted form.

        Returns
        -------
        maps : ndarray of shape (n_samples, height, width)
            Non-negative maps that sum to 1 per image: the share of the class
            token's (rolled-out) attention that falls on each pixel.
        """
        check_is_fitted(self, "net_")
        module = self.module_
        images = self._check_data(X, reset=False)
        height, width = self._input_size()
        grid = module.patch_embedding.grid(height, width)
        patch = module.patch_embedding.patch_size

        def rollout(batch):
            _, attention = module(batch, return_attention=True)
            maps = attention_rollout(attention, grid)
            # Spread each patch's share evenly over its pixels, crop the padding.
            maps = maps.repeat_interleave(patch, 1).repeat_interleave(patch, 2) / patch**2
            maps = maps[:, :height, :width]
            return maps / maps.sum(dim=(1, 2), keepdim=True)

        return predict_batches(module, images, batch_size=self.batch_size, device=self.device_,
                               forward=rollout, precision=self.precision_,
                               size=self._resize_to(images)).numpy()


@fill_doc(architecture=_VIT_DOC)
class VisionTransformerClassifier(_VisionTransformerMixin, NeuralClassifierMixin,
                                  BaseNeuralEstimator):
    """Vision transformer (ViT) classifier for images.

    The image is cut into patches; each patch becomes a token, a learned
    positional embedding says where it came from, and a class token is
    prepended. In each encoder block, multi-head self-attention scores every
    pair of tokens (softmax of scaled query-key products) and rebuilds each
    token as the weighted sum of all tokens' values: a context-aware
    representation of the whole image. The class token's final state is
    classified. Trained by the shared training core.

    Read more in the :ref:`User Guide <user-guide-attention>`.

    Parameters
    ----------
    %(architecture)s

    label_smoothing : float, default=0.1
        Share of the target probability spread over the other classes.

    %(class_weight)s

    %(training_parameters)s

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels.

    class_weight_ : ndarray of shape (n_classes,) or None
        The weight of each class in the loss, when ``class_weight`` is set.

    %(fitted_attributes)s

    See Also
    --------
    VisionTransformerRegressor : The same network for continuous targets.
    CNNClassifier : Convolutions instead of attention (``attention=True``
        adds a self-attention block to its last feature map).

    Examples
    --------
    >>> from skvision import VisionTransformerClassifier
    >>> from skvision.datasets import load_digit_images
    >>> X, y = load_digit_images(return_X_y=True)
    >>> vit = VisionTransformerClassifier(epochs=5, random_state=0).fit(X[:800], y[:800])
    >>> vit.attention_maps(X[:2]).shape
    (2, 8, 8)
    """

    _parameter_constraints = {
        **_VisionTransformerMixin._parameter_constraints, **CLASSIFIER_CONSTRAINTS}

    def __init__(
        self,
        *,
        patch_size=None,
        embed_dim=64,
        depth=4,
        n_heads=4,
        mlp_ratio=2.0,
        dropout=0.1,
        attention_dropout=0.0,
        conv_stem=True,
        label_smoothing=0.1,
        class_weight=None,
        image_shape=None,
        channels="last",
        image_size=None,
        on_error="raise",
        epochs="auto",
        batch_size=64,
        lr=0.002,
        optimizer="adamw",
        lr_schedule="onecycle",
        alpha=0.0001,
        l1_ratio=0.0,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=5,
        augment=None,
        warm_start=False,
        device="auto",
        precision="32",
        accelerator=None,
        callbacks=None,
        checkpoint=None,
        random_state=None,
        verbose=0,
    ):
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.depth = depth
        self.n_heads = n_heads
        self.mlp_ratio = mlp_ratio
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.conv_stem = conv_stem
        self.label_smoothing = label_smoothing
        self.class_weight = class_weight
        self.image_shape = image_shape
        self.channels = channels
        self.image_size = image_size
        self.on_error = on_error
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.optimizer = optimizer
        self.lr_schedule = lr_schedule
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.augment = augment
        self.warm_start = warm_start
        self.device = device
        self.precision = precision
        self.accelerator = accelerator
        self.callbacks = callbacks
        self.checkpoint = checkpoint
        self.random_state = random_state
        self.verbose = verbose


@fill_doc(architecture=_VIT_DOC)
class VisionTransformerRegressor(_VisionTransformerMixin, NeuralRegressorMixin,
                                 BaseNeuralEstimator):
    """Vision transformer (ViT) regressor for images.

    The network of :class:`VisionTransformerClassifier` with a linear output
    per target read from the class token, trained with the mean squared
    error. Targets are standardized internally (and predictions mapped
    back), so their scale does not matter.

    Read more in the :ref:`User Guide <user-guide-attention>`.

    Parameters
    ----------
    %(architecture)s

    %(training_parameters)s

    Attributes
    ----------
    y_mean_, y_scale_ : ndarray of shape (n_outputs,), float64
        Mean and standard deviation of each target, used to standardize them
        (in float64, so targets far from zero keep their variation).

    %(fitted_attributes)s

    See Also
    --------
    VisionTransformerClassifier : The same network for class labels.
    CNNRegressor : Convolutions instead of attention.

    Examples
    --------
    >>> from skvision import VisionTransformerRegressor
    >>> from skvision.datasets import load_digit_images
    >>> X, y = load_digit_images(return_X_y=True)
    >>> reg = VisionTransformerRegressor(epochs=2, random_state=0)
    >>> reg.fit(X[:300], y[:300].astype(float)).predict(X[:3]).shape
    (3,)
    """

    def __init__(
        self,
        *,
        patch_size=None,
        embed_dim=64,
        depth=4,
        n_heads=4,
        mlp_ratio=2.0,
        dropout=0.1,
        attention_dropout=0.0,
        conv_stem=True,
        image_shape=None,
        channels="last",
        image_size=None,
        on_error="raise",
        epochs="auto",
        batch_size=64,
        lr=0.002,
        optimizer="adamw",
        lr_schedule="onecycle",
        alpha=0.0001,
        l1_ratio=0.0,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=5,
        augment=None,
        warm_start=False,
        device="auto",
        precision="32",
        accelerator=None,
        callbacks=None,
        checkpoint=None,
        random_state=None,
        verbose=0,
    ):
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.depth = depth
        self.n_heads = n_heads
        self.mlp_ratio = mlp_ratio
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.conv_stem = conv_stem
        self.image_shape = image_shape
        self.channels = channels
        self.image_size = image_size
        self.on_error = on_error
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.optimizer = optimizer
        self.lr_schedule = lr_schedule
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.augment = augment
        self.warm_start = warm_start
        self.device = device
        self.precision = precision
        self.accelerator = accelerator
        self.callbacks = callbacks
        self.checkpoint = checkpoint
        self.random_state = random_state
        self.verbose = verbose
