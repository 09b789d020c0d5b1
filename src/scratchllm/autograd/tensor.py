"""``Tensor``: an N-dimensional array that remembers how it was computed.

A Tensor wraps a NumPy array (``.data``). When an op runs on tensors of which
at least one ``requires_grad``, the output keeps a link to its inputs
(``_parents``) and a ``_backward`` closure. ``backward()`` walks that graph in
reverse topological order (an explicit stack, no recursion) and hands every
node's upstream gradient to its closure, which returns one gradient per parent.
The engine then sums broadcast gradients back to each parent's shape and
accumulates them; leaves collect theirs in ``.grad``.

The graph engine is in ``engine.py``; the ops live in ``ops/`` (forward and backward side by
side); the methods below are one-line entry points to them.
"""
from __future__ import annotations

import numbers

from ..backend import xp
from ..device import array_module, device_of, is_device_array, is_device_name, normalize, to_device, to_host
from .grad_mode import is_grad_enabled

_FLOAT_KINDS = "fc"


def _to_array(data, dtype=None):
    """Python data -> array with PyTorch's default dtypes (float32, int64, bool)."""
    if isinstance(data, Tensor):
        data = data.data
    if isinstance(data, xp.ndarray) or is_device_array(data):
        return data if dtype is None else data.astype(dtype, copy=False)
    if isinstance(data, xp.generic):
        return xp.asarray(data, dtype=dtype)
    arr = xp.asarray(data)
    if dtype is not None:
        return arr.astype(dtype, copy=False)
    if arr.dtype.kind == "f":
        return arr.astype(xp.float32)
    if arr.dtype.kind in "iu":
        return arr.astype(xp.int64)
    return arr


