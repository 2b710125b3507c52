"""Safe saving and loading of fitted estimators: ``skvision.save`` / ``skvision.load``.

A saved model is one zip file:

* ``metadata.json``: the format version, the skvision / torch / sklearn
  versions that wrote it, and the estimator as JSON — its class (from an
  allow-list), parameters and fitted attributes;
* ``arrays/<n>.npy``: numpy arrays, read with ``allow_pickle=False``;
* ``tensors.safetensors``: every torch tensor (network weights, optimizer
  state, Gram matrices), read with safetensors;
* XGBoost models in XGBoost's own binary JSON format.

Loading never unpickles: every object is rebuilt from an allowed class and
plain data, and the networks from the estimator's own parameters before
their weights are loaded. Writing goes to a temporary file in the target's
folder, is flushed to disk and then renamed over the target, so a failure
mid-write leaves the previous file as it was and no partial file behind.
"""

import inspect
import io
import json
import math
import os
import sys
import tempfile
import warnings
import zipfile

import numpy as np
import pandas as pd
import sklearn
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

__all__ = ["load", "save"]

FORMAT = "skvision-model"
FORMAT_VERSION = 1


def _trusted_classes():
    """The classes a file may name: skvision's estimators and networks, XGBoost's models.

    Built from the classes themselves: every public scikit-learn estimator
    and torch module class defined in skvision's modules (all are imported
    with the package), so a new one is loadable without a list to keep.
    """
    import xgboost
    from sklearn.base import BaseEstimator

    classes, pending = [xgboost.XGBClassifier, xgboost.XGBRegressor], [
        BaseEstimator, torch.nn.Module]
    while pending:
        for cls in pending.pop().__subclasses__():
            pending.append(cls)
            if cls.__module__.split(".")[0] == "skvision" and not cls.__name__.startswith("_"):
                classes.append(cls)
    return {f"{cls.__module__}.{cls.__qualname__}": cls for cls in classes}


def _class_path(obj):
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


# --------------------------------------------------------------------------
# Encoding: Python objects → JSON with references to arrays and tensors.


