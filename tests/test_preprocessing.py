"""Preprocessing transformers and load_image_folder."""

import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skvision.datasets import load_digit_images, load_image_folder
from skvision.preprocessing import (
    ChannelStandardizer,
    Grayscale,
    ImageFlattener,
    ImageReader,
    Resize,
)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """root/{red,blue}/*.png|jpg with known pixels, plus the arrays written."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    written = {}
    for label, channel in (("blue", 2), ("red", 0)):
        (root / label).mkdir()
        for i in range(4):
            image = (rng.random((12, 16, 3)) * 60).astype(np.uint8)
            image[..., channel] += 180
            path = root / label / f"{i}.png"
            Image.fromarray(image).save(path)
            written[str(path)] = image
        # A JPEG too (lossy: compared loosely).
        Image.fromarray(image).save(root / label / "extra.jpg", quality=95)
    (root / "red" / "notes.txt").write_text("not an image")
    return root, written


def test_load_image_folder_and_reader_round_trip(image_folder):
    root, written = image_folder
    paths, labels = load_image_folder(root)
    assert len(paths) == 10 and sorted(set(labels)) == ["blue", "red"]
    assert all(not p.endswith(".txt") for p in paths)
    images = ImageReader().fit_transform(paths)
    assert images.shape == (10, 12, 16, 3) and images.dtype == np.uint8
    for path, label, image in zip(paths, labels, images):
        if path in written:
            np.testing.assert_array_equal(image, written[path])  # PNG is lossless
        else:  # extra.jpg holds image 3 of its class; JPEG blurs noise, keeps colors
            original = written[str(root / label / "3.png")]
            assert np.abs(image.mean(axis=(0, 1)) - original.mean(axis=(0, 1))).max() < 4
    frame = load_image_folder(root, as_frame=True)
    assert list(frame.columns) == ["path", "label"]
    gray = ImageReader(column="path", mode="L", image_size=(6, 8)).fit_transform(frame)
    assert gray.shape == (10, 6, 8)


def test_reader_in_a_pipeline_classifies_colors(image_folder):
    root, _ = image_folder
    frame = load_image_folder(root, as_frame=True)
    model = make_pipeline(ImageReader(column="path", image_size=8), ImageFlattener(),
                          LogisticRegression())
    scores = cross_val_score(model, frame[["path"]], frame["label"], cv=2)
    assert scores.mean() == 1.0


def test_reader_errors_name_the_file(image_folder, tmp_path):
    root, _ = image_folder
    paths, _ = load_image_folder(root)
    corrupt = tmp_path / "broken.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(ValueError, match="Cannot decode image file .*broken.png"):
        ImageReader().fit_transform(list(paths) + [str(corrupt)])
    missing = str(tmp_path / "missing.png")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        ImageReader().fit_transform([missing])
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(tmp_path / "small.png")
    with pytest.raises(ValueError, match="image_size"):
        ImageReader().fit_transform([paths[0], str(tmp_path / "small.png")])
    with pytest.raises(ValueError, match="single path"):
        ImageReader().fit(paths[0])
    with pytest.raises(TypeError, match="item 1 is int"):
        ImageReader().fit_transform([paths[0], 3])
    with pytest.raises(ValueError, match="pass column="):
        ImageReader().fit(pd.DataFrame({"a": paths, "b": paths}))
    with pytest.raises(ValueError, match="mode"):
        ImageReader(mode="CMYKX").fit(paths)
    with pytest.raises(NotFittedError):
        ImageReader().transform(paths)
    with pytest.raises(FileNotFoundError):
        load_image_folder(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="no image files"):
        load_image_folder(tmp_path)


def test_reader_fit_does_not_read_and_api(image_folder, tmp_path):
    """sklearn's checks feed numbers, not paths; the API contract checked by hand."""
    reader = ImageReader(image_size=4)
    assert reader.fit([str(tmp_path / "not-yet-written.png")]) is reader  # fit reads nothing
    root, _ = image_folder
    paths, _ = load_image_folder(root)
    before = paths.copy()
    fitted = clone(reader).fit(paths)
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(restored.transform(paths), fitted.transform(paths))
    assert np.array_equal(paths, before)
    assert fitted.get_feature_names_out()[:2].tolist() == ["px_r0_c0_ch0", "px_r0_c0_ch1"]
    assert fitted.get_params() == {"column": None, "mode": "RGB", "image_size": 4}


# -- in-memory transformers ---------------------------------------------------


