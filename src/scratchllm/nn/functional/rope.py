"""Rotary position embedding (RoPE) and the sinusoidal position table.

RoPE rotates each pair of features (a, b) of the vector at position t by the angle
t * theta^(-2i/D):  (a, b) -> (a cos - b sin, a sin + b cos). Which features form a pair:

- ``layout="interleaved"`` (Meta / llama2.c): pairs (x0, x1), (x2, x3), ...
- ``layout="half"`` (HF ``rotate_half``): pairs (x_i, x_{i + D/2}).

A rotation's inverse is the rotation by minus the angle, so the backward applies
``apply_rope`` with ``-sin`` to the upstream gradient.
"""
import math

from ...autograd.tensor import make_result
from ...backend import xp
from ...kernels import kernels
from ._util import as_float_tensor


def rope_cache(head_dim: int, max_len: int, theta: float = 10000.0, dtype=xp.float32, scaling=None):
    """(cos, sin), each (max_len, head_dim // 2): angle[t, i] = t / theta^(2i / head_dim).

    ``scaling``: None, or Llama 3.1's dict (``factor``, ``low_freq_factor``, ``high_freq_factor``,
    ``original_max_position_embeddings``): long wavelengths slowed down by ``factor``, short ones
    kept, a smooth blend between.

    >>> cos, sin = rope_cache(8, 16); cos.shape
    (16, 4)
    """
    if head_dim % 2:
        raise ValueError(f"rope_cache: head_dim must be even, got {head_dim}")
    inv_freq = 1.0 / (theta ** (xp.arange(0, head_dim, 2, dtype=xp.float64) / head_dim))  # (D/2,)
    if scaling:
        inv_freq = _llama31_scaled(inv_freq, scaling)
    angles = xp.outer(xp.arange(max_len, dtype=xp.float64), inv_freq)                     # (L, D/2)
    return xp.cos(angles).astype(dtype), xp.sin(angles).astype(dtype)


def _llama31_scaled(inv_freq, s: dict):
    """Llama 3.1's frequency scaling of RoPE's inverse frequencies (D/2,)."""
    old, factor = s["original_max_position_embeddings"], s["factor"]
    low_wavelen, high_wavelen = old / s["low_freq_factor"], old / s["high_freq_factor"]
    wavelen = 2 * math.pi / inv_freq
    scaled = xp.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)        # long waves slowed down
    smooth = (old / wavelen - s["low_freq_factor"]) / (s["high_freq_factor"] - s["low_freq_factor"])
    mid = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return xp.where(mid, (1 - smooth) * scaled / factor + smooth * scaled, scaled)


def _pairs(a, layout):
    """The two halves of every rotated pair, as views of a (..., D)."""
    if layout == "interleaved":
        return a[..., 0::2], a[..., 1::2]
    if layout == "half":
        h = a.shape[-1] // 2
        return a[..., :h], a[..., h:]
    raise ValueError(f"apply_rope: layout must be 'interleaved' or 'half', got {layout!r}")


def rope_rotate(x, cos, sin, layout: str = "interleaved"):
    """Plain arrays: a new x (..., T, D) with every pair (a, b) rotated by cos, sin (T, D/2), or
    x (..., T, G, D) by cos, sin (T, 1, D/2) (the op below and the raw-array decoders call this).

    With the compiled kernels, float32 goes through one loop (``numba_kernels.rope_rotate``,
    the same roundings): the NumPy passes below run over the D/2-wide halves, a short inner loop."""
    grouped = _grouped(x, cos, sin, layout)
    if grouped is not None:
        k, shape, c, s = grouped
        out = xp.empty(shape, dtype=x.dtype)
        k.rope_rotate(xp.ascontiguousarray(x).reshape(shape), c, s, layout == "half", out)
        return out.reshape(x.shape)
    return rope_rotate_reference(x, cos, sin, layout)


def _grouped(x, cos, sin, layout):
    """(kernels, (P, T, G, D), cos (T, D/2), sin) when the compiled loop applies, else None."""
    if not (isinstance(x, xp.ndarray) and x.dtype == xp.float32 and layout in ("half", "interleaved")
            and isinstance(cos, xp.ndarray) and isinstance(sin, xp.ndarray)
            and cos.dtype == sin.dtype == xp.float32 and x.ndim >= 2 and cos.shape == sin.shape):
        return None
    k = kernels()
    if k is None:
        return None
    D = x.shape[-1]
    if cos.ndim == 2 and cos.shape == (x.shape[-2], D // 2):                          # (..., T, D)
        T, G = x.shape[-2], 1
    elif cos.ndim == 3 and x.ndim >= 3 and cos.shape == (x.shape[-3], 1, D // 2):     # (..., T, G, D)
        T, G = x.shape[-3], x.shape[-2]
    else:
        return None
    c, s = cos.reshape(T, D // 2), sin.reshape(T, D // 2)
    return k, (x.size // (T * G * D), T, G, D), xp.ascontiguousarray(c), xp.ascontiguousarray(s)


def rope_rotate_reference(x, cos, sin, layout: str = "interleaved"):
    """The plain NumPy math of ``rope_rotate`` (any array module, any broadcastable tables)."""
    out = xp.empty_like(x)
    a, b = _pairs(x, layout)
    oa, ob = _pairs(out, layout)
    tmp = xp.empty_like(a)
    xp.multiply(a, cos, out=oa)
    xp.multiply(b, sin, out=tmp)
    oa -= tmp                                            # a cos - b sin
    xp.multiply(a, sin, out=ob)
    xp.multiply(b, cos, out=tmp)
    ob += tmp                                            # a sin + b cos
    return out


def apply_rope(x, cos, sin, layout: str = "interleaved", offset: int = 0):
    """Rotate x (..., T, D) at positions offset .. offset+T-1 with tables from ``rope_cache``."""
    x = as_float_tensor(x)
    X = x.data
    T, D = X.shape[-2], X.shape[-1]
    if D % 2 or cos.shape[-1] * 2 != D:
        raise ValueError(f"apply_rope: head dim {D} does not match rope tables of width {cos.shape[-1]} (need D/2)")
    if offset + T > cos.shape[0]:
        raise ValueError(f"apply_rope: positions up to {offset + T} exceed the rope table length {cos.shape[0]}")
    c = cos[offset:offset + T].astype(X.dtype, copy=False)   # (T, D/2)
    s = sin[offset:offset + T].astype(X.dtype, copy=False)
    out = rope_rotate(X, c, s, layout)
    return make_result(out, (x,), lambda g: (rope_rotate(g, c, -s, layout),), "rope")


def sinusoidal_positions(T: int, dim: int, base: float = 10000.0, dtype=xp.float32):
    """The Transformer's table (T, dim): sin on even dims, cos on odd dims.

    pe[t, 2i] = sin(t / base^(2i/dim)),  pe[t, 2i+1] = cos(t / base^(2i/dim))
    """
    pos = xp.arange(T, dtype=xp.float64)[:, None]
    div = xp.exp(xp.arange(0, dim, 2, dtype=xp.float64) * (-math.log(base) / dim))  # (ceil(dim/2),)
    pe = xp.empty((T, dim), dtype=xp.float64)
    pe[:, 0::2] = xp.sin(pos * div)
    pe[:, 1::2] = xp.cos(pos * div[: dim // 2])
    return pe.astype(dtype)
