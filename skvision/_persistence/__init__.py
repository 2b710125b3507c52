"""Safe saving and loading of fitted models: ``skvision.save`` / ``skvision.load``.

A saved model is one zip file:

* ``metadata.json``: the format version, the skvision / torch / sklearn
  versions that wrote it, and the object as JSON: each skvision estimator
  (and XGBoost model) as its class (from an allow-list), parameters and
  fitted attributes;
* ``arrays/<n>.npy``: numpy arrays, read with ``allow_pickle=False``;
* ``tensors.safetensors``: every torch tensor (network weights, optimizer
  state, Gram matrices), read with safetensors;
* ``sklearn/<n>.skops``: the scikit-learn parts (a ``Pipeline``, a
  ``GridSearchCV``, a ``StandardScaler``...) in skops' format
  (:mod:`skops.io`, the ecosystem's format without pickle);
* XGBoost models in XGBoost's own binary JSON format.

Whole object graphs (format 2). ``save`` walks the object: a skvision
estimator is encoded in skvision's own format; anything else (scikit-learn
meta-estimators and estimators) goes through ``skops.io.dumps`` after each
skvision estimator inside it, wherever it sits (a pipeline step, a search's
``best_estimator_``, a calibrated classifier's internals, an object array of
``cv_results_``), is replaced by an :class:`_EstimatorRef` placeholder
holding its index. The skvision estimators are stored beside the skops
member in the same JSON (``{"__skops__": member, "refs": [...]}``), so
either kind may nest inside the other. Loading puts them back in place.
Design choices: skops' custom type hooks are private API and process-wide
(registering one changes every ``skops.io.dumps`` of the process), the
placeholders are not; and skops cannot save torch networks or skorch nets,
which skvision's own format rebuilds from parameters plus safetensors.

Loading never unpickles and checks the whole file before it builds
anything: every type the JSON names (estimator, network and callback
classes), every type of each skops member (``skops.io.get_untrusted_types``)
and every array's header (an object array is a pickle payload) must be
allowed, and the zip may hold no other member; else a ``ValueError`` names
what was refused. ``load(trusted=[...])`` extends the allow-lists by type
names: a user's torch module or skorch callback class, types in the
scikit-learn part that skops does not trust by default. Networks are
rebuilt from the estimators' own parameters (``_rebuild_network``, with no
pretrained weights read: the file has the trained ones) on the device they
were fitted on where it exists here, else the CPU
(:func:`skvision._torch.loadable_device`). Writing goes to a temporary file
in the target's folder, is flushed to disk and then renamed over the target,
so a failure mid-write leaves the previous file as it was and no partial
file behind.

One module a concern, imported one way (each only from those above it):

* ``_archive``: the zip container: :class:`ModelFileError`, the format's
  name and version, the member names and size bounds checked before
  inflating, the ``.npy`` header check, the fsync'd atomic writer;
* ``_graph``: the object-graph walker and its placeholders
  (:class:`_EstimatorRef`) for skvision estimators inside skops members;
* ``_trust``: the trust policy: the classes and callbacks a file may name,
  ``trusted=``, the parameters a file does not set, and the audit of a
  whole file before anything is built;
* ``_codec``: the JSON encoder (``_Writer``) and decoder (``_Decoder``);
* this package: ``save`` and ``load``.

The training state a checkpoint writes uses the same container and codec:
its format (``write_state`` / ``read_state``) is in
:mod:`skvision._checkpoint`.
"""

import json
import os
import warnings
import zipfile

from safetensors.torch import load as load_tensors

from ._archive import (
    FORMAT,
    FORMAT_VERSION,
    ModelFileError,
    _open_checked,
    _versions,
    _write_archive,
)
from ._codec import _Decoder, _Writer
from ._graph import _EstimatorRef as _EstimatorRef
from ._trust import _trusted_classes, _TrustPolicy

# Re-exported: skops members name the placeholder skvision._persistence._EstimatorRef
# (where it was defined before the package split) and import it from here at load.

__all__ = ["ModelFileError", "load", "save"]


def save(estimator, path):
    """Save a fitted model, a skvision estimator or a whole scikit-learn pipeline, without pickle.

    Parameters
    ----------
    estimator : skvision estimator or scikit-learn object
        Fitted or not: a skvision estimator, or any scikit-learn object
        graph holding them (``Pipeline``, ``ColumnTransformer``,
        ``FeatureUnion``, a fitted ``GridSearchCV`` or
        ``RandomizedSearchCV``, ``VotingClassifier``,
        ``StackingClassifier``, ``CalibratedClassifierCV``,
        ``TransformedTargetRegressor``, plain scikit-learn estimators...).
        skvision estimators are saved as their parameters and fitted
        attributes, network weights as safetensors; the scikit-learn parts
        with :func:`skops.io.dumps`, in the same file. skorch ``callbacks``
        are saved as their class and non-default parameters when those are
        plain data. An ``augment=`` callable that is not an ImageAugmenter,
        callbacks with other parameters and an ``accelerator`` are saved as
        None (with a warning for the first two): they only matter in
        training (pass a new accelerator to train on with accelerate).
    path : str or path-like
        The file to write (conventionally ``*.skv``). It is replaced
        atomically: on any failure the previous file stays as it was.

    See Also
    --------
    load : Load what ``save`` wrote.

    Examples
    --------
    >>> import os, tempfile
    >>> from sklearn.pipeline import make_pipeline
    >>> from skvision import CNNClassifier, load, save
    >>> from skvision.datasets import load_digit_images
    >>> from skvision.preprocessing import ChannelStandardizer
    >>> X, y = load_digit_images(return_X_y=True)
    >>> clf = CNNClassifier(filters=(8,), epochs=1, random_state=0).fit(X[:100], y[:100])
    >>> path = os.path.join(tempfile.mkdtemp(), "digits.skv")
    >>> save(clf, path)
    >>> (load(path).predict(X[:5]) == clf.predict(X[:5])).all()
    np.True_
    >>> pipe = make_pipeline(ChannelStandardizer(), CNNClassifier(filters=(8,), epochs=1,
    ...                                                           random_state=0))
    >>> _ = pipe.fit(X[:100], y[:100])
    >>> save(pipe, path)
    >>> (load(path).predict_proba(X[:5]) == pipe.predict_proba(X[:5])).all()
    np.True_
    """
    writer = _Writer()
    document = {"format": FORMAT, "format_version": FORMAT_VERSION, **_versions(),
                "estimator": writer.encode(estimator, type(estimator).__name__)}
    _write_archive(path, document, writer)


