"""Torch helpers shared by every neural estimator: device, seeding, inference."""

import contextlib
import functools
import numbers
import os
import warnings

import numpy as np
import torch
from sklearn.utils import check_random_state

from ._data import ArrayImages, read_batches, sequential_batches

_DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "32", "bf16", "16-mixed")


def is_device(device):
    """Whether ``device`` names a device: one of :data:`_DEVICES`, "cuda:N" or a torch.device."""
    if isinstance(device, torch.device):
        return True
    return isinstance(device, str) and device.split(":")[0] in _DEVICES


def resolve_device(device):
    """Map ``"auto"`` to the best available device; a CUDA device must be available.

    The parameter's form is checked by its constraint (:func:`is_device`).
    """
    device = str(device)
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was asked for, but CUDA is not available.")
    return device


def loadable_device(device):
    """The device a saved or pickled model runs on here: the recorded one where it exists.

    The one fallback for models fitted elsewhere (``skvision.load``, unpickling):
    ``device`` is what was recorded (``"cuda"``, ``"cuda:1"``, ``"mps"``, a
    ``torch.device``...). A CUDA device on a machine without CUDA, or an MPS
    device where there is none, gives ``"cpu"``; a CUDA index this machine
    does not have gives ``"cuda"``; ``"auto"`` is resolved here. Never raises
    for a missing device, unlike :func:`resolve_device`.
    """
    device = str(device)
    kind, _, index = device.partition(":")
    if kind == "auto":
        return resolve_device("auto")
    if kind == "cuda":
        if not torch.cuda.is_available():
            return "cpu"
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            return "cuda"
        return device
    if kind == "mps":
        mps = getattr(torch.backends, "mps", None)
        return device if mps is not None and mps.is_available() else "cpu"
    return device


BF16_VARIABLE = "SKVISION_BF16"


@functools.cache
def _cpu_flags_have_bf16():
    try:
        with open("/proc/cpuinfo") as handle:
            flags = next((line for line in handle if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_has_native_bf16():
    """Whether this CPU computes in bfloat16 natively (AVX512-BF16 or AMX).

    Read from the Linux CPU flags (elsewhere False, so "auto" stays float32),
    unless the environment variable ``SKVISION_BF16`` says "1" or "0": it
    overrides the detection, e.g. to run the float32 path on a CPU with
    bfloat16 or to try bfloat16 where the flags do not show it.
    """
    override = os.environ.get(BF16_VARIABLE)
    if override is None or override == "":
        return _cpu_flags_have_bf16()
    if override not in ("0", "1"):
        raise ValueError(f"{BF16_VARIABLE} must be '0' or '1' (or unset); got {override!r}.")
    return override == "1"


def resolve_precision(precision, device):
    """Map ``"auto"`` to the precision that trains fastest at the same accuracy on ``device``.

    "bf16" on CPUs with native bfloat16 instructions (see
    :func:`cpu_has_native_bf16`), where a CNN trained 1.7x as fast as in
    float32 at the same held-out accuracy (``bench/precision_throughput.py``
    on 2 such cores); "32"
    elsewhere: on a GPU (an H200) the default CNN gained nothing from it,
    and CPUs without those instructions emulate it slowly. The estimators
    resolve it once, when the network is built, and keep the result.
    """
    if precision != "auto":
        return precision
    return "bf16" if torch.device(device).type == "cpu" and cpu_has_native_bf16() else "32"


def restored_precision(precision, device, name):
    """The precision a restored model (loaded or unpickled) runs in on ``device``.

    A model trained in bfloat16 on a CPU that computes it natively would run
    it emulated, several times slower, on a CPU without those instructions:
    there it runs in float32, said once by a warning. Everything else runs
    as it trained; a value no fit sets (an altered file) is refused.
    """
    if precision not in PRECISIONS[1:]:
        raise ValueError(f"precision_ must be one of {PRECISIONS[1:]}; the model has "
                         f"{precision!r}.")
    if (precision == "bf16" and torch.device(device).type == "cpu"
            and not cpu_has_native_bf16()):
        warnings.warn(
            f"This {name} was trained in bfloat16 (precision_='bf16'), which this CPU "
            "has no instructions for (it would be emulated, several times slower): it "
            "predicts and trains in float32 here (precision_='32'), as its ONNX export "
            "does.", UserWarning, stacklevel=2)
        return "32"
    return precision


def restore_runtime(estimator, device=None):
    """Where and in what arithmetic a restored (loaded or unpickled) estimator runs here.

    The one restore rule, used by ``skvision.load``, by unpickling and by
    every estimator that keeps a network: ``device_`` becomes
    :func:`loadable_device` of the recorded device (``device`` when given:
    where an unpickled skorch net already put its network; else the
    estimator's own ``device_``), and ``precision_``, where the estimator
    keeps one, :func:`restored_precision` of it on that device; a fitted
    skorch ``net_`` follows, so its training steps autocast alike.
    """
    recorded = device if device is not None else getattr(estimator, "device_", None)
    if recorded is not None:
        estimator.device_ = loadable_device(recorded)
    if hasattr(estimator, "precision_"):  # any value: an altered file's None is refused
        estimator.precision_ = restored_precision(
            estimator.precision_, estimator.device_, type(estimator).__name__)
        net = getattr(estimator, "net_", None)
        if hasattr(net, "precision"):
            net.precision = estimator.precision_


def autocast(device, precision):
    """The ``torch.autocast`` context of ``precision`` on ``device`` (none for "32").

    "bf16" and "16-mixed" run matrix products and convolutions in bfloat16
    or float16 while weights, reductions and losses stay in float32, as
    PyTorch's automatic mixed precision does; "auto" is resolved by
    :func:`resolve_precision`.
    """
    precision = resolve_precision(precision, device)
    if precision == "32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


# The seeding helpers: every random draw of the package starts from one of
# these, so ``random_state`` means the same thing everywhere.


def draw_seed(random_state):
    """One 31-bit seed from an int, a RandomState/Generator, or None."""
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(2**31 - 1))
    return int(check_random_state(random_state).randint(2**31 - 1))


def numpy_generator(random_state):
    """A ``np.random.Generator`` for one call, following sklearn's seeding rules.

    An int gives a fresh generator (same output every call); a Generator is
    used as is and a RandomState is drawn from (both advance between calls);
    None draws from numpy's global state, as ``check_random_state(None)``.
    """
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        return np.random.default_rng(int(random_state))
    return np.random.default_rng(check_random_state(random_state).randint(2**63 - 1))


def stream_generator(seed, key):
    """Independent stream ``key`` (an int) of ``seed``, as a ``np.random.Generator``.

    Streams of one seed with different keys are statistically independent
    (``np.random.SeedSequence`` with ``spawn_key=(key,)``), so code that draws
    several kinds of values can give each kind its own stream: drawing more
    or fewer of one kind leaves the others' draws unchanged.
    """
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(key,)))


