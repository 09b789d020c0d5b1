"""Reductions, cat, indexing and losses over drawn shapes with empty (0) and size-1 dimensions,
against torch: the same values, the same gradients, or an error where torch raises one."""
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given
from hypothesis import strategies as st

import scratchllm as sl
import scratchllm.nn.functional as F
from prop_helpers import PROPS, arrays, assert_same, compare, shapes

DTYPES = [np.float64, np.float32]


def quiet_empty():
    """The mean / variance of nothing is nan in both, each with its own warning: silence those."""
    warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)
    warnings.filterwarnings("ignore", r"var\(\): degrees of freedom", UserWarning)


REDUCTIONS = {
    "sum": (lambda t, d, k: t.sum(d, keepdim=k), lambda t, d, k: t.sum(d, keepdim=k)),
    "mean": (lambda t, d, k: t.mean(d, keepdim=k), lambda t, d, k: t.mean(d, keepdim=k)),
    "var": (lambda t, d, k: t.var(d, keepdim=k), lambda t, d, k: t.var(d, keepdim=k)),
    "amax": (lambda t, d, k: t.amax(d, keepdim=k), lambda t, d, k: t.amax(d, keepdim=k)),
    "max": (lambda t, d, k: t.max(d, keepdim=k)[0], lambda t, d, k: t.max(d, keepdim=k)[0]),
    "softmax": (lambda t, d, k: t.softmax(d), lambda t, d, k: t.softmax(d)),
    "log_softmax": (lambda t, d, k: t.log_softmax(d), lambda t, d, k: t.log_softmax(d)),
}


def _torch_raises(fn) -> bool:
    try:
        fn()
    except (RuntimeError, IndexError, ValueError):
        return True
    return False


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(REDUCTIONS))
@PROPS
@given(data=st.data())
def test_reductions_over_empty_and_unit_dims(name, dtype, data):
    shape = data.draw(shapes(min_dims=1, max_dims=3, min_side=0, max_side=3))
    x = data.draw(arrays(dtype, shape, lo=-10, hi=10, edges=False))
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    keep = data.draw(st.booleans())
    ours, ref = REDUCTIONS[name]
    with warnings.catch_warnings():
        quiet_empty()
        if _torch_raises(lambda: ref(torch.tensor(x), dim, keep)):       # e.g. max over an empty dim
            with pytest.raises((ValueError, IndexError, RuntimeError)):
                ours(sl.Tensor(x), dim, keep)
            return
        with np.errstate(all="ignore"):
            compare(lambda t: ours(t, dim, keep), lambda t: ref(t, dim, keep), x, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@PROPS
@given(data=st.data())
def test_cat_with_empty_and_unit_parts(dtype, data):
    shape = data.draw(shapes(min_dims=1, max_dims=3, min_side=0, max_side=3))
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    sizes = data.draw(st.lists(st.integers(0, 3), min_size=1, max_size=4))
    parts = []
    for n in sizes:
        s = list(shape)
        s[dim] = n
        parts.append(data.draw(arrays(dtype, tuple(s), lo=-10, hi=10, edges=False)))
    ts = [sl.Tensor(p, requires_grad=True) for p in parts]
    rs = [torch.tensor(p, requires_grad=True) for p in parts]
    out, ref = sl.cat(ts, dim), torch.cat(rs, dim)
    assert_same(out, ref, dtype, "cat")
    w = np.random.default_rng(0).standard_normal(ref.shape).astype(dtype)
    (out * sl.Tensor(w)).sum().backward()
    (ref * torch.tensor(w)).sum().backward()
    for t, r in zip(ts, rs):
        assert_same(t.grad, r.grad, dtype, "cat gradient")


@pytest.mark.parametrize("dtype", DTYPES)
@PROPS
@given(data=st.data())
def test_indexing_with_empty_unit_and_repeated_indices(dtype, data):
    shape = data.draw(shapes(min_dims=1, max_dims=3, min_side=0, max_side=4))
    x = data.draw(arrays(dtype, shape, lo=-10, hi=10, edges=False))
    kind = data.draw(st.sampled_from(["ints", "slice", "bool", "int"]))
    n = shape[0]
    if kind == "ints":       # a gather, maybe empty, maybe repeating (the backward must add them up)
        index = np.asarray(data.draw(st.lists(st.integers(-n, n - 1), max_size=5)) if n else [], dtype=np.int64)
    elif kind == "slice":
        lo, hi = data.draw(st.integers(-n - 1, n + 1)), data.draw(st.integers(-n - 1, n + 1))
        index = slice(lo, hi, data.draw(st.sampled_from([1, 2, 3])))   # torch has no negative steps
    elif kind == "bool":
        index = np.asarray(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    else:
        if n == 0:
            with pytest.raises(IndexError):
                sl.Tensor(x)[0]
            return
        index = data.draw(st.integers(-n, n - 1))
    tindex = torch.as_tensor(index) if isinstance(index, np.ndarray) else index
    compare(lambda t: t[index], lambda t: t[tindex], x, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@PROPS
@given(data=st.data())
def test_elementwise_losses_over_empty_and_unit_shapes(dtype, data):
    shape = data.draw(shapes(min_dims=1, max_dims=3, min_side=0, max_side=3))
    x = data.draw(arrays(dtype, shape, lo=-20, hi=20, edges=False))
    y = data.draw(arrays(dtype, shape, lo=0, hi=1, edges=False))
    reduction = data.draw(st.sampled_from(["mean", "sum", "none"]))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        quiet_empty()
        compare(lambda t: F.mse_loss(t, sl.Tensor(y), reduction=reduction),
                lambda t: TF.mse_loss(t, torch.tensor(y), reduction=reduction), x, dtype)
        compare(lambda t: F.binary_cross_entropy_with_logits(t, sl.Tensor(y), reduction=reduction),
                lambda t: TF.binary_cross_entropy_with_logits(t, torch.tensor(y), reduction=reduction), x, dtype)
