"""Peak memory of training, measured the same way for scratchllm and torch.

Method: each framework runs alone in a fresh subprocess (``python -m
scratchllm.bench.memory``). After its imports, one training step of a toy
model (so thread pools, kernel caches and lazy imports exist: framework
start-up is not counted) and with the batches ready, the child notes its resident set size (VmRSS) and resets the kernel's high-water
mark (``/proc/self/clear_refs``); it then builds the model and AdamW and runs
two training steps (the first creates the optimizer state). ``peak_mem_mb`` is
the high-water mark (VmHWM) minus that baseline: weights, gradients, Adam
moments and the activations of a step at their peak, plus whatever the
framework keeps around. Both sides allocate through the same C allocator, so
the figure is comparable. For scratchllm the child also reports
``step_traced_peak_mb``: tracemalloc's peak (NumPy reports its buffers to it)
over one more step, counting only memory allocated during that step
(activations, gradients, temporaries) — a precise figure for optimisation work.
"""
import argparse
import gc
import json
import os
import subprocess
import sys
from pathlib import Path


def measure_train_memory(framework: str, config: str, threads: int, timeout: float = 600) -> dict:
    """Run the probe for one framework in a subprocess; its JSON as a dict."""
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2])  # the folder holding the scratchllm package
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [sys.executable, "-m", "scratchllm.bench.memory", "--framework", framework,
           "--config", config, "--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"memory probe for {framework} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _probe(framework: str, config: str, threads: int) -> dict:
    from .common import peak_rss_mb, reset_peak_rss, rss_mb
    from .train import CONFIGS, CharBatches, ScratchTrainer, TorchTrainer

    cfg = CONFIGS[config]
    make = (lambda c: TorchTrainer(c, None, threads)) if framework == "torch" else ScratchTrainer
    # one step of a toy model first: thread pools, kernel caches and lazy imports are set up
    # before the baseline, so the figure is the model's training memory, not framework start-up
    toy = make(CONFIGS["tiny"])
    toy.step(*CharBatches(8, 2).next())
    del toy
    gc.collect()
    batches = CharBatches(cfg.block_size, cfg.batch_size, cfg.vocab_size)
    data = [batches.next() for _ in range(3)]
    base = rss_mb()
    if base is None or not reset_peak_rss():
        return {"peak_mem_mb": None}
    trainer = make(cfg)
    for x, y in data[:2]:
        trainer.step(x, y)
    out = {"peak_mem_mb": round(peak_rss_mb() - base, 1)}
    if framework == "scratchllm":
        import tracemalloc
        tracemalloc.start()
        trainer.step(*data[2])
        out["step_traced_peak_mb"] = round(tracemalloc.get_traced_memory()[1] / 2 ** 20, 1)
        tracemalloc.stop()
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="peak memory of training steps (one framework)")
    parser.add_argument("--framework", choices=["scratchllm", "torch"], required=True)
    parser.add_argument("--config", default="small")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    print(json.dumps(_probe(args.framework, args.config, args.threads)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
