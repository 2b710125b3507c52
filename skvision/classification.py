"""Convolutional neural network classifier and regressor."""

import numbers

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils.validation import check_is_fitted

from ._docstrings import fill_doc
from ._params import (
    BOOLEAN,
    CLASSIFIER_CONSTRAINTS,
    TRAINING_CONSTRAINTS,
    Interval,
    Options,
    Satisfies,
    TupleOf,
)
from ._training import BaseNeuralEstimator, NeuralClassifierMixin, NeuralRegressorMixin
from ._validation import encode_labels
from .nn import CNN

__all__ = ["CNNClassifier", "CNNRegressor"]

_ARCHITECTURE_DOC = """\
filters : tuple of int or "auto", default="auto"
        Number of convolution filters (feature maps) of each stage; one stage
        per entry, with 2x2 pooling between stages. ``"auto"`` is
        ``(32, 64, 128)`` below 10,000 training images and ``(16, 32, 64)``
        from 10,000 up, where a few passes over the data are enough and the
        narrower network costs a quarter of the multiply-adds per image (the
        choice is ``filters_``).

    kernel_size : int, default=3
        Side of the square convolution kernels (odd).

    pooling : {"max", "avg"}, default="max"
        Max or average pooling between stages.

    batch_norm : bool, default=True
        Batch normalization after every convolution.

    dropout : float, default=0.1
        Dropout probability before each fully-connected layer.

    residual : bool, default=False
        Build each stage as a residual block with an identity (or 1x1
        projection) shortcut instead of two plain convolutions.

    attention : bool, default=False
        Add a self-attention block over the positions of the last feature
        map, with a learned residual gate.

    head : {"gap", "flatten"}, default="gap"
        Global average pooling of the last feature maps, or flattening them
        into a fully-connected layer.

    hidden_units : tuple of int, default=()
        Sizes of extra fully-connected layers between the pooling and the
        output layer."""


class _CNNMixin:
    """Architecture constraints, module building and inspection shared by both CNNs."""

    # 10 epochs up to 5,000 images, 1 from 50,000: digits and MNIST results
    # in bench/results/time_to_accuracy.json (docs: Defaults and training time).
    _auto_epochs = (10, 50_000)
    # filters="auto": (images from which the narrow network is used, wide, narrow).
    # The narrow one has a quarter of the wide one's multiply-adds; on small
    # sets the wide one was more accurate (not in bench/results: measured by
    # hand when the rule was set).
    _auto_filters = (10_000, (32, 64, 128), (16, 32, 64))

    _parameter_constraints = {
        **TRAINING_CONSTRAINTS,
        "filters": [TupleOf(Interval(numbers.Integral, 1, None), min_length=1),
                    Options("auto")],
        # Odd: "same" padding then keeps the image size.
        "kernel_size": [Satisfies(lambda size: Interval(numbers.Integral, 1, None).accepts(size)
                                  and size % 2 == 1, "an odd int >= 1")],
        "pooling": [Options("max", "avg")],
        "batch_norm": [BOOLEAN],
        "dropout": [Interval(numbers.Real, 0, 1, closed="left")],
        "residual": [BOOLEAN],
        "attention": [BOOLEAN],
        "head": [Options("gap", "flatten")],
        "hidden_units": [TupleOf(Interval(numbers.Integral, 1, None))],
    }

    def _choose_architecture(self, n_images):
        if self.filters == "auto":
            threshold, wide, narrow = self._auto_filters
            self.filters_ = narrow if n_images >= threshold else wide
        else:
            self.filters_ = tuple(self.filters)

    def _filters(self):
        # A model saved before filters="auto" existed has no filters_.
        return getattr(self, "filters_", None) or tuple(self.filters)

    def _build_module(self, n_channels, n_outputs, input_size, pretrained=True):
        # No pretrained weights: ``pretrained`` changes nothing.
        return CNN(
            n_channels,
            n_outputs,
            input_size,
            filters=self._filters(),
            kernel_size=self.kernel_size,
            pooling=self.pooling,
            batch_norm=self.batch_norm,
            dropout=self.dropout,
            residual=self.residual,
            attention=self.attention,
            head=self.head,
            hidden_units=tuple(self.hidden_units),
        )

    def _channels_last_memory(self):
        # Measured on 2 CPU cores: channels-last trains 1.05-1.6x faster from
        # 8 first-stage filters up, but 0.78x with 4 (too narrow for its kernels).
        return self._filters()[0] >= 8

    def feature_maps(self, X, stage=-1):
        """Feature maps of one stage: what its filters respond to.

        Parameters
        ----------
        X : array-like of images
            Images in any accepted form.
        stage : int, default=-1
            Index into ``filters_`` (negative counts from the end).

        Returns
        -------
        maps : ndarray of shape (n_samples, filters_[stage], h, w)
            Activations after the stage's convolutions (and its pooling,
            except for the last stage).
        """
        check_is_fitted(self, "net_")
        n_stages = len(self.module_.stages)
        if not -n_stages <= stage < n_stages:
            raise ValueError(f"stage must be in [{-n_stages}, {n_stages - 1}]; got {stage}.")
        stage = stage % n_stages
        maps = self._forward(
            X, forward=lambda batch: self.module_.forward_features(batch, stage=stage)
        )
        return maps.numpy()


