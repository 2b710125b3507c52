"""The one helper that fills the shared parts of docstrings."""


def fill_docstring(**fields):
    """Class or function decorator: fill ``%(name)s`` fields of its docstring.

    Shared text (training parameters, fitted attributes, image parameters)
    is written once and inserted where each estimator documents it, so the
    API pages never drift apart.
    """

    def decorate(obj):
        obj.__doc__ = obj.__doc__ % fields
        return obj

    return decorate
