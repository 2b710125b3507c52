"""The API reference lists every public object, and every docstring's
Parameters section matches its signature (as imbalanced-learn checks)."""

import importlib
import inspect
import re
from pathlib import Path

import pytest

numpydoc_docscrape = pytest.importorskip("numpydoc.docscrape")

PUBLIC_MODULES = ["skvision", "skvision.augmentation", "skvision.datasets", "skvision.metrics",
                  "skvision.nn", "skvision.parallel", "skvision.plotting",
                  "skvision.preprocessing"]
API_PAGE = Path(__file__).resolve().parent.parent / "docs" / "api.rst"


def _public_objects():
    objects = {}
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            if not name.startswith("__"):
                objects.setdefault(name, (module_name, getattr(module, name)))
    return objects


def _documented_names():
    """``module.name`` of every entry in the API page's autosummary tables."""
    names, module = set(), None
    for line in API_PAGE.read_text().splitlines():
        if match := re.match(r"\.\. currentmodule:: (\S+)", line):
            module = match.group(1)
        elif re.match(r"   [A-Za-z_]\w*$", line):
            names.add(f"{module}.{line.strip()}")
    return names


def test_every_public_object_is_in_the_api_reference():
    documented = _documented_names()
    documented_short = {name.rsplit(".", 1)[1] for name in documented}
    missing = sorted(f"{module}.{name}" for name, (module, _) in _public_objects().items()
                     if name not in documented_short)
    assert not missing, f"Add these to docs/api.rst: {missing}"
    # And nothing listed there is gone from the package.
    for full_name in documented:
        module, name = full_name.rsplit(".", 1)
        assert hasattr(importlib.import_module(module), name), full_name


def _signature_parameters(function):
    parameters = []
    for name, parameter in inspect.signature(function).parameters.items():
        if name in ("self", "cls"):
            continue
        prefix = {inspect.Parameter.VAR_POSITIONAL: "*",
                  inspect.Parameter.VAR_KEYWORD: "**"}.get(parameter.kind, "")
        parameters.append(prefix + name)
    return parameters


def _documented_parameters(doc):
    names = []
    for parameter in doc["Parameters"]:
        # "X, y : array-like" documents two parameters at once.
        names += [name.strip() for name in parameter.name.split(",")]
    return names


def _callables_to_check():
    for name, (_, obj) in sorted(_public_objects().items()):
        if inspect.isclass(obj):
            yield name, obj, numpydoc_docscrape.ClassDoc(obj), obj
            for method_name, method in inspect.getmembers(obj, inspect.isfunction):
                if method_name.startswith("_") or not method.__module__.startswith("skvision"):
                    continue
                if method.__doc__ is None or "Parameters" not in method.__doc__:
                    continue  # short one-line docstrings of parameterless or inherited methods
                yield (f"{name}.{method_name}", method,
                       numpydoc_docscrape.FunctionDoc(method), method)
        elif inspect.isfunction(obj):
            yield name, obj, numpydoc_docscrape.FunctionDoc(obj), obj


CASES = list(_callables_to_check())


@pytest.mark.parametrize("name, obj, doc, function", CASES, ids=[case[0] for case in CASES])
def test_docstring_parameters_match_the_signature(name, obj, doc, function):
    signature = _signature_parameters(function)
    documented = _documented_parameters(doc)
    assert documented == signature, (
        f"{name}: the docstring documents {documented}, the signature has {signature}")


@pytest.mark.parametrize("name, obj", [(name, obj) for name, (_, obj) in _public_objects().items()
                                       if inspect.isclass(obj)])
def test_public_classes_have_the_sections_of_an_api_page(name, obj):
    doc = numpydoc_docscrape.ClassDoc(obj)
    assert doc["Summary"], f"{name} has no summary line"
    if hasattr(obj, "fit"):
        assert doc["Parameters"] and doc["Attributes"], f"{name} lacks Parameters or Attributes"
    assert doc["Examples"], f"{name} has no Examples block"
