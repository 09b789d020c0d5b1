"""clip_grad_norm_ against torch.nn.utils.clip_grad_norm_, and the learning-rate schedules."""
import math

import numpy as np
import pytest
import torch

from scratchllm.nn.parameter import Parameter
from scratchllm.nn.utils import clip_grad_norm_
from scratchllm.optim.schedules import constant, set_lr, warmup_cosine
import scratchllm as sl

SHAPES = [(4, 3), (7,), (2, 3, 5), ()]


def _pair(seed, dtype, scale):
    rng = np.random.default_rng(seed)
    ours, theirs = [], []
    for shape in SHAPES:
        w, g = rng.standard_normal(shape).astype(dtype), (rng.standard_normal(shape) * scale).astype(dtype)
        p = Parameter(w)
        p.grad = sl.Tensor(g.copy())
        t = torch.tensor(w, requires_grad=True)
        t.grad = torch.tensor(g.copy())
        ours.append(p)
        theirs.append(t)
    return ours, theirs


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
@pytest.mark.parametrize("max_norm", [0.3, 1e6])
@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-7), (np.float32, 1e-5)])
def test_clip_grad_norm_matches_torch(norm_type, max_norm, dtype, rtol):
    ours, theirs = _pair(0, dtype, 2.0)
    total = clip_grad_norm_(ours, max_norm, norm_type=norm_type)
    expected = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type=norm_type)
    assert isinstance(total, float)
    np.testing.assert_allclose(total, expected.item(), rtol=rtol)
    for p, t in zip(ours, theirs):
        assert p.grad.data.dtype == dtype
        np.testing.assert_allclose(p.grad.data, t.grad.numpy(), rtol=rtol, atol=1e-12)


def test_clip_grad_norm_really_clips_and_skips_missing_grads():
    ours, _ = _pair(1, np.float64, 5.0)
    ours.append(Parameter(np.ones(3)))            # no grad: ignored
    before = clip_grad_norm_(ours, 1.0)
    assert before > 1.0
    after = math.sqrt(sum(float((p.grad.data ** 2).sum()) for p in ours if p.grad is not None))
    assert after == pytest.approx(1.0, rel=1e-5)
    assert clip_grad_norm_([Parameter(np.ones(2))], 1.0) == 0.0
    bad = Parameter(np.ones(2))
    bad.grad = sl.Tensor(np.array([np.nan, 1.0]))
    with pytest.raises(RuntimeError, match="non-finite"):
        clip_grad_norm_([bad], 1.0, error_if_nonfinite=True)


def test_warmup_cosine_shape():
    lrs = [warmup_cosine(s, max_lr=1.0, warmup_steps=10, max_steps=110, min_lr=0.1) for s in range(130)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)   # linear warmup
    assert all(b > a for a, b in zip(lrs[:9], lrs[1:10]))
    assert lrs[10] == pytest.approx(1.0)
    assert lrs[60] == pytest.approx(0.55)                                   # half way: the midpoint
    assert all(b <= a for a, b in zip(lrs[10:110], lrs[11:111]))           # monotone decay
    assert lrs[110:] == [0.1] * 20                                          # then the floor
    assert lrs[35] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.25)))
    assert constant(7, 3e-4) == 3e-4


def test_set_lr_writes_every_group():
    a, b = Parameter(np.ones(2)), Parameter(np.ones(2))
    opt = sl.optim.SGD([{"params": [a]}, {"params": [b], "lr": 9.0}], lr=1.0)
    set_lr(opt, 0.25)
    assert [g["lr"] for g in opt.param_groups] == [0.25, 0.25]
    (a.sum() + b.sum()).backward()
    opt.step()
    np.testing.assert_array_equal(a.data, [0.75, 0.75])
