"""Llama 2 / 3: RMSNorm, rotary positions, grouped-query attention, SwiGLU, Meta's names.

    x = tok_embeddings[ids]                                              # (B, T, dim)
    for each layer:
        h = attention_norm(x);  q, k, v = wq h, wk h, wv h               # k, v: n_kv_heads
        q, k = rope(q), rope(k)                                          # interleaved pairs (Meta)
        x = x + wo attention(q, k, v)                                    # kv heads shared by groups
        x = x + w2(silu(w1 ffn_norm(x)) * w3 ffn_norm(x))
    logits = output(norm(x))                                             # or tied to tok_embeddings

q/k use Meta's (and llama2.c's) interleaved RoPE layout; io/hf.py undoes HF's row permutation.

>>> model = Llama(LlamaConfig.from_preset("llama-nano"))
>>> model(xp.zeros((1, 4), dtype=xp.int64)).shape
(1, 4, 512)
"""
import math

from ..autograd.random import default_generator
from ..backend import xp
from ..nn import Embedding, Linear, Module, ModuleList, RMSNorm, SwiGLU
from ..nn import functional as F
from ..nn import init
from .base import LanguageModel
from .config import LlamaConfig
from .gpt import cached_attention
from .kv_cache import KVCache


def rope_tables(config: LlamaConfig):
    """(cos, sin) float32 (max_seq_len, head_dim/2); Llama 3.1's frequency scaling when configured."""
    hd, L = config.head_dim, config.max_seq_len
    if not config.rope_scaling:
        return F.rope_cache(hd, L, config.rope_theta)
    s = config.rope_scaling
    inv_freq = 1.0 / (config.rope_theta ** (xp.arange(0, hd, 2, dtype=xp.float64) / hd))
    old, factor = s["original_max_position_embeddings"], s["factor"]
    low_wavelen, high_wavelen = old / s["low_freq_factor"], old / s["high_freq_factor"]
    wavelen = 2 * math.pi / inv_freq
    scaled = xp.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)        # long waves slowed down
    smooth = (old / wavelen - s["low_freq_factor"]) / (s["high_freq_factor"] - s["low_freq_factor"])
    mid = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    scaled = xp.where(mid, (1 - smooth) * scaled / factor + smooth * scaled, scaled)
    angles = xp.outer(xp.arange(L, dtype=xp.float64), scaled)
    return xp.cos(angles).astype(xp.float32), xp.sin(angles).astype(xp.float32)


class Attention(Module):
    """Grouped-query attention: ``wq`` (n_heads*hd, dim), ``wk``/``wv`` (n_kv_heads*hd, dim), ``wo``."""

    def __init__(self, config: LlamaConfig, generator=None):
        super().__init__()
        D, hd = config.dim, config.head_dim
        self.wq = Linear(D, config.n_heads * hd, bias=False, generator=generator)
        self.wk = Linear(D, config.n_kv_heads * hd, bias=False, generator=generator)
        self.wv = Linear(D, config.n_kv_heads * hd, bias=False, generator=generator)
        self.wo = Linear(config.n_heads * hd, D, bias=False, generator=generator)
        self.n_heads, self.n_kv_heads, self.head_dim = config.n_heads, config.n_kv_heads, hd
        self.dropout = config.dropout

    def forward(self, x, rope, layer: int = 0, cache=None):
        B, T, _ = x.shape
        cos, sin = rope
        start = cache.pos if cache is not None else 0
        q = self.wq(x).reshape(B, T, self.n_heads, self.head_dim).transpose(1, 2)      # (B, H, T, hd)
        k = self.wk(x).reshape(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)   # (B, Hkv, T, hd)
        v = self.wv(x).reshape(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q = F.apply_rope(q, cos, sin, layout="interleaved", offset=start)
        k = F.apply_rope(k, cos, sin, layout="interleaved", offset=start)
        p = self.dropout if self.training else 0.0
        y = cached_attention(q, k, v, layer, cache, dropout_p=p, enable_gqa=self.n_kv_heads != self.n_heads)
        y = self.wo(y.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim))
        return F.dropout(y, p, True) if p else y


class TransformerBlock(Module):
    def __init__(self, config: LlamaConfig, generator=None):
        super().__init__()
        self.attention = Attention(config, generator)
        self.feed_forward = SwiGLU(config.dim, config.ffn_hidden_dim, bias=False, generator=generator)
        self.attention_norm = RMSNorm(config.dim, eps=config.norm_eps)
        self.ffn_norm = RMSNorm(config.dim, eps=config.norm_eps)
        self.dropout = config.dropout

    def forward(self, x, rope, layer: int = 0, cache=None):
        x = x + self.attention(self.attention_norm(x), rope, layer, cache)
        y = self.feed_forward(self.ffn_norm(x))
        return x + (F.dropout(y, self.dropout, True) if self.dropout and self.training else y)


class Llama(LanguageModel):
    """The Llama 2/3 family. ``Llama(config, generator=None)``; N(0, 0.02) weights, residual
    projections (wo, w2) N(0, 0.02/sqrt(2 n_layers)), as llama2.c initialises them."""

    def __init__(self, config: LlamaConfig, generator=None):
        super().__init__()
        self.config = config
        g = generator or default_generator()
        self.tok_embeddings = Embedding(config.vocab_size, config.dim, generator=g)
        self.layers = ModuleList([TransformerBlock(config, g) for _ in range(config.n_layers)])
        self.norm = RMSNorm(config.dim, eps=config.norm_eps)
        if not config.tie_embeddings:
            self.output = Linear(config.dim, config.vocab_size, bias=False, generator=g)
        self.rope = rope_tables(config)                                  # plain arrays, not state
        self.init_weights(g)

    def init_weights(self, generator=None) -> None:
        g = generator or default_generator()
        std_res = 0.02 / math.sqrt(2 * self.config.n_layers)
        for name, p in self.named_parameters():
            if name.endswith("norm.weight"):
                init.ones_(p)
            elif name.endswith(("wo.weight", "w2.weight")):
                init.normal_(p, 0.0, std_res, generator=g)
            else:
                init.normal_(p, 0.0, 0.02, generator=g)

    @property
    def context_length(self) -> int:
        return self.config.max_seq_len

    def new_cache(self, batch: int, max_len: int) -> KVCache:
        c = self.config
        return KVCache(c.n_layers, batch, c.n_kv_heads, c.head_dim, min(max_len, c.max_seq_len),
                       dtype=self.tok_embeddings.weight.dtype)

    def decoder(self, batch: int, max_len: int):
        """A fast raw-array ``LlamaDecoder`` for generation (see models/decode.py)."""
        from .decode import LlamaDecoder
        return LlamaDecoder(self, batch, max_len)

    def hidden(self, ids, cache=None):
        x = F.embedding(ids, self.tok_embeddings.weight)                # (B, T, dim)
        if self.config.dropout and self.training:
            x = F.dropout(x, self.config.dropout, True)
        for i, layer in enumerate(self.layers):
            x = layer(x, self.rope, i, cache)
        return self.norm(x)

    def head(self, x):
        w = self.tok_embeddings.weight if self.config.tie_embeddings else self.output.weight
        return F.linear(x, w)                                           # (B, T, vocab)