def load(path, *, trusted=None):
    """Load a model written by :func:`save`: an estimator or a whole pipeline.

    The whole file is checked before anything is built: every type it names
    must be allowed, nothing is ever unpickled. Allowed are skvision's
    estimators and networks, XGBoost's models, the skorch and skvision
    callbacks that cannot write files or reach the network (scoring,
    logging to the console, early stopping, gradient clipping, freezing,
    learning-rate schedules), the types :mod:`skops.io` trusts by default (scikit-learn's
    estimators, numpy, scipy) and the scikit-learn internals its
    meta-estimators keep (scorers and their metric functions,
    cross-validation splitters, ``Bunch``, calibration's internals).
    Pretrained weights files are never read (the file holds the trained
    weights), nor is the network used, and a model fitted on a GPU loads on
    a CPU-only machine. A file does not choose where the model writes: a
    saved ``checkpoint`` directory comes back as None, with a warning (set
    it again with ``set_params`` to resume into it).

    Parameters
    ----------
    path : str or path-like
        A file written by :func:`save`.
    trusted : list of str, default=None
        Type names, ``"module.Qualified.Name"``, that the file may name
        besides those: a user's network class (``backbone=MyNet``) or
        skorch callback class, imported and then built with the saved
        arguments; types in the scikit-learn part that skops does not trust
        by default, as :func:`skops.io.get_untrusted_types` lists them (e.g.
        your own transformer), passed on to :func:`skops.io.loads`. A file
        naming any other type is refused before anything is built.

    Returns
    -------
    estimator : skvision estimator or scikit-learn object
        What was saved, ready to predict; networks are on the device they
        were fitted on when it exists here, else on the CPU.

    Raises
    ------
    ModelFileError
        A ``ValueError`` subclass, the one error of a file that does not
        load: it is not a skvision model, is truncated, corrupt or altered,
        declares more data than it holds (a member's size in the zip
        directory, an array's shape in its header: checked before anything
        is inflated or allocated), holds a pickle payload, names a type that
        is not allowed and ``trusted`` does not list, or comes from a newer
        format version. The message names the file and the member at fault.

    See Also
    --------
    save : Write a model.
    skops.io.get_untrusted_types : The types of a skops file to review.

    Examples
    --------
    >>> import os, tempfile
    >>> from skvision import BoostedTreesClassifier, load, save
    >>> from sklearn.datasets import load_digits
    >>> X, y = load_digits(return_X_y=True)
    >>> model = BoostedTreesClassifier(n_estimators=20, random_state=0).fit(X, y)
    >>> path = os.path.join(tempfile.mkdtemp(), "trees.skv")
    >>> save(model, path)
    >>> (load(path).predict_proba(X) == model.predict_proba(X)).all()
    np.True_
    """
    path = os.fspath(path)
    if isinstance(trusted, str) or not all(isinstance(name, str) for name in trusted or ()):
        raise TypeError(f"trusted must be a list of class import paths (str); got {trusted!r}.")

    def read(archive):
        if archive.testzip() is not None:
            raise zipfile.BadZipFile("a member's checksum does not match")
        document = json.loads(archive.read("metadata.json"))
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise ModelFileError(f"{path!r} is not a skvision model file.")
        version = document.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ModelFileError(
                f"{path!r} was written by skvision {document.get('skvision')} in model format "
                f"{version}; this skvision ({_versions()['skvision']}) reads format "
                f"{FORMAT_VERSION} and older. Upgrade skvision to load it."
            )
        saved_major = str(document.get("skvision", "0")).split(".")[0]
        current_major = _versions()["skvision"].split(".")[0]
        if saved_major != current_major:
            warnings.warn(
                f"{path!r} was written by skvision {document.get('skvision')}; this is "
                f"{_versions()['skvision']}. Check its predictions.", UserWarning,
                stacklevel=3,
            )
        tensors = load_tensors(archive.read("tensors.safetensors"))
        policy = _TrustPolicy(_trusted_classes(), trusted or ())
        policy.audit(archive, document)  # refuses before anything is built
        decoder = _Decoder(archive, tensors, policy, format_version=version)
        return decoder.decode(document["estimator"])

    return _open_checked(path, "skvision model file", read)
