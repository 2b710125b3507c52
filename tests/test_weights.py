"""Sample weights and class weights of the neural classifiers and regressors."""

import numpy as np
import pytest
import sklearn
from sklearn.metrics import get_scorer, recall_score
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.class_weight import compute_sample_weight

from skvision import (
    CNNClassifier,
    CNNRegressor,
    FineTunedClassifier,
    FineTunedRegressor,
    VisionTransformerClassifier,
    VisionTransformerRegressor,
)
from skvision.datasets import load_digit_images

FAST = dict(epochs=2, device="cpu", random_state=0)
CLASSIFIERS = [
    lambda **kw: CNNClassifier(filters=(8,), **FAST, **kw),
    lambda **kw: VisionTransformerClassifier(embed_dim=16, depth=1, n_heads=2, **FAST, **kw),
    lambda **kw: FineTunedClassifier(backbone="test_efficientnet", weights=False,
                                     image_size=16, **FAST, **kw),
]
REGRESSORS = [
    lambda **kw: CNNRegressor(filters=(8,), **FAST, **kw),
    lambda **kw: VisionTransformerRegressor(embed_dim=16, depth=1, n_heads=2, **FAST, **kw),
    lambda **kw: FineTunedRegressor(backbone="test_efficientnet", weights=False,
                                    image_size=16, **FAST, **kw),
]


@pytest.fixture(scope="module")
def digits():
    X, y = load_digit_images(return_X_y=True)
    return X[:300], y[:300]


def _outputs(model, X):
    return model.predict_proba(X) if hasattr(model, "predict_proba") else model.predict(X)


@pytest.mark.parametrize("make", CLASSIFIERS + REGRESSORS)
def test_weights_change_the_model_and_equal_weights_do_not(make, digits):
    X, y = digits
    plain = _outputs(make().fit(X, y), X[:50])
    weighted = _outputs(make().fit(X, y, sample_weight=np.where(y % 2 == 0, 4.0, 0.5)), X[:50])
    assert np.abs(weighted - plain).max() > 1e-3
    # Each batch's loss is a weighted mean: equal weights of any size are no weights.
    same = _outputs(make().fit(X, y, sample_weight=np.full(len(y), 3.0)), X[:50])
    np.testing.assert_array_equal(same, plain)


@pytest.mark.parametrize("Estimator", [CNNClassifier, CNNRegressor])
def test_zero_weight_equals_leaving_the_images_out(Estimator, digits):
    # One full batch and no batch norm or dropout: the only difference left is
    # the order of the images inside the batch, i.e. float32 rounding (in
    # bfloat16, which "auto" picks on some CPUs, outputs differ by its steps
    # of 2**-7).
    X, y = digits
    params = dict(filters=(8,), batch_norm=False, dropout=0.0, batch_size=len(y), epochs=5,
                  device="cpu", precision="32", random_state=0)
    weights = np.ones(len(y))
    weights[::3] = 0.0
    kept = weights > 0
    if Estimator is CNNRegressor:
        y = y.astype(float)
    weighted = Estimator(**params).fit(X, y, sample_weight=weights)
    left_out = Estimator(**params).fit(X[kept], y[kept])
    # The regressor standardizes with the kept targets' mean and scale there.
    if Estimator is CNNRegressor:
        np.testing.assert_allclose(weighted.predict(X[:40]) - weighted.y_mean_,
                                   (left_out.predict(X[:40]) - left_out.y_mean_)
                                   * weighted.y_scale_ / left_out.y_scale_, atol=2e-3)
    else:
        np.testing.assert_allclose(weighted.predict_proba(X[:40]),
                                   left_out.predict_proba(X[:40]), atol=1e-4)


def _imbalanced_digits():
    X, y = load_digit_images(return_X_y=True)
    rng = np.random.default_rng(0)
    train = np.arange(1000)
    rare = np.isin(y[train], [3, 8])
    keep = train[~rare | (rng.random(1000) < 0.1)]  # 9 threes and 5 eights among 812
    return X[keep], y[keep], X[1000:], y[1000:]


@pytest.mark.slow
def test_balanced_class_weight_raises_minority_recall():
    X, y, X_test, y_test = _imbalanced_digits()
    params = dict(filters=(16, 32), epochs=8, device="cpu", random_state=0)
    plain = CNNClassifier(**params).fit(X, y)
    balanced = CNNClassifier(**params, class_weight="balanced").fit(X, y)
    recall = {name: recall_score(y_test, model.predict(X_test), labels=[3, 8], average="macro")
              for name, model in (("plain", plain), ("balanced", balanced))}
    # Measured: 0.0 without weights, 0.70 to 0.82 with "balanced" over three seeds.
    assert recall["plain"] < 0.2 and recall["balanced"] > 0.5, recall
    assert balanced.class_weight_[3] > 10 * balanced.class_weight_[0]
    # The same weights given per image train the same model.
    per_image = CNNClassifier(**params).fit(X, y, sample_weight=compute_sample_weight(
        "balanced", y))
    np.testing.assert_array_equal(per_image.predict(X_test), balanced.predict(X_test))


def test_class_weight_dict_and_sample_weight_multiply(digits):
    X, y = digits
    clf = CNNClassifier(filters=(8,), class_weight={3: 5.0}, **FAST)
    rows = np.where(y == 3, 5.0, 1.0) * np.linspace(0.5, 1.5, len(y))
    by_dict = clf.fit(X, y, sample_weight=np.linspace(0.5, 1.5, len(y))).predict_proba(X[:30])
    by_rows = CNNClassifier(filters=(8,), **FAST).fit(X, y, sample_weight=rows)
    np.testing.assert_array_equal(by_dict, by_rows.predict_proba(X[:30]))
    np.testing.assert_array_equal(clf.class_weight_, np.where(clf.classes_ == 3, 5.0, 1.0))


