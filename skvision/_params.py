"""Declarative parameter constraints, checked once at the top of ``fit``.

Every public estimator states what each ``__init__`` parameter accepts in a
class attribute ``_parameter_constraints`` (a dict from parameter name to a
list of accepted forms), and the few rules that tie parameters together in
``_parameter_relations``. :func:`validate_params` checks both at the top of
``fit``/``partial_fit`` (and of ``transform`` for stateless transformers),
before any data is read, so a bad parameter fails fast with one message
format::

    The 'epochs' parameter of CNNClassifier must be an int in the range
    [1, inf). Got 0 instead.

This follows scikit-learn's ``_parameter_constraints``; the machinery is
written here because scikit-learn's lives in a private module
(``sklearn.utils._param_validation``) that skvision does not build on. The
contributor page ``docs/architecture.rst`` describes the contract.

The constraints shared by many estimators live here too: the training
core's (:data:`TRAINING_CONSTRAINTS`, :data:`CLASSIFIER_CONSTRAINTS`) and
the image inputs' (:data:`IMAGE_SHAPE`, :data:`CHANNELS`, ...).

A constraint is ``None`` (the value None is accepted) or one of the small
classes below; each has ``accepts(value)`` and a description that completes
"must be ...".
"""

import functools
import numbers
import os

import numpy as np

from ._torch import PRECISIONS, is_device
from ._validation import is_image_shape

__all__ = [
    "ACCELERATOR_PRECISION",
    "BOOLEAN",
    "CALLABLE",
    "CALLBACKS",
    "CLASSIFIER_CONSTRAINTS",
    "CHANNELS",
    "DEVICE",
    "IMAGE_SHAPE",
    "PATH",
    "PRECISION",
    "IMAGE_AUGMENTER",
    "OPTIMIZERS",
    "RANDOM_STATE",
    "RESERVED_CALLBACK_NAMES",
    "SCHEDULES",
    "TRAINING_CONSTRAINTS",
    "VERBOSE",
    "InstanceOf",
    "Interval",
    "InvalidParameterError",
    "Options",
    "Relation",
    "Satisfies",
    "TupleOf",
    "callback_names",
    "image_size",
    "invalid_values",
    "validate_params",
]


class InvalidParameterError(ValueError, TypeError):
    """A parameter outside its declared constraints.

    Both a ``ValueError`` and a ``TypeError``, as scikit-learn's, so code
    that catches either keeps working.
    """


def _is_number(value, kind):
    # bool is an Integral in Python, but never a meaningful count or rate.
    return isinstance(value, kind) and not isinstance(value, (bool, np.bool_))


class Interval:
    """Numbers of ``kind`` (``numbers.Integral`` or ``numbers.Real``) between two bounds.

    ``closed`` is "both", "left", "right" or "neither"; a bound of None is
    infinite.
    """

    def __init__(self, kind, left, right, *, closed="both"):
        self.kind, self.left, self.right, self.closed = kind, left, right, closed

    def accepts(self, value):
        if not _is_number(value, self.kind) or (self.kind is numbers.Real and np.isnan(value)):
            return False
        if self.left is not None:
            above = value >= self.left if self.closed in ("both", "left") else value > self.left
            if not above:
                return False
        if self.right is not None:
            return value <= self.right if self.closed in ("both", "right") else value < self.right
        return True

    def __str__(self):
        kind = "an int" if self.kind is numbers.Integral else "a float"
        left = "-inf" if self.left is None else self.left
        right = "inf" if self.right is None else self.right
        opening = "[" if self.closed in ("both", "left") and self.left is not None else "("
        closing = "]" if self.closed in ("both", "right") and self.right is not None else ")"
        return f"{kind} in the range {opening}{left}, {right}{closing}"

    def invalid_values(self):
        """Numbers just outside the interval (for the invalid-parameter tests)."""
        step = 1 if self.kind is numbers.Integral else 1e-3
        values = []
        if self.left is not None:
            values.append(self.left - step if self.closed in ("both", "left") else self.left)
        if self.right is not None:
            values.append(self.right + step if self.closed in ("both", "right") else self.right)
        return values


class Options:
    """One of a fixed set of values (strings, or True/False where only one is valid).

    Values match by type as well as by equality, so ``0`` is not ``False``.
    """

    def __init__(self, *values):
        self.values = values

    def accepts(self, value):
        return any(type(value) is type(option) and value == option for option in self.values)

    def __str__(self):
        if len(self.values) == 1:
            return repr(self.values[0])
        return "one of " + ", ".join(repr(option) for option in self.values)

    def invalid_values(self):
        return ["not-an-option"]


