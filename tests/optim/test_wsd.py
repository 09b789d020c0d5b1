"""Warmup-stable-decay (WSD) schedule and ``set_lr``'s per-group ``lr_scale``."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scratchllm.nn.parameter import Parameter
from scratchllm.optim import SGD, set_lr, warmup_cosine, warmup_stable_decay


def test_wsd_worked_example():
    lrs = [warmup_stable_decay(s, 1.0, 2, 10, 0.1, decay_frac=0.4) for s in range(12)]
    np.testing.assert_allclose(lrs, [0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.775, 0.55, 0.325, 0.1, 0.1], rtol=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 50), st.integers(1, 400), st.floats(0.0, 1.0), st.floats(0.0, 0.9))
def test_wsd_shape(warmup, max_steps, decay_frac, min_ratio):
    warmup = min(warmup, max_steps)                 # (the trainer never warms up past the end)
    lr, min_lr = 3e-3, 3e-3 * min_ratio
    lrs = [warmup_stable_decay(s, lr, warmup, max_steps, min_lr, decay_frac) for s in range(max_steps + 3)]
    assert all(min_lr - 1e-15 <= v <= lr + 1e-15 for v in lrs[warmup:])
    assert lrs[max_steps] == min_lr and lrs[-1] == min_lr
    after = lrs[min(warmup, max_steps):max_steps + 1]
    assert all(a >= b - 1e-15 for a, b in zip(after, after[1:]))     # never rises after the warmup
    d0 = max(warmup, max_steps - round(decay_frac * max_steps))
    if warmup <= d0 < max_steps:                                      # held flat until the decay starts
        assert lrs[warmup:d0 + 1] == [lr] * (d0 + 1 - warmup)
    if warmup:
        assert lrs[:warmup] == [warmup_cosine(s, lr, warmup, max_steps, min_lr) for s in range(warmup)]


def test_wsd_rejects_bad_fraction():
    with pytest.raises(ValueError, match="decay_frac"):
        warmup_stable_decay(0, 1.0, 0, 10, decay_frac=1.5)


def test_set_lr_applies_group_scale():
    a, b = Parameter(np.zeros(2)), Parameter(np.zeros(2))
    opt = SGD([{"params": [a], "lr_scale": 10.0}, {"params": [b]}], lr=0.1)
    set_lr(opt, 0.003)
    assert math.isclose(opt.param_groups[0]["lr"], 0.03) and opt.param_groups[1]["lr"] == 0.003
