"""Every measured figure a user reads comes from ``bench/results/*.json``.

The docs pages quote figures through the ``:bench:`` role of
``docs/_benchmarks.py``, which renders the number from the result file at
build time. Where a role cannot be used (README.md, docstrings, code
comments), a figure may be typed, but it must equal a number of some result
file at the precision shown (``2.13x`` matches 2.1302..., ``19%`` matches
0.188...). This test finds every figure in README.md, ``docs/**/*.rst`` and
the docstrings of ``skvision/`` and fails on any that no result file holds.

A *figure* is a number followed by a unit of measure (x, ×, %, s, ms,
seconds, img/s, images/s), or a decimal number in the same sentence as, and
at most ~60 characters after, a word naming a score (accuracy, score, IoU,
mAP, R², CV, F1, recall) or the word "measured", or a decimal written as approximate (``~0.98``). Not
figures, by the rules below: version numbers (``2.14.1``), parameter values
(``lr=0.003``, ``"epochs": 5``, anything inside a ````literal````), sizes
(``8x8``, ``224 px``, ``64 GiB``) and arithmetic (``2 x 7.4``).

In a docs page only a code comment (``# ~0.982``) may type a figure;
prose and tables use the role.

``python tests/test_figures.py`` prints every figure and where its value
comes from.
"""

import ast
import bisect
import json
import re
import sys
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT / "docs"))

import _benchmarks  # noqa: E402

# Generated at build time (from the files checked here), not written by hand.
SKIPPED_DIRS = {"_build", "_generated", "generated", "auto_examples"}
SKIPPED_FILES = {"sg_execution_times.rst"}

ROLE = re.compile(r":bench:`(?P<text>[^`]+)`")
# A number: not part of a word, an identifier, a version or a range
# (x86_64, float32, 2.14.1, 16-32-64); thousands separated by commas.
NUMBER = (r"(?<![\w.\-/=@:])(?P<approx>[~≈]\s?)?"
          r"(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)(?!\.?\d)")
# A unit of measure right after it. x or × followed by a number is a size
# (8x8, 32x32) or arithmetic (2 x 7.4), not a ratio.
UNIT = (r"\s?(?P<unit>(?:x|×)(?!\s*\d)(?![\w])|%|ms\b|s\b|seconds?\b"
        r"|img/s|images?/s|images per second)")
FIGURE = re.compile(NUMBER + r"(?:" + UNIT + r"|(?![\w\-]))")
SCORE_WORD = re.compile(r"accura|score|\bIoU\b|\bmAP|R²|\bR2\b|\bCV\b|\bF1\b|recall|measured",
                        re.I)
SENTENCE_END = re.compile(r"\.\s|\n\s*\n|:\n")
# Lines that hold no prose: reST directive options (``:width: 90%``) and
# doctests (``>>>`` lines and the output under them, checked by running).
OPTION_LINE = re.compile(r"^[ \t]*:[\w-]+:.*$", re.M)
DOCTEST = re.compile(r"^[ \t]*(?:>>>|\.\.\.)[^\n]*(?:\n[ \t]*(?!>>>)\S[^\n]*)*", re.M)
# The short list of phrases whose numbers are definitions, not measurements.
NOT_MEASURED = re.compile("|".join(phrase.replace(" ", r"\s+") for phrase in [
    r"IoU (?:threshold )?(?:of )?0\.5\b",       # the metric's definition
    r"0\.5:0\.95|0\.5, 0\.55, \.\.\., 0\.95",     # COCO's IoU thresholds
    r"ImageNet top-1(?:[^.]|\.\d)*",              # published by the backbones' authors
    r"\d+x (?:down|up)sampl\w*",                # a network's scale factor
    r"timeout\W+\(?\d+ s",                       # a parameter's value
    r"at 20 ms a request that caps reading near 500 images per second",  # arithmetic
]))
# ``code`` in reST and `code` in Markdown: parameter values, not figures.
LITERAL = re.compile(r"``[^`]+``|(?<!`)`[^`\n]+`(?!`)")


