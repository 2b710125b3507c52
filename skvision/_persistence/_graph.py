"""The object-graph walker: skvision estimators inside a scikit-learn part, by placeholder.

``save`` writes a skvision estimator in skvision's own format and a
scikit-learn object with :mod:`skops.io`. Where one holds the other (a
pipeline step, a search's ``best_estimator_``, an object array of
``cv_results_``), ``_skeleton`` replaces each skvision estimator in the
scikit-learn part by an :class:`_EstimatorRef` holding its index, and
``_put_back`` replaces the placeholders by the loaded estimators. Both walk
the graph with ``_walk``, which copies only what changes and keeps shared
nodes shared. Placeholders, not skops' custom type hooks: those are private
API and process-wide (registering one changes every ``skops.io.dumps`` of
the process).
"""

import copy
import types

import numpy as np
import pandas as pd
import sklearn
import torch


def _class_path(obj):
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


class _EstimatorRef:
    """Stands for the skvision estimator ``index`` in a scikit-learn part saved with skops."""

    # skops records (and imports at load) a type by its module: files name the
    # placeholder where it was defined before the package was split, and the
    # package re-exports it there.
    __module__ = "skvision._persistence"

    def __init__(self, index):
        self.index = index


_REF_PATH = f"{_EstimatorRef.__module__}.{_EstimatorRef.__qualname__}"


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
