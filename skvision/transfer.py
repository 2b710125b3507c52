"""Transfer learning: pretrained features and fine-tuning."""

import copy
import difflib
import numbers

import joblib
import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted
from tqdm.auto import tqdm

from ._docstrings import fill_doc
from ._feature_cache import (
    FeatureCache,
    as_memory,
    build_lock,
    image_keys,
    model_key,
    state_dict_hash,
    weights_identity,
)
from ._params import (
    CHANNELS,
    CLASSIFIER_CONSTRAINTS,
    DEVICE,
    IMAGE_SHAPE,
    PATH,
    PRECISION,
    TRAINING_CONSTRAINTS,
    VERBOSE,
    InstanceOf,
    Interval,
    Options,
    Satisfies,
    image_size,
    validate_params,
)
from ._torch import predict_batches, resolve_device, resolve_precision, restore_runtime
from ._training import BaseNeuralEstimator, NeuralClassifierMixin, NeuralRegressorMixin
from ._validation import as_height_width, check_image_data
from .nn.backbones import (
    BackboneClassifier,
    backbone_input_size,
    backbone_name,
    backbone_preprocessing,
    build_backbone,
    has_pretrained_weights,
    is_known_backbone,
    resolved_hub_config,
)

__all__ = ["PretrainedFeatureExtractor", "FineTunedClassifier", "FineTunedRegressor"]

# The backbone parameters of the extractor and of both fine-tuned models.
BACKBONE_CONSTRAINTS = {
    "backbone": [Satisfies(is_known_backbone, (
        "a backbone name (one of skvision.nn.list_backbones() or a timm or torchvision "
        "model name), or a torch.nn.Module subclass or instance"))],
    "weights": [None, Options(False), PATH, InstanceOf(dict, "a state dict")],
    "layer": [Interval(numbers.Integral, None, None)],
    "pooling": [Options("auto", "avg", "max", "avgmax")],
}


ARGUMENT_PREFIX = "backbone__"


