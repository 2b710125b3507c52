"""Pretrained weight files from the Hugging Face hub and the torch hub, on request.

One concern: turning a model name into the local path of its verified
pretrained weights, through timm's and torchvision's own hub machinery and
caches, so a file downloaded here is the file timm or torchvision would use
(and the other way round).

* timm names (``arch`` or ``arch.tag``) and ``hf-hub:org/repo`` ids: the
  Hugging Face hub, with :func:`huggingface_hub.hf_hub_download` (as timm's
  ``load_state_dict_from_hf`` does), into the standard Hugging Face cache
  (``HF_HOME``, ``HF_HUB_CACHE``), ``model.safetensors`` first and
  ``pytorch_model.bin`` second.
* torchvision names (classification, detection, segmentation...): the torch
  hub cache ``torch.hub.get_dir()/checkpoints`` (``TORCH_HOME``), with
  :func:`torch.hub.download_url_to_file` and the sha256 prefix carried by
  torchvision's file names.

A cached file is returned without touching the network. ``HF_HUB_OFFLINE=1``
(huggingface_hub's own switch) forbids downloads from both hubs; the error
then says which file to place where. Every download is verified (sha256 where
the hub gives one, then loading the file); a corrupt or partial download is
removed from the cache before the error is raised.

The heavy libraries (huggingface_hub, timm, torchvision) are imported inside
functions, so importing this module, as ``backbones`` does, costs nothing.
Imports run one way: ``backbones`` uses this module, never the reverse.
"""

import glob
import hashlib
import json
import os
import re

__all__ = ["BackboneWeightsError", "checked_hub_config", "hub_model_config",
           "hub_weights_file"]

HF_PREFIX = "hf-hub:"
# timm's own preference: safetensors first, the pickle-free format.
_HF_WEIGHTS_FILES = ("model.safetensors", "pytorch_model.bin")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class BackboneWeightsError(ValueError):
    """Raised when a backbone's weights cannot be found or do not fit it."""


def _error(message):
    return BackboneWeightsError(message)


