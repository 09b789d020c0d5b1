"""The ``torch.compile`` peer of ``bench train`` (tiny config, through the real ``scratchllm`` CLI).

Inductor's first compile takes tens of seconds on 2 cores, so exactly one test compiles for real;
the others take the skip paths, which never compile. Every test points inductor's cache
(``TORCHINDUCTOR_CACHE_DIR``) into a tmp folder, so nothing is read from or left in /tmp.

Loss tolerance: the compiled peer must match torch eager to 1e-5 absolute after the timed
steps, the README's "5 decimals" that tests/bench/test_bench_train_losses.py holds ours and
torch eager to. Inductor fuses kernels and may reorder float32 sums, but on these shapes its
losses came out identical to eager's bit for bit (``loss_last_vs_torch`` 0.0 on tiny), so no
looser tolerance is needed.
"""
import json

import pytest

import scratchllm.bench.train as bench_train
from scratchllm.bench.peers.torch_compile import compile_skip_reason, find_cxx
from scratchllm.cli import main

TINY = ["bench", "train", "--config", "tiny", "--steps", "2", "--warmup", "1", "--no-memory"]
FIGURES = {"tokens_per_s", "step_ms", "step_ms_min", "step_ms_max", "model_gflops", "mfu",
           "loss_first", "loss_last", "peak_mem_mb", "compile_s", "backend", "mode", "optimizer",
           "cxx", "loss_last_vs_torch"}


@pytest.fixture(autouse=True)
def hermetic(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    monkeypatch.setattr(bench_train, "SETTLE_S", 0.0)  # nothing here checks a timing


def test_compiled_peer_compiles_and_matches_torch_eager(tmp_path, capsys):
    if find_cxx()[1] is None:  # this machine has /usr/bin/g++: the test must really compile
        pytest.fail("no g++ here: the compiled peer cannot be tested")
    out = tmp_path / "r.json"
    assert main(TINY + ["--compile", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    r = json.loads(out.read_text())
    fast, torch = r["torch_compile"], r["torch"]
    assert FIGURES <= set(fast), f"missing {FIGURES - set(fast)}"
    assert fast["backend"] == "inductor" and fast["optimizer"] == "eager" and fast["cxx"] == find_cxx()[1]
    assert fast["compile_s"] > 0 and fast["tokens_per_s"] > 0 and 0 < fast["step_ms_min"] <= fast["step_ms_max"]
    assert fast["model_gflops"] >= 0 and fast["mfu"] >= 0 and fast["peak_mem_mb"] is None  # tiny: both round to ~0
    # same weights, batches and AdamW as the eager peer: the same losses (see the module docstring)
    assert abs(fast["loss_first"] - torch["loss_first"]) <= 1e-5
    assert abs(fast["loss_last"] - torch["loss_last"]) <= 1e-5 and fast["loss_last_vs_torch"] <= 1e-5
    assert fast["loss_last"] != fast["loss_first"]  # the steps trained
    assert r["ratio_compile"] == pytest.approx(r["scratchllm"]["tokens_per_s"] / fast["tokens_per_s"], rel=1e-2)
    assert r["ratio_compile_best"] == pytest.approx(fast["step_ms_min"] / r["scratchllm"]["step_ms_min"], rel=1e-2)
    # the existing schema is untouched
    assert r["ratio"] == pytest.approx(r["scratchllm"]["tokens_per_s"] / torch["tokens_per_s"], rel=1e-2)
    assert {"ratio_best", "mem_ratio", "mfu", "matmul_peak_gflops"} <= set(r)
    # --json PATH: the table on stdout, the compiled peer's row and ratio in it
    assert "torch.compile" in text and "ratio scratchllm/torch.compile:" in text and "untimed" in text
    assert any((tmp_path / "inductor").rglob("*.so")), "inductor compiled into the test's own cache"


@pytest.mark.parametrize("env", ["CXX", "PATH"])
def test_no_compiler_skips_the_peer_with_a_note(env, tmp_path, monkeypatch, capsys):
    if env == "CXX":
        monkeypatch.setenv("CXX", str(tmp_path / "no-such-g++"))
    else:
        monkeypatch.delenv("CXX", raising=False)
        monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no g++
    reason = compile_skip_reason()
    assert reason is not None and reason.startswith("no C++ compiler")
    assert main(TINY + ["--json"]) == 0  # default for tiny: off
    assert json.loads(capsys.readouterr().out)["torch_compile"] is None
    assert main(TINY + ["--compile", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["torch_compile"] == {"skipped": reason}
    assert r["ratio_compile"] is None and r["ratio_compile_best"] is None
    assert r["torch"]["tokens_per_s"] > 0 and r["ratio"] > 0  # the eager peer still ran
    assert main(TINY + ["--compile"]) == 0
    assert f"torch.compile: skipped ({reason})" in capsys.readouterr().out


def test_a_compile_error_skips_the_peer_with_a_note(monkeypatch, capsys):
    # the compiler is found, but inductor is told to use another one: torch.compile raises
    import torch._inductor.config as inductor_config
    monkeypatch.setattr(inductor_config.cpp, "cxx", ("/nonexistent/g++",))
    assert main(TINY + ["--compile", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["torch_compile"]["skipped"].startswith("torch.compile failed: ")
    assert r["torch"]["loss_last"] == pytest.approx(r["scratchllm"]["loss_last"], abs=1e-5)


def test_no_compile_and_no_peer_turn_it_off(capsys):
    for flags in (["--no-compile"], ["--no-peer", "--compile"]):
        assert main(TINY + flags + ["--json"]) == 0
        r = json.loads(capsys.readouterr().out)
        assert r["torch_compile"] is None and r["ratio_compile"] is None
