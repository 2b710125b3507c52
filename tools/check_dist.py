"""Check the sdist and the wheel in ``dist/`` before a release (``make check-dist``).

1. ``twine check --strict`` on both (metadata, long description renders).
2. The wheel holds the ``skvision`` package and its ``.dist-info`` only (no
   tests/, docs/, examples/, bench/ ...), every file of the source package
   (``.py`` or package data) is in it, and its metadata names
   ``scikit-vision`` at the package's ``__version__`` with the ``skvision``
   command. The sdist builds from what it holds (pyproject, README, LICENSE,
   the package).
3. The wheel, installed (not editable) into a fresh virtual environment after
   the pinned torch pair, runs ``skvision --help``, ``skvision info``,
   ``skvision demo --quick`` and ``tools/smoke_test.py`` from a temporary
   folder outside the source tree.

Usage::

    python tools/check_dist.py [--python python3] [--torch "torch==... torchvision==..."] dist
"""

import argparse
import ast
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from email.parser import HeaderParser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "skvision"
DISTRIBUTION = "scikit-vision"
# Folders of the repository that must never ship in the wheel.
NOT_IN_WHEEL = ("tests", "docs", "examples", "bench", "tools", ".ci", "build", "dist")


def _step(message):
    print(f"\n== {message}", flush=True)


def _run(command, **kwargs):
    print("$ " + " ".join(str(part) for part in command), flush=True)
    subprocess.run([str(part) for part in command], check=True, **kwargs)


