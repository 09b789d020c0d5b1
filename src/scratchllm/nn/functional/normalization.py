"""``layer_norm`` and ``rms_norm``: one fused forward and backward each (as llm.c's).

Both normalise over the trailing ``normalized_shape`` dims, viewed as rows (N, D):

    layer_norm  xhat = (x - mean) * rstd,  rstd = 1/sqrt(var + eps),  y = xhat * w + b
                dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)),  dxhat = g * w
    rms_norm    xhat = x * rstd,  rstd = 1/sqrt(mean(x^2) + eps),  y = xhat * w
                dx = rstd * (dxhat - xhat * mean(dxhat * xhat))

The forward saves only xhat (N, D) and rstd (N, 1); the sums over N for dw and db
are single reductions. With numba installed, forward and backward are each one compiled
loop per row range instead (``scratchllm.kernels``); the NumPy code stays the fallback.

The mean is taken twice: m = mean(x) is rounded (x = [128.05922] * 3 in float32: m is 1 ulp
off, and rstd ~ 1/sqrt(eps) made that 0.01 in the outputs, where torch gives exactly the bias);
subtracting the mean of the centred values x - m (exact for x near m) removes it.

``norm_forward`` / ``norm_backward`` are that fast path on plain arrays (row ranges on the pool,
optional kernels); the raw-array decoder calls ``norm_forward`` too. ``norm_reference`` is the
same math in one screen with no tricks, tested equal to both.
"""
import math

from ...autograd.tensor import make_result
from ...backend import xp
from ...kernels import kernels
from ...parallel import chunk_edges, parallel_ranges, pooled, run_chunks
from . import cuda_ops
from ._util import as_float_tensor, row_sums


def _rows(x, normalized_shape, who):
    ns = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if x.shape[x.ndim - len(ns):] != ns:
        raise ValueError(f"{who}: normalized_shape {ns} does not match the trailing dims of input shape {x.shape}")
    return x.reshape(-1, math.prod(ns)), ns


def norm_reference(x, w, b, eps, center: bool = True):
    """Plain LayerNorm (``center``) / RMSNorm over the last dim (llm.c's layernorm_forward/backward)
    -> (y, backward(g) -> (dx, dw, db))."""
    c = x
    if center:
        c = x - x.mean(axis=-1, keepdims=True)
        c = c - c.mean(axis=-1, keepdims=True)           # second pass: the rounding of the mean
    rstd = 1.0 / xp.sqrt((c ** 2).mean(axis=-1, keepdims=True) + eps)
    xhat = c * rstd
    y = xhat * (1.0 if w is None else w) + (0.0 if b is None else b)

    def backward(g):
        dxhat = g * (1.0 if w is None else w)
        dx = dxhat - (dxhat * xhat).mean(axis=-1, keepdims=True) * xhat
        if center:
            dx -= dxhat.mean(axis=-1, keepdims=True)
        rows = tuple(range(g.ndim - 1))
        return dx * rstd, (g * xhat).sum(axis=rows), g.sum(axis=rows)

    return y, backward


def _compiled(x2d, *others):
    """The compiled kernels for a float32/float64 (N >= 1, D >= 1) array whose partners
    (weight, bias, gradient; None for none) share its dtype, or None (the NumPy code)."""
    if x2d.dtype.char not in "fd" or 0 in x2d.shape or \
            any(o is not None and o.dtype != x2d.dtype for o in others):
        return None
    return kernels()


def _or_const(v, value, d, dtype):
    """``v`` (weight or bias), or a constant vector standing in for a missing one (kernels)."""
    return v if v is not None else xp.full(d, value, dtype=dtype)


