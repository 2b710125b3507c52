"""The MLflow flavor: log, load and serve skvision models with MLflow, without pickle.

Written in MLflow's custom-flavor pattern (as ``mlflow.sklearn``):
:func:`save_model` writes an MLflow model directory, :func:`log_model` logs
one to the active run, :func:`load_model` gives back the skvision model, and
the ``python_function`` flavor (``mlflow.pyfunc.load_model``, ``mlflow
models serve``) predicts on arrays of images and on encoded image files.

The model directory holds skvision's own file (``model.skv``, written by
:func:`skvision.save`: JSON, ``.npy`` arrays, safetensors and skops members,
never a pickle) beside MLflow's ``MLmodel``, environment files and input
example. Trust is the caller's alone: skvision's own types load without
arguments; any other type needs :func:`load_model`'s ``trusted=`` or, for the
pyfunc, ``model_config={"trusted": [...]}`` given at load or serve time.
Nothing read from the directory widens it: the ``MLmodel`` file's
``config`` section only declares the keys a caller may set (MLflow passes a
caller's configuration only for keys listed there), and its values are
never used.

Requests. The pyfunc takes an array of images (the dtype and layout the
model was fitted on), a DataFrame (or 1-D array) of encoded image files
(MLflow's ``binary`` column, or a ``string`` column of base64) or a
DataFrame of numeric columns (flat pixel rows). Encoded files are decoded
by skvision's pixel path (decode at full bit depth, EXIF orientation, alpha
dropped; gray repeated to colour, colour to gray by luma, where the model
was fitted on the other) and given to the model as uint8/uint16 arrays,
which are scaled as the model's training images were. File paths and URLs
in a request are read only by a model loaded with
``model_config={"read_paths": True}``: a server that opens whatever file or
URL a client names is a local-file-read and server-side request forgery
hole.

MLflow is imported lazily: ``pip install "scikit-vision[mlflow]"``.
"""

import base64
import binascii
import functools
import importlib.metadata
import io
import os
import sys

import numpy as np
import pandas as pd
from skorch.callbacks import MlflowLogger as _SkorchMlflowLogger

__all__ = ["MlflowLogger", "load_model", "log_model", "save_model"]

FLAVOR_NAME = "skvision"
_MODEL_FILE = "model.skv"
_EXTRA = 'pip install "scikit-vision[mlflow]"'
# The methods the pyfunc may call, by name (MLmodel's ``pyfunc_predict_fn``).
_PREDICT_FNS = ("predict", "predict_proba", "predict_log_proba", "decision_function",
                "transform")
# The keys a caller may set through ``model_config``, with the values they
# take when the caller does not: written into MLmodel so MLflow passes a
# caller's value on, never read from it.
_CONFIG_DEFAULTS = {"trusted": [], "read_paths": False}
# The distributions every skvision model needs where it loads.
_BASE_REQUIREMENTS = ("torch", "torchvision", "scikit-learn", "skorch", "timm", "skops",
                      "safetensors", "numpy", "pandas", "pillow")
# MLflow's private helpers this module uses, as MLflow's own flavors do
# (checked by name in tests/test_mlflow.py, so an MLflow upgrade that moves
# one fails there first).
MLFLOW_PRIVATE_API = (
    "mlflow.models.utils._save_example",
    "mlflow.utils.model_utils._validate_and_prepare_target_save_path",
    "mlflow.utils.environment._CONDA_ENV_FILE_NAME",
    "mlflow.utils.environment._CONSTRAINTS_FILE_NAME",
    "mlflow.utils.environment._PYTHON_ENV_FILE_NAME",
    "mlflow.utils.environment._REQUIREMENTS_FILE_NAME",
    "mlflow.utils.environment._PythonEnv",
    "mlflow.utils.environment._process_conda_env",
    "mlflow.utils.environment._process_pip_requirements",
    "mlflow.utils.environment._validate_env_arguments",
)


def _import_mlflow():
    try:
        import mlflow
        import mlflow.pyfunc
    except ImportError as error:
        raise ImportError(f"skvision.mlflow needs MLflow: {_EXTRA}.") from error
    return mlflow


