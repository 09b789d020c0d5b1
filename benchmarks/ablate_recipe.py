"""Ablation of the speedrun recipe on the main job: each option alone, and all together.

    .venv/bin/python benchmarks/ablate_recipe.py                         # smoke: tiny shapes, seconds per run
    .venv/bin/python benchmarks/ablate_recipe.py --full --minutes 15 --repeats 3 --json out.json
    .venv/bin/python benchmarks/ablate_recipe.py --full --only baseline muon all

Every run is ``python -m scratchllm train --preset shakespeare-char`` in a fresh process with
``max_minutes`` set (the same wall budget per variant; the wall time includes start-up) plus the
variant's keys. Runs are interleaved (repeat r runs every variant, in an order rotated by r)
so load changes on a shared machine hit each variant alike; the table quotes medians over repeats
of the last validation loss, the best one, and the steps reached.

``--full`` uses the preset's shapes; without it the shapes are tiny (a smoke test of the script
itself, not a measurement). A full ablation takes ``len(variants) x repeats x minutes``: run it on
a quiet machine, then copy the table into benchmarks/RESULTS.md with the machine and the date.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

VARIANTS = {
    "baseline": [],
    "muon": ["optimizer=muon"],
    "relu2": ["mlp_act=relu2"],
    "qk_norm": ["qk_norm=true"],
    "zero_init": ["zero_init_proj=true"],
    "untied": ["tie_weights=false"],
    "softcap": ["logit_softcap=15"],
    "rope": ["positional=rope"],
    "value_embeds": ["value_embeds=true"],
    "wsd": ["schedule=wsd"],
    "all": ["optimizer=muon", "mlp_act=relu2", "qk_norm=true", "zero_init_proj=true", "tie_weights=false",
            "logit_softcap=15", "positional=rope", "value_embeds=true", "schedule=wsd"],
}
TINY = ["n_layer=1", "n_head=2", "n_embd=32", "block_size=32", "batch_size=8", "max_steps=30", "warmup_steps=3",
        "eval_interval=10", "eval_batches=2", "sample_tokens=10"]


def run(variant: str, minutes: float, extra: list, folder: Path) -> dict:
    out = folder / f"{variant}-{time.time_ns()}"
    cmd = [sys.executable, "-m", "scratchllm", "train", "--preset", "shakespeare-char", "--out", str(out),
           "--no-progress", f"max_minutes={minutes}", *extra, *VARIANTS[variant]]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{variant}: training failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [r["val_loss"] for r in rows if "val_loss" in r]
    return {"variant": variant, "wall_s": round(wall, 1), "steps": rows[-1]["step"] if rows else 0,
            "last_val_loss": evals[-1] if evals else None, "best_val_loss": min(evals) if evals else None}


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--full", action="store_true", help="the preset's shapes (default: tiny smoke shapes)")
    ap.add_argument("--minutes", type=float, default=None, help="wall budget per run (default 15 full, 0.3 tiny)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--only", nargs="*", choices=list(VARIANTS), help="these variants only")
    ap.add_argument("--json", help="write every run and the medians to this file")
    ap.add_argument("overrides", nargs="*", help="key=value for every run (e.g. max_steps=2500)")
    args = ap.parse_args(argv)
    minutes = args.minutes if args.minutes is not None else (15.0 if args.full else 0.3)
    extra = ([] if args.full else TINY) + list(args.overrides)
    names = args.only or list(VARIANTS)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            order = names[r % len(names):] + names[:r % len(names)]     # rotate: interleaved repeats
            for name in order:
                res = run(name, minutes, extra, Path(tmp))
                print(json.dumps(res), file=sys.stderr)
                results.append(res)
    table = []
    for name in names:
        mine = [x for x in results if x["variant"] == name]
        table.append({"variant": name, "median_last_val": median([x["last_val_loss"] for x in mine]),
                      "median_best_val": median([x["best_val_loss"] for x in mine]),
                      "median_steps": median([x["steps"] for x in mine]), "runs": len(mine)})
    print(f"| variant | last val (median) | best val (median) | steps | runs |   ({minutes} min each, "
          f"{'preset shapes' if args.full else 'TINY smoke shapes'})")
    print("|---|---|---|---|---|")
    for t in table:
        fmt = lambda v: "-" if v is None else f"{v:.4f}"      # noqa: E731
        print(f"| {t['variant']} | {fmt(t['median_last_val'])} | {fmt(t['median_best_val'])} | "
              f"{t['median_steps']} | {t['runs']} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"minutes": minutes, "full": args.full, "extra": extra,
                                               "runs": results, "table": table}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
