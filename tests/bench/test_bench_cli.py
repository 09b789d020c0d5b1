"""The bench commands' JSON output (tiny shapes: seconds, not minutes; nothing here is timed)."""
import argparse
import json

import numpy as np
import pytest

from scratchllm.bench.cli import add_bench_generate, add_bench_train
from scratchllm.bench.train import CONFIGS, CharBatches, ScratchTrainer, nanogpt_flops_per_token


def run_bench(argv, capsys) -> dict:
    parser = argparse.ArgumentParser(prog="scratchllm bench")
    sub = parser.add_subparsers(dest="bench_command", required=True)
    add_bench_train(sub)
    add_bench_generate(sub)
    args = parser.parse_args(argv)
    capsys.readouterr()
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1, "--json prints exactly one line"
    return json.loads(out)


SIDE_KEYS = {"tokens_per_s", "step_ms", "peak_mem_mb", "mfu", "model_gflops", "loss_first", "loss_last"}


def test_bench_train_json_with_torch_peer(capsys):
    # --no-memory: the memory probes (subprocesses) are tested below, without a second torch import
    r = run_bench(["train", "--config", "tiny", "--steps", "2", "--warmup", "1", "--no-memory", "--json"], capsys)
    assert {"config", "scratchllm", "torch", "ratio", "matmul_peak_gflops", "mfu", "mem_ratio"} <= set(r)
    assert r["config"]["name"] == "tiny" and r["config"]["vocab_size"] == 65
    for side in ("scratchllm", "torch"):
        assert SIDE_KEYS <= set(r[side])
        assert r[side]["tokens_per_s"] > 0 and r[side]["step_ms"] > 0 and r[side]["peak_mem_mb"] is None
    assert r["ratio"] == pytest.approx(r["scratchllm"]["tokens_per_s"] / r["torch"]["tokens_per_s"], rel=1e-2)
    assert r["ratio_best"] > 0 and r["mfu"] == r["scratchllm"]["mfu"] and r["matmul_peak_gflops"] > 0
    # same initial weights, same batch: the first losses agree (float32), near ln(65) at init
    assert r["scratchllm"]["loss_first"] == pytest.approx(r["torch"]["loss_first"], abs=1e-4)
    assert r["scratchllm"]["loss_first"] == pytest.approx(np.log(65), abs=0.1)


def test_bench_train_no_peer_gives_null_torch_and_measures_our_memory(capsys):
    r = run_bench(["train", "--config", "tiny", "--steps", "1", "--warmup", "0", "--no-peer", "--json"], capsys)
    assert r["torch"] is None and r["ratio"] is None and r["ratio_best"] is None and r["mem_ratio"] is None
    ours = r["scratchllm"]
    assert ours["tokens_per_s"] > 0 and ours["peak_mem_mb"] >= 0 and ours["step_traced_peak_mb"] > 0


def test_memory_probe_counts_model_and_optimizer_state():
    # SMALL: 0.81M float32 params -> weights + grads + 2 Adam moments >= 4 * 3.2 MB
    from scratchllm.bench.memory import measure_train_memory
    r = measure_train_memory("scratchllm", "small", threads=1)
    assert r["peak_mem_mb"] >= 4 * 809_856 * 4 / 2 ** 20
    assert 0 < r["step_traced_peak_mb"] < 1000


def test_bench_generate_json_matches_hf_ids(capsys):
    r = run_bench(["generate", "--tiny", "--new-tokens", "6", "--repeats", "1", "--json"], capsys)
    assert r["new_tokens"] == 6 and r["prompt_tokens"] == 16
    for arch in ("gpt2", "llama"):
        a = r[arch]
        assert a["ids_match"] is True, f"{arch}: greedy ids differ from HF from position {a['first_mismatch']}"
        assert a["scratchllm"]["tokens_per_s"] > 0 and a["hf"]["tokens_per_s"] > 0
        assert a["ratio"] == pytest.approx(a["scratchllm"]["tokens_per_s"] / a["hf"]["tokens_per_s"], rel=1e-2)


def test_bench_generate_no_peer(capsys):
    r = run_bench(["generate", "--tiny", "--new-tokens", "3", "--repeats", "1", "--model", "gpt2",
                   "--no-peer", "--json"], capsys)
    assert r["gpt2"]["hf"] is None and r["gpt2"]["ratio"] is None and "llama" not in r


def test_nanogpt_flops_formula_on_small():
    cfg = CONFIGS["small"]
    trainer = ScratchTrainer(cfg)
    # nanoGPT: N without the position embedding, tied head counted once
    n = 65 * 128 + 4 * (12 * 128 * 128 + 13 * 128) + 2 * 128
    assert trainer.n_params_non_embedding == n
    assert nanogpt_flops_per_token(n, cfg) == 6 * n + 12 * 4 * 4 * 32 * 64


def test_char_batches_are_shifted_windows():
    x, y = CharBatches(block_size=16, batch_size=3).next()
    assert x.shape == y.shape == (3, 16) and x.dtype == np.int64
    assert (x[:, 1:] == y[:, :-1]).all() and 0 <= x.min() and x.max() < 65
