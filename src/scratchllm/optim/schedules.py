"""Learning-rate schedules: plain functions ``step -> lr`` and a ``LambdaLR`` that applies one.

A schedule is just a function of the step; write its value into every group before the step:

>>> for step in range(max_steps):
...     set_lr(opt, warmup_cosine(step, max_lr=6e-4, warmup_steps=100, max_steps=5000, min_lr=6e-5))
...     loss = ...; loss.backward(); opt.step(); opt.zero_grad()

or let ``LambdaLR`` do it with a multiplier of each group's initial lr (torch's semantics).
"""
from __future__ import annotations

import math


def constant(step: int, lr: float) -> float:
    """The same learning rate at every step."""
    return float(lr)


def warmup_cosine(step: int, max_lr: float, warmup_steps: int, max_steps: int,
                  min_lr: float = 0.0) -> float:
    """Linear warmup to ``max_lr``, then a half cosine down to ``min_lr`` at ``max_steps``.

    Warmup: ``max_lr * (step + 1) / warmup_steps`` for ``step < warmup_steps`` (never 0 at step 0,
    exactly ``max_lr`` at the last warmup step). Then ``min_lr + (max_lr - min_lr) * 0.5 *
    (1 + cos(pi * r))`` with ``r = (step - warmup_steps) / (max_steps - warmup_steps)``; after
    ``max_steps`` it stays at ``min_lr``.

    >>> [round(warmup_cosine(s, 1.0, 2, 6, 0.0), 3) for s in range(8)]
    [0.5, 1.0, 1.0, 0.854, 0.5, 0.146, 0.0, 0.0]
    """
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= max_steps:
        return float(min_lr)
    ratio = (step - warmup_steps) / max(1, max_steps - warmup_steps)
    return min_lr + (max_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * ratio))


def warmup_stable_decay(step: int, max_lr: float, warmup_steps: int, max_steps: int,
                        min_lr: float = 0.0, decay_frac: float = 0.2) -> float:
    """Warmup-stable-decay (WSD): linear warmup, ``max_lr`` held, then a linear decay to ``min_lr``
    over the last ``decay_frac`` of ``max_steps`` (modded-nanogpt's speedrun schedule).

    Warmup as ``warmup_cosine``. The decay starts at ``d0 = max_steps - round(decay_frac * max_steps)``
    (never before the warmup ends): ``lr = max_lr + (min_lr - max_lr) * (step - d0) / (max_steps - d0)``,
    reaching ``min_lr`` at ``max_steps`` and staying there.

    >>> [round(warmup_stable_decay(s, 1.0, 2, 10, 0.0, decay_frac=0.4), 2) for s in range(11)]
    [0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0]
    """
    if not 0.0 <= decay_frac <= 1.0:
        raise ValueError(f"warmup_stable_decay: decay_frac must be in [0, 1], got {decay_frac}")
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= max_steps:
        return float(min_lr)
    d0 = max(warmup_steps, max_steps - round(decay_frac * max_steps))
    if step < d0:
        return float(max_lr)
    return max_lr + (min_lr - max_lr) * (step - d0) / max(1, max_steps - d0)


def set_lr(optimizer, lr: float) -> None:
    """Write ``lr`` into every parameter group of ``optimizer``, times the group's ``lr_scale``
    when it has one (e.g. Muon's matrices at ``muon_lr / lr``, so one schedule drives both)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group["lr_scale"] if "lr_scale" in group else lr


class LambdaLR:
    """Each group's lr = its initial lr * ``lr_lambda(step)`` (as ``torch.optim.lr_scheduler.LambdaLR``).

    The constructor applies step 0; every ``step()`` afterwards moves to the next step.

    >>> sched = LambdaLR(opt, lambda s: warmup_cosine(s, 1.0, 100, 5000, 0.1))
    >>> opt.step(); sched.step()
    """

    def __init__(self, optimizer, lr_lambda, last_epoch: int = -1):
        self.optimizer = optimizer
        n = len(optimizer.param_groups)
        self.lr_lambdas = list(lr_lambda) if isinstance(lr_lambda, (list, tuple)) else [lr_lambda] * n
        if len(self.lr_lambdas) != n:
            raise ValueError(f"expected {n} lr_lambdas (one per parameter group), got {len(self.lr_lambdas)}")
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self.step()

    def get_last_lr(self) -> list:
        return [group["lr"] for group in self.optimizer.param_groups]

    def step(self) -> None:
        self.last_epoch += 1
        for group, base, fn in zip(self.optimizer.param_groups, self.base_lrs, self.lr_lambdas):
            group["lr"] = base * fn(self.last_epoch)

    def state_dict(self) -> dict:
        return {"last_epoch": self.last_epoch, "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state: dict) -> None:
        self.last_epoch = int(state["last_epoch"])
        self.base_lrs = list(state["base_lrs"])
