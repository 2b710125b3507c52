"""Sphinx extension: every measured number on the site, from ``bench/results/*.json``.

* The Benchmarks page's table and plot: every number whose key names a ratio
  or a speed-up is one row; the script's own docstring says what it compares.
* The Object storage page's table (``_generated/remote_loading.rst``).
* The ``:bench:`` role, for a figure quoted in prose::

      :bench:`file_loading.decode_ratio_vs_sequential`          -> 2.13
      :bench:`{:.2f}x <file_loading.decode_ratio_vs_sequential>` -> 2.13x
      :bench:`{:.1f} s <time_to_accuracy.results.mnist/plain_loop.fit_seconds>`
      :bench:`{:.0%} <file_loading.decode_share_of_fit_epoch>`   -> 19%
      :bench:`{:,.0f} img/s <gpu_check.benches...images_per_s>`  -> 12,110 img/s

  The target is the result file's name (``bench/results/<name>.json``; a
  file under ``bench/results/history/`` as ``history/<name>``) and the keys
  down to the number, joined by dots; the optional text before ``<...>`` is
  a Python format string with ``{}`` for the value (``{:.3g}`` when
  omitted). A target that names no number is a build error, and the page is
  rebuilt when the file changes.

Regenerated at every build, so the site shows whatever the last
``make bench`` wrote.
"""

import ast
import json
import re
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
OUTPUT = Path(__file__).resolve().parent / "_generated"


def _numbers(tree, path=()):
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _numbers(value, (*path, str(key)))
    elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
        yield path, tree


def collect_ratios(results=RESULTS):
    """``(script, measure, value, machine)`` for every ratio in the result files."""
    rows = []
    for result in sorted(Path(results).glob("*.json")):
        data = json.loads(result.read_text())
        machine = data.get("machine", {})
        for path, value in _numbers(data):
            if "ratio" in path[-1] or "speedup" in path[-1]:
                measure = " / ".join(path).replace("_", " ")
                rows.append((result.stem, measure, float(value), machine))
    return rows


def _summary(script):
    source = ROOT / "bench" / f"{script}.py"
    doc = ast.get_docstring(ast.parse(source.read_text())) if source.exists() else None
    return (doc or script).strip().splitlines()[0]


def _machine(machine):
    parts = [f"{machine[key]}" for key in ("device",) if key in machine]
    if "threads" in machine:
        parts.append(f"{machine['threads']} threads")
    if "torch" in machine:
        parts.append(f"torch {machine['torch']}")
    return ", ".join(parts)


def _remote_table(results=RESULTS):
    """The Object storage page's table, from ``bench/remote_loading.py``'s results."""
    path = Path(results) / "remote_loading.json"
    if not path.exists():
        return "*No result file: run* ``bench/remote_loading.py``.\n"
    data = json.loads(path.read_text())
    read, machine = data["read"], data.get("machine", {})
    lines = [".. list-table::", "   :header-rows: 1", "",
             "   * - Source", "     - Connection pool", "     - skvision (images/s)",
             "     - One object at a time (images/s)", "     - skvision / one at a time",
             "     - skvision / local files"]
    local = read["local_skvision"]["images_per_s"]
    lines += ["   * - local files", "     - ", f"     - {local:,.0f}",
              f"     - {read['local_one_by_one']['images_per_s']:,.0f}",
              f"     - {local / read['local_one_by_one']['images_per_s']:.2f}", "     - 1.00"]
    for server, label in (("moto", "moto S3 server"), ("stub", "stub S3 server")):
        for delay in ("0ms", "20ms"):
            for pool in ("default", "64"):
                case = f"{server}_{delay}_pool_{pool}"
                if f"{case}_skvision" not in read:
                    continue
                ours = read[f"{case}_skvision"]["images_per_s"]
                loop = read.get(f"{server}_{delay}_one_by_one", {}).get("images_per_s")
                ratio = data.get(f"skvision_vs_one_by_one_{case}")
                lines += [f"   * - {label}, {delay.replace('ms', ' ms')}",
                          f"     - {'botocore default' if pool == 'default' else pool}",
                          f"     - {ours:,.0f}",
                          f"     - {loop:,.0f}" if loop else "     - ",
                          f"     - {ratio:.1f}" if ratio else "     - ",
                          f"     - {ours / local:.2f}"]
    files, batch = machine.get("files", "JPEG files"), machine.get("batch_size", "?")
    cores = machine.get("threads", "?")
    lines += ["", f"``bench/remote_loading.py``, one run on {cores} CPU cores "
              f"({files}, batches of {batch}; "
              "servers on the loopback interface). The one-at-a-time loop is "
              "``fs.cat_file(url)`` then Pillow; see the script for every timing, "
              "the servers' CPU time and the single-request variant."]
    return "\n".join(lines) + "\n"


