"""Data-parallel training under a real ``mpiexec -n 2`` (MPICH from PyPI, ``scratchllm[dist]``).

Each test starts real MPI processes. The oracle is one process on the whole batch: K steps with
2 ranks x batch B/2 must end at the weights of 1 rank x batch B (float64: 1e-10 relative;
float32: 1e-5), and so must 2 ranks x grad_accum 2 against 1 rank x grad_accum 4.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mpi4py")
from safetensors.numpy import load_file  # noqa: E402

HERE = Path(__file__).parent
BIN = Path(sys.executable).parent
MPIEXEC = str(BIN / "mpiexec")
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
TINY = dict(preset="shakespeare-char", n_layer=1, n_head=2, n_embd=32, block_size=16, max_steps=8,
            warmup_steps=2, lr=1e-2, min_lr=1e-3, eval_interval=4, eval_batches=4, log_interval=1,
            sample_tokens=0, seed=3, dropout=0.0, bias=False)


def run(cmd, n=None, timeout=240, env=None, check=True):
    full = ([MPIEXEC, "-n", str(n)] if n else []) + cmd
    p = subprocess.run(full, capture_output=True, text=True, timeout=timeout, env=env or ENV)
    if check and p.returncode != 0:
        raise AssertionError(f"{full} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


@pytest.fixture
def corpus(tmp_path):
    from scratchllm.data import bundled_corpus_path
    path = tmp_path / "corpus.txt"
    path.write_text(bundled_corpus_path().read_text(encoding="utf-8")[:20_000], encoding="utf-8")
    return str(path)


def train(out, cfg, n=None, stop_at=None, resume=False, env=None):
    cmd = [sys.executable, str(HERE / "ranks_train.py"), str(out), json.dumps(cfg)]
    cmd += (["--stop-at", str(stop_at)] if stop_at else []) + (["--resume"] if resume else [])
    return run(cmd, n=n, env=env)


def weights(out):
    return load_file(str(Path(out) / "latest" / "model.safetensors"))


def assert_same_weights(a, b, rtol):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        scale = np.max(np.abs(wb[k])) + 1e-30
        assert np.max(np.abs(wa[k] - wb[k])) / scale < rtol, k


def losses(out):
    rows = [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"], r.get("val_loss")) for r in rows]


@pytest.mark.parametrize("accum_n,accum_1", [(1, 1), (2, 4)])
def test_float64_steps_equal_one_process(accum_n, accum_1):
    p = run([sys.executable, str(HERE / "ranks_float64.py"), str(accum_n), str(accum_1)], n=2)
    result = json.loads(p.stdout.strip().splitlines()[-1])
    assert result["size"] == 2
    assert result["checksums_equal"]
    assert result["max_rel_diff"] < 1e-10


def test_two_ranks_equal_one_rank_trainer(tmp_path, corpus):
    check = {**ENV, "SCRATCHLLM_DIST_CHECK": "1"}
    train(tmp_path / "one", {**TINY, "data": [corpus], "batch_size": 8})
    train(tmp_path / "two", {**TINY, "data": [corpus], "batch_size": 4}, n=2, env=check)
    assert_same_weights(tmp_path / "two", tmp_path / "one", 1e-5)
    one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert [r[0] for r in one] == [r[0] for r in two]            # rank 0 alone wrote: no duplicate rows
    np.testing.assert_allclose([r[1] for r in two], [r[1] for r in one], rtol=1e-5)
    # (validation batches are batch_size windows each, so the two runs evaluate different windows)

    # grad_accum: 2 ranks x 2 micro-batches of 4 = 1 rank x 4 micro-batches of 4
    train(tmp_path / "acc1", {**TINY, "data": [corpus], "batch_size": 4, "grad_accum_steps": 4})
    train(tmp_path / "acc2", {**TINY, "data": [corpus], "batch_size": 4, "grad_accum_steps": 2}, n=2, env=check)
    assert_same_weights(tmp_path / "acc2", tmp_path / "acc1", 1e-5)


def test_two_ranks_bit_identical_to_one_rank_with_accumulation(tmp_path, corpus):
    """Same micro-batch (4) and global batch (8): 2 ranks x 1 micro-batch = 1 rank x 2, bit for bit."""
    cfg = {**TINY, "data": [corpus], "batch_size": 4, "global_batch": 8}
    train(tmp_path / "one", cfg)
    train(tmp_path / "two", cfg, n=2)
    wa, wb = weights(tmp_path / "one"), weights(tmp_path / "two")
    for k in wa:
        assert np.array_equal(wa[k], wb[k]), k
    assert losses(tmp_path / "one") == losses(tmp_path / "two")


@pytest.mark.parametrize("first,second", [(2, None), (None, 2)])
def test_resume_across_world_sizes_is_exact(tmp_path, corpus, first, second):
    """Checkpointed with N ranks, resumed with M: the uninterrupted M-rank run, bit for bit."""
    cfg = {**TINY, "data": [corpus], "batch_size": 4, "global_batch": 8}
    train(tmp_path / "whole", cfg, n=second)
    train(tmp_path / "moved", cfg, n=first, stop_at=4)
    train(tmp_path / "moved", cfg, n=second, resume=True)
    wa, wb = weights(tmp_path / "moved"), weights(tmp_path / "whole")
    for k in wa:
        assert np.array_equal(wa[k], wb[k]), k
    assert losses(tmp_path / "moved") == losses(tmp_path / "whole")


def test_ranks_that_disagree_stop_with_one_message(tmp_path, corpus):
    base = [str(BIN / "scratchllm"), "train", "--out", str(tmp_path / "run"), "--data", corpus, "--no-progress"]
    keys = [f"{k}={v}" for k, v in TINY.items() if k not in ("preset",)]
    cmd = [MPIEXEC, "-n", "1"] + base + keys + ["lr=0.01", ":", "-n", "1"] + base + keys + ["lr=0.02"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=ENV)
    assert p.returncode != 0
    assert "ranks disagree on the config" in p.stderr
    assert "Traceback" not in p.stderr


def test_a_killed_rank_stops_all_and_the_checkpoint_resumes(tmp_path, corpus):
    cfg = {**TINY, "data": [corpus], "batch_size": 4, "max_steps": 100_000, "eval_interval": 2}
    cmd = [MPIEXEC, "-n", "2", sys.executable, str(HERE / "ranks_train.py"), str(tmp_path / "run"), json.dumps(cfg)]
    env = {**ENV, "SCRATCHLLM_TEST_PIDFILE": str(tmp_path / "pid")}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        state = tmp_path / "run" / "latest" / "trainer_state.json"
        while not (state.is_file() and (tmp_path / "pid.1").is_file()):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.2)
        time.sleep(0.5)
        os.kill(int((tmp_path / "pid.1").read_text()), signal.SIGKILL)
        t0 = time.monotonic()
        proc.wait(timeout=30)
        assert time.monotonic() - t0 < 10
        assert proc.returncode != 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    train(tmp_path / "run", {**cfg, "batch_size": 8, "max_steps": json.loads(state.read_text())["step"] + 2},
          resume=True)
