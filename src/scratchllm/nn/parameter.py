"""``Parameter``: a Tensor that a Module registers as trainable (requires_grad by default)."""
from ..autograd.tensor import Tensor


class Parameter(Tensor):
    """A learnable tensor. Assigning one to a Module attribute registers it.

    >>> p = Parameter([1.0, 2.0]); p.requires_grad
    True
    """

    __slots__ = ()

    def __init__(self, data, requires_grad: bool = True, dtype=None):
        super().__init__(data, dtype=dtype, requires_grad=requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()
