"""The model file's container: the zip, its members, their bounds and the atomic write.

A skvision file (a model, or a checkpoint's training state) is one zip:
``metadata.json`` (the JSON document), ``arrays/<n>.npy``,
``tensors.safetensors`` and ``sklearn/<n>.skops``; no other member name is
allowed (``_MEMBER``). Reading is bounded before anything is inflated or
allocated: every member's size from the zip directory
(``_check_member_sizes``), every ``.npy`` header's dtype and shape against
the bytes it holds (``_check_array``), and any failure of the libraries a
file goes through becomes one :class:`ModelFileError` naming the file
(``_open_checked``). Writing goes to a temporary file in the target's
folder, is flushed to disk and renamed over the target
(``_write_archive``).

This module knows nothing of what the JSON holds (``_codec``) nor of which
types a file may name (``_trust``).
"""

import io
import json
import math
import os
import re
import struct
import tempfile
import zipfile
import zlib

import numpy as np
import sklearn
import torch
from safetensors import SafetensorError
from safetensors.torch import save as save_tensors


class ModelFileError(ValueError):
    """A model or checkpoint file that :func:`skvision.load` refuses.

    The file is not a skvision file, is truncated, corrupt or altered,
    declares more data than it holds or than a model needs, holds a pickle
    payload, or names a type that is not allowed (``trusted=``). The
    message names the file and, where one is at fault, the member. A
    subclass of ``ValueError``.

    See Also
    --------
    load : Load a model file.

    Examples
    --------
    >>> import os, tempfile
    >>> import skvision
    >>> path = os.path.join(tempfile.mkdtemp(), "notes.skv")
    >>> with open(path, "w") as file:
    ...     _ = file.write("not a model")
    >>> try:
    ...     skvision.load(path)
    ... except skvision.ModelFileError as error:
    ...     print(type(error).__name__, isinstance(error, ValueError))
    ModelFileError True
    """


# Bounds checked from the zip directory before any member is inflated.
# Tensors are stored uncompressed, so a member of a genuine file inflates at
# most by deflate's ratio on JSON and small arrays; a zip bomb by ~1000:1.
_MAX_INFLATION = 100
_MAX_MEMBER_BYTES = 64 * 2**30
_MAX_METADATA_BYTES = 256 * 2**20
# What a load error can be raised as by the libraries a file goes through.
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, struct.error, KeyError, IndexError, EOFError,
                json.JSONDecodeError, UnicodeDecodeError, SafetensorError, TypeError,
                AttributeError, OverflowError, MemoryError,
                RuntimeError)  # torch's load_state_dict on tensors of other shapes


def _check_member_sizes(archive, path):
    """Refuse a member that declares more bytes than any model file holds, before inflating it."""
    for info in archive.infolist():
        limit = (_MAX_METADATA_BYTES if info.filename == "metadata.json"
                 else _MAX_MEMBER_BYTES)
        if (info.file_size > limit
                or info.file_size > _MAX_INFLATION * info.compress_size + 2**20):
            raise ModelFileError(
                f"{path!r}: its member {info.filename!r} declares {info.file_size:,} bytes "
                f"from {info.compress_size:,} compressed, more than a skvision file holds: "
                "refusing to inflate it (the file is altered or crafted)."
            )


def _open_checked(path, kind, read):
    """Run ``read(archive)`` on the zip at ``path``; any failure becomes a ModelFileError."""
    try:
        with zipfile.ZipFile(path) as archive:
            _check_member_sizes(archive, path)
            return read(archive)
    except ModelFileError:
        raise
    except ValueError as error:
        raise ModelFileError(f"{path!r}: {error}") from error
    except _READ_ERRORS as error:
        raise ModelFileError(
            f"{path!r} is not a readable {kind} (truncated or altered?): "
            f"{type(error).__name__}: {error}"
        ) from error


FORMAT = "skvision-model"
# 1: one skvision estimator. 2: any scikit-learn object graph (skops
# members), skorch callbacks by class and parameters, torch.device and path values.
# 3: an hf-hub: backbone's hub configuration kept (hub_config_), so loading
# builds it without the hub.
FORMAT_VERSION = 3

# What a file may hold: the random generators it may name, its members' names.
_BIT_GENERATORS = ("MT19937", "PCG64", "PCG64DXSM", "Philox", "SFC64")
_MEMBER = re.compile(r"metadata\.json|tensors\.safetensors|arrays/\d+\.npy|sklearn/\d+\.skops")


def _check_array(data, where):
    """Refuse an ``.npy`` member holding Python objects (a pickle) before it is read."""
    buffer = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(buffer)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, _, dtype = read_header(buffer)
    except (ValueError, OSError, EOFError) as error:
        raise ModelFileError(f"The model file's {where} is not a readable array: {error}") from None
    if dtype.hasobject:
        raise ModelFileError(
            f"The model file's {where} is an array of Python objects, a pickle payload: "
            "refusing to load it (skvision files never hold pickles)."
        )
    # Checked before numpy allocates the array its header declares.
    declared = math.prod(shape) * dtype.itemsize
    if declared != len(data) - buffer.tell():
        raise ModelFileError(
            f"The model file's {where} declares an array of shape {shape} and dtype {dtype} "
            f"({declared:,} bytes) but holds {len(data) - buffer.tell():,} bytes of data: "
            "refusing to read it (the file is truncated, altered or crafted)."
        )


def _versions():
    """The versions a file records: skvision's, torch's and scikit-learn's."""
    from .._version import __version__

    return {"skvision": __version__, "torch": torch.__version__,
            "sklearn": sklearn.__version__}


def _write_archive(path, document, writer, *, compression=zipfile.ZIP_DEFLATED):
    """Write ``document`` (JSON), ``writer``'s arrays and tensors to the zip ``path``, atomically.

    A temporary file in the target's folder is written, flushed to disk and
    renamed over the target (then the folder's entry is flushed too): a
    failure at any point leaves the previous file as it was and no
    temporary file behind.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    handle = tempfile.NamedTemporaryFile(dir=folder, prefix=".skvision-", suffix=".tmp",
                                         delete=False)
    try:
        with handle, zipfile.ZipFile(handle, "w", compression=compression) as archive:
            archive.writestr("metadata.json", json.dumps(document, allow_nan=False))
            for name, data in writer.arrays.items():
                archive.writestr(name, data)
            # Stored, not deflated: float weights shrink by ~9% at ~20 MB/s (a
            # detector's 230 MB of weights and optimizer state: 10 s of saving).
            archive.writestr("tensors.safetensors", save_tensors(writer.tensors),
                             compress_type=zipfile.ZIP_STORED)
            for name, data in writer.skops.items():
                archive.writestr(name, data)
        with open(handle.name, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(handle.name, path)
    except BaseException:
        if os.path.exists(handle.name):
            os.unlink(handle.name)
        raise
    _sync_folder(folder)


def _sync_folder(folder):
    """Flush a folder's entries (a rename) to disk, where the system allows it."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:  # Windows opens no folder
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