class _Writer:
    def __init__(self):
        self.arrays = {}
        self.tensors = {}

    def array(self, value):
        name = f"arrays/{len(self.arrays)}.npy"
        buffer = io.BytesIO()
        np.save(buffer, value, allow_pickle=False)
        self.arrays[name] = buffer.getvalue()
        return {"__array__": name}

    def tensor(self, value):
        name = str(len(self.tensors))
        # A copy: safetensors refuses tensors that share memory.
        self.tensors[name] = value.detach().cpu().clone().contiguous()
        return {"__tensor__": name}

    def encode(self, value, where):
        import xgboost
        from sklearn.base import BaseEstimator
        from skorch import NeuralNet
        from skorch.callbacks import Callback

        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, os.PathLike):  # a ``checkpoint`` directory: loads as a str
            return os.fspath(value)
        if isinstance(value, (int, np.integer)):
            return int(value)
        if isinstance(value, (float, np.floating)):
            value = float(value)
            return value if math.isfinite(value) else {"__float__": repr(value)}
        if isinstance(value, (list, tuple)) and value and all(
                isinstance(entry[-1] if isinstance(entry, tuple) else entry, Callback)
                for entry in value):
            # A ``callbacks`` parameter: code that only runs in training, like
            # an augment callable.
            warnings.warn(
                f"{where} holds skorch callbacks, which cannot be saved without pickle; it "
                "is saved as None (they are only used in training).", UserWarning, stacklevel=4,
            )
            return None
        if isinstance(value, tuple):
            return {"__tuple__": [self.encode(item, where) for item in value]}
        if isinstance(value, list):
            return [self.encode(item, where) for item in value]
        if isinstance(value, dict):
            if all(isinstance(key, str) for key in value):
                return {"__dict__": {key: self.encode(item, f"{where}.{key}")
                                     for key, item in value.items()}}
            return {"__items__": [[self.encode(key, where), self.encode(item, where)]
                                  for key, item in value.items()]}
        if isinstance(value, np.ndarray):
            if value.dtype == object:
                if all(isinstance(item, str) for item in value.ravel()):
                    return {"__strings__": value.tolist(), "shape": list(value.shape)}
                raise TypeError(f"{where}: cannot save an object array of non-strings safely.")
            return self.array(value)
        if isinstance(value, torch.Tensor):
            return self.tensor(value)
        if isinstance(value, type) and issubclass(value, torch.nn.Module):
            # A user's network class (``backbone=MyNet``): its import path,
            # imported at load only when skvision's or listed in ``trusted``.
            return {"__class__": f"{value.__module__}.{value.__qualname__}"}
        if isinstance(value, pd.DataFrame):
            return {"__dataframe__": {
                "columns": [str(column) for column in value.columns],
                "values": [self.encode(value[column].to_numpy(), where)
                           for column in value.columns]}}
        if isinstance(value, np.random.Generator):
            return {"__generator__": self.encode(value.bit_generator.state, where)}
        if isinstance(value, np.random.RandomState):
            return {"__random_state__": self.encode(value.get_state(), where)}
        if isinstance(value, (xgboost.XGBClassifier, xgboost.XGBRegressor)):
            params = {key: item for key, item in value.get_params().items()
                      if key != "callbacks"}
            raw = np.frombuffer(bytes(value.get_booster().save_raw(raw_format="ubj")),
                                dtype=np.uint8)
            return {"__xgboost__": _class_path(value), "params": self.encode(params, where),
                    "raw": self.array(raw)}
        if isinstance(value, NeuralNet):
            return {"__net__": self.encode({
                "module": value.module_.state_dict(),
                "optimizer": value.optimizer_.state_dict(),
                "history": _plain_history(value.history),
                # The shuffling generator's position, so training continues as it would have.
                "generator": getattr(value, "generator", None) and value.generator.get_state(),
            }, where)}
        if isinstance(value, torch.nn.Module):
            return {"__module__": self.encode(value.state_dict(), where)}
        accelerate = sys.modules.get("accelerate")
        if accelerate is not None and isinstance(value, accelerate.Accelerator):
            # The processes and devices of the run that trained: the loaded
            # model predicts in one process, like any other.
            return None
        if isinstance(value, BaseEstimator):
            if _class_path(value) not in _trusted_classes():
                raise TypeError(f"{where}: {_class_path(value)} is not a skvision estimator and "
                                "cannot be saved safely.")
            state = value.__getstate__()
            for name in value._get_param_names():
                if isinstance(state.get(name), torch.nn.Module):
                    raise TypeError(
                        f"{where}.{name} is a torch module instance, whose constructor "
                        "arguments are unknown: it cannot be saved without pickle. Pass its "
                        f"class and arguments instead: {name}={type(state[name]).__name__}, "
                        f"{name}__<argument>=value."
                    )
            return {"__estimator__": _class_path(value),
                    "state": self.encode(state, f"{where}.{type(value).__name__}")}
        if callable(value):
            warnings.warn(
                f"{where} is a callable ({value!r}), which cannot be saved without pickle; it "
                "is saved as None (it is only used in training).", UserWarning, stacklevel=4,
            )
            return None
        raise TypeError(f"{where}: cannot save a {type(value).__name__} safely.")


def _plain_history(history):
    """skorch's History as plain rows (batch records dropped: they are per-step noise)."""
    return [{key: value for key, value in row.items() if key != "batches"} for row in history]


# --------------------------------------------------------------------------
# Decoding: JSON → objects, rebuilding networks from the estimators' params.


