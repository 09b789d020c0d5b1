"""Optimizer plumbing: state_dict round trips (ours and torch's), gradient accumulation,
zero_grad, parameter groups and argument errors."""
import numpy as np
import pytest
import torch

import scratchllm as sl
from scratchllm.nn.parameter import Parameter

from .problem import groups, loss_ours, loss_theirs, make_arrays, ours, theirs


def train(opt, params, x, y, steps):
    for _ in range(steps):
        loss_ours(params, x, y).backward()
        opt.step()
        opt.zero_grad()


@pytest.mark.parametrize("name,kwargs", [("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
                                         ("Adam", dict(lr=0.02, amsgrad=True)),
                                         ("AdamW", dict(lr=0.02))])
def test_state_dict_round_trip_continues_identically(name, kwargs):
    weights, x, y = make_arrays(2)
    a = ours(weights)
    opt_a = getattr(sl.optim, name)(groups(a, 0.05), **kwargs)
    train(opt_a, a, x, y, 10)
    sd = opt_a.state_dict()
    # a fresh model from the mid-training weights + a fresh optimizer loaded from the state dict
    b = ours({k: v.data for k, v in a.items()})
    opt_b = getattr(sl.optim, name)(groups(b, 0.0), lr=123.0)
    opt_b.load_state_dict(sd)
    assert opt_b.param_groups[0]["weight_decay"] == 0.05 and opt_b.param_groups[0]["lr"] == kwargs["lr"]
    train(opt_a, a, x, y, 15)     # the snapshot must not follow these steps
    train(opt_b, b, x, y, 15)
    for k in a:
        np.testing.assert_array_equal(a[k].data, b[k].data)
    assert not any(np.shares_memory(v, opt_a.state[a["w1"]][key])
                   for key, v in sd["state"][0].items() if key != "step")


def test_loads_torch_state_dict_and_continues_like_torch():
    weights, x, y = make_arrays(3)
    t = theirs(weights)
    opt_t = torch.optim.AdamW(groups(t, 0.1), lr=0.01)
    for _ in range(5):
        loss_theirs(t, x, y).backward()
        opt_t.step()
        opt_t.zero_grad()
    sd_t = opt_t.state_dict()
    sd = {"state": {i: {k: v.numpy() for k, v in s.items()} for i, s in sd_t["state"].items()},
          "param_groups": [dict(g) for g in sd_t["param_groups"]]}
    o = ours({k: v.detach().numpy() for k, v in t.items()})
    opt_o = sl.optim.AdamW(groups(o, 0.1), lr=0.01)
    opt_o.load_state_dict(sd)
    for _ in range(10):
        loss_theirs(t, x, y).backward()
        opt_t.step()
        opt_t.zero_grad()
    train(opt_o, o, x, y, 10)
    for k in o:
        np.testing.assert_allclose(o[k].data, t[k].detach().numpy(), rtol=1e-6)


@pytest.mark.parametrize("name", ["SGD", "AdamW"])
def test_gradient_accumulation_equals_full_batch(name):
    weights, x, y = make_arrays(4)
    full, accum = ours(weights), ours(weights)
    opt_full = getattr(sl.optim, name)(full.values(), lr=0.05)
    opt_accum = getattr(sl.optim, name)(accum.values(), lr=0.05)
    for _ in range(3):
        loss_ours(full, x, y).backward()
        for i in range(4):  # 4 micro-batches of 4 rows, no zero_grad in between
            (loss_ours(accum, x[4 * i:4 * i + 4], y[4 * i:4 * i + 4]) * 0.25).backward()
        for k in full:
            np.testing.assert_allclose(accum[k].grad.data, full[k].grad.data, rtol=1e-12, atol=1e-15)
        opt_full.step()
        opt_accum.step()
        opt_full.zero_grad()
        opt_accum.zero_grad()
    for k in full:
        np.testing.assert_allclose(accum[k].data, full[k].data, rtol=1e-12)


def test_zero_grad_modes_and_params_without_grad_are_skipped():
    a, b = Parameter(np.ones(3)), Parameter(np.ones(2))
    opt = sl.optim.SGD([a, b], lr=0.5, momentum=0.9)
    (a * a).sum().backward()
    opt.step()
    np.testing.assert_array_equal(b.data, np.ones(2))      # no grad: untouched, no state
    assert b not in opt.state and a in opt.state
    np.testing.assert_array_equal(a.data, np.zeros(3))     # 1 - 0.5 * 2
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(a.grad.data, np.zeros(3))
    opt.zero_grad()
    assert a.grad is None


def test_param_groups_defaults_and_errors():
    a, b = Parameter(np.ones(3)), Parameter(np.ones(2))
    opt = sl.optim.AdamW([{"params": [a]}, {"params": b, "lr": 0.5, "weight_decay": 0.0}], lr=0.1)
    assert opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[0]["weight_decay"] == 0.01
    assert opt.param_groups[1]["lr"] == 0.5 and opt.param_groups[1]["weight_decay"] == 0.0
    assert opt.param_groups[1]["betas"] == (0.9, 0.999)
    with pytest.raises(ValueError, match="more than once"):
        sl.optim.SGD([{"params": [a]}, {"params": [a]}], lr=0.1)
    with pytest.raises(ValueError, match="empty"):
        sl.optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match="single Tensor"):
        sl.optim.SGD(a, lr=0.1)
    with pytest.raises(ValueError, match="Nesterov"):
        sl.optim.SGD([a], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="beta"):
        sl.optim.Adam([a], betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="groups"):
        sl.optim.SGD([a], lr=0.1).load_state_dict(opt.state_dict())