class _BackboneArguments:
    """``backbone__<name>`` parameters: the constructor arguments of a user's network.

    As skorch's ``module__<name>``: they are parameters like any other for
    ``get_params``, ``set_params``, ``clone`` and grid searches, stored on
    the estimator under their full name.
    """

    def _store_backbone_arguments(self, arguments):
        # Any other name is refused here, where it is written, not at fit:
        # sklearn's clone (cross_val_score, GridSearchCV) rebuilds an
        # estimator from get_params, which has only the signature's and the
        # backbone__ names, so a misspelt parameter kept until fit would be
        # dropped and the fit would run silently with the default. The
        # values are stored as given and checked at fit, as every parameter is.
        for name in arguments:
            if not name.startswith(ARGUMENT_PREFIX):
                raise TypeError(self._unexpected_keyword(name))
        for name, value in arguments.items():
            setattr(self, name, value)

    @classmethod
    def _unexpected_keyword(cls, name):
        """Python's own message for an unexpected keyword, with the closest parameter."""
        candidates = cls._get_param_names()
        if name.startswith("backbone_"):  # backbone_width for backbone__width
            candidates.append(ARGUMENT_PREFIX + name[len("backbone_"):])
        close = difflib.get_close_matches(name, candidates, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        return (f"{cls.__qualname__}.__init__() got an unexpected keyword argument "
                f"{name!r}.{hint} Constructor arguments of a backbone class are passed as "
                f"{ARGUMENT_PREFIX}<name>.")

    def _backbone_arguments(self):
        return {name[len(ARGUMENT_PREFIX):]: value for name, value in vars(self).items()
                if name.startswith(ARGUMENT_PREFIX)}

    def get_params(self, deep=True):
        params = super().get_params(deep=deep)
        params.update({name: value for name, value in vars(self).items()
                       if name.startswith(ARGUMENT_PREFIX)})
        return params

    def set_params(self, **params):
        for name in [name for name in params if name.startswith(ARGUMENT_PREFIX)]:
            setattr(self, name, params.pop(name))
        return super().set_params(**params)

    def _build_backbone(self, weights, image_size, restoring=False):
        # restoring: a saved model loading, its weights in the file. An hf-hub:
        # backbone is then built from the configuration its fit kept
        # (hub_config_), so loading reads nothing from the hub.
        hub_config = getattr(self, "hub_config_", None) if restoring else None
        backbone = build_backbone(self.backbone, weights=weights, layer=self.layer,
                                  image_size=image_size, arguments=self._backbone_arguments(),
                                  hub_config=hub_config)
        self.hub_config_ = backbone.hub_config
        return backbone


class PretrainedFeatureExtractor(_BackboneArguments, TransformerMixin, BaseEstimator):
    """Image features from a pretrained network with its classifier removed.

    Transfer learning in its simplest form: a network trained on ImageNet
    already computes features (edges, textures, object parts) that describe
    new images well; a linear model or boosting on these features often
    beats anything trained on raw pixels. Images are resized and normalized
    as the backbone was trained (224x224 and its own mean/std by default),
    grayscale is repeated to RGB, and the last feature maps are pooled to one
    vector per image. ``fit`` trains nothing; ``transform`` is deterministic.

    ``X`` may be images in memory or image file paths or URLs (a list, array
    or Series of them, or a one-column DataFrame): files are decoded batch by
    batch, in parallel, while the previous batch runs, so any number of
    files fits in memory; URLs (``s3://``, ``gs://``, ``https://``, ...)
    are fetched concurrently first.

    Read more in the :ref:`User Guide <user-guide-transfer>`.

    Parameters
    ----------
    backbone : str, torch.nn.Module subclass or instance, default="efficientnet_lite0"
        Registry name (weights ship with skvision's dependencies), any timm
        model name (CNNs, vision transformers such as DINOv2 or CLIP, Swin,
        MaxViT, ...) or a torchvision classification model of the ResNet
        family or with a ``.features`` sequence (VGG, MobileNet,
        EfficientNet); see
        :func:`skvision.nn.build_backbone`. Or your own network: a
        ``torch.nn.Module`` subclass, built with the ``backbone__<name>``
        arguments, or an instance (copied at ``fit``; save needs the class
        form). Its output, a feature map or vector, gets skvision's pooling
        and head.
    weights : None, path, dict or False, default=None
        None: the registry's weights, else the hub cache's; a path to a
        ``.safetensors``/``.pth`` state dict; a state dict; False: random
        weights.
    layer : int, default=-1
        Feature level at which the network is cut: -1 keeps the network's
        final features, -2 one level earlier (more generic, lower-level
        features), and so on down its stages.
    pooling : {"auto", "avg", "max", "avgmax"}, default="auto"
        How the features become one vector per image. "auto": the network's
        own pre-logits features (timm's ``forward_head(pre_logits=True)``:
        a vision transformer's class token, a CNN's average-pooled maps),
        or average pooling when ``layer`` cuts the network. "avg", "max" and
        "avgmax" (both, concatenated) pool the feature maps.
    image_size : int or tuple of int, default=None
        Size images are resized to; the backbone's own (224) by default.
        Smaller is faster and coarser. Image files are decoded at this size.
    batch_size : int, default=64
        Images per forward pass; bounds the memory used by activations.
    image_shape : tuple of int, default=None
        ``(h, w)`` or ``(h, w, c)`` of flat 2-D input rows.
    channels : {"last", "first"}, default="last"
        Channel axis of 4-D numpy input.
    device : {"auto", "cpu", "cuda", "mps"}, default="auto"
        Where the backbone runs.
    precision : {"32", "bf16", "16-mixed", "auto"}, default="32"
        Arithmetic of the forward pass: "bf16" and "16-mixed" run it under
        ``torch.autocast`` in bfloat16 or float16 (faster on GPUs); "auto"
        is "bf16" on CPUs with native bfloat16 instructions and "32"
        elsewhere, decided at each ``transform`` on the machine it runs on.
        The features are returned as float32 either way.
    memory : None, str, path or joblib.Memory, default=None
        Where to cache each image's features, as scikit-learn's ``memory``
        parameters: a directory, or a ``joblib.Memory``; None caches
        nothing. An image's features are then computed once and read back
        in every later ``transform``, by any fold, candidate or process
        (``n_jobs``) of a search: the key is the image's content (its
        pixels; a file's bytes; a URL's version or ETag) and everything
        that changes features (backbone and the hash of its weights,
        ``layer``, ``pooling``, ``image_size``, precision, device kind,
        library versions). With a warm cache neither ``fit`` nor
        ``transform`` builds or runs the network. Each image keeps the
        features first computed for it, so a search's scores are the
        same with and without the cache. Bound its size with
        ``joblib.Memory(path).reduce_size(bytes_limit=...)`` or empty it
        with ``.clear()``. A saved or loaded model does not write where a
        file says: :func:`skvision.load` gives it back with ``memory=None``.
        See :ref:`tuning` for the keys and guarantees.
    verbose : int, default=0
        1 shows a progress bar over the batches of ``transform``.
    **backbone_arguments : dict
        ``backbone__<name>=value``: constructor arguments of a ``backbone``
        class, parameters like any other for ``set_params`` and grid
        searches. Any other unknown keyword raises a ``TypeError``, as
        Python does for a function's.

    Attributes
    ----------
    backbone_ : skvision.nn.Backbone
        The pretrained stages, frozen, in eval mode.
    n_features_in_ : int
        Flat size of the training images.
    image_shape_ : tuple of int
        ``(height, width, channels)`` of the images.
    n_features_out_ : int
        Length of each feature vector.
    device_ : str
        The device in use.
    input_kind_ : str
        What ``fit`` was given, as far as the pixels' scale goes: "uint8",
        "uint16", "files", "float in [0, 1]", "float" or "integer". Input of
        another scale at ``transform`` warns.
    hub_config_ : dict or None
        For an ``hf-hub:`` backbone: the Hugging Face configuration it was
        built from (architecture, constructor arguments, pretrained
        configuration and revision), kept so that a saved extractor loads
        without the hub; None otherwise.

    See Also
    --------
    FineTunedClassifier : Train the backbone's last stages with a new head.
    FineTunedRegressor : The same for continuous targets.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from skvision import PretrainedFeatureExtractor
    >>> from skvision.datasets import make_shapes
    >>> X, y = make_shapes(60, image_size=32, random_state=0)
    >>> extractor = PretrainedFeatureExtractor(image_size=64)
    >>> extractor.fit_transform(X).shape
    (60, 1280)
    >>> model = make_pipeline(extractor, LogisticRegression(max_iter=1000)).fit(X, y)
    """

    _parameter_constraints = {
        **BACKBONE_CONSTRAINTS,
        "image_size": image_size(8),
        "batch_size": [Interval(numbers.Integral, 1, None)],
        "image_shape": IMAGE_SHAPE,
        "channels": CHANNELS,
        "device": DEVICE,
        "precision": PRECISION,
        "memory": [None, PATH, InstanceOf(joblib.Memory, "a joblib.Memory")],
        "verbose": VERBOSE,
    }

    def __init__(
        self,
        *,
        backbone="efficientnet_lite0",
        weights=None,
        layer=-1,
        pooling="auto",
        image_size=None,
        batch_size=64,
        image_shape=None,
        channels="last",
        device="auto",
        precision="32",
        memory=None,
        verbose=0,
        **backbone_arguments,
    ):
        self.backbone = backbone
        self.weights = weights
        self.layer = layer
        self.pooling = pooling
        self.image_size = image_size
        self.batch_size = batch_size
        self.image_shape = image_shape
        self.channels = channels
        self.device = device
        self.precision = precision
        self.memory = memory
        self.verbose = verbose
        self._store_backbone_arguments(backbone_arguments)

    def fit(self, X, y=None):
        """Load the backbone and record the image shape; nothing is trained.

        Parameters
        ----------
        X : array-like of images
            Images in any accepted form.
        y : ignored

        Returns
        -------
        self : object
        """
        validate_params(self)
        # What transform uses: parameters changed after fit take effect at the next fit.
        self._image_size = as_height_width(self.image_size)
        self._pooling = self.pooling
        self._check_data(X, reset=True)
        self.device_ = resolve_device(self.device)
        self.__dict__.pop("backbone_", None)  # a network of an earlier fit
        memory = as_memory(self.memory)
        if memory is None:
            self._feature_key = self._weights_identity = None
            self._load_backbone()
            self.n_features_out_ = self.backbone_.n_features(self._pooling)
            return self
        # With a cache, the network is built when an image misses (a warm
        # cache never builds it): fit needs only what the cache keeps of it.
        self.hub_config_ = resolved_hub_config(self.backbone)
        self._weights_identity = weights_identity(self.backbone, self.weights)
        weights = self._weights_identity
        if weights is None:  # random weights: only the network says which
            weights = "state:" + state_dict_hash(
                self._load_backbone().state_dict())
        self._feature_key = model_key(self, weights)
        cache = FeatureCache(memory, self._feature_key)
        facts = cache.facts()
        if facts is None:
            backbone = self.backbone_
            facts = {"n_features_out": backbone.n_features(self._pooling),
                     "file_size": tuple(backbone.preprocessing.input_size),
                     "interpolation": backbone.preprocessing.interpolation}
            cache.store_facts(facts)
        self.n_features_out_ = int(facts["n_features_out"])
        self._file_decoding = (tuple(facts["file_size"]), facts["interpolation"])
        return self

    def _load_backbone(self):
        """Build ``backbone_`` as fit decided (the weights of fit's time), on ``device_``."""
        with build_lock:
            if "backbone_" in self.__dict__:
                return self.__dict__["backbone_"]
            lazy = getattr(self, "_feature_key", None) is not None
            backbone = self._build_backbone(self.weights, self._image_size, restoring=lazy)
            if getattr(self, "_weights_identity", None) is not None and (
                    weights_identity(self.backbone, self.weights)
                    != self._weights_identity):
                raise RuntimeError(
                    f"The weights of {type(self).__name__}'s backbone changed since fit (the "
                    "cached features are those of fit's weights); fit it again.")
            backbone.requires_grad_(False).eval().to(self.device_)
            self.__dict__["backbone_"] = backbone
            self._file_decoding = (tuple(backbone.preprocessing.input_size),
                                   backbone.preprocessing.interpolation)
            return backbone

    @property
    def backbone_(self):
        # Built at fit, or with memory= when first needed (a cache miss, a save).
        if "backbone_" in self.__dict__:
            return self.__dict__["backbone_"]
        if getattr(self, "_feature_key", None) is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute 'backbone_'")
        return self._load_backbone()

    @backbone_.setter
    def backbone_(self, backbone):
        self.__dict__["backbone_"] = backbone

    def _check_data(self, X, reset):
        # Files are decoded as the backbone resizes arrays (``fit`` checks the
        # data before building the backbone, and reads no file).
        if reset:
            preprocessing = backbone_preprocessing(self.backbone)
            file_size, interpolation = preprocessing.input_size, preprocessing.interpolation
        elif "_file_decoding" in self.__dict__:
            file_size, interpolation = self._file_decoding
        else:  # fitted before the decoding was kept
            preprocessing = self.backbone_.preprocessing
            file_size, interpolation = preprocessing.input_size, preprocessing.interpolation
        return check_image_data(
            X, estimator=self, reset=reset, image_shape=self.image_shape,
            channels=self.channels, image_size=self._image_size,
            file_size=file_size, interpolation=interpolation,
        )

    def transform(self, X):
        """Feature vectors of the images.

        Parameters
        ----------
        X : array-like of images, or of image file paths
            Images with the channels seen in ``fit``.

        Returns
        -------
        features : ndarray of shape (n_samples, ``n_features_out_``), float32
        """
        check_is_fitted(self, "n_features_out_")
        images = self._check_data(X, reset=False)
        memory = as_memory(self.memory)
        if getattr(self, "_feature_key", None) is None or memory is None:
            return self._features(images)
        # Each image's features as the cache has them; the misses computed
        # (once per distinct image), then kept.
        cache = FeatureCache(memory, self._feature_key).for_run(
            resolve_precision(self.precision, self.device_), self.device_)
        keys = image_keys(images)
        out = np.empty((len(images), self.n_features_out_), dtype=np.float32)
        missing = {}
        for position, key in enumerate(keys):
            found = None if key is None else cache.load(key, self.n_features_out_)
            if found is None:
                missing.setdefault(key if key is not None else ("uncached", position),
                                   []).append(position)
            else:
                out[position] = found
        if missing:
            first = [positions[0] for positions in missing.values()]
            computed = self._features(images.subset(first))
            for vector, (key, positions) in zip(computed, missing.items()):
                out[positions] = vector
                if isinstance(key, str):
                    cache.store(key, vector)
        return out

    def _features(self, images):
        backbone = self.backbone_
        device = next(backbone.parameters()).device
        bar = tqdm(total=len(images), disable=not self.verbose, desc="features", unit="image")

        def features(batch):
            # Never a batch of one image: PyTorch's CPU kernels compute a lone
            # image in other ways than a batch of several (differences near
            # 1e-5), so its features would depend on the batch it falls in
            # more than anywhere else (see skvision._feature_cache).
            single = torch.is_tensor(batch) and len(batch) == 1
            if single:
                batch = torch.cat([batch, batch])
            vectors = backbone.pool(backbone.preprocessing(batch, self._image_size),
                                    self._pooling)
            bar.update(1 if single else len(batch))
            return vectors[:1] if single else vectors

        try:
            return predict_batches(
                backbone, images, batch_size=self.batch_size, device=device,
                forward=features, precision=self.precision,
            ).numpy()
        finally:
            bar.close()

    def _rebuild_network(self, key, state, device):
        """The persistence hook: ``backbone_`` of a saved extractor, from its state dict."""
        if key != "backbone_":
            raise ValueError(f"Unknown network attribute {key!r} in the model file.")
        backbone = self._build_backbone(False, self._image_size, restoring=True)
        backbone.load_state_dict(state)
        return backbone.requires_grad_(False).eval().to(device)

    def get_feature_names_out(self, input_features=None):
        """Names ``<backbone>_0``, ``<backbone>_1``, ... of the output features."""
        check_is_fitted(self, "n_features_out_")
        name = backbone_name(self.backbone).rsplit(".", 1)[-1]
        return np.array([f"{name}_{i}" for i in range(self.n_features_out_)], dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

    def __getstate__(self):
        # The weights travel inside the pickle, on the CPU, so a model saved on
        # a GPU loads anywhere and never re-reads a weights file that may have
        # moved or changed since.
        if getattr(self, "_feature_key", None) is not None:
            self._load_backbone()  # a fitted extractor travels with its network
        state = self.__dict__.copy()
        if "backbone_" in state and next(state["backbone_"].parameters()).device.type != "cpu":
            state["backbone_"] = copy.deepcopy(state["backbone_"]).cpu()
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if "backbone_" in state and "_pooling" not in state:
            self._pooling = self.pooling  # fitted before the pooling of fit was kept
        if "backbone_" in state:
            # A model pickled on a GPU machine runs on the CPU where there is none.
            restore_runtime(self, device=getattr(self, "device_", self.device))
            self.backbone_.to(self.device_)


_FREEZE_DOC = """\
backbone : str, torch.nn.Module subclass or instance, default="efficientnet_lite0"
        As in :class:`PretrainedFeatureExtractor`: a registry, timm or
        torchvision name, or your own network.

    weights : None, path, dict or False, default=None
        As in :class:`PretrainedFeatureExtractor`.

    layer : int, default=-1
        Last feature level kept (timm's stages, then the final features).

    freeze : {"auto", "all", "none"} or int, default="auto"
        Which backbone levels stay fixed: "all" trains the new head only
        (fast, best with little data), "none" trains everything, an int
        ``n`` trains the last ``n`` feature levels (stages). Frozen levels
        keep their batch norm statistics. "auto" is "all" for a backbone
        with pretrained weights and "none" for one without, whose random
        features are worth nothing frozen: a name with ``weights=False``,
        or your network's class with ``weights`` None or False. Your
        network's instance counts as pretrained (its weights are what you
        gave it) unless ``weights=False``. The choice is ``freeze_``.

    pooling : {"auto", "avg", "max", "avgmax"}, default="auto"
        How the features become the head's input vector: "auto" the
        network's own pre-logits features (a vision transformer's class
        token, a CNN's average-pooled maps; average pooling when ``layer``
        cuts the network), else global pooling of the feature maps.

    image_size : int or tuple of int, default=None
        Size images are resized to by the network; the backbone's own (224)
        by default. Image files are decoded at this size.

    dropout : float, default=0.2
        Dropout before the new head.

    backbone_lr : float or "auto", default="auto"
        Learning rate of the trained backbone stages as a fraction of
        ``lr`` (discriminative learning rates: pretrained weights need only
        small changes). "auto" is 0.1 for a backbone with pretrained
        weights and 1.0 (the head's rate) for one without, which must
        learn everything, as ``freeze="auto"`` decides; the choice is
        ``backbone_lr_``."""


class _FineTunedMixin(_BackboneArguments):
    """Backbone, new head, input size and learning rates shared by both fine-tuned models."""

    # A pretrained backbone needs few passes; each costs a large network's time.
    _auto_epochs = (5, 25_000)

    _parameter_constraints = {
        **TRAINING_CONSTRAINTS,
        **BACKBONE_CONSTRAINTS,
        "image_size": image_size(8),
        "freeze": [Options("auto", "all", "none"), Interval(numbers.Integral, 0, None)],
        "dropout": [Interval(numbers.Real, 0, 1, closed="left")],
        "backbone_lr": [Interval(numbers.Real, 0, None), Options("auto")],
    }

    # freeze and backbone_lr "auto": (with pretrained weights, without).
    # Frozen random features leave the head at chance, and a tenth of the
    # rate holds a network trained from scratch far below a plain loop
    # (tests/test_transfer.py, test_a_user_network_class_trains_by_default).
    _auto_freeze = ("all", "none")
    _auto_backbone_lr = (0.1, 1.0)

    def _choose_architecture(self, n_images):
        # Whether the weights are pretrained is settled once per fresh fit, with
        # the network built from them: a warm start keeps the network, its
        # frozen levels and this answer.
        self._pretrained_backbone = has_pretrained_weights(self.backbone, self.weights)
        self.freeze_ = self._auto_freeze[not self._pretrained_backbone] if (
            self.freeze == "auto") else self.freeze
        self.backbone_lr_ = self._backbone_lr()

    def _backbone_lr(self):
        if self.backbone_lr != "auto":
            return self.backbone_lr
        return self._auto_backbone_lr[not self._pretrained_backbone]

    def _configure_net(self, dataset, n_outputs, **options):
        # A warm start or partial_fit takes a changed backbone_lr, as it takes a changed lr.
        self.backbone_lr_ = self._backbone_lr()
        return super()._configure_net(dataset, n_outputs, **options)

    def _n_trainable_stages(self):
        # A model saved before freeze="auto" existed has no freeze_.
        freeze = getattr(self, "freeze_", self.freeze)
        if freeze == "all":
            return 0
        return None if freeze == "none" else int(freeze)

    def _build_module(self, n_channels, n_outputs, input_size, pretrained=True):
        # pretrained=False (a saved model loading): the architecture only, the
        # weights file is not read again.
        backbone = self._build_backbone(self.weights if pretrained else False,
                                        self._image_size(), restoring=not pretrained)
        return BackboneClassifier(
            backbone, n_outputs, pooling=self.pooling, dropout=self.dropout,
            image_size=self._image_size(),
            n_trainable_stages=self._n_trainable_stages(),
        )

    def _image_size(self):
        return as_height_width(self.image_size)

    def _file_size(self):
        # A fitted model asks its own network: no lookup (an hf-hub: id's
        # would need the hub).
        module = getattr(getattr(self, "net_", None), "module_", None)
        if module is not None:
            return tuple(module.backbone.preprocessing.input_size)
        return backbone_input_size(self.backbone)

    def _interpolation(self):
        # Files are decoded with the resize the network applies to arrays, so
        # both reach it alike; a fitted model asks its own network (no lookup).
        module = getattr(getattr(self, "net_", None), "module_", None)
        if module is not None:
            return module.backbone.preprocessing.interpolation
        return backbone_preprocessing(self.backbone).interpolation

    def _input_size(self):
        return self._image_size()

    def _resize_to(self, images):
        # Files are decoded at the backbone's size; arrays of any size are
        # resized by the network itself, with the backbone's interpolation.
        return None

    def _param_groups(self):
        if self._n_trainable_stages() == 0:
            return []
        return [("backbone.*", {"lr": self.lr * getattr(self, "backbone_lr_", self.backbone_lr)})]


@fill_doc(architecture=_FREEZE_DOC, resize=False)
class FineTunedClassifier(_FineTunedMixin, NeuralClassifierMixin, BaseNeuralEstimator):
    """Classifier fine-tuned from a pretrained backbone with a new head.

    The backbone's classification layer is replaced by a new linear head for
    the task's classes; the head (and, with ``freeze``, the backbone's last
    stages at a lower learning rate) is trained by the shared training core.

    Read more in the :ref:`User Guide <user-guide-transfer>`.

    Parameters
    ----------
    %(architecture)s

    label_smoothing : float, default=0.1
        Share of the target probability spread over the other classes.

    %(class_weight)s

    %(training_parameters)s

    **backbone_arguments : dict
        ``backbone__<name>=value``: constructor arguments of a ``backbone``
        class (see :class:`PretrainedFeatureExtractor`).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels.

    class_weight_ : ndarray of shape (n_classes,) or None
        The weight of each class in the loss, when ``class_weight`` is set.

    freeze_ : {"all", "none"} or int
        The backbone levels kept fixed: ``freeze``, or what "auto" chose.

    backbone_lr_ : float
        The backbone's learning rate as a fraction of ``lr``:
        ``backbone_lr``, or what "auto" chose.

    hub_config_ : dict or None
        For an ``hf-hub:`` backbone: the Hugging Face configuration it was built
        from (architecture, constructor arguments, pretrained configuration
        and revision), kept so that a saved model loads without the hub;
        None otherwise.

    %(fitted_attributes)s

    See Also
    --------
    FineTunedRegressor : The same for continuous targets.
    PretrainedFeatureExtractor : Fixed features for any sklearn model.
    CNNClassifier : A network trained from scratch.

    Examples
    --------
    >>> from skvision import FineTunedClassifier
    >>> from skvision.datasets import make_shapes
    >>> X, y = make_shapes(80, image_size=32, random_state=0)
    >>> clf = FineTunedClassifier(image_size=64, epochs=2, random_state=0)
    >>> clf.fit(X, y).predict(X[:3]).shape
    (3,)
    """

    _parameter_constraints = {**_FineTunedMixin._parameter_constraints, **CLASSIFIER_CONSTRAINTS}

    def __init__(
        self,
        *,
        backbone="efficientnet_lite0",
        weights=None,
        layer=-1,
        freeze="auto",
        pooling="auto",
        image_size=None,
        dropout=0.2,
        backbone_lr="auto",
        label_smoothing=0.1,
        class_weight=None,
        image_shape=None,
        channels="last",
        on_error="raise",
        epochs="auto",
        batch_size=32,
        lr=0.001,
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
        **backbone_arguments,
    ):
        self.backbone = backbone
        self.weights = weights
        self.layer = layer
        self.freeze = freeze
        self.pooling = pooling
        self.image_size = image_size
        self.dropout = dropout
        self.backbone_lr = backbone_lr
        self.label_smoothing = label_smoothing
        self.class_weight = class_weight
        self.image_shape = image_shape
        self.channels = channels
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
        self._store_backbone_arguments(backbone_arguments)


@fill_doc(architecture=_FREEZE_DOC, resize=False)
class FineTunedRegressor(_FineTunedMixin, NeuralRegressorMixin, BaseNeuralEstimator):
    """Regressor fine-tuned from a pretrained backbone with a new head.

    Transfer learning for continuous targets (a count, an age, a size, a
    quality score): the backbone's classification layer is replaced by a
    linear output per target, trained with the mean squared error by the
    shared training core (with ``freeze``, the backbone's last stages too,
    at a lower learning rate). Targets are standardized internally (and
    predictions mapped back), so their scale does not matter.

    Read more in the :ref:`User Guide <user-guide-transfer>`.

    Parameters
    ----------
    %(architecture)s

    %(training_parameters)s

    **backbone_arguments : dict
        ``backbone__<name>=value``: constructor arguments of a ``backbone``
        class (see :class:`PretrainedFeatureExtractor`).

    Attributes
    ----------
    y_mean_, y_scale_ : ndarray of shape (n_outputs,), float64
        Mean and standard deviation of each target, used to standardize them
        (in float64, so targets far from zero keep their variation).

    freeze_ : {"all", "none"} or int
        The backbone levels kept fixed: ``freeze``, or what "auto" chose.

    backbone_lr_ : float
        The backbone's learning rate as a fraction of ``lr``:
        ``backbone_lr``, or what "auto" chose.

    hub_config_ : dict or None
        For an ``hf-hub:`` backbone: the Hugging Face configuration it was built
        from (architecture, constructor arguments, pretrained configuration
        and revision), kept so that a saved model loads without the hub;
        None otherwise.

    %(fitted_attributes)s

    See Also
    --------
    FineTunedClassifier : The same for class labels.
    PretrainedFeatureExtractor : Fixed features for any sklearn regressor.
    CNNRegressor : A network trained from scratch.

    Examples
    --------
    >>> from skvision import FineTunedRegressor
    >>> from skvision.datasets import make_shapes
    >>> X, _ = make_shapes(60, image_size=32, random_state=0)
    >>> brightness = X.mean(axis=(1, 2, 3))
    >>> reg = FineTunedRegressor(image_size=64, epochs=2, random_state=0)
    >>> reg.fit(X, brightness).predict(X[:3]).shape
    (3,)
    """

    def __init__(
        self,
        *,
        backbone="efficientnet_lite0",
        weights=None,
        layer=-1,
        freeze="auto",
        pooling="auto",
        image_size=None,
        dropout=0.2,
        backbone_lr="auto",
        image_shape=None,
        channels="last",
        on_error="raise",
        epochs="auto",
        batch_size=32,
        lr=0.001,
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
        **backbone_arguments,
    ):
        self.backbone = backbone
        self.weights = weights
        self.layer = layer
        self.freeze = freeze
        self.pooling = pooling
        self.image_size = image_size
        self.dropout = dropout
        self.backbone_lr = backbone_lr
        self.image_shape = image_shape
        self.channels = channels
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
        self._store_backbone_arguments(backbone_arguments)
