"""BoostedTreesClassifier / BoostedTreesRegressor: XGBoost with scikit-learn manners.

XGBoost's own sklearn wrappers need integer labels 0..k-1, an explicit
``eval_set`` for early stopping, and fail several of sklearn's estimator
checks. These estimators keep XGBoost's trees and speed (the fitted
``xgboost.XGBClassifier`` is ``model_``) and add what sklearn users expect:
any labels with ``classes_``, early stopping on a validation split taken
from the training data (so it works inside ``cross_val_score`` and
``GridSearchCV``), ``n_iter_``, ``feature_importances_`` for
``SelectFromModel``, ``device="auto"`` and full ``check_estimator``
compliance.
"""

import numbers

import numpy as np
import xgboost
from scipy.special import expit, softmax
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier
from sklearn.model_selection import train_test_split
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    check_is_fitted,
    column_or_1d,
    validate_data,
)
from tqdm.auto import tqdm

from ._docstrings import CLASS_WEIGHT_DOC, fill_docstring
from ._params import (
    BOOLEAN,
    CLASSIFIER_CONSTRAINTS,
    RANDOM_STATE,
    Interval,
    Options,
    Satisfies,
    validate_params,
)
from ._torch import draw_seed, is_device, resolve_device
from ._validation import check_sample_weight, class_weights
from .parallel import apply_blocks, is_dask_collection

__all__ = ["BoostedTreesClassifier", "BoostedTreesRegressor"]

# Above this many samples early_stopping="auto" turns on, as in
# sklearn's HistGradientBoosting estimators.
_AUTO_EARLY_STOPPING_SAMPLES = 10_000

_COMMON_PARAMETERS_DOC = """\
n_estimators : int, default=100
        Maximum number of boosting rounds (trees per class).

    learning_rate : float, default=0.1
        Shrinkage of each tree's contribution; smaller needs more trees.

    max_depth : int, default=6
        Maximum depth of a tree.

    min_child_weight : float, default=1.0
        Minimum sum of instance weights (hessian) in a leaf.

    subsample : float, default=1.0
        Share of the training rows drawn for each tree.

    colsample_bytree : float, default=1.0
        Share of the features drawn for each tree.

    reg_alpha : float, default=0.0
        L1 penalty on leaf weights.

    reg_lambda : float, default=1.0
        L2 penalty on leaf weights: the regularization term added to the
        boosting objective.

    gamma : float, default=0.0
        Minimum loss reduction to make a further split.

    max_bin : int, default=256
        Histogram bins per feature.

    early_stopping : "auto" or bool, default="auto"
        Hold out ``validation_fraction`` of the training data and stop when
        the validation loss has not improved for ``n_iter_no_change``
        rounds; predictions use the best round. "auto" enables it above
        10,000 samples.

    validation_fraction : float, default=0.1
        Share of the training data held out for early stopping (stratified
        for classifiers).

    n_iter_no_change : int, default=10
        Rounds without improvement of the validation loss before stopping.

    device : {"auto", "cpu", "cuda"}, default="auto"
        Where trees are built: "auto" uses a CUDA GPU when one is available
        and XGBoost was built with CUDA.

    n_jobs : int, default=None
        CPU threads; None lets XGBoost use all cores.

    random_state : int, RandomState instance or None, default=None
        Seeds row/column subsampling and the validation split.

    verbose : int, default=0
        0 is silent, 1 shows a progress bar over the boosting rounds."""

_COMMON_ATTRIBUTES_DOC = """\
model_ : xgboost.XGBClassifier or xgboost.XGBRegressor
        The fitted XGBoost model. A regressor's is fitted to the
        standardized targets (less their mean, over their standard
        deviation, computed in float64): ``predict`` scales its output back.

    n_iter_ : int
        Boosting rounds used for prediction (the best round with early
        stopping).

    validation_loss_ : ndarray of shape (n_rounds,)
        Validation loss after each round; defined with early stopping only.

    feature_importances_ : ndarray of shape (n_features,)
        Total gain of the splits on each feature in the trees used for
        prediction (the first ``n_iter_`` rounds), normalized to sum to 1
        (all zeros when no tree splits). XGBoost's own default, the average
        gain per split, would rank a feature split rarely but once well
        above one that every tree uses.

    n_features_in_ : int
        Number of features seen in ``fit``.

    feature_names_in_ : ndarray of str
        Column names of DataFrame input. Defined only then."""


