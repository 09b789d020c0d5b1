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


def _gelu_tanh(a):
    x = a.data
    t = x * x                                  # every step below writes into this one temporary
    t *= _K * _C
    t += _C
    t *= x                                     # u = C (x + K x^3)
    xp.tanh(t, out=t)
    out = t + 1.0
    out *= x
    out *= 0.5

    def backward(g):
        d = x * x
        d *= 3 * _K * _C
        d += _C                                # du/dx
        s = t * t
        xp.subtract(1.0, s, out=s)             # 1 - t^2
        s *= d
        s *= x
        s += t
        s += 1.0
        s *= 0.5                               # dy/dx
        s *= g
        return (s,)

    return make_result(out, (a,), backward, "gelu")


def gelu(x, approximate: str = "none"):
    """GELU: exact ``x * Phi(x)`` (``approximate="none"``) or GPT-2's tanh form (``"tanh"``)."""
    x = as_float_tensor(x)
    if approximate == "tanh":
        return _gelu_tanh(x)
    if approximate == "none":
        return ops.gelu(x, "none")
    raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
