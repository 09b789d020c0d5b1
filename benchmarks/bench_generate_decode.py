"""Quick side-by-side timing of greedy KV-cache generation: scratchllm vs HF transformers.

The same setup as ``scratchllm bench generate`` (batch 1, 16-token prompt, random weights
of the GPT-2 6x384 / vocab 50257 shape and the Llama shape), but the two runners alternate
``--repeats`` times and the *median* of each, and of the per-pair ratios, is printed: on a
shared machine the ratio of back-to-back runs is steadier than either figure alone.

    .venv/bin/python benchmarks/bench_generate_decode.py --new-tokens 200 --repeats 5
    .venv/bin/python benchmarks/bench_generate_decode.py --step-threads all   # or 1; default auto
"""
import argparse
import statistics
import tempfile
import time

import numpy as np

from scratchllm.bench.common import cores_used
from scratchllm.bench.generate import build_gpt2, build_llama
from scratchllm.bench.peers.hf import hf_from_scratchllm, hf_generate
from scratchllm.models.decode import Decoder


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--new-tokens", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--models", default="gpt2,llama")
    ap.add_argument("--step-threads", default="auto", choices=("auto", "1", "all"),
                    help="BLAS threads for a decode step (default: timed, the faster)")
    args = ap.parse_args()
    Decoder.threads = {"auto": "auto", "1": 1, "all": None}[args.step_threads]
    threads = cores_used()
    for name in args.models.split(","):
        model = {"gpt2": build_gpt2, "llama": build_llama}[name]()
        model.eval()
        prompt = np.random.default_rng(0).integers(0, model.vocab_size, size=(1, 16), dtype=np.int64)
        with tempfile.TemporaryDirectory() as tmp:
            hf = hf_from_scratchllm(model, tmp, threads)
            runs = {"scratchllm": lambda n: model.generate(prompt, n, temperature=0.0),
                    "hf": lambda n: hf_generate(hf, prompt, n)}
            for run in runs.values():
                run(4)
            times, outs, ratios = {k: [] for k in runs}, {}, []
            for i in range(args.repeats):
                order = list(runs) if i % 2 == 0 else list(runs)[::-1]
                for k in order:
                    t0 = time.perf_counter()
                    outs[k] = runs[k](args.new_tokens)
                    times[k].append(time.perf_counter() - t0)
                ratios.append(times["hf"][-1] / times["scratchllm"][-1])
        tps = {k: args.new_tokens / statistics.median(v) for k, v in times.items()}
        same = np.array_equal(outs["scratchllm"], outs["hf"])
        print(f"{name:6} scratchllm {tps['scratchllm']:7.1f} tok/s  HF {tps['hf']:6.1f} tok/s  "
              f"median ratio {statistics.median(ratios):.2f}x  (ratios {', '.join(f'{r:.2f}' for r in ratios)})"
              f"  same ids: {same}  threads {threads}, decode-step BLAS threads {args.step_threads}", flush=True)


if __name__ == "__main__":
    main()
