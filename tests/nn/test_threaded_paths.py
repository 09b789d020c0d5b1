"""The multi-core paths (nn/functional/_threads.py) give the one-core results to the bit.

``make test`` runs with one BLAS thread, which also makes the thread pool use one chunk; here
the pool is forced to 2 chunks (``_cores``), so the split code of GELU, LayerNorm, RMSNorm,
packed attention and Adam/AdamW runs in CI too, and is compared with the one-chunk run
(itself tested against torch elsewhere). Sizes are above each op's parallel threshold.
"""
import numpy as np
import pytest

import scratchllm as sl
from scratchllm.nn import functional as F
from scratchllm.nn.functional import _threads


def _run(cores, monkeypatch, fn):
    monkeypatch.setattr(_threads, "_cores", lambda: cores)
    return fn()


def _fwd_bwd(op, arrays, seed=0):
    """op(*tensors) -> output and every input's gradient of sum(out * w), as arrays."""
    ts = [sl.Tensor(a.copy(), requires_grad=True) for a in arrays]
    out = op(*ts)
    w = np.random.default_rng(seed).standard_normal(out.shape).astype(out.dtype)
    (out * sl.Tensor(w)).sum().backward()
    return [out.numpy().copy()] + [t.grad.numpy().copy() for t in ts]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["gelu_tanh", "layer_norm", "rms_norm", "qkv_attention"])
def test_two_chunks_equal_one_chunk_bit_for_bit(monkeypatch, name, dtype):
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
    two = _run(2, monkeypatch, lambda: _fwd_bwd(op, arrays))
    for a, c in zip(one, two):
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("opt", ["AdamW", "Adam"])
def test_adam_two_chunks_equal_one_chunk_bit_for_bit(monkeypatch, opt):
    rng = np.random.default_rng(2)
    shapes = [(300, 400), (400,), (70_000,), (3, 5)]                   # big ones are split, small ones not
    start = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(3)]

    def train():
        params = [sl.nn.Parameter(a.copy()) for a in start]
        o = getattr(sl.optim, opt)([{"params": params[:2], "weight_decay": 0.1},
                                    {"params": params[2:], "weight_decay": 0.0}], lr=1e-2, amsgrad=True)
        for g in grads:
            for p, gi in zip(params, g):
                p.grad = sl.Tensor(gi.copy())
            o.step()
        return [p.numpy().copy() for p in params]

    for a, c in zip(_run(1, monkeypatch, train), _run(2, monkeypatch, train)):
        np.testing.assert_array_equal(a, c)