class InstanceOf:
    """Instances of one or several types."""

    def __init__(self, types, description):
        self.types, self.description = types, description

    def accepts(self, value):
        return isinstance(value, self.types)

    def __str__(self):
        return self.description

    def invalid_values(self):
        return []


class Satisfies:
    """Values a predicate accepts; for rules no other constraint expresses (e.g. odd ints)."""

    def __init__(self, predicate, description):
        self.predicate, self.description = predicate, description

    def accepts(self, value):
        try:
            return bool(self.predicate(value))
        except (TypeError, ValueError):
            return False

    def __str__(self):
        return self.description

    def invalid_values(self):
        return []


class TupleOf:
    """A tuple or list of values that each satisfy ``item`` (a constraint).

    ``length``: an exact length, or None for any length of at least
    ``min_length``; ``ordered``: the items must not decrease (``(min, max)``
    ranges).
    """

    def __init__(self, item, *, length=None, min_length=0, ordered=False):
        self.item, self.length, self.min_length, self.ordered = item, length, min_length, ordered

    def accepts(self, value):
        if not isinstance(value, (tuple, list)):
            return False
        if len(value) != self.length if self.length is not None else len(value) < self.min_length:
            return False
        if not all(self.item.accepts(entry) for entry in value):
            return False
        return not self.ordered or all(a <= b for a, b in zip(value, value[1:]))

    def __str__(self):
        items = str(self.item)
        if self.length == 2 and self.ordered:
            return f"a (min, max) pair with min <= max, each {items}"
        if self.length is not None:
            return f"a tuple of {self.length} values, each {items}"
        many = "a non-empty tuple" if self.min_length else "a tuple"
        return f"{many} of values, each {items}"

    def invalid_values(self):
        length = self.length if self.length is not None else max(self.min_length, 1)
        values = [[item] * length for item in self.item.invalid_values()[:1]]
        if self.ordered and self.length == 2:
            values.append(("b", "a"))
        return values + ["not-a-tuple"]


class Relation:
    """A rule between parameters: ``check(*values)`` must hold, else ``message``."""

    def __init__(self, names, check, message):
        self.names, self.check, self.message = tuple(names), check, message


BOOLEAN = InstanceOf((bool, np.bool_), "a bool")
CALLABLE = Satisfies(callable, "a callable")
RANDOM_STATE = [
    None,
    Interval(numbers.Integral, 0, 2**32 - 1),
    InstanceOf((np.random.RandomState, np.random.Generator),
               "a numpy RandomState or Generator"),
]
PATH = InstanceOf((str, os.PathLike), "a path")
VERBOSE = [Interval(numbers.Integral, 0, 2), BOOLEAN]

# The input parameters every image estimator shares.
IMAGE_SHAPE = [None, Satisfies(
    is_image_shape, "a (height, width) or (height, width, channels) tuple of ints > 0 "
    "(one may be -1)")]
CHANNELS = [Options("last", "first")]
DEVICE = [Satisfies(is_device, "'auto', 'cpu', 'cuda', 'cuda:N', 'mps' or a torch.device")]
PRECISION = [Options(*PRECISIONS)]


def image_size(min_side=1, *, allow_none=True):
    """An ``image_size`` parameter: an int or a (height, width) pair of ints >= min_side."""
    side = Interval(numbers.Integral, min_side, None)
    return [None] * allow_none + [side, TupleOf(side, length=2)]



def _is_image_augmenter(value):
    # Imported here: augmentation.py declares its own constraints with this module.
    from .augmentation import ImageAugmenter

    return isinstance(value, ImageAugmenter)


# An ``augment`` that moves masks and boxes with the images, as the
# segmenter's and detector's training needs.
IMAGE_AUGMENTER = Satisfies(_is_image_augmenter, "an ImageAugmenter")

# The names of the callbacks skorch and skvision give every net: a user's
# callback must not take one (it would replace ours, or be replaced).
RESERVED_CALLBACK_NAMES = ("epoch_timer", "train_loss", "valid_loss", "print_log", "record_lr",
                           "accuracy", "lr_schedule", "early_stopping", "training_state",
                           "progress", "losses")


def callback_names(callbacks):
    """The name of each callback of a ``callbacks`` parameter: given, or its class's."""
    return [entry[0] if isinstance(entry, tuple) else type(entry).__name__
            for entry in callbacks]


def _is_callback_list(callbacks):
    from skorch.callbacks import Callback

    if not isinstance(callbacks, (list, tuple)):
        return False
    for entry in callbacks:
        if isinstance(entry, tuple):
            if len(entry) != 2 or not isinstance(entry[0], str):
                return False
            entry = entry[1]
        if not isinstance(entry, Callback):
            return False
    names = callback_names(callbacks)
    return len(set(names)) == len(names) and not set(names) & set(RESERVED_CALLBACK_NAMES)