@pytest.fixture(scope="module")
def rgb():
    return np.random.default_rng(0).random((6, 10, 12, 3))


def test_resize_matches_torchvision(rgb):
    from torchvision.transforms.v2 import functional as TF

    out = Resize(image_size=(5, 6)).fit_transform(rgb)
    assert out.shape == (6, 5, 6, 3) and out.dtype == np.float64
    expected = TF.resize(torch.from_numpy(rgb).permute(0, 3, 1, 2).float(), [5, 6],
                         antialias=True).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(out, expected, atol=1e-5)
    flat = Resize(image_size=4, image_shape=(10, 12)).fit_transform(rgb.reshape(6, -1))
    assert flat.shape == (6, 4 * 4 * 3)
    uint8 = Resize(image_size=4, interpolation="nearest").fit_transform((rgb * 255).astype(np.uint8))
    assert uint8.dtype == np.uint8 and uint8.shape == (6, 4, 4, 3)
    with pytest.raises(ValueError, match="interpolation"):
        Resize(image_size=4, interpolation="lanczos").fit(rgb)
    with pytest.raises(ValueError, match="image_size"):
        Resize(image_size=(0, 3)).fit(rgb)


def test_grayscale(rgb):
    gray = Grayscale().fit_transform(rgb)
    assert gray.shape == (6, 10, 12, 1)
    np.testing.assert_allclose(gray[..., 0], rgb @ [0.299, 0.587, 0.114], atol=1e-6)
    one_channel = rgb[..., 0]
    np.testing.assert_allclose(Grayscale().fit_transform(one_channel), one_channel, atol=1e-7)
    with pytest.raises(ValueError, match="RGB"):
        Grayscale().fit(np.zeros((2, 4, 4, 2)))


def test_channel_standardizer(rgb):
    scaler = ChannelStandardizer().fit(rgb)
    np.testing.assert_allclose(scaler.mean_, rgb.mean(axis=(0, 1, 2)))
    np.testing.assert_allclose(scaler.scale_, rgb.std(axis=(0, 1, 2)))
    scaled = scaler.transform(rgb)
    assert scaled.shape == rgb.shape
    np.testing.assert_allclose(scaled.mean(axis=(0, 1, 2)), 0, atol=1e-6)
    np.testing.assert_allclose(scaled.std(axis=(0, 1, 2)), 1, atol=1e-5)
    np.testing.assert_allclose(scaler.inverse_transform(scaled), rgb, atol=1e-6)
    # uint8 in, float out; constant channels are not divided by zero.
    uint8 = np.zeros((3, 4, 4, 3), np.uint8)
    uint8[..., 0] = 200
    out = ChannelStandardizer().fit_transform(uint8)
    assert out.dtype == np.float32 and np.isfinite(out).all()


def test_flattener_names_pandas_and_inverse(rgb):
    flattener = ImageFlattener().set_output(transform="pandas").fit(rgb)
    frame = flattener.transform(rgb)
    assert isinstance(frame, pd.DataFrame) and frame.shape == (6, 360)
    assert frame.columns[:4].tolist() == ["px_r0_c0_ch0", "px_r0_c0_ch1", "px_r0_c0_ch2",
                                          "px_r0_c1_ch0"]
    assert frame["px_r3_c5_ch2"].tolist() == rgb[:, 3, 5, 2].tolist()
    np.testing.assert_array_equal(flattener.inverse_transform(frame.to_numpy()), rgb)
    with pytest.raises(ValueError, match="expecting 360 features"):
        flattener.inverse_transform(np.zeros((2, 10)))


def _inputs():
    """Images of every kind the transformers take: (name, X, parameters)."""
    rng = np.random.default_rng(0)
    uint8 = rng.integers(0, 256, (5, 4, 6, 3), dtype=np.uint8)
    floats = rng.normal(0.5, 2.0, (5, 4, 6, 3))
    first = {"channels": "first"}
    return [
        ("uint8", uint8, {}),
        ("float32", floats.astype(np.float32), {}),
        ("float64", floats, {}),
        ("uint8 channels first", uint8.transpose(0, 3, 1, 2).copy(), first),
        ("float32 channels first", floats.transpose(0, 3, 1, 2).astype(np.float32), first),
        ("uint8 gray", uint8[..., 0], {}),
        ("uint8 flat", uint8.reshape(5, -1), {"image_shape": (4, 6, 3)}),
        ("float64 flat", floats.reshape(5, -1), {"image_shape": (4, 6, 3)}),
        ("uint16", uint8.astype(np.uint16) * 200, {}),
        ("uint8 tensor", torch.from_numpy(uint8.transpose(0, 3, 1, 2).copy()), {}),
        ("float32 tensor", torch.from_numpy(floats.transpose(0, 3, 1, 2).astype(np.float32)), {}),
    ]