def _check_trusted(trusted):
    if trusted is None:
        return []
    if isinstance(trusted, str) or not all(isinstance(name, str) for name in trusted):
        raise TypeError(f"trusted must be a list of class import paths (str); got {trusted!r}.")
    return list(trusted)


# --------------------------------------------------------------------------
# Saving and logging.


def _requirement(distribution):
    """``name==version`` of an installed distribution (a local label such as +cpu dropped)."""
    try:
        version = importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
    return f"{distribution}=={version.split('+')[0]}"


# Top-level modules whose distribution is known without scanning every installed one.
_KNOWN_DISTRIBUTIONS = {"sklearn": "scikit-learn", "imblearn": "imbalanced-learn",
                        "PIL": "pillow", "skimage": "scikit-image", "xgboost": "xgboost",
                        "numpy": "numpy", "scipy": "scipy", "pandas": "pandas", "torch": "torch",
                        "torchvision": "torchvision", "skorch": "skorch", "timm": "timm"}


@functools.cache
def _installed_distributions():
    return importlib.metadata.packages_distributions()  # seconds: every installed file listed


def _model_distributions(model):
    """The distributions of the classes in ``model``'s object graph (xgboost, imblearn, ...)."""
    from ._persistence._graph import _walk

    modules = set()

    def record(node):
        modules.add(type(node).__module__.split(".")[0])
        return None

    _walk(model, record)
    skip = set(sys.stdlib_module_names) | {"builtins", "skvision", "__main__"}
    names = set()
    for module in modules - skip:
        if module in _KNOWN_DISTRIBUTIONS:
            names.add(_KNOWN_DISTRIBUTIONS[module])
        else:
            names.update(_installed_distributions().get(module, ()))
    return sorted(names)


def _default_requirements(model):
    from ._version import __version__

    names = dict.fromkeys([*_BASE_REQUIREMENTS, *_model_distributions(model)])
    pinned = [_requirement(name) for name in names]
    return [f"scikit-vision=={__version__}"] + sorted(
        requirement for requirement in pinned if requirement is not None)


