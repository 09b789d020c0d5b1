"""Losses against torch: cross_entropy (every option, together), mse_loss, BCE with logits."""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings, strategies as st

import scratchllm as sl
from scratchllm.nn import functional as F

from ._helpers import DTYPES, compare


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@settings(max_examples=15, deadline=None)
@given(lead=st.sampled_from([(7,), (2, 5), (1, 1)]), C=st.integers(1, 9), smoothing=st.sampled_from([0.0, 0.1, 0.6]),
       ignore=st.booleans(), seed=st.integers(0, 99))
def test_cross_entropy(dtype, reduction, lead, C, smoothing, ignore, seed):
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal(lead + (C,)) * 3).astype(dtype)
    target = rng.integers(0, C, lead)
    if ignore:
        target.flat[0] = -100
        if target.size > 2:
            target.flat[2] = -100

    def ours(x):
        return F.cross_entropy(x, target, reduction=reduction, label_smoothing=smoothing)

    def ref(x):  # torch wants classes in dim 1: flatten (B, T, C) -> (B*T, C)
        out = TF.cross_entropy(x.reshape(-1, C), torch.tensor(target.reshape(-1)), reduction=reduction,
                               label_smoothing=smoothing)
        return out.reshape(lead) if reduction == "none" else out

    if ignore and reduction == "mean" and target.size == 1:
        assert np.isnan(ours(sl.Tensor(logits)).item()) and torch.isnan(ref(torch.tensor(logits)))
        return
    compare(ours, ref, [logits], dtype, seed)


def test_cross_entropy_custom_ignore_index_and_errors():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 4))
    t = np.array([0, 3, 3, 1, 3, 2])
    compare(lambda a: F.cross_entropy(a, t, ignore_index=3, label_smoothing=0.2),
            lambda a: TF.cross_entropy(a, torch.tensor(t), ignore_index=3, label_smoothing=0.2), [x], np.float64)
    with pytest.raises(IndexError, match="out of range for 4 classes"):
        F.cross_entropy(sl.Tensor(x), np.array([0, 4, 1, 1, 1, 1]))
    with pytest.raises(ValueError, match="shape"):
        F.cross_entropy(sl.Tensor(x), np.array([0, 1]))
    with pytest.raises(ValueError, match="reduction"):
        F.cross_entropy(sl.Tensor(x), t, reduction="avg")


def test_cross_entropy_large_logits_stable():
    x = np.array([[1000.0, -1000.0, 0.0]], np.float32)
    loss = F.cross_entropy(sl.Tensor(x, requires_grad=True), np.array([1]))
    assert np.isfinite(loss.item()) and abs(loss.item() - 2000.0) < 1e-2


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss(dtype, reduction):
    rng = np.random.default_rng(1)
    a, b = (rng.standard_normal((3, 4)).astype(dtype) for _ in range(2))
    compare(lambda x, y: F.mse_loss(x, y, reduction=reduction), lambda x, y: TF.mse_loss(x, y, reduction=reduction),
            [a, b], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_bce_with_logits(dtype, reduction, weighted):
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((5, 3)) * 4).astype(dtype)
    y = rng.random((5, 3)).astype(dtype)
    w = rng.random((5, 3)).astype(dtype) if weighted else None
    pw = (rng.random(3) * 3).astype(dtype) if weighted else None
    compare(lambda a, b: F.binary_cross_entropy_with_logits(a, b, weight=w, pos_weight=pw, reduction=reduction),
            lambda a, b: TF.binary_cross_entropy_with_logits(
                a, b, weight=None if w is None else torch.tensor(w),
                pos_weight=None if pw is None else torch.tensor(pw), reduction=reduction),
            [x, y], dtype)
