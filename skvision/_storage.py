"""Where image files live: local paths, and URLs read through fsspec.

Everything that reads an image file's bytes goes through :func:`open_sources`
(whole files) or :func:`read_bytes` (ranges); :mod:`skvision._data` decodes
what they return. Local paths are handed to Pillow as they are. A URL
(``s3://``, ``gs://``, ``az://``, ``http(s)://``, or a chain such as
``zip://cat.jpg::s3://bucket/images.zip``) is read with fsspec, whose
filesystems take their credentials and options from fsspec's configuration
and the cloud SDKs' own (environment variables, config files, instance
roles): nothing here holds a secret.

Remote reads are limited by latency, not bandwidth, so a batch of URLs is
read concurrently: on fsspec's event loop for its asynchronous filesystems
(S3, GCS, Azure, HTTP), on that loop's threads for the others (a ``zip::``
chain). Each request has a timeout; transient failures (timeouts, 5xx and 429 answers,
dropped connections, cut-short bodies) are retried with exponential backoff
and jitter a bounded number of times. Three environment variables tune
this, read at each call so that dask workers and ``torchrun`` processes see
them too:

``SKVISION_REMOTE_TIMEOUT``
    Seconds one request may take (default 60; 0 for no limit).
``SKVISION_REMOTE_RETRIES``
    Retries of a transient failure (default 4).
``SKVISION_REMOTE_CONCURRENCY``
    Requests in flight at once per batch (default 64).

Errors name the URL through :func:`redact`: presigned URLs carry their
signature in the query string, and ``https://user:password@host`` its
password, so neither is ever shown.
"""

import asyncio
import io
import os
import random
import re
import sys

__all__ = [
    "is_url",
    "redact",
    "redact_text",
    "open_sources",
    "read_bytes",
    "list_files",
    "remote_settings",
]

_EXTRA = 'pip install "scikit-vision[cloud]"'
# Protocols that name the local disk: read as plain paths.
_LOCAL_PROTOCOLS = {"file", "local"}
_URL = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.\-]*)://")
# user:password@ after the scheme, and a query string, wherever they appear
# in a text (a URL inside an error message of fsspec, aiohttp or botocore).
_USERINFO = re.compile(r"(?<=://)[^/\s@'\"]+@")
_QUERY = re.compile(r"\?[^\s'\"]*")


def is_url(path):
    """Whether ``path`` (a str) is read through fsspec rather than as a local path."""
    if "::" in path:
        return True
    match = _URL.match(path)
    return match is not None and match.group(1).lower() not in _LOCAL_PROTOCOLS


def display_name(path):
    """``path`` as errors and warnings show it: a URL redacted, a local path as it is."""
    return redact(path) if is_url(path) else path


def redact(url):
    """``url`` without its user info and query string, which may hold secrets.

    >>> redact("https://user:token@example.com/a.jpg?X-Amz-Signature=abc")
    'https://***@example.com/a.jpg?***'
    """
    return redact_text(url)


def redact_text(text):
    """``text`` with every URL's user info and query string replaced by ``***``."""
    return _QUERY.sub("?***", _USERINFO.sub("***@", text))


def remote_settings():
    """(timeout in seconds, retries, concurrency) from the environment."""
    def number(name, default, kind):
        value = os.environ.get(name)
        if value is None or value == "":
            return default
        try:
            parsed = kind(value)
        except ValueError:
            parsed = None
        if parsed is None or parsed < 0 or (kind is int and name.endswith("CONCURRENCY")
                                            and parsed < 1):
            raise ValueError(f"{name} must be a non-negative {kind.__name__}; got {value!r}.")
        return parsed

    return (number("SKVISION_REMOTE_TIMEOUT", 60.0, float),
            number("SKVISION_REMOTE_RETRIES", 4, int),
            number("SKVISION_REMOTE_CONCURRENCY", 64, int))


def _import_fsspec():
    try:
        import fsspec
    except ImportError as error:
        raise ImportError(f"Reading images from URLs needs fsspec: {_EXTRA}.") from error
    return fsspec


def _filesystem(url, storage_options=None):
    """fsspec's filesystem for ``url`` and the path in it (clear error when unknown)."""
    fsspec = _import_fsspec()
    try:
        return fsspec.core.url_to_fs(url, **(storage_options or {}))
    except ImportError as error:
        raise ImportError(
            f"Reading {redact(url)!r} needs a filesystem package that is not installed "
            f"({error}); {_EXTRA} installs s3fs, gcsfs, adlfs and aiohttp."
        ) from None
    except ValueError as error:
        raise ValueError(f"Cannot read {redact(url)!r}: {redact_text(str(error))}") from None


# --------------------------------------------------------------------------
# Which failures are worth another try.


def _http_status(error):
    status = getattr(error, "status", None)
    if status is None:
        status = getattr(error, "code", None)
    return status if isinstance(status, int) else None


def _transient(error):
    """Whether ``error`` may pass on a retry: a timeout, a dropped or cut connection, a 5xx."""
    if isinstance(error, (FileNotFoundError, PermissionError, IsADirectoryError,
                          NotADirectoryError)):
        return False
    if isinstance(error, (TimeoutError, asyncio.TimeoutError, ConnectionError)):
        return True
    status = _http_status(error)
    if status is not None:
        return status >= 500 or status in (408, 429)
    aiohttp = sys.modules.get("aiohttp")
    if aiohttp is not None and isinstance(error, aiohttp.ClientError):
        return True  # payload cut short, server disconnected, connection reset
    fsspec = sys.modules.get("fsspec")
    if fsspec is not None and isinstance(error, fsspec.exceptions.FSTimeoutError):
        return True
    # botocore/s3fs turn what they could not retry into OSError; the rest
    # (a bad range, a malformed URL) are ValueError and friends.
    return type(error) is OSError