def save_model(model, path, *, input_example=None, signature=None,
               pyfunc_predict_fn="predict", pip_requirements=None,
               extra_pip_requirements=None, conda_env=None, metadata=None,
               mlflow_model=None):
    """Save a fitted skvision model (or pipeline) as an MLflow model directory, without pickle.

    The directory holds the model as :func:`skvision.save` writes it
    (``model.skv``), an ``MLmodel`` file listing the ``skvision`` and
    ``python_function`` flavors, the environment files (``requirements.txt``
    names ``scikit-vision`` and the libraries the model needs, pinned to
    their installed versions) and the input example.

    Parameters
    ----------
    model : skvision estimator or scikit-learn object
        A fitted model, as :func:`skvision.save` takes it: a skvision
        estimator or a pipeline, search or ensemble holding them.
    path : str or path-like
        The directory to create; it must not exist or be empty.
    input_example : ndarray or pandas DataFrame, default=None
        A few inputs, saved beside the model: an array of images, or a
        DataFrame with one column of encoded image files (``bytes``, or
        base64 ``str``). The signature is inferred from it as MLflow does:
        an array gives a tensor spec with a variable batch axis, a
        DataFrame a column spec.
    signature : mlflow.models.ModelSignature or False, default=None
        The signature; None infers it from ``input_example`` (by running
        the pyfunc on it), False saves none.
    pyfunc_predict_fn : {"predict", "predict_proba", "predict_log_proba", \
"decision_function", "transform"}, default="predict"
        The method the ``python_function`` flavor calls. Class
        probabilities come back as a DataFrame with the class names as
        columns.
    pip_requirements : list of str or str, default=None
        Replaces the inferred requirements (MLflow's meaning).
    extra_pip_requirements : list of str or str, default=None
        Added to the inferred requirements (MLflow's meaning).
    conda_env : dict or str, default=None
        A conda environment, instead of pip requirements (MLflow's meaning).
    metadata : dict, default=None
        Written into ``MLmodel``'s metadata.
    mlflow_model : mlflow.models.Model, default=None
        The model configuration to add the flavors to (:func:`log_model`
        passes it); None makes a new one.

    Returns
    -------
    None

    See Also
    --------
    log_model : Save into the active run.
    load_model : Load the skvision model back.
    skvision.save : The file the directory holds.

    Examples
    --------
    >>> import os, tempfile
    >>> import mlflow.pyfunc
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> import skvision.mlflow
    >>> from skvision.datasets import load_digit_images
    >>> from skvision.preprocessing import ImageFlattener
    >>> X, y = load_digit_images(return_X_y=True)
    >>> pipe = make_pipeline(ImageFlattener(), LogisticRegression(max_iter=200)).fit(X, y)
    >>> path = os.path.join(tempfile.mkdtemp(), "digits")
    >>> skvision.mlflow.save_model(pipe, path, input_example=X[:2])
    >>> sorted(name for name in os.listdir(path) if not name.endswith((".json", ".yaml")))
    ['MLmodel', 'model.skv', 'requirements.txt']
    >>> (mlflow.pyfunc.load_model(path).predict(X[:5]) == pipe.predict(X[:5])).all()
    np.True_
    """
    _import_mlflow()
    from mlflow.models import Model, infer_signature
    from mlflow.models.model import MLMODEL_FILE_NAME
    from mlflow.models.utils import _save_example
    from mlflow.pyfunc import add_to_model
    from mlflow.utils.environment import (
        _CONDA_ENV_FILE_NAME,
        _CONSTRAINTS_FILE_NAME,
        _PYTHON_ENV_FILE_NAME,
        _REQUIREMENTS_FILE_NAME,
        _process_conda_env,
        _process_pip_requirements,
        _PythonEnv,
        _validate_env_arguments,
    )
    from mlflow.utils.model_utils import _validate_and_prepare_target_save_path
    from sklearn.utils.validation import check_is_fitted

    from ._persistence import save
    from ._version import __version__

    if pyfunc_predict_fn not in _PREDICT_FNS:
        raise ValueError(f"pyfunc_predict_fn must be one of {list(_PREDICT_FNS)}; "
                         f"got {pyfunc_predict_fn!r}.")
    if not hasattr(model, pyfunc_predict_fn):
        raise ValueError(f"{type(model).__name__} has no {pyfunc_predict_fn} method; "
                         f"choose pyfunc_predict_fn among its methods.")
    check_is_fitted(model)
    _validate_env_arguments(conda_env, pip_requirements, extra_pip_requirements)
    path = os.path.abspath(os.fspath(path))
    _validate_and_prepare_target_save_path(path)
    if mlflow_model is None:
        mlflow_model = Model()
    saved_example = _save_example(mlflow_model, input_example, path)
    if signature is None and saved_example is not None:
        example = saved_example.inference_data
        wrapper = _SkvisionPyfunc(model, pyfunc_predict_fn, read_paths=False)
        signature = infer_signature(example, wrapper.predict(example))
    elif signature is False:
        signature = None
    if signature is not None:
        mlflow_model.signature = signature
    if metadata is not None:
        mlflow_model.metadata = metadata

    save(model, os.path.join(path, _MODEL_FILE))
    add_to_model(mlflow_model, loader_module="skvision.mlflow", conda_env=_CONDA_ENV_FILE_NAME,
                 python_env=_PYTHON_ENV_FILE_NAME, model_config=dict(_CONFIG_DEFAULTS))
    mlflow_model.add_flavor(FLAVOR_NAME, model_path=_MODEL_FILE, skvision_version=__version__,
                            serialization_format="skvision", pyfunc_predict_fn=pyfunc_predict_fn)
    mlflow_model.save(os.path.join(path, MLMODEL_FILE_NAME))

    if conda_env is None:
        default = None if pip_requirements is not None else _default_requirements(model)
        conda_env, pip_requirements, constraints = _process_pip_requirements(
            default, pip_requirements, extra_pip_requirements)
    else:
        conda_env, pip_requirements, constraints = _process_conda_env(conda_env)
    import yaml

    with open(os.path.join(path, _CONDA_ENV_FILE_NAME), "w") as file:
        yaml.safe_dump(conda_env, stream=file, default_flow_style=False)
    if constraints:
        with open(os.path.join(path, _CONSTRAINTS_FILE_NAME), "w") as file:
            file.write("\n".join(constraints))
    with open(os.path.join(path, _REQUIREMENTS_FILE_NAME), "w") as file:
        file.write("\n".join(pip_requirements))
    _PythonEnv.current().to_yaml(os.path.join(path, _PYTHON_ENV_FILE_NAME))