class _Reader:
    def __init__(self, archive, tensors, trusted, user_trusted=()):
        self.archive = archive
        self.tensors = tensors
        self.trusted = trusted
        self.user_trusted = frozenset(user_trusted)
        self.nets = []

    def array(self, name):
        with self.archive.open(name) as handle:
            return np.load(io.BytesIO(handle.read()), allow_pickle=False)

    def decode(self, value):
        if isinstance(value, list):
            return [self.decode(item) for item in value]
        if not isinstance(value, dict):
            return value
        tag = next((key for key in value if key.startswith("__")), None)
        if tag == "__float__":
            return float(value[tag])
        if tag == "__class__":
            return self._trusted(value[tag])
        if tag == "__tuple__":
            return tuple(self.decode(item) for item in value[tag])
        if tag == "__dict__":
            return {key: self.decode(item) for key, item in value[tag].items()}
        if tag == "__items__":
            return {self.decode(key): self.decode(item) for key, item in value[tag]}
        if tag == "__strings__":
            return np.array(value[tag], dtype=object).reshape(value["shape"])
        if tag == "__array__":
            return self.array(value[tag])
        if tag == "__tensor__":
            return self.tensors[value[tag]]
        if tag == "__dataframe__":
            frame = value[tag]
            return pd.DataFrame({column: self.decode(values) for column, values in
                                 zip(frame["columns"], frame["values"])})
        if tag == "__generator__":
            state = self.decode(value[tag])
            generator = np.random.Generator(getattr(np.random, state["bit_generator"])())
            generator.bit_generator.state = state
            return generator
        if tag == "__random_state__":
            random_state = np.random.RandomState()
            random_state.set_state(self.decode(value[tag]))
            return random_state
        if tag == "__xgboost__":
            model = self._trusted(value[tag])(**self.decode(value["params"]))
            model.load_model(bytearray(self.array(value["raw"]["__array__"]).tobytes()))
            return model
        if tag in ("__net__", "__module__"):
            # Rebuilt once the owning estimator's parameters are known.
            return _Pending(tag, self.decode(value[tag]))
        if tag == "__estimator__":
            cls = self._trusted(value[tag])
            estimator = cls.__new__(cls)
            state = self.decode(value["state"])
            pending = {key: item for key, item in state.items() if isinstance(item, _Pending)}
            for key in pending:
                state.pop(key)
            # Every sklearn estimator has __setstate__ (it checks the sklearn version).
            estimator.__setstate__(state)
            # A parameter added since the file was written takes its default.
            for name, parameter in inspect.signature(cls.__init__).parameters.items():
                if parameter.kind in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL):
                    continue  # **backbone_arguments: saved as the attributes they set
                if name != "self" and not hasattr(estimator, name):
                    setattr(estimator, name, parameter.default)
            for key, item in pending.items():
                setattr(estimator, key, _rebuild(estimator, key, item))
            return estimator
        raise ValueError(f"Unknown entry {sorted(value)[:3]} in the model file.")

    def _trusted(self, path):
        if path in self.trusted:
            return self.trusted[path]
        if path in self.user_trusted:
            return _import_class(path)
        raise ValueError(
            f"The model file names the type {path!r}, which is not one skvision loads: "
            "refusing to load it (skvision's estimators and networks and XGBoost's models are "
            f"allowed). If you trust the file and that class, pass trusted=[{path!r}]."
        )


def _import_class(path):
    """Import ``module.Qualified.Name``: a class the caller listed in ``trusted``."""
    import importlib

    module_name, _, qualname = path.rpartition(".")
    while module_name:
        try:
            target = importlib.import_module(module_name)
            break
        except ModuleNotFoundError:  # a nested class: the module is shorter
            module_name, _, outer = module_name.rpartition(".")
            qualname = f"{outer}.{qualname}"
    else:
        raise ValueError(f"Cannot import the trusted type {path!r}.")
    for part in qualname.split("."):
        target = getattr(target, part)
    if not (isinstance(target, type) and issubclass(target, torch.nn.Module)):
        raise ValueError(f"The trusted type {path!r} is not a torch.nn.Module subclass.")
    return target


class _Pending:
    def __init__(self, kind, payload):
        self.kind, self.payload = kind, payload


