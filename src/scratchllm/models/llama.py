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
from ..nn import CausalSelfAttention, Embedding, Linear, Module, ModuleList, RMSNorm, RotaryEmbedding, SwiGLU
from ..nn import functional as F
from ..nn import init
from .base import LanguageModel
from .config import LlamaConfig


def rotary(config: LlamaConfig) -> RotaryEmbedding:
    """The RoPE layer of a Llama config (interleaved pairs; Llama 3.1's scaling when configured)."""
    return RotaryEmbedding(config.head_dim, config.max_seq_len, config.rope_theta, "interleaved",
                           scaling=config.rope_scaling)


class TransformerBlock(Module):
    def __init__(self, config: LlamaConfig, rope: RotaryEmbedding, generator=None):
        super().__init__()
        self.attention = CausalSelfAttention(config.dim, config.n_heads, config.n_kv_heads, bias=False,
                                             dropout=config.dropout, generator=generator, rope=rope)
        self.attention.generator = self.attention.resid_dropout.generator = None  # dropout: the global generator
        self.feed_forward = SwiGLU(config.dim, config.ffn_hidden_dim, bias=False, generator=generator)
        self.attention_norm = RMSNorm(config.dim, eps=config.norm_eps)
        self.ffn_norm = RMSNorm(config.dim, eps=config.norm_eps)
        self.dropout = config.dropout

    def forward(self, x):
        x = x + self.attention(self.attention_norm(x))
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
        self.rotary = rotary(config)                                     # one table, shared by every layer
        self.layers = ModuleList([TransformerBlock(config, self.rotary, g) for _ in range(config.n_layers)])
        self.norm = RMSNorm(config.dim, eps=config.norm_eps)
        if not config.tie_embeddings:
            self.output = Linear(config.dim, config.vocab_size, bias=False, generator=g)
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
    def rope(self) -> tuple:
        """(cos, sin) arrays (max_seq_len, head_dim/2) of the shared RoPE layer; assignable."""
        return self.rotary.cos.data, self.rotary.sin.data

    @rope.setter
    def rope(self, tables) -> None:
        self.rotary.cos, self.rotary.sin = (xp.asarray(t) for t in tables)

    def decoder_tables(self) -> dict:
        return {"rope": self.rope}

    @property
    def context_length(self) -> int:
        return self.config.max_seq_len

    def hidden(self, ids):
        x = F.embedding(ids, self.tok_embeddings.weight)                # (B, T, dim)
        if self.config.dropout and self.training:
            x = F.dropout(x, self.config.dropout, True)
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)

    def head(self, x):
        w = self.tok_embeddings.weight if self.config.tie_embeddings else self.output.weight
        return F.linear(x, w)                                           # (B, T, vocab)
