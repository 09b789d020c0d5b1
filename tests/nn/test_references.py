"""Every fast path equals its plain one-screen reference (float64, tight tolerance).

LayerNorm / RMSNorm (``norm_reference``), attention (``attention_reference``), cross-entropy
(``cross_entropy_reference``), Adam / AdamW (``adam_reference``) and the backward walk
(``backward_reference``). The suite runs this file with and without the compiled kernels
(SCRATCHLLM_KERNELS=numpy); the pool paths are forced on for big-enough shapes.
"""
import numpy as np
import pytest

import scratchllm as sl
from scratchllm import parallel
from scratchllm.autograd.engine import backward_reference
from scratchllm.nn import functional as F
from scratchllm.nn.functional.attention import attention_reference
from scratchllm.nn.functional.loss import cross_entropy_reference
from scratchllm.nn.functional.normalization import norm_reference
from scratchllm.optim import Adam, AdamW
from scratchllm.optim.adam import adam_reference

TOL = dict(rtol=1e-10, atol=1e-12)


@pytest.fixture(params=[False, True], ids=["inline", "pool"])
def pool(request, monkeypatch):
    if request.param:
        monkeypatch.setattr(parallel, "POOL_MIN", 1 << 8)
        monkeypatch.setattr(parallel, "UPDATE_POOL_MIN", 1 << 8)
        monkeypatch.setattr(parallel, "PARAM_SPLIT_MIN", 1 << 6)
    return request.param


@pytest.mark.parametrize("center", [True, False], ids=["layer_norm", "rms_norm"])
def test_norm_fast_path_equals_reference(center, pool):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 50, 16))
    w, b, g = rng.standard_normal(16), rng.standard_normal(16), rng.standard_normal((3, 50, 16))
    xt, wt, bt = (sl.Tensor(a, requires_grad=True) for a in (x, w, b))
    y = F.layer_norm(xt, 16, wt, bt, eps=1e-5) if center else F.rms_norm(xt, 16, wt, eps=1e-5)
    y.backward(g)
    ref, backward = norm_reference(x, w, b if center else None, 1e-5, center)
    dx, dw, db = backward(g)
    np.testing.assert_allclose(y.data, ref, **TOL)
    np.testing.assert_allclose(xt.grad.data, dx, **TOL)
    np.testing.assert_allclose(wt.grad.data, dw, **TOL)
    if center:
        np.testing.assert_allclose(bt.grad.data, db, **TOL)


@pytest.mark.parametrize("T", [7, 130])          # 130: the causal row blocks of the fast path
def test_attention_fast_paths_equal_reference(T, pool):
    rng = np.random.default_rng(T)
    B, H, D = 2, 2, 4
    qkv = rng.standard_normal((B, T, 3 * H * D))
    g = rng.standard_normal((B, T, H * D))
    q, k, v = (qkv[..., i * H * D:(i + 1) * H * D].reshape(B, T, H, D).transpose(0, 2, 1, 3) for i in range(3))
    ref, backward = attention_reference(q, k, v)
    dq, dk, dv = backward(g.reshape(B, T, H, D).transpose(0, 2, 1, 3))
    packed = sl.Tensor(qkv, requires_grad=True)
    y = F.qkv_attention(packed, H)
    y.backward(g)
    heads = lambda a: a.reshape(B, T, H, D).transpose(0, 2, 1, 3)  # noqa: E731
    np.testing.assert_allclose(heads(y.data), ref, **TOL)
    grads = packed.grad.data
    for i, want in enumerate((dq, dk, dv)):
        np.testing.assert_allclose(heads(grads[..., i * H * D:(i + 1) * H * D]), want, **TOL)
    qt, kt, vt = (sl.Tensor(a, requires_grad=True) for a in (q, k, v))
    out = F.scaled_dot_product_attention(qt, kt, vt, is_causal=True)
    out.backward(g.reshape(B, T, H, D).transpose(0, 2, 1, 3))
    np.testing.assert_allclose(out.data, ref, **TOL)
    for t, want in zip((qt, kt, vt), (dq, dk, dv)):
        np.testing.assert_allclose(t.grad.data, want, **TOL)


def test_cross_entropy_equals_reference():
    rng = np.random.default_rng(3)
    logits, targets = rng.standard_normal((40, 11)) * 3, rng.integers(0, 11, size=40)
    x = sl.Tensor(logits, requires_grad=True)
    loss = F.cross_entropy(x, targets)
    loss.backward()
    ref, dlogits = cross_entropy_reference(logits, targets)
    np.testing.assert_allclose(loss.item(), ref, **TOL)
    np.testing.assert_allclose(x.grad.data, dlogits, **TOL)


@pytest.mark.parametrize("opt, decoupled, wd", [(AdamW, True, 0.1), (Adam, False, 0.1), (Adam, False, 0.0)])
def test_adam_equals_reference(opt, decoupled, wd, pool):
    rng = np.random.default_rng(4)
    params = [sl.Tensor(rng.standard_normal(s), requires_grad=True) for s in ((300,), (20, 7))]
    ref = [(p.data.copy(), np.zeros_like(p.data), np.zeros_like(p.data)) for p in params]
    o = opt(params, lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=wd)
    for t in range(1, 4):
        grads = [rng.standard_normal(p.shape) for p in params]
        for p, g in zip(params, grads):
            p.grad = sl.Tensor(g)
        o.step()
        ref = [adam_reference(pr, g, m, v, t, 1e-2, 0.9, 0.95, 1e-8, wd, decoupled)
               for (pr, m, v), g in zip(ref, grads)]
    for p, (want, _, _) in zip(params, ref):
        np.testing.assert_allclose(p.data, want, rtol=1e-9, atol=1e-12)


def _graph(x, w, b):
    h = (x @ w + b).tanh()                  # b broadcast over rows
    return (h * h + h).sum() + (x * 2.0).mean()


def test_backward_walk_equals_reference():
    rng = np.random.default_rng(5)
    arrays = rng.standard_normal((6, 4)), rng.standard_normal((4, 3)), rng.standard_normal(3)
    fast = [sl.Tensor(a, requires_grad=True) for a in arrays]
    plain = [sl.Tensor(a, requires_grad=True) for a in arrays]
    _graph(*fast).backward()
    backward_reference(_graph(*plain))
    for f, p in zip(fast, plain):
        np.testing.assert_allclose(f.grad.data, p.grad.data, **TOL)
