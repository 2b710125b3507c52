"""Multi-label images: a multilabel-indicator ``y`` (which tags each image has), as
scikit-learn's MLPClassifier takes it. sklearn's own multilabel checks run in
tests/test_common.py for the three neural classifiers."""

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import KFold, cross_validate
from sklearn.multioutput import MultiOutputClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import skvision
from skvision import CNNClassifier, ImageAugmenter
from skvision._batching import TrainingAugment
from skvision.datasets import make_shapes
from skvision.preprocessing import ImageFlattener

FAST = dict(filters=(8, 16), epochs=3, batch_size=32, device="cpu", random_state=0)

# Meant for one xdist worker to run the whole file (make test uses --dist
# loadgroup), so that the 25-epoch model of ``fitted`` is trained once, not once
# per worker (two 62-78 s set-ups per run). tests/conftest.py stops the run
# where the installed pytest does not apply the groups (pytest 9).
pytestmark = pytest.mark.xdist_group("multilabel")


@pytest.fixture(scope="module")
def shapes():
    """Images of 1 to 3 shapes; y says which of circle, square, triangle each contains."""
    return make_shapes(n_samples=400, image_size=32, task="multilabel", random_state=0)


@pytest.fixture(scope="module")
def fitted(shapes):
    """One model, shared by the tests that only read it.

    25 epochs: "auto" gives 10 on 300 images, which reached a samples-F1 of
    only 0.50-0.60 over seeds 0-2 (with the default filters). Half the default
    filters: held-out samples-F1 0.904, as the defaults' 0.92-0.96 at 40 epochs,
    for a sixth of the work.
    """
    X, y = shapes
    return CNNClassifier(filters=(16, 32, 64), epochs=25, random_state=0).fit(X[:300], y[:300])


def test_multilabel_cnn_beats_pixels_on_held_out_shapes(shapes, fitted):
    X, y = shapes
    predicted = fitted.predict(X[300:])
    assert predicted.shape == (100, 3) and predicted.dtype == np.int64
    assert set(np.unique(predicted)) <= {0, 1}
    cnn_f1 = f1_score(y[300:], predicted, average="samples")
    pixels = make_pipeline(ImageFlattener(), StandardScaler(),
                           MultiOutputClassifier(LogisticRegression(max_iter=1000)))
    pixel_f1 = f1_score(y[300:], pixels.fit(X[:300], y[:300]).predict(X[300:]),
                        average="samples")
    # Measured 0.904 (the pixels' logistic regressions 0.393).
    assert cnn_f1 >= 0.85
    assert cnn_f1 > pixel_f1 + 0.3
    # Subset accuracy, as scikit-learn's ClassifierMixin scores multilabel y.
    assert fitted.score(X[300:], y[300:]) == pytest.approx(np.mean(np.all(predicted == y[300:],
                                                                          axis=1)))


def test_multilabel_outputs_as_mlp_classifier(shapes, fitted):
    X, _ = shapes
    np.testing.assert_array_equal(fitted.classes_, [0, 1, 2])
    proba = fitted.predict_proba(X[:20])
    assert proba.shape == (20, 3) and ((proba >= 0) & (proba <= 1)).all()
    # One sigmoid per label: they need not sum to 1, and predict thresholds each at 1/2.
    assert not np.allclose(proba.sum(axis=1), 1)
    np.testing.assert_array_equal(fitted.predict(X[:20]), (proba > 0.5).astype(int))
    # No accuracy column: accuracy of mixed tags is not the per-image accuracy.
    assert "train_acc" not in fitted.history_


def test_multilabel_save_load_and_pickle(shapes, fitted, tmp_path):
    X, _ = shapes
    skvision.save(fitted, tmp_path / "tags.skv")
    loaded = skvision.load(tmp_path / "tags.skv")
    np.testing.assert_array_equal(loaded.predict_proba(X[:50]), fitted.predict_proba(X[:50]))
    np.testing.assert_array_equal(loaded.predict(X[:50]), fitted.predict(X[:50]))


