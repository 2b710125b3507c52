"""Every Python code block of the documentation's ``.rst`` pages runs.

Each page's ``.. code-block:: python`` blocks run in order, in one namespace,
in a temporary directory (one test per page, so a failure names the page;
the traceback points at the block's lines in the ``.rst`` file). The
convention, also written in ``docs/architecture.rst`` ("Code blocks in the
docs"):

* ``bash``, ``shell``, ``console`` and ``text`` blocks are never run;
  literal ``::`` blocks are output or diagrams, not code.
* A Python block right after a ``.. needs: <what>`` line (an rST comment:
  readers never see it) is only compiled here (a syntax check), not run::

      .. needs: time (minutes of training)

      .. code-block:: python

  - ``.. needs: network`` or ``.. needs: cloud`` (URLs, buckets, a cluster):
    never run;
  - ``.. needs: gpu``: run with ``--heavy`` on a machine with CUDA;
  - ``.. needs: time`` (minutes of training, or process-wide state): run
    with ``--heavy``, which ``make docs`` does after building the site;
  - ``.. needs: <package>`` (any other word: a package that is not a
    dependency, such as ``tensorboard``): run where it imports.

  A page's later blocks must not depend on a block that is skipped.
  (``# needs:`` inside the code, the old marker, fails: readers would see it.)
* Everything else runs in ``make test``, so it must be cheap: small data,
  few epochs.
* A page writes its files into a folder of its own (``WRITES`` below), so
  that a reader who runs two pages, or the README's quickstart, in one
  directory gets no clash: the troubleshooting page's broken image file
  must not land in the quickstart's folder of digits.

The README is not read here: ``tests/test_readme.py`` runs its quickstart.
"""

import contextlib
import importlib.util
import io
import re
import textwrap
import traceback
import warnings
from pathlib import Path

import pytest
from sklearn.exceptions import FitFailedWarning

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = sorted(path for path in DOCS.rglob("*.rst")
               if not {"_build", "generated", "auto_examples", "_generated"} & set(path.parts))

SHELL = {"bash", "shell", "console", "sh", "text", "none"}
NEEDS = {"network", "cloud", "gpu", "time"}
DIRECTIVE = re.compile(r"^(?P<indent>\s*)\.\. (?:code-block|code|sourcecode)::\s*(?P<lang>\S*)\s*$")
NEEDS_COMMENT = re.compile(r"^\s*\.\. needs:\s*(?P<what>[\w, ]+)")
# The old marker, a comment inside the code: it would show on the page.
NEEDS_IN_CODE = re.compile(r"^\s*#\s*needs\s*:")


# What each page's snippets may create in the directory they run in; a page
# not listed creates nothing there. No two pages share a name.
WRITES = {
    "troubleshooting.rst": {"skvision-troubleshooting"},
    "user_guide/annotations.rst": {"skvision-annotations"},
    "user_guide/image_files.rst": {"skvision-image-files"},
    "user_guide/persistence.rst": {"skvision-models"},
    "user_guide/segmentation.rst": {"skvision-segmentation"},
    "user_guide/distributed.rst": {"distributed-digits.skv"},
    "user_guide/transfer.rst": {"mynet.skv"},
    "user_guide/tuning.rst": {"skvision-feature-cache"},
    # MLflow's own defaults for a local tracking store and its artifacts.
    "user_guide/mlflow.rst": {"mlflow.db", "mlruns"},
    "user_guide/callbacks.rst": {"runs"},  # TensorBoard's default log folder
}


def test_no_two_pages_write_the_same_names():
    names = [name for written in WRITES.values() for name in written]
    assert len(names) == len(set(names)), names
    assert "skvision-quickstart" not in names  # the README's quickstart folder


