"""Sphinx configuration of skvision's documentation (``make docs``)."""

import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS))  # the local _benchmarks extension, _api_members

import _api_members  # noqa: E402
import _gallery  # noqa: E402

import skvision  # noqa: E402

project = "skvision"
author = "the skvision developers"
copyright = "2026, the skvision developers"
release = version = skvision.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "_benchmarks",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "_generated", "auto_examples/*.ipynb", "auto_examples/*.py",
                    "auto_examples/*.zip", "auto_examples/*.md5", "**.codeobj.json"]

# API pages: one per public object, generated from the docstrings with the
# templates of _templates/ (class.rst, nn_class.rst for torch modules,
# function.rst): a class's page has its methods table and every public
# method's signature and docstring (the template's :members:, which no
# autodoc_default_options override), then the gallery's "Examples using".
autosummary_generate = True
autosummary_context = {
    "public_methods": {name: _api_members.public_methods(cls)
                       for name, cls in _api_members.public_classes().items()},
}
# The templates list the methods; numpydoc adds no second table.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
# Docstrings link names like ``ndarray`` or ``array-like`` as plain words.
numpydoc_xref_param_type = False

# No network when building: links to other projects' docs are left as text.
intersphinx_mapping = {}

# A reference that resolves nowhere fails the build (with -W), except:
nitpicky = True
nitpick_ignore_regex = [
    # Other projects' objects: without intersphinx (offline builds) they cannot
    # resolve; the docstrings still name them for readers and for numpydoc.
    (r"py:.*", r"(numpy|scipy|pandas|sklearn|torch|torchvision|timm|skorch|skops|xgboost"
               r"|imblearn|skimage|dask|distributed|accelerate|onnx|onnxruntime|PIL|fsspec)"
               r"(\..*)?"),
    # Docstrings inherited from scikit-learn (score, get_metadata_routing,
    # set_output) and torch (forward, train) name their own labels and classes.
    ("std:ref", r"metadata_routing|accuracy_score|r2_score|df_output_transform"
                r"|sphx_glr_auto_examples_miscellaneous_plot_set_output\.py"),
    ("py:class", r"Module|Dropout|BatchNorm"),
    # ... and scikit-learn's glossary (BaseSearchCV's methods, inherited by the
    # epoch-halving searches).
    ("std:term", r"fit|classes_"),
]

html_theme = "pydata_sphinx_theme"
html_title = f"skvision {version}"
html_static_path = ["_static"]
html_css_files = ["skvision.css"]
html_theme_options = {
    "navbar_end": ["navbar-icon-links"],
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": [],
}
html_sidebars = {"index": [], "quickstart_*": [], "benchmarks": []}
html_show_sourcelink = False

# The gallery: every script in examples/ runs and its figures are shown.
sphinx_gallery_conf = {
    "examples_dirs": str(DOCS.parent / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    # -D plot_gallery=0 skips running them (quick previews of the text).
    "plot_gallery": os.environ.get("SKVISION_DOCS_RUN_EXAMPLES", "True"),
    "show_memory": False,
    # One example per core, each with one torch thread (_gallery.py).
    "parallel": _gallery.parallel_examples(),
    "reset_modules": ("matplotlib", "_gallery.one_torch_thread"),
    # A cell ending in plot_masks(...) shows the figure, not "<Figure size ...>".
    "capture_repr": (),
    "reference_url": {"skvision": None},
    # API pages list the examples that use each object.
    "backreferences_dir": "generated/backreferences",
    "doc_module": ("skvision",),
}


def _skip_routing_setters(app, what, name, obj, skip, options):
    """Leave out the ``set_<method>_request`` setters of metadata routing, as the tables do."""
    if what == "class" and _api_members.is_routing_setter(name):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_routing_setters)
