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


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    _check_xdist_groups_applied(config, items)
    _report_expected_failures_without_running(items)
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def _report_expected_failures_without_running(items):
    """sklearn's checks listed in tests/test_common.py's EXPECTED_FAILED_CHECKS: not run.

    ``parametrize_with_checks`` marks them xfail, which runs them; a non-strict
    xfail can neither fail the suite nor pass it, so running them (two fits of
    20 epochs for each sample-weight equivalence check) only spent time. The
    reasons still show in the ``-ra`` summary.
    """
    for item in items:
        marker = item.get_closest_marker("xfail")
        if marker is not None and item.nodeid.startswith("tests/test_common.py::"):
            reason = marker.kwargs.get("reason", "")
            item.add_marker(pytest.mark.xfail(reason=reason, run=False), append=False)


_XDIST_GROUP_NOT_APPLIED = pytest.StashKey[bool]()


def _check_xdist_groups_applied(config, items):
    """Fail grouped tests loudly where ``--dist loadgroup`` silently split their group.

    pytest-xdist marks a grouped test by appending ``@group`` to its node id;
    with a pytest that no longer reads the attribute xdist sets (pytest 9),
    the group's shared module fixtures are built once per worker instead.
    """
    if not os.environ.get("PYTEST_XDIST_WORKER") or not config.getvalue("loadgroup"):
        return
    for item in items:
        if item.get_closest_marker("xdist_group") and "@" not in item.nodeid:
            item.stash[_XDIST_GROUP_NOT_APPLIED] = True


def pytest_runtest_setup(item):
    if item.stash.get(_XDIST_GROUP_NOT_APPLIED, False):
        pytest.fail(f"pytest-xdist did not apply this test's xdist_group under pytest "
                    f"{pytest.__version__}: install the dev extra's pytest (<9).",
                    pytrace=False)


def pytest_addoption(parser):
    parser.addoption(
        "--heavy", action="store_true", default=False,
        help="also run the docs' code blocks marked '# needs: time' (and '# needs: gpu' "
             "where CUDA is present) and the README's quickstart: "
             "tests/test_docs_snippets.py and tests/test_readme.py, run by `make docs`")
    parser.addoption(
        "--docs-html", action="store", default=None, metavar="DIR",
        help="the built site (docs/_build/html) that tests/test_docs_html.py reads: "
             "`make docs` passes it after building; without it those tests skip")
