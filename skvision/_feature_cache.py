"""Features cached per image: ``PretrainedFeatureExtractor(memory=...)``.

A grid search over the models after a pretrained extractor runs the
backbone over every image once per fold and candidate, though an image's
features never change; scikit-learn's ``Pipeline(memory=)`` caches whole
``fit_transform`` calls, which miss for every fold. This cache keeps one
feature vector per image, so that each image's features are computed once
across folds, candidates and sessions.

Keys
----
An entry is found by two keys, both content hashes:

* the **model key** (:func:`model_key`): everything that changes the
  features other than the image: the backbone (its name or the class path
  of a user's network, its ``backbone__`` arguments, an ``hf-hub:``
  configuration), the identity of its weights (:func:`weights_identity`:
  the hash of the weights file or of the state dict, never a file name),
  ``layer``, ``pooling``, ``image_size``, the precision as resolved on the
  machine that runs, the device kind (a GPU by its name), and the versions
  of skvision, torch and timm, whose kernels and architectures decide the
  last bits of float32 features. ``batch_size``, ``verbose`` and
  ``device="auto"`` against its resolved value change nothing and are not
  in it.
* the **image key** (:func:`image_keys`): for an image in an array, the hash
  of its pixels with their dtype and shape (the dtype decides the scaling);
  for a local file, the hash of its bytes with the size, channels and
  interpolation it is decoded with. Bytes, not path + size + modification
  time: the key then follows the content, so a file rewritten in place
  within the file system's time resolution, or restored with an old time
  by ``rsync``, ``tar`` or ``git``, never gets stale features, and a file
  moved, copied or read by another worker under another path still hits.
  Reading a file's bytes costs far less than decoding it and running the
  network. For a URL, the object's version or ETag where the store gives
  one (S3's ``VersionId``/``ETag``, GCS's ``generation``, an HTTP
  ``ETag``), with the URL, so a warm cache reads no object; else the hash
  of its bytes. The same pixels as an array and as a file are two entries:
  files are decoded and resized on their own path (``skvision._pixels``),
  and each input gets exactly what it gets without a cache.

Storage
-------
Entries live in the ``joblib.Memory`` location, under
``<location>/joblib/skvision_features/model-<model key>/<image key>/output.pkl``,
one joblib pickle of a float32 vector per image, in the layout of joblib's
own items, so ``Memory.clear()`` empties the cache and
``Memory.reduce_size(bytes_limit=...)`` bounds it (least recently used
images first, as joblib does for its items). Writes go to a temporary file
in the same directory, renamed into place with ``os.replace`` (atomic on
POSIX and Windows), and the temporary file is removed if writing fails:
processes writing the same entry (``n_jobs``, several searches at once)
each write a whole file and the last rename wins with the same content; a
reader sees a whole entry or none. A write that fails (disk full, an entry
removed meanwhile by a clean-up) warns and the features are returned
uncached. A local directory is per machine: under the dask or ray joblib
backends, each worker machine has its own cache unless the location is on
a shared file system.

Identical results
-----------------
An image's cached features are those computed for it the first time.
PyTorch's kernels can give an image's features last-bit differences that
depend on its batch: a lone image takes other CPU kernels (differences near
1e-5), and its place in a batch can change the last bit of a float32
(measured: relative 1e-6 on the tiny test network, none on
EfficientNet-Lite0 on a CPU); cuDNN chooses algorithms by batch size. So
without a cache an image already gets slightly different features in each
fold of a search (each fold computes it in other batches); with the cache it
gets the same features in every fold. How results are kept identical:

* a ``transform`` computes its misses in the order and batches it would
  without a cache, so a call whose images all miss returns, bit for bit,
  what it returns without one; hits return exactly the stored float32
  vector, and ``transform`` returns float32 either way;
* the extractor never runs a batch of one image (it runs the image twice),
  with or without a cache, which removes the largest of these differences;
* differences in the last bit of a feature do not move the decisions of a
  model on top, so a search's scores are the same: the tests and
  ``bench/feature_cache.py`` assert ``cv_results_`` test scores identical
  with and without the cache.
"""

import contextlib
import functools
import hashlib
import os
import pickle
import threading
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor

import joblib
import numpy as np
import torch
from joblib import numpy_pickle

from ._data import ArrayImages, FileImages
from ._storage import _filesystem, is_url, read_bytes
from ._version import __version__
from .nn._hub import hub_weights_file
from .nn.backbones import REGISTRY, backbone_name, is_user_network

__all__ = ["FeatureCache", "as_memory", "image_keys", "model_key", "state_dict_hash",
           "weights_identity"]

DIRECTORY = "skvision_features"
ITEM = "output.pkl"
# The entry of a model's facts (n_features_out_, how files are decoded): a
# 32-hex name, so that joblib's clean-up sees it as an item too.
FACTS_KEY = hashlib.md5(b"skvision extractor facts").hexdigest()
# Object metadata that names one version of a stored object, by store.
_VERSION_FIELDS = ("VersionId", "version_id", "generation", "ETag", "etag", "md5Hash",
                   "Content-MD5")
_URL_THREADS = 16

# One lazily built network at a time per process (threads sharing an extractor).
build_lock = threading.Lock()


def as_memory(memory):
    """A ``joblib.Memory`` from the ``memory`` parameter, or None for no cache.

    As scikit-learn's ``memory`` parameters: None, a directory path, or a
    ``joblib.Memory`` (one with ``location=None`` caches nothing).
    """
    if memory is None:
        return None
    if isinstance(memory, (str, os.PathLike)):
        memory = joblib.Memory(location=os.fspath(memory), verbose=0)
    if getattr(memory, "store_backend", None) is None:
        return None
    return memory


def _digest():
    return hashlib.blake2b(digest_size=16)  # 32 hex digits, as joblib's item names


def state_dict_hash(state):
    """A hash of a state dict's names, dtypes, shapes and values."""
    digest = _digest()
    for name, tensor in state.items():
        tensor = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@functools.lru_cache(maxsize=32)
def _file_hash(path, size, mtime_ns, inode):
    # Memoized on the file's identity within one process: a grid search
    # fits many clones, and a weights file is hashed once.
    with open(path, "rb") as file:
        return hashlib.file_digest(file, _digest).hexdigest()


def file_hash(path):
    """The hash of a file's bytes."""
    path = os.fspath(path)
    status = os.stat(path)
    return _file_hash(os.path.abspath(path), status.st_size, status.st_mtime_ns, status.st_ino)


def weights_identity(backbone, weights):
    """What the weights of ``build_backbone(backbone, weights=weights)`` are, as a hash.

    None where only the built network knows: random weights (a name with
    ``weights=False``, a user's class with no weights), which the caller
    hashes from the network (:func:`state_dict_hash`).
    """
    if isinstance(weights, dict):
        return "state:" + state_dict_hash(weights)
    if weights is not None and weights is not False:
        if not os.path.isfile(weights):
            return None  # building the network says what is wrong with the path
        return "file:" + file_hash(weights)
    if is_user_network(backbone):
        if isinstance(backbone, type):
            return None  # its constructor draws the weights
        return "state:" + state_dict_hash(backbone.state_dict())
    if weights is False:
        return None
    entry = REGISTRY.get(backbone)
    return "file:" + file_hash(entry.weights_file() if entry else hub_weights_file(backbone))


def _device_name(device):
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return device.type


def model_key(extractor, weights):
    """The hash of everything besides the image that decides an extractor's features.

    ``weights``: :func:`weights_identity`, or the built network's hash.
    The precision and the device are added at each ``transform``
    (:meth:`FeatureCache.for_run`), where "auto" precision is decided.
    """
    import timm

    return joblib.hash({
        "skvision": __version__, "torch": torch.__version__, "timm": timm.__version__,
        "backbone": backbone_name(extractor.backbone),
        "arguments": extractor._backbone_arguments(),
        "hub_config": extractor.hub_config_,
        "weights": weights, "layer": int(extractor.layer), "pooling": extractor._pooling,
        "image_size": extractor._image_size,
    })


def _array_key(image):
    digest = _digest()
    digest.update(f"array|{image.dtype.str}|{image.shape}|".encode())
    digest.update(np.ascontiguousarray(image).data)
    return digest.hexdigest()


