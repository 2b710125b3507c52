"""Images where they live: URLs as X, read from moto's S3 server and a faulty HTTP server on loopback.

Nothing here mocks fsspec: s3fs and fsspec's HTTP filesystem talk to real
servers over sockets (tests/_servers.py).
"""

import io
import os
import pickle
import time
import warnings
import zipfile

import numpy as np
import pytest
from _servers import FAKE_SECRET, FileServer, moto_s3
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline

import skvision
from skvision import CNNClassifier, PretrainedFeatureExtractor
from skvision._data import FileImages, read_batches, sequential_batches
from skvision._storage import is_url, redact, remote_settings
from skvision.datasets import load_digit_images, load_image_folder
from skvision.preprocessing import ImageReader

pytest.importorskip("s3fs")
pytest.importorskip("moto")

FAST = dict(batch_size=16, device="cpu", random_state=0, precision="32")


def _jpeg(image):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def digit_jpegs(tmp_path_factory):
    """60 digits of 3 classes at 32 px as JPEG: {key: bytes}, labels, and local copies."""
    X, y = load_digit_images(return_X_y=True)
    keep = np.flatnonzero(y < 3)[:60]
    images = np.kron(np.rint(X[keep] * 255).astype(np.uint8), np.ones((4, 4), np.uint8))
    labels = y[keep]
    files = {f"train/{label}/{index:03d}.jpg": _jpeg(image)
             for index, (image, label) in enumerate(zip(images, labels))}
    root = tmp_path_factory.mktemp("local")
    for key, content in files.items():
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(content)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        for key, content in files.items():
            zipped.writestr(key, content)
    files["archives/digits.zip"] = archive.getvalue()
    keys = [key for key in files if key.startswith("train/")]
    files["mixed/a/good.jpg"] = files[keys[0]]
    files["mixed/a/cut.jpg"] = files[keys[1]][:200]
    files["mixed/b/good.jpg"] = files[keys[2]]
    return files, keys, labels, [str(root / key) for key in keys]


@pytest.fixture(scope="module")
def s3(digit_jpegs):
    """moto's S3 server holding the digits; yields the s3:// URLs of the images."""
    files, keys, _, _ = digit_jpegs
    with pytest.MonkeyPatch.context() as patch, moto_s3(patch, files):
        yield [f"s3://images/{key}" for key in keys]


@pytest.fixture
def http(digit_jpegs, monkeypatch):
    """The faulty HTTP server with the digits; short limits so that faults end fast."""
    monkeypatch.setenv("SKVISION_REMOTE_TIMEOUT", "1")
    monkeypatch.setenv("SKVISION_REMOTE_RETRIES", "2")
    files, keys, _, _ = digit_jpegs
    with FileServer({f"/{key}": files[key] for key in keys}) as server:
        yield server


# --------------------------------------------------------------------------
# URLs, and what of them is ever shown.


@pytest.mark.parametrize("path, remote", [
    ("s3://bucket/a.jpg", True), ("gs://bucket/a.jpg", True), ("az://container/a.jpg", True),
    ("https://example.com/a.jpg", True), ("zip://a.jpg::s3://bucket/images.zip", True),
    ("/data/a.jpg", False), ("relative/a.jpg", False), ("file:///data/a.jpg", False),
    ("C:\\data\\a.jpg", False),
])
def test_which_paths_are_urls(path, remote):
    assert is_url(path) is remote


@pytest.mark.parametrize("url, shown", [
    ("https://user:token@example.com/a.jpg", "https://***@example.com/a.jpg"),
    ("https://example.com/a.jpg?X-Amz-Signature=abc&X-Amz-Credential=k",
     "https://example.com/a.jpg?***"),
    ("s3://bucket/cats/a.jpg", "s3://bucket/cats/a.jpg"),
])
def test_urls_are_shown_without_user_info_or_query(url, shown):
    assert redact(url) == shown


@pytest.mark.parametrize("name, value", [("SKVISION_REMOTE_TIMEOUT", "soon"),
                                         ("SKVISION_REMOTE_RETRIES", "-1"),
                                         ("SKVISION_REMOTE_CONCURRENCY", "0")])
