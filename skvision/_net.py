"""The skorch nets of the training core, and every use of skorch's private API.

:class:`Net` is skorch's ``NeuralNet`` plus the elastic-net penalty, the
NaN-loss guard, the fast batch iterator and mixed precision;
:class:`AcceleratedNet` trains it through Hugging Face accelerate. Every
override of a private skorch method and every read of a skorch internal is
in this module, listed in :data:`SKORCH_PRIVATE_API`:
``tests/test_net.py`` fails by name when a skorch upgrade removes or renames
one of them. The estimators (``skvision._training``) reach skorch's
internals only through the functions at the end of this module.
"""

import math
import sys
import warnings

import numpy as np
import torch
from skorch import NeuralNet
from skorch.dataset import unpack_data
from skorch.hf import AccelerateMixin
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

from ._accelerate import (
    has_trainable_parameters,
    launcher_stop_as_error,
    seed_process_streams,
    sync_batch_norm,
    unsync_batch_norm,
)
from ._batching import BatchIterator, WeightedTargets, weighted_mean_loss
from ._torch import autocast

# What skorch records in every history row for its own bookkeeping.
SKORCH_HISTORY_KEYS = ("batches", "train_batch_count", "valid_batch_count")

# What this module relies on beyond skorch's public API, by owner: methods it
# overrides or calls, attributes it reads. Checked against the installed
# skorch by tests/test_net.py.
SKORCH_PRIVATE_API = {
    "NeuralNet methods overridden": ("_step_optimizer", "_set_training"),
    "NeuralNet attributes read": ("_optimizers", "_modules", "_criteria"),
    "AccelerateMixin methods overridden": ("_initialize_accelerator", "_unwrap_accelerator"),
    "AccelerateMixin attributes read": ("_wrapped_with_accelerator",),
    "EarlyStopping attributes read": ("misses_", "best_model_weights_", "best_epoch_",
                                      "dynamic_threshold_"),
    "LRScheduler attributes read": ("lr_scheduler_",),
    "PassthroughScoring attributes read": ("best_score_",),
    "History keys read": SKORCH_HISTORY_KEYS,
}


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


def output_probabilities(outputs, target_kind):
    """The probabilities of a network's float ``outputs`` for targets of ``target_kind``.

    A softmax over the classes (axis 1) for "labels" and "masks", one sigmoid
    per label for "multilabel"; other outputs are returned as they are.
    """
    if target_kind in ("labels", "masks"):
        return torch.softmax(outputs, dim=1)
    if target_kind == "multilabel":
        return torch.sigmoid(outputs)
    return outputs