def _url_versions(urls):
    """Each URL's version or ETag from its store, or None where it gives none."""

    def version(url):
        try:
            fs, path = _filesystem(url)
            info = fs.info(path)
        except Exception:  # unreadable: the data layer reports it when decoding
            return None
        for field in _VERSION_FIELDS:
            if info.get(field):
                return f"{field}={info[field]}"
        return None

    with ThreadPoolExecutor(min(_URL_THREADS, len(urls))) as pool:
        return list(pool.map(version, urls))


def _content_keys(paths):
    """A key of each file's content: URL + version, or the hash of the bytes; None if unread."""
    keys = [None] * len(paths)
    remote = [index for index, path in enumerate(paths) if is_url(path)]
    for index, path in enumerate(paths):
        if index not in remote:
            with contextlib.suppress(OSError), open(path, "rb") as file:
                keys[index] = "bytes:" + hashlib.file_digest(file, _digest).hexdigest()
    if remote:
        versions = _url_versions([paths[i] for i in remote])
        unversioned = []
        for index, found in zip(remote, versions):
            if found is None:
                unversioned.append(index)
            else:
                keys[index] = f"url:{paths[index]}|{found}"
        if unversioned:
            for index, content in zip(unversioned, read_bytes([paths[i] for i in unversioned])):
                if not isinstance(content, BaseException):
                    keys[index] = "bytes:" + hashlib.blake2b(content, digest_size=16).hexdigest()
    return keys


def image_keys(images):
    """The key of each image of an image set (None where it cannot be had: computed uncached)."""
    if isinstance(images, ArrayImages):
        rows = range(len(images.array)) if images.index is None else images.index
        return [_array_key(images.array[row]) for row in rows]
    if isinstance(images, FileImages):
        decoding = f"file|{images.size}|{images.n_channels}|{images.resize}|{images.interpolation}"
        return [None if key is None else joblib.hash((decoding, key))
                for key in _content_keys(images.paths)]
    return [None] * len(images)  # a list of differently sized tensors: not cached


class FeatureCache:
    """The entries of one model key in a ``joblib.Memory`` location."""

    def __init__(self, memory, key):
        # From ``location``, not the store's: joblib adds "joblib" to a str
        # location but not to a Path, and both must find one cache.
        self.root = os.path.join(os.fspath(memory.location), "joblib", DIRECTORY)
        self.key = key
        self.directory = os.path.join(self.root, f"model-{key}")

    def for_run(self, precision, device):
        """The cache of this model at a resolved precision on a device."""
        return _Subcache(self, joblib.hash((self.key, precision, _device_name(device))))

    def facts(self):
        """What ``fit`` needs without building the network, or None."""
        facts = _read(os.path.join(self.directory, FACTS_KEY, ITEM))
        return facts if isinstance(facts, dict) else None

    def store_facts(self, facts):
        _write(os.path.join(self.directory, FACTS_KEY), facts)


class _Subcache:
    def __init__(self, cache, key):
        self.directory = os.path.join(cache.root, f"model-{key}")

    def load(self, key, n_features):
        features = _read(os.path.join(self.directory, key, ITEM))
        if (isinstance(features, np.ndarray) and features.dtype == np.float32
                and features.shape == (n_features,)):
            return features
        return None

    def store(self, key, features):
        _write(os.path.join(self.directory, key), np.ascontiguousarray(features))


def _read(path):
    try:
        with open(path, "rb") as file:
            return numpy_pickle.load(file)
    except FileNotFoundError:
        return None
    except (OSError, EOFError, ValueError, pickle.UnpicklingError):
        return None  # unreadable (never half-written: writes are atomic): computed again


def _write(directory, value):
    """Write ``value`` at ``directory/output.pkl`` atomically: temporary file, then os.replace."""
    target = os.path.join(directory, ITEM)
    temporary = f"{target}.{uuid.uuid4().hex}-{os.getpid()}.tmp"
    try:
        os.makedirs(directory, exist_ok=True)
        with open(temporary, "wb") as file:
            numpy_pickle.dump(value, file)
        os.replace(temporary, target)
    except OSError as error:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        warnings.warn(f"Could not write to the feature cache ({error}); the features are "
                      "returned uncached.", RuntimeWarning, stacklevel=3)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
