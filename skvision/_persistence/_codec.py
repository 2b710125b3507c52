"""The JSON codec: Python objects to the model file's JSON document and back.

``_Writer.encode`` turns an object into JSON: plain values as themselves,
other values as a tagged dict (``{"__tuple__": ...}``, ``{"__array__":
"arrays/0.npy"}``, ``{"__estimator__": class path, "state": ...}``...), with
numpy arrays, torch tensors and skops members collected beside the JSON
for ``_archive._write_archive``. A scikit-learn object goes through
:func:`skops.io.dumps`, the skvision estimators inside it replaced by
placeholders (``_graph``). ``_Decoder.decode`` reverses it, asking its
trust policy (``_trust``) for every class it builds, and only after that
policy's audit has accepted the whole file; networks are rebuilt from their
estimator's parameters (the estimator's ``_rebuild_network`` hook) on a
device that exists here.
"""

import inspect
import io
import math
import os
import pathlib
import sys
import warnings

import joblib
import numpy as np
import pandas as pd
import torch

from .._net import network_state
from .._torch import loadable_device, restore_runtime
from ..nn._hub import BackboneWeightsError
from ._archive import _BIT_GENERATORS, FORMAT_VERSION
from ._graph import _class_path, _put_back, _skeleton
from ._trust import _drop_writing_parameters, _trusted_classes


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
        if isinstance(value, os.PathLike):  # a ``checkpoint`` or ``weights`` path: loads as a str
            return os.fspath(value)
        if isinstance(value, joblib.Memory):
            # A ``memory`` cache: saved as its location, which a loaded model
            # does not write to (``memory`` is a writing parameter).
            return None if value.location is None else os.fspath(value.location)
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


class _Decoder:
    """Rebuilds the object from a model file's JSON, arrays and tensors: after the audit."""

    def __init__(self, archive, tensors, policy, format_version=FORMAT_VERSION):
        self.archive = archive
        self.format_version = format_version
        self.tensors = tensors
        self.policy = policy

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
            return self.policy.trusted_class(value[tag])
        if tag == "__device__":
            return torch.device(value[tag])
        if tag == "__path__":  # format 2 files written between c7445f7 and 60b5383
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
            model = self.policy.trusted_class(value[tag])(**params)
            model.load_model(bytearray(self.array(value["raw"]["__array__"]).tobytes()))
            return model
        if tag == "__callbacks__":
            callbacks = []
            for entry in value[tag]:
                callback_class = self.policy.callback_class(entry["class"])
                callback = callback_class(**self.decode(entry["arguments"]))
                callbacks.append(callback if entry["name"] is None else (entry["name"], callback))
            return tuple(callbacks) if value.get("tuple") else callbacks
        if tag == "__skops__":
            import skops.io

            parts = [self.decode(part) for part in value["refs"]]
            skeleton = skops.io.loads(self.archive.read(value[tag]),
                                      trusted=sorted(self.policy.skops_trusted()))
            return _put_back(skeleton, parts)
        if tag in ("__net__", "__module__"):
            # Rebuilt once the owning estimator's parameters are known.
            return _Pending(tag, self.decode(value[tag]))
        if tag == "__estimator__":
            cls = self.policy.trusted_class(value[tag])
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