# What a result key measures, from its name (the innermost key that says;
# ``skvision`` or ``plain_torch`` under ``evaluations_per_s`` say nothing).
KINDS = {
    "ratio": re.compile(r"ratio|speedup|speed_vs|_over_|share|ceiling"),
    "rate": re.compile(r"per_s$"),
    "ms": re.compile(r"_ms$"),
    "seconds": re.compile(r"seconds|(?<!budget)(?<!timeout)_s$"),
    "score": re.compile(r"accuracy|score|r2$|map50|iou|agreement"),
}

def unit_kinds(unit):
    """``(kind, scale)`` a figure with ``unit`` may come from: value = found x scale."""
    if unit is None:  # called an accuracy, a score...
        return [("score", 1)]
    if unit in ("x", "×"):
        return [("ratio", 1)]
    if unit == "%":
        return [("ratio", 100), ("score", 100)]
    if unit == "ms":
        return [("ms", 1), ("seconds", 1000)]
    if unit in ("s", "second", "seconds"):
        return [("seconds", 1), ("ms", 0.001)]
    return [("rate", 1)]  # img/s, images/s, images per second


def _kind(path):
    for key in reversed(path):
        for kind, pattern in KINDS.items():
            if pattern.search(key):
                return kind
    return None


def result_values():
    """``{kind: sorted values}`` of every result file (history included)."""
    values = {kind: set() for kind in KINDS}

    def walk(node, path):
        if isinstance(node, dict):
            for key, item in node.items():
                walk(item, (*path, str(key)))
        elif isinstance(node, list):
            for item in node:
                walk(item, path)
        elif isinstance(node, (int, float)) and not isinstance(node, bool):
            kind = _kind(path)
            if kind is not None:
                values[kind].add(float(node))

    for path in sorted(RESULTS.rglob("*.json")):
        walk(json.loads(path.read_text()), ())
    return {kind: sorted(found) for kind, found in values.items()}


def texts():
    """``(where, text)`` of README.md, every docs page and every docstring."""
    yield "README.md", (ROOT / "README.md").read_text()
    for page in sorted((ROOT / "docs").rglob("*.rst")):
        parts = set(page.relative_to(ROOT / "docs").parts)
        if not (SKIPPED_DIRS | SKIPPED_FILES) & parts:
            yield str(page.relative_to(ROOT)), page.read_text()
    for module in sorted((ROOT / "skvision").rglob("*.py")):
        tree = ast.parse(module.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                 ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node, clean=False)
                if doc:
                    name = getattr(node, "name", "")
                    yield f"{module.relative_to(ROOT)}:{name}", doc
        # Parameter texts pasted into several docstrings (``%(...)s``).
        for node in tree.body:
            if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                    and isinstance(node.value.value, str)
                    and any(getattr(t, "id", "").endswith("_DOC") for t in node.targets)):
                yield f"{module.relative_to(ROOT)}:{node.targets[0].id}", node.value.value


def _blank(match):
    return " " * len(match.group(0))


def figures(text):
    """``(number, decimals, unit, context, in a code comment)`` of each figure in ``text``."""
    text = ROLE.sub(_blank, text)
    text = OPTION_LINE.sub(_blank, text)
    text = DOCTEST.sub(_blank, text)
    text = NOT_MEASURED.sub(_blank, text)
    text = LITERAL.sub(_blank, text)
    for match in FIGURE.finditer(text):
        number = match["num"]
        unit = match["unit"]
        before = text[max(0, match.start() - 60):match.start()]
        before = SENTENCE_END.split(before)[-1]
        decimal = "." in number
        if unit is None:
            if not decimal:
                continue
            if not (match["approx"] or SCORE_WORD.search(before)):
                continue
        decimals = len(number.split(".")[1]) if decimal else 0
        context = text[max(0, match.start() - 50):match.end() + 20].replace("\n", " ")
        line_start = text.rfind("\n", 0, match.start()) + 1
        in_comment = "#" in text[line_start:match.start()]
        yield float(number.replace(",", "")), decimals, unit, context, in_comment


