"""The trust policy: which types a model file may name, and the audit that enforces it.

A file chooses classes and their arguments, so loading builds only what is
allowed: skvision's estimators and networks and XGBoost's models
(``_trusted_classes``, found from the classes themselves), the callbacks
that cannot write files or reach the network (``_loadable_callbacks``),
what skops trusts by default plus the scikit-learn internals its
meta-estimators keep (``_sklearn_trusted``), and the type names the caller
lists in ``load(trusted=[...])``. :class:`_TrustPolicy` holds one load's
allow-lists; its ``audit`` checks the whole file (member names, every
``.npy`` header, every type the JSON and the skops members name) before the
decoder (``_codec``) builds anything, and the decoder asks it for each
class it builds. A parameter that makes ``fit`` write
(``_WRITING_PARAMETERS``) is not taken from a file.
"""

import functools
import inspect
import io
import warnings
import zipfile

import torch

from ._archive import _BIT_GENERATORS, _MEMBER, _check_array
from ._graph import _REF_PATH


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
    from .. import preprocessing  # noqa: F401

    classes, pending = [xgboost.XGBClassifier, xgboost.XGBRegressor], [
        BaseEstimator, torch.nn.Module]
    while pending:
        for cls in pending.pop().__subclasses__():
            pending.append(cls)
            if cls.__module__.split(".")[0] == "skvision" and not cls.__name__.startswith("_"):
                classes.append(cls)
    return {f"{cls.__module__}.{cls.__qualname__}": cls for cls in classes}


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

    from .._callbacks import Accuracy, RecordLR
    from .._callbacks import ProgressBar as ConsoleProgressBar

    classes = (BatchScoring, EarlyStopping, EpochScoring, EpochTimer, Freezer,
               GradientNormClipping, LRScheduler, PassthroughScoring, PrintLog, ProgressBar,
               Unfreezer, WarmRestartLR, Accuracy, RecordLR, ConsoleProgressBar)
    return frozenset(f"{cls.__module__}.{cls.__qualname__}" for cls in classes)


# Parameters that make ``fit`` (or ``transform``: an extractor's feature
# cache) write where they point: a file does not choose them (``load`` gives
# them back as None, with a warning naming the value).
_WRITING_PARAMETERS = ("checkpoint", "memory")


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


class _TrustPolicy:
    """One load's allow-lists: the audit of a whole file, and the classes the decoder builds."""

    def __init__(self, trusted, user_trusted=()):
        self.trusted = trusted
        self.user_trusted = frozenset(user_trusted)
        self.classes = {}

    # -- the audit: everything is checked before anything is built ----------

    def audit(self, archive, document):
        """Refuse the file if it holds anything not allowed: run before decoding it."""
        for info in archive.infolist():
            if not _MEMBER.fullmatch(info.filename):
                data = archive.read(info.filename)
                kind = " (a pickle)" if data[:1] == b"\x80" else ""
                raise ValueError(
                    f"The model file holds {info.filename!r}{kind}, which is no part of a "
                    "skvision model: refusing to load it."
                )
            if info.filename.endswith(".npy"):
                _check_array(archive.read(info.filename), info.filename)
        self._audit(archive, document)

    def _audit(self, archive, value):
        if isinstance(value, list):
            for item in value:
                self._audit(archive, item)
            return
        if not isinstance(value, dict):
            return
        tag = next((key for key in value if key.startswith("__")), None)
        if tag in ("__estimator__", "__xgboost__", "__class__"):
            self.trusted_class(value[tag])
        elif tag == "__callbacks__":
            for entry in value[tag]:
                self.callback_class(entry["class"])
        elif tag == "__skops__":
            self._audit_skops(archive, value[tag])
        elif tag == "__generator__":
            state = value[tag].get("__dict__", {}) if isinstance(value[tag], dict) else {}
            if state.get("bit_generator") not in _BIT_GENERATORS:
                raise ValueError(f"Unknown random generator {state.get('bit_generator')!r} "
                                 "in the model file.")
        for item in value.values():
            self._audit(archive, item)

    def _audit_skops(self, archive, name):
        import skops.io

        data = archive.read(name)
        with zipfile.ZipFile(io.BytesIO(data)) as inner:
            for member in inner.namelist():
                if member.endswith(".npy"):
                    _check_array(inner.read(member), f"{name}/{member}")
        untrusted = sorted(set(skops.io.get_untrusted_types(data=data)) - self.skops_trusted())
        if untrusted:
            raise ValueError(
                f"The model file names the type(s) {untrusted} in its scikit-learn part, "
                "which skvision does not load by default: refusing to load it. If you trust "
                f"the file and those types, pass trusted={untrusted!r}."
            )

    # -- the classes the decoder builds -------------------------------------

    def skops_trusted(self):
        """The type names a skops member may hold besides skops' defaults."""
        return _sklearn_trusted() | self.user_trusted

    def trusted_class(self, path):
        """The estimator, XGBoost model or network class ``path``, if allowed; else refuse."""
        if path in self.trusted:
            return self.trusted[path]
        if path in self.user_trusted:
            return self._import(path, torch.nn.Module)
        raise ValueError(
            f"The model file names the type {path!r}, which is not one skvision loads: "
            "refusing to load it (skvision's estimators and networks and XGBoost's models are "
            f"allowed). If you trust the file and that class, pass trusted=[{path!r}]."
        )

    def callback_class(self, path):
        """The callback class ``path``, if allowed; else refuse."""
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
