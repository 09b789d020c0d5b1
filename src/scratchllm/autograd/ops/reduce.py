"""Reductions (sum, mean, var, max/min) and the fused softmax / log_softmax."""
from collections import namedtuple

from ...backend import xp
from ...device import array_module
from ..tensor import Tensor, make_result

MaxMin = namedtuple("MaxMin", ["values", "indices"])  # as torch.return_types.max


def _axes(dim, ndim):
    """dim (None, int or tuple, negatives allowed) -> sorted tuple of non-negative axes."""
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    out = []
    for d in dims:
        if not -max(ndim, 1) <= d < max(ndim, 1):
            raise IndexError(f"dimension {d} is out of range for a tensor of {ndim} dims")
        out.append(d % max(ndim, 1))
    return tuple(sorted(out))


def _regrow(g, axes, keepdim, shape):
    """Gradient of a reduction, reshaped so it broadcasts against the input of ``shape``."""
    if not keepdim and shape:
        g = g.reshape(tuple(1 if i in axes else n for i, n in enumerate(shape)))
    return g


def sum(a, dim=None, keepdim=False):
    axes = _axes(dim, a.data.ndim)
    out = a.data.sum(axis=axes, keepdims=keepdim)
    shape = a.data.shape
    return make_result(out, (a,),
                       lambda g: (xp.broadcast_to(_regrow(g, axes, keepdim, shape), shape),), "sum")


def mean(a, dim=None, keepdim=False):
    if a.data.dtype.kind != "f":
        raise TypeError(f"mean: needs a floating-point tensor, got dtype {a.data.dtype}")
    axes = _axes(dim, a.data.ndim)
    out = a.data.mean(axis=axes, keepdims=keepdim)
    shape = a.data.shape
    n = 1
    for ax in axes:
        n *= shape[ax]
    return make_result(out, (a,),
                       lambda g: (xp.broadcast_to(_regrow(g, axes, keepdim, shape) / n, shape),), "mean")


def _var_parts(a, dim, correction, keepdim):
    """(variance array, its backward g -> dL/dx), shared by ``var`` and ``std``."""
    axes = _axes(dim, a.data.ndim)
    shape = a.data.shape
    n = 1
    for ax in axes:
        n *= shape[ax]
    centered = a.data - a.data.mean(axis=axes, keepdims=True)
    denom = max(n - correction, 0)
    with xp.errstate(divide="ignore", invalid="ignore"):  # n <= correction: nan, as torch
        out = (centered * centered).sum(axis=axes, keepdims=keepdim) / denom
    scale = 2.0 / denom if denom else float("nan")  # torch: nan gradient too

    def backward(g):  # d var / dx_i = 2 (x_i - mean) / (n - correction)
        return _regrow(g, axes, keepdim, shape) * scale * centered

    return array_module(a.data).asarray(out, dtype=a.data.dtype), backward


def var(a, dim=None, correction=1, keepdim=False):
    """Variance with Bessel's correction by default (``correction=1``), as torch.var."""
    out, var_backward = _var_parts(a, dim, correction, keepdim)
    return make_result(out, (a,), lambda g: (var_backward(g),), "var")


def std(a, dim=None, correction=1, keepdim=False):
    """Standard deviation; its gradient is 0 where std is 0 (as torch's, not sqrt's inf * 0)."""
    v, var_backward = _var_parts(a, dim, correction, keepdim)
    out = xp.sqrt(v)

    def backward(g):  # d std = d var / (2 std), masked where std == 0
        with xp.errstate(divide="ignore", invalid="ignore"):
            gv = xp.where(out == 0, 0, g / (2 * out)).astype(g.dtype, copy=False)
        return (var_backward(gv),)

    return make_result(out, (a,), backward, "std")


def _extreme(a, dim, keepdim, fn, name):
    axes = _axes(dim, a.data.ndim)
    out = fn(a.data, axis=axes, keepdims=keepdim)
    shape = a.data.shape

    def backward(g):  # shared equally by all the elements that attain the extreme (PyTorch's amax rule)
        hit = a.data == _regrow(out, axes, keepdim, shape)
        count = hit.sum(axis=axes, keepdims=True).astype(g.dtype)  # int64 would upcast float32
        return (_regrow(g, axes, keepdim, shape) * hit / count,)

    return make_result(out, (a,), backward, name)