@pytest.mark.parametrize("sample_weight, message", [
    (np.ones(299), r"sample_weight must have shape \(300,\)"),
    (np.ones((300, 2)), r"sample_weight must have shape \(300,\)"),
    (np.r_[np.ones(299), -1.0], "sample_weight must be non-negative; got -1.0 at index 299"),
    (np.r_[np.ones(299), np.nan], "sample_weight"),
    (np.zeros(300), "zero for every image"),
])
def test_bad_sample_weights_raise_clear_errors(sample_weight, message, digits):
    X, y = digits
    with pytest.raises(ValueError, match=message):
        CNNClassifier(**FAST).fit(X, y, sample_weight=sample_weight)


@pytest.mark.parametrize("class_weight, message", [
    ({"cat": 2.0}, r"class_weight names classes that are not in y: \['cat'\]"),
    ({3: -1.0}, "finite and non-negative"),
    ("balance", "'class_weight' parameter of CNNClassifier must be None, 'balanced' or a dict"),
])
def test_bad_class_weights_raise_clear_errors(class_weight, message, digits):
    X, y = digits
    with pytest.raises(ValueError, match=message):
        CNNClassifier(class_weight=class_weight, **FAST).fit(X, y)


def test_class_weight_is_checked_before_the_images():
    with pytest.raises(ValueError, match="'class_weight' parameter of CNNClassifier must be"):
        CNNClassifier(class_weight=[1, 2]).fit("not images", [0, 1])


def test_balanced_is_refused_by_partial_fit(digits):
    X, y = digits
    clf = CNNClassifier(class_weight="balanced", **FAST)
    with pytest.raises(ValueError, match="not supported by partial_fit"):
        clf.partial_fit(X, y, classes=np.arange(10))
    # A dict works there, with weights per call.
    clf.set_params(class_weight={0: 2.0}).partial_fit(X, y, classes=np.arange(10),
                                                      sample_weight=np.linspace(1, 2, len(y)))
    assert clf.class_weight_[0] == 2.0


def test_sample_weight_with_mixup_trains(digits):
    from skvision.augmentation import ImageAugmenter

    X, y = digits
    augment = ImageAugmenter(horizontal_flip=0, mixup_alpha=0.4, cutmix_alpha=1.0)
    clf = CNNClassifier(filters=(8,), augment=augment, **FAST)
    clf.fit(X, y, sample_weight=np.where(y == 0, 3.0, 1.0))
    assert np.isfinite(clf.history_["train_loss"]).all()


def _scaled():
    # A step before the network: routing has to pass the weights through it.
    return FunctionTransformer(lambda X: X * 1.0)


def test_sample_weight_is_routed_through_pipeline_and_grid_search(digits):
    X, y = digits
    weights = np.where(y < 5, 3.0, 0.2)
    with sklearn.config_context(enable_metadata_routing=True):
        clf = CNNClassifier(filters=(8,), **FAST).set_fit_request(sample_weight=True)
        pipe = Pipeline([("scale", _scaled()), ("cnn", clf)]).fit(X, y, sample_weight=weights)
        direct = CNNClassifier(filters=(8,), **FAST).fit(X, y, sample_weight=weights)
        np.testing.assert_array_equal(pipe.predict_proba(X[:30]), direct.predict_proba(X[:30]))
        unweighted = CNNClassifier(filters=(8,), **FAST).fit(X, y)
        assert not np.array_equal(direct.predict_proba(X[:30]), unweighted.predict_proba(X[:30]))

        # GridSearchCV splits the weights with the rows of each fold.
        cv = KFold(3)
        # Weights for training only: the scorer says it does not take them.
        scorer = get_scorer("accuracy").set_score_request(sample_weight=False)
        search = GridSearchCV(pipe, {"cnn__lr": [0.003]}, cv=cv, scoring=scorer, refit=False)
        search.fit(X, y, sample_weight=weights)
        train, test = next(cv.split(X))
        fold = CNNClassifier(filters=(8,), **FAST).fit(X[train], y[train],
                                                       sample_weight=weights[train])
        assert search.cv_results_["split0_test_score"][0] == pytest.approx(
            fold.score(X[test], y[test]))

        # Without the request, sklearn refuses weights it would drop silently.
        unrequested = Pipeline([("scale", _scaled()), ("cnn", CNNClassifier(**FAST))])
        with pytest.raises(Exception, match="sample_weight"):
            unrequested.fit(X, y, sample_weight=weights)


@pytest.mark.parametrize("make", REGRESSORS)
def test_regressors_work_in_transformed_target_regressor_with_weights(make, digits):
    from sklearn.compose import TransformedTargetRegressor

    X, y = digits
    weights = np.where(y < 5, 3.0, 0.2)
    model = TransformedTargetRegressor(regressor=make(), func=np.log1p, inverse_func=np.expm1)
    model.fit(X, y.astype(float), sample_weight=weights)
    direct = make().fit(X, np.log1p(y), sample_weight=weights)
    np.testing.assert_allclose(model.predict(X[:20]), np.expm1(direct.predict(X[:20])),
                               rtol=1e-6)
    assert model.predict(X[:20]).shape == (20,)
