"""A tiny two-layer regression problem computed both with scratchllm and with torch.

Weights are shared as NumPy arrays so both sides start identical; gradients come from each
library's own autograd, so the optimizers are compared step for step on their own trajectory.
"""
import numpy as np
import torch

import scratchllm as sl
from scratchllm.nn.parameter import Parameter

SHAPES = {"w1": (8, 5), "b1": (8,), "w2": (3, 8), "b2": (3,)}
DECAY, NO_DECAY = ("w1", "w2"), ("b1", "b2")


def make_arrays(seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    weights = {k: rng.standard_normal(s).astype(dtype) * 0.5 for k, s in SHAPES.items()}
    x = rng.standard_normal((16, 5)).astype(dtype)
    y = rng.standard_normal((16, 3)).astype(dtype)
    return weights, x, y


def ours(weights):
    return {k: Parameter(v.copy()) for k, v in weights.items()}


def theirs(weights):
    return {k: torch.tensor(v.copy(), requires_grad=True) for k, v in weights.items()}


def loss_ours(p, x, y):
    h = (sl.Tensor(x) @ p["w1"].T + p["b1"]).tanh()
    d = h @ p["w2"].T + p["b2"] - sl.Tensor(y)
    return (d * d).mean()


def loss_theirs(p, x, y):
    h = torch.tanh(torch.from_numpy(x) @ p["w1"].T + p["b1"])
    d = h @ p["w2"].T + p["b2"] - torch.from_numpy(y)
    return (d * d).mean()


def groups(params, weight_decay):
    """Two parameter groups: weights decayed, biases not (the usual LLM recipe)."""
    return [{"params": [params[k] for k in DECAY], "weight_decay": weight_decay},
            {"params": [params[k] for k in NO_DECAY], "weight_decay": 0.0}]
