"""Serving throughput: tokens/s with 4 concurrent streaming clients vs 1 client (issue 16).

A real ``scratchllm serve`` process (1 BLAS thread) serves a random GPT of 51M parameters
(n_embd 512, 8 layers, GPT-2's 50,257-token vocabulary: a step at batch 1 reads ~200 MB of
weights, as a real model's does). Each client sends greedy /v1/completions requests with
``stream: true`` and ``max_tokens`` 64 (token-id prompts of 16 ids, so the tokenizer plays no part);
throughput = completion tokens (from ``usage``) / wall time. The same prompts are sent by one
client one after another, then by 4 clients at once; with continuous batching the 4 share each
forward. ``--serial`` also runs the server with ``--batching off`` (a fair round-robin) to show
what batching adds.

    .venv/bin/python benchmarks/bench_serve.py [--requests 8] [--max-tokens 64] [--serial] [--json]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np

import scratchllm as sl

ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def make_model(folder: str) -> None:
    cfg = {"model_type": "gpt", "vocab_size": 50257, "n_layer": 8, "n_head": 8, "n_embd": 512, "block_size": 512}
    sl.models.build_model(cfg, generator=sl.Generator(0)).save_pretrained(folder)


def start(folder: str, *extra):
    proc = subprocess.Popen([sys.executable, "-m", "scratchllm", "serve", "--model", folder, "--tokenizer", "gpt2",
                             "--port", "0", "--slots", "8", "--model-name", "bench", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    line = proc.stdout.readline()
    m = re.search(r"on (http://127\.0\.0\.1:\d+)", line)
    if not m:
        proc.kill()
        raise RuntimeError(f"server did not start: {line!r} {proc.stderr.read()}")
    return proc, m.group(1)


def one_request(url: str, prompt, max_tokens: int):
    import openai
    client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=600)
    t0 = time.perf_counter()
    first, n = None, 0
    for chunk in client.completions.create(model="bench", prompt=prompt, max_tokens=max_tokens, temperature=0,
                                           stream=True, stream_options={"include_usage": True}):
        if first is None and chunk.choices and chunk.choices[0].text:
            first = time.perf_counter() - t0
        if chunk.usage is not None:
            n = chunk.usage.completion_tokens
    return n, first


def health(url: str) -> dict:
    with urllib.request.urlopen(url + "/health", timeout=30) as r:
        return json.loads(r.read())


def run(url: str, prompts, max_tokens: int, clients: int) -> dict:
    before = health(url)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(lambda p: one_request(url, p, max_tokens), prompts))
    wall = time.perf_counter() - t0
    after = health(url)
    tokens = sum(n for n, _ in results)
    steps = max(1, after["decode_steps"] - before["decode_steps"])
    return {"clients": clients, "requests": len(prompts), "tokens": tokens, "seconds": round(wall, 3),
            "tokens_per_s": round(tokens / wall, 1),
            "median_first_token_s": round(float(np.median([f for _, f in results if f is not None])), 3),
            "mean_rows_per_step": round((after["rows_stepped"] - before["rows_stepped"]) / steps, 2),
            "batching": after["batching"]}


def measure(folder: str, prompts, max_tokens: int, batching: str) -> dict:
    proc, url = start(folder, "--batching", batching)
    try:
        one_request(url, prompts[0], 4)                               # warm up
        one = run(url, prompts, max_tokens, 1)
        four = run(url, prompts, max_tokens, 4)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return {"batching": four["batching"], "one_client": one, "four_clients": four,
            "ratio": round(four["tokens_per_s"] / one["tokens_per_s"], 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--serial", action="store_true", help="also measure the round-robin fallback")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    prompts = [rng.integers(0, 50000, size=16).tolist() for _ in range(args.requests)]
    out = {"machine": {"cpus": os.cpu_count(), "loadavg_1m": os.getloadavg()[0]},
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "max_tokens": args.max_tokens}
    with tempfile.TemporaryDirectory() as tmp:
        make_model(tmp)
        out["batched"] = measure(tmp, prompts, args.max_tokens, "auto")
        if args.serial:
            out["round_robin"] = measure(tmp, prompts, args.max_tokens, "off")
    out["machine"]["loadavg_1m_after"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{out['date']}, load {out['machine']['loadavg_1m']:.1f} -> {out['machine']['loadavg_1m_after']:.1f}")
    for key in ("batched", "round_robin"):
        if key in out:
            r = out[key]
            print(f"{r['batching']:>20}: 1 client {r['one_client']['tokens_per_s']:7.1f} tok/s, "
                  f"4 clients {r['four_clients']['tokens_per_s']:7.1f} tok/s -> {r['ratio']:.2f}x "
                  f"(rows per step with 4 clients {r['four_clients']['mean_rows_per_step']}, first token 1: "
                  f"{r['one_client']['median_first_token_s']} s, 4: {r['four_clients']['median_first_token_s']} s)")


if __name__ == "__main__":
    main()