def log_model(model, name, *, input_example=None, signature=None, pyfunc_predict_fn="predict",
              registered_model_name=None, pip_requirements=None,
              extra_pip_requirements=None, conda_env=None, metadata=None, params=None,
              tags=None):
    """Log a fitted skvision model (or pipeline) to the active MLflow run, without pickle.

    What :func:`save_model` writes, logged with MLflow's ``Model.log`` (a
    run is started when none is active, as MLflow's flavors do).

    Parameters
    ----------
    model : skvision estimator or scikit-learn object
        A fitted model, as :func:`save_model` takes it.
    name : str
        The model's name in the run.
    input_example : ndarray or pandas DataFrame, default=None
        As :func:`save_model`.
    signature : mlflow.models.ModelSignature or False, default=None
        As :func:`save_model`.
    pyfunc_predict_fn : str, default="predict"
        As :func:`save_model`.
    registered_model_name : str, default=None
        Also register the model under this name in the model registry.
    pip_requirements : list of str or str, default=None
        As :func:`save_model`.
    extra_pip_requirements : list of str or str, default=None
        As :func:`save_model`.
    conda_env : dict or str, default=None
        As :func:`save_model`.
    metadata : dict, default=None
        As :func:`save_model`.
    params : dict, default=None
        Parameters recorded with the logged model (MLflow's meaning).
    tags : dict, default=None
        Tags of the logged model (MLflow's meaning).

    Returns
    -------
    model_info : mlflow.models.model.ModelInfo
        Where the model was logged: ``model_info.model_uri`` loads it.

    See Also
    --------
    save_model : Write the directory without a run.
    load_model : Load the skvision model back.

    Examples
    --------
    >>> import tempfile
    >>> import mlflow
    >>> import skvision.mlflow
    >>> from skvision import BoostedTreesClassifier
    >>> from sklearn.datasets import load_digits
    >>> X, y = load_digits(return_X_y=True)
    >>> model = BoostedTreesClassifier(n_estimators=5, random_state=0).fit(X, y)
    >>> folder = tempfile.mkdtemp()  # the store and the artifacts, not the working directory
    >>> mlflow.set_tracking_uri(f"sqlite:///{folder}/mlflow.db")
    >>> experiment = mlflow.create_experiment("digits", artifact_location=folder)
    >>> with mlflow.start_run(experiment_id=experiment):
    ...     info = skvision.mlflow.log_model(model, "trees", input_example=X[:2])
    >>> loaded = skvision.mlflow.load_model(info.model_uri)
    >>> (loaded.predict(X) == model.predict(X)).all()
    np.True_
    """
    _import_mlflow()
    from mlflow.models import Model

    return Model.log(artifact_path=None, name=name, flavor=sys.modules[__name__], model=model,
                     input_example=input_example, signature=signature,
                     pyfunc_predict_fn=pyfunc_predict_fn,
                     registered_model_name=registered_model_name,
                     pip_requirements=pip_requirements,
                     extra_pip_requirements=extra_pip_requirements, conda_env=conda_env,
                     metadata=metadata, params=params, tags=tags)


# --------------------------------------------------------------------------
# Loading.


