"""What the API pages list for a class: its public methods.

Read by ``docs/conf.py`` (the methods table of ``_templates/class.rst`` and
``_templates/nn_class.rst``) and by ``tests/test_docs_html.py``, which checks
that the built page of every public class has an entry for each of them.

A public method is a name without a leading underscore that the class, or
one of its bases, defines as a function, a classmethod or a staticmethod;
left out are the ``set_<method>_request`` setters scikit-learn generates
for metadata routing, and what ``torch.nn.Module`` or Python's own classes
(``object``, ``Exception``) define: a ``skvision.nn`` page shows the
module's own methods, not ``Module.to`` or ``Module.state_dict``.
"""

import importlib
import inspect
import re

PUBLIC_MODULES = ["skvision", "skvision.augmentation", "skvision.datasets", "skvision.metrics",
                  "skvision.nn", "skvision.parallel", "skvision.plotting",
                  "skvision.preprocessing", "skvision.mlflow", "skvision.model_selection"]

_ROUTING_SETTER = re.compile(r"set_\w+_request")


def is_routing_setter(name):
    """Whether ``name`` is a ``set_<method>_request`` setter of metadata routing."""
    return _ROUTING_SETTER.fullmatch(name) is not None


def _defined_by(cls, name):
    return next(klass for klass in cls.__mro__ if name in vars(klass))


def public_methods(cls):
    """The sorted names of ``cls``'s public methods (see the module's docstring)."""
    names = []
    for name in dir(cls):
        if name.startswith("_") or is_routing_setter(name):
            continue
        owner = _defined_by(cls, name)
        if owner.__module__ == "builtins" or owner.__module__.split(".")[0] == "torch":
            continue
        member = vars(owner)[name]
        if isinstance(member, (classmethod, staticmethod)) or inspect.isfunction(member):
            names.append(name)
    return sorted(names)


def public_classes():
    """``{"module.Name": class}`` for every class on the API page, under its documented name."""
    classes = {}
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) and not any(obj is seen for seen in classes.values()):
                classes[f"{module_name}.{name}"] = obj
    return classes
