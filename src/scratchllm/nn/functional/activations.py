"""Activations and the softmaxes.

``softmax`` / ``log_softmax`` / ``silu`` / ``relu`` / ``sigmoid`` / ``tanh`` are the
autograd engine's fused ops (one forward, one backward each). ``gelu`` with
``approximate="tanh"`` (GPT-2's) is fused here with in-place temporaries:

    u = sqrt(2/pi) (x + 0.044715 x^3),  t = tanh(u),  y = x (1 + t) / 2
    dy/dx = (1 + t) / 2 + x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2) / 2
"""
import math

from ...autograd import ops
from ...autograd.tensor import make_result
from ...backend import xp
from ...kernels import kernels
from ...parallel import parallel_ranges, pooled
from . import cuda_ops
from ._util import as_float_tensor

_C = math.sqrt(2.0 / math.pi)
_K = 0.044715


def softmax(x, dim=-1):
    return ops.softmax(as_float_tensor(x), dim)


def log_softmax(x, dim=-1):
    return ops.log_softmax(as_float_tensor(x), dim)


def relu(x):
    return ops.relu(as_float_tensor(x))


def silu(x):
    """x * sigmoid(x) (also called swish)."""
    return ops.silu(as_float_tensor(x))


def sigmoid(x):
    return ops.sigmoid(as_float_tensor(x))


def tanh(x):
    return ops.tanh(as_float_tensor(x))


def gelu_tanh_forward(x):
    """GPT-2's GELU on an array -> (y, saved): y = x s, s = (1 + tanh u) / 2, u = C (x + K x^3).

    s is computed as the sigmoid 1 / (1 + exp(-2u)), the same number: from tanh, a tiny s (x
    below about -3) would carry tanh's absolute error, which the two nearly cancelling terms of
    dy/dx amplify (float32, x = -4.19: 0.3% off in the gradient; torch float32 0.17%).
    Large arrays are cut into ranges for the thread pool; with numba, float32 runs one compiled
    loop (which saves e = exp(-2u) instead of s). The op below and the decoder both call this.
    """
    xf = x.reshape(-1) if x.flags.c_contiguous else xp.ascontiguousarray(x).reshape(-1)  # (a 0-d x stays 0-d)
    k = kernels() if x.dtype == xp.float32 else None
    s, out = xp.empty_like(xf), xp.empty_like(xf)        # s saved for backward (e, with the kernels)

    f = k.gelu_tanh_forward if k is not None else _gelu_tanh_range
    parallel_ranges(lambda i, j: f(xf[i:j], s[i:j], out[i:j]), xf.size, pooled(xf.size))
    return out.reshape(x.shape), (xf, s, k)


def _gelu_tanh_range(x, s, out):
    """The NumPy math of one flat range: s = 1 / (1 + exp(-2u)), out = x s (s saved)."""
    xp.multiply(x, x, out=s)                   # every step below writes into this one temporary
    s *= -2 * _K * _C
    s -= 2 * _C
    s *= x                                     # -2u, u = C (x + K x^3)
    with xp.errstate(over="ignore"):           # exp(-2u) = inf: s = 0, as it should
        xp.exp(s, out=s)
    s += 1
    xp.reciprocal(s, out=s)                    # s = 1 / (1 + exp(-2u)) = (1 + tanh u) / 2
    xp.multiply(x, s, out=out)


def _gelu_tanh_grad_range(x, s, g, d):
    """The NumPy math of one flat range of the backward: d = g dy/dx."""
    xp.multiply(x, x, out=d)
    d *= 6 * _K * _C
    d += 2 * _C
    d *= x                                     # x (2C + 6CK x^2) = 2 x du/dx
    w = xp.subtract(1.0, s, dtype=s.dtype)
    w *= s                                     # s (1 - s)
    d *= w
    d += s                                     # dy/dx
    d *= g


def _gelu_tanh(a):
    """Fused tanh-GELU; saves x and s for a 9-pass backward:

        y = x s,   dy/dx = s + s (1 - s) x (2C + 6CK x^2)     (1 - t^2 = 4 s (1 - s))
    """
    x = a.data
    if x.__class__ is not xp.ndarray:                      # on a GPU: nn/functional/cuda_ops.py
        return cuda_ops.gelu_tanh(a)
    out, (xf, s, k) = gelu_tanh_forward(x)

    def backward(g):
        gf = g.reshape(-1) if g.flags.c_contiguous else xp.ascontiguousarray(g).reshape(-1)
        d = xp.empty_like(xf)
        f = k.gelu_tanh_backward if k is not None and gf.dtype == xp.float32 else _gelu_tanh_grad_range
        parallel_ranges(lambda i, j: f(xf[i:j], s[i:j], gf[i:j], d[i:j]), xf.size, pooled(xf.size))
        return (d.reshape(x.shape),)

    return make_result(out, (a,), backward, "gelu")


def gelu(x, approximate: str = "none"):
    """GELU: exact ``x * Phi(x)`` (``approximate="none"``) or GPT-2's tanh form (``"tanh"``)."""
    x = as_float_tensor(x)
    if approximate == "tanh":
        return _gelu_tanh(x)
    if approximate == "none":
        return ops.gelu(x, "none")
    raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