def _model_file(model_dir):
    """The skvision file of a downloaded model directory, and its flavor configuration."""
    from mlflow.models import Model
    from mlflow.models.model import MLMODEL_FILE_NAME

    configuration = Model.load(os.path.join(model_dir, MLMODEL_FILE_NAME))
    flavor = configuration.flavors.get(FLAVOR_NAME)
    if not isinstance(flavor, dict):
        raise ValueError(f"The MLflow model at {model_dir!r} has no {FLAVOR_NAME!r} flavor: it "
                         "was not saved by skvision.mlflow.")
    name = flavor.get("model_path", _MODEL_FILE)
    # A file name in the directory, nothing else: MLmodel never points elsewhere.
    if not isinstance(name, str) or os.path.basename(name) != name or name in ("", ".", ".."):
        raise ValueError(f"The MLflow model at {model_dir!r} names its model file {name!r}, "
                         "which is not a file of the model's directory: refusing to load it.")
    return os.path.join(model_dir, name), flavor, configuration


def load_model(model_uri, dst_path=None, *, trusted=None):
    """Load a model saved by :func:`save_model` or :func:`log_model`: the skvision object.

    The model file is read by :func:`skvision.load`, which checks it whole
    before building anything and never unpickles. Trust comes from the
    caller only: nothing in the model's directory (``MLmodel`` included)
    widens what loads.

    Parameters
    ----------
    model_uri : str
        Where the model is, in any form MLflow takes (``runs:/<run_id>/name``,
        ``models:/<model_id>``, a local path, an artifact store URI).
    dst_path : str, default=None
        The local directory to download the model to; None: a temporary one.
    trusted : list of str, default=None
        Type names, ``"module.Qualified.Name"``, the file may name besides
        skvision's own, as :func:`skvision.load` takes them: a user's
        network class, a callback class such as
        ``"skvision.mlflow.MlflowLogger"``.

    Returns
    -------
    model : skvision estimator or scikit-learn object
        The model that was logged, ready to predict.

    Raises
    ------
    skvision.ModelFileError
        The model file is not a skvision file (a pickle, say), is altered,
        or names a type ``trusted`` does not list.

    See Also
    --------
    skvision.load : What reads the file.

    Examples
    --------
    >>> import os, tempfile
    >>> import skvision.mlflow
    >>> from skvision import CNNClassifier
    >>> from skvision.datasets import load_digit_images
    >>> X, y = load_digit_images(return_X_y=True)
    >>> clf = CNNClassifier(filters=(4,), epochs=1, random_state=0).fit(X[:100], y[:100])
    >>> path = os.path.join(tempfile.mkdtemp(), "cnn")
    >>> skvision.mlflow.save_model(clf, path)
    >>> (skvision.mlflow.load_model(path).predict(X[:5]) == clf.predict(X[:5])).all()
    np.True_
    """
    mlflow = _import_mlflow()
    from ._persistence import load

    trusted = _check_trusted(trusted)
    local_path = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=dst_path)
    model_file, _, _ = _model_file(local_path)
    return load(model_file, trusted=trusted)


def _caller_options(model_config, file_config):
    """The options a caller set: a value equal to the model file's own is not the caller's.

    MLflow hands the loader ``MLmodel``'s ``config`` section overridden by
    the caller's ``model_config`` (and ``MLFLOW_PYFUNC_INFERENCE_CONFIG``):
    a value it passes on unchanged came from the file, and is ignored.
    """
    options = dict(_CONFIG_DEFAULTS)
    file_config = file_config if isinstance(file_config, dict) else {}
    for key, value in (model_config or {}).items():
        if key in options and not (key in file_config and file_config[key] == value):
            options[key] = value
    options["trusted"] = _check_trusted(options["trusted"])
    if not isinstance(options["read_paths"], bool):
        raise TypeError(f"model_config's read_paths must be True or False; "
                        f"got {options['read_paths']!r}.")
    return options


def _load_pyfunc(path, model_config=None):
    """The pyfunc of a model directory: called by ``mlflow.pyfunc.load_model`` and serving."""
    from mlflow.pyfunc import FLAVOR_NAME as PYFUNC

    from ._persistence import load

    model_dir = os.path.dirname(path) if os.path.isfile(path) else path
    model_file, flavor, configuration = _model_file(model_dir)
    options = _caller_options(model_config,
                              configuration.flavors.get(PYFUNC, {}).get("config"))
    predict_fn = flavor.get("pyfunc_predict_fn", "predict")
    if predict_fn not in _PREDICT_FNS:
        raise ValueError(f"The MLflow model at {model_dir!r} names the method {predict_fn!r}, "
                         f"not one of {list(_PREDICT_FNS)}: refusing to load it.")
    model = load(model_file, trusted=options["trusted"])
    return _SkvisionPyfunc(model, predict_fn, read_paths=options["read_paths"])


