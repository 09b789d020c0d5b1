"""Adam and AdamW: moment estimates with bias correction.

The update per parameter at step ``t`` (1, 2, ...), in torch.optim.Adam's order:

    p = p * (1 - lr * weight_decay)                 (AdamW: decoupled decay)
    g = g + weight_decay * p                        (Adam: L2 penalty in the gradient)
    m = m + (1 - beta1) * (g - m)                   (first moment, torch's lerp)
    v = beta2 * v + (1 - beta2) * g * g             (second moment)
    v_max = max(v_max, v)                           (amsgrad: use v_max below instead of v)
    p = p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

Everything runs in place on ``p.data`` and the moments, with NumPy ``out=`` temporaries, so a
float32 model stays float32 and no step allocates parameter-sized arrays after the first.
"""
from __future__ import annotations

from ..backend import xp
from .optimizer import Optimizer


class Adam(Optimizer):
    """``Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False)``.

    ``weight_decay`` here is an L2 penalty added to the gradient; use ``AdamW`` for decoupled decay.
    """

    _decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, *, maximize: bool = False):
        if lr < 0.0:
            raise ValueError(f"invalid learning rate: {lr}")
        if eps < 0.0:
            raise ValueError(f"invalid epsilon value: {eps}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"invalid beta parameters: {betas} (each must be in [0, 1))")
        if weight_decay < 0.0:
            raise ValueError(f"invalid weight_decay value: {weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize))

    def _init_state(self, p, amsgrad: bool) -> dict:
        state = {"step": xp.array(0.0, dtype=xp.float32),
                 "exp_avg": xp.zeros_like(p.data), "exp_avg_sq": xp.zeros_like(p.data)}
        if amsgrad:
            state["max_exp_avg_sq"] = xp.zeros_like(p.data)
        return state

    def step(self) -> None:
        """One update of every parameter that has a gradient (others are skipped)."""
        for group in self.param_groups:
            lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
            weight_decay, amsgrad, maximize = group["weight_decay"], group["amsgrad"], group["maximize"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state.get(p)
                if state is None:
                    state = self.state[p] = self._init_state(p, amsgrad)
                elif amsgrad and "max_exp_avg_sq" not in state:
                    state["max_exp_avg_sq"] = xp.zeros_like(p.data)
                state["step"] += 1
                t = float(state["step"])
                self._update(p, state, t, lr, beta1, beta2, eps, weight_decay, amsgrad, maximize)

    def _update(self, p, state, t, lr, beta1, beta2, eps, weight_decay, amsgrad, maximize):
        grad = p.grad.data
        param, m, v = p.data, state["exp_avg"], state["exp_avg_sq"]
        tmp = self._tmp(param, 0)
        if maximize:
            grad = xp.negative(grad, out=self._tmp(param, 1))
        if weight_decay != 0:
            if self._decoupled:
                param *= 1 - lr * weight_decay
            else:
                g2 = xp.multiply(param, weight_decay, out=self._tmp(param, 1))
                grad = xp.add(grad, g2, out=g2)
        # m <- m + (1 - beta1) * (g - m)
        xp.subtract(grad, m, out=tmp)
        tmp *= 1 - beta1
        m += tmp
        # v <- beta2 * v + (1 - beta2) * g * g
        v *= beta2
        xp.multiply(grad, grad, out=tmp)
        tmp *= 1 - beta2
        v += tmp
        if amsgrad:
            v = xp.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
        step_size = lr / (1 - beta1 ** t)
        bias_correction2_sqrt = (1 - beta2 ** t) ** 0.5
        # denom = sqrt(v) / sqrt(bc2) + eps ; p <- p - step_size * m / denom
        xp.sqrt(v, out=tmp)
        tmp /= bias_correction2_sqrt
        tmp += eps
        xp.divide(m, tmp, out=tmp)
        tmp *= step_size
        param -= tmp


class AdamW(Adam):
    """``AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False)``.

    Weight decay is decoupled from the gradient: ``p *= 1 - lr * weight_decay`` before the
    Adam step (Loshchilov & Hutter), which is what GPT-style training uses.
    """

    _decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, maximize=maximize)
