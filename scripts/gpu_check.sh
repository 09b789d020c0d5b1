#!/usr/bin/env bash
# Verify scratchllm's CUDA device (issue 18) on a GPU machine, in one go, in under ~9 minutes:
# the device tests (tests/device: ops, models, training; test_device_decode_cuda.py, generation
# through the one KV-cache decoder on CuPy arrays against the CPU decoder and HF on the GPU;
# test_device_amp_cuda.py, bfloat16 autocast: conversion kernels, cuBLAS gemmEx, torch.autocast),
# then benchmarks/bench_cuda.py (training fp32/fp16/bf16 vs PyTorch eager, KV-cache generation vs HF).
#
#   bash scripts/gpu_check.sh            # from the repository root; results in $OUT (default ./gpu_out)
#
# Uses the machine's own python (PY=... to choose another; the repo's .venv if it was carried and the
# machine's python lacks numpy). CuPy missing: tries `pip install cupy-cuda12x` once (no network:
# says so). Every step has its own time limit, so one hang cannot eat the budget. Everything is
# printed and also written to $OUT/gpu_results.txt (+ bench_cuda.json, pytest_device.xml).
# BENCH_ARGS="--batch 4" passes options to benchmarks/bench_cuda.py. A dry run on a CPU, with the
# stand-in CuPy: PYTHONPATH=tests/device/fakecupy BENCH_ARGS="--layers 1 --seq 64 --batch 1" bash scripts/gpu_check.sh
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu_out}"
mkdir -p "$OUT"
R="$OUT/gpu_results.txt"
: > "$R"
T0=$(date +%s)
log() { echo "$*" | tee -a "$R"; }
step() {   # step NAME LIMIT_S command...
    local name=$1 limit=$2; shift 2
    local s=$(date +%s)
    log ""
    log "=== $name (limit ${limit}s, at +$(( s - T0 ))s) ==="
    timeout -k 5 "$limit" "$@" 2>&1 | tee -a "$R"
    local rc=${PIPESTATUS[0]}
    [ "$rc" = 124 ] && log "!!! $name TIMED OUT after ${limit}s"
    log "=== $name: exit $rc, $(( $(date +%s) - s ))s ==="
    return "$rc"
}

export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
PY="${PY:-}"
if [ -z "$PY" ]; then
    for cand in python3 python; do
        if command -v "$cand" >/dev/null && "$cand" -c "import numpy" 2>/dev/null; then PY=$(command -v "$cand"); break; fi
    done
fi
if [ -z "$PY" ] && [ -x .venv/bin/python ] && .venv/bin/python -c "import numpy" 2>/dev/null; then PY=$PWD/.venv/bin/python; fi
if [ -z "$PY" ]; then PY=$(command -v python3 || command -v python); log "!!! no python with numpy found; trying $PY anyway"; fi

step "GPU" 20 nvidia-smi
step "python and packages" 60 "$PY" - <<'PYEOF'
import importlib, platform, sys
print("python", sys.version.split()[0], sys.executable, platform.platform())
for name in ("numpy", "cupy", "cupyx", "torch", "transformers", "pytest", "safetensors", "tqdm", "matplotlib"):
    try:
        m = importlib.import_module(name)
        print(f"  {name:13s} {getattr(m, '__version__', '?')}")
    except Exception as e:  # noqa: BLE001
        print(f"  {name:13s} MISSING ({type(e).__name__}: {str(e)[:80]})")
try:
    import torch
    print("  torch.cuda.is_available():", torch.cuda.is_available(), "CUDA", torch.version.cuda)
except Exception:
    pass
PYEOF
"$PY" -m pip list 2>/dev/null | grep -iE "^(numpy|cupy|torch|transformers|pytest|safetensors|tqdm|matplotlib|nvidia-c)" | tee -a "$R"

if ! "$PY" -c "import cupy" 2>/dev/null; then
    log "CuPy is not importable: trying pip install cupy-cuda12x (fails fast without network)"
    step "pip install cupy-cuda12x" 90 "$PY" -m pip install --retries 0 --timeout 15 "cupy-cuda12x>=13" \
        || log "!!! could not install CuPy (no network?). Carry a cupy-cuda12x wheel and rerun: PY=... bash scripts/gpu_check.sh"
fi
if ! "$PY" -c "import pytest" 2>/dev/null; then
    step "pip install pytest" 60 "$PY" -m pip install --retries 0 --timeout 15 pytest || log "!!! pytest missing"
fi

step "smoke: a tensor on the GPU" 60 "$PY" - <<'PYEOF'
import time
import numpy as np
import scratchllm as sl
print("sl.cuda.is_available():", sl.cuda.is_available(), "device_count:", sl.cuda.device_count())
import cupy as cp
print("cupy", cp.__version__, "CUDA runtime", cp.cuda.runtime.runtimeGetVersion(), "device:",
      cp.cuda.runtime.getDeviceProperties(0)["name"].decode())
t = time.perf_counter()
x = sl.randn(64, 128, device="cuda", requires_grad=True)
w = sl.randn(128, device="cuda", requires_grad=True)
y = sl.nn.functional.layer_norm(x, (128,), w)
sl.nn.functional.cross_entropy(y, np.arange(64) % 128).backward()
print("layer_norm + cross_entropy forward/backward on", x.device, "ok; grad", x.grad.device,
      f"({time.perf_counter() - t:.1f} s with kernel compilation)")
PYEOF

if "$PY" -c "import pytest" 2>/dev/null; then
    step "device tests (tests/device, SCRATCHLLM_TEST_CUDA=1)" 240 env SCRATCHLLM_TEST_CUDA=1 "$PY" -m pytest tests/device \
        -p no:cacheprovider -rfE --tb=short --maxfail=30 --durations=8 --junitxml="$OUT/pytest_device.xml" \
        --deselect tests/device/test_device_cpu.py::test_the_gpu_code_paths_run_against_a_stand_in_cupy
else
    step "device tests WITHOUT pytest (scripts/run_without_pytest.py)" 240 env SCRATCHLLM_TEST_CUDA=1 \
        "$PY" scripts/run_without_pytest.py tests/device/test_device_cuda.py
fi

REMAIN=$(( 520 - ($(date +%s) - T0) ))          # the whole script within ~9 minutes
[ "$REMAIN" -lt 60 ] && REMAIN=60
[ "$REMAIN" -gt 260 ] && REMAIN=260
step "benchmark: GPT-2 124M training (fp32, fp16, bf16) vs PyTorch eager, KV-cache generation vs HF" "$REMAIN" \
    "$PY" benchmarks/bench_cuda.py --json "$OUT/bench_cuda.json" ${BENCH_ARGS:-}

log ""
log "total $(( $(date +%s) - T0 ))s; results in $R"
