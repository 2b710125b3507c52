"""The shared training core of every neural estimator.

Each estimator builds a skorch :class:`~skorch.NeuralNet` as ``net_`` inside
``fit`` (composition: skorch's own parameters never reach ``get_params``).
This module holds what they share: parameter checks, the fast batch
iterator, the callbacks (progress bar, accuracy, learning-rate record,
schedule, early stopping), the elastic-net penalty and the NaN-loss guard,
and ``history_`` as a DataFrame.
"""

import contextlib
import math
import numbers
import signal
import sys
import threading
import warnings
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.model_selection import train_test_split
from sklearn.utils.validation import check_is_fitted
from skorch import NeuralNet
from skorch.callbacks import Callback, EarlyStopping, LRScheduler
from skorch.dataset import unpack_data
from skorch.helper import predefined_split
from skorch.hf import AccelerateMixin
from skorch.history import History
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present
from tqdm.auto import tqdm

from ._data import read_batches
from ._docstrings import fill_docstring
from ._params import (
    BOOLEAN,
    CALLABLE,
    CHANNELS,
    DEVICE,
    IMAGE_SHAPE,
    PRECISION,
    RANDOM_STATE,
    VERBOSE,
    InstanceOf,
    Interval,
    Options,
    Relation,
    Satisfies,
    image_size,
    validate_params,
)
from ._torch import (
    autocast,
    channels_last,
    draw_seed,
    predict_batches,
    resolve_device,
    resolve_precision,
    seeded,
)
from ._validation import (
    check_class_labels,
    check_image_data,
    check_image_size,
    check_regression_targets,
    check_sample_weight,
    class_weights,
    encode_labels,
)
from .augmentation import ImageAugmenter

