"""Tensor constructors mirroring torch's: ``zeros``, ``ones``, ``randn``, ``arange`` ...

``device="cuda"`` puts the result on the GPU; random draws are made on the host and copied,
so a seed gives the same numbers on every device."""
from ..backend import xp
from .random import default_generator
from .tensor import Tensor, _shape_arg


def tensor(data, dtype=None, requires_grad=False, device=None) -> Tensor:
    return Tensor(data, dtype=dtype, requires_grad=requires_grad, device=device)


def zeros(*shape, dtype=xp.float32, requires_grad=False, device=None) -> Tensor:
    return Tensor(xp.zeros(_shape_arg(shape), dtype=dtype), requires_grad=requires_grad, device=device)


def ones(*shape, dtype=xp.float32, requires_grad=False, device=None) -> Tensor:
    return Tensor(xp.ones(_shape_arg(shape), dtype=dtype), requires_grad=requires_grad, device=device)


def full(shape, fill_value, dtype=xp.float32, requires_grad=False, device=None) -> Tensor:
    return Tensor(xp.full(tuple(shape), fill_value, dtype=dtype), requires_grad=requires_grad, device=device)


def empty(*shape, dtype=xp.float32, requires_grad=False, device=None) -> Tensor:
    return Tensor(xp.empty(_shape_arg(shape), dtype=dtype), requires_grad=requires_grad, device=device)


def zeros_like(t: Tensor, dtype=None, requires_grad=False, device=None) -> Tensor:
    return Tensor(xp.zeros_like(t.data, dtype=dtype), requires_grad=requires_grad, device=device)


def ones_like(t: Tensor, dtype=None, requires_grad=False, device=None) -> Tensor:
    return Tensor(xp.ones_like(t.data, dtype=dtype), requires_grad=requires_grad, device=device)


def eye(n, m=None, dtype=xp.float32, device=None) -> Tensor:
    return Tensor(xp.eye(n, m, dtype=dtype), device=device)


def arange(start, end=None, step=1, dtype=None, device=None) -> Tensor:
    """``arange(5)`` -> int64 [0..4]; float arguments give float32, as torch."""
    if end is None:
        start, end = 0, start
    if dtype is None:
        dtype = xp.int64 if all(isinstance(v, int) for v in (start, end, step)) else xp.float32
    return Tensor(xp.arange(start, end, step, dtype=dtype), device=device)


def randn(*shape, dtype=xp.float32, requires_grad=False, generator=None, device=None) -> Tensor:
    g = generator or default_generator()
    return Tensor(g.normal(_shape_arg(shape), dtype=dtype), requires_grad=requires_grad, device=device)


def rand(*shape, dtype=xp.float32, requires_grad=False, generator=None, device=None) -> Tensor:
    g = generator or default_generator()
    return Tensor(g.uniform(_shape_arg(shape), dtype=dtype), requires_grad=requires_grad, device=device)


def randint(low, high, size, generator=None, device=None) -> Tensor:
    g = generator or default_generator()
    return Tensor(g.integers(low, high, size=tuple(size)), device=device)