def test_every_inverse_transform_is_the_one_of_its_transformer():
    """The transformers below are all of skvision's that have an inverse_transform."""
    import skvision.augmentation
    import skvision.preprocessing
    import skvision.style
    import skvision.transfer

    invertible = {name for module in (skvision.preprocessing, skvision.augmentation,
                                      skvision.transfer, skvision.style)
                  for name in module.__all__
                  if hasattr(getattr(module, name), "inverse_transform")}
    assert invertible == {"ChannelStandardizer", "ImageFlattener"}


@pytest.mark.parametrize("transformer", [ChannelStandardizer, ImageFlattener])
@pytest.mark.parametrize("name, X, params", _inputs(), ids=[case[0] for case in _inputs()])
def test_inverse_transform_gives_back_values_dtype_and_layout(transformer, name, X, params):
    fitted = transformer(**params).fit(X)
    back = fitted.inverse_transform(fitted.transform(X))
    assert type(back) is type(X) and back.shape == X.shape and back.dtype == X.dtype
    if X.dtype in (np.float32, torch.float32, np.float64):
        tolerance = 1e-6 if X.dtype != np.float64 else 1e-14
        np.testing.assert_allclose(back, X, rtol=tolerance, atol=tolerance)
    else:
        np.testing.assert_array_equal(back, X)  # integers exactly
    assert fitted.input_dtype_ == str(np.asarray(X).dtype)


def test_full_pipeline_on_digits_matches_flat_baseline():
    """Image steps in front of sklearn's own: the same score as on the flat rows."""
    X, y = load_digit_images(return_X_y=True)
    X, y = X[:600], y[:600]
    images = make_pipeline(ChannelStandardizer(), Resize(image_size=8), ImageFlattener(),
                           StandardScaler(), LogisticRegression(max_iter=1000))
    flat = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    score = cross_val_score(images, X, y, cv=3).mean()
    assert score > 0.85
    assert score == pytest.approx(cross_val_score(flat, X.reshape(600, -1), y, cv=3).mean(),
                                  abs=0.01)


def test_plot_feature_mask_matches_flattener_layout(rgb):
    import matplotlib

    matplotlib.use("Agg")
    from sklearn.feature_selection import SelectKBest

    from skvision.plotting import plot_feature_mask

    flattener = ImageFlattener().fit(rgb)
    y = np.arange(len(rgb)) % 2
    selector = SelectKBest(k=40).fit(flattener.transform(rgb), y)
    ax = plot_feature_mask(selector, (10, 12, 3), image=rgb[0])
    shown = ax.images[-1].get_array().filled(0)
    expected = flattener.inverse_transform(selector.get_support()[None].astype(float))[0]
    np.testing.assert_allclose(shown, expected.mean(axis=2))
    assert "40 of 360" in ax.get_title()
    with pytest.raises(ValueError, match="holds 64 pixel values"):
        plot_feature_mask(np.ones(360, bool), (8, 8))


def test_broken_files_skipped_by_the_loader_and_bombs_refused(image_folder, tmp_path):
    import shutil

    root, _ = image_folder
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    good = sorted((copy / "red").glob("*.png"))[0]
    (copy / "red" / "truncated.png").write_bytes(good.read_bytes()[:60])
    (copy / "blue" / "garbage.jpg").write_bytes(b"not an image at all")
    with pytest.warns(UserWarning, match=r"Skipped 2 image file\(s\).*garbage.jpg"):
        paths, labels = load_image_folder(copy, on_error="skip")
    assert len(paths) == 10 and len(labels) == 10
    all_paths, _ = load_image_folder(copy)  # "raise": listed, and the reader names the file
    with pytest.raises(ValueError, match="garbage.jpg|truncated.png"):
        ImageReader().fit_transform(all_paths)
    with pytest.raises(ValueError, match="on_error"):
        load_image_folder(copy, on_error="ignore")
    # Pillow's decompression-bomb guard stays on: a 1-bit 20000 x 20000 PNG is refused.
    bomb = tmp_path / "bomb.png"
    Image.new("1", (20000, 20000)).save(bomb)
    with pytest.raises(ValueError, match="too large to decode safely"):
        ImageReader().fit_transform([str(bomb)])
