"""Losses: ``cross_entropy`` (fused over the logits), ``mse_loss``, ``binary_cross_entropy_with_logits``.

cross_entropy with C classes, smoothing eps and p = softmax(x), exactly torch's definition:

    loss_i = (1 - eps) * (-log p[i, y_i]) + (eps / C) * sum_c (-log p[i, c])
    dloss_i/dx_i = p_i - (1 - eps) * onehot(y_i) - eps / C

Rows whose target is ``ignore_index`` count zero and are left out of the mean. The
forward keeps the unnormalised exp(x - max) and its row sums; the backward is one
pass over (N, C) plus a scatter into the N target entries (no one-hot is built).
"""
from ...autograd.ops.reduce import softmax_
from ...autograd.tensor import Tensor, make_result
from ...backend import xp
from . import cuda_ops
from ._util import as_float_tensor

_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction, who):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{who}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def cross_entropy_reference(logits, targets):
    """Plain mean cross-entropy of logits (N, C) against targets (N,) (llm.c's
    crossentropy_forward / crossentropy_softmax_backward) -> (loss, dlogits of the mean)."""
    N = logits.shape[0]
    z = logits - logits.max(axis=1, keepdims=True)           # (N, C) shifted: max 0
    s = xp.exp(z).sum(axis=1)                                # (N,)
    loss = (xp.log(s) - z[xp.arange(N), targets]).mean()     # -log p[i, y_i], no cancellation
    dlogits = softmax_(z)                                    # p
    dlogits[xp.arange(N), targets] -= 1.0                    # p - onehot(y)
    return loss, dlogits / N


def cross_entropy(logits, target, ignore_index: int = -100, reduction: str = "mean",
                  label_smoothing: float = 0.0):
    """Cross-entropy of logits (N, C) or (B, T, C) (classes last) against int targets (N,) / (B, T)."""
    _check_reduction(reduction, "cross_entropy")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    x = as_float_tensor(logits)
    X = x.data
    if X.__class__ is not xp.ndarray:                      # on a GPU: nn/functional/cuda_ops.py
        return cuda_ops.cross_entropy(x, target, ignore_index, reduction, label_smoothing)
    t = target.data if isinstance(target, Tensor) else xp.asarray(target)
    C = X.shape[-1]
    if t.dtype.kind not in "iu" or t.shape != X.shape[:-1]:
        raise ValueError(f"cross_entropy: expected integer targets of shape {X.shape[:-1]} for logits of shape "
                         f"{X.shape} (classes last), got targets of shape {t.shape} and dtype {t.dtype}")
    x2d, t1 = X.reshape(-1, C), t.reshape(-1)
    N = x2d.shape[0]
    valid = t1 != ignore_index
    tc = xp.where(valid, t1, 0)
    if N and (tc.min() < 0 or tc.max() >= C):
        bad = t1[valid & ((t1 < 0) | (t1 >= C))][0]
        raise IndexError(f"cross_entropy: target {bad} is out of range for {C} classes (ignore_index={ignore_index})")
    rows = xp.arange(N)

    eps = label_smoothing
    m = x2d.max(axis=1, keepdims=True)                       # (N, 1)
    e = x2d - m                                              # (N, C), becomes exp(x - max) in place
    if eps:
        z_sum = e.sum(axis=1)                                # (N,) sum_c (x_c - max)
    xp.exp(e, out=e)
    s = e.sum(axis=1)                                        # (N,)
    log_s = xp.log(s)                                        # log-sum-exp - max, per row
    # -log p[i, y] = log s - (x[y] - max): both terms relative to the max, so nothing cancels
    # (lse - x[y] with lse = log s + max loses all digits for logits ~1e30: [1e30, 1e30] -> 0)
    loss = log_s - (x2d[rows, tc] - m[:, 0])                 # -log p[i, y_i]
    if eps:
        smooth = C * log_s - z_sum                           # sum_c -log p[i, c]
        loss *= 1.0 - eps
        loss += (eps / C) * smooth
    loss[~valid] = 0.0
    n_valid = int(valid.sum())
    if reduction == "mean":
        with xp.errstate(invalid="ignore", divide="ignore"):
            out = xp.asarray(loss.sum() / X.dtype.type(n_valid), dtype=X.dtype)  # nan if all ignored, as torch
    elif reduction == "sum":
        out = xp.asarray(loss.sum(), dtype=X.dtype)
    else:
        out = loss.reshape(t.shape)

    def backward(g):
        coef = g.reshape(-1) if reduction == "none" else xp.full(N, g, dtype=X.dtype)
        if reduction == "mean" and n_valid:
            coef = coef / X.dtype.type(n_valid)
        coef = xp.where(valid, coef, X.dtype.type(0))       # (N,) zero on ignored rows (all ignored: 0, as torch)
        dx = e * (coef / s)[:, None]                         # coef * p
        dx[rows, tc] -= (1.0 - eps) * coef
        if eps:
            dx -= ((eps / C) * coef)[:, None]
        return (dx.reshape(X.shape),)

    return make_result(out, (x,), backward, "cross_entropy")


