"""Images at URLs read by the processes of a cluster: dask workers and torchrun processes.

The processes are spawned, so they do not see what a test changes inside
its own process (``fsspec.config.conf``): they are configured as a user
configures a cluster, through environment variables set before it starts
(``FSSPEC_S3_ENDPOINT_URL``, ``FSSPEC_S3_KEY``, ``FSSPEC_S3_SECRET``, which
fsspec reads into its ``s3`` configuration when a process imports it).
"""

import io
import json
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from _servers import FAKE_KEY_ID, FAKE_SECRET, FileServer, moto_s3
from PIL import Image

from skvision import CNNClassifier
from skvision._data import scan_files
from skvision.parallel import apply_blocks


def _jpeg(color, seed):
    """A small JPEG of noise around ``color``."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(color) + rng.normal(0, 20, (12, 12, 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _images(n):
    """``n`` JPEGs, alternately reddish and bluish: (key -> bytes, labels)."""
    colors = {"red": (200, 40, 40), "blue": (40, 40, 200)}
    labels = ["red" if i % 2 == 0 else "blue" for i in range(n)]
    files = {f"{label}/{i:03d}.jpg": _jpeg(colors[label], i) for i, label in enumerate(labels)}
    return files, np.array(labels)


def test_apply_blocks_reads_s3_urls_on_a_local_cluster(monkeypatch):
    """A dask DataFrame of s3:// URLs, predicted on two worker processes, as predict does."""
    pytest.importorskip("s3fs")
    pytest.importorskip("moto")
    distributed = pytest.importorskip("distributed")
    dd = pytest.importorskip("dask.dataframe")
    import dask
    import dask.array as da
    import pandas as pd

    from skvision.parallel import worker_config

    files, labels = _images(20)
    with moto_s3(monkeypatch, files) as endpoint:
        # What the workers see: fsspec's s3 configuration from the environment
        # (the test process's own configuration was set by moto_s3 directly:
        # fsspec read its environment variables when it was imported).
        monkeypatch.setenv("FSSPEC_S3_ENDPOINT_URL", endpoint)
        monkeypatch.setenv("FSSPEC_S3_KEY", FAKE_KEY_ID)
        monkeypatch.setenv("FSSPEC_S3_SECRET", FAKE_SECRET)
        urls = [f"s3://images/{key}" for key in files]
        model = CNNClassifier(filters=(4,), epochs=1, batch_size=8, image_size=8,
                              precision="32", device="cpu", random_state=0).fit(urls, labels)
        expected = model.predict(urls)
        proba = model.predict_proba(urls)

        frame = dd.from_pandas(pd.DataFrame({"image": urls}), npartitions=4)
        with dask.config.set(worker_config()), distributed.LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True,
                dashboard_address=":0") as cluster, distributed.Client(cluster) as client:
            predicted = apply_blocks(model, frame).compute()
            lazy_proba = apply_blocks(model, frame, "predict_proba").compute()
            # Both workers took part, each in its own process (no shared fsspec state).
            hosts = client.run(lambda: __import__("os").getpid())
            assert len(set(hosts.values())) == 2
            # A dask Series of the URLs, and an array of them, work alike.
            series = apply_blocks(model, frame["image"]).compute()
            array = apply_blocks(model, da.from_array(np.array(urls, object), chunks=5)).compute()
    np.testing.assert_array_equal(predicted, expected)
    np.testing.assert_array_equal(series, expected)
    np.testing.assert_array_equal(array, expected)
    np.testing.assert_allclose(lazy_proba, proba, atol=1e-6)


def test_data_parallel_processes_each_read_their_share_of_the_urls(tmp_path):
    """Under torchrun (2 processes), each reads its part of the headers and of the batches.

    The header scan at the top of fit is split between the processes and its
    results gathered; each trains on its shard of each batch. What each
    process asked skvision's storage layer to read is recorded by the worker.
    """
    pytest.importorskip("accelerate")
    pytest.importorskip("aiohttp")
    from test_distributed import _launch

    files, labels = _images(16)
    with FileServer({f"/{key}": content for key, content in files.items()}) as server:
        urls = [f"{server.url}/{key}" for key in files]
        (tmp_path / "remote.json").write_text(json.dumps(
            {"urls": urls, "labels": labels.tolist()}))
        status, output = _launch(tmp_path, "remote")
        requests = Counter(server.requests)
    assert status == 0, output[-5000:]
    reads = [json.loads((tmp_path / f"reads_{rank}.json").read_text()) for rank in (0, 1)]

    # The headers: each URL scanned once, by one process; the two share the work.
    scanned = [Counter(read["scan"]) for read in reads]
    assert all(max(counts.values()) == 1 for counts in scanned)
    assert not scanned[0].keys() & scanned[1].keys()
    assert scanned[0].keys() | scanned[1].keys() == set(urls)
    assert [len(counts) for counts in scanned] == [8, 8]
    # The epoch: each process read the images of its shard only, once.
    trained = [Counter(read["train"]) for read in reads]
    assert all(max(counts.values()) == 1 for counts in trained)
    assert not trained[0].keys() & trained[1].keys()
    assert trained[0].keys() | trained[1].keys() == set(urls)
    # The server agrees: two requests per image in all (its header, its body).
    assert requests == Counter({f"/{key}": 2 for key in files})
    # And the processes trained one model.
    state, other = (torch.load(tmp_path / f"weights_remote_{rank}.pt") for rank in (0, 1))
    assert all(torch.equal(state[key], other[key]) for key in state)


def _shared_scans(paths, world=2, **kwargs):
    """What each of ``world`` processes of a data-parallel fit gets from scan_files.

    The processes are threads here; their gather is collective, as accelerate's.
    Returns each one's result, or the error it raised.
    """
    barrier, parts = threading.Barrier(world), [None] * world

    def scan(rank):
        def gather(value):
            parts[rank] = value
            barrier.wait()
            return list(parts)

        try:
            return scan_files(paths, share=(rank, world, gather), **kwargs)
        except Exception as error:  # compared below
            return error

    with ThreadPoolExecutor(world) as pool:
        return list(pool.map(scan, range(world)))


def test_a_shared_scan_ends_alike_on_every_process(tmp_path):
    files, _ = _images(7)
    paths = []
    for key, content in files.items():
        path = tmp_path / key.replace("/", "_")
        path.write_bytes(content)
        paths.append(str(path))
    Image.new("L", (5, 3)).save(tmp_path / "gray.png")
    paths.insert(3, str(tmp_path / "gray.png"))
    expected = scan_files(paths)
    for result in _shared_scans(paths, world=3):
        np.testing.assert_array_equal(result[0], expected[0])
        assert result[1:] == expected[1:] and result[2][3] == "L"

    # A file one process scanned fails every process's fit, with the same error.
    paths[5] = str(tmp_path / "missing.jpg")
    errors = _shared_scans(paths)
    assert all(isinstance(error, FileNotFoundError) for error in errors)
    assert str(errors[0]) == str(errors[1]) and "missing.jpg" in str(errors[0])
    # on_error="skip": every process leaves out the same file.
    with pytest.warns(UserWarning, match="missing.jpg"):
        skipped = _shared_scans(paths, on_error="skip")
    for kept, sizes, _ in skipped:
        np.testing.assert_array_equal(kept, [i for i in range(len(paths)) if i != 5])
        assert len(sizes) == len(paths) - 1
