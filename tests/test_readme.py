"""The README's quickstart runs as written (one namespace, block after block).

Running it trains six models (minutes on 2 cores), so it runs with the docs'
other timed code: ``pytest --heavy`` in ``make docs`` (CI's docs step), as the
docs' blocks marked ``# needs: time`` do (tests/test_docs_snippets.py).
"""

import contextlib
import io
import re
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def _quickstart_blocks():
    text = README.read_text()
    section = text.split("\n## Quickstart\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_quickstart_has_code():
    blocks = _quickstart_blocks()
    assert len(blocks) >= 4
    # The first block is the one a new user pastes: a folder of image files
    # it writes itself, and a model fitted on the paths.
    assert "load_image_folder(" in blocks[0] and ".fit(paths" in blocks[0]


@pytest.mark.slow
def test_readme_quickstart_runs(tmp_path, monkeypatch, request):
    if not request.config.getoption("--heavy"):
        pytest.skip("trains six models: run with --heavy (make docs)")
    monkeypatch.chdir(tmp_path)  # anything it writes lands here
    namespace, printed = {}, io.StringIO()
    with contextlib.redirect_stdout(printed):
        for block in _quickstart_blocks():
            exec(compile(block, str(README), "exec"), namespace)
    print(printed.getvalue())  # shown with pytest -rP
    lines = printed.getvalue().splitlines()
    # The CNN's 5-fold accuracy on the folder of digit files it wrote.
    assert float(lines[0]) > 0.97
    assert (tmp_path / "digits").is_dir() and len(namespace["paths"]) == 1797
    # Pretrained features on texture patches from a quadrant never trained on.
    assert float(lines[1]) > 0.8
    # The CNN trained with augmentation on 300 digits, scored on the rest.
    assert float(lines[2]) > 0.8
    assert len(namespace["X_more"]) == 3 * len(namespace["images"])
    # The grid search over the boosted pipeline.
    assert namespace["search"].best_score_ > 0.85
    # The U-Net's held-out mean IoU.
    assert float(lines[-1]) > 0.8
    # Every model the quickstart saves is fitted, and loads back equal.
    clf, loaded, paths = namespace["clf"], namespace["loaded"], namespace["paths"]
    np.testing.assert_array_equal(loaded.predict(paths[:20]), clf.predict(paths[:20]))
    assert (tmp_path / "search.skv").is_file()
