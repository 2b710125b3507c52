"""One pixel path: the same picture gives the same answer however it arrives.

Arrays and files (PNG, TIFF, any bit depth, any Pillow mode, EXIF-rotated)
go through decode → orientation → channels → scale → one resize
(skvision/_pixels.py); these tests hold the estimators to it.
"""

import struct
import warnings
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from sklearn.model_selection import cross_val_score

from skvision import CNNClassifier, FineTunedClassifier, VisionTransformerClassifier
from skvision._data import FileImages, decode_array, scan_files
from skvision._pixels import _ORIENT_ARRAY, _oriented, scale_to_unit
from skvision.datasets import load_digit_images, make_shapes

FAST = dict(epochs=1, batch_size=16, device="cpu", random_state=0)


def _png(path, image):
    Image.fromarray(image).save(path)
    return str(path)


def _png_16bit_colour(path, image):
    """A 48-bit RGB PNG (Pillow writes no 16-bit colour PNG), chunk by chunk."""
    height, width, _ = image.shape
    rows = b"".join(b"\x00" + image[row].astype(">u2").tobytes() for row in range(height))

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    with open(path, "wb") as file:
        file.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                   + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    return str(path)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """24x24 RGB scenes as a uint8 array and as PNG files of the same pixels."""
    X, y = make_shapes(n_samples=12, image_size=24, random_state=0)
    folder = tmp_path_factory.mktemp("scenes")
    return X, y, [_png(folder / f"{i}.png", image) for i, image in enumerate(X)]


# -- arrays and files give the same answer ---------------------------------------------------


PARITY_MODELS = {
    "cnn": lambda size: CNNClassifier(filters=(4, 8), image_size=size, **FAST),
    "vit": lambda size: VisionTransformerClassifier(
        depth=1, embed_dim=16, n_heads=2, patch_size=4, image_size=size, **FAST),
    # EfficientNet-Lite0 resizes with bicubic: the files are decoded alike.
    "lite0": lambda size: FineTunedClassifier(image_size=size, **FAST),
}


@pytest.mark.parametrize("size", [16, 40], ids=["smaller", "larger"])
@pytest.mark.parametrize("name", PARITY_MODELS)
def test_arrays_and_files_give_the_same_probabilities(scenes, name, size):
    X, y, paths = scenes
    on_arrays = PARITY_MODELS[name](size).fit(X, y)
    on_files = PARITY_MODELS[name](size).fit(paths, y)
    expected = on_arrays.predict_proba(X)
    for model in (on_arrays, on_files):
        np.testing.assert_allclose(model.predict_proba(paths), expected, atol=1e-5)
        np.testing.assert_allclose(model.predict_proba(X), expected, atol=1e-5)


def test_files_are_resized_by_the_backbone_interpolation(scenes):
    X, _, paths = scenes
    images = FileImages(paths[:2], (16, 16), 3, interpolation="bicubic").read([0, 1])
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(X[:2]).permute(0, 3, 1, 2).float() / 255, size=(16, 16),
        mode="bicubic", antialias=True, align_corners=False)
    torch.testing.assert_close(images, expected, rtol=0, atol=1e-6)


# -- full bit depth ----------------------------------------------------------------------------


def test_16bit_classes_that_differ_above_255_are_learned(tmp_path):
    rng = np.random.default_rng(0)
    y = np.arange(36) % 2
    # A bright square on one class: every value is above 255, so an 8-bit
    # decode (clipping at 255) makes the two classes the same flat image.
    images = rng.integers(5000, 30000, (36, 12, 12)).astype(np.uint16)
    images[y == 1, 3:9, 3:9] += 30000
    paths = [_png(tmp_path / f"{i}.png", image) for i, image in enumerate(images)]
    assert decode_array(paths[0]).dtype == np.uint16
    model = CNNClassifier(filters=(8,), epochs=10, batch_size=4, lr=1e-2, device="cpu",
                          random_state=0)
    assert cross_val_score(model, paths, y, cv=3).mean() >= 0.9


def test_16bit_and_float_files_keep_their_values(tmp_path):
    import tifffile

    rng = np.random.default_rng(0)
    colour = rng.integers(0, 65536, (6, 5, 3), dtype=np.uint16)
    gray = rng.integers(0, 65536, (6, 5), dtype=np.uint16)
    real = rng.random((6, 5, 3), dtype=np.float32)
    paths = {"png48": _png_16bit_colour(tmp_path / "c.png", colour),
             "png16": _png(tmp_path / "g.png", gray)}
    for name, image in (("tif48", colour), ("tif16", gray), ("tif_float", real)):
        paths[name] = str(tmp_path / f"{name}.tif")
        tifffile.imwrite(paths[name], image, photometric="minisblack" if image.ndim == 2
                         else "rgb")
    expected = {"png48": colour / 65535, "png16": gray[..., None] / 65535,
                "tif48": colour / 65535, "tif16": gray[..., None] / 65535, "tif_float": real}
    for name, path in paths.items():
        channels = expected[name].shape[-1]
        batch = FileImages([path], (6, 5), channels, resize=False).read([0])
        np.testing.assert_allclose(batch[0].permute(1, 2, 0).numpy(), expected[name],
                                   atol=1e-7, err_msg=name)


