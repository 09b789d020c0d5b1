"""Small helpers shared by the functional ops."""
from ...autograd.ops.reduce import row_sums  # noqa: F401  (re-exported for the ops here)
from ...autograd.tensor import Tensor
from ...backend import xp


def as_tensor(x) -> Tensor:
    """A Tensor as is; anything else wrapped (float data becomes float32, as torch)."""
    return x if isinstance(x, Tensor) else Tensor(x)


def as_float_tensor(x, like=None) -> Tensor:
    """A floating-point Tensor; plain data takes ``like``'s dtype when given."""
    if isinstance(x, Tensor):
        return x
    dtype = like.dtype if like is not None else None          # like: a Tensor or an array
    arr = xp.asarray(x, dtype=dtype)
    if arr.dtype.kind != "f":
        arr = arr.astype(xp.float32)
    return Tensor(arr)


def rows(a):
    """View (..., D) as (N, D) (no copy when the array is contiguous)."""
    return a.reshape(-1, a.shape[-1])