@fill_doc(architecture=_ARCHITECTURE_DOC)
class CNNClassifier(_CNNMixin, NeuralClassifierMixin, BaseNeuralEstimator):
    """Convolutional neural network classifier for images.

    Stages of convolution filters, batch normalization and pooling learn
    features from the pixels; global average pooling (or a fully-connected
    head) and a linear layer turn them into class scores. Trained with the
    cross-entropy loss by the shared training core (skorch on torch).

    Read more in the :ref:`User Guide <user-guide-cnn>`.

    Parameters
    ----------
    %(architecture)s

    label_smoothing : float, default=0.1
        Share of the target probability spread over the other classes in
        the cross-entropy loss; it keeps the network from growing
        over-confident on small data sets.

    %(class_weight)s

    %(training_parameters)s

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels, in the order of ``predict_proba``'s columns.

    class_weight_ : ndarray of shape (n_classes,) or None
        The weight of each class in the loss, when ``class_weight`` is set.

    filters_ : tuple of int
        The filters of each stage: ``filters``, or what ``"auto"`` chose.

    %(fitted_attributes)s

    See Also
    --------
    CNNRegressor : The same network for continuous targets.
    sklearn.neural_network.MLPClassifier : A fully-connected network on flat
        features.

    Examples
    --------
    >>> from skvision import CNNClassifier
    >>> from skvision.datasets import load_digit_images
    >>> X, y = load_digit_images(return_X_y=True)
    >>> clf = CNNClassifier(epochs=5, random_state=0).fit(X[:1000], y[:1000])
    >>> clf.score(X[1000:1300], y[1000:1300]) > 0.95
    True
    >>> clf.predict_proba(X[:2]).shape
    (2, 10)
    """

    _parameter_constraints = {**_CNNMixin._parameter_constraints, **CLASSIFIER_CONSTRAINTS}

    def __init__(
        self,
        *,
        filters="auto",
        kernel_size=3,
        pooling="max",
        batch_norm=True,
        dropout=0.1,
        residual=False,
        attention=False,
        head="gap",
        hidden_units=(),
        label_smoothing=0.1,
        class_weight=None,
        image_shape=None,
        channels="last",
        image_size=None,
        on_error="raise",
        epochs="auto",
        batch_size=64,
        lr=0.003,
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
        precision="auto",
        accelerator=None,
        callbacks=None,
        checkpoint=None,
        random_state=None,
        verbose=0,
    ):
        self.filters = filters
        self.kernel_size = kernel_size
        self.pooling = pooling
        self.batch_norm = batch_norm
        self.dropout = dropout
        self.residual = residual
        self.attention = attention
        self.head = head
        self.hidden_units = hidden_units
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

    def class_activation_maps(self, X, target=None):
        """Class activation maps (CAM): where in each image the evidence lies.

        With the global-average-pooling head the class score is a weighted
        mean of the last feature maps; weighting the maps themselves with the
        output layer's weights for a class shows where that class was seen
        (Zhou et al., 2016).

        Parameters
        ----------
        X : array-like of images
            Images in any accepted form.
        target : array-like of labels, default=None
            Class whose evidence to map for each image (one label, or one per
            image); by default the predicted class.

        Returns
        -------
        maps : ndarray of shape (n_samples, height, width)
            Maps upsampled to the image size, scaled to [0, 1] per image.
        """
        check_is_fitted(self, "net_")
        if self.head != "gap" or tuple(self.hidden_units):
            raise ValueError(
                "class_activation_maps needs head='gap' and hidden_units=() so the "
                "output layer weighs the last feature maps directly."
            )
        features = self._forward(X, forward=self.module_.forward_features)
        output_layer = self.module_.head[-1]
        weight = output_layer.weight.detach().cpu()
        if target is None:
            # The predicted class, bias included, so the map explains predict().
            bias = output_layer.bias.detach().cpu()
            classes = F.linear(features.mean(dim=(2, 3)), weight, bias).argmax(dim=1)
        else:
            target = np.broadcast_to(np.asarray(target), (len(features),))
            classes = encode_labels(target, self.classes_, len(features))
        maps = torch.einsum("nchw,nc->nhw", features, weight[classes])
        height, width = self._input_size()
        maps = F.interpolate(maps[:, None], size=(height, width), mode="bilinear",
                             align_corners=False)[:, 0]
        low = maps.amin(dim=(1, 2), keepdim=True)
        high = maps.amax(dim=(1, 2), keepdim=True)
        return ((maps - low) / (high - low).clamp_min(1e-12)).numpy()


