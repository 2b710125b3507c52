"""Image steps under ``set_output``: images stay arrays, only 2-D outputs become frames.

scikit-learn's ``set_output(transform="pandas")`` wraps every output of
``transform`` in a DataFrame, which fails on images (``Must pass 2-d
input``), so no pipeline with an image step could be set to pandas output.
:class:`ImageOutputMixin` opts its transformers out of scikit-learn's
wrapping (``auto_wrap_output_keys=None``, the documented way for a
transformer to wrap its own output) and wraps ``transform`` and
``fit_transform`` itself: images (3-D and 4-D arrays, tensors) come back
as the step returns them, 2-D rows become DataFrames named by
``get_feature_names_out``, as scikit-learn's wrapping makes them.
"""

import functools

import numpy as np
from sklearn import get_config

_CONTAINERS = ("default", "pandas", "polars")


class ImageOutputMixin:
    """``set_output`` for transformers whose output may be images.

    Put it before ``TransformerMixin`` in the bases. Every ``transform`` and
    ``fit_transform`` a subclass defines is wrapped: under
    ``set_output(transform="pandas")`` (or "polars", or the global
    ``transform_output`` of ``sklearn.set_config``), a 2-D output becomes a
    DataFrame and images are returned unchanged.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(auto_wrap_output_keys=None, **kwargs)
        for name in ("transform", "fit_transform"):
            if name in cls.__dict__:
                setattr(cls, name, _frames_for_rows(cls.__dict__[name]))

    def set_output(self, *, transform=None):
        """Set the container of the outputs of ``transform`` and ``fit_transform``.

        As scikit-learn's ``set_output``, except that images stay arrays
        (or tensors): only 2-D outputs (rows of pixels or features) become
        DataFrames.

        Parameters
        ----------
        transform : {"default", "pandas", "polars"}, default=None
            "pandas" or "polars": 2-D outputs as DataFrames of that
            library, with the columns ``get_feature_names_out`` names;
            "default": outputs as the step makes them; None: unchanged.

        Returns
        -------
        self : estimator instance
            The transformer.
        """
        if transform is None:
            return self
        if transform not in _CONTAINERS:
            raise ValueError(
                f"set_output's transform must be one of {list(_CONTAINERS)} or None; got "
                f"{transform!r}.")
        # The attribute scikit-learn's own set_output writes, which clone() copies.
        self._sklearn_output_config = {**getattr(self, "_sklearn_output_config", {}),
                                       "transform": transform}
        return self


def _frames_for_rows(method):
    """``method`` (transform or fit_transform) with its 2-D outputs as the configured frames."""

    @functools.wraps(method)
    def wrapped(self, X, *args, **kwargs):
        output = method(self, X, *args, **kwargs)
        container = getattr(self, "_sklearn_output_config", {}).get(
            "transform", get_config()["transform_output"])
        # Without feature names scikit-learn wraps nothing either.
        if (container == "default" or not isinstance(output, np.ndarray) or output.ndim != 2
                or not hasattr(self, "get_feature_names_out")):
            return output
        return _frame(output, X, self.get_feature_names_out(), container)

    return wrapped


def _frame(rows, X, columns, container):
    """``rows`` as a pandas or polars DataFrame; pandas keeps the index of a DataFrame ``X``."""
    columns = [str(column) for column in columns]
    if container == "pandas":
        import pandas as pd

        index = X.index if isinstance(X, pd.DataFrame) else None
        return pd.DataFrame(rows, index=index, columns=columns, copy=False)
    try:
        import polars as pl
    except ImportError:
        raise ImportError(
            'set_output(transform="polars") needs polars; install it (pip install polars).'
        ) from None
    return pl.DataFrame(rows, schema=columns, orient="row")