class Net(NeuralNet):
    """skorch's NeuralNet plus the penalty, the NaN-loss guard, fast batches
    and mixed precision.

    ``generator`` shuffles the training batches (seeded by the estimator);
    ``augment`` is applied to training batches only; ``precision`` is the
    estimator's (autocast for "bf16" and "16-mixed", a grad scaler for
    "16-mixed").
    """

    def __init__(self, *args, alpha=0.0, l1_ratio=0.0, generator=None, augment=None,
                 precision="32", input_size=None, memory_channels_last=True,
                 target_kind="values", **kwargs):
        super().__init__(*args, **kwargs)
        self.target_kind = target_kind
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

    def predict_proba(self, X):
        """What a scoring callback (skorch's ``EpochScoring``) sees as probabilities.

        For classifiers and segmenters the class probabilities (see
        :func:`output_probabilities`) rather than skorch's raw module
        outputs; other networks' outputs as they are.
        """
        # skorch's forward: every batch's output (under autocast: bfloat16 or
        # float16, which numpy has not), concatenated.
        outputs = self.forward(X, training=False)
        outputs = (outputs[0] if isinstance(outputs, tuple) else outputs).float().cpu()
        return output_probabilities(outputs, self.target_kind).numpy()

    def predict(self, X):
        """What a scoring callback sees as predictions, in the encoding of the net's targets.

        Class indices (the positions in the estimator's ``classes_``) for
        classifiers and per pixel for segmenters, the indicator matrix for
        multilabel targets, the network's outputs (standardized targets for
        the regressors) otherwise.
        """
        proba = self.predict_proba(X)
        if self.target_kind in ("labels", "masks"):
            return proba.argmax(axis=1)
        if self.target_kind == "multilabel":
            return (proba > 0.5).astype(np.int64)
        return proba

    def validation_step(self, batch, **fit_params):
        with self._autocast():
            return super().validation_step(batch, **fit_params)

    def _set_training(self, training=True):
        # skorch sets the mode of every module at every batch; a walk over a
        # deep module tree per batch is measurable on small networks.
        if self.module_.training != training:
            super()._set_training(training)

    def get_iterator(self, dataset, training=False):
        return BatchIterator(
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


class AcceleratedNet(AccelerateMixin, Net):
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
            if isinstance(module, torch.nn.Module) and not has_trainable_parameters(module):
                setattr(self, name + "_",
                        self.accelerator.prepare_model(module, evaluation_mode=True))
        # torch synchronizes batch norm on accelerators only, not on CPUs.
        if self._data_parallel() and self.accelerator.device.type != "cpu":
            self._batch_norm_layers_ = sync_batch_norm(self.module_)
        # DDP's new wrapper is in training mode; so must the module be (it is
        # in eval mode after predicting), as ``_set_training`` asks the wrapper.
        self.module_.train()
        return super()._initialize_accelerator()

    def partial_fit(self, X, y=None, classes=None, **fit_params):
        with launcher_stop_as_error(self.accelerator):
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
            seed_process_streams(self.accelerator, self.augment)

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
            unsync_batch_norm(self.module_, self._batch_norm_layers_)
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


def recorded_columns(history):
    """The columns recorded in ``history`` beyond skorch's bookkeeping, in order.

    skorch's per-batch records and batch counts, and the "is best" flags of
    its scoring callbacks, are left out.
    """
    columns = []
    for row in history:
        columns += [key for key in row if key not in columns
                    and key not in SKORCH_HISTORY_KEYS and not key.endswith("_best")]
    return columns


def no_output(*args, **kwargs):
    """A print sink that prints nothing (picklable, unlike a lambda)."""


# --------------------------------------------------------------------------
# The estimators' window on skorch's internals.


def set_fit_callbacks(net, callbacks):
    """Give ``net`` the callbacks of the next fit call, replacing the last call's.

    Set directly: skorch's ``set_params(callbacks=...)`` on an initialized
    net rebuilds ``callbacks_`` from the previous list, so a partial_fit
    after fit would rerun fit's one-cycle schedule.
    """
    net.callbacks = callbacks
    if net.initialized_:
        net.initialize_callbacks()


def _callback(net, name):
    return dict(getattr(net, "callbacks_", [])).get(name)


def stopped_early(net):
    """Whether the last fit call ended because early stopping ran out of patience."""
    stopping = _callback(net, "early_stopping")
    return stopping is not None and stopping.misses_ >= stopping.patience


def has_early_stopping(net):
    """Whether the last fit call ran with early stopping."""
    return _callback(net, "early_stopping") is not None


def best_weights(net):
    """Early stopping's copy of the best epoch's weights, or None."""
    return getattr(_callback(net, "early_stopping"), "best_model_weights_", None)


def drop_fit_state(net):
    """Let go of what only one fit call needs once it is over.

    The schedule's torch scheduler holds a second reference to the
    optimizer, early stopping a copy of the best weights and the accuracy
    callback the last epoch's counts, summed on the training device:
    pickle would write their tensors outside skorch's device mapping, so a
    model fitted on a GPU would not load on a CPU-only machine (and the
    file would carry the weights twice). A resumed fit's checkpoint
    callback holds the state it began from.

    Nothing of the call's data stays either: ``train_split``, the
    validation split of early stopping, is a view of the whole training
    array (or its file paths), which would live, and travel in pickles,
    as long as the model; every fit call sets its own.
    """
    net.train_split = None
    if (schedule := _callback(net, "lr_schedule")) is not None:
        schedule.lr_scheduler_ = None
    if (stopping := _callback(net, "early_stopping")) is not None:
        stopping.best_model_weights_ = None
    if (accuracy := _callback(net, "accuracy")) is not None:
        accuracy.counts_ = None
    if (checkpoint := _callback(net, "training_state")) is not None:
        checkpoint.resume = None  # the state a resumed fit began from: weights, optimizer


# The training state a resumable fit writes at the end of every epoch
# (skvision._callbacks.TrainingCheckpoint) and reads back when it resumes.


def _plain_module(net):
    """The network itself, not accelerate's wrapper (DDP) around it."""
    accelerator = getattr(net, "accelerator", None)
    return net.module_ if accelerator is None else accelerator.unwrap_model(net.module_)


def _plain_optimizer(net):
    """The torch optimizer, not accelerate's wrapper around it."""
    inner = getattr(net.optimizer_, "optimizer", None)
    return inner if isinstance(inner, torch.optim.Optimizer) else net.optimizer_


def network_state(net):
    """A trained net's state, the one capture a model file and a checkpoint share.

    The network's and optimizer's state dicts, the history (batch records
    dropped: they are per-step noise) and the shuffling generator's
    position, so training continues as it would have. Tensors stay tensors
    (written as safetensors); the rest is plain data.
    """
    return {
        "module": _plain_module(net).state_dict(),
        "optimizer": _plain_optimizer(net).state_dict(),
        "history": [{key: value for key, value in row.items() if key != "batches"}
                    for row in net.history],
        "generator": (None if getattr(net, "generator", None) is None
                      else net.generator.get_state()),
    }


def training_state(net):
    """What one process needs to continue ``net``'s training where it stands.

    :func:`network_state`, and the learning-rate scheduler's state, the grad
    scaler's (``precision="16-mixed"``), early stopping's (best score,
    epochs without improvement, the best epoch's weights) and every scoring
    callback's best score.
    """
    callbacks = dict(getattr(net, "callbacks_", []))
    schedule = getattr(callbacks.get("lr_schedule"), "lr_scheduler_", None)
    stopping = callbacks.get("early_stopping")
    scaler = getattr(net, "grad_scaler_", None)
    return {
        **network_state(net),
        "lr_schedule": None if schedule is None else schedule.state_dict(),
        "grad_scaler": None if scaler is None else scaler.state_dict(),
        "early_stopping": None if stopping is None else {
            "misses_": stopping.misses_, "best_epoch_": stopping.best_epoch_,
            "dynamic_threshold_": float(stopping.dynamic_threshold_),
            "best_model_weights_": stopping.best_model_weights_,
        },
        "best_scores": {name: float(callback.best_score_) for name, callback in callbacks.items()
                        if hasattr(callback, "best_score_")},
    }


def load_training_state(net, state):
    """Put back what :func:`training_state` took, into a net that has begun training.

    Called at ``on_train_begin``, once the schedule and early stopping
    have set themselves up for a fresh fit: what they hold is replaced.
    """
    from skorch.history import History

    _plain_module(net).load_state_dict(state["module"])
    _plain_optimizer(net).load_state_dict(state["optimizer"])
    callbacks = dict(getattr(net, "callbacks_", []))
    if state["lr_schedule"] is not None:
        callbacks["lr_schedule"].lr_scheduler_.load_state_dict(state["lr_schedule"])
    if state["grad_scaler"] is not None:
        net.grad_scaler_ = torch.amp.GradScaler(torch.device(net.device or "cpu").type)
        net.grad_scaler_.load_state_dict(state["grad_scaler"])
    if state["early_stopping"] is not None:
        stopping = callbacks["early_stopping"]
        for name, value in state["early_stopping"].items():
            setattr(stopping, name, value)
    for name, score in state["best_scores"].items():
        if name in callbacks:
            callbacks[name].best_score_ = score
    net.history = History(state["history"])
    if state["generator"] is not None:
        net.generator.set_state(state["generator"])


def process_streams(net):
    """This process's own random streams: torch's global generator(s) and augmentation's."""
    device = torch.device(getattr(net, "accelerator", None) and net.accelerator.device
                          or net.device or "cpu")
    rng = getattr(net.augment, "rng", None)
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "augment": None if rng is None else rng.bit_generator.state,
    }


def set_process_streams(net, streams):
    """Put back :func:`process_streams` (a CUDA generator's only on a CUDA device)."""
    device = torch.device(getattr(net, "accelerator", None) and net.accelerator.device
                          or net.device or "cpu")
    torch.set_rng_state(streams["torch"])
    if streams["cuda"] is not None and device.type == "cuda":
        torch.cuda.set_rng_state(streams["cuda"], device)
    rng = getattr(net.augment, "rng", None)
    if rng is not None and streams["augment"] is not None:
        rng.bit_generator.state = streams["augment"]