def _xgboost_device(device):
    """The XGBoost device for ``device``: torch's choice where this XGBoost build can use it."""
    chosen = resolve_device(device)
    if device == "auto" and not (chosen.startswith("cuda")
                                 and xgboost.build_info().get("USE_CUDA", False)):
        return "cpu"
    return chosen


class _ProgressBar(xgboost.callback.TrainingCallback):
    """One tqdm bar over the boosting rounds."""

    def __init__(self, total):
        super().__init__()
        self.total = total

    def before_training(self, model):
        self.bar_ = tqdm(total=self.total, desc="boosting", unit="tree")
        return model

    def after_iteration(self, model, epoch, evals_log):
        self.bar_.update()
        return False

    def after_training(self, model):
        self.bar_.close()
        return model


def _gathered(values):
    """One value per row, as a numpy array (computed if it is a dask collection)."""
    return np.asarray(values.compute() if is_dask_collection(values) else values)


def _local_model(dask_model, model_params):
    """The in-memory XGBoost model of a model trained with xgboost.dask (same booster)."""
    local_class = xgboost.XGBClassifier if is_classifier(dask_model) else xgboost.XGBRegressor
    local = local_class(**model_params)
    local.load_model(bytearray(dask_model.get_booster().save_raw("ubj")))
    local.evals_result_ = getattr(dask_model, "evals_result_", {})
    return local


