"""Fused functional ops against torch.nn.functional: outputs and every input gradient."""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import assume, given, settings, strategies as st

import scratchllm as sl
from scratchllm.nn import functional as F

from ._helpers import DTYPES, compare

shapes = st.lists(st.integers(1, 5), min_size=1, max_size=3).map(tuple)
FAST = settings(max_examples=12, deadline=None)


def _rand(rng, shape, dtype, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
@FAST
@given(lead=shapes, n_in=st.integers(1, 7), n_out=st.integers(1, 7), seed=st.integers(0, 99))
def test_linear(dtype, bias, lead, n_in, n_out, seed):
    rng = np.random.default_rng(seed)
    arrays = [_rand(rng, lead + (n_in,), dtype), _rand(rng, (n_out, n_in), dtype)]
    if bias:
        arrays.append(_rand(rng, (n_out,), dtype))
    compare(F.linear, TF.linear, arrays, dtype, seed)


@pytest.mark.parametrize("dtype", DTYPES)
@FAST
@given(ids_shape=shapes, num=st.integers(1, 9), dim=st.integers(1, 6), seed=st.integers(0, 99))
def test_embedding_repeated_ids(dtype, ids_shape, num, dim, seed):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, num, ids_shape)
    w = _rand(rng, (num, dim), dtype)
    ts, tt = compare(lambda w: F.embedding(ids, w), lambda w: TF.embedding(torch.tensor(ids), w), [w], dtype, seed)


@pytest.mark.parametrize("dtype", DTYPES)
def test_embedding_many_ids_scatter(dtype):
    """Above the small-input threshold (the sorted-runs scatter-add), with heavy repeats."""
    rng = np.random.default_rng(0)
    ids = np.minimum(rng.zipf(1.3, (16, 40)), 50) - 1
    w = _rand(rng, (50, 8), dtype)
    compare(lambda w: F.embedding(sl.Tensor(ids), w), lambda w: TF.embedding(torch.tensor(ids), w), [w], dtype)


def test_embedding_out_of_range():
    with pytest.raises(IndexError, match=r"\[0, 4\)"):
        F.embedding(np.array([1, 4]), sl.Tensor(np.zeros((4, 2)), requires_grad=True))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("affine", ["both", "weight", "none"])
@FAST
@given(lead=shapes, norm=st.lists(st.integers(4, 8), min_size=1, max_size=2).map(tuple), seed=st.integers(0, 99))
def test_layer_norm(dtype, affine, lead, norm, seed):
    rng = np.random.default_rng(seed)
    arrays = [_rand(rng, lead + norm, dtype, 3.0) + 1.0]
    if affine != "none":
        arrays.append(_rand(rng, norm, dtype))
    if affine == "both":
        arrays.append(_rand(rng, norm, dtype))
    compare(lambda x, *wb: F.layer_norm(x, norm, *wb, eps=1e-5),
            lambda x, *wb: TF.layer_norm(x, norm, *wb, eps=1e-5), arrays, dtype, seed)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weight", [True, False])
@FAST
@given(lead=shapes, dim=st.integers(1, 9), seed=st.integers(0, 99), eps=st.sampled_from([None, 1e-6, 1e-5]))
def test_rms_norm(dtype, weight, lead, dim, seed, eps):
    """dim = 1 is float64 only: the output is +-w whatever x (up to eps), so the exact dx is
    eps-sized and float32 leaves only round-off, ours and torch's (each ~1e-6, unrelated)."""
    assume(dim != 1 or dtype == np.float64)
    rng = np.random.default_rng(seed)
    arrays = [_rand(rng, lead + (dim,), dtype, 2.0)]
    if weight:
        arrays.append(_rand(rng, (dim,), dtype))
    compare(lambda x, *w: F.rms_norm(x, (dim,), *w, eps=eps),
            lambda x, *w: TF.rms_norm(x, (dim,), *w, eps=eps), arrays, dtype, seed)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@FAST
@given(shape=shapes, seed=st.integers(0, 99), data=st.data())
def test_softmaxes(dtype, name, shape, seed, data):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = _rand(np.random.default_rng(seed), shape, dtype, 4.0)
    compare(lambda t: getattr(F, name)(t, dim), lambda t: getattr(TF, name)(t, dim), [x], dtype, seed)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu(dtype, approximate):
    x = _rand(np.random.default_rng(1), (7, 33), dtype, 3.0)
    compare(lambda t: F.gelu(t, approximate=approximate), lambda t: TF.gelu(t, approximate=approximate), [x], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["silu", "relu", "sigmoid", "tanh"])
def test_pointwise(dtype, name):
    x = _rand(np.random.default_rng(2), (5, 9), dtype, 3.0)
    compare(getattr(F, name), getattr(torch, name) if name != "silu" else TF.silu, [x], dtype)


def test_float32_stays_float32():
    rng = np.random.default_rng(0)
    x = sl.Tensor(_rand(rng, (2, 3, 8), np.float32), requires_grad=True)
    w = sl.Tensor(_rand(rng, (8,), np.float32), requires_grad=True)
    outs = [F.layer_norm(x, 8, w, w), F.rms_norm(x, 8, w), F.gelu(x, approximate="tanh"),
            F.linear(x, sl.Tensor(_rand(rng, (4, 8), np.float32), requires_grad=True))]
    for y in outs:
        assert y.dtype == np.float32
        y.backward(np.ones(y.shape, np.float32))
    assert x.grad.dtype == np.float32 and w.grad.dtype == np.float32


def test_dropout_seeded_and_off_in_eval():
    x = sl.Tensor(np.ones((50, 40), np.float32), requires_grad=True)
    a = F.dropout(x, 0.3, generator=sl.Generator(7))
    b = F.dropout(x, 0.3, generator=sl.Generator(7))
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    kept = a.numpy() != 0
    assert 0.6 < kept.mean() < 0.8
    np.testing.assert_allclose(a.numpy()[kept], 1 / 0.7, rtol=1e-6)
    a.backward(np.full(a.shape, 2.0, np.float32))
    np.testing.assert_allclose(x.grad.numpy(), 2.0 * a.numpy(), rtol=1e-6)  # same mask, same scale
    c = F.dropout(x, 0.3, generator=sl.Generator(8))
    assert (c.numpy() != a.numpy()).any()
    assert F.dropout(x, 0.3, training=False) is x
    assert not F.dropout(x, 1.0).numpy().any()
    sl.manual_seed(3); d1 = F.dropout(x, 0.5).numpy()
    sl.manual_seed(3); d2 = F.dropout(x, 0.5).numpy()
    np.testing.assert_array_equal(d1, d2)
    with pytest.raises(ValueError, match="probability"):
        F.dropout(x, 1.5)
