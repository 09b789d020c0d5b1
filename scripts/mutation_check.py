"""Plant known bugs in a copy of the code and check that the tests catch each one.

    python scripts/mutation_check.py               # every mutation (a few minutes on 2 cores)
    python scripts/mutation_check.py --list        # the list, nothing run
    python scripts/mutation_check.py --only bf16-astype,bpe-count-plus-one
    python scripts/mutation_check.py --from /path/to/tree   # src/ and tests/ of another tree

For each mutation: src/, tests/ and pyproject.toml are copied to a temporary folder, one exact
source string (the anchor) is replaced, and the mutation's test files run there with PYTHONPATH
pointing at the copy. Exit status 1 (tests failed) = killed; 0 = survived. A mutation whose anchor
is not in the file (someone refactored it) is reported "anchor not found", not guessed. Before the
mutations, the same test files run once on the unmutated copy: a mutation whose tests already fail
there proves nothing and is reported "baseline fails".

Test-only: nothing here is imported by the package. Results are recorded in notes/MUTATION.md.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NUMPY = {"SCRATCHLLM_KERNELS": "numpy"}    # the NumPy code path (the numba kernels replace some ops in float32)


@dataclass
class Mutation:
    name: str
    file: str            # relative to src/scratchllm
    anchor: str          # exact text, must occur exactly once
    replacement: str
    tests: list          # test files (or node ids) relative to the tree root
    env: dict = field(default_factory=dict)
    why: str = ""


M = Mutation
MUTATIONS = [
    # ---- fused ops
    M("softmax-backward-mean", "autograd/ops/reduce.py",
      "return y * (g - (g * y).sum(axis=dim, keepdims=True))",
      "return y * (g - (g * y).mean(axis=dim, keepdims=True))",
      ["tests/autograd/test_ops.py", "tests/nn/test_functional.py", "tests/properties/test_prop_values.py"],
      NUMPY, "softmax's Jacobian-vector product with a mean instead of a sum"),
    M("log-softmax-backward-mean", "autograd/ops/reduce.py",
      "return (g - xp.exp(y) * g.sum(axis=dim, keepdims=True),)",
      "return (g - xp.exp(y) * g.mean(axis=dim, keepdims=True),)",
      ["tests/autograd/test_ops.py", "tests/nn/test_functional.py", "tests/properties/test_prop_values.py"],
      NUMPY, "log_softmax backward with a mean"),
    M("cross-entropy-smoothing-backward", "nn/functional/loss.py",
      "dx[rows, tc] -= (1.0 - eps) * coef",
      "dx[rows, tc] -= coef",
      ["tests/nn/test_loss.py", "tests/properties/test_prop_values.py"],
      {}, "label smoothing forgotten in the target's gradient"),
    M("layer-norm-backward-no-centering", "nn/functional/normalization.py",
      "        dx -= row_sums(dx, 1.0 / dx.shape[1])[:, None]",
      "        pass",
      ["tests/nn/test_functional.py", "tests/nn/test_layers.py", "tests/properties/test_prop_values.py"],
      NUMPY, "LayerNorm's dx without the mean(dxhat) term"),
    M("rms-norm-forward-centred", "nn/functional/normalization.py",
      "    else:\n        xhat[...] = x\n",
      "    else:\n        xhat[...] = x - x.mean(axis=1, keepdims=True)\n",
      ["tests/nn/test_functional.py", "tests/nn/test_layers.py", "tests/properties/test_prop_values.py"],
      NUMPY, "RMSNorm subtracting the mean (a LayerNorm without bias)"),
    M("gelu-tanh-forward-constant", "nn/functional/activations.py",
      "    s *= -2 * _K * _C\n",
      "    s *= -2 * _K\n",
      ["tests/nn/test_functional.py", "tests/properties/test_prop_values.py"],
      NUMPY, "tanh-GELU's cubic term without sqrt(2/pi)"),
    M("attention-backward-dq-unscaled", "nn/functional/attention.py",
      "            dq *= scale",
      "            dq *= 1.0",
      ["tests/nn/test_attention.py"],
      {}, "attention's dq missing the 1/sqrt(d) factor"),
    # ---- optimizers (the NumPy update; the numba kernel has its own bits-equal test)
    M("adam-bias-correction-2", "optim/adam.py",
      "bias_correction2_sqrt = (1 - beta2 ** t) ** 0.5",
      "bias_correction2_sqrt = (1 - beta2 ** t)",
      ["tests/optim/test_optimizers.py"],
      NUMPY, "Adam's second-moment bias correction without the square root"),
    M("adamw-decay-without-lr", "optim/adam.py",
      "                param *= 1 - lr * weight_decay",
      "                param *= 1 - weight_decay",
      ["tests/optim/test_optimizers.py"],
      NUMPY, "AdamW's decoupled decay not scaled by the learning rate"),
    M("sgd-dampening-ignored", "optim/sgd.py",
      "buf += xp.multiply(grad, 1 - dampening, out=self._tmp(grad, 2))",
      "buf += grad",
      ["tests/optim/test_optimizers.py"],
      {}, "SGD momentum ignoring dampening"),
    # ---- readers
    M("bf16-astype", "io/safetensors_file.py",
      "    if dtype == \"BF16\":\n        return bf16_to_f32(arr)",
      "    if dtype == \"BF16\":\n        return arr.astype(xp.float32)",
      ["tests/models/test_hf_half_precision.py"],
      {}, "issue 21: bf16 read as integers (the survivor)"),
    M("f16-read-as-bf16", "io/safetensors_file.py",
      '    if dtype == "BF16":\n',
      '    if dtype in ("BF16", "F16"):\n',
      ["tests/models/test_hf_half_precision.py"],
      {}, "issue 21: F16 tensors put through the bf16 conversion"),
    M("control-harmless-edit", "io/safetensors_file.py",
      '"F16": "float16",',
      '"F16": "float" + "16",',
      ["tests/models/test_hf_half_precision.py"],
      {}, "control: the same dtype spelled otherwise; must SURVIVE (the harness does not kill everything)"),
    M("pth-storage-offset-ignored", "io/pth.py",
      "as_strided(raw[t.offset:],",
      "as_strided(raw[0:],",
      ["tests/models/test_pth_views.py", "tests/models/test_meta_llama2c.py"],
      {}, "a .pth tensor's storage offset ignored"),
    M("llama2c-wk-wv-swapped", "io/llama2c.py",
      '("attention.wk.weight", L, (KV * hd, dim)), ("attention.wv.weight", L, (KV * hd, dim))',
      '("attention.wv.weight", L, (KV * hd, dim)), ("attention.wk.weight", L, (KV * hd, dim))',
      ["tests/models/test_stories260k.py", "tests/models/test_meta_llama2c.py"],
      {}, "llama2.c's wk and wv read in each other's place (same shapes: no error)"),
    M("rope-scaling-mid-band-swapped", "nn/functional/rope.py",
      "(1 - smooth) * scaled / factor + smooth * scaled",
      "smooth * scaled / factor + (1 - smooth) * scaled",
      ["tests/models/test_rope_scaling_midband.py"],
      {}, "issue 21: Llama 3.1's mid-band blend weights swapped"),
    M("generate-cli-no-bos", "models/cli.py",
      "ids = encode_prompt(tok, prompt, add_bos)",
      "ids = encode_prompt(tok, prompt, False)",
      ["tests/models/test_stories260k.py"],
      {}, "issue 21: the generate command's Llama prompt without BOS (run.c adds it): other greedy text"),
    # ---- tokenizer trainer
    M("bpe-count-plus-one", "tokenizers/train.py",
      "freqs = list(chunk_counts.values())",
      "freqs = [c + 1 for c in chunk_counts.values()]",
      ["tests/tokenizers/test_tok_train_oracle.py"],
      {}, "issue 21: every chunk counted once more than it occurs (the survivor)"),
    M("bpe-merge-overlapping", "tokenizers/train.py",
      "            out.append(new_id)\n            i += 2",
      "            out.append(new_id)\n            i += 1",
      ["tests/tokenizers/test_tok_train_oracle.py", "tests/tokenizers/test_tok_train.py"],
      {}, "a merge that lets the pair's right half start the next pair too"),
    # ---- training: resume, bench
    M("resume-forgets-best", "train/trainer.py",
      'self.step, self.best_val = int(state["step"]), state["best_val_loss"]',
      'self.step, self.best_val = int(state["step"]), None',
      ["tests/train/test_resume_keeps_best.py"],
      {}, "issue 21: best_val_loss forgotten on --resume (the survivor)"),
    M("bench-adam-bias-correction-1", "optim/adam.py",
      "step_size = lr / (1 - beta1 ** t)",
      "step_size = lr / (1 - beta1 ** (t + 1))",
      ["tests/bench/test_bench_train_losses.py"],
      NUMPY, "issue 21: an AdamW slip only a later step's loss shows (the bench's last loss)"),
]
CONTROLS = {"control-harmless-edit"}    # must survive


def copy_tree(src_root: Path, dst: Path) -> None:
    shutil.copytree(src_root / "src", dst / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copytree(src_root / "tests", dst / "tests",
                    ignore=shutil.ignore_patterns("__pycache__", ".hypothesis"))
    shutil.copy2(src_root / "pyproject.toml", dst / "pyproject.toml")


def run_tests(tree: Path, tests: list, env_extra: dict, timeout: int) -> tuple:
    """-> (return code, seconds, last lines of output)."""
    env = dict(os.environ, PYTHONPATH=str(tree / "src"), OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1", **env_extra)
    env.pop("SCRATCHLLM_NO_SKIP", None)
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-n", "0", *tests]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout)
        rc, out = p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired:
        rc, out = 124, "timed out"
    lines = [ln for ln in out.splitlines() if ln.startswith(("FAILED", "ERROR"))] or out.splitlines()[-3:]
    return rc, time.perf_counter() - t0, lines[:2]


def check_imports_copy(tree: Path) -> None:
    """The copy, not the editable install, must be what the tests import."""
    env = dict(os.environ, PYTHONPATH=str(tree / "src"))
    where = subprocess.run([sys.executable, "-c", "import scratchllm; print(scratchllm.__file__)"],
                           cwd=tree, env=env, capture_output=True, text=True).stdout.strip()
    if not where.startswith(str(tree)):
        sys.exit(f"the copy is not the scratchllm imported ({where!r}); aborting")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--list", action="store_true", help="print the mutations and exit")
    ap.add_argument("--only", default="", help="comma-separated mutation names")
    ap.add_argument("--from", dest="source", default=str(ROOT), help="tree whose src/ and tests/ are copied")
    ap.add_argument("--timeout", type=int, default=600, help="seconds per test run")
    args = ap.parse_args(argv)
    chosen = [m for m in MUTATIONS if not args.only or m.name in args.only.split(",")]
    if args.list:
        for m in chosen:
            print(f"{m.name:34} {m.file:34} {m.why}")
        return 0
    source = Path(args.source).resolve()
    results = []
    with tempfile.TemporaryDirectory(prefix="scratchllm-mutants-") as tmp:
        tree = Path(tmp) / "tree"
        copy_tree(source, tree)
        check_imports_copy(tree)
        baseline = {}
        for env_key in sorted({tuple(sorted(m.env.items())) for m in chosen}):
            files = sorted({t for m in chosen if tuple(sorted(m.env.items())) == env_key for t in m.tests})
            for f in files:
                rc, dt, lines = run_tests(tree, [f], dict(env_key), args.timeout)
                baseline[(env_key, f)] = rc == 0
                print(f"baseline {f} {dict(env_key) or ''}: {'ok' if rc == 0 else 'FAILS ' + ' | '.join(lines)} "
                      f"({dt:.0f} s)", flush=True)
        for m in chosen:
            path = tree / "src" / "scratchllm" / m.file
            if not path.is_file() or path.read_text(encoding="utf-8").count(m.anchor) != 1:
                n = path.read_text(encoding="utf-8").count(m.anchor) if path.is_file() else 0
                results.append((m, "anchor not found" if n == 0 else f"anchor found {n} times", 0.0, []))
                print(f"{m.name}: anchor not found in src/scratchllm/{m.file}" if n == 0 else
                      f"{m.name}: anchor occurs {n} times in src/scratchllm/{m.file}", flush=True)
                continue
            key = tuple(sorted(m.env.items()))
            if not all(baseline[(key, t)] for t in m.tests):
                results.append((m, "baseline fails", 0.0, []))
                print(f"{m.name}: not run (its tests fail without the mutation)", flush=True)
                continue
            original = path.read_text(encoding="utf-8")
            path.write_text(original.replace(m.anchor, m.replacement), encoding="utf-8")
            try:
                rc, dt, lines = run_tests(tree, m.tests, m.env, args.timeout)
            finally:
                path.write_text(original, encoding="utf-8")
            status = "survived" if rc == 0 else ("error" if rc in (5, 124) else "killed")
            results.append((m, status, dt, lines))
            print(f"{m.name}: {status} ({dt:.0f} s) {' | '.join(lines) if status == 'killed' else ''}", flush=True)
    real = [r for r in results if r[0].name not in CONTROLS]
    killed = sum(r[1] == "killed" for r in real)
    controls_ok = all(r[1] == "survived" for r in results if r[0].name in CONTROLS)
    print(f"\nkilled {killed} of {len(real)} mutations"
          + ("" if controls_ok else "; a control mutation did not survive (a harmless edit must pass)"))
    return 0 if killed == len(real) and controls_ok else 1


if __name__ == "__main__":
    sys.exit(main())
