"""``skvision demo`` and ``skvision info``: the command line a new user runs first."""

import re

import pandas as pd
import pytest

from skvision.cli import main


def test_demo_help_lists_its_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--output FOLDER", "--quick", "--only SECTION"):
        assert option in text
    assert "report.html" in text


def test_quick_demo_writes_a_report_and_a_table(tmp_path, capsys):
    output = tmp_path / "demo"
    assert main(["demo", "--quick", "--only", "classification", "augmentation",
                 "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    assert str(output / "report.html") in printed
    table = pd.read_csv(output / "results.csv")
    assert set(table["task"]) == {"Digit classification", "Augmentation"}
    assert len(table) == 4 and table["score"].between(0, 1).all()
    # Three epochs already beat chance (0.1) on the digits by far.
    cnn = (table["task"] == "Digit classification") & (table["model"] == "CNNClassifier")
    assert table.loc[cnn, "score"].item() > 0.5
    report = (output / "report.html").read_text()
    assert report.count("<img") == 3  # every figure embedded, none linked
    assert len(re.findall(r"src='data:image/png;base64,", report)) == 3
    assert "CNNClassifier + ImageAugmenter" in report and "<table" in report
    # Nothing else (no temporary file) is left in the folder.
    assert sorted(path.name for path in output.iterdir()) == ["report.html", "results.csv"]


def test_unknown_section_is_refused(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--only", "painting"])
    assert "invalid choice: 'painting'" in capsys.readouterr().err


def test_info_names_the_versions_and_device(capsys):
    assert main(["info"]) == 0
    text = capsys.readouterr().out
    assert re.search(r"^skvision \d", text, re.M) and "device='auto' resolves to" in text


def test_info_prints_every_pinned_part(capsys):
    # The install page insists torch and torchvision be a matching pair, and
    # lists the tested versions of these packages: `skvision info` shows each.
    import importlib

    from skvision.cli import INFO_PACKAGES

    assert main(["info"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for distribution, module_name in INFO_PACKAGES:
        version = importlib.import_module(module_name).__version__
        assert f"{distribution} {version}" in lines, distribution
    names = [distribution for distribution, _ in INFO_PACKAGES]
    assert {"torch", "torchvision", "skorch", "scikit-learn", "numpy", "timm"} <= set(names)
    # The install page's table of tested versions names the same packages.
    from pathlib import Path

    page = (Path(__file__).resolve().parent.parent / "docs" / "install.rst").read_text()
    table = page.split("Tested versions\n---------------", 1)[1].split("\n\n\n", 1)[0]
    listed = set(re.findall(r"^   \* - (\S+)$", table, flags=re.M)) - {"package", "Python"}
    assert {"torch", "torchvision", "skorch"} <= listed <= set(names), listed - set(names)
