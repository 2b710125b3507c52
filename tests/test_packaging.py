"""The distribution is scikit-vision (import skvision); make demo installs the runtime only.

The built wheel itself is checked by ``make check-dist`` (tools/check_dist.py),
which CI runs after the tests.
"""

import json
import re
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

import pytest

import skvision
from skvision.cli import DISTRIBUTION, main

ROOT = Path(__file__).resolve().parent.parent


def test_the_distribution_is_scikit_vision_at_the_package_version():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == DISTRIBUTION == "scikit-vision"
    assert project["version"] == skvision.__version__
    assert project["scripts"] == {"skvision": "skvision.cli:main"}
    assert set(project["optional-dependencies"]) >= {"dev", "distributed", "release"}


def _user_facing_files():
    for pattern in ("README.md", "CONTRIBUTING.md", "Makefile", "pyproject.toml", "docs/**/*.rst", "docs/*.py",
                    "examples/*.py", "bench/*.py", "tools/*.py", "skvision/**/*.py"):
        yield from ROOT.glob(pattern)


def test_nothing_installs_the_old_distribution_name():
    # `pip install skvision` would install someone else's placeholder from PyPI.
    old = re.compile(r"pip install [\"']?skvision\b|[\"'`]skvision\[")
    stale = sorted(path.relative_to(ROOT).as_posix() for path in _user_facing_files()
                   if old.search(path.read_text()))
    assert not stale, stale


def test_info_names_the_distribution(capsys):
    assert main(["info"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith(f"skvision {skvision.__version__} (distribution scikit-vision ")
    try:
        installed = metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        assert "not installed" in first
    else:
        assert f"scikit-vision {installed};" in first


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_demo_installs_the_runtime_only_and_make_test_adds_dev(tmp_path):
    def planned(target):
        return subprocess.run(["make", "-n", target, f"VENV={tmp_path / 'venv'}"], cwd=ROOT,
                              check=True, capture_output=True, text=True).stdout

    demo, test = planned("demo"), planned("test")
    pins = "torch==2.14.1 torchvision==0.29.1"
    assert pins in demo and 'pip install -e .\n' in demo and "[dev]" not in demo
    assert pins in test and 'pip install -e ".[dev]"' in test


def _install_table():
    """``{package: [required, tested, lowest tested]}`` of the Install page's table."""
    page = (ROOT / "docs" / "install.rst").read_text()
    table = page.split("Tested versions\n---------------", 1)[1].split("\n\n\n", 1)[0]
    rows, row = {}, None
    for line in table.splitlines():
        if match := re.match(r"   \* - (.+)$", line):
            row = rows.setdefault(match.group(1).strip(), [])
        elif (match := re.match(r"     - (.+)$", line)) and row is not None:
            row.append(match.group(1).strip())
    return page, rows


def test_the_install_page_shows_the_last_test_min_run():
    # tools/min_dependencies.py (make test-min) records the oldest versions it
    # installed and passed with; the Install page's "lowest tested" column and
    # date are that record, and each recorded version is one pyproject allows.
    tomllib = pytest.importorskip("tomllib")
    from packaging.requirements import Requirement

    record = json.loads((ROOT / "tools" / "min_dependencies.json").read_text())
    page, rows = _install_table()
    assert rows.pop("package") == ["required", "tested", "lowest tested"]
    for package, (_, _, lowest) in rows.items():
        expected = record["versions"]["python" if package == "Python" else package]
        assert lowest == expected, (package, lowest, expected)
    assert f"last passed on {record['date']}" in page
    requirements = {Requirement(item).name.lower(): Requirement(item) for item in tomllib.loads(
        (ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    for name, version in record["versions"].items():
        if name in requirements:
            specifier = requirements[name].specifier
            assert version.split("+")[0] in specifier, (name, version)
            # and the page's "required" column is pyproject.toml's specifier
            required = set(rows[name][0].replace(" ", "").split(","))
            assert required == set(str(specifier).split(",")), (name, required)
