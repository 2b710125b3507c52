"""Resumable training: the checkpoint of a ``fit`` and the rule that says which fit it is.

An estimator given ``checkpoint=<directory>`` writes its whole training
state there at the end of every epoch (the callback
``skvision._callbacks.TrainingCheckpoint``, through the helpers of
``skvision._net``), as one file replaced atomically: the state file
(``write_state`` / ``read_state``), skvision's model file container and
JSON codec holding plain data and tensors, never a pickle. ``fit`` called again
with that directory continues from the last finished epoch, and removes the
checkpoint once training ends, as Keras' ``BackupAndRestore`` does.

A checkpoint is only ever continued by the fit that wrote it: it holds a
fingerprint of that fit (the parameters that shape training, the number of
processes, and the data: its size, its targets and a hash of a sample of
rows), and its file is named by a hash of that fingerprint. So the fits of
a parallel search, which ``clone`` gives one ``checkpoint`` directory, each
write and resume their own file (the candidates differ in parameters, the
folds in data), and a fit with other parameters or data starts afresh
beside the states of other fits rather than mixing two trainings. A file
whose name matches but whose fingerprint does not (an edited or colliding
file) is refused with an error naming what differs.
"""

import hashlib
import json
import os
import zipfile

import numpy as np
import torch
from safetensors.torch import load as load_tensors

from ._persistence._archive import (
    FORMAT_VERSION,
    ModelFileError,
    _open_checked,
    _versions,
    _write_archive,
)
from ._persistence._codec import _Decoder, _Writer
from ._persistence._trust import _TrustPolicy

# --------------------------------------------------------------------------
# The state file: the container and JSON codec of skvision's model files
# (skvision._persistence), holding plain data and tensors, no estimator.

STATE_FORMAT = "skvision-training-state"


def write_state(path, state):
    """Write a training state (dicts, lists, numbers, strings, arrays, tensors) atomically.

    The same zip layout as :func:`skvision.save`, uncompressed (written every
    epoch): ``metadata.json``, ``arrays/<n>.npy`` and ``tensors.safetensors``.
    """
    writer = _Writer()
    document = {"format": STATE_FORMAT, "format_version": FORMAT_VERSION, **_versions(),
                "state": writer.encode(state, "state")}
    _write_archive(path, document, writer, compression=zipfile.ZIP_STORED)


def read_state(path):
    """The training state :func:`write_state` wrote to ``path``; never unpickles."""
    path = os.fspath(path)

    def read(archive):
        document = json.loads(archive.read("metadata.json"))
        if not isinstance(document, dict) or document.get("format") != STATE_FORMAT:
            raise ModelFileError(f"{path!r} is not a skvision training checkpoint.")
        tensors = load_tensors(archive.read("tensors.safetensors"))
        # No class is trusted: a state holds plain data only.
        return _Decoder(archive, tensors, _TrustPolicy({})).decode(document["state"])

    return _open_checked(path, "skvision training checkpoint", read)


# --------------------------------------------------------------------------
# Which fit a state file belongs to.

# A fit's state file: training_state-<16 hex digits of its fingerprint's hash>.skvstate
STATE_PREFIX, STATE_SUFFIX = "training_state-", ".skvstate"

# Parameters that do not change what training computes (or that a resumed
# fit may change: another device after a preemption, a new accelerator
# object for the same number of processes).
UNCHECKED_PARAMETERS = ("verbose", "checkpoint", "device", "accelerator")

# Images hashed: evenly spaced rows, first and last included.
HASHED_ROWS = 16


def state_name(fingerprint):
    """The file name of the state of the fit of ``fingerprint``."""
    digest = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()
    return f"{STATE_PREFIX}{digest[:16]}{STATE_SUFFIX}"


def state_path(directory, fingerprint):
    return os.path.join(os.fspath(directory), state_name(fingerprint))


def state_files(directory):
    """The names of the fits' state files in ``directory``, sorted (none if it does not exist)."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted(name for name in names
                  if name.startswith(STATE_PREFIX) and name.endswith(STATE_SUFFIX))


def _describe(value):
    """A JSON value standing for a parameter's value, alike in every process and run."""
    from sklearn.base import BaseEstimator
    from skorch.callbacks import Callback

    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_describe(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _describe(item) for key, item in value.items()}
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    if isinstance(value, BaseEstimator):
        return {type(value).__qualname__: _describe(value.get_params(deep=False))}
    if isinstance(value, Callback):
        return type(value).__qualname__
    if isinstance(value, np.ndarray):
        return _describe(value.tolist())
    text = repr(value)
    if " at 0x" in text:  # a function, a lambda, an object without its own repr
        name = getattr(value, "__qualname__", type(value).__qualname__)
        return f"{type(value).__module__}.{name}"
    return text


