"""Tensor constructors mirroring torch's: ``zeros``, ``ones``, ``randn``, ``arange`` ..."""
from ..backend import xp
from .random import default_generator
from .tensor import Tensor, _shape_arg


def tensor(data, dtype=None, requires_grad=False) -> Tensor:
    return Tensor(data, dtype=dtype, requires_grad=requires_grad)


def zeros(*shape, dtype=xp.float32, requires_grad=False) -> Tensor:
    return Tensor(xp.zeros(_shape_arg(shape), dtype=dtype), requires_grad=requires_grad)


def ones(*shape, dtype=xp.float32, requires_grad=False) -> Tensor:
    return Tensor(xp.ones(_shape_arg(shape), dtype=dtype), requires_grad=requires_grad)


def full(shape, fill_value, dtype=xp.float32, requires_grad=False) -> Tensor:
    return Tensor(xp.full(tuple(shape), fill_value, dtype=dtype), requires_grad=requires_grad)


def empty(*shape, dtype=xp.float32, requires_grad=False) -> Tensor:
    return Tensor(xp.empty(_shape_arg(shape), dtype=dtype), requires_grad=requires_grad)


def zeros_like(t: Tensor, dtype=None, requires_grad=False) -> Tensor:
    return Tensor(xp.zeros_like(t.data, dtype=dtype), requires_grad=requires_grad)


def ones_like(t: Tensor, dtype=None, requires_grad=False) -> Tensor:
    return Tensor(xp.ones_like(t.data, dtype=dtype), requires_grad=requires_grad)


def eye(n, m=None, dtype=xp.float32) -> Tensor:
    return Tensor(xp.eye(n, m, dtype=dtype))


def arange(start, end=None, step=1, dtype=None) -> Tensor:
    """``arange(5)`` -> int64 [0..4]; float arguments give float32, as torch."""
    if end is None:
        start, end = 0, start
    if dtype is None:
        dtype = xp.int64 if all(isinstance(v, int) for v in (start, end, step)) else xp.float32
    return Tensor(xp.arange(start, end, step, dtype=dtype))


def randn(*shape, dtype=xp.float32, requires_grad=False, generator=None) -> Tensor:
    g = generator or default_generator()
    return Tensor(g.normal(_shape_arg(shape), dtype=dtype), requires_grad=requires_grad)


def rand(*shape, dtype=xp.float32, requires_grad=False, generator=None) -> Tensor:
    g = generator or default_generator()
    return Tensor(g.uniform(_shape_arg(shape), dtype=dtype), requires_grad=requires_grad)


def randint(low, high, size, generator=None) -> Tensor:
    g = generator or default_generator()
    return Tensor(g.integers(low, high, size=tuple(size)))