def _backoff(attempt):
    """Seconds to wait before retry ``attempt`` (0-based): exponential, with full jitter."""
    return random.uniform(0, min(10.0, 0.25 * 2**attempt))


def _permission_error(action, url):
    return PermissionError(
        f"Permission denied {action} {redact(url)!r}: check the credentials that fsspec "
        "and the cloud SDK find (environment, config files, instance role)."
    )


def _read_error(url, error, attempts, timeout):
    """The error for ``url`` that could not be read: its kind kept, its URL redacted."""
    name = redact(url)
    status = _http_status(error)
    if isinstance(error, FileNotFoundError) or status == 404:
        return FileNotFoundError(f"Image file not found: {name!r}.")
    if isinstance(error, PermissionError) or status in (401, 403):
        return _permission_error("reading", url)
    tries = f"after {attempts} attempt{'s' if attempts > 1 else ''}"
    if isinstance(error, (TimeoutError, asyncio.TimeoutError)):
        return TimeoutError(
            f"Reading {name!r} timed out {tries} ({timeout:g} s each; "
            "SKVISION_REMOTE_TIMEOUT and SKVISION_REMOTE_RETRIES set the limits)."
        )
    detail = redact_text(str(error)) or type(error).__name__
    return OSError(f"Cannot read {name!r} {tries}: {type(error).__name__}: {detail}")


# --------------------------------------------------------------------------
# Reading bytes.


async def _read_all(fs, items, start, end, settings):
    """Read ``(url, path)`` items of ``fs`` concurrently: one retry policy for every filesystem.

    An asynchronous filesystem's reads run on the event loop; a synchronous
    one's (a ``zip::`` chain) in the loop's threads, under the same timeout.
    """
    timeout, retries, concurrency = settings
    semaphore = asyncio.Semaphore(concurrency)
    if getattr(fs, "async_impl", False):
        if start is None and end is None:
            # An open range: one GET. Without a range s3fs first asks for the
            # object's size (to split large reads), a second round trip per image.
            start = 0

        def request(path):
            return fs._cat_file(path, start=start, end=end)
    else:
        def request(path):
            return asyncio.to_thread(fs.cat_file, path, start=start, end=end)

    async def read_one(url, path):
        async with semaphore:
            for attempt in range(retries + 1):
                try:
                    return await asyncio.wait_for(request(path), timeout or None)
                except Exception as error:  # classified, then returned
                    if attempt == retries or not _transient(error):
                        return _read_error(url, error, attempt + 1, timeout)
                await asyncio.sleep(_backoff(attempt))

    return await asyncio.gather(*(read_one(url, path) for url, path in items))


def read_bytes(urls, start=None, end=None):
    """The bytes of each URL (``[start, end)`` of it), read concurrently, in order.

    A URL that cannot be read gives, in its place, the error to raise: a
    ``FileNotFoundError``, ``PermissionError``, ``TimeoutError`` or
    ``OSError`` naming the redacted URL. Transient failures are retried first.
    """
    from fsspec.asyn import get_loop, sync

    settings = remote_settings()
    results = [None] * len(urls)
    groups = {}
    for index, url in enumerate(urls):
        try:
            fs, path = _filesystem(url)
        except (ImportError, ValueError) as error:
            results[index] = error
            continue
        groups.setdefault(id(fs), (fs, []))[1].append((index, url, path))
    for fs, members in groups.values():
        loop = fs.loop if getattr(fs, "async_impl", False) else get_loop()
        contents = sync(loop, _read_all, fs, [(url, path) for _, url, path in members],
                        start, end, settings)
        for (index, _, _), content in zip(members, contents):
            results[index] = content
    return results


def open_sources(paths, errors="raise"):
    """What Pillow opens for each of ``paths``: a local path as it is, a URL's bytes.

    URLs are read together, concurrently. A URL that cannot be read raises
    its error (naming it, redacted), or with ``errors="return"`` leaves the
    error in its place.
    """
    remote = [index for index, path in enumerate(paths) if is_url(path)]
    sources = list(paths)
    if not remote:
        return sources
    for index, content in zip(remote, read_bytes([paths[i] for i in remote])):
        if isinstance(content, BaseException) and errors == "raise":
            raise content
        sources[index] = content if isinstance(content, BaseException) else io.BytesIO(content)
    return sources


def list_files(url, storage_options=None):
    """Every file under the prefix ``url``: ``(path relative to url, file URL)`` pairs, sorted.

    A chained URL's files keep its chain (``zip://a/b.jpg::s3://bucket/x.zip``).
    """
    fs, root = _filesystem(url, storage_options)
    chain = url.partition("::")[2]
    try:
        if not fs.isdir(root):
            raise FileNotFoundError(root)
        found = fs.find(root)
    except FileNotFoundError:
        raise FileNotFoundError(f"Image folder not found: {redact(url)!r}.") from None
    except PermissionError:
        raise _permission_error("listing", url) from None
    root = root.rstrip("/")
    relative = sorted(path[len(root):].lstrip("/") for path in found)

    def as_url(relative_path):
        full = fs.unstrip_protocol(f"{root}/{relative_path}")
        return f"{full}::{chain}" if chain else full

    return [(relative_path, as_url(relative_path)) for relative_path in relative]
