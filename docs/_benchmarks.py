"""Sphinx extension: the Benchmarks page's table and plot from ``bench/results/*.json``.

Every number whose key names a ratio or a speed-up is one row; the script's
own docstring says what it compares. Regenerated at every build, so the page
shows whatever the last ``make bench`` wrote.
"""

import ast
import json
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


def write_page_parts(app=None):
    import matplotlib.pyplot as plt

    OUTPUT.mkdir(exist_ok=True)
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


def write_remote_loading_table(results=RESULTS):
    """The throughput table of the object-storage page, from ``remote_loading.json``."""
    OUTPUT.mkdir(exist_ok=True)
    data = json.loads((Path(results) / "remote_loading.json").read_text())
    read = data["read"]
    local = read["local_skvision"]["images_per_s"]
    lines = [".. list-table:: Images per second, 64 px JPEGs, batches of 64 "
             f"({data['machine']['threads']} CPU cores; ``bench/remote_loading.py``)",
             "   :header-rows: 1", "",
             "   * - Source", "     - Added latency", "     - skvision",
             "     - One-by-one ``cat_file`` loop", "     - skvision / loop",
             "     - skvision / local files",
             "   * - local files", "     - ", f"     - {local:.0f}",
             f"     - {read['local_one_by_one']['images_per_s']:.0f}", "     - ", "     - 1"]
    for server, name in (("moto", "moto's S3 server"), ("stub", "stub S3 server")):
        for delay in (0, 20):
            key = f"{server}_{delay}ms_pool_64"
            rate = read[f"{key}_skvision"]["images_per_s"]
            loop = read[f"{server}_{delay}ms_one_by_one"]["images_per_s"]
            lines += [f"   * - {name}", f"     - {delay} ms", f"     - {rate:.0f}",
                      f"     - {loop:.0f}", f"     - {rate / loop:.1f}",
                      f"     - {rate / local:.2f}"]
    (OUTPUT / "remote_loading.rst").write_text("\n".join(lines) + "\n")


def setup(app):
    app.connect("builder-inited", write_page_parts)
    app.connect("builder-inited", lambda app: write_remote_loading_table())
    return {"parallel_read_safe": True, "version": "1"}
