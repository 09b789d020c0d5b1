"""Stochastic gradient descent with momentum, dampening, Nesterov and L2 weight decay.

The update per parameter, in torch.optim.SGD's order (``g`` is the gradient):

    g = g + weight_decay * p                       (if weight_decay)
    buf = g            on the first step            (if momentum)
    buf = momentum * buf + (1 - dampening) * g      afterwards
    g = g + momentum * buf  (nesterov)  or  g = buf
    p = p - lr * g
"""
from __future__ import annotations

from ..backend import xp
from .optimizer import Optimizer


class SGD(Optimizer):
    """``SGD(params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False)``.

    >>> opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    >>> loss.backward(); opt.step(); opt.zero_grad()
    """

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, *, maximize: bool = False):
        if lr < 0.0:
            raise ValueError(f"invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov, maximize=maximize))

    def step(self) -> None:
        """One update of every parameter that has a gradient (others are skipped)."""
        for group in self.param_groups:
            lr, momentum, dampening = group["lr"], group["momentum"], group["dampening"]
            weight_decay, nesterov, maximize = group["weight_decay"], group["nesterov"], group["maximize"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad.data
                if maximize:
                    grad = xp.negative(grad, out=self._tmp(grad, 0))
                if weight_decay != 0:
                    # g + wd * p into a temporary (p.grad itself is never changed)
                    tmp = xp.multiply(p.data, weight_decay, out=self._tmp(grad, 1))
                    grad = xp.add(grad, tmp, out=tmp)
                if momentum != 0:
                    state = self.state.setdefault(p, {})
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = grad.copy()
                    else:
                        buf *= momentum
                        if dampening == 0:
                            buf += grad
                        else:
                            buf += xp.multiply(grad, 1 - dampening, out=self._tmp(grad, 2))
                    if nesterov:
                        # g + momentum * buf
                        tmp = xp.multiply(buf, momentum, out=self._tmp(grad, 2))
                        grad = xp.add(grad, tmp, out=tmp)
                    else:
                        grad = buf
                step = xp.multiply(grad, lr, out=self._tmp(grad, 3))
                p.data -= step
