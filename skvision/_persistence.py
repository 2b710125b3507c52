"""Safe saving and loading of fitted models: ``skvision.save`` / ``skvision.load``.

A saved model is one zip file:

* ``metadata.json``: the format version, the skvision / torch / sklearn
  versions that wrote it, and the object as JSON: each skvision estimator
  (and XGBoost model) as its class (from an allow-list), parameters and
  fitted attributes;
* ``arrays/<n>.npy``: numpy arrays, read with ``allow_pickle=False``;
* ``tensors.safetensors``: every torch tensor (network weights, optimizer
  state, Gram matrices), read with safetensors;
* ``sklearn/<n>.skops``: the scikit-learn parts (a ``Pipeline``, a
  ``GridSearchCV``, a ``StandardScaler``...) in skops' format
  (:mod:`skops.io`, the ecosystem's format without pickle);
* XGBoost models in XGBoost's own binary JSON format.

Whole object graphs (format 2). ``save`` walks the object: a skvision
estimator is encoded in skvision's own format; anything else (scikit-learn
meta-estimators and estimators) goes through ``skops.io.dumps`` after each
skvision estimator inside it, wherever it sits (a pipeline step, a search's
``best_estimator_``, a calibrated classifier's internals, an object array of
``cv_results_``), is replaced by an :class:`_EstimatorRef` placeholder
holding its index. The skvision estimators are stored beside the skops
member in the same JSON (``{"__skops__": member, "refs": [...]}``), so
either kind may nest inside the other. Loading puts them back in place.
Design choices: skops' custom type hooks are private API and process-wide
(registering one changes every ``skops.io.dumps`` of the process), the
placeholders are not; and skops cannot save torch networks or skorch nets,
which skvision's own format rebuilds from parameters plus safetensors.

Loading never unpickles and checks the whole file before it builds
anything: every type the JSON names (estimator, network and callback
classes), every type of each skops member (``skops.io.get_untrusted_types``)
and every array's header (an object array is a pickle payload) must be
allowed, and the zip may hold no other member; else a ``ValueError`` names
what was refused. ``load(trusted=[...])`` extends the allow-lists by type
names: a user's torch module or skorch callback class, types in the
scikit-learn part that skops does not trust by default. Networks are
rebuilt from the estimators' own parameters (``_rebuild_network``, with no
pretrained weights read: the file has the trained ones) on the device they
were fitted on where it exists here, else the CPU
(:func:`skvision._torch.loadable_device`). Writing goes to a temporary file
in the target's folder, is flushed to disk and then renamed over the target,
so a failure mid-write leaves the previous file as it was and no partial
file behind.
"""

import copy
import functools
import inspect
import io
import json
import math
import os
import pathlib
import re
import struct
import sys
import tempfile
import types
import warnings
import zipfile
import zlib

import numpy as np
import pandas as pd
import sklearn
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from ._net import network_state
from ._torch import loadable_device, restore_runtime
from .nn._hub import BackboneWeightsError

__all__ = ["ModelFileError", "load", "save"]


class ModelFileError(ValueError):
    """A model or checkpoint file that :func:`skvision.load` refuses.

    The file is not a skvision file, is truncated, corrupt or altered,
    declares more data than it holds or than a model needs, holds a pickle
    payload, or names a type that is not allowed (``trusted=``). The
    message names the file and, where one is at fault, the member. A
    subclass of ``ValueError``.

    See Also
    --------
    load : Load a model file.

    Examples
    --------
    >>> import os, tempfile
    >>> import skvision
    >>> path = os.path.join(tempfile.mkdtemp(), "notes.skv")
    >>> with open(path, "w") as file:
    ...     _ = file.write("not a model")
    >>> try:
    ...     skvision.load(path)
    ... except skvision.ModelFileError as error:
    ...     print(type(error).__name__, isinstance(error, ValueError))
    ModelFileError True
    """