_OPTIMIZERS = {"adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
_SCHEDULES = (None, "onecycle", "cosine")
# The constraints of the parameters in TRAINING_PARAMETERS_DOC (skvision._params).
TRAINING_CONSTRAINTS = {
    "image_shape": IMAGE_SHAPE,
    "channels": CHANNELS,
    "image_size": image_size(),
    "on_error": [Options("raise", "skip")],
    "epochs": [Interval(numbers.Integral, 1, None), Options("auto")],
    "batch_size": [Interval(numbers.Integral, 1, None)],
    "lr": [Interval(numbers.Real, 0, None, closed="neither")],
    "optimizer": [Options(*_OPTIMIZERS)],
    "lr_schedule": [Options(*_SCHEDULES[1:]), None],
    "alpha": [Interval(numbers.Real, 0, None)],
    "l1_ratio": [Interval(numbers.Real, 0, 1)],
    "early_stopping": [BOOLEAN],
    "validation_fraction": [Interval(numbers.Real, 0, 1, closed="neither")],
    "n_iter_no_change": [Interval(numbers.Integral, 1, None)],
    "augment": [None, InstanceOf(ImageAugmenter, "an ImageAugmenter"), CALLABLE],
    "warm_start": [BOOLEAN],
    "device": DEVICE,
    "precision": PRECISION,
    "accelerator": [None, Satisfies(lambda accelerator: hasattr(accelerator, "prepare"),
                                    "an accelerate.Accelerator")],
    "random_state": RANDOM_STATE,
    "verbose": VERBOSE,
}
CLASSIFIER_CONSTRAINTS = {
    "label_smoothing": [Interval(numbers.Real, 0, 1, closed="left")],
    "class_weight": [None, Options("balanced"), InstanceOf(dict, "a dict")],
}
ACCELERATOR_PRECISION = Relation(
    ("accelerator", "precision"), lambda accelerator, precision: (
        accelerator is None or precision in ("32", "auto")),
    "With an accelerator, set mixed precision on it (Accelerator(mixed_precision='bf16')) "
    "and leave precision='32' or 'auto'.")

_HISTORY_COLUMNS = ["epoch", "train_loss", "train_acc", "valid_loss", "valid_acc", "lr", "dur"]

TRAINING_PARAMETERS_DOC = """\
image_shape : tuple of int, default=None
        ``(height, width)`` or ``(height, width, channels)`` of flat 2-D
        input rows (one side may be -1 to infer it). When None, a square
        grayscale or RGB image is inferred. Ignored for 3-D/4-D input.

    channels : {"last", "first"}, default="last"
        Channel axis of 4-D numpy input: ``(n, h, w, c)`` or ``(n, c, h, w)``.
        Torch tensors are always taken as channels-first.
%(image_size_doc)s
    on_error : {"raise", "skip"}, default="raise"
        What ``fit`` does with an image file that cannot be read (missing,
        truncated, not an image), found by a header check before training
        starts: raise an error naming it, or leave it (and its target) out
        with one warning listing them. Prediction always raises.

    epochs : int or "auto", default="auto"
        Number of passes over the training data. "auto" passes over about
        %(epoch_budget)s images in all:
        ``min(%(max_epochs)s, ceil(%(epoch_budget_int)s / n_images))`` epochs, so
        %(max_epochs)s on up to %(full_epochs_below)s training images and one from
        %(epoch_budget)s up: large sets do not pay for the passes small ones
        need. ``history_`` has one row per epoch.

    batch_size : int, default=%(batch_size)s
        Images per gradient step (and per inference batch).

    lr : float, default=%(lr)s
        Learning rate (the peak rate with ``lr_schedule="onecycle"``).

    optimizer : {"adamw", "sgd"}, default="adamw"
        AdamW, or SGD with Nesterov momentum 0.9.

    lr_schedule : {"onecycle", "cosine"} or None, default="onecycle"
        Learning-rate schedule over all batches of a ``fit`` call: one-cycle
        warm-up and annealing, cosine annealing, or a constant rate.

    alpha : float, default=%(alpha)s
        Strength of the penalty added to the loss on the weights of the
        convolution and fully-connected layers (not biases or norms), as in
        :class:`~sklearn.linear_model.SGDClassifier`:
        ``alpha * (l1_ratio * ||w||_1 + (1 - l1_ratio) / 2 * ||w||_2^2)``.

    l1_ratio : float, default=0.0
        Elastic-net mix of the penalty: 0 is L2 (ridge), 1 is L1 (lasso).

    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data, stop when the
        validation loss has not improved for ``n_iter_no_change`` epochs and
        restore the best weights. Off by default so that cross-validation
        trains on all of each training fold.

    validation_fraction : float, default=0.1
        Share of the training data held out (stratified for classifiers) when
        ``early_stopping=True``.

    n_iter_no_change : int, default=5
        Epochs without improvement of the validation loss before stopping.

    augment : ImageAugmenter or callable, default=None
        Applied to every training batch on the training device, with new
        random draws at every epoch (seeded by ``random_state``); never to
        validation or prediction batches. An
        :class:`~skvision.augmentation.ImageAugmenter` draws parameters per
        image and can mix labels (mixup, cutmix); any other callable taking
        and returning a float tensor ``(n, c, h, w)`` also works, e.g.
        ``torchvision.transforms.v2.RandomHorizontalFlip()``.

    warm_start : bool, default=False
        When True, ``fit`` on a fitted estimator continues training from its
        current weights instead of starting anew.

    device : {"auto", "cpu", "cuda", "mps"}, default="auto"
        Where to train and predict; "auto" picks CUDA, then MPS, then CPU.

    precision : {"auto", "32", "bf16", "16-mixed"}, default="%(precision)s"
        Arithmetic of training and prediction. "auto" is "bf16" on CPUs with
        native bfloat16 instructions (AVX512-BF16 or AMX) and "32" elsewhere
        (GPUs included). "bf16" and "16-mixed" run
        convolutions and matrix products in bfloat16 or float16 under
        ``torch.autocast`` (weights and losses stay float32); "16-mixed"
        also scales the loss with a ``torch.amp.GradScaler`` so that small
        float16 gradients do not vanish. Faster on GPUs with tensor cores;
        on CPUs "bf16" helps where they have bfloat16 instructions (1.7x for
        a CNN, measured) and "16-mixed" is several times slower.%(accelerator_doc)s

    random_state : int, RandomState instance or None, default=None
        Seeds weight initialization, dropout, shuffling and the validation
        split: the same seed gives the same model on the same device.

    verbose : int, default=0
        0 is silent, 1 shows one progress bar per fit, 2 prints a table of
        the losses at every epoch."""

FITTED_ATTRIBUTES_DOC = """\
net_ : skorch.NeuralNet
        The skorch net that trained the module.

    module_ : torch.nn.Module
        The trained network (``net_.module_``).

    history_ : pandas.DataFrame
        One row per epoch: ``epoch``, ``train_loss``, ``valid_loss``
        (with early stopping), accuracies for classifiers, ``lr`` and
        ``dur`` (seconds).

    n_features_in_ : int
        Pixels per image times channels (the flat size); for image files,
        that of the decoded images.

    image_shape_ : tuple of int
        ``(height, width, channels)`` of the training images.

    feature_names_in_ : ndarray of str
        Column names, when fitted on a DataFrame with string column names."""


IMAGE_SIZE_DOC = """
    image_size : int or (int, int), default=None
        ``(height, width)`` the network sees: image files are decoded at this
        size and in-memory images are resized to it batch by batch (bilinear
        with antialiasing), and prediction then takes images of any size.
        None: the training images' own size (image files must then all have
        one size).
"""

ACCELERATOR_DOC = """

    accelerator : accelerate.Accelerator, default=None
        Train through Hugging Face accelerate (skorch's ``AccelerateMixin``),
        e.g. data-parallel on several GPUs, CPU processes or machines started
        with ``torchrun`` or ``accelerate launch``: each process trains on its
        share of every epoch's shuffled images (``batch_size`` is per
        process), the gradients are averaged and every process ends with the
        same model. The accelerator places the network and sets mixed
        precision (its ``mixed_precision``; ``precision`` must then stay
        "32"). ``device`` is ignored."""


CLASS_WEIGHT_DOC = """\
class_weight : dict, "balanced" or None, default=None
        Weight of each class in the loss, as in sklearn: a dict
        ``{label: weight}`` (unlisted classes weigh 1), or "balanced" for
        ``n_samples / (n_classes * count of the class)`` in the data of each
        ``fit``, so rare classes count as much as common ones. Multiplied
        with ``sample_weight``; ``class_weight_`` holds the weights used."""


def fill_doc(architecture="", accelerate=True, resize=True, precision="32", **defaults):
    """Class decorator: fill the ``%(training_parameters)s``, ``%(fitted_attributes)s``,
    ``%(class_weight)s`` and ``%(architecture)s`` fields of a class docstring.

    ``defaults`` gives the defaults that differ between estimators
    (batch_size, lr, alpha), so the shared text states each one correctly;
    the ``epochs="auto"`` rule is read from the class's ``_auto_epochs``.
    ``accelerate=False`` leaves out the ``accelerator`` parameter and
    ``resize=False`` the ``image_size`` one (an estimator that documents its own).
    """
    defaults["accelerator_doc"] = ACCELERATOR_DOC if accelerate else ""
    defaults["image_size_doc"] = IMAGE_SIZE_DOC if resize else ""
    defaults["precision"] = precision

    def decorate(cls):
        max_epochs, budget = cls._auto_epochs
        fields = dict(defaults, max_epochs=max_epochs, epoch_budget=f"{budget:,}",
                      epoch_budget_int=budget, full_epochs_below=f"{budget // max_epochs:,}")
        return fill_docstring(
            architecture=architecture,
            training_parameters=TRAINING_PARAMETERS_DOC % fields,
            fitted_attributes=FITTED_ATTRIBUTES_DOC,
            class_weight=CLASS_WEIGHT_DOC,
        )(cls)

    return decorate


# --------------------------------------------------------------------------
# Data: whole-batch tensor slicing instead of per-sample collation.


class _ImageDataset(torch.utils.data.Dataset):
    """An image set (see ``skvision._data``), its targets as one tensor or list,
    and the images' weights (a float32 tensor, or None for unweighted)."""

    def __init__(self, images, y, weights=None):
        self.images, self.y, self.weights = images, y, weights

    def __len__(self):
        return len(self.images)

    def subset(self, positions):
        index = torch.as_tensor(positions)
        weights = None if self.weights is None else self.weights[index]
        return _ImageDataset(self.images.subset(positions), self.y[index], weights)


class WeightedTargets(NamedTuple):
    """The targets of a weighted batch and one weight per image, as the loss takes them."""

    targets: torch.Tensor
    weights: torch.Tensor


def weighted_mean_loss(loss, weights=None):
    """Reduce an unreduced loss (one value per image, or per image and output) to a scalar.

    With ``weights`` the batch's loss is the weighted mean over its images,
    ``sum(w * loss) / sum(w)``, as torch's class-weighted cross-entropy: the
    scale of the weights does not matter, a weight of 0 leaves an image out.
    """
    per_image = loss.reshape(len(loss), -1).mean(dim=1) if loss.dim() > 1 else loss
    if weights is None:
        return per_image.mean()
    weights = weights.to(per_image.device, per_image.dtype)
    return (per_image * weights).sum() / weights.sum().clamp_min(torch.finfo(weights.dtype).tiny)


class _BatchIterator:
    """Yield ``(X[idx], y[idx])`` mini-batches read from the data layer.

    A whole batch is read at once (a slice of the array, or its files
    decoded by a pool of threads while the previous batch trains) instead
    of the per-sample ``__getitem__`` and ``default_collate`` of a
    ``DataLoader``, which for small images costs more than the forward pass.
    Images become float32 on the training device (``size`` resizes them),
    where ``augment`` then runs. ``shard=(index, count)`` gives a
    data-parallel process its share.
    """

    def __init__(
        self, dataset, batch_size, shuffle=False, generator=None, augment=None, device="cpu",
        shard=(0, 1), move_targets=False, size=None, memory_channels_last=True,
    ):
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator
        self.augment = augment
        self.device = device
        self.shard = shard
        # skorch moves targets itself unless an accelerator places the data.
        self.move_targets = move_targets
        self.size = size
        self.memory_channels_last = memory_channels_last

    def _n_samples(self):
        # Data-parallel training: process ``index`` of ``count`` takes every
        # count-th image of the (same, seeded) order, all processes the same
        # number so that their gradient steps stay in lockstep.
        index, count = self.shard
        return len(self.dataset) // count if self.shuffle else len(self.dataset)

    def _bounds(self):
        n_samples = self._n_samples()
        starts = list(range(0, n_samples, self.batch_size))
        if self.shuffle and len(starts) > 1 and n_samples - starts[-1] == 1:
            # A training batch of one image breaks batch norm on small maps:
            # fold it into the batch before.
            starts.pop()
        return zip(starts, starts[1:] + [n_samples])

    def __len__(self):
        return len(list(self._bounds()))

    def __iter__(self):
        if self.shuffle:
            order = torch.randperm(len(self.dataset), generator=self.generator)
            index, count = self.shard
            order = order[index : self._n_samples() * count : count]
        else:
            order = torch.arange(len(self.dataset))
        positions = [order[start:stop] for start, stop in self._bounds()]
        images = read_batches(self.dataset.images, (p.numpy() for p in positions),
                              self.device, self.size, self.memory_channels_last)
        weights = self.dataset.weights
        for index, X in zip(positions, images):
            y = self.dataset.y[index]
            if torch.is_tensor(y) and y.dtype in (torch.int16, torch.int32):
                y = y.long()  # compact masks in memory; losses take int64
            batch_weights = None if weights is None else weights[index]
            if self.augment is not None:
                X, y, batch_weights = self.augment(X, y, batch_weights)
                X = channels_last(X, self.memory_channels_last)
            elif self.move_targets:
                y = y.to(self.device, non_blocking=True)
            # The loss moves the weights to its device.
            yield X, y if batch_weights is None else WeightedTargets(y, batch_weights)


class _TrainingAugment:
    """Adapt the estimator's ``augment`` to training batches: ``(X, y) -> (X, y)``.

    An ImageAugmenter draws its parameters from ``rng``, the estimator's own
    seeded generator, so every epoch differs and the same ``random_state``
    replays the same run. ``target_kind`` says what ``y`` is: "labels"
    (``n_classes`` lets mixup and cutmix turn them into mixed one-hot
    targets), "values" (regression targets, mixed as numbers) or "masks"
    (moved with the images' geometry).
    """

    def __init__(self, augment, rng, target_kind, n_classes=None):
        self.augment = augment
        self.rng = rng
        self.target_kind = target_kind
        self.n_classes = n_classes

    def __call__(self, X, y, weights=None):
        """Augmented ``(X, y, weights)``; mixup and cutmix mix the weights with the targets."""
        if hasattr(self.augment, "_augment_training_batch"):
            return self.augment._augment_training_batch(
                X, y, rng=self.rng, n_classes=self.n_classes, target_kind=self.target_kind,
                sample_weight=weights,
            )
        return self.augment(X), y, weights


# --------------------------------------------------------------------------
# Callbacks: one job each.


class _Accuracy(Callback):
    """Record ``train_acc`` and ``valid_acc`` from the batches' own logits."""

    def on_epoch_begin(self, net, **kwargs):
        self.counts_ = {True: [0, 0], False: [0, 0]}

    def on_batch_end(self, net, batch, training, y_pred=None, **kwargs):
        target = batch[1]
        if isinstance(target, WeightedTargets):
            target = target.targets
        target = target.to(y_pred.device)
        if target.is_floating_point():  # mixed one-hot targets (mixup, cutmix): the major class
            target = target.argmax(dim=1)
        # Per image for labels, per pixel for masks; ignored pixels (< 0) left out.
        # Summed as tensors: no device synchronisation per batch.
        valid = target >= 0
        self.counts_[training][0] += ((y_pred.detach().argmax(dim=1) == target) & valid).sum()
        self.counts_[training][1] += valid.sum()

    def on_epoch_end(self, net, **kwargs):
        for training, prefix in ((True, "train"), (False, "valid")):
            correct, total = self.counts_[training]
            if training:
                # Data-parallel: over every process's share (each validates on all).
                correct, total = net._sum_over_processes(correct, total)
            if float(total):
                net.history.record(f"{prefix}_acc", float(correct) / float(total))


class _RecordLR(Callback):
    """Record the learning rate at the end of each epoch."""

    def on_epoch_end(self, net, **kwargs):
        net.history.record("lr", net.optimizer_.param_groups[0]["lr"])


class _ProgressBar(Callback):
    """One tqdm bar for the whole fit, updated per batch."""

    def __init__(self, total_batches):
        self.total_batches = total_batches

    def on_train_begin(self, net, **kwargs):
        module = net.module_
        if getattr(net, "accelerator", None) is not None:
            module = net.accelerator.unwrap_model(module)  # DDP's wrapper, with several processes
        self.bar_ = tqdm(total=self.total_batches, desc=type(module).__name__, unit="batch",
                         disable=not _is_main_process(net))

    def on_batch_end(self, net, training, **kwargs):
        if training:
            self.bar_.update()

    def on_epoch_end(self, net, **kwargs):
        row = net.history[-1]
        postfix = {key: f"{row[key]:.4f}" for key in _HISTORY_COLUMNS[1:5] if key in row}
        self.bar_.set_postfix(epoch=row["epoch"], **postfix)

    def on_train_end(self, net, **kwargs):
        self.bar_.close()


def _is_main_process(net):
    """Whether this process reports progress: the only one, or the first of a data-parallel run."""
    accelerator = getattr(net, "accelerator", None)
    return accelerator is None or accelerator.is_main_process


# --------------------------------------------------------------------------
# The skorch net: the penalty and the NaN guard live in the loss.


def elastic_net_penalty(module, l1_ratio):
    """``l1_ratio * ||w||_1 + (1 - l1_ratio) / 2 * ||w||_2^2`` over weight tensors.

    Only parameters with two or more dimensions (convolution kernels, linear
    weights) are penalized: penalizing biases and normalization scales only
    hinders training, as in most deep-learning weight decay recipes.
    """
    weights = [p for p in module.parameters() if p.requires_grad and p.dim() > 1]
    penalty = weights[0].new_zeros(())
    if l1_ratio < 1:
        penalty = penalty + (1 - l1_ratio) / 2 * sum(w.pow(2).sum() for w in weights)
    if l1_ratio > 0:
        penalty = penalty + l1_ratio * sum(w.abs().sum() for w in weights)
    return penalty


class _Net(NeuralNet):
    """skorch's NeuralNet plus the penalty, the NaN-loss guard, fast batches
    and mixed precision.

    ``generator`` shuffles the training batches (seeded by the estimator);
    ``augment`` is applied to training batches only; ``precision`` is the
    estimator's (autocast for "bf16" and "16-mixed", a grad scaler for
    "16-mixed").
    """

    def __init__(self, *args, alpha=0.0, l1_ratio=0.0, generator=None, augment=None,
                 precision="32", input_size=None, memory_channels_last=True, **kwargs):
        super().__init__(*args, **kwargs)
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.generator = generator
        self.augment = augment
        self.precision = precision
        self.input_size = input_size
        self.memory_channels_last = memory_channels_last

    # skorch writes these through torch.save with a device mapping on load;
    # "module" and "criterion" are the very instances behind module_ and
    # criterion_, which plain pickle would write a second time, on their device.
    cuda_dependent_attributes_ = [*NeuralNet.cuda_dependent_attributes_, "module", "criterion"]

    def _autocast(self):
        return autocast(self.device, self.precision)

    def _forward_loss(self, batch, **fit_params):
        """The training loss of one batch and the predictions it came from."""
        Xi, yi = unpack_data(batch)
        y_pred = self.infer(Xi, **fit_params)
        return self.get_loss(y_pred, yi, X=Xi, training=True), y_pred

    def train_step_single(self, batch, **fit_params):
        self._set_training(True)
        with self._autocast():
            loss, y_pred = self._forward_loss(batch, **fit_params)
        if self.precision == "16-mixed":
            if getattr(self, "grad_scaler_", None) is None:
                self.grad_scaler_ = torch.amp.GradScaler(torch.device(self.device).type)
            self.grad_scaler_.scale(loss).backward()
        else:
            loss.backward()
        return {"loss": loss, "y_pred": y_pred}

    def _step_optimizer(self, step_fn):
        if self.precision != "16-mixed":
            return super()._step_optimizer(step_fn)
        # A grad scaler cannot step with a closure: compute the gradients
        # first, then let it unscale them and skip steps with inf/NaN.
        step_fn()
        for name in self._optimizers:
            self.grad_scaler_.step(getattr(self, name + "_"))
        self.grad_scaler_.update()

    def validation_step(self, batch, **fit_params):
        with self._autocast():
            return super().validation_step(batch, **fit_params)

    def _set_training(self, training=True):
        # skorch sets the mode of every module at every batch; a walk over a
        # deep module tree per batch is measurable on small networks.
        if self.module_.training != training:
            super()._set_training(training)

    def get_iterator(self, dataset, training=False):
        return _BatchIterator(
            dataset,
            self.batch_size,
            shuffle=training,
            generator=self.generator,
            augment=self.augment if training else None,
            size=self.input_size,
            memory_channels_last=self.memory_channels_last,
            **self._placement(),
        )

    def _placement(self):
        """Where batches go, and which share of each epoch this process trains on."""
        return {"device": self.device}

    def get_loss(self, y_pred, y_true, X=None, training=False):
        weights = None
        if isinstance(y_true, WeightedTargets):
            y_true, weights = y_true
        loss = super().get_loss(y_pred, y_true, X=X, training=training)
        if loss.dim():
            # The classifiers' and regressors' criteria leave the reduction
            # here, where each image's weight applies.
            loss = weighted_mean_loss(loss, weights)
        # Checked before backward and the optimizer step, so a diverged batch
        # never reaches the weights. (skorch reads loss.item() right after.)
        if training and not math.isfinite(value := self._loss_value(loss)):
            epoch = len(self.history)
            # skorch opens the batch record at on_batch_begin: it counts this one.
            batch = max(1, len(self.history[-1]["batches"])) if self.history else 1
            raise FloatingPointError(
                f"The training loss became {value} at epoch {epoch}, batch {batch}. "
                "Training diverged: try a lower lr, a stronger alpha, or scaled inputs."
            )
        if training and self.alpha > 0:
            loss = loss + self.alpha * elastic_net_penalty(self.module_, self.l1_ratio)
        return loss

    def _loss_value(self, loss):
        """The batch's training loss as the NaN guard sees it."""
        return loss.item()

    def _sum_over_processes(self, *values):
        """Sums of ``values`` over the processes of a data-parallel run: here, one."""
        return values


def _select_rows(y, rows):
    """The targets of the images kept (``rows``), whatever their container."""
    if hasattr(y, "iloc"):
        return y.iloc[rows]
    if isinstance(y, (list, tuple)):
        return [y[row] for row in rows]
    return np.asarray(y)[rows]


def _no_output(*args, **kwargs):
    """A print sink that prints nothing (picklable, unlike a lambda)."""


def _has_trainable_parameters(module):
    return any(parameter.requires_grad for parameter in module.parameters())


def _sync_batch_norm(module):
    """Swap the batch-norm layers of ``module`` for synchronized ones, in place.

    timm's conversion keeps the activation of its ``BatchNormAct2d`` layers
    (torch's would drop it). The new layers share the parameters, so the
    optimizer still holds them. Returns the original layers by name, for
    :func:`_unsync_batch_norm`.
    """
    from timm.layers import convert_sync_batchnorm

    originals = {
        name: layer for name, layer in module.named_modules()
        if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm)
        and not isinstance(layer, torch.nn.SyncBatchNorm)
    }
    for name, layer in originals.items():
        parent, _, child = name.rpartition(".")
        setattr(module.get_submodule(parent), child, convert_sync_batchnorm(layer))
    return originals


