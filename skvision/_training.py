"""The estimator base class and mixins of every neural estimator.

Each estimator builds a skorch :class:`~skorch.NeuralNet` as ``net_`` inside
``fit`` (composition: skorch's own parameters never reach ``get_params``).
This module holds the estimator contract they share: ``fit`` in named steps,
``partial_fit``, warm starts, ``history_`` as a DataFrame, inference through
``predict_batches`` and the classifier and regressor mixins. The pieces it
assembles live apart, one concern each:

* ``_batching``: the dataset, the batch iterator, training-time augmentation;
* ``_callbacks``: progress bar, accuracy, learning-rate record and schedule,
  the training checkpoint;
* ``_checkpoint``: resumable fits (``checkpoint=``): the checkpoint file and
  the fingerprint that says which fit may continue it;
* ``_net``: the skorch subclasses and every use of skorch's private API;
* ``_accelerate``: data-parallel training (DDP, batch-norm sync, launchers);
* ``_params`` and ``_docstrings``: the shared parameter constraints and docs.
"""

import contextlib
import contextvars
import math
import warnings

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.model_selection import train_test_split
from sklearn.utils.validation import check_is_fitted
from skorch.helper import predefined_split
from skorch.history import History

from ._accelerate import file_scan_share, shared_seed, wait_for_processes
from ._batching import ImageDataset, TrainingAugment
from ._callbacks import HISTORY_COLUMNS, TrainingCheckpoint, training_callbacks
from ._checkpoint import fingerprint, read_checkpoint, remove_checkpoint
from ._net import (
    AcceleratedNet,
    Net,
    best_weights,
    drop_fit_state,
    has_early_stopping,
    no_output,
    output_probabilities,
    recorded_columns,
    set_fit_callbacks,
    stopped_early,
)
from ._params import ACCELERATOR_PRECISION, validate_params
from ._torch import (
    channels_last,
    draw_seed,
    predict_batches,
    resolve_device,
    resolve_precision,
    restore_runtime,
    seeded,
)
from ._validation import (
    as_height_width,
    check_class_labels,
    check_image_data,
    check_multilabel_targets,
    check_regression_targets,
    check_sample_weight,
    class_weights,
    encode_labels,
    is_multilabel,
    multilabel_positive_weights,
    select_targets,
)
from .nn.losses import MultiLabelLoss