# Bounds checked from the zip directory before any member is inflated.
# Tensors are stored uncompressed, so a member of a genuine file inflates at
# most by deflate's ratio on JSON and small arrays; a zip bomb by ~1000:1.
_MAX_INFLATION = 100
_MAX_MEMBER_BYTES = 64 * 2**30
_MAX_METADATA_BYTES = 256 * 2**20
# What a load error can be raised as by the libraries a file goes through.
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, struct.error, KeyError, IndexError, EOFError,
                json.JSONDecodeError, UnicodeDecodeError, SafetensorError, TypeError,
                AttributeError, OverflowError, MemoryError,
                RuntimeError)  # torch's load_state_dict on tensors of other shapes


def _check_member_sizes(archive, path):
    """Refuse a member that declares more bytes than any model file holds, before inflating it."""
    for info in archive.infolist():
        limit = (_MAX_METADATA_BYTES if info.filename == "metadata.json"
                 else _MAX_MEMBER_BYTES)
        if (info.file_size > limit
                or info.file_size > _MAX_INFLATION * info.compress_size + 2**20):
            raise ModelFileError(
                f"{path!r}: its member {info.filename!r} declares {info.file_size:,} bytes "
                f"from {info.compress_size:,} compressed, more than a skvision file holds: "
                "refusing to inflate it (the file is altered or crafted)."
            )


def _open_checked(path, kind, read):
    """Run ``read(archive)`` on the zip at ``path``; any failure becomes a ModelFileError."""
    try:
        with zipfile.ZipFile(path) as archive:
            _check_member_sizes(archive, path)
            return read(archive)
    except ModelFileError:
        raise
    except ValueError as error:
        raise ModelFileError(f"{path!r}: {error}") from error
    except _READ_ERRORS as error:
        raise ModelFileError(
            f"{path!r} is not a readable {kind} (truncated or altered?): "
            f"{type(error).__name__}: {error}"
        ) from error

FORMAT = "skvision-model"
# 1: one skvision estimator. 2: any scikit-learn object graph (skops
# members), skorch callbacks by class and parameters, torch.device and path values.
# 3: an hf-hub: backbone's hub configuration kept (hub_config_), so loading
# builds it without the hub.
FORMAT_VERSION = 3


def _trusted_classes():
    """The classes a file may name: skvision's estimators and networks, XGBoost's models.

    Built from the classes themselves: every public scikit-learn estimator
    and torch module class defined in skvision's modules (all are imported
    with the package or here), so a new one is loadable without a list to keep.
    """
    import xgboost
    from sklearn.base import BaseEstimator

    # The package imports every estimator module but this one (its
    # transformers are imported where used): without it, a fresh process
    # that loads a pipeline of ImageFlattener refused the file.
    from . import preprocessing  # noqa: F401

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


class _EstimatorRef:
    """Stands for the skvision estimator ``index`` in a scikit-learn part saved with skops."""

    def __init__(self, index):
        self.index = index


_REF_PATH = f"{_EstimatorRef.__module__}.{_EstimatorRef.__qualname__}"


@functools.cache
def _sklearn_trusted():
    """Types skops does not trust by default that a scikit-learn part may hold.

    scikit-learn's own plain classes and metric functions that the
    meta-estimators skvision saves keep as fitted state: search scorers and
    their score functions, cross-validation splitters, ``Bunch`` (voting,
    stacking), calibration's internals; and skvision's placeholder.
    """
    import sklearn.model_selection as model_selection
    from sklearn.metrics import get_scorer, get_scorer_names

    names = {
        _REF_PATH,
        "sklearn.utils._bunch.Bunch",
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration",
        "sklearn.metrics._scorer._PassthroughScorer",
        "sklearn.metrics._scorer._Scorer",
        "sklearn.metrics._scorer._MultimetricScorer",
    }
    for name in model_selection.__all__:
        splitter = getattr(model_selection, name, None) if "Halving" not in name else None
        if isinstance(splitter, type) and splitter.__module__ == "sklearn.model_selection._split":
            names.add(f"{splitter.__module__}.{splitter.__qualname__}")
    for name in get_scorer_names():
        function = getattr(get_scorer(name), "_score_func", None)
        if function is not None:
            names.add(f"{function.__module__}.{function.__name__}")
    return frozenset(names)


