"""Scaling out with dask: block-wise prediction over image sets larger than memory.

Grid search and cross-validation need nothing from skvision to run on a
cluster: joblib's dask backend sends each fit to a worker::

    from dask.distributed import Client
    import joblib

    client = Client("tcp://scheduler:8786")   # or Client() for a LocalCluster
    with joblib.parallel_backend("dask"):
        search.fit(X, y)                       # unchanged sklearn code

:func:`apply_blocks` runs a fitted estimator's ``predict``/``transform`` on a
dask array of images, one block of images per task, with the model sent to
each worker once; or on a dask DataFrame, Series or array of image file
paths or URLs (``s3://``, ``gs://``, ``https://``, ...), each worker then
reading the files of its blocks itself. dask is optional:
``pip install "scikit-vision[distributed]"``.

Workers that read URLs need the storage's settings and credentials in their
own processes: a setting made in the client's Python session
(``fsspec.config.conf``, a ``storage_options`` dict) does not reach them.
Give them the environment a single process would read, set before the
workers start (a LocalCluster's and a nanny's workers inherit the
environment they start in; dask's ``distributed.nanny.pre-spawn-environ``
setting adds variables to it): the cloud SDK's own (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL_S3``, an instance role,
``GOOGLE_APPLICATION_CREDENTIALS``, ...) or fsspec's, which it reads into
its configuration when a process imports it: ``FSSPEC_<PROTOCOL>_<OPTION>``
(``FSSPEC_S3_ENDPOINT_URL``, ``FSSPEC_S3_KEY``, ``FSSPEC_S3_SECRET``), or a
JSON dict in ``FSSPEC_<PROTOCOL>`` (``FSSPEC_S3='{"anon": true}'``)::

    os.environ["FSSPEC_S3_ENDPOINT_URL"] = "https://minio.example.com"
    cluster = LocalCluster(n_workers=2, threads_per_worker=1)
    urls = dd.from_pandas(pd.DataFrame({"image": image_urls}), npartitions=8)
    predicted = apply_blocks(model, urls).compute()

Start workers without dask's default ``MALLOC_TRIM_THRESHOLD_=65536``: it
turns off glibc's adaptive allocator thresholds, and torch, which allocates
large tensors all the time, then runs markedly slower (EfficientNet
feature extraction on one thread, measured once). :func:`worker_config` gives the
setting; use it before the cluster starts::

    import dask
    from skvision.parallel import worker_config

    with dask.config.set(worker_config()):
        cluster = LocalCluster(n_workers=2, threads_per_worker=1)
"""

import sys

import numpy as np
from sklearn.utils.validation import check_is_fitted

__all__ = ["apply_blocks", "is_dask_collection", "worker_config"]

_EXTRA = 'pip install "scikit-vision[distributed]"'


def _import_dask():
    try:
        import dask
        import dask.array
    except ImportError as error:
        raise ImportError(
            f"Working on dask collections needs dask: {_EXTRA}."
        ) from error
    return dask


def worker_config():
    """dask settings for workers that run torch: keep glibc's adaptive malloc.

    Returns
    -------
    config : dict
        For ``dask.config.set``: unsets ``MALLOC_TRIM_THRESHOLD_`` in the
        environment of the workers a nanny spawns. One thread per worker
        (``OMP_NUM_THREADS=1``, dask's default) is kept.

    Examples
    --------
    >>> from skvision.parallel import worker_config
    >>> sorted(worker_config())
    ['distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_']
    """
    return {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}


def is_dask_collection(X):
    """Whether ``X`` is a dask array, DataFrame or Series (without importing dask).

    Parameters
    ----------
    X : object

    Returns
    -------
    is_dask : bool

    Examples
    --------
    >>> import numpy as np
    >>> from skvision.parallel import is_dask_collection
    >>> is_dask_collection(np.zeros(3))
    False
    """
    dask = sys.modules.get("dask")
    return dask is not None and dask.is_dask_collection(X)


def _shared_model(dask, estimator):
    """The estimator as one piece of the graph, so it travels per worker, not per block.

    With a ``dask.distributed`` client, it is broadcast to every worker up
    front (keeping a large model out of the task graph); otherwise it is one
    delayed object that the local scheduler shares between blocks.
    """
    try:
        from distributed import get_client

        client = get_client()
    except (ImportError, ValueError):
        client = None
    if client is not None:
        return client.scatter(estimator, broadcast=True)
    return dask.delayed(estimator, pure=True, traverse=False)


def _apply(block, model, method, columns=None):
    if columns is not None:
        import pandas as pd

        block = pd.DataFrame(block, columns=columns)
    return getattr(model, method)(block)


