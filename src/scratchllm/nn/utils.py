"""Gradient utilities: ``clip_grad_norm_`` (as torch.nn.utils.clip_grad_norm_)."""
from __future__ import annotations

import math

from ..backend import xp


def _grads(parameters) -> list:
    if hasattr(parameters, "data") and hasattr(parameters, "grad"):
        parameters = [parameters]
    return [p.grad.data for p in parameters if p.grad is not None]


def _norm(a, norm_type: float) -> float:
    if norm_type == math.inf:
        return float(xp.abs(a).max()) if a.size else 0.0
    if norm_type == 2.0:
        flat = a.reshape(-1)
        return math.sqrt(float(xp.dot(flat, flat)))
    return float(xp.sum(xp.abs(a, dtype=xp.float64) ** norm_type) ** (1.0 / norm_type))


def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False) -> float:
    """Scale all gradients in place so that their joint norm is at most ``max_norm``.

    The total norm is the ``norm_type`` norm of all gradients seen as one vector; every gradient
    is multiplied by ``min(1, max_norm / (total + 1e-6))``. Returns the total norm before clipping.

    >>> total = clip_grad_norm_(model.parameters(), 1.0)
    """
    grads = _grads(parameters)
    if not grads:
        return 0.0
    norm_type = float(norm_type)
    if grads[0].__class__ is not xp.ndarray:          # on a GPU: no sync; the norm as a 0-d GPU array
        from .functional.cuda_ops import clip_grad_norm_ as on_device
        return on_device(grads, max_norm, norm_type)
    norms = [_norm(g, norm_type) for g in grads]
    total = _norm(xp.asarray(norms, dtype=xp.float64), norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"the total norm of order {norm_type} of the gradients is non-finite ({total}), "
                           "so it cannot be clipped; pass error_if_nonfinite=False to clip anyway")
    coef = min(max_norm / (total + 1e-6), 1.0)
    for g in grads:
        g *= coef
    return total
