"""The speedrun recipe's small ops (KellerJordan/modded-nanogpt): ReLU², logit soft-capping, QK-norm.

    relu2(x)            y = max(x, 0)^2                 dy/dx = 2 max(x, 0)
    softcap(x, c)       y = c tanh(x / c)                dy/dx = 1 - (y / c)^2
    qk_norm(x)          RMSNorm of every head's q and k over head_dim, no gain (``rms_norm``)
    value_mix(v, ve, l) y = l[0] v + l[1] ve              dv = l[0] g, dve = l[1] g, dl = (<g, v>, <g, ve>)
    rope_heads_last     RoPE on (B, T, H, D) (the layout the packed projection gives, no transposes)

``relu2_forward`` / ``softcap_forward`` / ``value_mix_forward`` are the plain-array forwards, which the raw-array
decoder (models/gpt_recipe.py) calls too; the ops below wrap them with their backward.

>>> from scratchllm import Tensor
>>> relu2(Tensor([-1.0, 2.0])).numpy()
array([0., 4.], dtype=float32)
>>> round(float(softcap(Tensor([100.0]), 15.0).item()), 3)
15.0
"""
from ...autograd.tensor import make_result
from ...backend import xp
from ...kernels import kernels
from ...parallel import parallel_ranges, pooled
from ._util import as_float_tensor
from .normalization import rms_norm
from .rope import rope_rotate


def relu2_forward(x):
    """ReLU² on an array -> (y, saved for the backward). NumPy: two passes, saving r = max(x, 0)
    (GPU arrays too: NumPy's ufuncs hand them to CuPy). With numba: one loop, saving x, big
    arrays in ranges on the thread pool."""
    k = kernels() if x.__class__ is xp.ndarray and x.dtype in (xp.float32, xp.float64) else None
    if k is None:
        r = xp.maximum(x, 0)
        return r * r, (r, None)
    xf = x.reshape(-1) if x.flags.c_contiguous else xp.ascontiguousarray(x).reshape(-1)
    out = xp.empty_like(xf)
    parallel_ranges(lambda i, j: k.relu2_forward(xf[i:j], out[i:j]), xf.size, pooled(xf.size))
    return out.reshape(x.shape), (xf, k)


def relu2(x):
    """``max(x, 0) ** 2`` (the speedrun's MLP activation) as one op."""
    x = as_float_tensor(x)
    y, (saved, k) = relu2_forward(x.data)

    def backward(g):
        if k is None:
            d = xp.multiply(saved, 2, dtype=saved.dtype)          # 2 max(x, 0)
            d *= g
            return (d,)
        gf = g.reshape(-1) if g.flags.c_contiguous else xp.ascontiguousarray(g).reshape(-1)
        d = xp.empty_like(saved)
        parallel_ranges(lambda i, j: k.relu2_backward(saved[i:j], gf[i:j], d[i:j]), d.size, pooled(d.size))
        return (d.reshape(y.shape),)

    return make_result(y, (x,), backward, "relu2")


def softcap_forward(x, cap: float):
    """``cap * tanh(x / cap)`` on an array (a new array)."""
    c = x.dtype.type(cap)
    y = xp.tanh(x / c)
    y *= c
    return y


def softcap(x, cap: float):
    """Logit soft-capping ``cap * tanh(x / cap)``: smooth, bounded in (-cap, cap), ~x near 0."""
    if not cap > 0:
        raise ValueError(f"softcap: cap must be > 0, got {cap}")
    x = as_float_tensor(x)
    y = softcap_forward(x.data, cap)

    def backward(g):
        t = y / y.dtype.type(cap)                          # tanh(x / cap)
        d = xp.multiply(t, t)
        xp.subtract(1, d, out=d)
        d *= g
        return (d,)

    return make_result(y, (x,), backward, "softcap")


def value_mix_forward(v, ve, lam):
    """``lam[0] * v + lam[1] * ve`` on arrays (ve None: ``lam[0] * v``), a new array."""
    y = v * lam[0]
    if ve is not None:
        y += ve * lam[1]
    return y


def value_mix(v, ve, lambdas):
    """A layer's values mixed with its value embedding: v, ve (..., C), lambdas (2,) -> (..., C).
    ``ve`` None: ``lambdas[0] * v`` (a layer without a table). One op: no scalar-times-tensor
    products whose gradients are summed back from full-size arrays."""
    v, lambdas = as_float_tensor(v), as_float_tensor(lambdas)
    V, E, lam = v.data, None if ve is None else ve.data, lambdas.data
    if lam.shape != (2,) or (E is not None and E.shape != V.shape):
        raise ValueError(f"value_mix: expected v and ve of one shape and lambdas (2,), got v {V.shape}, "
                         f"ve {None if E is None else E.shape}, lambdas {lam.shape}")
    y = value_mix_forward(V, E, lam)

    def dot(a, b):                                         # <a, b>, no copy of a strided view
        C = a.shape[-1]
        return xp.einsum("nc,nc->", a.reshape(-1, C), b.reshape(-1, C))

    def backward(g):
        dl = xp.zeros_like(lam)
        dl[0] = dot(g, V)
        dve = None
        if E is not None:
            dl[1] = dot(g, E)
            dve = g * lam[1]
        return (g * lam[0], dl) + ((dve,) if E is not None else ())

    return make_result(y, (v, lambdas) if ve is None else (v, lambdas, ve), backward, "value_mix")


def qk_norm(x, eps=None):
    """RMSNorm of every head vector of x (..., head_dim), no learned gain (``eps=None``: the dtype's
    machine epsilon, as torch's ``F.rms_norm``); q and k heads can go through in one call.
    Composed: it is the fused ``rms_norm`` op over the last dim."""
    return rms_norm(x, (x.shape[-1],), None, eps)


def rope_heads_last(x, cos, sin, layout: str = "half"):
    """RoPE on x (B, T, H, D), heads after time (as a projection comes out, no transpose), at
    positions 0 .. T-1; ``cos``, ``sin`` (>= T, D/2) from ``rope_cache``. The backward rotates
    the gradient back (by minus the angle), as ``apply_rope``."""
    x = as_float_tensor(x)
    X = x.data
    T, D = X.shape[-3], X.shape[-1]
    if D % 2 or cos.shape[-1] * 2 != D or T > cos.shape[0]:
        raise ValueError(f"rope_heads_last: x {X.shape} (B, T, H, D) does not fit rope tables {cos.shape} "
                         f"(need at least T rows of D/2)")
    c = cos[:T].astype(X.dtype, copy=False)[:, None, :]            # (T, 1, D/2): one angle per position
    s = sin[:T].astype(X.dtype, copy=False)[:, None, :]
    out = rope_rotate(X, c, s, layout)
    return make_result(out, (x,), lambda g: (rope_rotate(g, c, -s, layout),), "rope")