def _frame_to_array(X):
    """A dask DataFrame or Series as a dask array, with the column names blocks get back.

    Blocks of a DataFrame go to the estimator as pandas frames, so the
    feature names it was fitted with still match; a Series's as 1-D arrays.
    Columns of pandas's string dtype (file paths, URLs) become object
    columns first: dask converts extension dtypes to arrays only that way.
    """
    import pandas as pd

    frame = X.ndim == 2
    dtypes = dict(X.dtypes) if frame else {X.name: X.dtype}
    strings = [name for name, dtype in dtypes.items()
               if isinstance(dtype, pd.StringDtype)]
    if strings:
        X = X.astype({name: object for name in strings} if frame else object)
    return X.to_dask_array(lengths=True), (list(X.columns) if frame else None)


def apply_blocks(estimator, X, method="predict"):
    """Apply a fitted estimator to a dask array of images, or of image paths, block by block.

    Each block of samples becomes one task: on a ``dask.distributed``
    cluster the blocks run on the workers in parallel, and memory holds a
    few blocks at a time however large ``X`` is (e.g. read lazily from a
    ``.npy`` file with ``da.from_array(np.load(path, mmap_mode="r"))`` or
    from zarr). The model is one piece of the graph, broadcast to the
    workers ahead of the blocks rather than sent with each one (dask's
    active memory manager may drop an idle copy, which that worker then
    fetches again). Blocks of file paths or URLs are read where
    they run: each worker reads only its blocks' files.

    Parameters
    ----------
    estimator : fitted estimator
        Any fitted skvision (or sklearn) estimator or pipeline.
    X : dask.array.Array, dask.dataframe.DataFrame or dask.dataframe.Series
        Images (or rows) chunked along the first axis only; other axes are
        merged into one chunk. Or image file paths or URLs, which the
        estimator reads (as its ``predict`` reads a list of them): a 1-D
        array or a Series of them, or a one-column DataFrame (string
        columns included). A DataFrame's partitions reach the estimator as
        pandas DataFrames (with their column names); a Series's as 1-D
        arrays. Workers reading URLs need the storage's configuration in
        their environment (see :mod:`skvision.parallel`).
    method : str, default="predict"
        The estimator's method to apply: "predict", "predict_proba",
        "transform", "decision_function", ...

    Returns
    -------
    result : dask.array.Array
        Lazy result with one row per image, chunked as ``X``; call
        ``.compute()`` (or store it) to run it.

    Examples
    --------
    >>> import dask.array as da
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skvision.datasets import load_digit_images
    >>> from skvision.parallel import apply_blocks
    >>> from skvision.preprocessing import ImageFlattener
    >>> from sklearn.pipeline import make_pipeline
    >>> X, y = load_digit_images(return_X_y=True)
    >>> model = make_pipeline(ImageFlattener(), LogisticRegression(max_iter=500)).fit(X, y)
    >>> lazy = apply_blocks(model, da.from_array(X, chunks=(500, 8, 8)))
    >>> bool((lazy.compute() == model.predict(X)).all())
    True
    """
    dask = _import_dask()
    import dask.array as da

    columns = None
    if is_dask_collection(X) and hasattr(X, "to_dask_array"):
        X, columns = _frame_to_array(X)
    if not isinstance(X, da.Array):
        raise TypeError(
            f"apply_blocks takes a dask array or DataFrame; got {type(X).__name__}. Wrap "
            "numpy data with dask.array.from_array(X, chunks=(block_size, *X.shape[1:]))."
        )
    if not hasattr(estimator, method):
        raise AttributeError(f"{type(estimator).__name__} has no method {method!r}.")
    check_is_fitted(estimator)
    if X.ndim > 1 and any(len(chunks) > 1 for chunks in X.chunks[1:]):
        X = X.rechunk({axis: -1 for axis in range(1, X.ndim)})
    # The output's shape and dtype per image, from one image computed here.
    first = np.asarray(_apply(np.asarray(X[:1].compute()), estimator, method, columns))
    out_ndim = first.ndim
    chunks = (X.chunks[0], *((size,) for size in first.shape[1:]))
    extra = {}
    if out_ndim < X.ndim:
        extra["drop_axis"] = list(range(out_ndim, X.ndim))
    elif out_ndim > X.ndim:
        extra["new_axis"] = list(range(X.ndim, out_ndim))
    model = _shared_model(dask, estimator)
    return X.map_blocks(_apply, model, method, columns, dtype=first.dtype, chunks=chunks,
                        meta=np.empty((0,) * out_ndim, dtype=first.dtype), **extra)