def write_page_parts(app=None):
    import matplotlib.pyplot as plt

    OUTPUT.mkdir(exist_ok=True)
    (OUTPUT / "remote_loading.rst").write_text(_remote_table())
    rows = collect_ratios()
    lines = [".. list-table::", "   :header-rows: 1", "   :widths: 22 40 10 28",
             "   :class: benchmarks", "",
             "   * - Script", "     - Measure", "     - Ratio", "     - Machine"]
    for script, measure, value, machine in rows:
        lines += [f"   * - ``bench/{script}.py``", f"     - {measure}",
                  f"     - {value:.3f}", f"     - {_machine(machine)}"]
    lines += ["", "What each script compares:", ""]
    for script in dict.fromkeys(row[0] for row in rows):
        lines.append(f"* ``bench/{script}.py``: {_summary(script)}")
    (OUTPUT / "benchmarks_table.rst").write_text("\n".join(lines) + "\n")

    labels = [f"{script}: {measure}" for script, measure, _, _ in rows]
    values = [value for _, _, value, _ in rows]
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(rows) + 1))
    colors = ["tab:green" if value >= 0.95 else "tab:orange" for value in values]
    ax.barh(range(len(rows)), values, color=colors)
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel("ratio (skvision vs the plain loop or library; > 1 is faster)")
    fig.tight_layout()
    fig.savefig(OUTPUT / "benchmarks.png", dpi=110)
    plt.close(fig)


_ROLE = re.compile(r"^(?:(?P<format>.*?)\s*<(?P<target>[^<>]+)>|(?P<bare>[^<>]+))$", re.S)
DEFAULT_FORMAT = "{:.3g}"


@lru_cache(maxsize=None)
def _load(name, results=RESULTS):
    return json.loads((Path(results) / f"{name}.json").read_text())


def parse_role(text):
    """``(format, file, target)`` of a ``:bench:`` role's text."""
    match = _ROLE.match(text.strip())
    if match is None:
        raise ValueError(f"not a :bench: reference: {text!r}")
    target = (match["target"] or match["bare"]).strip()
    fmt = (match["format"] or "").strip() or DEFAULT_FORMAT
    return fmt, target


def lookup(target, results=RESULTS):
    """``(file, value)``: the number that ``file.key.key...`` names in the results."""
    parts = target.split(".")
    name = parts.pop(0)
    path = Path(results) / f"{name}.json"
    if not path.exists():
        raise KeyError(f"no result file bench/results/{name}.json")
    node = _load(name, str(results))
    while parts:
        # A key may itself hold dots: take the shortest run of parts that is a key.
        for size in range(1, len(parts) + 1):
            key = ".".join(parts[:size])
            if isinstance(node, dict) and key in node:
                node = node[key]
                break
            if isinstance(node, list) and key.isdigit() and int(key) < len(node):
                node = node[int(key)]
                break
        else:
            raise KeyError(f"bench/results/{name}.json has no key {parts[0]!r} "
                           f"on the way to {target!r}")
        parts = parts[size:]
    if isinstance(node, bool) or not isinstance(node, (int, float)):
        raise KeyError(f"{target!r} in bench/results/{name}.json is not a number")
    return path, node


def render(text, results=RESULTS):
    """``(shown text, file, value)`` of a ``:bench:`` role's text."""
    fmt, target = parse_role(text)
    path, value = lookup(target, results)
    return fmt.format(value), path, value


def bench_role(name, rawtext, text, lineno, inliner, options=None, content=None):
    from docutils import nodes

    try:
        shown, path, value = render(text)
    except (KeyError, ValueError, IndexError) as error:
        message = inliner.reporter.error(f":bench: {error}", line=lineno)
        problem = inliner.problematic(rawtext, rawtext, message)
        return [problem], [message]
    env = getattr(inliner.document.settings, "env", None)
    if env is not None:
        env.note_dependency(str(path))
    where = f"{path.relative_to(ROOT)}: {parse_role(text)[1].split('.', 1)[-1]} = {value!r}"
    return [nodes.abbreviation(shown, shown, explanation=where, classes=["bench"])], []


def setup(app):
    app.connect("builder-inited", write_page_parts)
    app.add_role("bench", bench_role)
    return {"parallel_read_safe": True, "version": "1"}
