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
    folder = tmp_path / "skvision-quickstart"
    assert (folder / "digits").is_dir() and len(namespace["paths"]) == 1797
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
    assert (folder / "search.skv").is_file()
    # Everything it writes is in its one folder: other snippets run beside it
    # (the troubleshooting page writes a broken file into a folder of digits).
    assert [path.name for path in tmp_path.iterdir()] == ["skvision-quickstart"]


# The README's table of training parameters: which estimator takes which.
_TABLE_COLUMNS = {
    "classifiers": ["CNNClassifier", "VisionTransformerClassifier", "FineTunedClassifier"],
    "regressors": ["CNNRegressor", "VisionTransformerRegressor", "FineTunedRegressor"],
    "`UNetSegmenter`": ["UNetSegmenter"],
    "`FasterRCNNDetector`": ["FasterRCNNDetector"],
    "`StyleTransfer`": ["StyleTransfer"],
}


def training_parameter_table(text):
    """``{row's first cell: {column header: "yes"/"no"}}`` of the table after the marker."""
    lines = text.split("<!-- training-parameters:", 1)[1].splitlines()[1:]
    rows = []
    for line in lines:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    header, body = rows[0], rows[2:]
    return {row[0]: dict(zip(header[1:], row[1:])) for row in body}


def _takes(cls, what):
    import inspect

    if what == "partial_fit":
        return hasattr(cls, "partial_fit")
    if what.startswith("fit("):
        return "sample_weight" in inspect.signature(cls.fit).parameters
    return what in inspect.signature(cls).parameters


def check_training_parameter_table(text):
    import skvision

    table = training_parameter_table(text)
    assert table and all(set(cells) == set(_TABLE_COLUMNS) for cells in table.values())
    for first_cell, cells in table.items():
        for what in re.findall(r"`([^`]+)`", first_cell):
            for column, names in _TABLE_COLUMNS.items():
                for name in names:
                    takes = _takes(getattr(skvision, name), what)
                    assert cells[column] == ("yes" if takes else "no"), (
                        f"{what} for {name}: the table says {cells[column]}")


def test_the_training_parameter_table_matches_the_signatures():
    check_training_parameter_table(README.read_text())


def test_the_quickstart_page_has_the_same_table():
    # docs/quickstart_sklearn.rst: the table as an rST csv-table, ``code`` in cells.
    import csv

    page = (README.parent / "docs" / "quickstart_sklearn.rst").read_text()
    lines = page.split(".. training-parameters:", 1)[1].split(".. csv-table::", 1)[1]
    header_line, rest = lines.split(":header:", 1)[1].split("\n", 1)
    body = rest.strip("\n").split("\n\n", 1)[0]  # the rows, up to the next blank line
    rows = [header_line.strip()] + [line.strip() for line in body.splitlines()]
    table = ["| " + " | ".join(cell.replace("``", "`") for cell in row) + " |"
             for row in csv.reader(rows, skipinitialspace=True)]
    markdown = "<!-- training-parameters: -->\n" + "\n".join([table[0], "|---|"] + table[1:])
    assert training_parameter_table(markdown) == training_parameter_table(README.read_text())
    check_training_parameter_table(markdown)