def _offline():
    """Whether huggingface_hub's ``HF_HUB_OFFLINE`` switch is on (read at its import)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _split_hf_id(hf_id):
    """``(repo_id, revision)`` of ``[hf-hub:]org/repo[@revision]`` (revision None: main)."""
    if hf_id.startswith(HF_PREFIX):
        hf_id = hf_id[len(HF_PREFIX):]
    repo_id, _, revision = hf_id.partition("@")
    return repo_id, revision or None


# --------------------------------------------------------------------------
# Verification: a file that does not load is no weights file.


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_loads(path, filename):
    """Raise if ``path`` (named ``filename`` on the hub) does not load."""
    if filename.endswith(".json"):
        with open(path, encoding="utf-8") as file:
            json.load(file)
    elif filename.endswith(".safetensors"):
        from safetensors.torch import load_file

        load_file(path, device="cpu")
    else:
        import torch

        torch.load(path, map_location="cpu", weights_only=True)


# --------------------------------------------------------------------------
# The Hugging Face hub.


def _hf_url(repo_id, filename, revision):
    from huggingface_hub import hf_hub_url

    return hf_hub_url(repo_id, filename, revision=revision)


def _hf_storage_folder(repo_id):
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    folder = repo_folder_name(repo_id=repo_id, repo_type="model")
    return os.path.join(constants.HF_HUB_CACHE, folder)


def _hf_discard(repo_id, pointer=None):
    """Remove a bad download from the HF cache: snapshot link, blob, leftover ``.incomplete`` files.

    huggingface_hub stores a file once as ``blobs/<etag>`` with a
    ``snapshots/<commit>/<filename>`` symlink to it (a copy where symlinks are
    unsupported); it would return a corrupt blob forever, so both go. Its own
    temporary ``.incomplete`` files are removed by huggingface_hub on errors;
    older versions kept them to resume, so any left in this repo's blobs go too.
    """
    if pointer is not None:
        blob = os.path.realpath(pointer)
        for path in {pointer, blob}:
            if os.path.lexists(path):
                os.remove(path)
    for leftover in glob.glob(os.path.join(_hf_storage_folder(repo_id), "blobs", "*.incomplete")):
        try:
            os.remove(leftover)
        except OSError:
            pass


def _hf_verify(path, repo_id, filename):
    """Check a fresh download against the hub's sha256 (the blob's name) and by loading it."""
    blob = os.path.realpath(path)
    etag = os.path.basename(blob)
    try:
        # LFS files (weights) are stored under their sha256, which the hub
        # sent as the etag: a wrong or partial body shows here.
        if _SHA256.match(etag) and _sha256(blob) != etag:
            raise ValueError(f"sha256 {_sha256(blob)} differs from the hub's {etag}")
        _check_loads(path, filename)
    except Exception as error:
        _hf_discard(repo_id, path)
        raise _error(
            f"The download of {filename!r} from the Hugging Face repo {repo_id!r} is corrupt or "
            f"incomplete ({type(error).__name__}: {error}); it was removed from the cache. Try "
            f"again, or download it yourself and pass weights='/path/to/{filename}'."
        ) from error


def _hf_file(repo_id, filenames, revision, what):
    """The local path of the first of ``filenames`` that ``repo_id`` has: cached, or downloaded.

    ``what`` names the model in messages.
    """
    import huggingface_hub
    from huggingface_hub.errors import RemoteEntryNotFoundError

    # The cache first, for every candidate: a cached pytorch_model.bin serves
    # without asking the hub whether a model.safetensors appeared since.
    for filename in filenames:
        found = huggingface_hub.try_to_load_from_cache(repo_id, filename, revision=revision)
        if isinstance(found, str):
            return found
    urls = " or ".join(_hf_url(repo_id, filename, revision) for filename in filenames)
    if _offline():
        raise _error(
            f"{what} needs {' or '.join(map(repr, filenames))} from the Hugging Face repo "
            f"{repo_id!r} ({urls}), which is not in the Hugging Face cache "
            f"({_hf_storage_folder(repo_id)}), and HF_HUB_OFFLINE=1 forbids downloading it. "
            "Run once with network access (HF_HUB_OFFLINE unset) to cache it, or download the "
            f"file yourself and pass weights='/path/to/{filenames[0]}'; weights=False gives a "
            "randomly initialized network."
        )
    import timm

    for filename in filenames:
        try:
            path = huggingface_hub.hf_hub_download(
                repo_id, filename, revision=revision, library_name="timm",
                library_version=timm.__version__,
            )
        except RemoteEntryNotFoundError:
            continue  # the repo lacks this file: try the next format, as timm does
        except Exception as error:
            # Connection refused, DNS, hub errors (repo not found, 5xx), a body
            # shorter than announced (huggingface_hub's consistency check)...
            _hf_discard(repo_id)
            raise _error(
                f"Could not download {filename!r} of {what} from the Hugging Face repo "
                f"{repo_id!r} ({_hf_url(repo_id, filename, revision)}): "
                f"{type(error).__name__}: {error}. Check the network (or HF_ENDPOINT), or "
                f"download the file yourself and pass weights='/path/to/{filename}'."
            ) from error
        _hf_verify(path, repo_id, filename)
        return path
    raise _error(
        f"The Hugging Face repo {repo_id!r} of {what} has none of the weights files "
        f"{list(filenames)}; pass weights='/path/to/weights.safetensors'."
    )


def _safe_first(filename):
    """A weights file name with its safetensors alternative first, as timm tries them."""
    if filename.endswith(".safetensors"):
        return (filename,)
    if filename == "pytorch_model.bin":
        return _HF_WEIGHTS_FILES
    if filename.endswith(".bin"):
        return (filename[: -len(".bin")] + ".safetensors", filename)
    return (filename,)


def hub_model_config(hf_hub_id):
    """The timm model configuration of a Hugging Face hub repository.

    What ``timm.create_model("hf-hub:...")`` reads: the repository's
    ``config.json``, from the Hugging Face cache or downloaded into it, parsed
    by timm into an architecture name, its constructor arguments and its
    pretrained configuration (input size, mean/std, classes...). A fitted
    estimator keeps this dict, so that a saved model rebuilds its backbone
    without the hub (:func:`checked_hub_config` reads it back).

    Parameters
    ----------
    hf_hub_id : str
        ``"hf-hub:org/repo"`` or ``"org/repo"``, optionally ``@revision``.

    Returns
    -------
    config : dict
        ``"id"`` (``hf_hub_id`` with its ``hf-hub:`` prefix),
        ``"architecture"`` (a timm model name), ``"model_args"`` (the
        architecture's constructor arguments: the keywords of timm's own
        factory functions, such as ``checkpoint_path``, are left out, with a
        warning), ``"pretrained_cfg"`` (dict) and ``"revision"`` (the commit
        the file came from, where the cache says it).

    Raises
    ------
    BackboneWeightsError
        If ``config.json`` is not cached and cannot be downloaded
        (``HF_HUB_OFFLINE=1``, network or hub errors), or does not parse.
    """
    repo_id, revision = _split_hf_id(hf_hub_id)
    model_id = repo_id + (f"@{revision}" if revision else "")
    path = _hf_file(repo_id, ("config.json",), revision, f"backbone {HF_PREFIX + model_id!r}")
    with open(path, encoding="utf-8") as file:
        raw = json.load(file)
    from timm.models import _hub as timm_hub

    # timm's own parser, the one create_model("hf-hub:...") applies to the file.
    parse = getattr(timm_hub, "_parse_model_cfg", None)
    if parse is not None:
        pretrained_cfg, architecture, model_args = parse(
            raw, {"hf_hub_id": model_id, "source": "hf-hub"})
    else:  # another timm: its public loader reads the file just cached
        pretrained_cfg, architecture, model_args = timm_hub.load_model_config_from_hf(model_id)
    # The cache keeps each file under snapshots/<commit>/.
    commit = os.path.basename(os.path.dirname(path))
    return checked_hub_config({
        "id": HF_PREFIX + model_id,
        "architecture": architecture,
        "model_args": dict(model_args or {}),
        "pretrained_cfg": dict(pretrained_cfg),
        "revision": commit if re.fullmatch(r"[0-9a-f]{40}", commit) else (revision or "main"),
    }, HF_PREFIX + model_id, warn=True)


# The keywords of timm's factories (create_model, build_model_with_cfg and the
# feature wrapper's): they choose files to read and how to build, not the
# architecture, so a hub's config.json never sets them.
_FACTORY_KEYWORDS = frozenset({
    "pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "checkpoint_path",
    "cache_dir", "scriptable", "exportable", "no_jit", "features_only", "feature_cfg",
    "feature_cls", "out_indices", "flatten_sequential", "pretrained_strict",
    "pretrained_filter_fn", "kwargs_filter", "model_cfg", "model_cls", "variant",
})


def _factory_keywords():
    import inspect

    import timm
    from timm.models import build_model_with_cfg

    names = set(inspect.signature(timm.create_model).parameters)
    names |= set(inspect.signature(build_model_with_cfg).parameters)
    return (_FACTORY_KEYWORDS | names) - {"kwargs", "model_name"}


def _is_json(value):
    """JSON's values: what a config.json holds, and all a model file may pass to timm."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def checked_hub_config(config, name, *, warn=False):
    """An ``hf-hub:`` backbone's configuration, checked before timm builds from it.

    ``config`` is :func:`hub_model_config`'s dict, as the hub gave it or as
    a model file holds it. The architecture must be a timm model name, every
    value plain JSON, and only the architecture's constructor arguments
    reach timm: the keywords of timm's own factories are dropped (warned
    when ``warn``; a file edited to hold one loses it silently, as the model
    was never built with it).

    Raises
    ------
    ValueError
        If ``config`` is not such a dict, or belongs to another backbone.
    """
    import timm

    expected = {"id", "architecture", "model_args", "pretrained_cfg", "revision"}
    if not isinstance(config, dict) or set(config) != expected or not _is_json(config):
        raise ValueError(
            f"The hub configuration of backbone {name!r} must be a dict of plain values with "
            f"the keys {sorted(expected)}; got {config!r:.200}.")
    if config["id"] != name:
        raise ValueError(f"The hub configuration of backbone {config['id']!r} is not the one "
                         f"of backbone {name!r}.")
    architecture = config["architecture"]
    if not isinstance(architecture, str) or not timm.is_model(architecture):
        raise ValueError(f"The hub configuration of backbone {name!r} names the architecture "
                         f"{architecture!r}, which is no timm model.")
    if not isinstance(config["model_args"], dict) or not isinstance(
            config["pretrained_cfg"], dict):
        raise ValueError(f"The hub configuration of backbone {name!r} must hold model_args and "
                         "pretrained_cfg as dicts.")
    dropped = sorted(set(config["model_args"]) & _factory_keywords())
    if dropped and warn:
        import warnings

        warnings.warn(
            f"The Hugging Face config of backbone {name!r} sets {dropped}, which are keywords "
            "of timm's model factory rather than of the architecture; skvision leaves them "
            "out.", UserWarning, stacklevel=3)
    return {**config, "model_args": {key: value for key, value in config["model_args"].items()
                                     if key not in dropped}}


