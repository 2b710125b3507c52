"""Epoch-halving searches: successive halving whose survivors keep training.

scikit-learn's :class:`~sklearn.model_selection.HalvingGridSearchCV` with
``resource="epochs"`` trains every candidate for a few epochs, keeps the
best third, and trains those again **from scratch** for more epochs. The
searches here spend the same rungs differently: every candidate's fit is
planned for ``max_epochs`` from the start (its learning-rate schedule
too), and at each rung the survivors continue from where the previous rung
left them. So the early rungs are the first epochs of the very fits the
last rung finishes, a survivor of the last rung has trained exactly as a
plain ``max_epochs`` fit would, and the epochs spent per fold drop (9
candidates, factor 3, 9 epochs: 21 epoch-runs instead of 27).

A rung's fit pauses through the training core's resumable state (the file
``checkpoint=`` writes, :func:`skvision._training.pause_after`): each fit
of a rung runs in a private temporary directory, and its state comes back
to the search in memory (bytes, through joblib), so candidates and folds
run in parallel under any joblib backend, dask's included, without a
shared disk.
"""

import numbers
import os
import tempfile
import time
from math import floor, log

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import clone, is_classifier
from sklearn.metrics import check_scoring, get_scorer_names
from sklearn.model_selection import ParameterGrid, ParameterSampler, check_cv
from sklearn.model_selection._search import BaseSearchCV
from sklearn.model_selection._validation import (
    _fit_and_score,
    _warn_or_raise_about_fit_failures,
)
from sklearn.utils import check_random_state
from sklearn.utils.validation import _num_samples, indexable

from ._checkpoint import state_files
from ._params import (
    BOOLEAN,
    CALLABLE,
    RANDOM_STATE,
    InstanceOf,
    Interval,
    Options,
    Relation,
    Satisfies,
    validate_params,
)
from ._training import BaseNeuralEstimator, pause_after

__all__ = ["EpochHalvingGridSearchCV", "EpochHalvingRandomSearchCV"]

# Parameters the search sets on every fit itself.
_RESERVED = ("epochs", "checkpoint")


def _is_neural_estimator(estimator):
    return isinstance(estimator, BaseNeuralEstimator) and not isinstance(estimator, type)


def _is_cv(cv):
    if isinstance(cv, numbers.Integral):
        return not isinstance(cv, bool) and cv >= 2
    return cv is None or hasattr(cv, "split") or (
        hasattr(cv, "__iter__") and not isinstance(cv, str))


def _is_error_score(value):
    return value == "raise" if isinstance(value, str) else (
        isinstance(value, numbers.Real) and not isinstance(value, bool))


def _read(path):
    with open(path, "rb") as file:
        return file.read()


def _train_rung(estimator, X, y, *, train, test, parameters, pause, state, scorer, fit_params,
                return_train_score, error_score, verbose):
    """One (candidate, fold) fit of a rung: continue ``state`` up to epoch ``pause``, then score.

    ``state`` is (file name, bytes) of the training state the previous rung
    left, or None for a fresh fit. Returns sklearn's ``_fit_and_score``
    result, the state to continue at the next rung (None once the fit has
    finished: all its epochs, early stopping or an error), and the epochs
    it has trained.
    """
    with tempfile.TemporaryDirectory(prefix="skvision-rung-") as root:
        # A folder of its own: the core removes it, empty, once the fit ends.
        directory = os.path.join(root, "state")
        given = None
        if state is not None:
            os.makedirs(directory)
            name, content = state
            given = os.path.join(directory, name)
            with open(given, "wb") as file:
                file.write(content)
        with pause_after(pause):
            out = _fit_and_score(
                estimator, X, y, scorer=scorer, train=train, test=test, verbose=verbose,
                parameters={**parameters, "checkpoint": directory}, fit_params=fit_params,
                score_params={}, return_train_score=return_train_score,
                return_n_test_samples=True, return_times=True, return_estimator=True,
                error_score=error_score,
            )
        fitted = out.pop("estimator")
        if out["fit_error"] is not None:
            return out, None, pause
        if given is not None and os.path.exists(given) and _read(given) == content:
            raise RuntimeError(
                f"The fit of {parameters} did not continue the state of the previous rung: "
                "its parameters or training data changed between rungs. The search "
                "continues fits only of the same parameters on the same data.")
        names = state_files(directory)
        next_state = (names[0], _read(os.path.join(directory, names[0]))) if names else None
        return out, next_state, len(fitted.history_)


