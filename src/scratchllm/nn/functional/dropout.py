"""``dropout(x, p, training, generator)``: zero each element with probability p, scale the rest.

The kept elements are multiplied by 1/(1-p) so the expected value is unchanged;
the backward multiplies by the same saved scaled mask. The mask comes from a
seeded ``Generator`` (the default one unless given), so runs are reproducible.
"""
from ...autograd.random import default_generator
from ...autograd.tensor import make_result
from ...backend import xp
from . import cuda_ops
from ._util import as_float_tensor


def dropout_mask(shape, p, dtype, generator=None):
    """Array of 0 and 1/(1-p) with P(0) = p, drawn from ``generator``."""
    rng = (generator or default_generator()).rng
    u = rng.random(shape, dtype=xp.float32)
    keep = u >= p
    return keep.astype(dtype) * dtype.type(1.0 / (1.0 - p))


def dropout(x, p: float = 0.5, training: bool = True, generator=None):
    """Identity when not training or p == 0; all zeros when p == 1."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: probability must be in [0, 1], got {p}")
    x = as_float_tensor(x)
    if not training or p == 0.0:
        return x
    X = x.data
    if p == 1.0:
        return make_result(xp.zeros_like(X), (x,), lambda g: (xp.zeros_like(g),), "dropout")
    if X.__class__ is not xp.ndarray:                      # on a GPU: the mask drawn there (cuda_ops.py)
        mask = cuda_ops.dropout_mask(X.shape, p, X.dtype, generator)
    else:
        mask = dropout_mask(X.shape, p, X.dtype, generator)
    return make_result(X * mask, (x,), lambda g: (g * mask,), "dropout")