class _BoostedTrees(BaseEstimator):
    """Validation, the validation split and the XGBoost call shared by both."""

    def __init__(
        self,
        *,
        n_estimators=100,
        learning_rate=0.1,
        max_depth=6,
        min_child_weight=1.0,
        subsample=1.0,
        colsample_bytree=1.0,
        reg_alpha=0.0,
        reg_lambda=1.0,
        gamma=0.0,
        max_bin=256,
        early_stopping="auto",
        validation_fraction=0.1,
        n_iter_no_change=10,
        device="auto",
        n_jobs=None,
        random_state=None,
        verbose=0,
    ):
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.min_child_weight = min_child_weight
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.reg_alpha = reg_alpha
        self.reg_lambda = reg_lambda
        self.gamma = gamma
        self.max_bin = max_bin
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.device = device
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    _parameter_constraints = {
        "n_estimators": [Interval(numbers.Integral, 1, None)],
        "learning_rate": [Interval(numbers.Real, 0, None, closed="neither")],
        "max_depth": [Interval(numbers.Integral, 0, None)],
        "min_child_weight": [Interval(numbers.Real, 0, None)],
        "subsample": [Interval(numbers.Real, 0, 1, closed="right")],
        "colsample_bytree": [Interval(numbers.Real, 0, 1, closed="right")],
        "reg_alpha": [Interval(numbers.Real, 0, None)],
        "reg_lambda": [Interval(numbers.Real, 0, None)],
        "gamma": [Interval(numbers.Real, 0, None)],
        "max_bin": [Interval(numbers.Integral, 2, None)],
        "early_stopping": [Options("auto"), BOOLEAN],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(numbers.Integral, 1, None)],
        # XGBoost has no MPS backend.
        "device": [Options("auto", "cpu", "cuda"), Satisfies(
            lambda device: str(device).startswith("cuda:") and is_device(device), "'cuda:N'")],
        "n_jobs": [None, Interval(numbers.Integral, None, None)],
        "random_state": RANDOM_STATE,
        "verbose": [Interval(numbers.Integral, 0, 1), BOOLEAN],
    }

    def _validate_X(self, X, reset):
        # XGBoost handles missing values itself: NaN is allowed, inf is not.
        return validate_data(self, X, reset=reset, dtype=[np.float32, np.float64],
                             ensure_all_finite="allow-nan", ensure_min_samples=1 if not reset
                             else 2)

    def _split(self, n_samples, stratify, seed):
        """Train / validation indices, stratified when possible.

        Every class keeps at least one training sample (XGBoost needs all
        labels 0..k-1 in training): classes with a single sample, and any
        class a non-stratified split put wholly in validation, go to training.
        """
        indices = np.arange(n_samples)
        keep = np.ones(n_samples, dtype=bool)
        if stratify is not None:
            keep = np.bincount(stratify)[stratify] >= 2
        pool = indices[keep]
        try:
            train, valid = train_test_split(
                pool, test_size=self.validation_fraction, random_state=seed,
                stratify=None if stratify is None else stratify[pool],
            )
        except ValueError:  # fewer validation rows than classes: split at random
            train, valid = train_test_split(pool, test_size=self.validation_fraction,
                                            random_state=seed)
        train = np.concatenate([train, indices[~keep]])
        if stratify is not None:
            unseen = ~np.isin(stratify[valid], stratify[train])
            train, valid = np.concatenate([train, valid[unseen]]), valid[~unseen]
        return np.sort(train), np.sort(valid)

    def _fit(self, X, y, sample_weight, model_class, objective_params, stratify,
             client=None, target_scale=1.0):
        """Train ``model_``; a regressor's ``y`` comes divided by ``target_scale``.

        ``gamma`` (a loss reduction, in squared units of y) and ``reg_alpha``
        (a bound on gradient sums, in units of y) are divided to match, so
        the trees are those of the unscaled targets; the validation loss
        (RMSE) is multiplied back.
        """
        seed = draw_seed(self.random_state)
        early_stopping = self.early_stopping
        if early_stopping == "auto":
            early_stopping = len(X) > _AUTO_EARLY_STOPPING_SAMPLES
        fit_params = {"verbose": False}
        model_params = dict(
            n_estimators=self.n_estimators, learning_rate=self.learning_rate,
            max_depth=self.max_depth, min_child_weight=self.min_child_weight,
            subsample=self.subsample, colsample_bytree=self.colsample_bytree,
            reg_alpha=self.reg_alpha / target_scale, reg_lambda=self.reg_lambda,
            gamma=self.gamma / target_scale**2,
            max_bin=self.max_bin, tree_method="hist", device=_xgboost_device(self.device),
            n_jobs=self.n_jobs, random_state=seed, **objective_params,
        )
        if self.verbose and client is None:  # a dask worker's bar would print there
            model_params["callbacks"] = [_ProgressBar(self.n_estimators)]
        valid = []
        if early_stopping:
            train, valid = self._split(len(X), stratify, seed)
        if len(valid):
            weights = (None, None) if sample_weight is None else (
                sample_weight[train], sample_weight[valid])
            fit_params["eval_set"] = [(X[valid], y[valid])]
            if sample_weight is not None:
                fit_params["sample_weight_eval_set"] = [weights[1]]
            X, y, sample_weight = X[train], y[train], weights[0]
            model_params["early_stopping_rounds"] = self.n_iter_no_change
        self.model_ = model_class(**model_params)
        if client is not None:
            self.model_.client = client
        self.model_.fit(X, y, sample_weight=sample_weight, **fit_params)
        if client is not None:
            self.model_ = _local_model(self.model_, model_params)
        if len(valid):
            (losses,) = self.model_.evals_result()["validation_0"].values()
            self.validation_loss_ = np.asarray(losses) * target_scale
            self.n_iter_ = int(self.model_.best_iteration) + 1
        else:
            self.__dict__.pop("validation_loss_", None)
            self.n_iter_ = self.n_estimators
        return self

    def _fit_dask(self, X, y, sample_weight, classifier):
        """Train with ``xgboost.dask`` on the active dask client: the data stay on the workers.

        The labels (one per row) are gathered to encode them and to split off
        the early-stopping validation rows, as in memory; the features are not.
        """
        import dask.array as da
        from distributed import get_client
        from xgboost import dask as xgb_dask

        try:
            client = get_client()
        except ValueError:
            raise ValueError(
                "Fitting on dask collections trains with xgboost.dask on a dask.distributed "
                "cluster: start one first, e.g. `from dask.distributed import Client; "
                "client = Client()`."
            ) from None
        if hasattr(X, "columns"):
            self.feature_names_in_ = np.asarray(X.columns, dtype=object)
            X = X.to_dask_array(lengths=True)
        else:
            self.__dict__.pop("feature_names_in_", None)
        if X.ndim != 2:
            raise ValueError(f"Expected a 2-D dask array of features; got shape {X.shape}.")
        self.n_features_in_ = X.shape[1]
        y = _gathered(y).reshape(-1)
        if len(y) != X.shape[0]:
            raise ValueError(f"X has {X.shape[0]} rows but y has {len(y)} values.")
        if sample_weight is not None:
            sample_weight = _gathered(sample_weight).astype(np.float64)
        if classifier:
            y, objective = self._encode_classes(y)
            sample_weight = self._class_weighted(sample_weight, y)
            model_class, stratify = xgb_dask.DaskXGBClassifier, y
        else:
            y = self._standardized(y, sample_weight)
            objective = {"objective": "reg:squarederror"}
            model_class, stratify = xgb_dask.DaskXGBRegressor, None
        X = X.rechunk({1: -1})
        y = da.from_array(y, chunks=(X.chunks[0],))
        if sample_weight is not None:
            sample_weight = da.from_array(sample_weight, chunks=(X.chunks[0],))
        return self._fit(X, y, sample_weight, model_class, objective, stratify, client=client,
                         target_scale=1.0 if classifier else self._y_scale)

    @property
    def feature_importances_(self):
        """Normalized total gain of the splits on each feature, in the trees that predict."""
        check_is_fitted(self, "model_")
        booster = self.model_.get_booster()
        if self.n_iter_ < booster.num_boosted_rounds():
            # Early stopping keeps the rounds after the best one; predictions
            # do not use them, so neither do the importances.
            booster = booster[:self.n_iter_]
        gains = booster.get_score(importance_type="total_gain")
        names = booster.feature_names or [f"f{index}" for index in range(self.n_features_in_)]
        total = np.array([gains.get(name, 0.0) for name in names], dtype=np.float64)
        return total / total.sum() if total.sum() > 0 else total

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags


@fill_docstring(parameters=_COMMON_PARAMETERS_DOC, attributes=_COMMON_ATTRIBUTES_DOC,
                class_weight=CLASS_WEIGHT_DOC)
class BoostedTreesClassifier(ClassifierMixin, _BoostedTrees):
    """Gradient-boosted trees (XGBoost) for classification, with sklearn manners.

    Gradient boosting adds shallow decision trees one at a time, each fitted
    to the errors (gradients of the log-loss) of the ensemble so far; XGBoost
    grows them from feature histograms with a regularized objective
    (``reg_lambda``, ``reg_alpha``, ``gamma``). Labels may be any sklearn
    labels (strings, non-contiguous integers); predictions are the same
    labels.

    Read more in the :ref:`User Guide <user-guide-boosting>`.

    Parameters
    ----------
    %(parameters)s

    %(class_weight)s

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels.

    class_weight_ : ndarray of shape (n_classes,) or None
        The weight of each class in the loss, when ``class_weight`` is set.

    %(attributes)s

    See Also
    --------
    sklearn.ensemble.HistGradientBoostingClassifier : sklearn's own
        histogram gradient boosting.
    xgboost.XGBClassifier : The model trained underneath.

    Examples
    --------
    >>> from sklearn.model_selection import cross_val_score
    >>> from skvision import BoostedTreesClassifier
    >>> from skvision.datasets import load_digit_images
    >>> X, y = load_digit_images(return_X_y=True)
    >>> names = np.array(["zero", "one", "two", "three", "four", "five", "six",
    ...                   "seven", "eight", "nine"])[y]
    >>> clf = BoostedTreesClassifier(n_estimators=50, random_state=0)
    >>> clf.fit(X.reshape(len(X), -1), names).predict(X[:2].reshape(2, -1))
    array(['zero', 'one'], dtype='<U5')
    """

    _parameter_constraints = {
        **_BoostedTrees._parameter_constraints,
        "class_weight": CLASSIFIER_CONSTRAINTS["class_weight"],
    }

    def __init__(
        self,
        *,
        n_estimators=100,
        learning_rate=0.1,
        max_depth=6,
        min_child_weight=1.0,
        subsample=1.0,
        colsample_bytree=1.0,
        reg_alpha=0.0,
        reg_lambda=1.0,
        gamma=0.0,
        max_bin=256,
        early_stopping="auto",
        validation_fraction=0.1,
        n_iter_no_change=10,
        device="auto",
        n_jobs=None,
        random_state=None,
        verbose=0,
        class_weight=None,
    ):
        super().__init__(
            n_estimators=n_estimators, learning_rate=learning_rate, max_depth=max_depth,
            min_child_weight=min_child_weight, subsample=subsample,
            colsample_bytree=colsample_bytree, reg_alpha=reg_alpha, reg_lambda=reg_lambda,
            gamma=gamma, max_bin=max_bin, early_stopping=early_stopping,
            validation_fraction=validation_fraction, n_iter_no_change=n_iter_no_change,
            device=device, n_jobs=n_jobs, random_state=random_state, verbose=verbose,
        )
        self.class_weight = class_weight

    def fit(self, X, y, sample_weight=None):
        """Fit the boosted trees.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data; NaN marks missing values.
        y : array-like of shape (n_samples,)
            Class labels.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the samples, multiplied by ``class_weight``'s.

        Returns
        -------
        self : object
            The fitted classifier.
        """
        validate_params(self)
        if is_dask_collection(X):
            return self._fit_dask(X, y, sample_weight, classifier=True)
        X, y = validate_data(self, X, y, dtype=[np.float32, np.float64],
                             ensure_all_finite="allow-nan", ensure_min_samples=2)
        y = column_or_1d(y, warn=True)
        encoded, objective = self._encode_classes(y)
        if sample_weight is not None:
            sample_weight = check_sample_weight(sample_weight, len(X))
        sample_weight = self._class_weighted(sample_weight, encoded)
        return self._fit(X, encoded, sample_weight, xgboost.XGBClassifier, objective,
                         stratify=encoded)

    def _class_weighted(self, sample_weight, encoded):
        """Set ``class_weight_``; ``sample_weight`` times the weight of each sample's class.

        As HistGradientBoostingClassifier: "balanced" counts the classes in
        all of ``y``, before the early-stopping split.
        """
        counts = np.bincount(encoded, minlength=len(self.classes_))
        self.class_weight_ = class_weights(self.class_weight, self.classes_, counts)
        if self.class_weight_ is None:
            return sample_weight
        weights = self.class_weight_[encoded]
        return weights if sample_weight is None else sample_weight * weights

    def _encode_classes(self, y):
        """Set ``classes_``; return the labels as 0..k-1 and XGBoost's objective."""
        check_classification_targets(y)
        self.classes_, encoded = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(
                f"Classifier can't train when only one class is present (got only "
                f"{self.classes_[0]!r}); y needs at least 2 classes."
            )
        binary = len(self.classes_) == 2
        return encoded, {"objective": "binary:logistic" if binary else "multi:softprob"}

    def predict_proba(self, X):
        """Class probabilities, shape ``(n_samples, n_classes)``, in ``classes_`` order.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            float64; each row sums to 1.
        """
        check_is_fitted(self, "model_")
        if is_dask_collection(X):
            return apply_blocks(self, X, "predict_proba")
        X = self._validate_X(X, reset=False)
        # XGBoost's probabilities are float32, and its binary 1 - p rounds
        # away small probabilities: the float32 margins (log-odds) turned
        # into probabilities in float64 give rows that sum to 1.
        margin = self.model_.predict(X, output_margin=True).astype(np.float64)
        if margin.ndim == 1:  # binary: the log-odds of the second class
            return np.column_stack([expit(-margin), expit(margin)])
        return softmax(margin, axis=1)

    def predict(self, X):
        """Most probable class label of each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        if is_dask_collection(X):
            return apply_blocks(self, X, "predict")
        proba = self.predict_proba(X)
        return self.classes_[proba.argmax(axis=1)]


@fill_docstring(parameters=_COMMON_PARAMETERS_DOC, attributes=_COMMON_ATTRIBUTES_DOC)
class BoostedTreesRegressor(RegressorMixin, _BoostedTrees):
    """Gradient-boosted trees (XGBoost) for regression, with sklearn manners.

    Each new tree fits the residuals (squared-error gradients) of the
    ensemble so far, from feature histograms, with XGBoost's regularized
    objective.

    Read more in the :ref:`User Guide <user-guide-boosting>`.

    Parameters
    ----------
    %(parameters)s

    Attributes
    ----------
    %(attributes)s

    See Also
    --------
    sklearn.ensemble.HistGradientBoostingRegressor : sklearn's own
        histogram gradient boosting.
    xgboost.XGBRegressor : The model trained underneath.

    Examples
    --------
    >>> import numpy as np
    >>> from skvision import BoostedTreesRegressor
    >>> X = np.random.default_rng(0).random((200, 3))
    >>> y = 3 * X[:, 0] + X[:, 1]
    >>> reg = BoostedTreesRegressor(random_state=0).fit(X, y)
    >>> round(reg.score(X, y), 2)
    1.0
    """

    def fit(self, X, y, sample_weight=None):
        """Fit the boosted trees.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data; NaN marks missing values.
        y : array-like of shape (n_samples,)
            Targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the samples.

        Returns
        -------
        self : object
            The fitted regressor.
        """
        validate_params(self)
        if is_dask_collection(X):
            return self._fit_dask(X, y, sample_weight, classifier=False)
        X, y = validate_data(self, X, y, dtype=[np.float32, np.float64], y_numeric=True,
                             ensure_all_finite="allow-nan", ensure_min_samples=2)
        y = column_or_1d(y, warn=True)
        if sample_weight is not None:
            sample_weight = check_sample_weight(sample_weight, len(X))
        y = self._standardized(y, sample_weight)
        return self._fit(X, y, sample_weight, xgboost.XGBRegressor,
                         {"objective": "reg:squarederror"}, stratify=None,
                         target_scale=self._y_scale)

    def _standardized(self, y, sample_weight):
        """``(y - mean) / std`` in float64; ``_y_mean`` and ``_y_scale`` are kept for predict.

        XGBoost fits and predicts in float32: targets far from zero (1e7 on
        top of a signal of scale 1) keep too few digits of their variation
        to learn it. Its split search also ignores gains below 1e-6 and
        overflows float32 above ~1e38, so targets of scale 1e-8 or 1e20 grow
        no useful tree. The weighted mean and standard deviation make a
        weight of 2 the same as a repeated row, and a weight of 0 the same
        as a removed one.
        """
        y = np.asarray(y, dtype=np.float64)
        weights = None if sample_weight is None or not np.sum(sample_weight) > 0 else (
            sample_weight)
        self._y_mean = float(np.average(y, weights=weights))
        spread = float(np.sqrt(np.average((y - self._y_mean) ** 2, weights=weights)))
        # A constant y (or one whose spread is lost to rounding) is only centred.
        self._y_scale = spread if spread > 0 and np.isfinite(1 / spread) else 1.0
        return (y - self._y_mean) / self._y_scale

    def predict(self, X):
        """Predicted targets.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        check_is_fitted(self, "model_")
        if is_dask_collection(X):
            return apply_blocks(self, X, "predict")
        X = self._validate_X(X, reset=False)
        return self.model_.predict(X).astype(np.float64) * self._y_scale + self._y_mean
