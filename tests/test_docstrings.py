"""The API reference lists every public object, and every docstring's
Parameters section matches its signature (as imbalanced-learn checks)."""

import ast
import importlib
import inspect
import re
from pathlib import Path

import numpy as np
import pytest

numpydoc_docscrape = pytest.importorskip("numpydoc.docscrape")

PUBLIC_MODULES = ["skvision", "skvision.augmentation", "skvision.datasets", "skvision.metrics",
                  "skvision.nn", "skvision.parallel", "skvision.plotting",
                  "skvision.preprocessing", "skvision.mlflow",
                  "skvision.model_selection"]
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
        if inspect.isclass(obj) and issubclass(obj, Exception):
            continue  # takes a message, as Python's exceptions do: no parameters to document
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


def _documented_default(type_line):
    """The ``default=...`` of a numpydoc type line, as a Python value (or the text)."""
    match = re.search(r"default\s*=\s*(.+)$", type_line)
    if match is None:
        return inspect.Parameter.empty
    text = match.group(1).strip()
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _same_default(documented, actual, module):
    """Whether a docstring's default states the signature's (numbers to 4 digits)."""
    if isinstance(actual, float) and np.isnan(actual):  # written np.nan, as scikit-learn does
        return documented in ("np.nan", "nan")
    if isinstance(documented, str) and not isinstance(actual, str):
        # Not a literal: a constant of the module (IMAGE_EXTENSIONS) or a call's text.
        named = getattr(module, documented, inspect.Parameter.empty)
        return named is actual or named == actual or documented in (repr(actual), str(actual))
    if isinstance(documented, (tuple, list)) and isinstance(actual, (tuple, list)):
        return (type(documented) is type(actual) and len(documented) == len(actual)
                and all(_same_default(d, a, module) for d, a in zip(documented, actual)))
    if isinstance(documented, bool) or isinstance(actual, bool):
        return documented is actual
    if isinstance(documented, (int, float)) and isinstance(actual, (int, float)):
        return documented == pytest.approx(actual, rel=1e-3)
    return documented == actual


@pytest.mark.parametrize("name, obj, doc, function", CASES, ids=[case[0] for case in CASES])
def test_documented_defaults_are_the_signatures(name, obj, doc, function):
    # Defaults are written twice, in __init__ and its docstring: they must agree.
    defaults = {parameter_name: parameter.default for parameter_name, parameter
                in inspect.signature(function).parameters.items()}
    module = importlib.import_module(function.__module__)
    drifted = [(parameter.name, _documented_default(parameter.type), defaults[parameter.name])
               for parameter in doc["Parameters"] if parameter.name in defaults
               and _documented_default(parameter.type) is not inspect.Parameter.empty
               and not _same_default(_documented_default(parameter.type),
                                     defaults[parameter.name], module)]
    assert not drifted, f"{name}: (parameter, documented, signature) differ: {drifted}"


_ESTIMATORS = [(name, obj) for name, (_, obj) in _public_objects().items()
               if inspect.isclass(obj) and hasattr(obj, "fit")]


@pytest.mark.parametrize("name, obj", _ESTIMATORS, ids=[name for name, _ in _ESTIMATORS])
def test_estimator_docstrings_link_to_the_user_guide(name, obj):
    # As scikit-learn's: the API page sends the reader to the page with the idea.
    match = re.search(r"Read more in the :ref:`User Guide <([\w-]+)>`\.", obj.__doc__)
    assert match, f"{name}: no 'Read more in the :ref:`User Guide <label>`.' line"
    label = match.group(1)
    pages = (API_PAGE.parent / "user_guide").glob("*.rst")
    assert any(page.read_text().startswith(f".. _{label}:\n") for page in pages), (
        f"{name}: no user guide page starts with the label {label!r}")


@pytest.mark.parametrize("name, obj", [(name, obj) for name, (_, obj) in _public_objects().items()
                                       if inspect.isclass(obj) or inspect.isfunction(obj)])
def test_examples_import_from_the_public_modules(name, obj):
    # A user copies the example: it imports what skvision exports at the top
    # (``from skvision import CNNClassifier``), never from a submodule.
    import skvision

    for module, names in re.findall(r">>> from (skvision[\w.]*) import ([\w, ]+)",
                                    obj.__doc__ or ""):
        for imported in (part.strip() for part in names.split(",")):
            if imported in skvision.__all__:
                assert module == "skvision", (
                    f"{name}'s example imports {imported} from {module}, not from skvision")
            assert not any(part.startswith("_") for part in module.split(".")), (name, module)