# --------------------------------------------------------------------------
# The torch hub.


def _torch_hub_file(url, what):
    """The torch hub cache's copy of ``url``, downloaded (and verified) if missing."""
    import torch

    filename = os.path.basename(url.split("?")[0])
    directory = os.path.join(torch.hub.get_dir(), "checkpoints")
    path = os.path.join(directory, filename)
    if os.path.isfile(path):
        return path
    if _offline():
        raise _error(
            f"{what} needs the weights file {filename!r} ({url}), which is not in the torch hub "
            f"cache, and HF_HUB_OFFLINE=1 forbids downloading it. Place the file at {path!r} "
            f"(the torch hub cache, set by TORCH_HOME), or pass weights='/path/to/{filename}'; "
            "weights=False gives a randomly initialized network."
        )
    os.makedirs(directory, exist_ok=True)
    # torchvision's names end in "-<sha256 prefix>.pth": torch checks it.
    match = torch.hub.HASH_REGEX.search(filename)
    try:
        # Writes "<path>.<uuid>.partial", moved into place only when complete
        # (and removed on any error), so no partial file takes the cache name.
        torch.hub.download_url_to_file(
            url, path, hash_prefix=match.group(1) if match else None, progress=True)
    except Exception as error:
        for leftover in glob.glob(glob.escape(path) + ".*.partial"):
            try:
                os.remove(leftover)
            except OSError:
                pass
        raise _error(
            f"Could not download {filename!r} for {what} from {url} "
            f"({type(error).__name__}: {error}). Check the network, or place the file at "
            f"{path!r} or pass weights='/path/to/{filename}'."
        ) from error
    try:
        _check_loads(path, filename)
    except Exception as error:
        os.remove(path)
        raise _error(
            f"The download of {filename!r} from {url} is corrupt or incomplete "
            f"({type(error).__name__}: {error}); it was removed from the cache ({path!r})."
        ) from error
    return path


