"""``make test-min``: the oldest versions ``pyproject.toml`` allows, tested.

As scikit-learn's "min-dependencies" CI job: a virtual environment of its own
(``.venv-min``) gets, of the dependencies whose floor matters most, the
lowest version each floor admits (the lowest release on the package index
that satisfies the whole specifier), the rest of skvision's dependencies
resolved by pip around them, and runs a fast subset of the test suite
(``FAST_TESTS``, ``-m "not slow and not serving and not gpu"``).

On success it records the run in ``tools/min_dependencies.json``: the
versions installed, the date, the time it took, and a hash of
``pyproject.toml``'s dependency list. CI (``.ci/run``) runs ``make test-min``
only when that hash no longer matches (``--changed`` exits 0 then), since
torch with its CUDA libraries is a download of several gigabytes; the Install page's
compatibility table shows the recorded versions and date
(``tests/test_packaging.py`` checks that they agree).

Usage::

    python tools/min_dependencies.py --venv .venv-min       # build, test, record
    python tools/min_dependencies.py --changed              # exit 0 if a run is due
    python tools/min_dependencies.py --print-pins           # the pins, nothing installed
"""

import argparse
import datetime
import hashlib
import json
import os
import re
import subprocess
import sys
import time

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECORD = ROOT / "tools" / "min_dependencies.json"
# The dependencies pinned to their floor (the others resolve as pip likes).
PINNED = ("torch", "torchvision", "scikit-learn", "skorch", "numpy", "timm")
# Modules that exercise what the floors bear on: the training core (skorch's
# private API, the grad scaler, the OOM fallback of batched inference),
# parameters and validation, the torch modules, timm and torchvision
# backbones, persistence (safetensors, skops) and the CNN estimators.
FAST_TESTS = ("tests/test_net.py", "tests/test_params.py", "tests/test_validation.py",
              "tests/test_nn.py", "tests/test_training.py", "tests/test_backbones.py",
              "tests/test_persistence.py", "tests/test_classification.py")
TEST_TOOLS = ("pytest>=8,<9", "pytest-xdist>=3", "hypothesis>=6")


def dependencies():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]


def dependency_hash():
    """A hash of pyproject.toml's runtime dependency list (sorted, whitespace-free)."""
    text = "\n".join(sorted(re.sub(r"\s+", "", item) for item in dependencies()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _name(requirement):
    return re.match(r"[A-Za-z0-9_.-]+", requirement).group(0).lower()


def _index_versions(python, name):
    """The versions of ``name`` the package index has, as pip lists them."""
    out = subprocess.run([python, "-m", "pip", "index", "versions", name], check=True,
                         capture_output=True, text=True).stdout
    match = re.search(r"Available versions: (.*)", out)
    return [version.strip() for version in match.group(1).split(",")] if match else []


def lowest_pins(python=sys.executable):
    """``{name: lowest version the pyproject.toml specifier admits}`` for PINNED."""
    from packaging.requirements import Requirement
    from packaging.version import Version

    pins = {}
    for item in dependencies():
        requirement = Requirement(item)
        name = requirement.name.lower()
        if name not in PINNED:
            continue
        versions = sorted((Version(v) for v in _index_versions(python, name)
                           if not Version(v).is_prerelease), reverse=False)
        admitted = [v for v in versions if v in requirement.specifier]
        if not admitted:
            raise SystemExit(f"no release of {name} satisfies {requirement.specifier}")
        pins[name] = str(admitted[0])
    missing = set(PINNED) - set(pins)
    if missing:
        raise SystemExit(f"pyproject.toml has no dependency {sorted(missing)}")
    return pins


def _run(*command, **kwargs):
    print("+", " ".join(str(part) for part in command), flush=True)
    subprocess.run([str(part) for part in command], check=True, **kwargs)


def build_and_test(venv, python):
    pins = lowest_pins(python)
    print("pins:", pins, flush=True)
    venv = Path(venv)
    if not (venv / "bin" / "python").exists():
        _run(python, "-m", "venv", venv)
    bin_dir = venv / "bin"
    _run(bin_dir / "python", "-m", "pip", "install", "--upgrade", "pip")
    pinned = [f"{name}=={version}" for name, version in pins.items()]
    # torch and torchvision first, together: a matching pair.
    _run(bin_dir / "python", "-m", "pip", "install",
         f"torch=={pins['torch']}", f"torchvision=={pins['torchvision']}")
    _run(bin_dir / "python", "-m", "pip", "install", "-e", ".", *pinned, *TEST_TOOLS, cwd=ROOT)
    versions = json.loads(subprocess.run(
        [bin_dir / "python", "-c",
         "import json, importlib.metadata as m, platform;"
         f"names = {list(PINNED)!r} + ['pandas', 'xgboost', 'skops', 'scikit-image'];"
         "v = {n: m.version(n) for n in names if __import__('importlib.util').util.find_spec("
         "{'scikit-learn': 'sklearn', 'scikit-image': 'skimage'}.get(n, n)) is not None};"
         "v['python'] = platform.python_version(); print(json.dumps(v))"],
        check=True, capture_output=True, text=True).stdout)
    for name, version in pins.items():
        if versions.get(name, "").split("+")[0] != version:
            raise SystemExit(f"{name} {versions.get(name)} installed, not the floor {version}")
    start = time.monotonic()
    env = {**os.environ, "PYTHONPATH": ""}
    _run(bin_dir / "python", "-m", "pytest", "-n", "auto", "--dist", "loadgroup",
         "-p", "no:cacheprovider", "-m", "not slow and not serving and not gpu",
         *FAST_TESTS, cwd=ROOT, env=env)
    minutes = (time.monotonic() - start) / 60
    record = {
        "date": datetime.date.today().isoformat(),
        "dependency_hash": dependency_hash(),
        "versions": versions,
        "tests": list(FAST_TESTS),
        "test_minutes": round(minutes, 1),
    }
    RECORD.write_text(json.dumps(record, indent=2) + "\n")
    print(f"recorded in {RECORD.relative_to(ROOT)}: {record}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", default=".venv-min")
    parser.add_argument("--python", default=sys.executable,
                        help="the interpreter that creates the environment")
    parser.add_argument("--changed", action="store_true",
                        help="exit 0 if pyproject.toml's dependencies changed since the "
                             "recorded run (a run is due), 1 if not")
    parser.add_argument("--print-pins", action="store_true")
    args = parser.parse_args(argv)
    if args.changed:
        recorded = None
        if RECORD.exists():
            recorded = json.loads(RECORD.read_text()).get("dependency_hash")
        due = recorded != dependency_hash()
        print("test-min is due: pyproject.toml's dependencies changed" if due
              else "test-min is up to date with pyproject.toml's dependencies")
        return 0 if due else 1
    if args.print_pins:
        print(json.dumps(lowest_pins(args.python), indent=2))
        return 0
    build_and_test(args.venv, args.python)
    return 0


if __name__ == "__main__":
    sys.exit(main())
