"""scratchllm on a GPU (CuPy) side by side with PyTorch eager on the same GPU, in one run.

    python benchmarks/bench_cuda.py [--batch 8] [--seq 1024] [--steps 6] [--json out.json]

1. Training, GPT-2 124M shape (12 layers, 12 heads, 768 wide, vocab 50257, context 1024), fp32:
   tokens/s and MFU of forward + backward + clip + AdamW, scratchllm vs torch eager (nanoGPT's
   model from scratchllm.bench.peers.torch_gpt, F.scaled_dot_product_attention, TF32 off), the
   same weights and batches; the first step's losses printed side by side as a check.
   Then both again with float16 autocast + loss scaling (sl.amp / torch.autocast + GradScaler;
   MFU against the fp16 tensor-core peak, --peak-fp16-tflops), and (last, after generation, as
   the first to go when time is short) with bfloat16 autocast, no loss scaling (ours: uint16 bits
   and cuBLAS gemmEx, sl.amp.autocast("bfloat16"); MFU against the same tensor-core peak).
2. Greedy generation, the same shape: new tokens/s of ``model.generate`` on the GPU (the one
   decoder of models/decode.py on CuPy arrays, with its KV cache; also over 4x the tokens, which
   should not slow it down) vs HF transformers' ``generate`` (KV cache) on the GPU, same weights;
   whether the ids agree with HF's and with our CPU decoder's.

MFU = achieved FLOP/s / the GPU's fp32 peak (--peak-tflops; H200/H100 SXM: 67 without tensor
cores), FLOPs per token 6 N + 12 L C T (PaLM's, N the parameters without the position table).
Each part catches its own failure and reports it, so one broken part leaves the others' numbers.
"""
import argparse
import json
import time
import traceback

import numpy as np


def _sync():
    import cupy
    cupy.cuda.get_current_stream().synchronize()


def _flops_per_token(model, cfg):
    n = model.num_parameters() - cfg.block_size * cfg.n_embd            # without wpe
    return 6 * n + 12 * cfg.n_layer * cfg.n_embd * cfg.block_size


def _batches(cfg, batch, steps, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, cfg.vocab_size, (steps, batch, cfg.block_size + 1))
    return [(b[:, :-1], b[:, 1:]) for b in ids]


def bench_scratchllm_train(cfg, batches, warmup, peak, amp=None):
    """amp: None (float32), "float16" (with loss scaling) or "bfloat16" (without)."""
    import cupy
    import scratchllm as sl
    from scratchllm.models import GPT
    from scratchllm.nn.utils import clip_grad_norm_
    sl.manual_seed(0)
    model = GPT(cfg).to("cuda")
    opt = sl.optim.AdamW(model.parameters(), lr=6e-4, betas=(0.9, 0.95), weight_decay=0.1)
    dev = [(sl.Tensor(x, device="cuda"), sl.Tensor(y, device="cuda")) for x, y in batches]
    scaler = sl.amp.GradScaler(enabled=amp == "float16")
    first_loss, times = None, []
    for i, (x, y) in enumerate(dev):
        _sync()
        t0 = time.perf_counter()
        with sl.amp.autocast(amp or "float16", enabled=amp is not None):
            _, loss = model(x, y)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)                                # (amp: one host sync, the overflow check)
        clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad()
        _sync()
        times.append(time.perf_counter() - t0)
        if i == 0:
            first_loss = loss.item()
    out = _summary(times[warmup:], batches[0][0].size, first_loss, loss.item(),
                   _flops_per_token(model, cfg) / peak, cupy.get_default_memory_pool().total_bytes())
    del model, opt, dev
    cupy.get_default_memory_pool().free_all_blocks()
    return out


def _summary(timed, tokens_per_step, first_loss, last_loss, mfu_per_token_s, mem_bytes) -> dict:
    """One side's figures from its timed step times (s); ``mfu_per_token_s``: FLOPs per token / peak."""
    tok = tokens_per_step * len(timed) / sum(timed)
    return {"tokens_per_s": tok, "step_s": sum(timed) / len(timed), "first_loss": first_loss,
            "last_loss": last_loss, "mfu": tok * mfu_per_token_s, "gpu_mem_gb": mem_bytes / 2 ** 30}


