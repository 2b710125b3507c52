"""Set-up run before each gallery example (sphinx-gallery's ``reset_modules``)."""

import os


def one_torch_thread(gallery_conf, fname):
    """One torch thread per example where examples run side by side (``parallel``).

    Each example is small: one process per core, each with one thread, uses
    the cores better than one example at a time with a thread per core.
    """
    if gallery_conf["parallel"]:
        import torch

        torch.set_num_threads(1)


def parallel_examples():
    """How many examples run at once: one per core this process may use."""
    return max(1, len(os.sched_getaffinity(0)))