_OPTIMIZERS = {"adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}

# The epoch fits in a ``pause_after`` block stop at (None: they run to the end).
_PAUSE_AFTER = contextvars.ContextVar("skvision_pause_after", default=None)


@contextlib.contextmanager
def pause_after(epoch):
    """Fits in this block stop after ``epoch`` epochs of their schedule, to be continued.

    A fit's schedule is still planned for all its ``epochs``; it stops
    quietly once ``epoch`` of them are done (those its checkpoint resumed
    included) and keeps its ``checkpoint`` file, so that a later fit with
    the same parameters and data continues it exactly as an uninterrupted
    fit would have gone on. Early stopping ends a fit before as usual (and
    its checkpoint is removed). The epoch-halving searches of
    :mod:`skvision.model_selection` train their rungs this way. The limit
    holds in this thread (a context variable): a search sets it in the
    worker that fits.
    """
    token = _PAUSE_AFTER.set(epoch)
    try:
        yield
    finally:
        _PAUSE_AFTER.reset(token)


class BaseNeuralEstimator(BaseEstimator):
    """Fit/partial_fit/predict machinery shared by skvision's neural estimators.

    Subclasses store their parameters in ``__init__`` and implement
    ``_build_module(n_channels, n_outputs, input_size, pretrained=True)``
    (``pretrained=False``: the architecture only, no pretrained weights read,
    as when a saved model is loaded), ``_criterion()``
    and ``_prepare_targets(y, images, reset, classes=None)`` (``images`` the
    validated image set; returning the target tensor and the number of
    outputs). ``_target_kind`` says what the targets are: "labels"
    (classifiers: accuracy recorded, stratified validation split), "values"
    (regressors), "multilabel" (classifiers given a multilabel-indicator
    ``y``: targets of 0 and 1 per label, mixed as numbers), "masks"
    (segmenters: per-pixel class indices, -100 for ignored pixels; pixel
    accuracy recorded) or "boxes" (the detector).
    """

    _target_kind = "values"
    # The skorch net class; detection swaps in its own training step.
    _net_class = Net
    # history_ columns beyond the standard ones (e.g. each detection loss).
    _history_extra_columns = ()
    # epochs="auto": (most epochs, images seen in all); see _n_epochs.
    _auto_epochs = (10, 100_000)
    # The accelerator sets mixed precision itself; the core's precision must then stay off.
    _parameter_relations = (ACCELERATOR_PRECISION,)

    def _n_epochs(self, n_images):
        """Epochs of one fit on ``n_images`` training images (``epochs`` or its "auto" rule)."""
        if self.epochs != "auto":
            return self.epochs
        max_epochs, budget = self._auto_epochs
        return min(max_epochs, math.ceil(budget / n_images))

    def _channels_last_memory(self):
        """Whether the network and its batches use the channels-last layout."""
        return True

    def _training_precision(self, device):
        """``precision`` resolved for training on ``device``; an accelerator sets its own."""
        if self._accelerator() is not None:
            return "32"
        return resolve_precision(self.precision, device)

    def _extra_callbacks(self):
        """Callbacks a subclass adds to every fit (e.g. extra loss columns)."""
        return []

    def _accelerator(self):
        # Estimators with their own training step have no such parameter.
        return getattr(self, "accelerator", None)

    def _early_stopping(self):
        # The detector has no early stopping (its validation loss needs training mode).
        return getattr(self, "early_stopping", False)

    # -- building -----------------------------------------------------------

    def _param_groups(self):
        """skorch ``param_groups`` (pattern, options) with their own lr; none by default."""
        return []

    def _group_lrs(self):
        """Peak learning rate of each optimizer group, in skorch's order."""
        return [options["lr"] for _, options in self._param_groups()] + [self.lr]

    def _optimizer_options(self):
        """The optimizer's keyword arguments beyond ``lr``.

        AdamW's own decoupled weight decay (0.01 by default in torch) would
        decay every weight, biases and norms included, on top of ``alpha``:
        it is off, so ``alpha`` is the only penalty.
        """
        if self.optimizer == "sgd":
            options = {"momentum": 0.9, "nesterov": True}
        else:
            options = {"weight_decay": 0.0}
        if self._param_groups():
            options["param_groups"] = self._param_groups()
        return options

    def _make_net(self, module, device):
        net_class, accelerated = self._net_class, {}
        # The per-epoch table only when asked for: one callback less per batch.
        quiet = {"callbacks__print_log": None} if self.verbose < 2 else {}
        if self._accelerator() is not None:
            net_class, device = AcceleratedNet, None
            # skorch's mixin prints the table through the accelerator (main
            # process only) and needs the callback: silenced instead.
            quiet = {"callbacks__print_log__sink": no_output} if self.verbose < 2 else {}
            accelerated = {"accelerator": self.accelerator}
        return net_class(
            module,
            criterion=self._criterion(),
            optimizer=_OPTIMIZERS[self.optimizer],
            lr=self.lr,
            batch_size=self.batch_size,
            train_split=None,
            device=device,
            verbose=int(self.verbose >= 2),
            **quiet,
            alpha=self.alpha,
            l1_ratio=self.l1_ratio,
            precision=self.precision_,
            memory_channels_last=self._channels_last_memory(),
            target_kind=self._target_kind,
            generator=torch.Generator().manual_seed(self._seed),
            **accelerated,
            **{f"optimizer__{key}": value for key, value in self._optimizer_options().items()},
        )

    def _log(self, message):
        if self.verbose and (self._accelerator() is None or self.accelerator.is_main_process):
            print(message)

    # -- fitting ------------------------------------------------------------

    def _split_validation(self, dataset, seed):
        stratify = dataset.y.numpy() if self._target_kind == "labels" else None
        train_index, valid_index = train_test_split(
            np.arange(len(dataset)), test_size=self.validation_fraction,
            random_state=seed, stratify=stratify,
        )
        return dataset.subset(train_index), dataset.subset(valid_index)

    def _image_size(self):
        """The ``image_size`` parameter as (height, width), or None."""
        return as_height_width(getattr(self, "image_size", None))

    def _file_size(self):
        """Size image files are decoded at when ``image_size`` is None."""
        return None

    def _interpolation(self):
        """How image files are resized: as :func:`~skvision._data.to_float` resizes arrays."""
        return "bilinear"

    def _input_size(self):
        """(height, width) of the network's input: ``image_size`` or the training images'."""
        return self._image_size() or tuple(self.image_shape_[:2])

    def _check_data(self, X, *, reset, on_error="raise"):
        """Validate X (arrays or file paths) as an image set, read batch by batch.

        The processes of a data-parallel fit share the reading of the files'
        headers, each its part (``share``).
        """
        return check_image_data(
            X, estimator=self, reset=reset, image_shape=self.image_shape, channels=self.channels,
            image_size=self._image_size(), on_error=on_error, file_size=self._file_size(),
            share=file_scan_share(self._accelerator()), interpolation=self._interpolation(),
        )

    def _fit(self, X, y, *, partial, classes=None, sample_weight=None):
        """One fit or partial_fit call, in four steps (five with a checkpoint).

        The order matters and is all here: the parameters are validated
        before any data is read; the seed is settled (shared by every
        process of a data-parallel run) before the network is initialized
        from it and the augmentation generator drawn from it; a checkpoint
        is read once the data it must match is known, and its seed replaces
        the fresh one before the validation split is drawn from it.
        """
        validate_params(self)
        reset = not (hasattr(self, "net_") and (partial or self.warm_start))
        dataset, n_outputs = self._prepare_inputs(
            X, y, reset=reset, partial=partial, classes=classes, sample_weight=sample_weight)
        if reset:
            self._reset_state(dataset.images, n_outputs)
        checkpoint = None if partial else self._open_checkpoint(dataset)
        train, epochs = self._configure_net(dataset, n_outputs, partial=partial, reset=reset,
                                            checkpoint=checkpoint)
        return self._run_epochs(train, epochs, checkpoint=checkpoint)

    def _open_checkpoint(self, dataset):
        """The ``TrainingCheckpoint`` of this fit (resuming a saved state), or None.

        Raises ValueError when the directory holds the checkpoint of a fit
        with other parameters or data.
        """
        if self.checkpoint is None:
            return None
        accelerator = self._accelerator()
        document = {
            "fingerprint": fingerprint(
                self, dataset, 1 if accelerator is None else accelerator.num_processes),
            "seed": self._seed,
        }
        resume = read_checkpoint(self.checkpoint, document["fingerprint"])
        if resume is not None:
            # The seed the checkpointed fit drew (random_state=None too): the
            # validation split, and the schedule of seeds of later fits.
            self._seed = document["seed"] = resume["seed"]
        return TrainingCheckpoint(self.checkpoint, document, resume)

    def _prepare_inputs(self, X, y, *, reset, partial, classes, sample_weight):
        """Step 1: the validated images, targets and weights as one dataset."""
        X, y = self._adapt_inputs(X, y)
        images = self._check_data(X, reset=reset, on_error=self.on_error)
        if sample_weight is not None:
            # Weights are given for every input, files left out by on_error too.
            sample_weight = check_sample_weight(
                sample_weight, len(images) if images.kept is None else len(X))
        if images.kept is not None:
            # By image_id for detection frames: their rows are boxes.
            y = select_targets(y, images.kept, len(X))
            if sample_weight is not None:
                sample_weight = sample_weight[images.kept]
        if len(images) < 2:
            raise ValueError(
                f"Found {len(images)} sample(s), but training needs at least 2 images "
                "(batch normalization and gradient steps use several)."
            )
        y, n_outputs = self._prepare_targets(y, images, reset=reset, classes=classes)
        weights = self._image_weights(y, sample_weight, partial=partial)
        return ImageDataset(images, y, weights), n_outputs

    def _reset_state(self, images, n_outputs):
        """Step 2 (fresh fits only): seed, device, precision, then a new network.

        The seed comes first: the network's initialization, the shuffling
        generator and the augmentation generator are all drawn from it.
        """
        self._choose_architecture(len(images))
        self._seed = shared_seed(self._accelerator(), draw_seed(self.random_state))
        self.device_ = (resolve_device(self.device) if self._accelerator() is None
                        else str(self.accelerator.device))
        self.precision_ = self._training_precision(self.device_)
        self._n_outputs = n_outputs  # rebuilds the network when a saved model loads
        self.net_ = self._new_net(images.image_shape[2], n_outputs, self.device_)
        self._augment_rng = np.random.default_rng(self._seed)

    def _configure_net(self, dataset, n_outputs, *, partial, reset, checkpoint=None):
        """Step 3: the net's data, validation split, augmentation and callbacks for this call.

        Returns the training set and the number of epochs to run: those of
        the call, less the ones a resumed ``checkpoint`` has behind it.
        """
        self.net_.set_params(input_size=self._resize_to(dataset.images))
        # partial_fit trains one epoch on all it is given: no schedule, no
        # validation split, hence no early stopping.
        early_stopping = self._early_stopping() and not partial
        if early_stopping:
            train, valid = self._split_validation(dataset, self._seed)
            self.net_.set_params(train_split=predefined_split(valid))
        else:
            train = dataset
            self.net_.set_params(train_split=None)
        epochs = 1 if partial else self._n_epochs(len(train))
        epochs_done = 0 if checkpoint is None or checkpoint.resume is None else min(
            checkpoint.resume["epochs"], epochs)
        n_batches = len(self.net_.get_iterator(train, training=True))  # this process's share
        self.net_.set_params(augment=None if self.augment is None else TrainingAugment(
            self.augment, self._augment_rng, self._target_kind,
            n_outputs if self._target_kind == "labels" else None,
        ))
        # What a tracking callback records (skvision.mlflow.MlflowLogger): the
        # estimator's parameters, which the net does not otherwise know.
        self.net_.estimator_params_ = self.get_params(deep=False)
        set_fit_callbacks(self.net_, training_callbacks(
            n_batches=n_batches, epochs=epochs,
            schedule=None if partial else self.lr_schedule, max_lrs=self._group_lrs(),
            early_stopping=early_stopping, patience=getattr(self, "n_iter_no_change", None),
            accuracy=self._target_kind in ("labels", "masks"), progress=self.verbose == 1,
            log=self._log, extra=self._extra_callbacks(), user=self.callbacks,
            checkpoint=checkpoint, epochs_done=epochs_done,
        ))
        if not reset:
            if hasattr(self.net_, "_rewrap"):
                self.net_._rewrap()
            # A finished schedule leaves the rate near zero; restart from lr.
            for group, lr in zip(self.net_.optimizer_.param_groups, self._group_lrs()):
                group["lr"] = lr
        return train, epochs - epochs_done

    def _run_epochs(self, train, epochs, checkpoint=None):
        """Step 4: train, record ``history_``, and say so when training was cut short.

        A ``checkpoint`` (``TrainingCheckpoint``) puts back the state it
        resumes when training begins; it is removed once training has ended
        (all epochs, or early stopping), kept when it was cut short.
        """
        # Continued training draws fresh dropout masks, not a replay of epoch 1.
        epochs_done = len(self.net_.history) if self.net_.initialized_ else 0
        resumed = 0  # epochs of this call's schedule a checkpoint has behind it
        if checkpoint is not None and checkpoint.resume is not None:
            # The history it puts back: the epochs before this call's, and this call's.
            resume = checkpoint.resume
            epochs_done = resume["start"] + resume["epochs"]
            resumed = resume["epochs"]
        # Within a pause_after block: this call's epochs up to the pause only.
        pause = _PAUSE_AFTER.get()
        run = epochs if pause is None else max(0, min(epochs, pause - resumed))
        with seeded(self._seed + epochs_done, self.device_):
            try:
                # skorch ends the loop quietly on KeyboardInterrupt (Ctrl-C, or
                # its own early stopping) and restores the best weights.
                self.net_.partial_fit(train, None, epochs=run)
            except FloatingPointError:
                self._restore_best_weights()
                self.history_ = self._history_frame()
                raise
            finally:
                drop_fit_state(self.net_)
        self.history_ = self._history_frame()
        epochs_run = len(self.net_.history) - epochs_done
        unfinished = epochs_run < epochs and not stopped_early(self.net_)
        # Paused (pause_after) is unfinished too, but not interrupted: no warning.
        interrupted = unfinished and epochs_run < run
        if checkpoint is not None and not unfinished:
            self._remove_checkpoint(checkpoint.document["fingerprint"])
        if interrupted:
            warnings.warn(
                f"Training was interrupted during epoch {len(self.net_.history)} of this "
                f"fit's {epochs}; the estimator keeps the weights reached so far"
                + (" (the best epoch's)" if has_early_stopping(self.net_) else "")
                + " and can predict. Call fit again to train fully"
                + (" (it resumes from the checkpoint)." if checkpoint is not None else "."),
                RuntimeWarning, stacklevel=4,
            )
        return self

    def _remove_checkpoint(self, fingerprint):
        """Delete the checkpoint of a finished fit (process 0; the others wait for it)."""
        accelerator = self._accelerator()
        if accelerator is None or accelerator.is_main_process:
            remove_checkpoint(self.checkpoint, fingerprint)
        wait_for_processes(accelerator)

    def _adapt_inputs(self, X, y):
        """``(X, y)`` in a form ``_check_data`` and ``_prepare_targets`` take; as given by default.

        Called after the parameters are validated, before anything else reads the data.
        """
        return X, y

    def _choose_architecture(self, n_images):
        """Settle architecture parameters that depend on the data (``"auto"``).

        Called once per fresh fit with the number of images, before the
        network is built; an estimator stores its choice in a fitted
        attribute that ``_build_module`` reads (the CNNs' ``filters_``).
        """

    def _new_net(self, n_channels, n_outputs, device, *, pretrained=True):
        """A new skorch net around a freshly built network (seeded by ``_seed``).

        ``pretrained=False`` builds the architecture without reading any
        pretrained weights (a backbone's or encoder's file): the weights
        then come from elsewhere, as a saved model's from its file.
        """
        with seeded(self._seed, device):
            module = self._build_module(n_channels, n_outputs, self._input_size(),
                                        pretrained=pretrained)
            module = channels_last(module, self._channels_last_memory())
        return self._make_net(module, device)

    def _rebuild_network(self, key, state, device):
        """The persistence hook: ``net_`` of a saved model, rebuilt and its state loaded.

        ``skvision.load`` calls it with the saved ``state`` (the network's
        and optimizer's state dicts, the history and the shuffling
        generator's position); the network is rebuilt from the estimator's
        parameters, so a file holds no code; pretrained weights are not read
        (the file has the trained ones), so the file loads wherever it goes.
        """
        if key != "net_":
            raise ValueError(f"Unknown network attribute {key!r} in the model file.")
        if not hasattr(self, "precision_"):
            # A file from before precision_ was kept: resolved as it was then.
            # (A kept one was restored with the device: _torch.restore_runtime.)
            self.precision_ = self._training_precision(device)
        net = self._new_net(self.image_shape_[2], self._n_outputs, device, pretrained=False)
        net.initialize()
        net.module_.load_state_dict(state["module"])
        net.optimizer_.load_state_dict(state["optimizer"])
        net.history = History(state["history"])
        if state.get("generator") is not None:
            net.generator.set_state(state["generator"])
        net.module_.eval()
        return net

    def _restore_best_weights(self):
        """After a diverged loss, go back to the best epoch's weights when known."""
        best = best_weights(self.net_)
        if best is not None:
            self.net_.module_.load_state_dict(best)

    def fit(self, X, y):
        """Train the network on images ``X`` and targets ``y``.

        Parameters
        ----------
        X : array-like of images, or of image file paths
            3-D, 4-D, flat 2-D with ``image_shape``, lists, tensors (see
            :ref:`the accepted images <image-inputs>`), or a list, array,
            Series or one-column DataFrame of file paths or URLs
            (``s3://``, ``gs://``, ``https://``, ...), decoded batch by batch.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        return self._fit(X, y, partial=False)

    def _image_weights(self, targets, sample_weight, *, partial):
        """Each training image's weight in the loss, as a tensor; None when all are equal."""
        if sample_weight is None or np.all(sample_weight == sample_weight[0]):
            # Each batch's loss is a weighted mean: equal weights are no weights.
            return None
        return torch.from_numpy(sample_weight.astype(np.float32))

    def _history_frame(self):
        columns = HISTORY_COLUMNS + list(self._history_extra_columns)
        # Then what the user's callbacks record (an EpochScoring's column), in their order.
        columns += [key for key in recorded_columns(self.net_.history) if key not in columns]
        rows = [{key: row.get(key, np.nan) for key in columns} for row in self.net_.history]
        frame = pd.DataFrame(rows, columns=columns)
        return frame.dropna(axis=1, how="all").reset_index(drop=True)

    # -- inference ----------------------------------------------------------

    @property
    def module_(self):
        """The trained torch module."""
        check_is_fitted(self, "net_")
        return self.net_.module_

    def _resize_to(self, images):
        """The size batches of ``images`` are resized to (None: as they are)."""
        size = self._image_size()
        return None if size is None or images.image_shape[:2] == size else size

    def _forward(self, X, forward=None):
        """Validate ``X`` and return the network's raw outputs as a CPU tensor."""
        check_is_fitted(self, "net_")
        return self._forward_images(self._check_data(X, reset=False), forward)

    def _forward_images(self, images, forward=None):
        """The network's raw outputs on a validated image set (see :meth:`_forward`)."""
        return predict_batches(
            self.net_.module_, images, batch_size=self.batch_size, device=self.device_,
            # The arithmetic the network trained in ("auto" resolved when it was built).
            forward=forward, precision=self.precision_,
            size=self._resize_to(images), memory_channels_last=self._channels_last_memory(),
        )

    def __setstate__(self, state):
        super().__setstate__(state)
        if "net_" in state:
            if "precision_" not in state:
                self.precision_ = self.net_.precision  # pickled before precision_ was kept
            # skorch maps a model pickled on a GPU to the CPU where there is
            # none (with a warning); predict and warm starts follow it there.
            restore_runtime(self, device=self.net_.device)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        return tags


class NeuralClassifierMixin(ClassifierMixin):
    """Labels, losses, weights and predictions shared by the neural classifiers.

    Expects ``label_smoothing`` and ``class_weight`` parameters;
    ``classes_`` holds the labels. A multilabel-indicator ``y`` of shape
    ``(n_samples, n_labels)`` (as :class:`~sklearn.neural_network.MLPClassifier`
    takes it) trains one sigmoid output per label with binary cross-entropy;
    ``classes_`` is then ``np.arange(n_labels)``.
    """

    _target_kind = "labels"

    def _criterion(self):
        # Unreduced: the net averages over images (and labels), with their weights.
        if self._target_kind == "multilabel":
            return MultiLabelLoss(self.label_smoothing, getattr(self, "class_weight_", None))
        return torch.nn.CrossEntropyLoss(label_smoothing=self.label_smoothing, reduction="none")

    def _prepare_targets(self, y, images, *, reset, classes=None):
        n_samples = len(images)
        if reset:
            # The kind of this fit's targets (single label or multilabel), kept by the model.
            self._target_kind = "multilabel" if is_multilabel(y) else "labels"
        if self._target_kind == "multilabel":
            return self._prepare_multilabel_targets(y, n_samples, reset=reset)
        if reset:
            # partial_fit may be given every class up front, before seeing them.
            labels = y if classes is None else classes
            n_labels = n_samples if classes is None else len(classes)
            self.classes_ = check_class_labels(labels, n_labels)
        return encode_labels(y, self.classes_, n_samples), len(self.classes_)

    def _prepare_multilabel_targets(self, y, n_samples, *, reset):
        y = check_multilabel_targets(y, n_samples, None if reset else len(self.classes_))
        if reset:
            self.classes_ = np.arange(y.shape[1])
        return torch.from_numpy(y), y.shape[1]

    def _image_weights(self, targets, sample_weight, *, partial):
        if self.class_weight is None:
            self.class_weight_ = None
            return super()._image_weights(targets, sample_weight, partial=partial)
        if partial and isinstance(self.class_weight, str):
            # As sklearn's SGDClassifier: one batch's frequencies are not the data's.
            raise ValueError(
                "class_weight='balanced' is not supported by partial_fit: the class "
                "frequencies of one batch are not those of the data. Compute them once "
                "with sklearn.utils.class_weight.compute_class_weight('balanced', "
                "classes=classes, y=y) and pass the result as a dict.")
        if self._target_kind == "multilabel":
            # Weights of each label's positives, in the loss (pos_weight), not per image.
            self.class_weight_ = multilabel_positive_weights(self.class_weight, targets.numpy())
            return super()._image_weights(targets, sample_weight, partial=partial)
        counts = np.bincount(targets.numpy(), minlength=len(self.classes_))
        self.class_weight_ = class_weights(self.class_weight, self.classes_, counts)
        weights = self.class_weight_[targets.numpy()]
        if sample_weight is not None:
            weights = weights * sample_weight
        if not weights.any():
            raise ValueError("The class weights times sample_weight are 0 for every image.")
        return super()._image_weights(targets, weights, partial=partial)

    def fit(self, X, y, sample_weight=None):
        """Train the network on images ``X`` and labels ``y``.

        Parameters
        ----------
        X : array-like of images, or of image file paths
            3-D, 4-D, flat 2-D with ``image_shape``, lists, tensors (see
            :ref:`the accepted images <image-inputs>`), or a list, array,
            Series or one-column DataFrame of file paths or URLs
            (``s3://``, ``gs://``, ``https://``, ...), decoded batch by batch.
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            Class labels, or a multilabel-indicator matrix (0 and 1: which
            tags each image has), e.g. from
            :class:`~sklearn.preprocessing.MultiLabelBinarizer`.
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each image in the loss (multiplied by ``class_weight``);
            each batch's loss is the weighted mean over its images.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        return self._fit(X, y, partial=False, sample_weight=sample_weight)

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """Train for one epoch at the constant rate ``lr``, from the current weights.

        Parameters
        ----------
        X : array-like of images
            A batch of training images.
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            Their labels, or a multilabel-indicator matrix.
        classes : array-like of shape (n_classes,), default=None
            All the labels that can occur; required on the first call when
            ``y`` may not contain every class (not used with multilabel ``y``).
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each image in the loss.

        Returns
        -------
        self : object
            The updated estimator.
        """
        return self._fit(X, y, partial=True, classes=classes, sample_weight=sample_weight)

    def predict_proba(self, X):
        """Class probabilities, shape ``(n_samples, n_classes)``.

        With multilabel ``y``, each label's probability, shape
        ``(n_samples, n_labels)`` (they need not sum to 1).
        Like ``predict``, safe to call from several threads at once on a
        fitted estimator (e.g. behind a web server); ``fit`` and
        ``partial_fit`` are not. Large inputs are streamed in blocks.
        """
        return output_probabilities(self._forward(X), self._target_kind).numpy()

    def predict(self, X):
        """Most probable class label of each image.

        With multilabel ``y``, the indicator matrix ``(n_samples, n_labels)``
        of the labels whose probability is above 1/2.
        """
        scores = self._forward(X)
        if self._target_kind == "multilabel":
            return (scores > 0).numpy().astype(np.int64)
        return self.classes_[scores.argmax(dim=1).numpy()]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class NeuralRegressorMixin(RegressorMixin):
    """Targets, squared error, weights and predictions shared by the neural regressors.

    Targets are standardized per output for training (``y_mean_``,
    ``y_scale_``) and predictions mapped back, so their scale does not matter;
    both in float64, so neither does their offset (only the standardized
    targets the network sees are float32).
    """

    def _criterion(self):
        # Unreduced: the net averages over images, with their weights.
        return torch.nn.MSELoss(reduction="none")

    def _prepare_targets(self, y, images, *, reset, classes=None):
        n_samples = len(images)
        y = check_regression_targets(y, n_samples)
        columns = y.reshape(n_samples, -1)
        if reset:
            self._y_ndim = y.ndim
            self.y_mean_ = columns.mean(axis=0)
            self.y_scale_ = columns.std(axis=0)
            self.y_scale_[self.y_scale_ == 0] = 1.0
        if columns.shape[1] != len(self.y_mean_):
            raise ValueError(
                f"y has {columns.shape[1]} outputs, but the model was fitted with "
                f"{len(self.y_mean_)}."
            )
        standardized = (columns - self.y_mean_) / self.y_scale_
        return torch.from_numpy(standardized.astype(np.float32)), len(self.y_mean_)

    def fit(self, X, y, sample_weight=None):
        """Train the network on images ``X`` and targets ``y``.

        Parameters
        ----------
        X : array-like of images, or of image file paths
            3-D, 4-D, flat 2-D with ``image_shape``, lists, tensors (see
            :ref:`the accepted images <image-inputs>`), or a list, array,
            Series or one-column DataFrame of file paths or URLs
            (``s3://``, ``gs://``, ``https://``, ...), decoded batch by batch.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each image in the loss; each batch's loss is the
            weighted mean over its images.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        return self._fit(X, y, partial=False, sample_weight=sample_weight)

    def partial_fit(self, X, y, sample_weight=None):
        """Train for one epoch at the constant rate ``lr``, from the current weights.

        Parameters
        ----------
        X : array-like of images
            A batch of training images.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Their targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each image in the loss.

        Returns
        -------
        self : object
            The updated estimator.
        """
        return self._fit(X, y, partial=True, sample_weight=sample_weight)

    def predict(self, X):
        """Predicted targets, shape ``(n_samples,)`` or ``(n_samples, n_outputs)``."""
        outputs = self._forward(X).numpy().astype(np.float64) * self.y_scale_ + self.y_mean_
        return outputs[:, 0] if self._y_ndim == 1 else outputs

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
