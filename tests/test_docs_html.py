"""The built site, as a reader sees it: API pages with every public method, and
user pages that hold no test-harness notes.

Reads the HTML ``make docs`` builds: ``pytest tests/test_docs_html.py
--docs-html docs/_build/html`` (the docs target passes it). Without
``--docs-html`` every test here skips, so ``make test`` needs no built site.
"""

import re
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "docs"))

import _api_members  # noqa: E402


@pytest.fixture(scope="module")
def site(request):
    path = request.config.getoption("--docs-html")
    if path is None:
        pytest.skip("reads the built site: pass --docs-html docs/_build/html (make docs does)")
    site = Path(path)
    if not (site / "index.html").is_file():
        pytest.fail(f"--docs-html {path}: no built site there (index.html is missing)")
    return site


class _Text(HTMLParser):
    """The text of a page's main content, without scripts and styles."""

    def __init__(self):
        super().__init__()
        self.parts, self._skip, self._in_main = [], 0, 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1
        if tag == "main":
            self._in_main += 1

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._skip -= 1
        if tag == "main":
            self._in_main -= 1

    def handle_data(self, data):
        if not self._skip and self._in_main:
            self.parts.append(data)


def _main_text(html):
    parser = _Text()
    parser.feed(html)
    return "".join(parser.parts)


def _ids(html):
    return set(re.findall(r'\bid="([^"]+)"', html))


CLASSES = _api_members.public_classes()

# The contributors' section: it may name tests and harness conventions.
CONTRIBUTOR_PAGES = {"contributing.html", "architecture.html"}


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_a_class_page_documents_every_public_method(site, name):
    page = site / "generated" / f"{name}.html"
    assert page.is_file(), f"no API page for {name} ({page})"
    html = page.read_text()
    ids = _ids(html)
    assert name in ids, f"{page.name}: no entry for the class itself"
    methods = _api_members.public_methods(CLASSES[name])
    missing = [method for method in methods if f"{name}.{method}" not in ids]
    assert not missing, f"{page.name} has no entry for {missing}"
    if methods:
        # The methods table: each row links to the method's entry.
        text = _main_text(html)
        assert "Methods" in text, f"{page.name} has no methods table"
        for method in methods:
            assert f'href="#{name}.{method}"' in html, f"{page.name}: {method} not in the table"


def test_the_vision_methods_are_on_their_pages(site):
    expected = {
        "skvision.CNNClassifier": ["fit", "partial_fit", "predict_proba", "score",
                                   "feature_maps", "class_activation_maps"],
        "skvision.FasterRCNNDetector": ["fit", "predict", "predict_proposals"],
        "skvision.VisionTransformerClassifier": ["attention_maps", "predict_proba"],
        "skvision.ImageAugmenter": ["preset", "augment_batch", "transform"],
        "skvision.AugmentationSampler": ["fit_resample"],
    }
    for name, methods in expected.items():
        ids = _ids((site / "generated" / f"{name}.html").read_text())
        assert {f"{name}.{method}" for method in methods} <= ids, name


def test_torch_module_pages_list_only_their_own_methods(site):
    for name, cls in CLASSES.items():
        if not name.startswith("skvision.nn."):
            continue
        ids = _ids((site / "generated" / f"{name}.html").read_text())
        for torch_method in ("to", "state_dict", "load_state_dict", "parameters", "cuda",
                             "training"):
            if torch_method not in vars(cls):
                assert f"{name}.{torch_method}" not in ids, f"{name} lists Module.{torch_method}"


def test_estimator_pages_link_to_the_user_guide(site):
    for name, cls in CLASSES.items():
        if not hasattr(cls, "fit"):
            continue
        html = (site / "generated" / f"{name}.html").read_text()
        match = re.search(r'Read more in the <a class="reference internal" href="([^"#]+)', html)
        assert match, f"{name}: no 'Read more in the User Guide' link"
        assert match.group(1).startswith("../user_guide/"), (name, match.group(1))
        assert (site / "generated" / match.group(1)).resolve().is_file(), (name, match.group(1))
# What a user page must not show: the snippet test's markers, commit hashes
# (7 to 40 hex digits with a letter and a digit), paths into the test suite.
HARNESS = {
    "a snippet marker": re.compile(r"#\s*needs\s*:"),
    "a commit hash": re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b"),
    "a tests/ path": re.compile(r"(?<![\w./-])tests/\w"),
}


def _user_pages(site):
    for page in sorted(site.rglob("*.html")):
        relative = page.relative_to(site)
        if relative.parts[0] in ("_modules", "_static", "_sources", "_images", "_downloads"):
            continue  # highlighted source code, assets
        if str(relative) in CONTRIBUTOR_PAGES or relative.name in ("genindex.html",
                                                                   "search.html", "py-modindex.html"):
            continue
        yield relative, page


def test_user_pages_show_no_harness_notes(site):
    pages = list(_user_pages(site))
    assert len(pages) > 50
    found = []
    for relative, page in pages:
        text = _main_text(page.read_text())
        for what, pattern in HARNESS.items():
            if what == "a commit hash" and relative.parts[0] == "auto_examples":
                continue  # what the examples print: dask task keys, digests
            for match in pattern.finditer(text):
                context = text[max(match.start() - 40, 0):match.end() + 40].replace("\n", " ")
                found.append(f"{relative}: {what}: ...{context}...")
    assert not found, "\n".join(found)


def test_the_architecture_page_is_in_the_contributors_section(site):
    contributing = (site / "contributing.html").read_text()
    assert 'href="architecture.html"' in contributing
    # The users' navigation (the front page, its top bar and toctree) leads to
    # the contributors' section, not to its pages.
    index = (site / "index.html").read_text()
    assert 'href="contributing.html"' in index and "architecture.html" not in index
