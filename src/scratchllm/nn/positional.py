"""Position information: sinusoidal table, learned table, and the rotary (RoPE) layer."""
from ..autograd.tensor import Tensor
from ..backend import xp
from . import functional as F
from ._init import normal_param
from .module import Module


def _positions(positions, offset, max_len, who):
    if isinstance(positions, int):
        idx = xp.arange(offset, offset + positions)
    else:
        idx = (positions.data if isinstance(positions, Tensor) else xp.asarray(positions)) + offset
    if idx.size and (idx.min() < 0 or idx.max() >= max_len):
        raise ValueError(f"{who}: positions up to {int(idx.max())} exceed max_len {max_len}")
    return idx


class SinusoidalPositionalEmbedding(Module):
    """The original Transformer's fixed table (sin on even dims, cos on odd dims).

    ``forward(T)`` -> (T, dim); ``forward(positions)`` -> (*positions.shape, dim).
    """

    def __init__(self, max_len: int, dim: int, base: float = 10000.0, dtype=None):
        super().__init__()
        self.max_len, self.dim = max_len, dim
        self.register_buffer("pe", F.sinusoidal_positions(max_len, dim, base, dtype or xp.float32), persistent=False)

    def forward(self, positions, offset: int = 0):
        return Tensor(self.pe.data[_positions(positions, offset, self.max_len, "SinusoidalPositionalEmbedding")])

    def extra_repr(self) -> str:
        return f"{self.max_len}, {self.dim}"


class LearnedPositionalEmbedding(Module):
    """A trained table of ``max_len`` position vectors (GPT-2's ``wpe``), N(0, 1) at start."""

    def __init__(self, max_len: int, dim: int, dtype=None, generator=None):
        super().__init__()
        self.max_len, self.dim = max_len, dim
        self.weight = normal_param((max_len, dim), 1.0, dtype, generator)

    def forward(self, positions, offset: int = 0):
        return F.embedding(_positions(positions, offset, self.max_len, "LearnedPositionalEmbedding"), self.weight)

    def extra_repr(self) -> str:
        return f"{self.max_len}, {self.dim}"


class RotaryEmbedding(Module):
    """Applies RoPE to (B, H, T, head_dim) tensors; tables are non-persistent buffers.
    ``scaling``: Llama 3.1's frequency scaling dict (see ``F.rope_cache``), or None."""

    def __init__(self, head_dim: int, max_seq_len: int = 2048, theta: float = 10000.0,
                 layout: str = "interleaved", dtype=None, scaling=None):
        super().__init__()
        if layout not in ("interleaved", "half"):
            raise ValueError(f"RotaryEmbedding: layout must be 'interleaved' or 'half', got {layout!r}")
        self.head_dim, self.max_seq_len, self.theta, self.layout = head_dim, max_seq_len, theta, layout
        cos, sin = F.rope_cache(head_dim, max_seq_len, theta, dtype or xp.float32, scaling)  # (L, hd/2)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def forward(self, x, offset: int = 0):
        return F.apply_rope(x, self.cos.data, self.sin.data, self.layout, offset)

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, max_seq_len={self.max_seq_len}, theta={self.theta}, layout='{self.layout}'"
