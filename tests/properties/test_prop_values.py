"""Fused ops over drawn *values* (nan, inf, near-overflow, subnormals), against torch."""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given
from hypothesis import strategies as st

import scratchllm as sl
import scratchllm.nn.functional as F
from prop_helpers import PROPS, arrays, compare, shapes

DTYPES = [np.float64, np.float32]
BIG = float(np.float32(3e38))          # near float32's largest, exact in both widths
ROWS = shapes(min_dims=1, max_dims=3, min_side=1, max_side=5)     # softmax dims: at least one element


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["exp", "log", "tanh", "sigmoid", "relu", "silu"])
@PROPS
@given(data=st.data())
def test_elementwise_with_nan_inf_and_overflow(name, dtype, data):
    x = data.draw(arrays(dtype, shapes(max_side=5), lo=-1e3, hi=1e3, nonfinite=True))
    if name == "relu":                  # relu's gradient at nan is a convention (torch passes g through)
        x = np.nan_to_num(x, nan=1.0, posinf=np.inf, neginf=-np.inf)
    ours = {"exp": lambda t: t.exp(), "log": lambda t: t.log(), "tanh": lambda t: t.tanh(),
            "sigmoid": lambda t: t.sigmoid(), "relu": lambda t: t.relu(), "silu": F.silu}[name]
    ref = {"exp": torch.exp, "log": torch.log, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
           "relu": torch.relu, "silu": TF.silu}[name]
    with np.errstate(all="ignore"):
        compare(ours, ref, x, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@PROPS
@given(data=st.data())
def test_softmaxes_near_overflow_and_with_infs(name, dtype, data):
    shape = data.draw(ROWS)
    x = data.draw(arrays(dtype, shape, lo=-1e4, hi=1e4, nonfinite=data.draw(st.booleans())))
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    ours = (lambda t: F.softmax(t, dim)) if name == "softmax" else (lambda t: F.log_softmax(t, dim))
    ref = (lambda t: torch.softmax(t, dim)) if name == "softmax" else (lambda t: torch.log_softmax(t, dim))
    with np.errstate(all="ignore"):
        compare(ours, ref, x, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@PROPS
@given(data=st.data())
def test_cross_entropy_huge_logits_any_shape(dtype, data):
    lead = data.draw(shapes(min_dims=1, max_dims=2, min_side=0, max_side=4))   # (N,) or (B, T), maybe empty
    C = data.draw(st.integers(1, 6))
    # logits up to the largest floats: -log p must be log(s) - (x[y] - max), not (max + log s) - x[y]
    # (which cancels: x = [1e30, 1e30] gave 0 for log 2, float32 [4096, 4096] was 3e-4 off)
    x = data.draw(arrays(dtype, lead + (C,), lo=-BIG, hi=BIG))
    target = np.asarray(data.draw(st.lists(st.integers(-1, C - 1), min_size=int(np.prod(lead)),
                                           max_size=int(np.prod(lead))))).reshape(lead).astype(np.int64)
    reduction = data.draw(st.sampled_from(["mean", "sum", "none"]))
    smoothing = data.draw(st.sampled_from([0.0, 0.1]))
    kw = dict(ignore_index=-1, reduction=reduction, label_smoothing=smoothing)
    with np.errstate(all="ignore"):
        compare(lambda t: F.cross_entropy(t, target, **kw),
                lambda t: TF.cross_entropy(t.reshape(-1, C), torch.as_tensor(target).reshape(-1), **kw)
                .reshape(lead if reduction == "none" else ()), x, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ["huge_logits", "all_ignored", "constant_row"])
def test_cases_the_properties_found(case, dtype):
    """Pinned: huge logits (loss 0 for log 2; float32 [4096, 4096] 3e-4 off), a mean over no
    targets (loss nan as torch, but the gradient was nan for torch's 0) and a constant row far
    from 0 in layer_norm (float32: the mean 1 ulp off, outputs 0.01 off the bias)."""
    if case == "constant_row":
        x, b = np.full((2, 3), 128.05922, dtype), np.array([0.5, -1.0, 2.0], dtype)
        compare(lambda t: F.layer_norm(t, 3, None, sl.Tensor(b)),
                lambda t: TF.layer_norm(t.double(), (3,), None, torch.tensor(b).double()).to(t.dtype), x, dtype)
        return
    x, target = ((np.array([[1e30, 1e30], [4096, 4096]], dtype), np.array([0, 1]))
                 if case == "huge_logits" else (np.ones((3, 4), dtype), np.full(3, -1)))
    for smoothing in (0.0, 0.1):
        kw = dict(ignore_index=-1, label_smoothing=smoothing, reduction="none" if case == "huge_logits" else "mean")
        with np.errstate(all="ignore"):
            compare(lambda t: F.cross_entropy(t, target, **kw),
                    lambda t: TF.cross_entropy(t, torch.as_tensor(target), **kw), x, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["layer_norm", "rms_norm"])
@PROPS
@given(data=st.data())
def test_norms_over_wide_values(name, dtype, data):
    shape = data.draw(ROWS)
    D = shape[-1]
    x = data.draw(arrays(dtype, shape, lo=-1e4, hi=1e4, edges=False))
    # the oracle runs in float64 (cast back): torch's float32 gradient of a constant row is
    # round-off (D=1: 7.6e-6 where the exact value is 0)
    ref64 = (lambda f: lambda t: f(t.double()).to(t.dtype))
    w = np.random.default_rng(D).standard_normal(D).astype(dtype)
    if name == "layer_norm":
        b = np.random.default_rng(D + 1).standard_normal(D).astype(dtype)
        compare(lambda t: F.layer_norm(t, (D,), sl.Tensor(w), sl.Tensor(b), eps=1e-5),
                ref64(lambda t: TF.layer_norm(t, (D,), torch.tensor(w, dtype=torch.float64),
                                              torch.tensor(b, dtype=torch.float64), eps=1e-5)), x, dtype)
    else:
        compare(lambda t: F.rms_norm(t, (D,), sl.Tensor(w), eps=1e-5),
                ref64(lambda t: TF.rms_norm(t, (D,), torch.tensor(w, dtype=torch.float64), eps=1e-5)), x, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("approximate", ["none", "tanh"])
@PROPS
@given(data=st.data())
def test_gelu_with_nan_inf(approximate, dtype, data):
    # no values near the largest floats: torch's exact GELU overflows 0.5 * x * (1 + erf) there
    x = data.draw(arrays(dtype, shapes(max_side=6), lo=-30, hi=30, nonfinite=True, edges=False))
    with np.errstate(all="ignore"):
        # oracle in float64 (cast back): torch's float32 exact GELU gives nan at +inf, its float64 inf
        compare(lambda t: F.gelu(t, approximate=approximate),
                lambda t: TF.gelu(t.double(), approximate=approximate).to(t.dtype), x, dtype)
