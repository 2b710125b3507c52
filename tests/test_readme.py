"""The README's quickstart runs as written (one namespace, block after block)."""

import contextlib
import io
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def _quickstart_blocks():
    text = README.read_text()
    section = text.split("\n## Quickstart\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_quickstart_has_code():
    assert len(_quickstart_blocks()) >= 4


@pytest.mark.slow
def test_readme_quickstart_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # anything it writes lands here
    namespace, printed = {}, io.StringIO()
    with contextlib.redirect_stdout(printed):
        for block in _quickstart_blocks():
            exec(compile(block, str(README), "exec"), namespace)
    # The first block prints the CNN's cross-validated accuracy (~0.985).
    assert float(printed.getvalue().split()[0]) > 0.97
    # The segmentation block's model, as the README says (~0.90).
    seg, X, masks = namespace["seg"], namespace["X"], namespace["masks"]
    assert seg.score(X[240:], masks[240:]) > 0.8