def torch_generator(rng, device):
    """A torch generator on ``device`` for large random tensors.

    Seeded from ``rng``: a ``np.random.Generator`` (drawn from once) or an
    int seed (so that a recorded seed replays the same tensor).
    """
    if isinstance(rng, np.random.Generator):
        rng = rng.integers(2**63 - 1)
    return torch.Generator(device=device).manual_seed(int(rng))


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


def channels_last(tensor_or_module, enabled=True):
    """Channels-last memory format for 4-D image tensors and conv modules.

    Convolutions run markedly faster in this layout with PyTorch's CPU
    (oneDNN) and GPU kernels: a plain MNIST training loop ran 1.4x as fast
    in it on 2 CPU cores (``bench/time_to_accuracy.py``). ``enabled=False`` returns the
    tensor (made contiguous) or module in the default layout instead, for
    networks too narrow to gain from it.
    """
    if not enabled:
        return tensor_or_module.contiguous() if torch.is_tensor(tensor_or_module) \
            else tensor_or_module
    if isinstance(tensor_or_module, torch.Tensor):
        if tensor_or_module.dim() != 4:
            return tensor_or_module
        return tensor_or_module.contiguous(memory_format=torch.channels_last)
    return tensor_or_module.to(memory_format=torch.channels_last)


def predict_batches(module, images, *, batch_size, device, forward=None, precision="32",
                    size=None, memory_channels_last=True):
    """The one inference entry point: run ``module`` (or ``forward``) over an image set.

    Every ``predict``, ``predict_proba``, ``transform`` and map method of the
    torch estimators goes through here. ``images`` is an image set from
    :func:`skvision._validation.check_image_data` (a float tensor
    ``(n, c, h, w)`` is taken too); batches are read from it one at a time
    (files decoded while the previous batch computes), made float32 on
    ``device`` and resized to ``size`` if given, so memory stays bounded
    however large the set. When a batch does not fit in the device's memory,
    it is retried at half the size (with a warning) down to one image, then
    a ``MemoryError`` says so. ``memory_channels_last`` is the batches'
    layout, the module's own (see :func:`channels_last`).

    Returns the concatenated outputs as a CPU tensor; when ``forward``
    returns lists (detections, or the outputs of a list of images of
    different sizes) or tensors of different sizes, a list of the outputs
    of each image.

    Safe to call from several threads at once on one module: the module is
    put in eval mode once and left there (training sets its own mode), so no
    call flips the mode under another.
    """
    if isinstance(images, torch.Tensor):
        images = ArrayImages(images.numpy().transpose(0, 2, 3, 1))
    forward = module if forward is None else forward
    if module.training:
        module.eval()
    outputs, start = [], 0
    with torch.inference_mode(), autocast(device, precision):
        while start < len(images):
            batches = read_batches(
                images, sequential_batches(start, len(images), batch_size), device, size,
                memory_channels_last)
            try:
                for batch in batches:
                    output = forward(batch)
                    outputs.append(output.float().cpu() if torch.is_tensor(output) else output)
                    start += len(batch)
            except torch.OutOfMemoryError as error:
                batches.close()
                if batch_size == 1:
                    raise MemoryError(
                        f"Out of memory on {device} even with one image per batch; use a "
                        "device with more memory or smaller images."
                    ) from error
                batch_size = max(1, batch_size // 2)
                warnings.warn(
                    f"Out of memory on {device}; retrying with batch_size={batch_size}.",
                    RuntimeWarning, stacklevel=2,
                )
                if str(device).startswith("cuda"):
                    torch.cuda.empty_cache()
    if all(torch.is_tensor(output) for output in outputs) and len(
            {output.shape[1:] for output in outputs}) == 1:
        return torch.cat(outputs)
    # Detections, or the outputs of images of different sizes: one item per image.
    return [item for output in outputs for item in output]
