"""Shared pytest set-up: tests marked ``gpu`` skip cleanly where CUDA is absent, and
each pytest-xdist worker computes with one torch thread."""

import os

import pytest
import torch


def pytest_configure(config):
    # `make test` runs one pytest-xdist worker per core: with torch's default
    # of one thread per core in every worker, the workers would oversubscribe
    # the cores (measured slower than one worker on 2 cores).
    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def pytest_addoption(parser):
    parser.addoption(
        "--heavy", action="store_true", default=False,
        help="also run the docs' code blocks marked '# needs: time' (and '# needs: gpu' "
             "where CUDA is present): tests/test_docs_snippets.py, run by `make docs`")