# --------------------------------------------------------------------------
# Names to files.


def hub_weights_file(name):
    """The local path of a model's pretrained weights, downloaded on first use.

    Looks in the cache timm or torchvision itself uses, and downloads there
    (with a progress bar) when the file is missing, unless ``HF_HUB_OFFLINE=1``.
    A download is verified before it is returned; a cached file is returned
    without network access.

    Parameters
    ----------
    name : str
        A timm model name (``"resnet18"``, ``"resnet18.a1_in1k"``): its
        pretrained configuration's Hugging Face repository. An
        ``"hf-hub:org/repo[@revision]"`` id: that repository. A torchvision
        model name (``"mobilenet_v3_small"``,
        ``"fasterrcnn_mobilenet_v3_large_fpn"``): the file of its ``DEFAULT``
        weights, in the torch hub cache. timm names win over torchvision
        names, as in :func:`~skvision.nn.build_backbone`.

    Returns
    -------
    path : str
        A ``.safetensors`` or torch weights file.

    Raises
    ------
    BackboneWeightsError
        If the file is not cached and ``HF_HUB_OFFLINE=1`` (the message says
        which file to place where), the download fails (network, hub
        errors), or the downloaded file is corrupt or incomplete (it is then
        removed from the cache).
    ValueError
        If ``name`` is no timm, ``hf-hub:`` or torchvision name, or has no
        pretrained weights.
    """
    what = f"backbone {name!r}"
    if name.startswith(HF_PREFIX):
        repo_id, revision = _split_hf_id(name)
        filename = hub_model_config(name)["pretrained_cfg"].get("hf_hub_filename")
        return _hf_file(repo_id, _safe_first(filename or "pytorch_model.bin"), revision, what)
    import timm
    import torchvision

    if timm.is_model(name):
        cfg = timm.get_pretrained_cfg(name)
        if cfg is not None and cfg.hf_hub_id:
            repo_id, revision = _split_hf_id(cfg.hf_hub_id)
            filenames = _safe_first(cfg.hf_hub_filename or "pytorch_model.bin")
            return _hf_file(repo_id, filenames, revision, what)
        if cfg is not None and cfg.url:  # a few older timm weights live on plain URLs
            return _torch_hub_file(cfg.url, what)
        raise ValueError(f"timm has no pretrained weights for {name!r}.")
    if name in torchvision.models.list_models():
        default = torchvision.models.get_model_weights(name).DEFAULT
        return _torch_hub_file(default.url, what)
    raise ValueError(f"{name!r} is no timm, hf-hub: or torchvision model name.")
