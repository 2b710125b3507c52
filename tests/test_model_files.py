"""Model files that do not load: every failure is ``skvision.ModelFileError``, bounded in time and memory.

A file from elsewhere may be truncated, corrupt, altered or crafted. Sizes
are checked from the zip directory and the ``.npy`` headers before anything
is inflated or allocated, and whatever the libraries a file goes through
raise (zipfile, zlib, json, safetensors, numpy) comes out as the one public
error naming the file; a file that loads predicts exactly as the original.
"""

import io
import json
import time
import tracemalloc
import warnings
import zipfile

import numpy as np
import pytest
from sklearn.datasets import load_digits

import skvision
from skvision import CNNClassifier, ModelFileError

MEMORY_LIMIT = 200 * 2**20


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A small fitted CNN's file bytes, its members and its predictions on a few images."""
    X, y = load_digits(return_X_y=True)
    X = X.reshape(-1, 8, 8)[:200] / 16
    model = CNNClassifier(filters=(4,), epochs=1, device="cpu", random_state=0).fit(X, y[:200])
    path = tmp_path_factory.mktemp("model") / "model.skv"
    skvision.save(model, path)
    data = path.read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    return data, members, X[:8], model.predict_proba(X[:8])


def _zip(members, compression=zipfile.ZIP_STORED):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _refused_within_bounds(path, match):
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(ModelFileError, match=match):
            skvision.load(path)
        seconds = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seconds < 5 and peak < MEMORY_LIMIT, (seconds, peak)


def test_an_array_header_declaring_more_than_it_holds_is_refused_before_allocation(
        saved, tmp_path):
    _, members, _, _ = saved
    name = next(name for name in members if name.startswith("arrays/"))
    header = io.BytesIO()
    # 200,000 x 200,000 float64: 320 GB declared, 8 bytes of data.
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (200_000, 200_000)})
    path = tmp_path / "huge.skv"
    path.write_bytes(_zip({**members, name: header.getvalue() + b"\0" * 8}))
    _refused_within_bounds(path, rf"{name}.*shape \(200000, 200000\).*320,000,000,000 bytes")


def test_a_member_inflating_far_beyond_its_compressed_size_is_refused(saved, tmp_path):
    _, members, _, _ = saved
    # 256 MB of zeros deflate to ~250 KB: a zip bomb's ratio, refused before inflating.
    bomb = tmp_path / "bomb.skv"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        with archive.open("arrays/999.npy", "w") as member:
            zeros = bytes(2**24)
            for _ in range(16):
                member.write(zeros)
    _refused_within_bounds(bomb, r"arrays/999\.npy.*declares 268,435,456 bytes")

    # A zip directory declaring 3 GB for metadata.json (its data is small).
    data = bytearray(_zip(members))
    # The uncompressed-size field of its local header and of its directory entry.
    for signature, size_offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        position = data.find(signature)
        while position != -1:
            name_offset = 30 if signature == b"PK\x03\x04" else 46
            length_offset = 26 if signature == b"PK\x03\x04" else 28
            length = int.from_bytes(data[position + length_offset:position + length_offset + 2],
                                    "little")
            if data[position + name_offset:position + name_offset + length] == b"metadata.json":
                data[position + size_offset:position + size_offset + 4] = (
                    3_000_000_000).to_bytes(4, "little")
            position = data.find(signature, position + 4)
    declared = tmp_path / "declared.skv"
    declared.write_bytes(bytes(data))
    _refused_within_bounds(declared, r"metadata\.json.*declares 3,000,000,000 bytes")


def _other_type(value, rng):
    choices = [None, "x", 7, 1.5, [], {}, [1, "a"], {"__estimator__": "os.system"}]
    choices = [choice for choice in choices if type(choice) is not type(value)]
    return choices[rng.integers(len(choices))]


def _json_paths(value, path=()):
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _json_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _json_paths(item, (*path, index))


def _mutations(saved, n):
    """``n`` altered copies of the file: truncations, byte flips and edited JSON types."""
    data, members, _, _ = saved
    rng = np.random.default_rng(0)
    document = json.loads(members["metadata.json"])
    paths = [path for path in _json_paths(document) if path]
    for index in range(n):
        kind = index % 3
        if kind == 0:
            yield "truncated", data[:rng.integers(len(data))]
        elif kind == 1:
            flipped = bytearray(data)
            flipped[rng.integers(len(data))] ^= int(rng.integers(1, 256))
            yield "flipped", bytes(flipped)
        else:
            edited = json.loads(members["metadata.json"])
            *parents, last = paths[rng.integers(len(paths))]
            target = edited
            for key in parents:
                target = target[key]
            target[last] = _other_type(target[last], rng)
            yield f"edited {[*parents, last]}", _zip(
                {**members, "metadata.json": json.dumps(edited).encode()})


def test_altered_files_load_exactly_or_raise_the_load_error(saved, tmp_path):
    """500 altered files: each loads and predicts as the original, or raises ModelFileError."""
    _, _, X, expected = saved
    counts, wrong = {}, []
    path = tmp_path / "altered.skv"
    for kind, data in _mutations(saved, 500):
        path.write_bytes(data)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. an edited version number
                model = skvision.load(path)
            same = np.array_equal(model.predict_proba(X), expected)
            outcome = "loaded, same predictions" if same else "loaded, other predictions"
        except ModelFileError:
            outcome = "refused"
        except Exception as error:  # every other error is a failure
            outcome = f"raised {type(error).__name__}"
            wrong.append((kind, repr(error)[:200]))
        if outcome == "loaded, other predictions":
            wrong.append((kind, outcome))
        kind = kind.split()[0]
        counts[(kind, outcome)] = counts.get((kind, outcome), 0) + 1
    print(counts)
    assert not wrong, (counts, wrong[:10])