def _load_device(estimator):
    from ._torch import resolve_device

    device = getattr(estimator, "device_", "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        return "cpu"  # a model fitted on a GPU loads on a CPU-only machine
    if str(device) == "mps" and not torch.backends.mps.is_available():
        return "cpu"
    return resolve_device(device)


def _rebuild(estimator, key, pending):
    """Rebuild a network attribute: the estimator's own ``_rebuild_network`` hook."""
    device = _load_device(estimator)
    if hasattr(estimator, "device_"):
        estimator.device_ = device
    if not hasattr(estimator, "_rebuild_network"):
        raise ValueError(f"Unknown network attribute {key!r} in the model file.")
    return estimator._rebuild_network(key, pending.payload, device)


# --------------------------------------------------------------------------
# Public functions.


def _versions():
    from ._version import __version__

    return {"skvision": __version__, "torch": torch.__version__,
            "sklearn": sklearn.__version__}


def save(estimator, path):
    """Save a fitted skvision estimator to one file, without pickle.

    Parameters
    ----------
    estimator : skvision estimator
        Fitted or not; parameters and fitted attributes are saved, network
        weights as safetensors. An ``augment=`` callable that is not an
        ImageAugmenter is saved as None (with a warning): it only matters in
        training. So are skorch ``callbacks`` and an ``accelerator``: it
        belongs to the processes that trained (pass a new one to train on
        with accelerate).
    path : str or path-like
        The file to write (conventionally ``*.skv``). It is replaced
        atomically: on any failure the previous file stays as it was.

    Examples
    --------
    >>> import os, tempfile
    >>> from skvision import CNNClassifier, load, save
    >>> from skvision.datasets import load_digit_images
    >>> X, y = load_digit_images(return_X_y=True)
    >>> clf = CNNClassifier(filters=(8,), epochs=1, random_state=0).fit(X[:100], y[:100])
    >>> path = os.path.join(tempfile.mkdtemp(), "digits.skv")
    >>> save(clf, path)
    >>> (load(path).predict(X[:5]) == clf.predict(X[:5])).all()
    np.True_
    """
    writer = _Writer()
    document = {"format": FORMAT, "format_version": FORMAT_VERSION, **_versions(),
                "estimator": writer.encode(estimator, type(estimator).__name__)}
    _write_archive(path, document, writer)


def _write_archive(path, document, writer, *, compression=zipfile.ZIP_DEFLATED):
    """Write ``document`` (JSON), ``writer``'s arrays and tensors to the zip ``path``, atomically.

    A temporary file in the target's folder is written, flushed to disk and
    renamed over the target (then the folder's entry is flushed too): a
    failure at any point leaves the previous file as it was and no
    temporary file behind.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    handle = tempfile.NamedTemporaryFile(dir=folder, prefix=".skvision-", suffix=".tmp",
                                         delete=False)
    try:
        with handle, zipfile.ZipFile(handle, "w", compression=compression) as archive:
            archive.writestr("metadata.json", json.dumps(document, allow_nan=False))
            for name, data in writer.arrays.items():
                archive.writestr(name, data)
            archive.writestr("tensors.safetensors", save_tensors(writer.tensors))
        with open(handle.name, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(handle.name, path)
    except BaseException:
        if os.path.exists(handle.name):
            os.unlink(handle.name)
        raise
    _sync_folder(folder)


def _sync_folder(folder):
    """Flush a folder's entries (a rename) to disk, where the system allows it."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:  # Windows opens no folder
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def load(path, *, trusted=None):
    """Load an estimator written by :func:`save`.

    Parameters
    ----------
    path : str or path-like
        A file written by :func:`save`.
    trusted : list of str, default=None
        Import paths of classes outside skvision that the file may name,
        e.g. ``["mypackage.MyNet"]`` for a model trained with
        ``backbone=MyNet``. Only these are imported (and then built with
        the saved arguments); a file naming any other type is refused
        before anything is built. Nothing is ever unpickled.

    Returns
    -------
    estimator : skvision estimator
        Ready to predict; networks are on the device they were fitted on when
        it exists here, else on the CPU.

    Raises
    ------
    ValueError
        The file is not a skvision model, is truncated or altered, names a
        type skvision does not load and ``trusted`` does not list, or comes
        from a newer format version.

    Examples
    --------
    >>> import os, tempfile
    >>> from skvision import BoostedTreesClassifier, load, save
    >>> from sklearn.datasets import load_digits
    >>> X, y = load_digits(return_X_y=True)
    >>> model = BoostedTreesClassifier(n_estimators=20, random_state=0).fit(X, y)
    >>> path = os.path.join(tempfile.mkdtemp(), "trees.skv")
    >>> save(model, path)
    >>> (load(path).predict_proba(X) == model.predict_proba(X)).all()
    np.True_
    """
    path = os.fspath(path)
    if isinstance(trusted, str) or not all(isinstance(name, str) for name in trusted or ()):
        raise TypeError(f"trusted must be a list of class import paths (str); got {trusted!r}.")
    try:
        with zipfile.ZipFile(path) as archive:
            if archive.testzip() is not None:
                raise zipfile.BadZipFile("a member's checksum does not match")
            document = json.loads(archive.read("metadata.json"))
            if not isinstance(document, dict) or document.get("format") != FORMAT:
                raise ValueError(f"{path!r} is not a skvision model file.")
            version = document.get("format_version")
            if not isinstance(version, int) or version > FORMAT_VERSION:
                raise ValueError(
                    f"{path!r} was written by skvision {document.get('skvision')} in model format "
                    f"{version}; this skvision ({_versions()['skvision']}) reads format "
                    f"{FORMAT_VERSION} and older. Upgrade skvision to load it."
                )
            saved_major = str(document.get("skvision", "0")).split(".")[0]
            current_major = _versions()["skvision"].split(".")[0]
            if saved_major != current_major:
                warnings.warn(
                    f"{path!r} was written by skvision {document.get('skvision')}; this is "
                    f"{_versions()['skvision']}. Check its predictions.", UserWarning,
                    stacklevel=2,
                )
            tensors = load_tensors(archive.read("tensors.safetensors"))
            reader = _Reader(archive, tensors, _trusted_classes(), trusted or ())
            return reader.decode(document["estimator"])
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, EOFError) as error:
        raise ValueError(
            f"{path!r} is not a readable skvision model file (truncated or altered?): {error}"
        ) from None


