"""``Linear`` (y = x W^T + b, weight (out, in)) and ``Identity``."""
from . import functional as F
from ._init import fan_in_bound, uniform_param
from .module import Module


class Linear(Module):
    """torch.nn.Linear: weight (out_features, in_features) and bias (out_features,),
    both U(-1/sqrt(in), 1/sqrt(in)) at start.

    >>> Linear(4, 2)(sl.randn(3, 4)).shape
    (3, 2)
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype=None, generator=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        bound = fan_in_bound(in_features)
        self.weight = uniform_param((out_features, in_features), bound, dtype, generator)
        if bias:
            self.bias = uniform_param((out_features,), bound, dtype, generator)
        else:
            self.register_parameter("bias", None)

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Identity(Module):
    def forward(self, x):
        return x