def _unsync_batch_norm(module, originals):
    """Put back the layers ``_sync_batch_norm`` replaced, with the trained state.

    The fitted network then has the classes a one-process fit gives (and
    that a saved model is rebuilt with).
    """
    for name, layer in originals.items():
        synced = module.get_submodule(name)
        # Device placement may have given the synchronized layer new tensors.
        layer._parameters.update(synced._parameters)
        layer._buffers.update(synced._buffers)
        layer.training = synced.training
        parent, _, child = name.rpartition(".")
        setattr(module.get_submodule(parent), child, layer)


@contextlib.contextmanager
def _launcher_stop_as_error(accelerator):
    """Inside the block, SIGTERM raises an error that says where it comes from.

    When one process of a data-parallel run fails, torchrun (behind
    ``accelerate launch`` too) ends the others with SIGTERM, which would
    end them without a word while they wait for the failed one.
    """
    if (accelerator.num_processes == 1
            or threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is None):  # a handler Python cannot restore
        yield
        return

    def stop(signum, frame):
        raise RuntimeError(
            f"Process {accelerator.process_index} of {accelerator.num_processes} was "
            "stopped (SIGTERM) while training. The launcher (torchrun, accelerate launch) "
            "stops every process when one fails: that process's error says why.")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _AcceleratedNet(AccelerateMixin, _Net):
    """The shared net trained through Hugging Face accelerate.

    skorch's mixin prepares the module, optimizer and schedule and runs the
    backward pass through the accelerator; our batch iterator (not a
    ``DataLoader``, which accelerate would shard itself) gives each process
    its share of the images and moves batches to the accelerator's device.

    With several processes (``accelerate launch``, ``torchrun``) the module
    is wrapped in DDP, which averages the gradients: every process takes the
    same steps. On GPUs batch norm is synchronized over the processes
    (SyncBatchNorm, only while training); on CPUs torch has no
    SyncBatchNorm, each process normalizes over its own batch and process
    0's running statistics are kept (DDP copies them at every forward). The
    loss guard, ``train_loss`` and ``train_acc`` see every process's batch,
    so every process stops alike and records the same history.
    """

    def _placement(self):
        return {
            "device": self.accelerator.device,
            "shard": (self.accelerator.process_index, self.accelerator.num_processes),
            "move_targets": True,
        }

    def _data_parallel(self):
        return self.accelerator.num_processes > 1

    def _initialize_accelerator(self):
        # Extends skorch's private method, which prepares every module and
        # criterion: DDP refuses a module with no trainable parameter (the
        # loss), as accelerate makes on CPU processes (accelerate issue #760).
        # Such modules are only placed on the device here; accelerate's
        # prepare then leaves them as they are.
        if self._wrapped_with_accelerator:
            return self
        for name in self._modules + self._criteria:
            module = getattr(self, name + "_")
            if isinstance(module, torch.nn.Module) and not _has_trainable_parameters(module):
                setattr(self, name + "_",
                        self.accelerator.prepare_model(module, evaluation_mode=True))
        # torch synchronizes batch norm on accelerators only, not on CPUs.
        if self._data_parallel() and self.accelerator.device.type != "cpu":
            self._batch_norm_layers_ = _sync_batch_norm(self.module_)
        # DDP's new wrapper is in training mode; so must the module be (it is
        # in eval mode after predicting), as ``_set_training`` asks the wrapper.
        self.module_.train()
        return super()._initialize_accelerator()

    def partial_fit(self, X, y=None, classes=None, **fit_params):
        with _launcher_stop_as_error(self.accelerator):
            try:
                with warnings.catch_warnings():
                    # A one-channel kernel in channels_last: its gradient has other
                    # strides on the size-1 axis, the same memory; DDP warns anyway.
                    warnings.filterwarnings("ignore",
                                            message="Grad strides do not match bucket view")
                    super().partial_fit(X, y, classes=classes, **fit_params)
            except Exception as error:
                if self._data_parallel():
                    # Said at once: when one process fails, the launcher ends the
                    # others, maybe before their traceback is printed.
                    print(f"skvision: process {self.accelerator.process_index} of "
                          f"{self.accelerator.num_processes} stopped training: "
                          f"{type(error).__name__}: {error}", file=sys.stderr, flush=True)
                # As after a finished fit, the net holds the plain module, so
                # that it predicts and pickles in this process alone.
                self._unwrap_accelerator()
                raise
        if self._data_parallel():
            # Without SyncBatchNorm, each process's last batches (or the best
            # epoch early stopping went back to) left its own batch-norm
            # statistics: keep process 0's everywhere, as DDP does at every
            # forward, so that all processes hold one model.
            for buffer in self.module_.buffers():
                torch.distributed.broadcast(buffer, src=0)
        return self

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        super().on_train_begin(net, X=X, y=y, **kwargs)
        if self._data_parallel():
            # Seeded alike, every process would give the k-th image of its
            # batch the same dropout mask and augmentation: one stream each.
            index = self.accelerator.process_index
            torch.manual_seed(int(np.random.SeedSequence(
                [torch.initial_seed(), index]).generate_state(1)[0]))
            rng = getattr(self.augment, "rng", None)
            if rng is not None:
                self.augment.rng = np.random.default_rng([int(rng.integers(2**63)), index])

    def _loss_value(self, loss):
        if not self._data_parallel():
            return super()._loss_value(loss)
        # The mean over the processes: a loss that diverged on one process's
        # batch stops them all, at the same batch and with the same error,
        # instead of leaving the others waiting in the gradient all-reduce.
        return self.accelerator.reduce(loss.detach(), reduction="mean").item()

    def train_step_single(self, batch, **fit_params):
        step = super().train_step_single(batch, **fit_params)
        if self._data_parallel():
            # Recorded as train_loss: the loss of the whole step, alike everywhere.
            step["loss"] = self.accelerator.reduce(step["loss"].detach(), reduction="mean")
        return step

    def _sum_over_processes(self, *values):
        if not self._data_parallel():
            return values
        device = self.accelerator.device
        total = self.accelerator.reduce(torch.stack([
            torch.as_tensor(value).to(device, torch.float64) for value in values]),
            reduction="sum")
        return tuple(total)

    def _unwrap_accelerator(self):
        # skorch unwraps the module after training; the optimizer too, so the
        # net pickles (accelerate's wrapper patches methods onto it) and a
        # later fit wraps everything afresh (see ``_rewrap``).
        super()._unwrap_accelerator()
        for name in self._modules + self._criteria:
            module = getattr(self, name + "_")
            # accelerate would take a module it marked as prepared as it is
            # and skip placing and wrapping it in a later fit.
            if isinstance(module, torch.nn.Module):
                module.__dict__.pop("_is_accelerate_prepared", None)
        for _, callback in getattr(self, "callbacks_", []):
            best = getattr(callback, "best_model_weights_", None)
            if best:
                # Early stopping's copy of the best epoch, taken from DDP's
                # wrapper: named as the plain module's parameters.
                consume_prefix_in_state_dict_if_present(best, "module.")
        if getattr(self, "_batch_norm_layers_", None):
            _unsync_batch_norm(self.module_, self._batch_norm_layers_)
            self._batch_norm_layers_ = None
        for name in self._optimizers:
            optimizer = getattr(self, name + "_")
            inner = getattr(optimizer, "optimizer", None)
            if isinstance(inner, torch.optim.Optimizer):
                inner.__dict__.pop("step", None)  # the method accelerate patched in
                setattr(self, name + "_", inner)
        # The accelerator keeps every object it prepared: let go of this
        # fit's, or it would pin them in memory and could not be pickled.
        self.accelerator.free_memory()

    def _rewrap(self):
        """Prepare the unwrapped module and optimizer again for a further fit."""
        self._initialize_accelerator()


