"""The main job, timed: wall time and best validation loss of a training preset.

    .venv/bin/python benchmarks/bench_train_preset.py                       # shakespeare-char
    .venv/bin/python benchmarks/bench_train_preset.py --preset llama-tiny --threads 2 --json
    .venv/bin/python benchmarks/bench_train_preset.py max_steps=3000        # try another config

Runs ``python -m scratchllm train --preset NAME --out DIR`` in a fresh process, exactly as
``make demo`` does (so the wall time includes start-up, tokenizing and the final sample),
then reads the run's metrics.jsonl: the best validation loss, and the first time (and step)
the validation loss reached the target (1.60 nats/char for shakespeare-char, the issue's
bar: within 15 minutes on 2 CPU cores). ``--threads`` caps the BLAS threads (and, with
``taskset`` available, pins the run to that many cores) to imitate a smaller machine.
Figures go into benchmarks/RESULTS.md by hand, with the machine and the date.
"""
import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


def run_preset(preset: str, out: Path, overrides, threads: int | None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [sys.executable, "-m", "scratchllm", "train", "--preset", preset, "--out", str(out), "--no-progress",
           *overrides]
    if threads:
        env.update({v: str(threads) for v in THREAD_VARS})
        if shutil.which("taskset") and hasattr(os, "sched_getaffinity"):
            cores = sorted(os.sched_getaffinity(0))[:threads]
            cmd = ["taskset", "-c", ",".join(map(str, cores)), *cmd]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"training failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {"wall_s": wall, "rows": rows, "stdout": proc.stdout}


def summarise(preset: str, target: float, run: dict, config: dict) -> dict:
    rows = run["rows"]
    evals = [r for r in rows if "val_loss" in r]
    best = min(evals, key=lambda r: r["val_loss"]) if evals else None
    hit = next((r for r in evals if r["val_loss"] <= target), None)
    train_rows = [r for r in rows if r.get("tokens_per_s")]
    sample = run["stdout"].split("--- sample", 1)[-1].split("\n", 1)[-1].rsplit("\n---", 1)[0] \
        if "--- sample" in run["stdout"] else ""
    return {
        "preset": preset, "wall_s": round(run["wall_s"], 1), "steps": rows[-1]["step"] if rows else 0,
        "best_val_loss": best and best["val_loss"], "best_step": best and best["step"],
        "target_val_loss": target, "target_reached_step": hit and hit["step"],
        "target_reached_elapsed_s": hit and hit["elapsed_s"],
        "tokens_per_s_median": (sorted(r["tokens_per_s"] for r in train_rows)[len(train_rows) // 2]
                                if train_rows else None),
        "config": {k: config[k] for k in ("arch", "n_layer", "n_head", "n_embd", "block_size", "batch_size",
                                          "max_steps", "max_minutes", "lr") if k in config},
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "sample": sample[:300],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="shakespeare-char")
    parser.add_argument("--target", type=float, default=1.60, help="validation loss to reach (default 1.60)")
    parser.add_argument("--threads", type=int, default=None, help="cap BLAS threads / cores (e.g. 2)")
    parser.add_argument("--out", type=Path, default=None, help="keep the run here (default: a temporary folder)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "run"
        run = run_preset(args.preset, out, args.overrides, args.threads)
        config = json.loads((out / "train_config.json").read_text())
        result = summarise(args.preset, args.target, run, config)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"preset {result['preset']} ({result['config']}) on {result['machine']}")
    print(f"  wall time {result['wall_s']:.0f} s for {result['steps']} steps, "
          f"median {result['tokens_per_s_median']} tokens/s")
    print(f"  best val loss {result['best_val_loss']} at step {result['best_step']}")
    if result["target_reached_step"] is not None:
        print(f"  val loss <= {args.target} first at step {result['target_reached_step']} "
              f"after {result['target_reached_elapsed_s']:.0f} s")
    else:
        print(f"  val loss never reached {args.target}")
    print("  sample:\n" + "\n".join("    " + line for line in result["sample"].splitlines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
