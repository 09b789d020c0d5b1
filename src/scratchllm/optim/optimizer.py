"""``Optimizer``: the base class, with PyTorch's ``param_groups`` and ``state_dict`` layout.

A parameter group is a dict: ``{"params": [Parameter, ...], "lr": ..., ...}``. Options a group
leaves out are filled from the optimizer's ``defaults``, so norms and biases can get their own
``weight_decay`` and a schedule can set ``group["lr"]`` before every step:

>>> opt = AdamW([{"params": decay, "weight_decay": 0.1},
...              {"params": no_decay, "weight_decay": 0.0}], lr=3e-4)
>>> for group in opt.param_groups:
...     group["lr"] = warmup_cosine(step, 3e-4, 100, 5000, 3e-5)

``state_dict()`` numbers the parameters 0, 1, 2, ... in group order (as torch does), so it holds
no references to the parameters themselves and can be saved as plain arrays.
"""
from __future__ import annotations

import copy

from ..autograd.tensor import Tensor
from ..backend import xp


class Optimizer:
    """Base class: keeps ``param_groups``, ``defaults`` and per-parameter ``state``."""

    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        self.state: dict = {}          # parameter -> {"step": ..., "exp_avg": array, ...}
        self.param_groups: list = []
        self._scratch: dict = {}       # (dtype, slot) -> flat temporary reused by every step
        if hasattr(params, "data") and hasattr(params, "grad"):
            raise TypeError("params argument given to the optimizer should be an iterable of Tensors "
                            "or dicts, but got a single Tensor")
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def __repr__(self) -> str:
        lines = [self.__class__.__name__ + " ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines.extend(f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params")
        return "\n".join(lines) + "\n)"

    def add_param_group(self, param_group: dict) -> None:
        """Add a group (a dict with ``"params"``); missing options come from ``defaults``."""
        if not isinstance(param_group, dict):
            raise TypeError(f"a parameter group must be a dict, got {type(param_group).__name__}")
        group = dict(param_group)
        params = group["params"]
        if hasattr(params, "data") and hasattr(params, "grad"):
            params = [params]
        group["params"] = list(params)
        for p in group["params"]:
            if not (hasattr(p, "data") and hasattr(p, "grad")):
                raise TypeError(f"optimizer can only optimize Tensors, got {type(p).__name__}")
            if not p.requires_grad:
                raise ValueError("optimizer can only optimize Tensors that require grad")
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if len({id(p) for p in group["params"]}) != len(group["params"]) or any(
                id(p) in seen for p in group["params"]):
            raise ValueError("some parameters appear more than once in the optimizer's parameter groups")
        self.param_groups.append(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop the gradients (``None``, the default) or fill them with zeros in place."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.data[...] = 0

    def step(self) -> None:
        raise NotImplementedError

    # --------------------------------------------------------------- temporaries
    def _tmp(self, like, slot: int = 0):
        """A scratch array shaped like ``like`` (a view into one buffer reused across steps)."""
        key = (like.dtype.str, slot)
        buf = self._scratch.get(key)
        if buf is None or buf.size < like.size:
            buf = self._scratch[key] = xp.empty(like.size, dtype=like.dtype)
        return buf[:like.size].reshape(like.shape)

    # ---------------------------------------------------------------- state dict
    def state_dict(self) -> dict:
        """``{"state": {index: {name: array}}, "param_groups": [{..., "params": [index, ...]}]}``.

        Arrays are copies, so the dict is a snapshot that later steps do not change.
        """
        index, groups, n = {}, [], 0
        for group in self.param_groups:
            packed = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
            packed["params"] = list(range(n, n + len(group["params"])))
            for i, p in enumerate(group["params"]):
                index[id(p)] = n + i
            n += len(group["params"])
            groups.append(packed)
        from ..device import to_host
        state = {}
        for p, s in self.state.items():                    # host copies: checkpoints are device-independent
            state[index[id(p)]] = {k: xp.array(to_host(v), copy=True) for k, v in s.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore options and buffers saved by ``state_dict()`` (groups must match in sizes)."""
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"loaded state dict has {len(saved_groups)} parameter groups, "
                             f"the optimizer has {len(self.param_groups)}")
        for i, (ours, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if len(ours["params"]) != len(saved["params"]):
                raise ValueError(f"parameter group {i}: the loaded state dict has {len(saved['params'])} "
                                 f"parameters, the optimizer has {len(ours['params'])}")
        saved_state = {int(k): v for k, v in state_dict["state"].items()}
        self.state = {}
        for ours, saved in zip(self.param_groups, saved_groups):
            for p, idx in zip(ours["params"], saved["params"]):
                if int(idx) in saved_state:
                    self.state[p] = {k: _cast_state(k, v, p) for k, v in saved_state[int(idx)].items()}
            params = ours["params"]
            ours.clear()
            ours.update({k: copy.deepcopy(v) for k, v in saved.items() if k != "params"})
            ours["params"] = params


def _cast_state(key: str, value, p):
    """Buffers take the parameter's dtype and shape (as torch casts them); ``step`` stays a count."""
    from ..device import to_device, to_host
    arr = xp.array(to_host(value.data if isinstance(value, Tensor) else value), copy=True)
    if key == "step":
        return arr.astype(xp.float32)
    if arr.shape != p.data.shape:
        raise ValueError(f"optimizer state '{key}' has shape {arr.shape}, its parameter has shape "
                         f"{p.data.shape}")
    return to_device(arr.astype(p.data.dtype, copy=False), p.device)   # the parameter's device