# --------------------------------------------------------------------------
# The pyfunc: requests in, MLflow's outputs out.


def _fitted_channels(model):
    """The channel count the model's first image step was fitted on, or None."""
    node = model
    for _ in range(16):
        shape = getattr(node, "image_shape_", None)
        if shape is not None and len(shape) == 3 and shape[2] in (1, 3):
            return int(shape[2])
        if hasattr(node, "steps"):
            node = node.steps[0][1]
        elif hasattr(node, "best_estimator_"):
            node = node.best_estimator_
        else:
            return None
    return None


def _is_encoded(values):
    return len(values) > 0 and all(
        isinstance(value, (bytes, bytearray, memoryview, str)) for value in values)


def _refused(index, value):
    shown = value if len(value) <= 80 else value[:77] + "..."
    return ValueError(
        f"Item {index} of the request ({shown!r}) is not a base64-encoded image file. File "
        "paths and URLs are read only by a model loaded with model_config={'read_paths': True} "
        "(off by default: a server that opens whatever file or URL a client names exposes "
        "its files and network)."
    )


def _encoded_bytes(values, read_paths):
    """Each item as the bytes of an image file, or (with ``read_paths``) a path or URL."""
    from ._storage import is_url

    items = []
    for index, value in enumerate(values):
        if isinstance(value, (bytes, bytearray, memoryview)):
            items.append(bytes(value))
            continue
        if read_paths and (is_url(value) or os.path.exists(value)):
            items.append(value)
            continue
        try:
            items.append(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            raise _refused(index, value) from None
    return items


def _decode(items):
    """Encoded files (bytes) and paths or URLs (str) decoded at full bit depth, upright."""
    from ._data import DECODE_ERRORS, decode_arrays
    from ._pixels import decode_file

    arrays = [None] * len(items)
    paths = [index for index, item in enumerate(items) if isinstance(item, str)]
    if paths:
        for index, array in zip(paths, decode_arrays([items[i] for i in paths])):
            arrays[index] = array
    for index, item in enumerate(items):
        if isinstance(item, bytes):
            try:
                arrays[index] = decode_file(io.BytesIO(item))
            except DECODE_ERRORS as error:
                raise ValueError(f"Item {index} of the request is not an image file skvision "
                                 f"can decode: {error}") from None
    return arrays


def _to_model_layout(arrays, channels):
    """Decoded images with the fitted channel count: one array, or a list where sizes differ.

    Step 3 of the pixel path: gray repeated to colour (exact in uint8);
    colour to gray by the luma weights, on the images scaled to [0, 1] as
    files are (all images of the request then float32 in [0, 1]).
    """
    import torch

    from ._pixels import match_channels, scale_to_unit

    if channels == 3:
        arrays = [np.repeat(a[..., np.newaxis], 3, axis=-1) if a.ndim == 2 else a
                  for a in arrays]
    elif channels == 1 and any(a.ndim == 3 for a in arrays):
        converted = []
        for array in arrays:
            tensor = torch.from_numpy(np.array(  # a copy: Pillow's arrays are read-only
                array if array.ndim == 3 else array[..., np.newaxis])).permute(2, 0, 1)[None]
            converted.append(match_channels(scale_to_unit(tensor), 1)[0, 0].numpy())
        arrays = converted
    if len({(a.shape, a.dtype) for a in arrays}) == 1:
        return np.stack(arrays)
    return arrays


def _as_model_input(data, read_paths, channels):
    """What the model's method takes, from what MLflow hands the pyfunc."""
    if isinstance(data, pd.Series):
        data = data.to_frame()
    if isinstance(data, pd.DataFrame):
        if data.shape[1] == 1 and _is_encoded(data.iloc[:, 0].tolist()):
            values = data.iloc[:, 0].tolist()
        elif all(pd.api.types.is_numeric_dtype(dtype) for dtype in data.dtypes):
            return data.to_numpy()
        else:
            raise ValueError(
                "Expected a DataFrame with one column of encoded image files (bytes, or "
                "base64 str) or numeric columns of flat pixel rows; got columns "
                f"{list(data.columns)[:5]} of types {sorted({str(t) for t in data.dtypes})}.")
    elif isinstance(data, (list, tuple)) and _is_encoded(data):
        values = list(data)
    elif isinstance(data, np.ndarray) and data.dtype.kind in "OSU":
        values = data.reshape(-1).tolist() if data.ndim == 2 and data.shape[1] == 1 else (
            data.tolist() if data.ndim == 1 else None)
        if values is None or not _is_encoded(values):
            raise ValueError(f"Expected images or a 1-D array of encoded image files; got an "
                             f"array of {data.dtype} of shape {data.shape}.")
    elif isinstance(data, dict):
        raise ValueError("Expected one input (an array of images or a column of encoded image "
                         f"files); got named inputs {sorted(data)[:5]}.")
    else:
        return data
    return _to_model_layout(_decode(_encoded_bytes(values, read_paths)), channels)


def _detections_frame(detections):
    """The detector's per-image dicts as one row per box (MLflow's tabular output)."""
    rows = {"image": [], "x_min": [], "y_min": [], "x_max": [], "y_max": [], "label": [],
            "score": []}
    for image, found in enumerate(detections):
        boxes = np.asarray(found["boxes"], dtype=np.float64).reshape(-1, 4)
        rows["image"] += [image] * len(boxes)
        for column, values in zip(("x_min", "y_min", "x_max", "y_max"), boxes.T):
            rows[column] += values.tolist()
        rows["label"] += list(found["labels"])
        rows["score"] += np.asarray(found["scores"], dtype=np.float64).tolist()
    return pd.DataFrame(rows)


def _as_output(result, model, predict_fn):
    """The method's result as MLflow serves it: arrays, and DataFrames for tables."""
    if isinstance(result, pd.DataFrame):
        if {"image_id", "x_min", "score"} <= set(result.columns):  # the detector's frame
            return result.rename(columns={"image_id": "image"})
        return result
    if isinstance(result, list) and result and all(
            isinstance(item, dict) and "boxes" in item for item in result):
        return _detections_frame(result)
    if isinstance(result, list):  # masks of each image's own size
        shapes = {np.shape(item) for item in result}
        return np.stack(result) if len(shapes) == 1 else result
    result = np.asarray(result)
    classes = getattr(model, "classes_", None)
    if (predict_fn in ("predict_proba", "predict_log_proba") and result.ndim == 2
            and classes is not None and np.ndim(classes) == 1
            and len(classes) == result.shape[1]):
        return pd.DataFrame(result, columns=[str(label) for label in classes])
    return result


class _SkvisionPyfunc:
    """What ``mlflow.pyfunc.load_model`` wraps: the model, its method, the read_paths switch."""

    def __init__(self, model, predict_fn, read_paths):
        self.model = model
        self.predict_fn = predict_fn
        self.read_paths = read_paths
        self.channels = _fitted_channels(model)

    def get_raw_model(self):
        """The skvision model."""
        return self.model

    def predict(self, data, params=None):
        """The model's method on the request (images, encoded files), as MLflow serves it."""
        images = _as_model_input(data, self.read_paths, self.channels)
        return _as_output(getattr(self.model, self.predict_fn)(images), self.model,
                          self.predict_fn)


# --------------------------------------------------------------------------
# Tracking a fit.


class MlflowLogger(_SkorchMlflowLogger):
    """skorch's MLflow logger with the settings a tracked skvision fit needs.

    Pass it in a neural estimator's ``callbacks=``: at the start of each fit
    it records the estimator's parameters in the run, and after each epoch
    one metric row (``train_loss``, ``train_acc``, ``valid_loss``,
    ``valid_acc``, ``lr``, ``dur``, step = the epoch). Unlike skorch's
    defaults, it writes no pickled ``.pth`` artifacts
    (``create_artifact=False``) and leaves the run open after the fit
    (``terminate_after_train=False``), so the model can be logged into the
    same run with :func:`log_model`.

    A callback that writes to a tracking server acts, so a model fitted
    with it loads (:func:`skvision.load`, :func:`load_model`, the pyfunc)
    only with ``"skvision.mlflow.MlflowLogger"`` in ``trusted=``.

    Read more in the :ref:`User Guide <user-guide-mlflow>`.

    Parameters
    ----------
    run : mlflow.entities.Run, default=None
        The run to log to; None: the active run (``mlflow.start_run()``)
        when the fit starts.
    client : mlflow.MlflowClient, default=None
        None: ``MlflowClient()`` (the tracking URI set by
        ``mlflow.set_tracking_uri`` or ``MLFLOW_TRACKING_URI``).
    create_artifact : bool, default=False
        skorch's: save the weights, optimizer, criterion (pickled ``.pth``
        files) and history into the run after training.
    terminate_after_train : bool, default=False
        skorch's: end the run after training.
    log_on_batch_end : bool, default=False
        Also log each batch's loss.
    log_on_epoch_end : bool, default=True
        Log the history row of each epoch.
    batch_suffix : str, default=None
        Suffix of the batch metrics' names.
    epoch_suffix : str, default=None
        Suffix of the epoch metrics' names.
    keys_ignored : str or list of str, default=None
        History keys not to log.
    log_params : bool, default=True
        Record the estimator's parameters (plain values; others as their
        text) in the run at the start of each fit.

    See Also
    --------
    log_model : Log the fitted model into the run.

    Examples
    --------
    >>> import tempfile
    >>> import mlflow
    >>> from skvision import CNNClassifier
    >>> from skvision.datasets import load_digit_images
    >>> from skvision.mlflow import MlflowLogger
    >>> X, y = load_digit_images(return_X_y=True)
    >>> folder = tempfile.mkdtemp()  # the store and the artifacts, not the working directory
    >>> mlflow.set_tracking_uri(f"sqlite:///{folder}/mlflow.db")
    >>> experiment = mlflow.create_experiment("digits", artifact_location=folder)
    >>> clf = CNNClassifier(filters=(4,), epochs=2, callbacks=[MlflowLogger()], random_state=0)
    >>> with mlflow.start_run(experiment_id=experiment) as run:
    ...     _ = clf.fit(X[:100], y[:100])
    >>> history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "train_loss")
    >>> len(history), mlflow.get_run(run.info.run_id).data.params["epochs"]
    (2, '2')
    """

    def __init__(self, run=None, client=None, create_artifact=False,
                 terminate_after_train=False, log_on_batch_end=False, log_on_epoch_end=True,
                 batch_suffix=None, epoch_suffix=None, keys_ignored=None, log_params=True):
        super().__init__(run=run, client=client, create_artifact=create_artifact,
                         terminate_after_train=terminate_after_train,
                         log_on_batch_end=log_on_batch_end, log_on_epoch_end=log_on_epoch_end,
                         batch_suffix=batch_suffix, epoch_suffix=epoch_suffix,
                         keys_ignored=keys_ignored)
        self.log_params = log_params

    def initialize(self):
        _import_mlflow()
        super().initialize()
        return self

    def on_train_begin(self, net, **kwargs):
        """Check there is a run to log to; record the estimator's parameters."""
        import mlflow

        if self.run_ is None:
            self.run_ = mlflow.active_run()
        if self.run_ is None:
            raise RuntimeError(
                "MlflowLogger logs to a run: fit inside `with mlflow.start_run():`, or pass "
                "MlflowLogger(run=...).")
        super().on_train_begin(net, **kwargs)
        params = getattr(net, "estimator_params_", None)
        if self.log_params and params:
            logged = {name: value if isinstance(value, (bool, int, float, str)) else str(value)
                      for name, value in params.items() if name != "callbacks"}
            self.client_.log_batch(self.run_.info.run_id, params=[
                mlflow.entities.Param(name, str(value)[:6000])
                for name, value in sorted(logged.items())])