def bench_torch_train(cfg, batches, warmup, peak, amp=None):
    import scratchllm as sl
    import torch
    from scratchllm.bench.peers.torch_gpt import build_torch_gpt, load_from_scratchllm
    from scratchllm.models import GPT
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    sl.manual_seed(0)
    ours = GPT(cfg)                                                    # the same initial weights
    peer = build_torch_gpt(cfg)
    load_from_scratchllm(peer, ours.state_dict())
    n_flops = _flops_per_token(ours, cfg)
    del ours
    peer = peer.cuda().train()
    opt = torch.optim.AdamW(peer.parameters(), lr=6e-4, betas=(0.9, 0.95), weight_decay=0.1)
    dev = [(torch.from_numpy(x).cuda(), torch.from_numpy(y).cuda()) for x, y in batches]
    scaler = torch.amp.GradScaler("cuda", enabled=amp == "float16")
    first_loss, times = None, []
    for i, (x, y) in enumerate(dev):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=getattr(torch, amp or "float16"), enabled=amp is not None):
            out = peer(x, y)
        loss = out[1] if isinstance(out, tuple) else out
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(peer.parameters(), 1.0)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        if i == 0:
            first_loss = loss.item()
    res = _summary(times[warmup:], batches[0][0].size, first_loss, loss.item(), n_flops / peak,
                   torch.cuda.max_memory_allocated())
    del peer, opt, dev
    torch.cuda.empty_cache()
    return res


def bench_generate(cfg, prompt_len, new_tokens, tmp):
    import torch
    import scratchllm as sl
    from scratchllm.bench.peers.hf import hf_from_scratchllm
    from scratchllm.models import GPT
    sl.manual_seed(0)
    model = GPT(cfg)
    prompt = np.random.default_rng(3).integers(0, cfg.vocab_size, (1, prompt_len))
    hf = hf_from_scratchllm(model, tmp, threads=8).cuda()
    model.to("cuda")
    res = {}
    model.generate(prompt, max_new_tokens=4, temperature=0.0)          # warm-up (kernels compiled)
    _sync()
    t0 = time.perf_counter()
    ours = model.generate(prompt, max_new_tokens=new_tokens, temperature=0.0)
    _sync()
    res["scratchllm_tokens_per_s"] = new_tokens / (time.perf_counter() - t0)
    # the KV cache: a token costs the same at any length (the old window re-run slowed down with it)
    t0 = time.perf_counter()
    model.generate(prompt, max_new_tokens=4 * new_tokens, temperature=0.0)
    _sync()
    res["scratchllm_tokens_per_s_4x_longer"] = 4 * new_tokens / (time.perf_counter() - t0)
    cpu_ids = GPT(cfg)
    cpu_ids.load_state_dict({k: v.get() for k, v in model.state_dict().items()})
    res["ids_equal_cpu"] = bool(np.array_equal(ours, cpu_ids.generate(prompt, max_new_tokens=new_tokens,
                                                                      temperature=0.0)))
    x = torch.from_numpy(prompt).cuda()
    kw = dict(attention_mask=torch.ones_like(x), do_sample=False, use_cache=True)
    with torch.inference_mode():
        hf.generate(x, max_new_tokens=4, min_new_tokens=4, **kw)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        theirs = hf.generate(x, max_new_tokens=new_tokens, min_new_tokens=new_tokens, **kw)
        torch.cuda.synchronize()
    res["hf_tokens_per_s"] = new_tokens / (time.perf_counter() - t0)
    res["ids_equal"] = bool(np.array_equal(ours, theirs.cpu().numpy()))
    return res


