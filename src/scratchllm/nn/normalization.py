"""``LayerNorm`` and ``RMSNorm`` (weight ones, bias zeros at start, as torch)."""
from . import functional as F
from ._init import const_param
from .module import Module


def _shape(normalized_shape):
    return (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)


class LayerNorm(Module):
    """torch.nn.LayerNorm(normalized_shape, eps=1e-5, elementwise_affine=True, bias=True)."""

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True, bias: bool = True,
                 dtype=None):
        super().__init__()
        self.normalized_shape, self.eps = _shape(normalized_shape), eps
        self.elementwise_affine = elementwise_affine
        if elementwise_affine:
            self.weight = const_param(self.normalized_shape, 1.0, dtype)
            if bias:
                self.bias = const_param(self.normalized_shape, 0.0, dtype)
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        bias = self.bias is not None or not self.elementwise_affine
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}, bias={bias}"


class RMSNorm(Module):
    """x / sqrt(mean(x^2) + eps) * weight (Llama's norm); ``dim`` an int or a shape."""

    def __init__(self, dim, eps: float = 1e-6, elementwise_affine: bool = True, dtype=None):
        super().__init__()
        self.normalized_shape, self.eps = _shape(dim), eps
        self.elementwise_affine = elementwise_affine
        if elementwise_affine:
            self.weight = const_param(self.normalized_shape, 1.0, dtype)
        else:
            self.register_parameter("weight", None)

    def forward(self, x):
        return F.rms_norm(x, self.normalized_shape, self.weight, self.eps)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"
