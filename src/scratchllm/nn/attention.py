"""Causal self-attention layers: ``CausalSelfAttention`` (Llama's) and ``PackedCausalSelfAttention`` (GPT-2's).

``CausalSelfAttention``, Meta's names: ``wq`` (n_heads*hd, dim), ``wk``/``wv`` (n_kv_heads*hd, dim),
``wo`` (dim, n_heads*hd).
``n_kv_heads`` must divide ``n_heads``; the G = n_heads / n_kv_heads query heads of a group
share one key/value head (n_kv_heads == n_heads is plain multi-head attention, 1 is MQA).
Optional RoPE on q and k (``rope_theta`` not None, or a shared ``rope`` layer).

``PackedCausalSelfAttention`` has GPT-2's (HF) names: one fused projection ``c_attn`` (3*dim, dim)
for q|k|v and ``c_proj``; its attention is ``F.qkv_attention`` on the packed projection.
"""
from . import functional as F
from .dropout import Dropout
from .linear import Linear
from .module import Module
from .positional import RotaryEmbedding


class CausalSelfAttention(Module):
    """x (B, T, dim) -> (B, T, dim).

    >>> attn = CausalSelfAttention(dim=64, n_heads=8, n_kv_heads=2, rope_theta=10000.0)
    >>> attn(sl.randn(2, 5, 64)).shape
    (2, 5, 64)
    """

    def __init__(self, dim: int, n_heads: int, n_kv_heads=None, bias: bool = False, dropout: float = 0.0,
                 rope_theta=None, max_seq_len: int = 2048, rope_layout: str = "interleaved", dtype=None,
                 generator=None, rope=None):
        super().__init__()
        n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        if dim % n_heads:
            raise ValueError(f"CausalSelfAttention: dim {dim} is not divisible by n_heads {n_heads}")
        if n_heads % n_kv_heads:
            raise ValueError(f"CausalSelfAttention: n_kv_heads {n_kv_heads} does not divide n_heads {n_heads}")
        self.dim, self.n_heads, self.n_kv_heads = dim, n_heads, n_kv_heads
        self.head_dim = dim // n_heads
        self.dropout_p = dropout
        self.generator = generator
        kv = n_kv_heads * self.head_dim
        self.wq = Linear(dim, dim, bias=bias, dtype=dtype, generator=generator)
        self.wk = Linear(dim, kv, bias=bias, dtype=dtype, generator=generator)
        self.wv = Linear(dim, kv, bias=bias, dtype=dtype, generator=generator)
        self.wo = Linear(dim, dim, bias=bias, dtype=dtype, generator=generator)
        self.resid_dropout = Dropout(dropout, generator)
        if rope is None and rope_theta is not None:
            rope = RotaryEmbedding(self.head_dim, max_seq_len, rope_theta, rope_layout, dtype)
        self.rope = rope                                  # may be one layer shared by every block

    def forward(self, x, attn_mask=None, offset: int = 0):
        """``attn_mask`` (bool or additive, broadcastable to (B, H, T, T)) replaces the causal mask."""
        B, T, _ = x.shape
        hd = self.head_dim
        q = self.wq(x).reshape(B, T, self.n_heads, hd).transpose(1, 2)       # (B, n_heads, T, hd)
        k = self.wk(x).reshape(B, T, self.n_kv_heads, hd).transpose(1, 2)    # (B, n_kv_heads, T, hd)
        v = self.wv(x).reshape(B, T, self.n_kv_heads, hd).transpose(1, 2)
        if self.rope is not None:
            q, k = self.rope(q, offset), self.rope(k, offset)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, is_causal=attn_mask is None,
            dropout_p=self.dropout_p if self.training else 0.0,
            enable_gqa=self.n_kv_heads != self.n_heads, generator=self.generator)  # (B, n_heads, T, hd)
        y = y.transpose(1, 2).reshape(B, T, self.dim)
        return self.resid_dropout(self.wo(y))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, n_heads={self.n_heads}, n_kv_heads={self.n_kv_heads}"


class PackedCausalSelfAttention(Module):
    """x (B, T, dim) -> (B, T, dim), GPT-2's layout: ``c_attn`` (q|k|v in one Linear), ``c_proj``.

    >>> attn = PackedCausalSelfAttention(dim=64, n_heads=8)
    >>> attn(sl.randn(2, 5, 64)).shape
    (2, 5, 64)
    """

    def __init__(self, dim: int, n_heads: int, bias: bool = True, dropout: float = 0.0, dtype=None,
                 generator=None):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"PackedCausalSelfAttention: dim {dim} is not divisible by n_heads {n_heads}")
        self.c_attn = Linear(dim, 3 * dim, bias=bias, dtype=dtype, generator=generator)
        self.c_proj = Linear(dim, dim, bias=bias, dtype=dtype, generator=generator)
        self.n_head, self.dropout = n_heads, dropout

    def forward(self, x):
        p = self.dropout if self.training else 0.0
        y = self.c_proj(F.qkv_attention(self.c_attn(x), self.n_head, is_causal=True, dropout_p=p))
        return F.dropout(y, p, self.training) if p else y

    def extra_repr(self) -> str:
        return f"n_heads={self.n_head}"