def _reduce(loss, reduction):
    if reduction == "mean":
        return xp.asarray(loss.mean(), dtype=loss.dtype), 1.0 / max(loss.size, 1)
    if reduction == "sum":
        return xp.asarray(loss.sum(), dtype=loss.dtype), 1.0
    return loss, 1.0


def mse_loss(input, target, reduction: str = "mean"):
    """mean((input - target)^2) (or sum / none)."""
    _check_reduction(reduction, "mse_loss")
    a = as_float_tensor(input)
    b = as_float_tensor(target, a)
    if a.data.shape != b.data.shape:
        raise ValueError(f"mse_loss: input shape {a.data.shape} and target shape {b.data.shape} differ")
    diff = a.data - b.data
    out, k = _reduce(diff * diff, reduction)

    def backward(g):
        d = diff * (2.0 * k)
        d *= g
        return d, (-d if b.requires_grad else None)

    return make_result(out, (a, b), backward, "mse_loss")


def binary_cross_entropy_with_logits(input, target, weight=None, reduction: str = "mean", pos_weight=None):
    """-[pw * y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))], computed stably from the logits x."""
    _check_reduction(reduction, "binary_cross_entropy_with_logits")
    x = as_float_tensor(input)
    y = as_float_tensor(target, x)
    X, Y = x.data, y.data
    if X.shape != Y.shape:
        raise ValueError(f"binary_cross_entropy_with_logits: input shape {X.shape} and target shape {Y.shape} differ")
    sp = xp.log1p(xp.exp(-xp.abs(X)))
    sp += xp.maximum(-X, 0)                                  # softplus(-x) = -log sigmoid(x)
    pw = None if pos_weight is None else (pos_weight.data if isinstance(pos_weight, Tensor) else xp.asarray(pos_weight, X.dtype))
    w = None if weight is None else (weight.data if isinstance(weight, Tensor) else xp.asarray(weight, X.dtype))
    L = 1.0 if pw is None else 1.0 + (pw - 1.0) * Y          # weight of the positive term
    loss = (1.0 - Y) * X + L * sp
    if w is not None:
        loss = loss * w
    out, k = _reduce(loss.astype(X.dtype, copy=False), reduction)

    def backward(g):
        sig_neg = 1.0 - xp.exp(-sp)                          # exp(-softplus(-x)) = sigmoid(x); this is sigmoid(-x)
        scale = g * k if w is None else g * k * w
        dx = ((1.0 - Y) - L * sig_neg) * scale
        dy = None
        if y.requires_grad:
            dy = (-X if pw is None else -X + (pw - 1.0) * sp) * scale
        return dx, dy

    return make_result(out, (x, y), backward, "bce_with_logits")