def source(value, decimals, unit, values):
    """A result value of the unit's kind that shows as ``value``, or None."""
    tolerance = 0.5 * 10 ** -decimals + 1e-9
    for kind, scale in unit_kinds(unit):
        found_values = values[kind]
        low = bisect.bisect_left(found_values, (value - tolerance) / scale)
        for found in found_values[low:]:
            if found * scale > value + tolerance:
                break
            return found
    return None


@lru_cache(maxsize=None)
def scan():
    """``(roles, matched, unsourced)``: lists of ``(where, detail)``.

    In a docs page a figure must come through ``:bench:``; only a code
    comment, where no role renders, may type one.
    """
    values = result_values()
    roles, matched, unsourced = [], [], []
    for where, text in texts():
        for role in ROLE.finditer(text):
            roles.append((where, role["text"]))
        for value, decimals, unit, context, in_comment in figures(text):
            found = source(value, decimals, unit, values)
            if where.startswith("docs/") and not in_comment:
                found = None
                context = f"{context} (a docs page: use :bench:)"
            record = (where, f"{context!r} -> {found}")
            (matched if found is not None else unsourced).append(record)
    return roles, matched, unsourced


def test_every_bench_role_names_a_number():
    roles, _, _ = scan()
    assert roles, "the docs quote no figure through :bench:"
    bad = []
    for where, text in roles:
        try:
            _benchmarks.render(text)
        except (KeyError, ValueError, IndexError) as error:
            bad.append(f"{where}: :bench:`{text}`: {error}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("group", ["README.md", "docs/", "skvision/"])
def test_every_typed_figure_is_in_a_result_file(group):
    _, _, unsourced = scan()
    unsourced = [(where, detail) for where, detail in unsourced if where.startswith(group)]
    assert not unsourced, (
        f"{len(unsourced)} figure(s) that no bench/results/*.json holds at the "
        "precision shown (quote them with :bench: in docs pages, or run the "
        "script that measures them):\n"
        + "\n".join(f"{where}: {detail}" for where, detail in unsourced))


def test_the_scanner_finds_figures_and_skips_parameters():
    found = [(v, d, u) for v, d, u, _, _ in figures(
        "It trained 2.4x faster in 25.7 s at 1,350 img/s (19%); the accuracy "
        "was 0.9822 and ~0.985 in CV.")]
    assert found == [(2.4, 1, "x"), (25.7, 1, "s"), (1350.0, 0, "img/s"),
                     (19.0, 0, "%"), (0.9822, 4, None), (0.985, 3, None)]
    assert not list(figures(
        "torch 2.14.1, lr=0.003, ``epochs=5``, 8x8 and 32x32 images, 224 px, "
        "64 GiB, 2 x 7.4, 3 epochs, Python 3.12, float32, x86_64, 16-32-64 "
        "filters, an accuracy of ``0.5``."))
    values = {"ratio": [0.18836, 2.1302], "seconds": [25.71], "score": [], "ms": [],
              "rate": []}
    assert source(19, 0, "%", values) == 0.18836
    assert source(2.13, 2, "x", values) == 2.1302
    assert source(2.1, 1, "x", values) == 2.1302
    assert source(2.2, 1, "x", values) is None
    assert source(25.7, 1, "s", values) == 25.71


if __name__ == "__main__":
    roles, matched, unsourced = scan()
    for title, rows in (("sourced by :bench:", roles), ("typed, matched", matched),
                        ("typed, NOT in any result file", unsourced)):
        print(f"== {title}: {len(rows)}")
        for where, detail in rows:
            print(f"  {where}: {detail}")
    print(f"figures: {len(roles) + len(matched) + len(unsourced)} "
          f"({len(roles)} by role, {len(matched)} matched, {len(unsourced)} unsourced)")