def test_bad_remote_settings_are_refused(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=f"{name} must be a non-negative"):
        remote_settings()


# --------------------------------------------------------------------------
# S3 (moto): the same results as the same files read locally.


def test_cross_val_score_on_s3_equals_local(digit_jpegs, s3):
    _, _, y, local = digit_jpegs
    model = make_pipeline(PretrainedFeatureExtractor(image_size=64, batch_size=32),
                          LogisticRegression(max_iter=1000))
    remote_scores = cross_val_score(model, np.array(s3, dtype=object), y, cv=3)
    local_scores = cross_val_score(model, np.array(local, dtype=object), y, cv=3)
    np.testing.assert_array_equal(remote_scores, local_scores)
    assert remote_scores.mean() > 0.8


def test_cnn_fit_on_s3_predicts_exactly_like_local(digit_jpegs, s3):
    _, _, y, local = digit_jpegs
    remote_model = CNNClassifier(filters=(8,), epochs=2, **FAST).fit(s3, y)
    local_model = CNNClassifier(filters=(8,), epochs=2, **FAST).fit(local, y)
    np.testing.assert_array_equal(remote_model.predict_proba(s3),
                                  local_model.predict_proba(local))
    assert remote_model.image_shape_ == (32, 32, 1)


def test_folder_listing_and_zip_chain_over_s3(digit_jpegs, s3):
    _, keys, y, local = digit_jpegs
    urls, labels = load_image_folder("s3://images/train")
    assert list(urls) == sorted(s3)
    order = np.argsort(s3)
    np.testing.assert_array_equal(labels.astype(int), y[order])

    chained, chained_labels = load_image_folder("zip://train::s3://images/archives/digits.zip")
    assert chained[0] == f"zip://{sorted(keys)[0]}::s3://images/archives/digits.zip"
    np.testing.assert_array_equal(chained_labels, labels)
    reader = ImageReader(mode="L").fit(chained)
    np.testing.assert_array_equal(reader.transform(chained),
                                  reader.transform(np.array(local, dtype=object)[order]))


def test_folder_listing_skips_objects_that_do_not_decode(s3):
    with pytest.warns(UserWarning, match=r"Skipped 1 image file.*s3://images/mixed/a/cut.jpg"):
        urls, labels = load_image_folder("s3://images/mixed", on_error="skip")
    assert list(urls) == ["s3://images/mixed/a/good.jpg", "s3://images/mixed/b/good.jpg"]
    assert list(labels) == ["a", "b"]


def test_local_and_remote_paths_mix(digit_jpegs, s3):
    _, _, _, local = digit_jpegs
    mixed = [s3[0], local[1], s3[2], local[3]]
    images = FileImages(mixed, (32, 32), 1)
    assert images.prefetch > FileImages(local[:4], (32, 32), 1).prefetch
    batches = list(read_batches(images, sequential_batches(0, 4, 3), "cpu"))
    expected = ImageReader(mode="L").fit(local[:4]).transform(local[:4])
    np.testing.assert_array_equal(
        np.concatenate([batch.numpy() for batch in batches])[:, 0],
        expected.astype(np.float32) / 255)


def test_missing_s3_object_is_named_and_secret_key_never_shown(digit_jpegs, s3):
    _, _, y, _ = digit_jpegs
    urls = [*s3[:5], "s3://images/train/0/missing.jpg"]
    with pytest.raises(FileNotFoundError, match="s3://images/train/0/missing.jpg") as error:
        CNNClassifier(epochs=1, **FAST).fit(urls, y[:6])
    assert FAKE_SECRET not in str(error.value)
    with pytest.raises(FileNotFoundError, match="Image folder not found: 's3://images/nothing'"):
        load_image_folder("s3://images/nothing")


# --------------------------------------------------------------------------
# HTTP faults: retried, named, bounded.


def test_transient_503_is_retried_then_read(digit_jpegs, http):
    files, keys, _, local = digit_jpegs
    http.fail[f"/{keys[0]}"] = 2
    urls = [f"{http.url}/{key}" for key in keys[:3]]
    images = ImageReader(mode="L").fit(urls).transform(urls)
    np.testing.assert_array_equal(images, ImageReader(mode="L").fit(local[:3]).transform(local[:3]))
    assert http.requests.count(f"/{keys[0]}") == 3


