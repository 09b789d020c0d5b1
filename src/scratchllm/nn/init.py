"""Weight initialisers with torch.nn.init's names, fan rules and gains.

Each fills a tensor in place (its ``.data``, dtype kept) and returns it. Random ones draw from the
default generator (``sl.manual_seed``) or from ``generator=``, so one seed builds identical
weights:

>>> sl.manual_seed(0); a = kaiming_uniform_(sl.empty(4, 3))
>>> sl.manual_seed(0); b = kaiming_uniform_(sl.empty(4, 3)); bool((a.data == b.data).all())
True

Fans (as torch): for a weight of shape ``(out, in, *kernel)``, ``fan_in = in * prod(kernel)`` and
``fan_out = out * prod(kernel)``; ``Linear``'s ``(out, in)`` weight gives ``fan_in = in``.
"""
from __future__ import annotations

import math

from ..autograd.random import default_generator
from ..backend import xp


def _array(tensor):
    """The array to write into: a Tensor's ``.data`` or an ndarray itself."""
    return tensor if isinstance(tensor, xp.ndarray) else tensor.data


def _gen(generator):
    return default_generator() if generator is None else generator


def _fill(tensor, values):
    _array(tensor)[...] = values
    return tensor


def calculate_gain(nonlinearity: str, param=None) -> float:
    """The recommended gain for a nonlinearity (torch's table).

    >>> calculate_gain("relu"), calculate_gain("tanh")
    (1.4142135623730951, 1.6666666666666667)
    """
    linear = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
              "conv_transpose3d", "sigmoid")
    if nonlinearity in linear:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"unsupported nonlinearity {nonlinearity!r}")


def _calculate_fan_in_and_fan_out(tensor) -> tuple:
    shape = _array(tensor).shape
    if len(shape) < 2:
        raise ValueError(f"fan in and fan out need a tensor with at least 2 dimensions, got shape {shape}")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def _fan(tensor, mode: str) -> int:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


# ------------------------------------------------------------------- constant fills
def constant_(tensor, val: float):
    return _fill(tensor, val)


def zeros_(tensor):
    return _fill(tensor, 0)


def ones_(tensor):
    return _fill(tensor, 1)


# ------------------------------------------------------------------------ random
def normal_(tensor, mean: float = 0.0, std: float = 1.0, generator=None):
    """Fill with N(mean, std**2)."""
    arr = _array(tensor)
    return _fill(tensor, _gen(generator).normal(arr.shape, mean, std, dtype=arr.dtype))


def uniform_(tensor, a: float = 0.0, b: float = 1.0, generator=None):
    """Fill with U(a, b)."""
    arr = _array(tensor)
    return _fill(tensor, _gen(generator).uniform(arr.shape, a, b, dtype=arr.dtype))


def trunc_normal_(tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0,
                  generator=None):
    """N(mean, std**2) restricted to [a, b] (values outside are drawn again)."""
    arr = _array(tensor)
    gen = _gen(generator)
    out = gen.rng.standard_normal(arr.shape) * std + mean
    bad = (out < a) | (out > b)
    while bad.any():
        out[bad] = gen.rng.standard_normal(int(bad.sum())) * std + mean
        bad = (out < a) | (out > b)
    return _fill(tensor, out)


def xavier_uniform_(tensor, gain: float = 1.0, generator=None):
    """U(-a, a) with ``a = gain * sqrt(6 / (fan_in + fan_out))`` (Glorot & Bengio)."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound, generator=generator)


def xavier_normal_(tensor, gain: float = 1.0, generator=None):
    """N(0, std**2) with ``std = gain * sqrt(2 / (fan_in + fan_out))``."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    return normal_(tensor, 0.0, std, generator=generator)


def kaiming_uniform_(tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                     generator=None):
    """U(-bound, bound) with ``bound = gain * sqrt(3 / fan)`` (He et al.).

    ``Linear`` in torch uses ``kaiming_uniform_(w, a=sqrt(5))``, i.e. bound ``1 / sqrt(fan_in)``.
    """
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode))
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound, generator=generator)


def kaiming_normal_(tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                    generator=None):
    """N(0, std**2) with ``std = gain / sqrt(fan)``."""
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode))
    return normal_(tensor, 0.0, std, generator=generator)