# Values the graph walks never enter: leaves, or objects skops saves itself.
_LEAVES = (type(None), bool, int, float, complex, str, bytes, np.generic, type,
           types.FunctionType, types.BuiltinFunctionType, types.ModuleType, torch.Tensor,
           torch.nn.Module, pd.DataFrame, pd.Series, pd.Index, np.random.Generator,
           np.random.RandomState)


def _map_children(value, visit):
    """``value`` with ``visit`` applied to its children: itself when none changed, else a copy.

    Children are the items of lists, tuples, dicts and object arrays and the
    attributes (``__dict__``) of other objects; leaves have none.
    """
    if isinstance(value, _LEAVES):
        return value
    if isinstance(value, np.ndarray):
        if value.dtype != object:
            return value
        items = [visit(item) for item in np.ma.getdata(value).ravel()]
        if all(new is old for new, old in zip(items, np.ma.getdata(value).ravel())):
            return value
        copied = value.copy()
        flat = np.ma.getdata(copied).reshape(-1)
        for index, item in enumerate(items):
            flat[index] = item  # one by one: a tuple item stays one object
        return copied
    if isinstance(value, (list, tuple)):
        items = [visit(item) for item in value]
        if all(new is old for new, old in zip(items, value)):
            return value
        if type(value) is tuple:
            return tuple(items)
        if isinstance(value, tuple):  # a named tuple
            return type(value)(*items)
        copied = copy.copy(value)
        copied[:] = items
        return copied
    if isinstance(value, dict):
        changed = {key: new for key, item in value.items() if (new := visit(item)) is not item}
        if not changed:
            return value
        copied = copy.copy(value)
        copied.update(changed)
        return copied
    attributes = getattr(value, "__dict__", None)
    if not isinstance(attributes, dict):
        return value
    changed = {key: new for key, item in attributes.items() if (new := visit(item)) is not item}
    if not changed:
        return value
    copied = copy.copy(value)
    copied.__dict__.update(changed)
    return copied


def _walk(value, replace):
    """``value``'s graph with ``replace(node)`` (not None) substituted; shared nodes stay shared."""
    memo = {}

    def visit(node):
        key = id(node)
        if key in memo:
            return memo[key][1]
        memo[key] = (node, node)  # a cycle meets the original
        replacement = replace(node)
        result = _map_children(node, visit) if replacement is None else replacement
        memo[key] = (node, result)  # the node is kept alive: its id stays unique
        return result

    return visit(value)


def _skeleton(value, trusted):
    """``value`` with each skvision part replaced by a placeholder; and those parts, in order."""
    parts = []

    def replace(node):
        if isinstance(node, sklearn.base.BaseEstimator) and _class_path(node) in trusted:
            parts.append(node)
            return _EstimatorRef(len(parts) - 1)
        return None

    return _walk(value, replace), parts


def _put_back(skeleton, parts):
    """The loaded scikit-learn part with its placeholders replaced by the skvision parts."""
    def replace(node):
        if not isinstance(node, _EstimatorRef):
            return None
        if not (isinstance(node.index, int) and 0 <= node.index < len(parts)):
            raise ValueError(f"The model file refers to a missing estimator {node.index!r}.")
        return parts[node.index]

    return _walk(skeleton, replace)