class _BaseEpochHalving(BaseSearchCV):
    """Successive halving over epochs, continuing each survivor's fit from rung to rung.

    Subclasses store their own parameters (the candidates'), pass the shared
    ones to ``__init__`` and implement ``_candidate_params(rng)``, the list
    of candidates' parameter dicts.
    """

    def __init__(self, estimator, *, factor, min_epochs, max_epochs, aggressive_elimination,
                 cv, scoring, refit, n_jobs, random_state, error_score, return_train_score,
                 verbose):
        self.estimator = estimator
        self.factor = factor
        self.min_epochs = min_epochs
        self.max_epochs = max_epochs
        self.aggressive_elimination = aggressive_elimination
        self.cv = cv
        self.scoring = scoring
        self.refit = refit
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.error_score = error_score
        self.return_train_score = return_train_score
        self.verbose = verbose

    _parameter_constraints = {
        "estimator": [Satisfies(_is_neural_estimator, (
            "a skvision neural estimator (CNNClassifier, VisionTransformerClassifier, "
            "FineTunedClassifier, UNetSegmenter, ...: one trained in epochs by the "
            "training core)"))],
        "factor": [Interval(numbers.Real, 1, None, closed="neither")],
        "min_epochs": [Interval(numbers.Integral, 1, None)],
        "max_epochs": [None, Interval(numbers.Integral, 1, None)],
        "aggressive_elimination": [BOOLEAN],
        "cv": [Satisfies(_is_cv, "an int of at least 2, a cross-validation splitter, an "
                                 "iterable of (train, test) splits or None")],
        "scoring": [None, CALLABLE, Satisfies(
            lambda name: isinstance(name, str) and name in get_scorer_names(),
            "a scorer name of sklearn.metrics.get_scorer_names()")],
        "refit": [BOOLEAN],
        "n_jobs": [None, Interval(numbers.Integral, None, None)],
        "random_state": RANDOM_STATE,
        "error_score": [Satisfies(_is_error_score, "'raise' or a number")],
        "return_train_score": [BOOLEAN],
        "verbose": [Interval(numbers.Integral, 0, None), BOOLEAN],
    }
    _parameter_relations = (
        Relation(("min_epochs", "max_epochs"),
                 lambda low, high: high is None or high >= low,
                 "max_epochs must be at least min_epochs."),
    )

    def _candidate_params(self, rng):
        raise NotImplementedError

    def _max_epochs(self, estimator, n_samples):
        """``max_epochs``, or the estimator's ``epochs`` ("auto": its rule for the data's size)."""
        if self.max_epochs is not None:
            return self.max_epochs
        if estimator.epochs == "auto":
            return int(estimator._n_epochs(n_samples))
        return int(estimator.epochs)

    def _schedule(self, n_candidates):
        """The epochs of each rung, as scikit-learn's halving counts its resources.

        The last rung always trains to ``max_epochs_``.
        """
        factor, low, high = self.factor, self.min_epochs, self.max_epochs_
        n_required = 1 + floor(log(n_candidates, factor)) if n_candidates > 1 else 1
        n_possible = 1 + floor(log(high // low, factor))
        n_iterations = n_required if self.aggressive_elimination else min(n_possible, n_required)
        epochs = []
        for iteration in range(n_iterations):
            power = iteration
            if self.aggressive_elimination:
                power = max(0, iteration - n_required + n_possible)
            epochs.append(min(int(factor**power * low), high))
        epochs[-1] = high
        self.n_required_iterations_ = n_required
        self.n_possible_iterations_ = n_possible
        self.n_iterations_ = n_iterations
        return epochs

    def fit(self, X, y=None, **params):
        """Run the rungs: every candidate, then the best ones continued, then the refit.

        Parameters
        ----------
        X : array-like of images, or of image file paths
            Training images, in any form the estimator takes.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs), default=None
            Targets.
        **params : dict
            ``groups`` (for a group splitter), and parameters of the
            estimator's ``fit`` (``sample_weight``), split with the folds.

        Returns
        -------
        self : object
            The fitted search.
        """
        validate_params(self)
        groups = params.pop("groups", None)
        base = clone(self.estimator)
        rng = check_random_state(self.random_state)
        n_samples = _num_samples(X)
        self.max_epochs_ = self._max_epochs(base, n_samples)
        if self.max_epochs_ < self.min_epochs:
            raise ValueError(
                f"max_epochs ({self.max_epochs_}, the estimator's epochs when max_epochs is "
                f"None) must be at least min_epochs ({self.min_epochs}).")
        candidates = [dict(candidate) for candidate in self._candidate_params(rng)]
        if not candidates:
            raise ValueError("The parameter grid or distributions give no candidate.")
        reserved = sorted({name for candidate in candidates for name in candidate
                           if name in _RESERVED})
        if reserved:
            raise ValueError(
                f"The search sets {', '.join(reserved)} of every fit itself (max_epochs is "
                "the resource of its rungs): leave them out of the searched parameters.")
        if self.random_state is not None and base.random_state is None:
            # One seed for every fit, as an estimator given an int would have.
            base.set_params(random_state=int(rng.randint(np.iinfo(np.int32).max)))

        X, y = indexable(X, y)
        cv = check_cv(self.cv, y, classifier=is_classifier(base))
        # Drawn once: every rung sees the same folds, whatever the splitter.
        splits = list(cv.split(X, y, groups))
        self.n_splits_ = len(splits)
        self.scorer_ = check_scoring(base, self.scoring)
        rung_epochs = self._schedule(len(candidates))
        if self.verbose:
            print(f"{len(candidates)} candidates, {self.n_splits_} folds, rungs of "
                  f"{rung_epochs} epochs")

        self.cv_results_ = self._run_rungs(base, X, y, candidates, splits, rung_epochs, params)
        self.multimetric_ = False
        self.best_index_ = self._select_best_index(self.refit, "score", self.cv_results_)
        self.best_score_ = self.cv_results_["mean_test_score"][self.best_index_]
        self.best_params_ = self.cv_results_["params"][self.best_index_]
        if self.refit:
            # A plain fit of max_epochs on all the data.
            self.best_estimator_ = clone(base).set_params(
                **clone(self.best_params_, safe=False), epochs=self.max_epochs_)
            start = time.perf_counter()
            if y is None:
                self.best_estimator_.fit(X, **params)
            else:
                self.best_estimator_.fit(X, y, **params)
            self.refit_time_ = time.perf_counter() - start
        return self

    def _run_rungs(self, base, X, y, candidates, splits, rung_epochs, fit_params):
        """Train and score the rungs; returns ``cv_results_``."""
        n_splits = len(splits)
        fits = [(index, split) for index in range(len(candidates)) for split in range(n_splits)]
        states = dict.fromkeys(fits)      # the state each fit continues at its next rung
        trained = dict.fromkeys(fits, 0)  # the epochs each fit has behind it
        finished = dict.fromkeys(fits, False)
        last = {}                         # each fit's latest _fit_and_score result
        alive = list(range(len(candidates)))
        all_params, all_out, more = [], [], {"iter": [], "n_resources": []}
        self.n_resources_, self.n_candidates_ = [], []
        results = None
        with Parallel(n_jobs=self.n_jobs) as parallel:
            for iteration, epochs in enumerate(rung_epochs):
                self.n_resources_.append(epochs)
                self.n_candidates_.append(len(alive))
                if self.verbose:
                    print(f"iter {iteration}: {len(alive)} candidates, {epochs} epochs")
                todo = [(index, split) for index in alive for split in range(n_splits)
                        if not finished[index, split] and trained[index, split] < epochs]
                outs = parallel(
                    delayed(_train_rung)(
                        clone(base), X, y, train=splits[split][0], test=splits[split][1],
                        parameters={**candidates[index], "epochs": self.max_epochs_},
                        pause=epochs, state=states[index, split], scorer=self.scorer_,
                        fit_params=fit_params, return_train_score=self.return_train_score,
                        error_score=self.error_score, verbose=self.verbose,
                    )
                    for index, split in todo
                )
                if outs:
                    _warn_or_raise_about_fit_failures([out for out, _, _ in outs],
                                                      self.error_score)
                for key, (out, state, epochs_trained) in zip(todo, outs):
                    last[key] = out
                    states[key] = state
                    trained[key] = epochs_trained
                    finished[key] = state is None
                ran = set(todo)
                for index in alive:
                    for split in range(n_splits):
                        out = last[index, split]
                        if (index, split) not in ran:
                            # Nothing more to train (it stopped early, failed, or
                            # this rung has no more epochs): its last score stands.
                            out = {**out, "fit_time": 0.0, "score_time": 0.0}
                        all_out.append(out)
                    all_params.append(candidates[index])
                more["iter"] += [iteration] * len(alive)
                more["n_resources"] += [epochs] * len(alive)
                results = self._format_results(all_params, n_splits, all_out, more)
                scores = results["mean_test_score"][-len(alive):]
                # The best ceil(n / factor), failed (NaN) ones last, ties by order.
                keep = int(np.ceil(len(alive) / self.factor))
                order = np.argsort(-np.nan_to_num(scores, nan=-np.inf), kind="stable")
                survivors = sorted(alive[position] for position in order[:keep])
                for index in set(alive) - set(survivors):
                    for split in range(n_splits):
                        states[index, split] = None  # free the losers' states
                alive = survivors
        self.n_remaining_candidates_ = len(alive)
        return results

    @staticmethod
    def _select_best_index(refit, refit_metric, results):
        """The best candidate of the last rung (as scikit-learn's halving searches)."""
        last = np.flatnonzero(results["iter"] == np.max(results["iter"]))
        scores = results["mean_test_score"][last]
        return last[0 if np.isnan(scores).all() else np.nanargmax(scores)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        return tags


_COMMON_PARAMETERS = """
    factor : float, default=3
        The elimination rate: each rung keeps the best ``1 / factor`` of its
        candidates (rounded up) and trains them ``factor`` times as many
        epochs.

    min_epochs : int, default=1
        The epochs of the first rung.

    max_epochs : int, default=None
        The epochs every candidate's schedule is planned for, and the last
        rung's: the resource of the search. None takes the estimator's
        ``epochs``; ``epochs="auto"`` is resolved once, by the estimator's
        own rule for the number of images in ``X``. Every fit of the
        search, and the refit, trains for ``max_epochs``.

    aggressive_elimination : bool, default=False
        When there are too many candidates to get down to less than
        ``factor`` within the rungs ``min_epochs`` and ``max_epochs``
        allow, repeat the first rung (same epochs: the survivors are chosen
        on the same scores, nothing trained twice) until they are, as
        scikit-learn's halving searches.

    cv : int, cross-validation generator or iterable, default=5
        How the data are split, as in
        :class:`~sklearn.model_selection.GridSearchCV`. The splits are
        drawn once: every rung sees the same folds.

    scoring : str, callable or None, default=None
        One metric (a name of :func:`sklearn.metrics.get_scorer_names` or
        a scorer); None uses the estimator's ``score``.

    refit : bool, default=True
        Train the best candidate on all of ``X`` for ``max_epochs`` (a plain
        fit), as ``best_estimator_``, which ``predict`` and ``score`` use.

    n_jobs : int, default=None
        Fits run in parallel within each rung (candidates times folds),
        with joblib's current backend (dask's too: training states travel
        in memory, no shared disk is needed). None means 1.

    random_state : int, RandomState instance or None, default=None
        Seeds every fit of the search (and the refit) with one int drawn
        from it when the estimator's own ``random_state`` is None, so the
        search is reproducible; the random search's sampling too.

    error_score : 'raise' or float, default=np.nan
        The score of a fit that fails (it is not trained further); 'raise'
        raises the error.

    return_train_score : bool, default=False
        Also score the training folds at each rung.

    verbose : int, default=0
        Print the rungs as they start; above 2, each fit's score too (as
        scikit-learn's searches print them).
"""

_COMMON_ATTRIBUTES = """
    cv_results_ : dict of numpy (masked) ndarrays
        One row per candidate and rung, as scikit-learn's halving searches:
        ``iter`` (the rung) and ``n_resources`` (the epochs the candidate
        had trained at it), ``params``, ``mean_test_score``,
        ``split<k>_test_score``, ``rank_test_score`` (within all rows),
        ``mean_fit_time`` (the time of that rung's epochs; 0 for a fit
        that had nothing left to train) and the train scores with
        ``return_train_score``. A DataFrame of it reads as
        :class:`~sklearn.model_selection.HalvingGridSearchCV`'s.

    best_estimator_ : estimator
        The best candidate refitted on all the data for ``max_epochs``
        (with ``refit=True``).

    best_score_ : float
        Mean cross-validated score of the best candidate of the last rung.

    best_params_ : dict
        Its parameters.

    best_index_ : int
        Its row of ``cv_results_``.

    scorer_ : callable
        The scorer used.

    n_splits_ : int
        The number of folds.

    refit_time_ : float
        Seconds the refit took (with ``refit=True``).

    max_epochs_ : int
        ``max_epochs`` resolved.

    n_resources_ : list of int
        The epochs of each rung; the last is ``max_epochs_``.

    n_candidates_ : list of int
        The candidates of each rung.

    n_remaining_candidates_ : int
        The candidates left after the last rung (the best of them wins).

    n_iterations_, n_required_iterations_, n_possible_iterations_ : int
        The rungs run, those needed to get down to fewer than ``factor``
        candidates, and those ``min_epochs`` to ``max_epochs`` allow.

    multimetric_ : bool
        False: one metric, as scikit-learn's halving searches.
"""

_NOTES = """
    Notes
    -----
    Each candidate's fit on each fold is one fit of ``max_epochs`` epochs,
    paused at the end of each rung and continued at the next one while it
    survives: its learning-rate schedule (``lr_schedule="onecycle"`` or
    ``"cosine"``), optimizer, data order and random streams go on as if it
    had never stopped, so the scores of the last rung are those of plain
    ``max_epochs`` fits. A candidate with ``early_stopping=True`` that stops
    before a rung's epochs keeps its last score (and its best epoch's
    weights) in the later rungs, and is not trained further; ``max_epochs``
    stays the resource that ``n_resources`` counts.

    A rung ranks candidates by the scores their fits have reached so far:
    when an epoch is a few batches (small data), or its first epochs warm
    the rate up (one-cycle), the first rung's fits can still be near
    chance and its choice is noise; check the first rung's scores in
    ``cv_results_`` and raise ``min_epochs`` (see the user guide's Tuning
    page).

    Between rungs, each fit's training state (network, optimizer,
    schedule, random streams, history) is held in memory by the search:
    the survivors' only, about twice a network's weights each (so a search
    of large fine-tuned networks with many folds needs that memory).
"""


class EpochHalvingGridSearchCV(_BaseEpochHalving):
    """Search a grid by successive halving over epochs, the survivors continuing their fits.

    Every candidate trains ``min_epochs`` epochs of a ``max_epochs``
    schedule on each fold; the best ``1 / factor`` continue for ``factor``
    times as many epochs, and so on until the last rung finishes their
    ``max_epochs``. The interface is that of scikit-learn's
    :class:`~sklearn.model_selection.HalvingGridSearchCV` with
    ``resource="epochs"``, which retrains each survivor from scratch.

    Read more in the :ref:`User Guide <user-guide-tuning>`.

    Parameters
    ----------
    estimator : skvision neural estimator
        The estimator to tune: any of skvision's networks trained in epochs
        (CNNs, vision transformers, fine-tuned backbones, U-Net, the
        detector). Its ``epochs`` and ``checkpoint`` are set by the search.

    param_grid : dict or list of dicts
        Parameter names to lists of values, as
        :class:`~sklearn.model_selection.GridSearchCV` takes them (not
        ``epochs``: it is the resource).
    %(common)s
    Attributes
    ----------
    %(attributes)s
    See Also
    --------
    EpochHalvingRandomSearchCV : The same over sampled candidates.
    sklearn.model_selection.HalvingGridSearchCV : Halving that retrains each
        rung from scratch.
    sklearn.model_selection.GridSearchCV : Every candidate for every epoch.
    %(notes)s
    Examples
    --------
    >>> from skvision import CNNClassifier
    >>> from skvision.datasets import load_digit_images
    >>> from skvision.model_selection import EpochHalvingGridSearchCV
    >>> X, y = load_digit_images(return_X_y=True)
    >>> search = EpochHalvingGridSearchCV(
    ...     CNNClassifier(filters=(8,), batch_size=64, random_state=0),
    ...     {"lr": [1e-3, 1e-2, 3e-2]}, max_epochs=2, factor=2, cv=2,
    ... ).fit(X[:150], y[:150])
    >>> search.n_resources_
    [1, 2]
    >>> sorted(search.best_params_)
    ['lr']
    """

    _parameter_constraints = {
        **_BaseEpochHalving._parameter_constraints,
        "param_grid": [InstanceOf((dict, list), "a dict or a list of dicts")],
    }

    def __init__(self, estimator, param_grid, *, factor=3, min_epochs=1, max_epochs=None,
                 aggressive_elimination=False, cv=5, scoring=None, refit=True, n_jobs=None,
                 random_state=None, error_score=np.nan, return_train_score=False, verbose=0):
        self.param_grid = param_grid
        super().__init__(estimator, factor=factor, min_epochs=min_epochs, max_epochs=max_epochs,
                         aggressive_elimination=aggressive_elimination, cv=cv, scoring=scoring,
                         refit=refit, n_jobs=n_jobs, random_state=random_state,
                         error_score=error_score, return_train_score=return_train_score,
                         verbose=verbose)

    def _candidate_params(self, rng):
        return list(ParameterGrid(self.param_grid))


class EpochHalvingRandomSearchCV(_BaseEpochHalving):
    """Search sampled candidates by successive halving over epochs, the survivors continuing.

    As :class:`EpochHalvingGridSearchCV`, over ``n_candidates`` parameter
    settings sampled from distributions, as scikit-learn's
    :class:`~sklearn.model_selection.HalvingRandomSearchCV` samples them.

    Read more in the :ref:`User Guide <user-guide-tuning>`.

    Parameters
    ----------
    estimator : skvision neural estimator
        The estimator to tune: any of skvision's networks trained in epochs.
        Its ``epochs`` and ``checkpoint`` are set by the search.

    param_distributions : dict or list of dicts
        Parameter names to distributions (with an ``rvs`` method) or lists
        to sample from, as :class:`~sklearn.model_selection.RandomizedSearchCV`
        takes them (not ``epochs``).

    n_candidates : int or 'exhaust', default='exhaust'
        The candidates of the first rung; 'exhaust' samples
        ``max_epochs // min_epochs`` of them, as scikit-learn does, so the
        rungs end with about one at ``max_epochs``.
    %(common)s
    Attributes
    ----------
    %(attributes)s
    See Also
    --------
    EpochHalvingGridSearchCV : The same over a grid.
    sklearn.model_selection.HalvingRandomSearchCV : Halving that retrains
        each rung from scratch.
    %(notes)s
    Examples
    --------
    >>> from scipy.stats import loguniform
    >>> from skvision import CNNClassifier
    >>> from skvision.datasets import load_digit_images
    >>> from skvision.model_selection import EpochHalvingRandomSearchCV
    >>> X, y = load_digit_images(return_X_y=True)
    >>> search = EpochHalvingRandomSearchCV(
    ...     CNNClassifier(filters=(8,), batch_size=64),
    ...     {"lr": loguniform(1e-3, 3e-2)}, n_candidates=3, max_epochs=2, factor=2,
    ...     cv=2, random_state=0,
    ... ).fit(X[:150], y[:150])
    >>> search.n_candidates_
    [3, 2]
    """

    _parameter_constraints = {
        **_BaseEpochHalving._parameter_constraints,
        "param_distributions": [InstanceOf((dict, list), "a dict or a list of dicts")],
        "n_candidates": [Interval(numbers.Integral, 1, None), Options("exhaust")],
    }

    def __init__(self, estimator, param_distributions, *, n_candidates="exhaust", factor=3,
                 min_epochs=1, max_epochs=None, aggressive_elimination=False, cv=5,
                 scoring=None, refit=True, n_jobs=None, random_state=None, error_score=np.nan,
                 return_train_score=False, verbose=0):
        self.param_distributions = param_distributions
        self.n_candidates = n_candidates
        super().__init__(estimator, factor=factor, min_epochs=min_epochs, max_epochs=max_epochs,
                         aggressive_elimination=aggressive_elimination, cv=cv, scoring=scoring,
                         refit=refit, n_jobs=n_jobs, random_state=random_state,
                         error_score=error_score, return_train_score=return_train_score,
                         verbose=verbose)

    def _candidate_params(self, rng):
        n_candidates = self.n_candidates
        if n_candidates == "exhaust":
            n_candidates = max(1, self.max_epochs_ // self.min_epochs)
        return list(ParameterSampler(self.param_distributions, n_candidates, random_state=rng))


for _class in (EpochHalvingGridSearchCV, EpochHalvingRandomSearchCV):
    _class.__doc__ = _class.__doc__ % {
        "common": _COMMON_PARAMETERS, "attributes": _COMMON_ATTRIBUTES.lstrip(),
        "notes": _NOTES}
