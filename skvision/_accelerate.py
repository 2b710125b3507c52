"""Data-parallel training through Hugging Face accelerate: what DDP needs beyond skorch.

Batch norm synchronized over the processes while training (and put back
after), one seed shared by every process, one random stream per process, and
an error that says why a process was stopped by its launcher. The skorch
subclass that uses them, with its overrides of skorch's private methods, is
``skvision._net.AcceleratedNet``.
"""

import contextlib
import functools
import signal
import threading

import numpy as np
import torch


def has_trainable_parameters(module):
    return any(parameter.requires_grad for parameter in module.parameters())


def sync_batch_norm(module):
    """Swap the batch-norm layers of ``module`` for synchronized ones, in place.

    timm's conversion keeps the activation of its ``BatchNormAct2d`` layers
    (torch's would drop it). The new layers share the parameters, so the
    optimizer still holds them. Returns the original layers by name, for
    :func:`unsync_batch_norm`.
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


def unsync_batch_norm(module, originals):
    """Put back the layers ``sync_batch_norm`` replaced, with the trained state.

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
def launcher_stop_as_error(accelerator):
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


def shared_seed(accelerator, seed):
    """The seed of process 0, for every process of a data-parallel run.

    One seed for every process, ``random_state=None`` too: the same
    initialization, the same shuffled order to take shares of and the same
    validation split. Settled before anything draws from it.
    """
    if accelerator is None or accelerator.num_processes == 1:
        return seed
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([seed], from_process=0)[0]


def seed_process_streams(accelerator, augment):
    """Give this process its own random streams, drawn from the shared seed.

    Seeded alike, every process would give the k-th image of its batch the
    same dropout mask and augmentation. ``augment`` is the training
    augmentation (its ``rng`` is replaced), or None.
    """
    index = accelerator.process_index
    stream = np.random.SeedSequence([torch.initial_seed(), index])
    torch.manual_seed(int(stream.generate_state(1)[0]))
    rng = getattr(augment, "rng", None)
    if rng is not None:
        augment.rng = np.random.default_rng([int(rng.integers(2**63)), index])


def gather_from_processes(accelerator, value):
    """``value`` of every process of a data-parallel run, in process order.

    Every process gets the list; ``[value]`` alone without an accelerator or with one process.
    """
    if accelerator is None or accelerator.num_processes == 1:
        return [value]
    from accelerate.utils import gather_object

    return gather_object([value])


def file_scan_share(accelerator):
    """How the processes of a data-parallel run share the scan of image files' headers.

    ``(rank, world, gather)`` for :func:`skvision._data.scan_files`: each
    process reads the headers at positions ``rank::world`` (its part of the
    requests, for URLs), and the results are gathered so that every process
    ends with them all. None without an accelerator or with one process.
    """
    if accelerator is None or accelerator.num_processes == 1:
        return None
    return (accelerator.process_index, accelerator.num_processes,
            functools.partial(gather_from_processes, accelerator))


def wait_for_processes(accelerator):
    """Wait until every process of a data-parallel run is here (nothing to wait for otherwise)."""
    if accelerator is not None and accelerator.num_processes > 1:
        accelerator.wait_for_everyone()
