"""int8 (Q8_0) generation against float32 and HF transformers: tokens/s and weight memory.

Greedy generation at batch 1 (a 1-token step reads every matrix once, so it is bound by
reading weights): scratchllm float32, scratchllm ``generation_quant="q8_0"`` (int8 weights and
activations, llama2.c runq's arithmetic, models/quant.py), and HF transformers float32 on the
same weights. Models: the real stories260K (llama2.c) and the random-weight Llama shape of
``bench generate`` (6 x 384, GQA 6/2, vocab 32000). The runners alternate ``--repeats`` times;
the medians are printed. Weight memory: the bytes of the matrices a decoder holds (the
embedding table included: Q8_0 rows on the int8 side), HF: its parameters.

    .venv/bin/python benchmarks/bench_quant.py --new-tokens 200 --repeats 3
"""
import argparse
import os
import statistics
import tempfile
import time

import numpy as np

import scratchllm as sl
from scratchllm.bench.common import cores_used
from scratchllm.bench.generate import build_llama
from scratchllm.bench.peers.hf import hf_from_scratchllm, hf_generate
from scratchllm.kernels import name as kernel_name
from scratchllm.models.quant import set_generation_quant, weight_bytes

S260 = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "stories260K", "stories260K.bin")


def _first_diff(a, b, start: int) -> int:
    """New tokens that agree before the first difference."""
    d = np.nonzero(a[0] != b[0])[0]
    return (int(d[0]) if d.size else a.shape[1]) - start


def bench(name: str, model, new_tokens: int, repeats: int, threads: int, prompt=None) -> None:
    model.eval()
    if prompt is None:
        prompt = [1] + list(np.random.default_rng(0).integers(3, model.vocab_size, size=7))
    prompt = np.array([prompt], dtype=np.int64)

    def ours(kind):
        def run(n):
            set_generation_quant(model, kind)
            return model.generate(prompt, n, temperature=0.0)
        return run

    with tempfile.TemporaryDirectory() as tmp:
        hf = hf_from_scratchllm(model, tmp, threads)
        runs = {"fp32": ours(None), "q8_0": ours("q8_0"), "hf": lambda n: hf_generate(hf, prompt, n)}
        for run in runs.values():
            run(4)
        times, outs = {k: [] for k in runs}, {}
        for i in range(repeats):
            for k in (list(runs) if i % 2 == 0 else list(runs)[::-1]):
                t0 = time.perf_counter()
                outs[k] = runs[k](new_tokens)
                times[k].append(time.perf_counter() - t0)
        hf_bytes = sum(p.numel() * p.element_size() for p in hf.parameters())
    tps = {k: new_tokens / statistics.median(v) for k, v in times.items()}
    set_generation_quant(model, None)
    dec32 = model.decoder(1, 8)
    set_generation_quant(model, "q8_0")
    dec8 = model.decoder(1, 8)
    set_generation_quant(model, None)
    mem32, mem8 = weight_bytes(dec32), weight_bytes(dec8)
    T = prompt.shape[1]
    print(f"{name}: tokens/s fp32 {tps['fp32']:.1f}, q8_0 {tps['q8_0']:.1f} ({tps['q8_0'] / tps['fp32']:.2f}x fp32, "
          f"{tps['q8_0'] / tps['hf']:.2f}x HF), HF {tps['hf']:.1f}; weights fp32 {mem32 / 1e6:.2f} MB, q8_0 "
          f"{mem8 / 1e6:.2f} MB ({mem32 / mem8:.2f}x less), HF {hf_bytes / 1e6:.2f} MB; greedy ids: q8_0 = fp32 for "
          f"the first {_first_diff(outs['q8_0'], outs['fp32'], T)} of {new_tokens} new tokens, fp32 = HF: "
          f"{np.array_equal(outs['fp32'], outs['hf'])}; kernels {kernel_name()}, {threads} threads", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--new-tokens", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--models", default="stories260K,llama")
    args = ap.parse_args()
    threads = cores_used()
    for name in args.models.split(","):
        if name == "stories260K":            # the real model: a real prompt, "Once upon a time"
            tok = sl.load_tokenizer(os.path.join(os.path.dirname(S260), "tok512.bin"))
            bench("stories260K", sl.load_model(S260), args.new_tokens, args.repeats, threads,
                  tok.encode("Once upon a time", bos=True))
        else:
            bench("llama 6x384 vocab 32000 (random)", build_llama(), args.new_tokens, args.repeats, threads)


if __name__ == "__main__":
    main()
