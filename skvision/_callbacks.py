"""The training core's callbacks: small skorch callbacks with one job each.

Every fit gets the learning-rate record, the accuracy of classifiers and
segmenters, the schedule, early stopping when asked for, the training
checkpoint with ``checkpoint=`` and a progress bar at ``verbose=1``;
:func:`training_callbacks` assembles them for one fit call.
"""

import torch
from skorch.callbacks import Callback, EarlyStopping, LRScheduler
from tqdm.auto import tqdm

from ._accelerate import gather_from_processes, wait_for_processes
from ._batching import WeightedTargets
from ._checkpoint import write_checkpoint
from ._net import load_training_state, process_streams, set_process_streams, training_state
from ._params import callback_names

# The columns of ``history_`` every neural estimator may have, in this order.
HISTORY_COLUMNS = ["epoch", "train_loss", "train_acc", "valid_loss", "valid_acc", "lr", "dur"]


class Accuracy(Callback):
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


class RecordLR(Callback):
    """Record the learning rate at the end of each epoch."""

    def on_epoch_end(self, net, **kwargs):
        net.history.record("lr", net.optimizer_.param_groups[0]["lr"])


class ProgressBar(Callback):
    """One tqdm bar for the whole fit, updated per batch."""

    def __init__(self, total_batches, done=0):
        self.total_batches = total_batches
        self.done = done

    def on_train_begin(self, net, **kwargs):
        module = net.module_
        if getattr(net, "accelerator", None) is not None:
            module = net.accelerator.unwrap_model(module)  # DDP's wrapper, with several processes
        self.bar_ = tqdm(total=self.total_batches, initial=self.done,
                         desc=type(module).__name__, unit="batch",
                         disable=not is_main_process(net))

    def on_batch_end(self, net, training, **kwargs):
        if training:
            self.bar_.update()

    def on_epoch_end(self, net, **kwargs):
        row = net.history[-1]
        postfix = {key: f"{row[key]:.4f}" for key in HISTORY_COLUMNS[1:5] if key in row}
        self.bar_.set_postfix(epoch=row["epoch"], **postfix)

    def on_train_end(self, net, **kwargs):
        self.bar_.close()


class TrainingCheckpoint(Callback):
    """Write the whole training state to ``directory`` at the end of every epoch.

    ``document`` is what the file holds beside the state (the fit's
    fingerprint and seed); ``resume``, a state this callback wrote before,
    is put back when training begins, after the schedule and early stopping
    have set themselves up (so it comes after them in the list). With
    several processes, every process's random streams are gathered and
    process 0 writes; every process waits for the file.
    """

    def __init__(self, directory, document, resume=None):
        self.directory = directory
        self.document = document
        self.resume = resume

    def on_train_begin(self, net, **kwargs):
        self.start_ = len(net.history)
        if self.resume is not None:
            load_training_state(net, self.resume["state"])
            set_process_streams(net, self.resume["streams"][_process_index(net)])
            self.start_ = self.resume["start"]

    def on_epoch_end(self, net, **kwargs):
        accelerator = getattr(net, "accelerator", None)
        streams = gather_from_processes(accelerator, process_streams(net))
        if is_main_process(net):
            write_checkpoint(self.directory, {
                **self.document, "start": self.start_,
                "epochs": len(net.history) - self.start_,
                "state": training_state(net), "streams": streams,
            })
        wait_for_processes(accelerator)


def _process_index(net):
    accelerator = getattr(net, "accelerator", None)
    return 0 if accelerator is None else accelerator.process_index


def is_main_process(net):
    """Whether this process reports progress: the only one, or the first of a data-parallel run."""
    accelerator = getattr(net, "accelerator", None)
    return accelerator is None or accelerator.is_main_process


def training_callbacks(*, n_batches, epochs, schedule, max_lrs, early_stopping, patience,
                       accuracy, progress, log, extra=(), user=None, checkpoint=None,
                       epochs_done=0):
    """The callbacks of one fit call, named as skorch takes them.

    They depend on the call's length: the schedule runs over its
    ``n_batches * epochs`` steps, from each optimizer group's peak rate in
    ``max_lrs``. ``log`` prints early stopping's messages. ``user`` is the
    estimator's ``callbacks`` parameter, placed after the schedule and
    before early stopping and the progress bar. ``checkpoint``, a
    :class:`TrainingCheckpoint` or None, comes after early stopping: it
    writes what every other callback recorded of the epoch. ``epochs_done``:
    epochs of this call a resumed fit has behind it (the progress bar
    starts there).
    """
    callbacks = [("record_lr", RecordLR()), *extra]
    if accuracy:
        callbacks.append(("accuracy", Accuracy()))
    total_steps = n_batches * epochs
    # last_epoch=-1: every fit call (warm start too) runs its own schedule;
    # skorch would otherwise resume from the epochs already in history.
    if schedule == "onecycle":
        callbacks.append(("lr_schedule", LRScheduler(
            torch.optim.lr_scheduler.OneCycleLR, max_lr=list(max_lrs),
            total_steps=total_steps, step_every="batch", last_epoch=-1,
        )))
    elif schedule == "cosine":
        callbacks.append(("lr_schedule", LRScheduler(
            torch.optim.lr_scheduler.CosineAnnealingLR, T_max=total_steps,
            step_every="batch", last_epoch=-1,
        )))
    # A user's callbacks see every epoch before early stopping may end training.
    user = user or []
    callbacks += list(zip(callback_names(user), (
        entry[1] if isinstance(entry, tuple) else entry for entry in user)))
    if early_stopping:
        callbacks.append(("early_stopping", EarlyStopping(
            patience=patience, load_best=True, sink=log,
        )))
    if checkpoint is not None:
        callbacks.append(("training_state", checkpoint))
    if progress:
        callbacks.append(("progress", ProgressBar(total_steps, n_batches * epochs_done)))
    return callbacks
