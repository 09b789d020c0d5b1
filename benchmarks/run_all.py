"""Run every scratchllm benchmark (a few minutes on a 2-core laptop) and print the figures.

    .venv/bin/python benchmarks/run_all.py              # all, human-readable
    .venv/bin/python benchmarks/run_all.py --json-dir benchmarks/results   # also keep the JSON

Each benchmark runs in its own process (``python -m scratchllm bench ...``) so
one's memory and threads never colour the next. The tokenizer benchmark is run
when its command is present. Figures go into benchmarks/RESULTS.md by hand,
with the machine and the date.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NUMPY_ONLY = {"SCRATCHLLM_KERNELS": "numpy"}  # the compiled kernels off: scratchllm on NumPy alone
BENCHES = [  # (name, bench arguments, extra environment)
    ("train-small", ["train", "--config", "small"], {}),
    ("train-medium", ["train", "--config", "medium"], {}),
    ("train-small-numpy", ["train", "--config", "small"], NUMPY_ONLY),
    ("train-medium-numpy", ["train", "--config", "medium"], NUMPY_ONLY),
    ("generate", ["generate"], {}),
    ("tokenize", ["tokenize"], {}),
]


def has_command(name: str, env: dict) -> bool:
    probe = subprocess.run([sys.executable, "-m", "scratchllm", "bench", name, "--help"],
                           capture_output=True, text=True, env=env)
    return probe.returncode == 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json-dir", type=Path, help="write each benchmark's JSON here")
    parser.add_argument("--only", nargs="*", help="names among " + ", ".join(n for n, _, _ in BENCHES))
    args = parser.parse_args(argv)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    start, failed = time.perf_counter(), []
    for name, cmd, extra in BENCHES:
        if args.only and name not in args.only:
            continue
        if not has_command(cmd[0], env):
            print(f"== {name}: `scratchllm bench {cmd[0]}` is not available, skipped\n")
            continue
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "scratchllm", "bench", *cmd, "--json"],
                              capture_output=True, text=True, env={**env, **extra})
        if proc.returncode != 0:
            failed.append(name)
            print(f"== {name}: FAILED\n{proc.stderr[-3000:]}\n")
            continue
        result = parse_json(proc.stdout)
        if result is None:
            print(f"== {name} ({time.perf_counter() - t0:.0f} s): output is not JSON\n{proc.stdout[-3000:]}\n")
            continue
        if args.json_dir:
            args.json_dir.mkdir(parents=True, exist_ok=True)
            tmp = args.json_dir / f".{name}.json.tmp"
            tmp.write_text(json.dumps(result, indent=1) + "\n")
            os.replace(tmp, args.json_dir / f"{name}.json")
        print(f"== {name} ({time.perf_counter() - t0:.0f} s)")
        print(summary(name, result) + "\n")
    print(f"all benchmarks: {time.perf_counter() - start:.0f} s" + (f", FAILED: {failed}" if failed else ""))
    return 1 if failed else 0


def parse_json(text: str):
    """The JSON object a bench printed: the whole output, or its last line."""
    for candidate in (text, text.strip().splitlines()[-1] if text.strip() else ""):
        try:
            return json.loads(candidate)
        except ValueError:
            continue
    return None


def summary(name: str, r: dict) -> str:
    """The human-readable form, via the bench modules' own formatters where there is one."""
    if name.startswith("train"):
        from scratchllm.bench.train import format_train
        return format_train(r)
    if name == "generate":
        from scratchllm.bench.generate import format_generate
        return format_generate(r)
    return json.dumps(r, indent=1)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    sys.exit(main())