def test_missing_url_raises_before_any_training(digit_jpegs, http):
    _, keys, y, _ = digit_jpegs
    urls = [f"{http.url}/{key}" for key in keys[:8]] + [f"{http.url}/train/0/gone.jpg"]
    model = CNNClassifier(epochs=1, **FAST)
    with pytest.raises(FileNotFoundError, match=f"Image file not found: '{http.url}/train/0/gone.jpg'"):
        model.fit(urls, y[:9])
    assert not hasattr(model, "net_")
    # Only ranged header requests were made: no image was read for training.
    assert len(http.requests) == 9

    with pytest.warns(UserWarning, match="Skipped 1 image file.*gone.jpg"):
        model = CNNClassifier(epochs=1, on_error="skip", **FAST).fit(urls, y[:9])
    assert model.predict(urls[:8]).shape == (8,)


def test_forbidden_url_is_a_permission_error(digit_jpegs, http):
    _, keys, _, _ = digit_jpegs
    http.status[f"/{keys[0]}"] = 403
    with pytest.raises(PermissionError, match=f"Permission denied reading '{http.url}/{keys[0]}'"):
        ImageReader().fit([f"{http.url}/{keys[0]}"]).transform([f"{http.url}/{keys[0]}"])
    assert len(http.requests) == 1  # not retried


def test_body_cut_short_is_named_after_the_retries(digit_jpegs, http):
    _, keys, _, _ = digit_jpegs
    http.truncate[f"/{keys[1]}"] = 100
    url = f"{http.url}/{keys[1]}"
    with pytest.raises(OSError, match=f"Cannot read '{url}' after 3 attempts: ClientPayloadError"):
        ImageReader().fit([url]).transform([url])


def test_truncated_file_is_named_at_fit(digit_jpegs, http):
    files, keys, y, _ = digit_jpegs
    http.files["/cut.jpg"] = files[keys[0]][:-300]  # served whole: the file itself is cut
    urls = [f"{http.url}/{key}" for key in keys[:4]] + [f"{http.url}/cut.jpg"]
    with pytest.raises(ValueError, match=f"'{http.url}/cut.jpg'.*truncated"):
        CNNClassifier(epochs=1, **FAST).fit(urls, y[:5])


def test_server_that_stops_answering_ends_in_a_timeout(digit_jpegs, http):
    _, keys, _, _ = digit_jpegs
    http.hang = True
    url = f"{http.url}/{keys[0]}"
    start = time.perf_counter()
    with pytest.raises(TimeoutError, match=f"Reading '{url}' timed out after 3 attempts"):
        ImageReader().fit([url]).transform([url])
    # 3 attempts of 1 s and two backoffs of at most 0.25 s and 0.5 s.
    assert time.perf_counter() - start < 6


def test_no_secret_in_errors_warnings_reprs_or_saved_models(digit_jpegs, http, tmp_path):
    _, keys, y, _ = digit_jpegs
    host = http.url.replace("http://", f"http://reader:{FAKE_SECRET}@")
    signed = [f"{host}/{key}?X-Amz-Signature={FAKE_SECRET}" for key in keys[:12]]
    missing = f"{http.url}/gone.jpg?X-Amz-Signature={FAKE_SECRET}"

    with pytest.raises(FileNotFoundError) as error:
        CNNClassifier(epochs=1, **FAST).fit([*signed[:3], missing], y[:4])
    shown = [str(error.value), repr(error.value)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = CNNClassifier(epochs=1, on_error="skip", **FAST).fit([*signed, missing], y[:13])
    shown += [str(warning.message) for warning in caught]
    assert any("gone.jpg?***" in text for text in shown)
    shown.append(repr(model))
    path = tmp_path / "model.skv"
    skvision.save(model, path)
    saved = [path.read_bytes(), pickle.dumps(model)]
    assert not [text for text in shown if FAKE_SECRET in text]
    assert not [blob for blob in saved if FAKE_SECRET.encode() in blob]
    assert os.listdir(tmp_path) == ["model.skv"]
