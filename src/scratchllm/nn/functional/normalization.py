"""``layer_norm`` and ``rms_norm``: one fused forward and backward each (as llm.c's).

Both normalise over the trailing ``normalized_shape`` dims, viewed as rows (N, D):

    layer_norm  xhat = (x - mean) * rstd,  rstd = 1/sqrt(var + eps),  y = xhat * w + b
                dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)),  dxhat = g * w
    rms_norm    xhat = x * rstd,  rstd = 1/sqrt(mean(x^2) + eps),  y = xhat * w
                dx = rstd * (dxhat - xhat * mean(dxhat * xhat))

The forward saves only xhat (N, D) and rstd (N, 1); the sums over N for dw and db
are single reductions.
"""
import math

from ...autograd.tensor import make_result
from ...backend import xp
from ._util import as_float_tensor


def _rows(x, normalized_shape, who):
    ns = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if x.shape[x.ndim - len(ns):] != ns:
        raise ValueError(f"{who}: normalized_shape {ns} does not match the trailing dims of input shape {x.shape}")
    return x.reshape(-1, math.prod(ns)), ns


def _param_grads(g2d, xhat, weight, bias, ns):
    dw = db = None
    if weight is not None and weight.requires_grad:
        dw = xp.einsum("nd,nd->d", g2d, xhat).reshape(ns)
    if bias is not None and bias.requires_grad:
        db = g2d.sum(axis=0).reshape(ns)
    return dw, db


def _dx(g2d, xhat, rstd, w, center):
    """rstd * (dxhat - [mean(dxhat)] - xhat * mean(dxhat * xhat)), dxhat = g * w."""
    dxhat = g2d * w if w is not None else g2d.copy()
    proj = xp.einsum("nd,nd->n", dxhat, xhat)[:, None]
    proj *= 1.0 / xhat.shape[1]                          # (N, 1) mean(dxhat * xhat)
    if center:
        dxhat -= dxhat.mean(axis=1, keepdims=True)
    tmp = xhat * proj
    dxhat -= tmp
    dxhat *= rstd
    return dxhat


def layer_norm(x, normalized_shape, weight=None, bias=None, eps: float = 1e-5):
    x = as_float_tensor(x)
    X = x.data
    x2d, ns = _rows(X, normalized_shape, "layer_norm")
    xhat = x2d - x2d.mean(axis=1, keepdims=True)         # (N, D) centred, becomes xhat in place
    var = xp.einsum("nd,nd->n", xhat, xhat)[:, None]
    var *= 1.0 / xhat.shape[1]
    var += eps
    rstd = xp.sqrt(var, out=var)
    xp.reciprocal(rstd, out=rstd)                        # (N, 1)
    xhat *= rstd
    w = weight.data.reshape(-1) if weight is not None else None
    out = xhat * w if w is not None else xhat.copy()
    if bias is not None:
        out += bias.data.reshape(-1)
    parents = (x,) + tuple(p for p in (weight, bias) if p is not None)

    def backward(g):
        g2d = g.reshape(xhat.shape)
        dx = _dx(g2d, xhat, rstd, w, center=True).reshape(X.shape) if x.requires_grad else None
        dw, db = _param_grads(g2d, xhat, weight, bias, ns)
        return (dx,) + tuple(d for d, p in ((dw, weight), (db, bias)) if p is not None)

    return make_result(out.reshape(X.shape), parents, backward, "layer_norm")


def rms_norm(x, normalized_shape, weight=None, eps=None):
    """RMSNorm; ``eps=None`` means the dtype's machine epsilon, as torch."""
    x = as_float_tensor(x)
    X = x.data
    if eps is None:
        eps = float(xp.finfo(X.dtype).eps)
    x2d, ns = _rows(X, normalized_shape, "rms_norm")
    ms = xp.einsum("nd,nd->n", x2d, x2d)[:, None]
    ms *= 1.0 / x2d.shape[1]
    ms += eps
    rstd = xp.sqrt(ms, out=ms)
    xp.reciprocal(rstd, out=rstd)                        # (N, 1)
    xhat = x2d * rstd
    w = weight.data.reshape(-1) if weight is not None else None
    out = xhat * w if w is not None else xhat
    parents = (x,) if weight is None else (x, weight)

    def backward(g):
        g2d = g.reshape(xhat.shape)
        dx = _dx(g2d, xhat, rstd, w, center=False).reshape(X.shape) if x.requires_grad else None
        if weight is None:
            return (dx,)
        return dx, _param_grads(g2d, xhat, weight, None, ns)[0]

    return make_result(out.reshape(X.shape), parents, backward, "rms_norm")
