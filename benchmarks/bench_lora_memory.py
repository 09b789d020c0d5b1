"""Peak memory of LoRA vs full fine-tuning on the GPT-2 124M shape (random weights).

Each mode runs in its own fresh subprocess (so one's peak does not hide the other's): build
GPT-2 small (124M parameters, float32), then ``--steps`` AdamW steps on one batch of
``--batch`` x ``--tokens`` random ids. Full fine-tuning keeps a gradient and two Adam moments
for every weight (4x the weights); LoRA (r=8 on c_attn, c_proj, c_fc) keeps them for the
adapters only. Reported: the peak resident set size (ru_maxrss) of each subprocess, the RSS
after building the model, and the ratio LoRA / full (the issue asks < 60%).

    .venv/bin/python benchmarks/bench_lora_memory.py [--steps 2] [--tokens 128] [--json]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(mode: str, steps: int, batch: int, tokens: int) -> dict:
    import numpy as np

    from scratchllm.autograd.random import Generator
    from scratchllm.models import GPTConfig, build_model
    from scratchllm.optim import AdamW
    model = build_model(GPTConfig.from_preset("gpt2"), generator=Generator(0))
    built = _rss_mb()
    if mode == "lora":
        from scratchllm.finetune.lora import LoRAConfig, apply_lora, lora_parameters
        apply_lora(model, LoRAConfig(r=8, alpha=16, targets=("c_attn", "c_proj", "c_fc")))
        params = lora_parameters(model)
    else:
        params = list(model.parameters())
    opt = AdamW(params, lr=1e-4)
    rng = np.random.default_rng(0)
    x = rng.integers(0, model.vocab_size, (batch, tokens))
    y = rng.integers(0, model.vocab_size, (batch, tokens))
    t0, losses = time.perf_counter(), []
    for _ in range(steps):
        _, loss = model(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(float(loss.item()))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024          # KiB -> MiB
    return {"mode": mode, "peak_rss_mb": round(peak, 1), "rss_after_build_mb": round(built, 1),
            "trainable_params": int(sum(p.data.size for p in params)),
            "total_params": int(sum(p.data.size for p in model.parameters())),
            "seconds_per_step": round((time.perf_counter() - t0) / steps, 2), "losses": losses}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", choices=("full", "lora"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.steps, args.batch, args.tokens)))
        return 0
    runs = {}
    for mode in ("full", "lora"):
        out = subprocess.run([sys.executable, __file__, "--child", mode, "--steps", str(args.steps),
                              "--batch", str(args.batch), "--tokens", str(args.tokens)],
                             capture_output=True, text=True, check=True)
        runs[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    ratio = runs["lora"]["peak_rss_mb"] / runs["full"]["peak_rss_mb"]
    result = {"benchmark": "lora_memory", "shape": "gpt2 (124M)", "batch": args.batch,
              "tokens": args.tokens, "steps": args.steps, "runs": runs,
              "lora_over_full_peak": round(ratio, 3)}
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        for mode, r in runs.items():
            print(f"{mode:5s} peak RSS {r['peak_rss_mb']:8.1f} MiB (after build {r['rss_after_build_mb']:.1f}), "
                  f"{r['trainable_params']:,} of {r['total_params']:,} parameters trained, "
                  f"{r['seconds_per_step']} s/step")
        print(f"LoRA / full peak RSS: {ratio:.1%}")
    return 0 if ratio < 0.6 else 1


if __name__ == "__main__":
    sys.exit(main())