def _is_plain(value):
    """Whether ``value`` is plain data: numbers, strings, None, and lists, tuples, dicts of them."""
    if value is None or isinstance(value, (bool, str, int, float, np.integer, np.floating)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_plain(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(key, str) and _is_plain(item) for key, item in value.items())
    return False


def _callback_arguments(callback):
    """A skorch callback's constructor arguments that differ from their defaults, or a reason."""
    cls = type(callback)
    if "<locals>" in cls.__qualname__ or cls.__module__ == "__main__":
        return None, f"its class {cls.__qualname__} cannot be imported by path"
    try:
        params = callback.get_params(deep=False)
    except Exception as error:  # any failure: not saved
        return None, f"get_params() failed ({error})"
    defaults = {name: parameter.default for name, parameter in
                inspect.signature(cls.__init__).parameters.items()
                if parameter.default is not parameter.empty}
    arguments = {}
    for name, value in params.items():
        if name.startswith("_"):
            # Not an argument: skorch's get_params lists every attribute without a
            # trailing underscore (MlflowLogger's ``_batch_count`` counter).
            continue
        default = defaults.get(name, inspect.Parameter.empty)
        if value is default:
            continue
        if _is_plain(value) and _is_plain(default):
            try:
                if value == default and type(value) is type(default):
                    continue
            except Exception:  # not comparable: kept
                pass
        if not _is_plain(value):
            return None, f"{cls.__name__}'s parameter {name}={value!r} is not plain data"
        arguments[name] = value
    return arguments, None


# --------------------------------------------------------------------------
# Encoding: Python objects → JSON with references to arrays and tensors.


class _Writer:
    def __init__(self):
        self.arrays = {}
        self.tensors = {}
        self.skops = {}
        self.trusted = _trusted_classes()

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
            return self.callbacks(value, where)
        if isinstance(value, torch.device):
            return {"__device__": str(value)}
        if isinstance(value, os.PathLike):  # weights=Path(...): the path, never read at load
            return {"__path__": os.fspath(value)}
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
            return {"__net__": self.encode(network_state(value), where)}
        if isinstance(value, torch.nn.Module):
            return {"__module__": self.encode(value.state_dict(), where)}
        accelerate = sys.modules.get("accelerate")
        if accelerate is not None and isinstance(value, accelerate.Accelerator):
            # The processes and devices of the run that trained: the loaded
            # model predicts in one process, like any other.
            return None
        if isinstance(value, BaseEstimator):
            if _class_path(value) not in self.trusted:
                return self.sklearn(value, where)
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

    def callbacks(self, value, where):
        """A ``callbacks`` list: each callback's class path and non-default arguments.

        Only when they are plain data; otherwise the list is code that only
        runs in training, like an augment callable: saved as None.
        """
        entries = []
        for entry in value:
            name, callback = entry if isinstance(entry, tuple) else (None, entry)
            arguments, reason = _callback_arguments(callback)
            if arguments is None:
                warnings.warn(
                    f"{where} holds skorch callbacks that cannot be saved without pickle "
                    f"({reason}); it is saved as None (they are only used in training).",
                    UserWarning, stacklevel=5,
                )
                return None
            entries.append({"class": _class_path(callback), "name": name,
                            "arguments": self.encode(arguments, where)})
        return {"__callbacks__": entries, "tuple": isinstance(value, tuple)}

    def sklearn(self, value, where):
        """A scikit-learn part: skops for it, skvision's format for the skvision parts inside."""
        import skops.io

        skeleton, parts = _skeleton(value, self.trusted)
        name = f"sklearn/{len(self.skops)}.skops"
        self.skops[name] = skops.io.dumps(skeleton)
        return {"__skops__": name, "refs": [
            self.encode(part, f"{where}.{type(part).__name__}") for part in parts]}


# --------------------------------------------------------------------------
# Decoding: JSON → objects, rebuilding networks from the estimators' params.


_BIT_GENERATORS = ("MT19937", "PCG64", "PCG64DXSM", "Philox", "SFC64")
_MEMBER = re.compile(r"metadata\.json|tensors\.safetensors|arrays/\d+\.npy|sklearn/\d+\.skops")


def _check_array(data, where):
    """Refuse an ``.npy`` member holding Python objects (a pickle) before it is read."""
    buffer = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(buffer)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, _, dtype = read_header(buffer)
    except (ValueError, OSError, EOFError) as error:
        raise ModelFileError(f"The model file's {where} is not a readable array: {error}") from None
    if dtype.hasobject:
        raise ModelFileError(
            f"The model file's {where} is an array of Python objects, a pickle payload: "
            "refusing to load it (skvision files never hold pickles)."
        )
    # Checked before numpy allocates the array its header declares.
    declared = math.prod(shape) * dtype.itemsize
    if declared != len(data) - buffer.tell():
        raise ModelFileError(
            f"The model file's {where} declares an array of shape {shape} and dtype {dtype} "
            f"({declared:,} bytes) but holds {len(data) - buffer.tell():,} bytes of data: "
            "refusing to read it (the file is truncated, altered or crafted)."
        )


class _Reader:
    """Checks a model file's JSON, arrays and skops members, then rebuilds the object."""

    def __init__(self, archive, tensors, trusted, user_trusted=(), format_version=FORMAT_VERSION):
        self.archive = archive
        self.format_version = format_version
        self.tensors = tensors
        self.trusted = trusted
        self.user_trusted = frozenset(user_trusted)
        self.classes = {}

    # -- the audit: everything is checked before anything is built ----------

    def audit(self, document):
        """Refuse the file if it holds anything not allowed: run before ``decode``."""
        for info in self.archive.infolist():
            if not _MEMBER.fullmatch(info.filename):
                data = self.archive.read(info.filename)
                kind = " (a pickle)" if data[:1] == b"\x80" else ""
                raise ValueError(
                    f"The model file holds {info.filename!r}{kind}, which is no part of a "
                    "skvision model: refusing to load it."
                )
            if info.filename.endswith(".npy"):
                _check_array(self.archive.read(info.filename), info.filename)
        self._audit(document)

    def _audit(self, value):
        if isinstance(value, list):
            for item in value:
                self._audit(item)
            return
        if not isinstance(value, dict):
            return
        tag = next((key for key in value if key.startswith("__")), None)
        if tag in ("__estimator__", "__xgboost__", "__class__"):
            self._trusted(value[tag])
        elif tag == "__callbacks__":
            for entry in value[tag]:
                self._callback_class(entry["class"])
        elif tag == "__skops__":
            self._audit_skops(value[tag])
        elif tag == "__generator__":
            state = value[tag].get("__dict__", {}) if isinstance(value[tag], dict) else {}
            if state.get("bit_generator") not in _BIT_GENERATORS:
                raise ValueError(f"Unknown random generator {state.get('bit_generator')!r} "
                                 "in the model file.")
        for item in value.values():
            self._audit(item)

    def _audit_skops(self, name):
        import skops.io

        data = self.archive.read(name)
        with zipfile.ZipFile(io.BytesIO(data)) as inner:
            for member in inner.namelist():
                if member.endswith(".npy"):
                    _check_array(inner.read(member), f"{name}/{member}")
        untrusted = sorted(set(skops.io.get_untrusted_types(data=data)) - self._skops_trusted())
        if untrusted:
            raise ValueError(
                f"The model file names the type(s) {untrusted} in its scikit-learn part, "
                "which skvision does not load by default: refusing to load it. If you trust "
                f"the file and those types, pass trusted={untrusted!r}."
            )

    def _skops_trusted(self):
        return _sklearn_trusted() | self.user_trusted

    # -- decoding -----------------------------------------------------------

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
        if tag == "__device__":
            return torch.device(value[tag])
        if tag == "__path__":
            return pathlib.Path(value[tag])
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
            if state["bit_generator"] not in _BIT_GENERATORS:
                raise ValueError(f"Unknown random generator {state['bit_generator']!r}.")
            generator = np.random.Generator(getattr(np.random, state["bit_generator"])())
            generator.bit_generator.state = state
            return generator
        if tag == "__random_state__":
            random_state = np.random.RandomState()
            random_state.set_state(self.decode(value[tag]))
            return random_state
        if tag == "__xgboost__":
            params = self.decode(value["params"])
            if str(params.get("device")).startswith("cuda"):
                params["device"] = loadable_device(params["device"])
            model = self._trusted(value[tag])(**params)
            model.load_model(bytearray(self.array(value["raw"]["__array__"]).tobytes()))
            return model
        if tag == "__callbacks__":
            callbacks = []
            for entry in value[tag]:
                callback = self._callback_class(entry["class"])(**self.decode(entry["arguments"]))
                callbacks.append(callback if entry["name"] is None else (entry["name"], callback))
            return tuple(callbacks) if value.get("tuple") else callbacks
        if tag == "__skops__":
            import skops.io

            parts = [self.decode(part) for part in value["refs"]]
            skeleton = skops.io.loads(self.archive.read(value[tag]),
                                      trusted=sorted(self._skops_trusted()))
            return _put_back(skeleton, parts)
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
            _drop_writing_parameters(estimator, cls)
            # Fitted on a GPU, loaded where there is none: the CPU; bf16
            # where it would be emulated: float32.
            restore_runtime(estimator)
            for key, item in pending.items():
                setattr(estimator, key, _rebuild(estimator, key, item, self.format_version))
            return estimator
        raise ValueError(f"Unknown entry {sorted(value)[:3]} in the model file.")

    def _trusted(self, path):
        if path in self.trusted:
            return self.trusted[path]
        if path in self.user_trusted:
            return self._import(path, torch.nn.Module)
        raise ValueError(
            f"The model file names the type {path!r}, which is not one skvision loads: "
            "refusing to load it (skvision's estimators and networks and XGBoost's models are "
            f"allowed). If you trust the file and that class, pass trusted=[{path!r}]."
        )

    def _callback_class(self, path):
        from skorch.callbacks import Callback

        if not isinstance(path, str):
            raise ValueError(f"Unknown callback class {path!r} in the model file.")
        if path in _loadable_callbacks() or path in self.user_trusted:
            return self._import(path, Callback)
        raise ValueError(
            f"The model file names the callback class {path!r}, which skvision does not "
            "build from a file on its own: refusing to load it. Only scoring, logging, "
            "early-stopping, gradient-clipping, freezing and learning-rate callbacks load "
            "without trust; others (checkpoints, loggers) write files or reach the network "
            "with the file's arguments. If you trust the file and that class, pass "
            f"trusted=[{path!r}]."
        )

    def _import(self, path, base):
        if path not in self.classes:
            self.classes[path] = _import_class(path, base)
        return self.classes[path]


@functools.cache
def _loadable_callbacks():
    """Callback classes a file may name without ``trusted=``, by class path.

    None of them writes a file or reaches the network whatever its
    arguments: a callback class is code the file chooses and arguments the
    file sets (a ``TrainEndCheckpoint``'s file names, an ``MlflowLogger``'s
    tracking server), so every other class needs the caller's trust.
    ``EpochScoring`` and ``BatchScoring`` arguments are plain data, so a
    scorer from a file is a scikit-learn scorer name.
    """
    from skorch.callbacks import (
        BatchScoring,
        EarlyStopping,
        EpochScoring,
        EpochTimer,
        Freezer,
        GradientNormClipping,
        LRScheduler,
        PassthroughScoring,
        PrintLog,
        ProgressBar,
        Unfreezer,
        WarmRestartLR,
    )

    from ._callbacks import Accuracy, RecordLR
    from ._callbacks import ProgressBar as ConsoleProgressBar

    classes = (BatchScoring, EarlyStopping, EpochScoring, EpochTimer, Freezer,
               GradientNormClipping, LRScheduler, PassthroughScoring, PrintLog, ProgressBar,
               Unfreezer, WarmRestartLR, Accuracy, RecordLR, ConsoleProgressBar)
    return frozenset(f"{cls.__module__}.{cls.__qualname__}" for cls in classes)


# Parameters that make ``fit`` write where they point: a file does not choose
# them (``load`` gives them back as None, with a warning naming the value).
_WRITING_PARAMETERS = ("checkpoint",)


def _drop_writing_parameters(estimator, cls):
    parameters = inspect.signature(cls.__init__).parameters
    for name in _WRITING_PARAMETERS:
        value = getattr(estimator, name, None)
        if name in parameters and value is not None:
            setattr(estimator, name, None)
            warnings.warn(
                f"The model file sets {cls.__name__}'s {name}={value!r}; a loaded model "
                f"does not write where a file says, so {name} is None. To use it, set it "
                f"again: model.set_params({name}=...).", UserWarning, stacklevel=4)


def _import_class(path, base=torch.nn.Module):
    """Import ``module.Qualified.Name``: a class the caller listed in ``trusted`` (or skorch's)."""
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
        target = getattr(target, part, None)
    if not (isinstance(target, type) and issubclass(target, base)):
        raise ValueError(
            f"The type {path!r} is not a {base.__module__}.{base.__qualname__} subclass: "
            "refusing to load it.")
    return target


class _Pending:
    def __init__(self, kind, payload):
        self.kind, self.payload = kind, payload


def _rebuild(estimator, key, pending, format_version):
    """Rebuild a network attribute: the estimator's own ``_rebuild_network`` hook."""
    device = loadable_device(getattr(estimator, "device_", "cpu"))
    if not hasattr(estimator, "_rebuild_network"):
        raise ValueError(f"Unknown network attribute {key!r} in the model file.")
    try:
        return estimator._rebuild_network(key, pending.payload, device)
    except BackboneWeightsError as error:
        if format_version >= 3:
            raise
        # Only an hf-hub: backbone reaches for the hub when rebuilt, and
        # only in files from before hub_config_ was kept.
        raise BackboneWeightsError(
            f"{error} This model file (format {format_version}) predates skvision keeping "
            "an hf-hub: backbone's configuration in the file, so loading it needs the hub's "
            "config.json once; saved again with this skvision, it loads without the hub."
        ) from error


# --------------------------------------------------------------------------
# Public functions.


def _versions():
    from ._version import __version__

    return {"skvision": __version__, "torch": torch.__version__,
            "sklearn": sklearn.__version__}


def save(estimator, path):
    """Save a fitted model, a skvision estimator or a whole scikit-learn pipeline, without pickle.

    Parameters
    ----------
    estimator : skvision estimator or scikit-learn object
        Fitted or not: a skvision estimator, or any scikit-learn object
        graph holding them (``Pipeline``, ``ColumnTransformer``,
        ``FeatureUnion``, a fitted ``GridSearchCV`` or
        ``RandomizedSearchCV``, ``VotingClassifier``,
        ``StackingClassifier``, ``CalibratedClassifierCV``,
        ``TransformedTargetRegressor``, plain scikit-learn estimators...).
        skvision estimators are saved as their parameters and fitted
        attributes, network weights as safetensors; the scikit-learn parts
        with :func:`skops.io.dumps`, in the same file. skorch ``callbacks``
        are saved as their class and non-default parameters when those are
        plain data. An ``augment=`` callable that is not an ImageAugmenter,
        callbacks with other parameters and an ``accelerator`` are saved as
        None (with a warning for the first two): they only matter in
        training (pass a new accelerator to train on with accelerate).
    path : str or path-like
        The file to write (conventionally ``*.skv``). It is replaced
        atomically: on any failure the previous file stays as it was.

    See Also
    --------
    load : Load what ``save`` wrote.

    Examples
    --------
    >>> import os, tempfile
    >>> from sklearn.pipeline import make_pipeline
    >>> from skvision import CNNClassifier, load, save
    >>> from skvision.datasets import load_digit_images
    >>> from skvision.preprocessing import ChannelStandardizer
    >>> X, y = load_digit_images(return_X_y=True)
    >>> clf = CNNClassifier(filters=(8,), epochs=1, random_state=0).fit(X[:100], y[:100])
    >>> path = os.path.join(tempfile.mkdtemp(), "digits.skv")
    >>> save(clf, path)
    >>> (load(path).predict(X[:5]) == clf.predict(X[:5])).all()
    np.True_
    >>> pipe = make_pipeline(ChannelStandardizer(), CNNClassifier(filters=(8,), epochs=1,
    ...                                                           random_state=0))
    >>> _ = pipe.fit(X[:100], y[:100])
    >>> save(pipe, path)
    >>> (load(path).predict_proba(X[:5]) == pipe.predict_proba(X[:5])).all()
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
            # Stored, not deflated: float weights shrink by ~9% at ~20 MB/s (a
            # detector's 230 MB of weights and optimizer state: 10 s of saving).
            archive.writestr("tensors.safetensors", save_tensors(writer.tensors),
                             compress_type=zipfile.ZIP_STORED)
            for name, data in writer.skops.items():
                archive.writestr(name, data)
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
    """Load a model written by :func:`save`: an estimator or a whole pipeline.

    The whole file is checked before anything is built: every type it names
    must be allowed, nothing is ever unpickled. Allowed are skvision's
    estimators and networks, XGBoost's models, the skorch and skvision
    callbacks that cannot write files or reach the network (scoring,
    logging to the console, early stopping, gradient clipping, freezing,
    learning-rate schedules), the types :mod:`skops.io` trusts by default (scikit-learn's
    estimators, numpy, scipy) and the scikit-learn internals its
    meta-estimators keep (scorers and their metric functions,
    cross-validation splitters, ``Bunch``, calibration's internals).
    Pretrained weights files are never read (the file holds the trained
    weights), nor is the network used, and a model fitted on a GPU loads on
    a CPU-only machine. A file does not choose where the model writes: a
    saved ``checkpoint`` directory comes back as None, with a warning (set
    it again with ``set_params`` to resume into it).

    Parameters
    ----------
    path : str or path-like
        A file written by :func:`save`.
    trusted : list of str, default=None
        Type names, ``"module.Qualified.Name"``, that the file may name
        besides those: a user's network class (``backbone=MyNet``) or
        skorch callback class, imported and then built with the saved
        arguments; types in the scikit-learn part that skops does not trust
        by default, as :func:`skops.io.get_untrusted_types` lists them (e.g.
        your own transformer), passed on to :func:`skops.io.loads`. A file
        naming any other type is refused before anything is built.

    Returns
    -------
    estimator : skvision estimator or scikit-learn object
        What was saved, ready to predict; networks are on the device they
        were fitted on when it exists here, else on the CPU.

    Raises
    ------
    ModelFileError
        A ``ValueError`` subclass, the one error of a file that does not
        load: it is not a skvision model, is truncated, corrupt or altered,
        declares more data than it holds (a member's size in the zip
        directory, an array's shape in its header: checked before anything
        is inflated or allocated), holds a pickle payload, names a type that
        is not allowed and ``trusted`` does not list, or comes from a newer
        format version. The message names the file and the member at fault.

    See Also
    --------
    save : Write a model.
    skops.io.get_untrusted_types : The types of a skops file to review.

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

    def read(archive):
        if archive.testzip() is not None:
            raise zipfile.BadZipFile("a member's checksum does not match")
        document = json.loads(archive.read("metadata.json"))
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise ModelFileError(f"{path!r} is not a skvision model file.")
        version = document.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ModelFileError(
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
                stacklevel=3,
            )
        tensors = load_tensors(archive.read("tensors.safetensors"))
        reader = _Reader(archive, tensors, _trusted_classes(), trusted or (),
                         format_version=version)
        reader.audit(document)  # refuses before anything is built
        return reader.decode(document["estimator"])

    return _open_checked(path, "skvision model file", read)


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
    path = os.fspath(path)

    def read(archive):
        document = json.loads(archive.read("metadata.json"))
        if not isinstance(document, dict) or document.get("format") != STATE_FORMAT:
            raise ModelFileError(f"{path!r} is not a skvision training checkpoint.")
        tensors = load_tensors(archive.read("tensors.safetensors"))
        # No class is trusted: a state holds plain data only.
        return _Reader(archive, tensors, {}).decode(document["state"])

    return _open_checked(path, "skvision training checkpoint", read)