def test_multilabel_from_image_files(shapes, tmp_path):
    X, y = shapes
    paths = []
    for index, image in enumerate(X[:64]):
        paths.append(str(tmp_path / f"{index}.png"))  # lossless: the same pixels as X
        Image.fromarray(image).save(paths[-1])
    from_files = CNNClassifier(**FAST).fit(paths, y[:64])
    from_array = CNNClassifier(**FAST).fit(X[:64], y[:64])
    np.testing.assert_allclose(from_files.predict_proba(paths), from_array.predict_proba(X[:64]),
                               rtol=1e-5, atol=1e-6)


def test_multilabel_class_weight_weighs_each_labels_positives(shapes):
    X, y = shapes
    y = y[:200].copy()
    balanced = CNNClassifier(**FAST, class_weight="balanced").fit(X[:200], y)
    positives = y.sum(axis=0)
    np.testing.assert_allclose(balanced.class_weight_, (200 - positives) / positives)
    torch.testing.assert_close(balanced.net_.criterion_.pos_weight,
                               torch.as_tensor(balanced.class_weight_, dtype=torch.float32))
    weighted = CNNClassifier(**FAST, class_weight={2: 5.0}).fit(X[:200], y)
    np.testing.assert_array_equal(weighted.class_weight_, [1.0, 1.0, 5.0])
    # Heavier positives of a label: its tag is predicted more often.
    plain = CNNClassifier(**FAST).fit(X[:200], y)
    assert weighted.predict(X[200:])[:, 2].sum() > plain.predict(X[200:])[:, 2].sum()
    with pytest.raises(ValueError, match="column indices 0..2"):
        CNNClassifier(**FAST, class_weight={"circle": 2.0}).fit(X[:200], y)


def test_mixup_mixes_the_label_vectors():
    augmenter = ImageAugmenter(mixup_alpha=1.0, horizontal_flip=0.0, random_state=0)
    training = TrainingAugment(augmenter, np.random.default_rng(0), "multilabel")
    y = torch.tensor([[1, 0, 0], [0, 1, 1], [0, 0, 1], [1, 1, 0]], dtype=torch.float32)
    _, mixed, _ = training(torch.rand(4, 3, 8, 8), y)
    assert mixed.shape == (4, 3) and ((mixed >= 0) & (mixed <= 1)).all()
    assert not torch.equal(mixed, y)  # mixed, not one-hot of a class
    # A pair's label vector is the mix of both vectors: its sum is between theirs.
    assert torch.all(mixed.sum(dim=1) <= y.sum(dim=1).max())


def test_multilabel_with_mixup_sample_weight_and_cross_validation(shapes):
    X, y = shapes
    clf = CNNClassifier(**FAST, augment=ImageAugmenter(mixup_alpha=0.4, random_state=0))
    weights = np.where(y[:200, 0] == 1, 2.0, 1.0)
    clf.fit(X[:200], y[:200], sample_weight=weights)
    assert clf.predict(X[:10]).shape == (10, 3)
    # The accuracy bar is test_multilabel_cnn_beats_pixels_on_held_out_shapes's;
    # here the scorer must score each fold's multilabel predictions.
    folds = KFold(n_splits=2)
    result = cross_validate(CNNClassifier(**FAST), X[:200], y[:200], cv=folds,
                            scoring="f1_samples", return_estimator=True)
    assert result["test_score"].shape == (2,)
    for (_, test), fold_model, score in zip(folds.split(X[:200]), result["estimator"],
                                            result["test_score"]):
        predicted = fold_model.predict(X[test])
        assert predicted.shape == (100, 3)
        assert score == pytest.approx(f1_score(y[test], predicted, average="samples"))


def test_multilabel_y_must_keep_its_columns(shapes):
    X, y = shapes
    clf = CNNClassifier(**dict(FAST, epochs=1)).partial_fit(X[:64], y[:64])
    with pytest.raises(ValueError, match="y has 2 labels .* fitted with 3"):
        clf.partial_fit(X[:64], y[:64, :2])
