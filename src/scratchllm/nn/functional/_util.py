"""Small helpers shared by the functional ops."""
from ...autograd.tensor import Tensor
from ...backend import xp


def as_tensor(x) -> Tensor:
    """A Tensor as is; anything else wrapped (float data becomes float32, as torch)."""
    return x if isinstance(x, Tensor) else Tensor(x)


def as_float_tensor(x, like=None) -> Tensor:
    """A floating-point Tensor; plain data takes ``like``'s dtype when given."""
    if isinstance(x, Tensor):
        return x
    dtype = like.data.dtype if like is not None else None
    arr = xp.asarray(x, dtype=dtype)
    if arr.dtype.kind != "f":
        arr = arr.astype(xp.float32)
    return Tensor(arr)


def rows(a):
    """View (..., D) as (N, D) (no copy when the array is contiguous)."""
    return a.reshape(-1, a.shape[-1])


def row_sums(a2d, scale: float = 1.0):
    """(N,) ``scale`` times the row sums of a 2-D array, as one matrix-vector product (a few
    times faster than ``a2d.sum(axis=1)`` for rows of a few hundred elements)."""
    return a2d @ xp.full(a2d.shape[1], scale, dtype=a2d.dtype)
