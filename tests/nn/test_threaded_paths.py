"""The multi-core paths (scratchllm/parallel.py) give the one-core results to the bit.

``make test`` runs with one BLAS thread, which also keeps the thread pool to the calling thread;
here the pool is forced to 1, 2 or 3 cores (``_cores``) and its size threshold lowered, so the
split code of GELU, LayerNorm, RMSNorm, packed attention and Adam/AdamW runs in CI too, and the
runs on 2 and 3 cores are compared with the one-core run (itself tested against torch
elsewhere), with the NumPy code and with the numba kernels (``SCRATCHLLM_KERNELS``;
tests/kernel_paths tests both against torch).
"""
import numpy as np
import pytest

import scratchllm as sl
from scratchllm import kernels
from scratchllm.nn import functional as F
from scratchllm.parallel import blas_threads
from scratchllm import parallel as _threads


def _run(cores, monkeypatch, fn):
    """fn() with the pool forced to ``cores`` chunks and every op here big enough to use it."""
    monkeypatch.setattr(_threads, "_cores", lambda: cores)
    monkeypatch.setattr(_threads, "POOL_MIN", 1 << 12)
    monkeypatch.setattr(_threads, "UPDATE_POOL_MIN", 1 << 12)
    with blas_threads(1 if cores == 1 else None):       # one core: BLAS has one thread too
        return fn()


def _use_kernels(monkeypatch, mode):
    """SCRATCHLLM_KERNELS=mode ("numpy" or "numba"), checked to be the code that runs."""
    if mode == "numba":
        pytest.importorskip("numba")
    monkeypatch.setenv("SCRATCHLLM_KERNELS", mode)
    assert kernels.name() == mode


def _fwd_bwd(op, arrays, seed=0):
    """op(*tensors) -> output and every input's gradient of sum(out * w), as arrays."""
    ts = [sl.Tensor(a.copy(), requires_grad=True) for a in arrays]
    out = op(*ts)
    w = np.random.default_rng(seed).standard_normal(out.shape).astype(out.dtype)
    (out * sl.Tensor(w)).sum().backward()
    return [out.numpy().copy()] + [t.grad.numpy().copy() for t in ts]