CALLBACKS = [None, Satisfies(_is_callback_list, (
    "a list of skorch callbacks or (name, callback) pairs with distinct names, none of "
    + ", ".join(RESERVED_CALLBACK_NAMES)))]

# The training core's choices (skvision._training builds them).
OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("onecycle", "cosine")

# The parameters every neural estimator shares (the training core's, as
# skvision._docstrings.TRAINING_PARAMETERS_DOC documents them).
TRAINING_CONSTRAINTS = {
    "image_shape": IMAGE_SHAPE,
    "channels": CHANNELS,
    "image_size": image_size(),
    "on_error": [Options("raise", "skip")],
    "epochs": [Interval(numbers.Integral, 1, None), Options("auto")],
    "batch_size": [Interval(numbers.Integral, 1, None)],
    "lr": [Interval(numbers.Real, 0, None, closed="neither")],
    "optimizer": [Options(*OPTIMIZERS)],
    "lr_schedule": [Options(*SCHEDULES), None],
    "alpha": [Interval(numbers.Real, 0, None)],
    "l1_ratio": [Interval(numbers.Real, 0, 1)],
    "early_stopping": [BOOLEAN],
    "validation_fraction": [Interval(numbers.Real, 0, 1, closed="neither")],
    "n_iter_no_change": [Interval(numbers.Integral, 1, None)],
    "augment": [None, IMAGE_AUGMENTER, CALLABLE],
    "warm_start": [BOOLEAN],
    "device": DEVICE,
    "precision": PRECISION,
    "accelerator": [None, Satisfies(lambda accelerator: hasattr(accelerator, "prepare"),
                                    "an accelerate.Accelerator")],
    "callbacks": CALLBACKS,
    "checkpoint": [None, PATH],
    "random_state": RANDOM_STATE,
    "verbose": VERBOSE,
}
CLASSIFIER_CONSTRAINTS = {
    "label_smoothing": [Interval(numbers.Real, 0, 1, closed="left")],
    "class_weight": [None, Options("balanced"), InstanceOf(dict, "a dict")],
}
ACCELERATOR_PRECISION = Relation(
    ("accelerator", "precision"), lambda accelerator, precision: (
        accelerator is None or precision in ("32", "auto")),
    "With an accelerator, set mixed precision on it (Accelerator(mixed_precision='bf16')) "
    "and leave precision='32' or 'auto'.")

def _describe(constraints):
    parts = ["None" if constraint is None else str(constraint) for constraint in constraints]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " or " + parts[-1]


def _accepts(constraint, value):
    return value is None if constraint is None else constraint.accepts(value)


@functools.cache
def _param_names(estimator_class):
    # get_params reads the __init__ signature on every call (~0.1 ms): once per class.
    # (The signature's names, sorted as get_params gives them; without an instance,
    # as meta-estimators have required parameters.)
    return tuple(estimator_class._get_param_names())


def _short_repr(value, limit=80):
    """``repr(value)``, a large dict (a state dict of weights) named by its size instead."""
    if isinstance(value, dict) and len(value) > 3:
        return f"<dict of {len(value)} entries>"
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def validate_params(estimator):
    """Check every parameter of ``estimator`` against its declared constraints.

    Parameters that are themselves skvision estimators (an ``augment``
    ImageAugmenter) are validated too. Raises :class:`InvalidParameterError`
    naming the first parameter that fails.
    """
    name = type(estimator).__name__
    constraints = estimator._parameter_constraints
    params = {param: getattr(estimator, param) for param in _param_names(type(estimator))}
    for param, value in params.items():
        if param not in constraints:
            raise RuntimeError(f"{name} declares no constraint for its parameter {param!r}.")
        if not any(_accepts(constraint, value) for constraint in constraints[param]):
            raise InvalidParameterError(
                f"The {param!r} parameter of {name} must be "
                f"{_describe(constraints[param])}. Got {value!r} instead."
            )
        if hasattr(value, "_parameter_constraints"):
            validate_params(value)
    for relation in getattr(estimator, "_parameter_relations", ()):
        if not relation.check(*(params[param] for param in relation.names)):
            values = ", ".join(f"{param}={_short_repr(params[param])}"
                               for param in relation.names)
            raise InvalidParameterError(f"{name}: {relation.message} Got {values}.")


def invalid_values(constraints):
    """Values none of ``constraints`` accepts: a sample for tests of every parameter."""
    candidates = [object()]
    for constraint in constraints:
        if constraint is not None:
            candidates.extend(constraint.invalid_values())
    return [value for value in candidates
            if not any(_accepts(constraint, value) for constraint in constraints)]
