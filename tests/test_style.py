"""StyleTransfer and the style losses."""

import pickle

import numpy as np
import pytest
import torch
from skimage import data
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from skvision.nn import build_backbone
from skvision.nn.style import (
    FeatureTaps,
    content_loss,
    gram_matrix,
    style_loss,
    total_variation_loss,
)
from skvision.style import StyleTransfer

FAST = dict(image_size=48, n_iter=30, device="cpu")


@pytest.fixture(scope="module")
def images():
    yy, xx = np.mgrid[0:48, 0:48] / 48
    stripes = np.stack([(np.sin(20 * xx) + 1) / 2, (np.cos(14 * yy) + 1) / 2,
                        np.full_like(xx, 0.3)], axis=-1)
    style = (stripes * 255).astype(np.uint8)[None]
    # Two small photos: the astronaut and the cat, 48 x 64.
    content = np.stack([data.astronaut()[::8, ::8][:48], data.chelsea()[::5, ::5][:48, :64]])
    return style, content


def test_losses_equal_naive_implementations():
    rng = np.random.default_rng(0)
    maps = torch.from_numpy(rng.random((2, 3, 4, 5), dtype=np.float32))
    naive = np.stack([m.reshape(3, -1) @ m.reshape(3, -1).T / (3 * 4 * 5) for m in maps.numpy()])
    np.testing.assert_allclose(gram_matrix(maps).numpy(), naive, rtol=1e-5)
    other = torch.from_numpy(rng.random((2, 3, 4, 5), dtype=np.float32))
    assert content_loss(maps, other).item() == pytest.approx(
        ((maps.numpy() - other.numpy()) ** 2).mean(), rel=1e-5)
    target = gram_matrix(other[:1])[0]
    expected = ((naive - target.numpy()[None]) ** 2).mean()
    assert style_loss([maps, maps], [target, target], weights=[1.0, 0.5]).item() == (
        pytest.approx(1.5 * expected, rel=1e-5))
    image = maps.numpy()
    tv = (np.abs(np.diff(image, axis=2)).mean() + np.abs(np.diff(image, axis=3)).mean())
    assert total_variation_loss(maps).item() == pytest.approx(tv, rel=1e-5)


def test_feature_taps_stop_early_and_check_names():
    backbone = build_backbone("efficientnet_lite0")
    taps = FeatureTaps(backbone, ["network.bn1", "network.blocks.1.1.bn1"])
    features = taps(torch.rand(1, 3, 32, 32))
    assert set(features) == {"network.bn1", "network.blocks.1.1.bn1"}
    assert features["network.blocks.1.1.bn1"].shape == (1, 144, 8, 8)
    assert not taps.train().network.training  # stays in eval mode
    with pytest.raises(ValueError, match="not modules"):
        FeatureTaps(backbone, ["network.blocks.99"])


def test_style_loss_falls_and_content_is_kept(images):
    style, content = images
    painter = StyleTransfer(**dict(FAST, n_iter=60), random_state=0).fit(style)
    out = painter.transform(content[:1])
    assert out.shape == content[:1].shape and out.dtype == np.uint8
    history = painter.loss_history_
    assert list(history.columns) == ["iteration", "content_loss", "style_loss", "tv_loss",
                                     "total_loss"]
    assert history["style_loss"].iloc[0] / history["style_loss"].iloc[-1] >= 10
    # The result is closer in content to the content image than noise is.
    noise_painter = StyleTransfer(**dict(FAST, n_iter=60), content_weight=0.0, style_weight=0.0,
                                  tv_weight=0.0).fit(style)
    noise = np.random.default_rng(0).integers(0, 256, content[:1].shape, dtype=np.uint8)
    taps = painter._network("cpu")

    def content_distance(image):
        prepared = painter._normalize(painter._prepare(
            torch.from_numpy(image).permute(0, 3, 1, 2).float() / 255, "cpu"))
        target = painter._normalize(painter._prepare(
            torch.from_numpy(content[:1]).permute(0, 3, 1, 2).float() / 255, "cpu"))
        name = painter._content_layers[0]
        return content_loss(taps(prepared)[name], taps(target)[name]).item()

    assert content_distance(out) < content_distance(noise)
    assert noise_painter.n_features_in_ == 48 * 48 * 3


def test_same_seed_same_output_and_noise_init(images):
    style, content = images
    params = dict(FAST, n_iter=10, init="noise")
    first = StyleTransfer(**params, random_state=1).fit(style).transform(content)
    second = StyleTransfer(**params, random_state=1).fit(style).transform(content)
    other = StyleTransfer(**params, random_state=2).fit(style).transform(content)
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other)


def test_forms_sizes_and_mixed_styles(images):
    style, content = images
    two_styles = np.concatenate([style, 255 - style])
    painter = StyleTransfer(**dict(FAST, n_iter=5), style_weights=[3, 1]).fit(two_styles)
    gray_painter = StyleTransfer(**dict(FAST, n_iter=5)).fit(style[..., 0])
    gray = gray_painter.transform(content[..., 0])  # (n, h, w) gray in, gray out
    assert gray.shape == (2, 48, 64) and gray.dtype == np.uint8
    floats = painter.transform(content.astype(np.float32) / 255)
    assert floats.dtype == np.float32 and 0 <= floats.min() and floats.max() <= 1
    with pytest.raises(ValueError, match="style_weights"):
        StyleTransfer(**FAST, style_weights=[1.0]).fit(two_styles)
    with pytest.raises(ValueError, match="channel"):
        painter.transform(np.zeros((1, 20, 20, 4)))


def test_bad_parameters_and_unfitted(images):
    style, content = images
    with pytest.raises(ValueError, match="optimizer"):
        StyleTransfer(**FAST, optimizer="sgd").fit(style)
    with pytest.raises(ValueError, match="init"):
        StyleTransfer(**FAST, init="zeros").fit(style)
    with pytest.raises(ValueError, match="not modules"):
        StyleTransfer(**FAST, style_layers=("nope",)).fit(style)
    with pytest.raises(NotFittedError):
        StyleTransfer().transform(content)


def test_adam_pickle_and_clone(images):
    style, content = images
    painter = StyleTransfer(**dict(FAST, n_iter=5), optimizer="adam", lr=0.05).fit(style)
    out = painter.transform(content)
    restored = pickle.loads(pickle.dumps(painter))
    np.testing.assert_array_equal(restored.transform(content), out)
    assert clone(painter).get_params() == painter.get_params()


def test_plot_history_of_a_transfer(images):
    import matplotlib

    matplotlib.use("Agg")
    from skvision.plotting import plot_history

    style, content = images
    painter = StyleTransfer(**dict(FAST, n_iter=10)).fit(style)
    painter.transform(content[:1])
    fig = plot_history(painter)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "iteration" and ax.get_yscale() == "log"
    assert {line.get_label() for line in ax.get_lines()} == {
        "content_loss", "style_loss", "tv_loss", "total_loss"}