@fill_doc(architecture=_ARCHITECTURE_DOC)
class CNNRegressor(_CNNMixin, NeuralRegressorMixin, BaseNeuralEstimator):
    """Convolutional neural network regressor for images.

    The network of :class:`CNNClassifier` with a linear output per target,
    trained with the mean squared error. Targets are standardized internally
    (and predictions mapped back), so their scale does not matter.

    Read more in the :ref:`User Guide <user-guide-cnn>`.

    Parameters
    ----------
    %(architecture)s

    %(training_parameters)s

    Attributes
    ----------
    y_mean_, y_scale_ : ndarray of shape (n_outputs,), float64
        Mean and standard deviation of each target, used to standardize them
        (in float64, so targets far from zero keep their variation).

    filters_ : tuple of int
        The filters of each stage: ``filters``, or what ``"auto"`` chose.

    %(fitted_attributes)s

    See Also
    --------
    CNNClassifier : The same network for class labels.

    Examples
    --------
    >>> import numpy as np
    >>> from skvision import CNNRegressor
    >>> from skvision.datasets import load_digit_images
    >>> X, y = load_digit_images(return_X_y=True)
    >>> reg = CNNRegressor(filters=(16, 32), epochs=3, random_state=0)
    >>> reg.fit(X[:500], y[:500].astype(float)).predict(X[:3]).shape
    (3,)
    """

    def __init__(
        self,
        *,
        filters="auto",
        kernel_size=3,
        pooling="max",
        batch_norm=True,
        dropout=0.1,
        residual=False,
        attention=False,
        head="gap",
        hidden_units=(),
        image_shape=None,
        channels="last",
        image_size=None,
        on_error="raise",
        epochs="auto",
        batch_size=64,
        lr=0.003,
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
        precision="auto",
        accelerator=None,
        callbacks=None,
        checkpoint=None,
        random_state=None,
        verbose=0,
    ):
        self.filters = filters
        self.kernel_size = kernel_size
        self.pooling = pooling
        self.batch_norm = batch_norm
        self.dropout = dropout
        self.residual = residual
        self.attention = attention
        self.head = head
        self.hidden_units = hidden_units
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
