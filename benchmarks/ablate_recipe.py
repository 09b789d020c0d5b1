"""Ablation of the speedrun recipe on the main job: each option added to the old recipe, and each
option taken out of the whole recipe.

    .venv/bin/python benchmarks/ablate_recipe.py                     # smoke: tiny shapes, seconds per run
    .venv/bin/python benchmarks/ablate_recipe.py --full --steps 600 --seeds 3 --json out.json
    .venv/bin/python benchmarks/ablate_recipe.py --full --minutes 15 --only old all old+muon all-muon

Variants:
- ``old``: ``--preset shakespeare-char`` (AdamW, cosine, GELU, learned positions, tied head).
- ``old+X``: the old recipe with option X of the speedrun recipe switched on.
- ``all``: ``--preset shakespeare-char-speedrun`` (every option on).
- ``all-X``: the speedrun recipe with option X switched back to the old recipe's value.

Every run is ``python -m scratchllm train`` in a fresh process. Two ways to make runs comparable:
``--steps N`` gives every variant the same N steps (``max_steps=N``, one evaluation at the end; the
learning-rate schedules scale to N, so each variant sees its whole schedule); the validation loss
is then a function of the seed alone, not of the machine's load, and the tokens/s column (median
of the run's log lines) says what each option costs per step. ``--minutes M`` instead gives every
variant the same wall budget (``max_minutes=M``, the preset's step count as an upper bound): the
issue's "val at 15 minutes", but a busy machine moves it. ``old`` and ``all`` run with ``--seeds``
seeds (1337, 1338, ...) so the table shows the seed-to-seed spread; the single-option variants run
with the first seed unless ``--all-seeds``. Runs are interleaved (each seed round runs every
variant, in an order rotated by the round), and the table quotes medians over seeds.
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

# option: (its value in the speedrun recipe, its value in the old recipe)
OPTIONS = {
    "muon": (["optimizer=muon"], ["optimizer=adamw"]),
    "wsd": (["schedule=wsd"], ["schedule=cosine"]),
    "relu2": (["mlp_act=relu2"], ["mlp_act=gelu"]),
    "qk_norm": (["qk_norm=true"], ["qk_norm=false"]),
    "zero_init": (["zero_init_proj=true"], ["zero_init_proj=false"]),
    "untied": (["tie_weights=false"], ["tie_weights=true"]),
    "softcap": (["logit_softcap=15"], ["logit_softcap=0"]),
    "rope": (["positional=rope"], ["positional=learned"]),
    "value_embeds": (["value_embeds=true"], ["value_embeds=false"]),
}
OLD, NEW = "shakespeare-char", "shakespeare-char-speedrun"


def variants() -> dict:
    """name -> (preset, override keys)."""
    v = {"old": (OLD, []), "all": (NEW, [])}
    for name, (on, off) in OPTIONS.items():
        v[f"old+{name}"] = (OLD, on)
    for name, (on, off) in OPTIONS.items():
        v[f"all-{name}"] = (NEW, off)
    v["old+muon+rope"] = (OLD, OPTIONS["muon"][0] + OPTIONS["rope"][0])    # the two that carry the gain
    return v


VARIANTS = variants()
TINY = ["n_layer=1", "n_head=2", "n_embd=32", "block_size=32", "batch_size=8", "warmup_steps=3",
        "eval_batches=2"]


def run(variant: str, seed: int, extra: list, folder: Path) -> dict:
    preset, keys = VARIANTS[variant]
    out = folder / f"{variant}-{seed}-{time.time_ns()}"
    cmd = [sys.executable, "-m", "scratchllm", "train", "--preset", preset, "--out", str(out),
           "--no-progress", f"seed={seed}", "sample_tokens=0", *extra, *keys]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{variant}: training failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [r["val_loss"] for r in rows if "val_loss" in r]
    speeds = [r["tokens_per_s"] for r in rows if "tokens_per_s" in r]
    return {"variant": variant, "seed": seed, "wall_s": round(wall, 1), "steps": rows[-1]["step"] if rows else 0,
            "last_val_loss": evals[-1] if evals else None, "best_val_loss": min(evals) if evals else None,
            "tokens_per_s": statistics.median(speeds) if speeds else None}


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def schedule(names: list, seeds: int, all_seeds: bool) -> list:
    """(variant, seed) in run order: round r runs its variants rotated by r."""
    order = []
    for r in range(seeds):
        mine = [n for n in names if r == 0 or all_seeds or n in ("old", "all")]
        k = r % len(mine)
        order += [(n, 1337 + r) for n in mine[k:] + mine[:k]]
    return order


def table(names: list, results: list) -> list:
    rows = []
    for name in names:
        mine = [x for x in results if x["variant"] == name]
        rows.append({"variant": name, "runs": len(mine),
                     "val": median([x["last_val_loss"] for x in mine]),
                     "val_min": min(x["last_val_loss"] for x in mine), "val_max": max(x["last_val_loss"] for x in mine),
                     "steps": median([x["steps"] for x in mine]),
                     "tokens_per_s": median([x["tokens_per_s"] for x in mine])})
    ref = {r["variant"]: r for r in rows}
    for r in rows:      # the effect: old+X against old, all-X against all
        base = ref.get(r["variant"][:3]) if r["variant"][3:4] in ("+", "-") else None
        r["delta"] = None if base is None or base["val"] is None else r["val"] - base["val"]
        r["speed"] = None if base is None or not base["tokens_per_s"] else r["tokens_per_s"] / base["tokens_per_s"]
    return rows


def print_table(rows: list, header: str) -> None:
    f = lambda v, d=4: "-" if v is None else f"{v:.{d}f}"       # noqa: E731
    sign = lambda v: "-" if v is None else f"{v:+.4f}"          # noqa: E731
    print(f"| variant | val loss (median) | min - max | vs reference | steps | tokens/s | speed vs reference | runs |"
          f"   {header}")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['variant']} | {f(r['val'])} | {f(r['val_min'])} - {f(r['val_max'])} | "
              f"{sign(r['delta'])} | "
              f"{r['steps']} | {f(r['tokens_per_s'], 0)} | {f(r['speed'], 2)} | {r['runs']} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--full", action="store_true", help="the presets' shapes (default: tiny smoke shapes)")
    ap.add_argument("--steps", type=int, help="every variant runs this many steps (one eval at the end)")
    ap.add_argument("--minutes", type=float, help="every variant gets this wall budget instead")
    ap.add_argument("--seeds", type=int, default=1, help="seed rounds (old and all; every variant with --all-seeds)")
    ap.add_argument("--all-seeds", action="store_true")
    ap.add_argument("--only", nargs="*", choices=list(VARIANTS), help="these variants only")
    ap.add_argument("--json", help="write every run and the table to this file")
    ap.add_argument("overrides", nargs="*", help="key=value for every run")
    args = ap.parse_args(argv)
    if args.steps and args.minutes:
        ap.error("give --steps or --minutes, not both")
    steps = args.steps or (None if args.minutes else (600 if args.full else 30))
    budget = [f"max_steps={steps}", f"eval_interval={steps}"] if steps else [f"max_minutes={args.minutes}"]
    extra = ([] if args.full else TINY) + budget + list(args.overrides)
    names = args.only or list(VARIANTS)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, seed in schedule(names, args.seeds, args.all_seeds):
            res = run(name, seed, extra, Path(tmp))
            print(json.dumps(res), file=sys.stderr, flush=True)
            results.append(res)
    rows = table(names, results)
    print_table(rows, f"({f'{steps} steps' if steps else f'{args.minutes} min'} each, "
                      f"{'preset shapes' if args.full else 'TINY smoke shapes'})")
    if args.json:
        Path(args.json).write_text(json.dumps({"steps": steps, "minutes": args.minutes, "full": args.full,
                                               "extra": extra, "runs": results, "table": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