def main(argv=None):
    import tempfile
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=1024)
    p.add_argument("--steps", type=int, default=6, help="timed steps + warm-up steps")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--peak-tflops", type=float, default=67.0, help="the GPU's fp32 (non tensor core) peak")
    p.add_argument("--peak-fp16-tflops", type=float, default=989.0, help="dense fp16 tensor-core peak (H100/H200 SXM)")
    p.add_argument("--prompt-len", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--skip", default="", help="comma list of parts to skip: ours,torch,ours_fp16,torch_fp16,generate,"
                                              "ours_bf16,torch_bf16")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    from scratchllm.models import GPTConfig
    cfg = GPTConfig(vocab_size=50257, block_size=a.seq, n_layer=a.layers, n_head=12, n_embd=768)
    batches = _batches(cfg, a.batch, a.steps)
    peak = a.peak_tflops * 1e12
    skip = set(filter(None, a.skip.split(",")))
    results = {"config": {"batch": a.batch, "seq": a.seq, "layers": a.layers, "steps": a.steps,
                          "warmup": a.warmup, "peak_tflops": a.peak_tflops}}
    parts = [("ours", lambda: bench_scratchllm_train(cfg, batches, a.warmup, peak)),
             ("torch", lambda: bench_torch_train(cfg, batches, a.warmup, peak)),
             ("ours_fp16", lambda: bench_scratchllm_train(cfg, batches, a.warmup, a.peak_fp16_tflops * 1e12, "float16")),
             ("torch_fp16", lambda: bench_torch_train(cfg, batches, a.warmup, a.peak_fp16_tflops * 1e12, "float16")),
             ("generate", lambda: bench_generate(GPTConfig(vocab_size=50257, block_size=1024, n_layer=a.layers,
                                                           n_head=12, n_embd=768), a.prompt_len, a.new_tokens,
                                                 tempfile.mkdtemp())),
             ("ours_bf16", lambda: bench_scratchllm_train(cfg, batches, a.warmup, a.peak_fp16_tflops * 1e12, "bfloat16")),
             ("torch_bf16", lambda: bench_torch_train(cfg, batches, a.warmup, a.peak_fp16_tflops * 1e12, "bfloat16"))]
    for name, run in parts:
        if name in skip:
            continue
        t0 = time.perf_counter()
        try:
            results[name] = run()
        except Exception as e:                                             # noqa: BLE001 (report, go on)
            results[name] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-3000:]}
        results[name]["wall_s"] = round(time.perf_counter() - t0, 1)
        print(f"[{name}] {json.dumps({k: v for k, v in results[name].items() if k != 'traceback'})}", flush=True)
        if "traceback" in results[name]:
            print(results[name]["traceback"], flush=True)
    o, t = results.get("ours", {}), results.get("torch", {})
    print("\n== GPT-2 124M shape, fp32, batch {batch} x {seq} ==".format(**results["config"]))
    for label, r in (("scratchllm (CuPy)", o), ("PyTorch eager", t),
                     ("scratchllm fp16amp", results.get("ours_fp16", {})), ("PyTorch fp16 amp", results.get("torch_fp16", {})),
                     ("scratchllm bf16amp", results.get("ours_bf16", {})), ("PyTorch bf16 amp", results.get("torch_bf16", {}))):
        if "tokens_per_s" in r:
            print(f"{label:18s} {r['tokens_per_s']:10.0f} tok/s  MFU {100 * r['mfu']:5.1f}%  "
                  f"step {r['step_s'] * 1000:7.1f} ms  first loss {r['first_loss']:.5f}  mem {r['gpu_mem_gb']:.1f} GB")
    if "tokens_per_s" in o and "tokens_per_s" in t:
        print(f"ratio scratchllm / torch: {o['tokens_per_s'] / t['tokens_per_s']:.2f}x (goal >= 0.5x); "
              f"first-step loss difference {abs(o['first_loss'] - t['first_loss']):.2e}")
    g = results.get("generate", {})
    if "hf_tokens_per_s" in g:
        print(f"greedy generation (KV cache): scratchllm {g['scratchllm_tokens_per_s']:.1f} tok/s "
              f"({g['scratchllm_tokens_per_s_4x_longer']:.1f} over 4x the tokens), HF {g['hf_tokens_per_s']:.1f} "
              f"tok/s (ratio {g['scratchllm_tokens_per_s'] / g['hf_tokens_per_s']:.2f}x), ids equal: HF "
              f"{g['ids_equal']}, our CPU decoder {g['ids_equal_cpu']}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2, default=float)
    return 0 if all("error" not in results.get(n, {}) for n, _ in parts if n not in skip) else 1


if __name__ == "__main__":
    raise SystemExit(main())
