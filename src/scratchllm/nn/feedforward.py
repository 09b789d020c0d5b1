"""``SwiGLU`` feed-forward (Llama's): w2(silu(w1 x) * w3 x), Meta's parameter names."""
from . import functional as F
from .linear import Linear
from .module import Module


class SwiGLU(Module):
    """w1: gate (hidden, dim), w3: up (hidden, dim), w2: down (dim, hidden)."""

    def __init__(self, dim: int, hidden_dim: int, bias: bool = False, dtype=None, generator=None):
        super().__init__()
        self.w1 = Linear(dim, hidden_dim, bias=bias, dtype=dtype, generator=generator)
        self.w2 = Linear(hidden_dim, dim, bias=bias, dtype=dtype, generator=generator)
        self.w3 = Linear(dim, hidden_dim, bias=bias, dtype=dtype, generator=generator)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))
