"""Command line: ``skvision demo`` and ``skvision info``."""

import argparse
import importlib
import os
import platform
import sys
import time
from importlib import metadata

from ._demo import SECTIONS

# The name on PyPI (``pip install scikit-vision``); the import name is skvision.
DISTRIBUTION = "scikit-vision"


def _demo(args):
    from ._demo import run_demo

    run_demo(args.output, quick=args.quick, sections=args.only or None)
    return 0


# What `skvision info` reports: the dependencies the install page's table of
# tested versions lists (torch and torchvision a matching pair, skorch pinned
# to a minor release), as (distribution, import name).
INFO_PACKAGES = (
    ("numpy", "numpy"), ("scikit-learn", "sklearn"), ("skorch", "skorch"), ("torch", "torch"),
    ("torchvision", "torchvision"), ("timm", "timm"), ("pandas", "pandas"),
    ("xgboost", "xgboost"), ("skops", "skops"), ("scikit-image", "skimage"),
    ("safetensors", "safetensors"),
)


def _installed_version(module_name):
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return "not installed"
    return getattr(module, "__version__", "(no version)")


def _info(args):
    import torch

    from . import __version__
    from ._torch import resolve_device

    try:
        installed = f"distribution {DISTRIBUTION} {metadata.version(DISTRIBUTION)}"
    except metadata.PackageNotFoundError:
        installed = f"distribution {DISTRIBUTION} not installed"
    location = os.path.dirname(os.path.abspath(__file__))
    print(f"skvision {__version__} ({installed}; from {location})")
    print(f"python {platform.python_version()} on {platform.platform()}")
    for distribution, module_name in INFO_PACKAGES:
        print(f"{distribution} {_installed_version(module_name)}")
    print(f"device='auto' resolves to {resolve_device('auto')!r}; "
          f"torch threads: {torch.get_num_threads()}")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="skvision", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="train on built-in data and write an HTML report",
        description="Digit classification (a CNN against a pixel baseline), transfer "
        "learning on texture photos, augmentation on a small training set and U-Net "
        "segmentation, on data that ships offline. Prints a results table and writes "
        "report.html (figures embedded) and results.csv to the output folder; "
        "--quick runs each part on less data, as a smoke test.",
    )
    demo.add_argument("--output", default="skvision-demo", metavar="FOLDER",
                      help="folder for report.html and results.csv (default: %(default)s)")
    demo.add_argument("--quick", action="store_true",
                      help="fewer epochs, folds and images: a smoke test, not the results")
    demo.add_argument("--only", nargs="+", choices=sorted(SECTIONS), metavar="SECTION",
                      help=f"run only these sections, of: {', '.join(SECTIONS)}")
    demo.set_defaults(run=_demo)
    info = commands.add_parser("info", help="versions and the device in use")
    info.set_defaults(run=_info)
    args = parser.parse_args(argv)
    start = time.time()
    status = args.run(args)
    if args.command == "demo":
        print(f"Done in {time.time() - start:.0f} s.")
    return status


if __name__ == "__main__":
    sys.exit(main())