def _hash_tensors(digest, values):
    for value in values:
        if isinstance(value, dict):
            _hash_tensors(digest, [value[key] for key in sorted(value)])
        elif isinstance(value, (list, tuple)):
            _hash_tensors(digest, value)
        elif isinstance(value, torch.Tensor):
            digest.update(str((value.dtype, tuple(value.shape))).encode())
            digest.update(value.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())


def data_fingerprint(dataset):
    """Size, image shape, targets' shape and a hash of a sample of ``dataset``'s rows.

    The hash covers evenly spaced images (their file paths when the images
    are files: all of them), the targets of those rows (all targets when
    there are at most a million numbers) and the weights.
    """
    images, targets = dataset.images, dataset.y
    n_samples = len(images)
    rows = np.unique(np.linspace(0, n_samples - 1, min(n_samples, HASHED_ROWS)).astype(int))
    digest = hashlib.sha256()
    if hasattr(images, "paths"):
        digest.update("\n".join(map(str, images.paths)).encode())
    else:
        _hash_tensors(digest, [images.read(rows)])
    if isinstance(targets, torch.Tensor):
        _hash_tensors(digest, [targets if targets.numel() <= 1_000_000 else targets[rows]])
        target_shape = list(targets.shape)
    else:
        _hash_tensors(digest, [targets[row] for row in rows])
        target_shape = [len(targets)]
    if dataset.weights is not None:
        _hash_tensors(digest, [dataset.weights])
    return {"n_samples": n_samples, "image_shape": _describe(images.image_shape),
            "target_shape": target_shape, "sample_hash": digest.hexdigest()}


def fingerprint(estimator, dataset, n_processes):
    """What a checkpoint must match to be continued by ``estimator``'s fit on ``dataset``."""
    params = {name: _describe(value) for name, value in estimator.get_params(deep=False).items()
              if name not in UNCHECKED_PARAMETERS}
    classes = getattr(estimator, "classes_", None)
    return {
        "estimator": type(estimator).__qualname__,
        "parameters": params,
        "n_processes": n_processes,
        "data": {**data_fingerprint(dataset),
                 "classes": None if classes is None else [str(label) for label in classes]},
    }


def _same(first, second):
    return json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)


def _short(value):
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."


def _differences(saved, current):
    """What differs between two fingerprints, in words."""
    if saved.get("estimator") != current["estimator"]:
        return [f"it was written by a {saved.get('estimator')}, this is a "
                f"{current['estimator']}"]
    differences = []
    saved_params, params = saved.get("parameters", {}), current["parameters"]
    changed = [name for name in sorted(set(saved_params) | set(params))
               if not _same(saved_params.get(name), params.get(name))]
    if changed:
        differences.append("other parameters: " + ", ".join(
            f"{name}={_short(saved_params.get(name))} there, {_short(params.get(name))} here"
            for name in changed))
    if saved.get("n_processes") != current["n_processes"]:
        differences.append(f"another number of processes: {saved.get('n_processes')} there, "
                           f"{current['n_processes']} here")
    saved_data, data = saved.get("data", {}), current["data"]
    changed = [key for key in data if key != "sample_hash"
               and not _same(saved_data.get(key), data[key])]
    if changed:
        differences.append("other data: " + ", ".join(
            f"{key} {_short(saved_data.get(key))} there, {_short(data[key])} here"
            for key in changed))
    elif saved_data.get("sample_hash") != data["sample_hash"]:
        differences.append("other data: as many images and targets of the same shapes, but "
                           "other values (a hash of a sample of rows differs)")
    return differences


def read_checkpoint(directory, current):
    """The training state of the fit of fingerprint ``current`` in ``directory``, or None.

    Raises ValueError when the file of that name was written by a fit with
    another fingerprint (naming what differs) or is not readable.
    """
    path = state_path(directory, current)
    if not os.path.exists(path):
        return None
    document = read_state(path)
    differences = _differences(document.get("fingerprint", {}), current)
    if differences:
        raise ValueError(
            f"The checkpoint {path!r} belongs to another fit, which it "
            "continues only with the same parameters and data; here it found "
            + "; ".join(differences) + ". Fit with what wrote it to resume, or delete the "
            "directory (or pass another checkpoint) to start afresh."
        )
    return document


def write_checkpoint(directory, document):
    """Write ``document`` (fingerprint and training state) to ``directory``, atomically."""
    path = state_path(directory, document["fingerprint"])
    for attempt in range(3):
        os.makedirs(directory, exist_ok=True)
        try:
            write_state(path, document)
            return
        except FileNotFoundError:
            # Another fit sharing the directory finished and removed it, empty,
            # between makedirs and the write: make it again.
            if attempt == 2:
                raise


def remove_checkpoint(directory, fingerprint):
    """Delete the fit's own state file, and ``directory`` too when nothing else is left in it."""
    path = state_path(directory, fingerprint)
    if os.path.exists(path):
        os.unlink(path)
    try:
        os.rmdir(directory)
    except OSError:  # other files of the user's, or already gone
        pass