# --------------------------------------------------------------------------
# The estimator base class.


class BaseNeuralEstimator(BaseEstimator):
    """Fit/partial_fit/predict machinery shared by skvision's neural estimators.

    Subclasses store their parameters in ``__init__`` and implement
    ``_build_module(n_channels, n_outputs, input_size)``, ``_criterion()``,
    ``_prepare_targets(y, images, reset, classes=None)`` (``images`` the
    validated image set; returning the
    target tensor and the number of outputs) and, for classifiers, set
    ``_is_classifier = True``. ``_target_kind`` says what the targets are:
    "labels" (classifiers: accuracy recorded, stratified validation split),
    "values" (regressors) or "masks" (segmenters: per-pixel class indices,
    -100 for ignored pixels; pixel accuracy recorded).
    """

    _is_classifier = False
    _target_kind = "values"
    # The skorch net class; detection swaps in its own training step.
    _net_class = _Net
    # history_ columns beyond the standard ones (e.g. each detection loss).
    _history_extra_columns = ()
    # epochs="auto": (most epochs, images seen in all); see _n_epochs.
    _auto_epochs = (10, 100_000)

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

    # The accelerator sets mixed precision itself; the core's precision must then stay off.
    _parameter_relations = (ACCELERATOR_PRECISION,)

    def _accelerator(self):
        # Estimators with their own training step have no such parameter.
        return getattr(self, "accelerator", None)

    # -- building -----------------------------------------------------------

    def _param_groups(self):
        """skorch ``param_groups`` (pattern, options) with their own lr; none by default."""
        return []

    def _group_lrs(self):
        """Peak learning rate of each optimizer group, in skorch's order."""
        return [options["lr"] for _, options in self._param_groups()] + [self.lr]

    def _make_net(self, module, device):
        optimizer_kwargs = {"momentum": 0.9, "nesterov": True} if self.optimizer == "sgd" else {}
        if self._param_groups():
            optimizer_kwargs["param_groups"] = self._param_groups()
        net_class, accelerated = self._net_class, {}
        # The per-epoch table only when asked for: one callback less per batch.
        quiet = {"callbacks__print_log": None} if self.verbose < 2 else {}
        if self._accelerator() is not None:
            net_class, device = _AcceleratedNet, None
            # skorch's mixin prints the table through the accelerator (main
            # process only) and needs the callback: silenced instead.
            quiet = {"callbacks__print_log__sink": _no_output} if self.verbose < 2 else {}
            accelerated = {"accelerator": self.accelerator}
            if self.accelerator.num_processes > 1:
                # One seed for every process, random_state=None too: the same
                # shuffled order to take shares of, the same validation split.
                from accelerate.utils import broadcast_object_list

                self._seed = broadcast_object_list([self._seed], from_process=0)[0]
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
            precision=self._training_precision(device),
            memory_channels_last=self._channels_last_memory(),
            generator=torch.Generator().manual_seed(self._seed),
            **accelerated,
            **{f"optimizer__{key}": value for key, value in optimizer_kwargs.items()},
        )

    def _callbacks(self, n_batches, epochs, schedule, early_stopping):
        """The callbacks of one fit call: they depend on its length."""
        callbacks = [("record_lr", _RecordLR()), *self._extra_callbacks()]
        if self._target_kind in ("labels", "masks"):
            callbacks.append(("accuracy", _Accuracy()))
        total_steps = n_batches * epochs
        # last_epoch=-1: every fit call (warm start too) runs its own schedule;
        # skorch would otherwise resume from the epochs already in history.
        if schedule == "onecycle":
            callbacks.append(("lr_schedule", LRScheduler(
                torch.optim.lr_scheduler.OneCycleLR, max_lr=self._group_lrs(),
                total_steps=total_steps, step_every="batch", last_epoch=-1,
            )))
        elif schedule == "cosine":
            callbacks.append(("lr_schedule", LRScheduler(
                torch.optim.lr_scheduler.CosineAnnealingLR, T_max=total_steps,
                step_every="batch", last_epoch=-1,
            )))
        if early_stopping:
            callbacks.append(("early_stopping", EarlyStopping(
                patience=self.n_iter_no_change, load_best=True, sink=self._log,
            )))
        if self.verbose == 1:
            callbacks.append(("progress", _ProgressBar(total_steps)))
        return callbacks

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
        return check_image_size(getattr(self, "image_size", None))

    def _file_size(self):
        """Size image files are decoded at when ``image_size`` is None."""
        return None

    def _input_size(self):
        """(height, width) of the network's input: ``image_size`` or the training images'."""
        return self._image_size() or tuple(self.image_shape_[:2])

    def _check_data(self, X, *, reset, on_error="raise"):
        """Validate X (arrays or file paths) as an image set, read batch by batch."""
        return check_image_data(
            X, estimator=self, reset=reset, image_shape=self.image_shape, channels=self.channels,
            image_size=self._image_size(), on_error=on_error, file_size=self._file_size(),
        )

    def _fit(self, X, y, *, partial, classes=None, sample_weight=None):
        validate_params(self)
        reset = not (hasattr(self, "net_") and (partial or self.warm_start))
        images = self._check_data(X, reset=reset, on_error=self.on_error)
        if sample_weight is not None:
            # Weights are given for every input, files left out by on_error too.
            sample_weight = check_sample_weight(
                sample_weight, len(images) if images.kept is None else len(X))
        if images.kept is not None:
            y = _select_rows(y, images.kept)
            if sample_weight is not None:
                sample_weight = sample_weight[images.kept]
        if len(images) < 2:
            raise ValueError(
                f"Found {len(images)} sample(s), but training needs at least 2 images "
                "(batch normalization and gradient steps use several)."
            )
        y, n_outputs = self._prepare_targets(y, images, reset=reset, classes=classes)
        weights = self._image_weights(y, sample_weight, partial=partial)
        if reset:
            self._choose_architecture(len(images))
            self._seed = draw_seed(self.random_state)
            self.device_ = (resolve_device(self.device) if self._accelerator() is None
                            else str(self.accelerator.device))
            self.net_ = self._new_net(images.image_shape[2], n_outputs, self.device_)
            self._augment_rng = np.random.default_rng(self._seed)
            self._n_outputs = n_outputs  # rebuilds the network when a saved model loads
        dataset = _ImageDataset(images, y, weights)
        self.net_.set_params(input_size=self._resize_to(images))
        if self.early_stopping and not partial:
            train, valid = self._split_validation(dataset, self._seed)
            self.net_.set_params(train_split=predefined_split(valid))
        else:
            train = dataset
            self.net_.set_params(train_split=None)
        epochs = 1 if partial else self._n_epochs(len(train))
        n_batches = len(self.net_.get_iterator(train, training=True))  # this process's share
        self.net_.set_params(augment=None if self.augment is None else _TrainingAugment(
            self.augment, self._augment_rng, self._target_kind,
            n_outputs if self._target_kind == "labels" else None,
        ))
        # Set directly: skorch's set_params(callbacks=...) on an initialized net
        # rebuilds callbacks_ from the previous list, so a partial_fit after fit
        # would rerun fit's one-cycle schedule.
        # partial_fit trains one epoch on all it is given: no schedule, no
        # validation split, hence no early stopping.
        self.net_.callbacks = self._callbacks(
            n_batches, epochs, None if partial else self.lr_schedule,
            self.early_stopping and not partial)
        if self.net_.initialized_:
            self.net_.initialize_callbacks()
        if not reset and hasattr(self.net_, "_rewrap"):
            self.net_._rewrap()
        if not reset:
            # A finished schedule leaves the rate near zero; restart from lr.
            for group, lr in zip(self.net_.optimizer_.param_groups, self._group_lrs()):
                group["lr"] = lr
        # Continued training draws fresh dropout masks, not a replay of epoch 1.
        epochs_done = len(self.net_.history) if self.net_.initialized_ else 0
        with seeded(self._seed + epochs_done, self.device_):
            try:
                # skorch ends the loop quietly on KeyboardInterrupt (Ctrl-C, or
                # its own early stopping) and restores the best weights.
                self.net_.partial_fit(train, None, epochs=epochs)
            except FloatingPointError:
                self._restore_best_weights()
                self.history_ = self._history_frame()
                raise
            finally:
                self._drop_fit_state()
        self.history_ = self._history_frame()
        epochs_run = len(self.net_.history) - epochs_done
        stopping = dict(self.net_.callbacks_).get("early_stopping")
        stopped_early = stopping is not None and stopping.misses_ >= stopping.patience
        if epochs_run < epochs and not stopped_early:
            warnings.warn(
                f"Training was interrupted during epoch {len(self.net_.history)} of this "
                f"fit's {epochs}; the estimator keeps the weights reached so far"
                + (" (the best epoch's)" if stopping is not None else "")
                + " and can predict. Call fit again to train fully.",
                RuntimeWarning, stacklevel=3,
            )
        return self

    def _choose_architecture(self, n_images):
        """Settle architecture parameters that depend on the data (``"auto"``).

        Called once per fresh fit with the number of images, before the
        network is built; an estimator stores its choice in a fitted
        attribute that ``_build_module`` reads (the CNNs' ``filters_``).
        """

    def _new_net(self, n_channels, n_outputs, device):
        """A new skorch net around a freshly built network (seeded by ``_seed``)."""
        with seeded(self._seed, device):
            module = channels_last(self._build_module(n_channels, n_outputs, self._input_size()),
                                   self._channels_last_memory())
        return self._make_net(module, device)

    def _rebuild_network(self, key, state, device):
        """The persistence hook: ``net_`` of a saved model, rebuilt and its state loaded.

        ``skvision.load`` calls it with the saved ``state`` (the network's
        and optimizer's state dicts, the history and the shuffling
        generator's position); the network is rebuilt from the estimator's
        parameters, so a file holds no code.
        """
        if key != "net_":
            raise ValueError(f"Unknown network attribute {key!r} in the model file.")
        net = self._new_net(self.image_shape_[2], self._n_outputs, device)
        net.initialize()
        net.module_.load_state_dict(state["module"])
        net.optimizer_.load_state_dict(state["optimizer"])
        net.history = History(state["history"])
        if state.get("generator") is not None:
            net.generator.set_state(state["generator"])
        net.module_.eval()
        return net

    def _drop_fit_state(self):
        """Let go of what only one fit call needs once it is over.

        The schedule's torch scheduler holds a second reference to the
        optimizer, early stopping a copy of the best weights and the accuracy
        callback the last epoch's counts, summed on the training device:
        pickle would write their tensors outside skorch's device mapping, so
        a model fitted on a GPU would not load on a CPU-only machine (and the
        file would carry the weights twice).
        """
        callbacks = dict(getattr(self.net_, "callbacks_", []))
        if "lr_schedule" in callbacks:
            callbacks["lr_schedule"].lr_scheduler_ = None
        if "early_stopping" in callbacks:
            callbacks["early_stopping"].best_model_weights_ = None
        if "accuracy" in callbacks:
            callbacks["accuracy"].counts_ = None

    def _restore_best_weights(self):
        """After a diverged loss, go back to the best epoch's weights when known."""
        stopping = dict(self.net_.callbacks_).get("early_stopping")
        best = getattr(stopping, "best_model_weights_", None)
        if best is not None:
            self.net_.module_.load_state_dict(best)

    def fit(self, X, y):
        """Train the network on images ``X`` and targets ``y``.

        Parameters
        ----------
        X : array-like of images, or of image file paths
            3-D, 4-D, flat 2-D with ``image_shape``, lists, tensors (see
            :func:`skvision._validation.check_image_data`), or a list, array,
            Series or one-column DataFrame of file paths, decoded batch by
            batch.
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
        columns = _HISTORY_COLUMNS + list(self._history_extra_columns)
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
        images = self._check_data(X, reset=False)
        return predict_batches(
            self.net_.module_, images, batch_size=self.batch_size, device=self.device_,
            # The arithmetic the network trained in ("auto" resolved when it was built).
            forward=forward, precision=self.net_.precision,
            size=self._resize_to(images), memory_channels_last=self._channels_last_memory(),
        )

    def __setstate__(self, state):
        super().__setstate__(state)
        if "net_" in state and self.net_.device is not None:
            # skorch maps a model pickled on a GPU to the CPU where there is
            # none (with a warning); predict and warm starts follow it there.
            self.device_ = str(self.net_.device)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        return tags


class NeuralClassifierMixin(ClassifierMixin):
    """Labels, cross-entropy, weights and predictions shared by the neural classifiers.

    Expects ``label_smoothing`` and ``class_weight`` parameters;
    ``classes_`` holds the labels.
    """

    _is_classifier = True
    _target_kind = "labels"

    def _criterion(self):
        # Unreduced: the net averages over images, with their weights.
        return torch.nn.CrossEntropyLoss(label_smoothing=self.label_smoothing, reduction="none")

    def _prepare_targets(self, y, images, *, reset, classes=None):
        n_samples = len(images)
        if reset:
            # partial_fit may be given every class up front, before seeing them.
            labels = y if classes is None else classes
            n_labels = n_samples if classes is None else len(classes)
            self.classes_ = check_class_labels(labels, n_labels)
        return encode_labels(y, self.classes_, n_samples), len(self.classes_)

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
            :func:`skvision._validation.check_image_data`), or a list, array,
            Series or one-column DataFrame of file paths, decoded batch by
            batch.
        y : array-like of shape (n_samples,)
            Class labels.
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
        y : array-like of shape (n_samples,)
            Their labels.
        classes : array-like of shape (n_classes,), default=None
            All the labels that can occur; required on the first call when
            ``y`` may not contain every class.
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

        Like ``predict``, safe to call from several threads at once on a
        fitted estimator (e.g. behind a web server); ``fit`` and
        ``partial_fit`` are not. Large inputs are streamed in blocks.
        """
        return F.softmax(self._forward(X), dim=1).numpy()

    def predict(self, X):
        """Most probable class label of each image."""
        scores = self._forward(X)
        return self.classes_[scores.argmax(dim=1).numpy()]


class NeuralRegressorMixin(RegressorMixin):
    """Targets, squared error, weights and predictions shared by the neural regressors.

    Targets are standardized per output for training (``y_mean_``,
    ``y_scale_``) and predictions mapped back, so their scale does not matter.
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
        return torch.from_numpy((columns - self.y_mean_) / self.y_scale_), len(self.y_mean_)

    def fit(self, X, y, sample_weight=None):
        """Train the network on images ``X`` and targets ``y``.

        Parameters
        ----------
        X : array-like of images, or of image file paths
            3-D, 4-D, flat 2-D with ``image_shape``, lists, tensors (see
            :func:`skvision._validation.check_image_data`), or a list, array,
            Series or one-column DataFrame of file paths, decoded batch by
            batch.
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