@pytest.mark.parametrize("cores", [2, 3])
@pytest.mark.parametrize("mode", ["numpy", "numba"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["gelu_tanh", "layer_norm", "rms_norm", "qkv_attention"])
def test_split_equals_one_core_bit_for_bit(monkeypatch, name, dtype, mode, cores):
    """2 and 3 cores give the one-core bits. (The ranges are fixed by the size alone: NumPy's
    layer_norm row sums, a BLAS gemv, round a range's last rows by the range's length.)"""
    _use_kernels(monkeypatch, mode)
    rng = np.random.default_rng(1)
    C = 96
    x = rng.standard_normal((4, 200, C)).astype(dtype)                 # 76,800 elements
    w, b = rng.standard_normal(C).astype(dtype), rng.standard_normal(C).astype(dtype)
    cases = {
        "gelu_tanh": (lambda t: F.gelu(t, approximate="tanh"), [rng.standard_normal((4, 200, 4 * C)).astype(dtype)]),
        "layer_norm": (lambda t, w_, b_: F.layer_norm(t, (C,), w_, b_), [x, w, b]),
        "rms_norm": (lambda t, w_: F.rms_norm(t, (C,), w_, eps=1e-6), [x, w]),
        "qkv_attention": (lambda t: F.qkv_attention(t, n_head=4), [rng.standard_normal((4, 64, 3 * C)).astype(dtype)]),
    }
    op, arrays = cases[name]
    one = _run(1, monkeypatch, lambda: _fwd_bwd(op, arrays))
    for a, c in zip(one, _run(cores, monkeypatch, lambda: _fwd_bwd(op, arrays))):
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("mode,amsgrad", [("numpy", True), ("numpy", False), ("numba", False)])
@pytest.mark.parametrize("opt", ["AdamW", "Adam"])
def test_adam_two_chunks_equal_one_chunk_bit_for_bit(monkeypatch, opt, mode, amsgrad):
    """amsgrad keeps the NumPy code, so it is not run again with the kernels."""
    _use_kernels(monkeypatch, mode)
    rng = np.random.default_rng(2)
    shapes = [(300, 400), (400,), (70_000,), (3, 5)]                   # big ones are split, small ones not
    start = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(3)]

    def train():
        params = [sl.nn.Parameter(a.copy()) for a in start]
        o = getattr(sl.optim, opt)([{"params": params[:2], "weight_decay": 0.1},
                                    {"params": params[2:], "weight_decay": 0.0}], lr=1e-2, amsgrad=amsgrad)
        for g in grads:
            for p, gi in zip(params, g):
                p.grad = sl.Tensor(gi.copy())
            o.step()
        return [p.numpy().copy() for p in params]

    for a, c in zip(_run(1, monkeypatch, train), _run(2, monkeypatch, train)):
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-7), (np.float32, 1e-4)])
def test_linear_row_chunks_on_any_number_of_cores(monkeypatch, dtype, rtol):
    """Linear's big products go to the pool in row chunks fixed by the shape alone: the same
    bits on 1, 2 or 3 cores, and torch's values (forward, dx, dW, db)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 301, 128)).astype(dtype)              # 1,204 rows: 2 chunks
    w, b = rng.standard_normal((200, 128)).astype(dtype), rng.standard_normal(200).astype(dtype)
    runs = [_run(cores, monkeypatch, lambda: _fwd_bwd(F.linear, [x, w, b])) for cores in (1, 2, 3)]
    for other in runs[1:]:
        for a, c in zip(runs[0], other):
            np.testing.assert_array_equal(a, c)
    ts = [torch.tensor(a, requires_grad=True) for a in (x, w, b)]
    out = torch.nn.functional.linear(*ts)
    out.backward(torch.tensor(np.random.default_rng(0).standard_normal(out.shape).astype(dtype)))
    for a, t in zip(runs[0], [out] + [t.grad for t in ts]):
        np.testing.assert_allclose(a, t.detach().numpy(), rtol=rtol, atol=rtol * 10)


@pytest.mark.parametrize("bad_chunk", [0, 1])
def test_run_chunks_error_waits_for_every_chunk_and_restores_blas(monkeypatch, bad_chunk):
    """A chunk's error reaches the caller only after every chunk has finished, and the BLAS
    thread count is what it was before (the pool sets it to 1 while it runs)."""
    import threading
    import time
    from scratchllm.parallel import blas_thread_count

    monkeypatch.setattr(_threads, "_cores", lambda: 2)
    before, done = blas_thread_count(), threading.Event()

    def fn(i, a, b):
        if i == bad_chunk:
            raise RuntimeError(f"chunk {i} failed")
        time.sleep(0.05)
        done.set()

    with pytest.raises(RuntimeError, match=f"chunk {bad_chunk} failed"):
        _threads.run_chunks(fn, [0, 1, 2])
    assert done.is_set()
    assert blas_thread_count() == before


def test_run_chunks_really_uses_two_threads(monkeypatch):
    """With 2 CPUs and 2 BLAS threads allowed, two chunks run at the same time on two threads
    (each waits for the other at a barrier), and BLAS is single-threaded inside the chunks."""
    import os
    import threading
    from scratchllm.parallel import blas_api, blas_thread_count

    if blas_api() is None:
        pytest.skip("no OpenBLAS: the thread count cannot be set")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    barrier, seen = threading.Barrier(2, timeout=10), []

    def fn(i, a, b):
        seen.append((threading.get_ident(), blas_thread_count()))
        barrier.wait()

    with blas_threads(2):
        _threads.run_chunks(fn, [0, 1, 2])
    assert len({ident for ident, _ in seen}) == 2
    assert all(n == 1 for _, n in seen)