class Tensor:
    """An array with reverse-mode automatic differentiation.

    >>> x = Tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    >>> y = (x * x).sum(); y.backward(); x.grad
    tensor([[2., 4.],
            [6., 8.]])
    """

    __slots__ = ("data", "grad", "requires_grad", "_parents", "_backward", "_versions",
                 "_op", "_version", "__weakref__")
    __array_priority__ = 1000  # numpy scalars/arrays on the left defer to our operators

    def __init__(self, data, dtype=None, requires_grad: bool = False, device=None):
        self.data = _to_array(data, dtype)
        if device is not None:
            self.data = to_device(self.data, device)
        if requires_grad and self.data.dtype.kind not in _FLOAT_KINDS:
            raise TypeError(f"only floating-point tensors can require gradients, got dtype {self.data.dtype}")
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._parents = ()
        self._backward = None
        self._versions = ()
        self._op = ""
        self._version = 0

    # ------------------------------------------------------------------ basics
    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def device(self) -> str:
        """``"cpu"`` or ``"cuda:N"``: where the data lives (NumPy or CuPy array)."""
        return device_of(self.data)

    @property
    def is_leaf(self) -> bool:
        return self._backward is None

    def size(self, dim=None):
        return self.data.shape if dim is None else self.data.shape[dim]

    def dim(self) -> int:
        return self.data.ndim

    def numel(self) -> int:
        return self.data.size

    def __len__(self) -> int:
        return len(self.data)

    def numpy(self):
        """The data as a NumPy array: shared on the CPU, a host copy from a GPU."""
        return to_host(self.data)

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item(): a Tensor with {self.data.size} elements cannot be converted to a Python number")
        return self.data.item()

    def tolist(self):
        return self.data.tolist()

    def __repr__(self) -> str:
        body = xp.array2string(to_host(self.data), separator=", ", prefix="tensor(", precision=4)
        extras = [] if self.device == "cpu" else [f"device='{self.device}'"]
        if self.data.dtype not in (xp.float32, xp.int64, xp.bool_):
            extras.append(f"dtype={self.data.dtype}")
        if self._backward is not None:
            extras.append(f"grad_fn=<{self._op}>")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        return "tensor(" + body + "".join(", " + e for e in extras) + ")"

    def __bool__(self):
        if self.data.size != 1:
            raise ValueError("the truth value of a Tensor with more than one element is ambiguous")
        return bool(self.data)

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        return int(self.item())

    def __hash__(self):
        return id(self)

    def __array__(self, dtype=None, copy=None):
        host = to_host(self.data)
        return host if dtype is None else host.astype(dtype)

    def detach(self) -> "Tensor":
        """Same data (shared, no copy), cut from the graph."""
        return Tensor(self.data)

    def requires_grad_(self, mode: bool = True) -> "Tensor":
        if mode and self.data.dtype.kind not in _FLOAT_KINDS:
            raise TypeError(f"only floating-point tensors can require gradients, got dtype {self.data.dtype}")
        self.requires_grad = bool(mode)
        return self

    # ---------------------------------------------------------------- backward
    def backward(self, gradient=None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad``.

        ``self`` must be a scalar unless ``gradient`` (same shape as self) is given.
        The graph is freed afterwards unless ``retain_graph=True``.
        """
        run_backward(self, gradient, retain_graph)

    def zero_grad(self) -> None:
        self.grad = None

    # ---------------------------------------------------------- in-place edits
    def _check_inplace(self, what: str) -> None:
        if self.requires_grad and is_grad_enabled():
            raise RuntimeError(
                f"{what}: cannot modify in place a tensor that requires grad while gradients are "
                f"recorded (backward may still need it); use `with sl.no_grad():` or an out-of-place op")
        self._version += 1

    def __setitem__(self, index, value):
        self._check_inplace("__setitem__")
        if isinstance(index, Tensor):
            index = index.data
        self.data[index] = value.data if isinstance(value, Tensor) else value

    def _inplace(self, what, fn, other):
        self._check_inplace(what)
        if isinstance(other, Tensor) and other.requires_grad and is_grad_enabled():
            raise RuntimeError(
                f"{what}: the operand requires grad, and an in-place op does not record the graph "
                f"(its gradient would be lost silently); write the out-of-place form, e.g. x = x + y")
        fn(self.data, other.data if isinstance(other, Tensor) else other, out=self.data, casting="unsafe")
        return self

    def add_(self, other, alpha=1.0):
        if alpha != 1.0:
            other = (other.data if isinstance(other, Tensor) else other) * alpha
        return self._inplace("add_", xp.add, other)

    def sub_(self, other):
        return self._inplace("sub_", xp.subtract, other)

    def mul_(self, other):
        return self._inplace("mul_", xp.multiply, other)

    def div_(self, other):
        return self._inplace("div_", xp.true_divide, other)

    __iadd__ = add_
    __isub__ = sub_
    __imul__ = mul_
    __itruediv__ = div_

    def zero_(self):
        self._check_inplace("zero_")
        self.data[...] = 0
        return self

    def fill_(self, value):
        self._check_inplace("fill_")
        self.data[...] = value
        return self

    def copy_(self, src):
        self._check_inplace("copy_")
        src = to_device(src.data, self.device) if isinstance(src, Tensor) else array_module(self.data).asarray(src)
        if src.shape != self.data.shape:
            try:
                xp.broadcast_to(src, self.data.shape)
            except ValueError:
                raise ValueError(f"copy_: source shape {src.shape} does not match destination shape {self.data.shape}") from None
        self.data[...] = src
        return self

    # -------------------------------------------------- ops (see ops_*.py)
    def __add__(self, o): return ops.add(self, o)
    def __radd__(self, o): return ops.add(self, o)
    def __sub__(self, o): return ops.sub(self, o)
    def __rsub__(self, o): return ops.rsub(self, o)
    def __mul__(self, o): return ops.mul(self, o)
    def __rmul__(self, o): return ops.mul(self, o)
    def __truediv__(self, o): return ops.div(self, o)
    def __rtruediv__(self, o): return ops.rdiv(self, o)
    def __pow__(self, o): return ops.pow(self, o)
    def __rpow__(self, o): return ops.rpow(self, o)
    def __neg__(self): return ops.neg(self)
    def __matmul__(self, o): return ops.matmul(self, o)
    def __rmatmul__(self, o): return ops.matmul(_as_tensor(o, self), self)
    def __getitem__(self, index): return ops.getitem(self, index)

    def __eq__(self, o): return ops.compare(self, o, xp.equal)          # type: ignore[override]
    def __ne__(self, o): return ops.compare(self, o, xp.not_equal)      # type: ignore[override]
    def __lt__(self, o): return ops.compare(self, o, xp.less)
    def __le__(self, o): return ops.compare(self, o, xp.less_equal)
    def __gt__(self, o): return ops.compare(self, o, xp.greater)
    def __ge__(self, o): return ops.compare(self, o, xp.greater_equal)
    def __invert__(self): return Tensor(xp.logical_not(self.data))
    def __and__(self, o): return Tensor(xp.logical_and(self.data, _data(o)))
    def __or__(self, o): return Tensor(xp.logical_or(self.data, _data(o)))

    def eq(self, o): return self.__eq__(o)
    def ne(self, o): return self.__ne__(o)
    def lt(self, o): return self.__lt__(o)
    def le(self, o): return self.__le__(o)
    def gt(self, o): return self.__gt__(o)
    def ge(self, o): return self.__ge__(o)
    def add(self, o): return ops.add(self, o)
    def sub(self, o): return ops.sub(self, o)
    def mul(self, o): return ops.mul(self, o)
    def div(self, o): return ops.div(self, o)
    def matmul(self, o): return ops.matmul(self, o)

    def exp(self): return ops.exp(self)
    def log(self): return ops.log(self)
    def sqrt(self): return ops.sqrt(self)
    def rsqrt(self): return ops.pow(self, -0.5)
    def tanh(self): return ops.tanh(self)
    def sigmoid(self): return ops.sigmoid(self)
    def relu(self): return ops.relu(self)
    def gelu(self, approximate="none"): return ops.gelu(self, approximate)
    def silu(self): return ops.silu(self)
    def abs(self): return ops.abs(self)
    def clamp(self, min=None, max=None): return ops.clamp(self, min, max)
    clip = clamp
    def maximum(self, o): return ops.maximum(self, o)
    def minimum(self, o): return ops.minimum(self, o)
    def masked_fill(self, mask, value): return ops.masked_fill(self, mask, value)

    def sum(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        return ops.sum(self, _dim(dim, axis), _keep(keepdim, keepdims))

    def mean(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        return ops.mean(self, _dim(dim, axis), _keep(keepdim, keepdims))

    def var(self, dim=None, unbiased=None, keepdim=False, *, correction=None, axis=None, keepdims=None):
        if correction is None:
            correction = 1 if unbiased is None or unbiased else 0
        return ops.var(self, _dim(dim, axis), correction, _keep(keepdim, keepdims))

    def std(self, dim=None, unbiased=None, keepdim=False, *, correction=None, axis=None, keepdims=None):
        if correction is None:
            correction = 1 if unbiased is None or unbiased else 0
        return ops.std(self, _dim(dim, axis), correction, _keep(keepdim, keepdims))

    def amax(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        return ops.amax(self, _dim(dim, axis), _keep(keepdim, keepdims))

    def amin(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        return ops.amin(self, _dim(dim, axis), _keep(keepdim, keepdims))

    def max(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        return ops.max_min(self, _dim(dim, axis), _keep(keepdim, keepdims), "max")

    def min(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        return ops.max_min(self, _dim(dim, axis), _keep(keepdim, keepdims), "min")

    def argmax(self, dim=None, keepdim=False):
        return Tensor(_arg(xp.argmax, self.data, dim, keepdim))

    def argmin(self, dim=None, keepdim=False):
        return Tensor(_arg(xp.argmin, self.data, dim, keepdim))

    def softmax(self, dim=None, *, axis=None): return ops.softmax(self, _dim(dim, axis, -1))
    def log_softmax(self, dim=None, *, axis=None): return ops.log_softmax(self, _dim(dim, axis, -1))

    def reshape(self, *shape): return ops.reshape(self, _shape_arg(shape))
    view = reshape
    def flatten(self, start_dim=0, end_dim=-1): return ops.flatten(self, start_dim, end_dim)
    def transpose(self, d0=-2, d1=-1): return ops.transpose(self, d0, d1)
    def permute(self, *dims): return ops.permute(self, _shape_arg(dims))
    def expand(self, *shape): return ops.expand(self, _shape_arg(shape))
    def squeeze(self, dim=None): return ops.squeeze(self, dim)
    def unsqueeze(self, dim): return ops.unsqueeze(self, dim)
    def split(self, split_size_or_sections, dim=0): return ops.split(self, split_size_or_sections, dim)
    def chunk(self, chunks, dim=0): return ops.chunk(self, chunks, dim)
    def triu(self, diagonal=0): return ops.triu(self, diagonal)
    def tril(self, diagonal=0): return ops.tril(self, diagonal)
    def contiguous(self): return ops.contiguous(self)
    def to(self, *args, dtype=None, device=None):
        """``.to("cuda")``, ``.to("cpu")``, ``.to(sl.float64)``, ``.to("cuda", sl.float32)``: a new
        tensor on that device / of that dtype (itself when nothing changes); differentiable."""
        for a in args:
            if isinstance(a, Tensor):
                device, dtype = a.device, a.dtype
            elif is_device_name(a):
                device = a
            else:
                dtype = a
        out = self if device is None else ops.move(self, normalize(device))
        return out if dtype is None else ops.cast(out, dtype)

    def cpu(self): return self.to("cpu")
    def cuda(self, index=None): return self.to("cuda" if index is None else f"cuda:{int(index)}")
    def float(self): return ops.cast(self, xp.float32)
    def double(self): return ops.cast(self, xp.float64)
    def long(self): return ops.cast(self, xp.int64)

    @property
    def T(self): return ops.permute(self, tuple(range(self.data.ndim - 1, -1, -1)))

    @property
    def mT(self): return ops.transpose(self, -2, -1)


# ---------------------------------------------------------------- helpers
def _data(x):
    return x.data if isinstance(x, Tensor) else x


def _as_tensor(x, like: Tensor) -> Tensor:
    if isinstance(x, Tensor):
        return x
    if isinstance(x, numbers.Number):
        return Tensor(array_module(like.data).asarray(x, dtype=like.data.dtype))
    return Tensor(_to_array(x), device=like.device)


def _dim(dim, axis, default=None):
    d = axis if dim is None else dim
    if d is None:
        d = default
    if isinstance(d, list):
        d = tuple(d)
    return d


def _keep(keepdim, keepdims):
    return bool(keepdims) if keepdims is not None else bool(keepdim)


def _shape_arg(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    return tuple(shape)


def _arg(fn, a, dim, keepdim):
    if dim is None:
        return array_module(a).asarray(fn(a), dtype=xp.int64)
    return fn(a, axis=dim, keepdims=keepdim).astype(xp.int64)


from .engine import make_result, run_backward, unbroadcast  # noqa: E402,F401  (the engine needs Tensor)
from . import ops  # noqa: E402  (ops import Tensor from this module)
