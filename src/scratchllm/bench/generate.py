"""``scratchllm bench generate``: greedy KV-cache generation vs HF transformers.

Batch 1, a 16-token random prompt, 200 new tokens, random weights (seeded), for
a GPT-2 shape (6 layers, 6 heads, 384 wide, vocab 50,257) and a Llama shape
of the same size (vocab 32,000, grouped-query attention). HF gets the same
weights through our HF export and runs ``generate(do_sample=False,
max_new_tokens=200)``; the benchmark checks both produce the same ids.

``tokens_per_s`` = new tokens / wall time of the whole call (prompt prefill
included), best of ``repeats`` runs that alternate between the two, after one
short warm-up call each.
"""
import tempfile
import time

from ..backend import xp
from .common import cores_used, machine

GPT2_SHAPE = dict(vocab_size=50257, block_size=1024, n_layer=6, n_head=6, n_embd=384)
LLAMA_SHAPE = dict(vocab_size=32000, dim=384, n_layers=6, n_heads=6, n_kv_heads=2, max_seq_len=1024)
TINY_GPT2 = dict(vocab_size=97, block_size=64, n_layer=1, n_head=2, n_embd=16)
TINY_LLAMA = dict(vocab_size=97, dim=16, n_layers=1, n_heads=2, n_kv_heads=1, max_seq_len=64)


def build_gpt2(tiny: bool = False, seed: int = 0):
    import scratchllm as sl
    from ..models import GPT, GPTConfig
    sl.manual_seed(seed)
    return GPT(GPTConfig(**(TINY_GPT2 if tiny else GPT2_SHAPE), dropout=0.0))


def build_llama(tiny: bool = False, seed: int = 0):
    import scratchllm as sl
    from ..models import Llama, LlamaConfig
    sl.manual_seed(seed)
    return Llama(LlamaConfig(**(TINY_LLAMA if tiny else LLAMA_SHAPE)))


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def bench_one(model, shape: dict, new_tokens: int, prompt_len: int, repeats: int, peer: bool,
              threads: int, seed: int = 0) -> dict:
    """Time greedy generation of one model (and its HF twin); a JSON-able dict."""
    model.eval()
    vocab = shape["vocab_size"]
    prompt = xp.random.default_rng(seed).integers(0, vocab, size=(1, prompt_len), dtype=xp.int64)
    ours = lambda n: model.generate(prompt, max_new_tokens=n, temperature=0.0)  # noqa: E731
    runners = {"scratchllm": ours}
    with tempfile.TemporaryDirectory() as tmp:
        if peer:
            from .peers.hf import hf_from_scratchllm, hf_generate
            hf = hf_from_scratchllm(model, tmp, threads)
            runners["hf"] = lambda n: hf_generate(hf, prompt, n)  # noqa: E731
        for run in runners.values():
            run(min(4, new_tokens))  # warm-up
        best, outputs = {k: float("inf") for k in runners}, {}
        for i in range(repeats):
            names = list(runners) if i % 2 == 0 else list(runners)[::-1]
            for name in names:
                out, dt = _timed(lambda: runners[name](new_tokens))
                outputs[name] = xp.asarray(out)
                best[name] = min(best[name], dt)
    result = {"shape": shape, "prompt_tokens": prompt_len, "new_tokens": new_tokens, "repeats": repeats}
    for name in ("scratchllm", "hf"):
        if name not in runners:
            result[name] = None
            continue
        result[name] = {"tokens_per_s": round(new_tokens / best[name], 2), "time_s": round(best[name], 4)}
    if peer:
        a, b = outputs["scratchllm"], outputs["hf"]
        same = a.shape == b.shape and bool((a == b).all())
        diff = [] if same else [i for i in range(min(a.shape[1], b.shape[1])) if a[0, i] != b[0, i]]
        result["ids_match"] = same
        result["first_mismatch"] = None if same else (diff[0] if diff else min(a.shape[1], b.shape[1]))
        result["ratio"] = round(result["scratchllm"]["tokens_per_s"] / result["hf"]["tokens_per_s"], 3)
    else:
        result.update(ids_match=None, first_mismatch=None, ratio=None)
    return result


def run_generate_bench(tiny: bool = False, new_tokens: int = 200, prompt_len: int = 16,
                       repeats: int = 2, peer: bool = True, models=("gpt2", "llama")) -> dict:
    """Both architectures; the dict ``--json`` prints."""
    threads = cores_used()
    builders = {"gpt2": (build_gpt2, TINY_GPT2 if tiny else GPT2_SHAPE),
                "llama": (build_llama, TINY_LLAMA if tiny else LLAMA_SHAPE)}
    out = {"batch": 1, "prompt_tokens": prompt_len, "new_tokens": new_tokens, "threads": threads,
           "greedy": True, "kv_cache": True}
    for name in models:
        build, shape = builders[name]
        out[name] = bench_one(build(tiny), shape, new_tokens, prompt_len, repeats, peer, threads)
    out["machine"] = machine()
    return out


def format_generate(result: dict) -> str:
    lines = [f"bench generate: batch 1, {result['prompt_tokens']}-token prompt, {result['new_tokens']} new "
             f"tokens, greedy with KV cache, {result['threads']} threads",
             f"{'':8}{'scratchllm tok/s':>17}{'HF tok/s':>10}{'ratio':>9}  same ids"]
    for name in ("gpt2", "llama"):
        r = result.get(name)
        if r is None:
            continue
        hf = "-" if r["hf"] is None else f"{r['hf']['tokens_per_s']:.1f}"
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        same = "-" if r["ids_match"] is None else ("yes" if r["ids_match"] else f"NO (from {r['first_mismatch']})")
        lines.append(f"{name:8}{r['scratchllm']['tokens_per_s']:>17.1f}{hf:>10}{ratio:>9}  {same}")
    return "\n".join(lines)
