"""Default initial values of the layers (torch's defaults), drawn from a seeded Generator.

(The public initialisers ``normal_``, ``xavier_uniform_`` ... live in ``nn/init.py``.)
"""
import math

from ..autograd.random import default_generator
from ..backend import xp
from .parameter import Parameter


def uniform_param(shape, bound, dtype=None, generator=None) -> Parameter:
    g = generator or default_generator()
    return Parameter(g.uniform(shape, -bound, bound, dtype=dtype or xp.float32))


def normal_param(shape, std=1.0, dtype=None, generator=None) -> Parameter:
    g = generator or default_generator()
    return Parameter(g.normal(shape, 0.0, std, dtype=dtype or xp.float32))


def fan_in_bound(fan_in: int) -> float:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): torch's kaiming_uniform(a=sqrt(5)) for Linear."""
    return 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0


def const_param(shape, value, dtype=None) -> Parameter:
    return Parameter(xp.full(shape, value, dtype=dtype or xp.float32))
