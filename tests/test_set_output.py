"""set_output(transform="pandas"/"polars") on every skvision transformer and in pipelines.

Images stay arrays (a DataFrame cannot hold them); only 2-D outputs (rows of
pixels or features) become frames, named by ``get_feature_names_out``.
"""

import copy

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

import skvision.augmentation
import skvision.preprocessing
import skvision.style
import skvision.transfer
from skvision.augmentation import ImageAugmenter
from skvision.preprocessing import (
    ChannelStandardizer,
    Grayscale,
    ImageFlattener,
    ImageReader,
    Resize,
)
from skvision.style import StyleTransfer
from skvision.transfer import PretrainedFeatureExtractor

# Every transformer of skvision, set up to be fast.
TRANSFORMERS = {
    ImageReader: dict(image_size=8),
    Resize: dict(image_size=4),
    Grayscale: {},
    ChannelStandardizer: {},
    ImageFlattener: {},
    ImageAugmenter: dict(random_state=0),
    PretrainedFeatureExtractor: dict(image_size=32, device="cpu"),
    StyleTransfer: dict(image_size=16, n_iter=1, optimizer="adam", device="cpu", random_state=0),
}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Images as uint8 arrays, and the same written as PNG files (ImageReader's input)."""
    X = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    folder = tmp_path_factory.mktemp("set_output")
    paths = [str(folder / f"{index}.png") for index in range(len(X))]
    for image, path in zip(X, paths):
        Image.fromarray(image).save(path)
    return X, paths


def test_every_transformer_is_covered():
    found = {getattr(module, name) for module in (skvision.preprocessing, skvision.augmentation,
                                                  skvision.transfer, skvision.style)
             for name in module.__all__ if hasattr(getattr(module, name), "transform")}
    assert found == set(TRANSFORMERS)


@pytest.fixture(scope="module")
def fitted(images):
    """Each transformer fitted once, with its plain output: ``{class: (fitted, X, output)}``."""
    X, paths = images
    cache = {}

    def get(transformer):
        if transformer not in cache:
            inputs = paths if transformer is ImageReader else X
            step = transformer(**TRANSFORMERS[transformer]).fit(inputs)
            cache[transformer] = step, inputs, step.transform(inputs)
        return cache[transformer]

    return get


@pytest.mark.parametrize("transformer", list(TRANSFORMERS), ids=lambda cls: cls.__name__)
@pytest.mark.parametrize("container", ["pandas", "polars"])
def test_images_stay_arrays_and_rows_become_frames(transformer, container, fitted):
    library = pd if container == "pandas" else pytest.importorskip("polars")
    step, X, expected = fitted(transformer)
    step = copy.deepcopy(step).set_output(transform=container)
    output = step.transform(X)
    if expected.ndim == 2:
        assert isinstance(output, library.DataFrame)
        assert list(output.columns) == list(step.get_feature_names_out())
        np.testing.assert_allclose(output.to_numpy(), expected, rtol=1e-6)
    else:
        assert type(output) is type(expected) and output.shape == expected.shape
        np.testing.assert_allclose(output, expected, rtol=1e-6)


@pytest.mark.parametrize("transformer", [Resize, ImageFlattener, ImageAugmenter])
def test_flat_rows_in_give_a_frame_out(transformer):
    """Flat rows are 2-D: under pandas output they come out named (fit_transform too),
    keeping X's index."""
    X = pd.DataFrame(np.random.default_rng(0).random((3, 16)), index=[7, 8, 9])
    step = transformer(**TRANSFORMERS[transformer], image_shape=(4, 4)).set_output(
        transform="pandas")
    output = step.fit_transform(X)
    assert isinstance(output, pd.DataFrame) and list(output.index) == [7, 8, 9]


def test_global_config_and_errors(images):
    from sklearn import config_context

    X, _ = images
    with config_context(transform_output="pandas"):
        assert isinstance(Resize(image_size=4).fit_transform(X), np.ndarray)
        assert isinstance(ImageFlattener().fit_transform(X), pd.DataFrame)
    with pytest.raises(ValueError, match="must be one of"):
        Resize().set_output(transform="arrow")
    # clone keeps the setting (GridSearchCV and cross_val_score clone their steps).
    assert isinstance(clone(ImageFlattener().set_output(transform="pandas")).fit_transform(X),
                      pd.DataFrame)


def test_a_pipeline_with_image_steps_set_to_pandas_fits_and_predicts(images):
    X, _ = images
    X = np.concatenate([X] * 3)
    y = np.arange(len(X)) % 2
    pipeline = make_pipeline(Resize(image_size=6), ImageFlattener(),
                             LogisticRegression(max_iter=200))
    plain = clone(pipeline).fit(X, y)
    pipeline.set_output(transform="pandas").fit(X, y)
    features = pipeline[:-1].transform(X)
    assert isinstance(features, pd.DataFrame)
    assert list(pipeline[-1].feature_names_in_) == list(features.columns)
    np.testing.assert_array_equal(pipeline.predict(X), plain.predict(X))