def test_uint16_arrays_scale_by_their_maximum():
    X, y = load_digit_images(return_X_y=True)
    X16 = np.round(X[:60] * 65535).astype(np.uint16)
    clf = CNNClassifier(filters=(4,), **FAST).fit(X16, y[:60])
    assert clf.input_kind_ == "uint16"
    np.testing.assert_allclose(clf.predict_proba(X16), clf.predict_proba(X16 / 65535.0),
                               atol=1e-6)


# -- channels from the whole set, every Pillow mode ---------------------------------------


def test_a_gray_first_file_does_not_make_a_colour_set_gray(tmp_path):
    X, y = make_shapes(n_samples=12, image_size=16, random_state=0)
    paths = [_png(tmp_path / "0.png", X[0].mean(axis=2).astype(np.uint8))]
    paths += [_png(tmp_path / f"{i}.png", image) for i, image in enumerate(X[1:], 1)]
    kept, _, modes = scan_files(paths)
    assert modes[0] == "L"
    clf = CNNClassifier(filters=(4,), **FAST).fit(paths, y)
    assert clf.image_shape_ == (16, 16, 3)
    gray = FileImages(paths[:1], (16, 16), 3).read([0])[0]
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])


def test_pillow_modes_decode_by_one_rule(tmp_path):
    rgb = make_shapes(n_samples=1, image_size=16, random_state=0)[0][0]
    image = Image.fromarray(rgb)
    reference = _png(tmp_path / "rgb.png", rgb)
    paths = {"RGBA": image.convert("RGBA"), "P": image.quantize(16), "CMYK": image.convert("CMYK"),
             "LA": image.convert("LA"), "1": image.convert("1")}
    for mode, converted in paths.items():
        paths[mode] = str(tmp_path / f"{mode}.{'jpg' if mode == 'CMYK' else 'png'}")
        converted.save(paths[mode], **({"quality": 100} if mode == "CMYK" else {}))
    # A batch is uint8 or already scaled floats: compare in [0, 1].
    read = {mode: scale_to_unit(FileImages([path], (16, 16), 3).read([0])[0])
            for mode, path in paths.items()}
    # An opaque RGBA file is exactly its RGB file: alpha is dropped.
    assert torch.equal(read["RGBA"],
                       scale_to_unit(FileImages([reference], (16, 16), 3).read([0])[0]))
    assert torch.equal(read["P"].permute(1, 2, 0),
                       scale_to_unit(torch.from_numpy(np.array(image.quantize(16).convert("RGB")))))
    gray = scale_to_unit(torch.from_numpy(np.array(image.convert("L"))))
    assert all(torch.equal(read["LA"][channel], gray) for channel in range(3))
    assert set(np.unique(read["1"].numpy())) <= {0.0, 1.0}
    assert read["CMYK"].shape == (3, 16, 16)
    kept, _, modes = scan_files(list(paths.values()))
    assert len(kept) == len(paths)


# -- EXIF orientation ---------------------------------------------------------------------


def test_orientation_of_arrays_is_pillows():
    image = Image.fromarray(np.arange(6 * 4 * 3, dtype=np.uint8).reshape(6, 4, 3))
    for orientation in range(1, 9):
        exif = image.getexif()
        exif[0x0112] = orientation
        image.info["exif"] = exif.tobytes()
        expected = np.asarray(ImageOps.exif_transpose(image))
        np.testing.assert_array_equal(_oriented(np.asarray(image), orientation), expected)
    assert set(_ORIENT_ARRAY) == set(range(2, 9))


def test_an_exif_rotated_file_reads_as_its_upright_twin(scenes, tmp_path):
    X, y, paths = scenes
    upright = np.ascontiguousarray(X[0][:, :20])  # 24 high, 20 wide: a turn shows
    upright_path = _png(tmp_path / "upright.png", upright)
    # Stored sideways, as a phone stores a portrait photo, with tag 6 to turn it back.
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated_path = str(tmp_path / "rotated.png")
    stored.save(rotated_path, exif=exif)
    _, sizes, _ = scan_files([rotated_path, upright_path])
    assert sizes == [(24, 20), (24, 20)]
    clf = CNNClassifier(filters=(4,), image_size=16, **FAST).fit(paths, y)
    np.testing.assert_allclose(clf.predict_proba([rotated_path]),
                               clf.predict_proba([upright_path]), atol=1e-5)


# -- the kind of input is recorded ---------------------------------------------------------


def test_another_scale_at_predict_warns(scenes):
    X, y, _ = scenes
    clf = CNNClassifier(filters=(4,), **FAST).fit(X, y)
    assert clf.input_kind_ == "uint8"
    with pytest.warns(UserWarning, match=r"float images, but CNNClassifier was fitted on "
                                         r"uint8 images"):
        clf.predict(X.astype(np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf.predict(X / 255.0)  # the same scale: no warning
    with pytest.warns(UserWarning, match="whole numbers up to 255"):
        CNNClassifier(filters=(4,), **FAST).fit(X.astype(np.float64), y)
