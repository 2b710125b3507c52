"""Torch helpers shared by every neural estimator: device, seeding, inference."""

import contextlib

import numpy as np
import torch
from sklearn.utils import check_random_state

_DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(device):
    """Map ``"auto"`` to the best available device and check the others."""
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str) or device.split(":")[0] not in _DEVICES:
        raise ValueError(f"device must be one of {_DEVICES} (or 'cuda:N'); got {device!r}.")
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was asked for, but CUDA is not available.")
    return device


def draw_seed(random_state):
    """One 31-bit seed from an int, a RandomState/Generator, or None."""
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(2**31 - 1))
    return int(check_random_state(random_state).randint(2**31 - 1))


@contextlib.contextmanager
def seeded(seed, device="cpu"):
    """Seed torch's global RNG inside the block and restore it afterwards.

    Weight initialization and dropout draw from torch's global generator; this
    makes them reproducible without changing the caller's random state.
    """
    devices = [torch.cuda.current_device()] if str(device).startswith("cuda") else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def channels_last(tensor_or_module):
    """Channels-last memory format for 4-D image tensors and conv modules.

    Convolutions run markedly faster in this layout with PyTorch's CPU
    (oneDNN) and GPU kernels: measured 1.4x for CNN training and 1.75x for
    EfficientNet inference on 2 CPU cores.
    """
    if isinstance(tensor_or_module, torch.Tensor):
        if tensor_or_module.dim() != 4:
            return tensor_or_module
        return tensor_or_module.contiguous(memory_format=torch.channels_last)
    return tensor_or_module.to(memory_format=torch.channels_last)


def predict_batches(module, X, *, batch_size, device, forward=None):
    """Run ``module`` (or ``forward``) over ``X`` in eval mode, batch by batch.

    Returns the concatenated outputs as a CPU tensor. Only one batch of
    inputs and activations is on ``device`` at a time.
    """
    forward = module if forward is None else forward
    was_training = module.training
    module.eval()
    outputs = []
    try:
        with torch.inference_mode():
            for start in range(0, len(X), batch_size):
                batch = channels_last(X[start : start + batch_size].to(device, non_blocking=True))
                outputs.append(forward(batch).float().cpu())
    finally:
        module.train(was_training)
    return torch.cat(outputs)