def _version():
    """``__version__`` of the source package, read without importing it."""
    tree = ast.parse((ROOT / PACKAGE / "_version.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                getattr(target, "id", None) == "__version__" for target in node.targets):
            return node.value.value
    raise AssertionError("no __version__ in skvision/_version.py")


def _source_package_files():
    """Every file of the source package a wheel must carry, relative to the root."""
    files = set()
    for path in (ROOT / PACKAGE).rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            files.add(path.relative_to(ROOT).as_posix())
    return files


def check_wheel(wheel, version):
    names = zipfile.ZipFile(wheel).namelist()
    dist_info = f"{DISTRIBUTION.replace('-', '_')}-{version}.dist-info/"
    files = [name for name in names if not name.endswith("/")]
    print(f"{wheel.name}: {len(files)} files, {wheel.stat().st_size / 1024:.0f} KiB")
    strays = [name for name in files
              if not (name.startswith(PACKAGE + "/") or name.startswith(dist_info))]
    assert not strays, f"files outside {PACKAGE}/ and {dist_info}: {strays}"
    shipped = [name for name in files if name.split("/")[0] in NOT_IN_WHEEL]
    assert not shipped, f"the wheel ships repository folders: {shipped}"
    caches = [name for name in files if "__pycache__" in name or name.endswith(".pyc")]
    assert not caches, f"the wheel ships byte code: {caches}"
    missing = sorted(_source_package_files() - set(files))
    assert not missing, f"package files missing from the wheel: {missing}"
    extra = sorted(name for name in files
                   if name.startswith(PACKAGE + "/") and name not in _source_package_files())
    assert not extra, f"the wheel has package files the source tree has not: {extra}"

    archive = zipfile.ZipFile(wheel)
    meta = HeaderParser().parsestr(archive.read(dist_info + "METADATA").decode())
    assert meta["Name"] == DISTRIBUTION, meta["Name"]
    assert meta["Version"] == version, (meta["Version"], version)
    requires = [req.split(";")[0].strip() for req in meta.get_all("Requires-Dist") or []
                if "extra ==" not in req]
    print("runtime requirements: " + ", ".join(requires))
    for name in ("torch", "torchvision", "scikit-learn", "skorch"):
        assert any(req.startswith(name) for req in requires), f"{name} not required"
    entry_points = archive.read(dist_info + "entry_points.txt").decode()
    assert "skvision = skvision.cli:main" in entry_points, entry_points
    assert any(name.startswith(dist_info) and "LICENSE" in name for name in files), \
        "no LICENSE in the wheel"
    print(f"ok: only {PACKAGE}/ ({sum(name.startswith(PACKAGE + '/') for name in files)} files)"
          f" and {dist_info}; Name {meta['Name']}, Version {meta['Version']}")


def check_sdist(sdist, version):
    prefix = f"{DISTRIBUTION.replace('-', '_')}-{version}/"
    with tarfile.open(sdist) as archive:
        names = [member.name for member in archive.getmembers() if member.isfile()]
    print(f"{sdist.name}: {len(names)} files, {sdist.stat().st_size / 1024:.0f} KiB")
    for needed in ("PKG-INFO", "pyproject.toml", "README.md", "LICENSE",
                   f"{PACKAGE}/__init__.py"):
        assert prefix + needed in names, f"{needed} missing from the sdist"
    relative = [name[len(prefix):] for name in names]
    missing = sorted(_source_package_files() - set(relative))
    assert not missing, f"package files missing from the sdist: {missing}"
    allowed = {"PKG-INFO", "pyproject.toml", "README.md", "LICENSE", "MANIFEST.in", "setup.cfg",
               PACKAGE, f"{DISTRIBUTION.replace('-', '_')}.egg-info"}
    strays = sorted(name for name in relative if name.split("/")[0] not in allowed)
    assert not strays, f"the sdist ships more than the package and its build files: {strays}"
    caches = [name for name in relative if "__pycache__" in name or name.endswith(".pyc")]
    assert not caches, f"the sdist ships byte code: {caches}"
    print("ok: the sdist holds pyproject.toml, README.md, LICENSE and the package only")


def check_install(wheel, python, torch, keep):
    work = Path(tempfile.mkdtemp(prefix="skvision-dist-check-"))
    try:
        venv = work / "venv"
        bin_dir = venv / "bin"
        _step(f"fresh virtual environment in {venv}")
        _run([python, "-m", "venv", venv])
        pip = [bin_dir / "python", "-m", "pip", "install", "--disable-pip-version-check"]
        started = time.perf_counter()
        _run(pip + torch.split())
        # The pins again, so that installing the wheel cannot move the pair.
        _run(pip + [wheel] + torch.split())
        _run([bin_dir / "python", "-m", "pip", "check"])
        print(f"installed in {time.perf_counter() - started:.0f} s")

        # From a folder outside the source tree, without the caller's PYTHONPATH.
        env = {key: value for key, value in os.environ.items()
               if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        run_here = {"cwd": work, "env": env}
        _step("skvision --help, skvision info")
        _run([bin_dir / "skvision", "--help"], **run_here)
        _run([bin_dir / "skvision", "demo", "--help"], **run_here)
        info = subprocess.run([bin_dir / "skvision", "info"], check=True, capture_output=True,
                              text=True, **run_here).stdout
        print(info, end="")
        assert f"distribution {DISTRIBUTION} " in info.splitlines()[0], info
        assert str(ROOT) not in info.splitlines()[0], "info names the source tree"

        _step("skvision demo --quick")
        output = work / "demo"
        _run([bin_dir / "skvision", "demo", "--quick", "--output", output], **run_here)
        written = sorted(path.name for path in output.iterdir())
        assert written == ["report.html", "results.csv"], written

        _step("smoke test: fit, predict, save, load")
        shutil.copy(ROOT / "tools" / "smoke_test.py", work / "smoke_test.py")
        _run([bin_dir / "python", "-I", work / "smoke_test.py", "--not-under", ROOT], **run_here)
    finally:
        if keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dist", type=Path, help="folder with one sdist and one wheel")
    parser.add_argument("--python", default="python3",
                        help="python that creates the fresh environment (default: %(default)s)")
    parser.add_argument("--torch", default="torch==2.14.1 torchvision==0.29.1",
                        help="the pinned torch pair, installed first (default: %(default)s)")
    parser.add_argument("--no-install", action="store_true",
                        help="check metadata and contents only, no fresh environment")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    version = _version()
    wheels = sorted(args.dist.glob("*.whl"))
    sdists = sorted(args.dist.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, (
        f"expected one wheel and one sdist: {wheels + sdists}")
    wheel, sdist = wheels[0].resolve(), sdists[0].resolve()

    _step("twine check --strict")
    _run([sys.executable, "-m", "twine", "check", "--strict", sdist, wheel])
    _step("wheel contents")
    check_wheel(wheel, version)
    _step("sdist contents")
    check_sdist(sdist, version)
    if not args.no_install:
        check_install(wheel, args.python, args.torch, args.keep)
    print(f"\ndist check passed in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