def code_blocks(path):
    """``(language, first line number, code, needs)`` for each code block of a page."""
    lines = path.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        match = DIRECTIVE.match(lines[i])
        if not match:
            i += 1
            continue
        indent = len(match["indent"])
        # the ``.. needs:`` comment: the nearest non-blank line above
        above = i - 1
        while above >= 0 and not lines[above].strip():
            above -= 1
        needs_match = NEEDS_COMMENT.match(lines[above]) if above >= 0 else None
        needs = set()
        if needs_match:
            needs = {word.strip() for word in needs_match["what"].split(",") if word.strip()}
        j = i + 1
        # the directive's options (":caption:", ...), then a blank line
        while j < len(lines) and lines[j].strip().startswith(":"):
            j += 1
        body_start = j
        while j < len(lines) and (not lines[j].strip()
                                  or len(lines[j]) - len(lines[j].lstrip()) > indent):
            j += 1
        body = lines[body_start:j]
        while body and not body[0].strip():
            body, body_start = body[1:], body_start + 1
        code = textwrap.dedent("\n".join(body)).rstrip() + "\n"
        blocks.append((match["lang"] or "python", body_start + 1, code, needs))
        i = j
    return blocks


def _page_id(path):
    return str(path.relative_to(DOCS))


def test_every_code_block_says_what_it_is():
    """A block is Python or shell (or text), and every Python block compiles."""
    for page in PAGES:
        for lang, line, code, needs in code_blocks(page):
            where = f"{_page_id(page)}:{line}"
            assert lang in SHELL | {"python"}, f"{where}: code block in {lang!r}"
            packages = needs - NEEDS
            assert all(word.isidentifier() for word in packages), f"{where}: {sorted(needs)}"
            assert not any(NEEDS_IN_CODE.match(code_line) for code_line in code.splitlines()), (
                f"{where}: a '# needs:' line shows on the page: "
                "write '.. needs: <what>' above the code-block directive")
            if lang == "python":  # every block, run or not, is valid Python
                compile("\n" * (line - 1) + code, str(page), "exec")


def test_the_pages_have_code_to_run():
    runnable = [block for page in PAGES for block in code_blocks(page)
                if block[0] == "python" and not block[3]]
    assert len(runnable) >= 20


def _should_run(needs, heavy):
    if needs & {"network", "cloud"}:
        return False
    if "gpu" in needs:
        import torch

        if not (heavy and torch.cuda.is_available()):
            return False
    if "time" in needs and not heavy:
        return False
    return all(importlib.util.find_spec(package) is not None for package in needs - NEEDS)


@pytest.mark.parametrize("page", [p for p in PAGES if any(
    lang == "python" for lang, *_ in code_blocks(p))], ids=_page_id)
def test_page_snippets_run(page, tmp_path, monkeypatch, request):
    import matplotlib
    import sklearn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    heavy = request.config.getoption("--heavy")
    blocks = [block for block in code_blocks(page) if block[0] == "python"]
    to_run = [block for block in blocks if _should_run(block[3], heavy)]
    if not to_run:
        pytest.skip("every Python block of the page is marked '.. needs:'")
    monkeypatch.chdir(tmp_path)  # whatever a snippet writes lands here
    namespace = {"__name__": "__main__"}
    with sklearn.config_context():  # a page's set_config stays on its page
        _run(page, to_run, namespace, plt)
    written = {path.name for path in tmp_path.iterdir()}
    allowed = WRITES.get(_page_id(page), set())
    assert written <= allowed, (
        f"{_page_id(page)} writes {sorted(written - allowed)} into the reader's directory: "
        f"write into its own folder and list that in WRITES")


def _run(page, to_run, namespace, plt):
    try:
        for _, line, code, _ in to_run:
            try:
                with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
                    # A search or cross-validation whose fits or scores fail
                    # only warns: here it fails the page.
                    warnings.filterwarnings("error", category=FitFailedWarning)
                    for message in ("Scoring failed", "One or more of the test scores",
                                    "One or more of the train scores"):
                        warnings.filterwarnings("error", message=message)
                    exec(compile("\n" * (line - 1) + code, str(page), "exec"), namespace)
            except Exception:
                pytest.fail(f"{_page_id(page)}, the block at line {line}:\n"
                            f"{traceback.format_exc()}", pytrace=False)
    finally:
        plt.close("all")
        if "client" in namespace and hasattr(namespace["client"], "close"):
            namespace["client"].close()