# --------------------------------------------------------------------------
# Training state (resumable fits): plain data and tensors, no estimator.

STATE_FORMAT = "skvision-training-state"


def write_state(path, state):
    """Write a training state (dicts, lists, numbers, strings, arrays, tensors) atomically.

    The same zip layout as :func:`save`, uncompressed (written every
    epoch): ``metadata.json``, ``arrays/<n>.npy`` and ``tensors.safetensors``.
    """
    writer = _Writer()
    document = {"format": STATE_FORMAT, "format_version": FORMAT_VERSION, **_versions(),
                "state": writer.encode(state, "state")}
    _write_archive(path, document, writer, compression=zipfile.ZIP_STORED)


def read_state(path):
    """The training state :func:`write_state` wrote to ``path``; never unpickles."""
    try:
        with zipfile.ZipFile(path) as archive:
            document = json.loads(archive.read("metadata.json"))
            if not isinstance(document, dict) or document.get("format") != STATE_FORMAT:
                raise ValueError(f"{os.fspath(path)!r} is not a skvision training checkpoint.")
            tensors = load_tensors(archive.read("tensors.safetensors"))
            # No class is trusted: a state holds plain data only.
            return _Reader(archive, tensors, {}).decode(document["state"])
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, EOFError) as error:
        raise ValueError(
            f"{os.fspath(path)!r} is not a readable skvision training checkpoint: {error}"
        ) from None
