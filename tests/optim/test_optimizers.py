"""SGD, Adam and AdamW against torch.optim: 25 steps from identical weights, float64, rtol 1e-6.

Each case uses two parameter groups (weights decayed, biases not), and optionally
clip_grad_norm_ and the warmup+cosine schedule written into ``group["lr"]`` before each step.
"""
import numpy as np
import pytest
import torch

import scratchllm as sl
from scratchllm.nn.utils import clip_grad_norm_
from scratchllm.optim.schedules import warmup_cosine

from .problem import groups, loss_ours, loss_theirs, make_arrays, ours, theirs

STEPS = 25

CASES = [
    ("SGD", dict(lr=0.1), 0.0),
    ("SGD", dict(lr=0.05, momentum=0.9), 0.0),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3), 0.01),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True), 0.05),
    ("SGD", dict(lr=0.05, momentum=0.8, maximize=True), 0.01),
    ("Adam", dict(lr=0.02), 0.0),
    ("Adam", dict(lr=0.02, betas=(0.8, 0.95), eps=1e-6), 0.05),
    ("Adam", dict(lr=0.02, amsgrad=True), 0.05),
    ("AdamW", dict(lr=0.02), 0.1),
    ("AdamW", dict(lr=0.02, betas=(0.85, 0.99), amsgrad=True), 0.2),
]


def run(name, kwargs, weight_decay, clip=None, schedule=None, seed=0, steps=STEPS):
    weights, x, y = make_arrays(seed)
    p_ours, p_theirs = ours(weights), theirs(weights)
    opt_ours = getattr(sl.optim, name)(groups(p_ours, weight_decay), **kwargs)
    opt_theirs = getattr(torch.optim, name)(groups(p_theirs, weight_decay), **kwargs)
    for step in range(steps):
        if schedule is not None:
            lr = schedule(step)
            for g_ours, g_theirs in zip(opt_ours.param_groups, opt_theirs.param_groups):
                g_ours["lr"] = g_theirs["lr"] = lr
        loss_ours(p_ours, x, y).backward()
        loss_theirs(p_theirs, x, y).backward()
        if clip is not None:
            n_ours = clip_grad_norm_(list(p_ours.values()), clip)
            n_theirs = torch.nn.utils.clip_grad_norm_(list(p_theirs.values()), clip)
            np.testing.assert_allclose(n_ours, n_theirs.item(), rtol=1e-6)
        opt_ours.step()
        opt_theirs.step()
        opt_ours.zero_grad()
        opt_theirs.zero_grad()
    return p_ours, p_theirs, opt_ours, opt_theirs


def assert_same_params(p_ours, p_theirs, weights=None):
    for k in p_ours:
        np.testing.assert_allclose(p_ours[k].data, p_theirs[k].detach().numpy(), rtol=1e-6, atol=1e-12,
                                   err_msg=k)
        if weights is not None:  # the optimizer really moved the weights
            assert not np.allclose(p_ours[k].data, weights[k])


@pytest.mark.parametrize("name,kwargs,weight_decay", CASES)
def test_matches_torch(name, kwargs, weight_decay):
    p_ours, p_theirs, opt_ours, opt_theirs = run(name, kwargs, weight_decay)
    assert_same_params(p_ours, p_theirs, make_arrays(0)[0])
    # the buffers too, in torch's state_dict layout
    sd_ours, sd_theirs = opt_ours.state_dict(), opt_theirs.state_dict()
    assert sorted(sd_ours["state"]) == sorted(sd_theirs["state"])
    for idx, st in sd_theirs["state"].items():
        assert sorted(sd_ours["state"][idx]) == sorted(st)
        for key, value in st.items():
            np.testing.assert_allclose(sd_ours["state"][idx][key], value.numpy(), rtol=1e-6, atol=1e-12)
    assert [g["params"] for g in sd_ours["param_groups"]] == [g["params"] for g in sd_theirs["param_groups"]]


@pytest.mark.parametrize("name,kwargs,weight_decay", [CASES[3], CASES[7], CASES[9]])
def test_matches_torch_with_clipping_and_schedule(name, kwargs, weight_decay):
    max_lr = kwargs["lr"]

    def schedule(step):
        return warmup_cosine(step, max_lr=max_lr, warmup_steps=5, max_steps=20, min_lr=0.1 * max_lr)

    p_ours, p_theirs, _, _ = run(name, kwargs, weight_decay, clip=0.5, schedule=schedule)
    assert_same_params(p_ours, p_theirs, make_arrays(0)[0])


def test_lambda_lr_matches_torch():
    weights, _, _ = make_arrays(0)
    p_ours, p_theirs = ours(weights), theirs(weights)
    opt_ours = sl.optim.AdamW(groups(p_ours, 0.1), lr=1e-3)
    opt_theirs = torch.optim.AdamW(groups(p_theirs, 0.1), lr=1e-3)
    opt_ours.param_groups[1]["lr"] = opt_theirs.param_groups[1]["lr"] = 2e-3

    def factor(step):
        return warmup_cosine(step, 1.0, warmup_steps=3, max_steps=10, min_lr=0.1)

    s_ours = sl.optim.LambdaLR(opt_ours, factor)
    s_theirs = torch.optim.lr_scheduler.LambdaLR(opt_theirs, factor)
    for _ in range(12):
        assert s_ours.get_last_lr() == pytest.approx(s_theirs.get_last_lr(), rel=1e-15)
        opt_theirs.step()
        s_ours.step()
        s_theirs.step()


def test_float32_stays_float32_and_matches_torch():
    weights, x, y = make_arrays(1, dtype=np.float32)
    p_ours, p_theirs = ours(weights), theirs(weights)
    opt_ours = sl.optim.AdamW(groups(p_ours, 0.1), lr=0.01, amsgrad=True)
    opt_theirs = torch.optim.AdamW(groups(p_theirs, 0.1), lr=0.01, amsgrad=True)
    for _ in range(10):
        loss_ours(p_ours, x, y).backward()
        loss_theirs(p_theirs, x, y).backward()
        opt_ours.step()
        opt_theirs.step()
        opt_ours.zero_grad()
        opt_theirs.zero_grad()
    for k in p_ours:
        assert p_ours[k].data.dtype == np.float32
        assert all(v.dtype == np.float32 for v in opt_ours.state[p_ours[k]].values())
        np.testing.assert_allclose(p_ours[k].data, p_theirs[k].detach().numpy(), rtol=1e-4, atol=1e-6)