def amax(a, dim=None, keepdim=False):
    return _extreme(a, dim, keepdim, xp.amax, "amax")


def amin(a, dim=None, keepdim=False):
    return _extreme(a, dim, keepdim, xp.amin, "amin")


def max_min(a, dim, keepdim, which):
    """``x.max()`` -> the value; ``x.max(dim)`` -> (values, indices), gradient to the chosen index."""
    if dim is None:
        return _extreme(a, None, False, xp.amax if which == "max" else xp.amin, which)
    if not isinstance(dim, int):
        raise TypeError(f"{which}(dim): dim must be an int, got {dim!r}")
    d = _axes(dim, a.data.ndim)[0]
    argfn = xp.argmax if which == "max" else xp.argmin
    idx = argfn(a.data, axis=d, keepdims=True)                       # (..., 1, ...)
    values = xp.take_along_axis(a.data, idx, axis=d)
    shape = a.data.shape

    def backward(g):
        gd = g if keepdim else xp.expand_dims(g, d)
        if g.__class__ is not xp.ndarray:                # on a GPU: a compare with positions (no put_along_axis)
            m = array_module(g)
            pos = m.arange(shape[d]).reshape((-1,) + (1,) * (len(shape) - d - 1))
            return (m.where(pos == idx, gd, m.zeros((), dtype=g.dtype)),)
        gx = xp.zeros_like(g, shape=shape)
        xp.put_along_axis(gx, idx, gd, axis=d)
        return (gx,)

    if not keepdim:
        values, idx_out = values.squeeze(d), idx.squeeze(d)
    else:
        idx_out = idx
    return MaxMin(make_result(values, (a,), backward, which), Tensor(idx_out.astype(xp.int64)))


# -------------------------------------------------------- fused softmaxes
def row_sums(a2d, scale: float = 1.0):
    """(N,) ``scale`` times the row sums of a 2-D array, as one matrix-vector product (a few
    times faster than ``a2d.sum(axis=1)`` for rows of a few hundred elements)."""
    return a2d @ xp.full_like(a2d, scale, shape=(a2d.shape[1],))


def softmax_(s, axis: int = -1, shift: bool = True):
    """The softmax, in place over ``axis``: s <- exp(s - max s) / sum exp(s - max s); returns s.

    Every softmax in scratchllm is this one (plus the optional compiled loop for attention).
    ``shift=False`` skips the max (softmax is shift-invariant; only for scores known to be small).
    """
    if shift:
        s -= s.max(axis=axis, keepdims=True)
    xp.exp(s, out=s)
    if s.ndim and axis in (-1, s.ndim - 1) and s.flags.c_contiguous and s.shape[-1] and s.__class__ is xp.ndarray:
        total = row_sums(s.reshape(-1, s.shape[-1])).reshape(s.shape[:-1] + (1,))
        xp.reciprocal(total, out=total)
        s *= total
    else:
        s /= s.sum(axis=axis, keepdims=True)
    return s


def softmax_forward(x, dim):
    if x.size == 0:                      # an empty array (e.g. dim of size 0): empty, as torch
        return x.copy()
    return softmax_(x.copy(), dim)


def softmax_backward(g, y, dim):
    """dL/dx = y * (g - sum(g * y)): the Jacobian of softmax applied to g without forming it."""
    return y * (g - (g * y).sum(axis=dim, keepdims=True))


def softmax(a, dim=-1):
    y = softmax_forward(a.data, dim)
    return make_result(y, (a,), lambda g: (softmax_backward(g, y, dim),), "softmax")


def log_softmax_forward(x, dim):
    if x.size == 0:                      # an empty array (e.g. dim of size 0): empty, as torch
        return x.copy()
    shifted = x - x.max(axis=dim, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=dim, keepdims=True))


def log_softmax(a, dim=-1):
    y = log_softmax_forward(a.data, dim)

    def backward(g):  # dL/dx = g - softmax(x) * sum(g)
        return (g - xp.exp(y) * g.sum(axis=dim, keepdims=True),)

    return make_result(y, (a,), backward, "log_softmax")