def _split(n_rows, d):
    """Row edges (dx, forward) and column edges (dw, db): as many of each as ``chunk_edges`` gives."""
    rows = chunk_edges(n_rows, pooled(n_rows * d))
    k = len(rows) - 1
    return rows, [d * i // k for i in range(k + 1)]


def _param_grads_into(g2d, xhat, dw, db, a, b):
    """Columns a:b of dw = sum_n g * xhat and db = sum_n g (each column summed over all rows)."""
    if dw is not None:
        xp.einsum("nd,nd->d", g2d[:, a:b], xhat[:, a:b], out=dw[a:b])
    if db is not None:
        g2d[:, a:b].sum(axis=0, out=db[a:b])


def _dx_into(g2d, xhat, rstd, w, center, dx):
    """dx = rstd * (dxhat - [mean(dxhat)] - xhat * mean(dxhat * xhat)), dxhat = g * w (rows of one chunk)."""
    if w is not None:
        xp.multiply(g2d, w, out=dx)
    else:
        dx[...] = g2d
    proj = xp.einsum("nd,nd->n", dx, xhat)[:, None]
    proj *= 1.0 / xhat.shape[1]                          # (n, 1) mean(dxhat * xhat)
    if center:
        dx -= row_sums(dx, 1.0 / dx.shape[1])[:, None]
    tmp = xhat * proj
    dx -= tmp
    dx *= rstd


def norm_backward(g, xhat, rstd, w, center, want_dx, want_dw, want_db):
    """(dx, dw, db) of the row normalisation over row ranges. NumPy: dx by row ranges, dw/db by
    column ranges; compiled: each row range gives its dx and its share of dw/db in one pass."""
    g2d = g.reshape(xhat.shape)
    if not g2d.flags.c_contiguous:
        g2d = xp.ascontiguousarray(g2d)
    n, d = xhat.shape
    dx = xp.empty_like(xhat) if want_dx else None
    dw = xp.empty(d, dtype=xhat.dtype) if want_dw else None
    db = xp.empty(d, dtype=xhat.dtype) if want_db else None
    rows, cols = _split(n, d)
    k = _compiled(xhat, g2d, w)
    if k is not None:                                     # compiled: one pass over each row range
        wk = _or_const(w, 1, d, xhat.dtype)
        shares = xp.empty((len(rows) - 1, 2, d), dtype=xhat.dtype)   # (range, dw / db, d)
        dx_k = dx if dx is not None else xp.empty((1, d), dtype=xhat.dtype)

    def chunk(i, a, b):
        if k is not None:
            k.norm_backward(g2d[a:b], xhat[a:b], rstd[a:b], wk, center, dx is not None,
                            dx_k[a:b] if dx is not None else dx_k, shares[i, 0], shares[i, 1])
            return
        if dx is not None:
            _dx_into(g2d[a:b], xhat[a:b], rstd[a:b], w, center, dx[a:b])
        _param_grads_into(g2d, xhat, dw, db, cols[i], cols[i + 1])

    run_chunks(chunk, rows)
    if k is not None:                                     # the ranges' shares, added in range order
        if dw is not None:
            shares[:, 0].sum(axis=0, out=dw)
        if db is not None:
            shares[:, 1].sum(axis=0, out=db)
    return dx, dw, db


def norm_forward(x2d, w, bv, eps, center):
    """(out, xhat, rstd) of rows x2d (N, D), over row ranges that depend on the size alone (so
    results do not depend on the number of cores); ``center`` False: RMSNorm (no mean, no bias)."""
    if not x2d.flags.c_contiguous:
        x2d = xp.ascontiguousarray(x2d)
    n, d = x2d.shape
    xhat = xp.empty_like(x2d)                            # (N, D)
    rstd = xp.empty((n, 1), dtype=x2d.dtype)             # (N, 1)
    out = xp.empty_like(x2d)                             # x's dtype whatever w's, as torch
    k = _compiled(x2d, w, bv)
    if k is not None:
        wk, bk = _or_const(w, 1, d, x2d.dtype), _or_const(bv, 0, d, x2d.dtype)
        rows = lambda a, b: k.norm_forward(x2d[a:b], wk, bk, eps, center, out[a:b], xhat[a:b], rstd[a:b])  # noqa: E731
    else:
        rows = lambda a, b: _norm_rows(x2d[a:b], w, bv, eps, center, out[a:b], xhat[a:b], rstd[a:b])  # noqa: E731
    parallel_ranges(rows, n, pooled(n * d))
    return out, xhat, rstd


def _norm_rows(x, w, b, eps, center, out, xhat, rstd):
    """The NumPy math of one row range: x (n, d) -> out, xhat (n, d), rstd (n, 1), in place."""
    d = x.shape[1]
    if center:
        xp.subtract(x, row_sums(x, 1.0 / d)[:, None], out=xhat)         # centred, becomes xhat in place
        xhat -= row_sums(xhat, 1.0 / d)[:, None]                         # minus the rounding of that mean
    else:
        xhat[...] = x
    xp.einsum("nd,nd->n", xhat, xhat, out=rstd[:, 0])
    rstd *= 1.0 / d
    rstd += eps
    xp.sqrt(rstd, out=rstd)
    xp.reciprocal(rstd, out=rstd)                         # 1 / sqrt(mean(xhat^2) + eps)
    xhat *= rstd
    if w is not None:
        xp.multiply(xhat, w, out=out)
    else:
        out[...] = xhat
    if b is not None:
        out += b


def layer_norm(x, normalized_shape, weight=None, bias=None, eps: float = 1e-5):
    """LayerNorm over the trailing ``normalized_shape`` dims, torch's signature."""
    x = as_float_tensor(x)
    X = x.data
    if X.__class__ is not xp.ndarray:                      # on a GPU: nn/functional/cuda_ops.py
        return cuda_ops.layer_norm(x, normalized_shape, weight, bias, eps)
    x2d, ns = _rows(X, normalized_shape, "layer_norm")
    w = weight.data.reshape(-1) if weight is not None else None
    bv = bias.data.reshape(-1) if bias is not None else None
    out, xhat, rstd = norm_forward(x2d, w, bv, eps, center=True)
    parents = (x,) + tuple(p for p in (weight, bias) if p is not None)

    def backward(g):
        dx, dw, db = norm_backward(g, xhat, rstd, w, True, x.requires_grad,
                                    weight is not None and weight.requires_grad,
                                    bias is not None and bias.requires_grad)
        dx = dx.reshape(X.shape) if dx is not None else None
        dw = dw.reshape(ns) if dw is not None else None
        db = db.reshape(ns) if db is not None else None
        return (dx,) + tuple(dd for dd, p in ((dw, weight), (db, bias)) if p is not None)

    return make_result(out.reshape(X.shape), parents, backward, "layer_norm")


def rms_norm(x, normalized_shape, weight=None, eps=None):
    """RMSNorm; ``eps=None`` means the dtype's machine epsilon, as torch."""
    x = as_float_tensor(x)
    X = x.data
    if eps is None:
        eps = float(xp.finfo(X.dtype).eps)
    if X.__class__ is not xp.ndarray:                      # on a GPU: nn/functional/cuda_ops.py
        return cuda_ops.rms_norm(x, normalized_shape, weight, eps)
    x2d, ns = _rows(X, normalized_shape, "rms_norm")
    w = weight.data.reshape(-1) if weight is not None else None
    out, xhat, rstd = norm_forward(x2d, w, None, eps, center=False)
    parents = (x,) if weight is None else (x, weight)

    def backward(g):
        dx, dw, _ = norm_backward(g, xhat, rstd, w, False, x.requires_grad,
                                   weight is not None and weight.requires_grad, False)
        dx = dx.reshape(X.shape) if dx is not None else None
        if weight is None:
            return (dx,)
        return dx, (dw.reshape(ns) if dw is not None else None)

    return make_result(out.reshape(X.shape), parents, backward, "rms_norm")
