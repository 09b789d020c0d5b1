"""GPT-2: token + position embeddings, pre-LayerNorm blocks, causal self-attention, GELU MLP.

    x = wte[ids] + wpe[pos]                                       # (B, T, C)
    for each block:  x = x + attn(ln_1(x));  x = x + mlp(ln_2(x))
    logits = ln_f(x) @ wte.T                                      # head tied to the embedding

Parameter names are HF's GPT-2 names (``transformer.h.0.attn.c_attn.weight`` ...), but every
projection is a Linear with weight (out, in); HF's Conv1D stores (in, out), so loading an HF
checkpoint is a rename-free loop plus a transpose of four weight kinds (see io/hf.py).

>>> model = GPT(GPTConfig.from_preset("gpt-nano", vocab_size=100))
>>> model(xp.zeros((2, 5), dtype=xp.int64)).shape
(2, 5, 100)
"""
import math

from ..autograd.grad_mode import is_grad_enabled
from ..autograd.random import default_generator
from ..autograd.tensor import Tensor
from ..backend import xp
from ..nn import Embedding, LayerNorm, Linear, Module, ModuleDict, ModuleList
from ..nn import functional as F
from ..nn import init
from .base import LanguageModel
from .config import GPTConfig
from .kv_cache import KVCache


def split_projection(x, linear: Linear, parts: int):
    """``linear(x)`` cut into ``parts`` equal pieces on the last dim.

    Training: one linear per row block of the weight (the weight slices' gradients are small),
    so no full-size zero gradient is built for each piece. Inference: one GEMM and views.
    """
    W, b = linear.weight, linear.bias
    n = W.shape[0] // parts
    if is_grad_enabled() and W.requires_grad:
        return [F.linear(x, W[i * n:(i + 1) * n], None if b is None else b[i * n:(i + 1) * n]) for i in range(parts)]
    y = F.linear(x, W, b)
    return [y[..., i * n:(i + 1) * n] for i in range(parts)]


def cached_attention(q, k, v, layer: int, cache, dropout_p: float = 0.0, enable_gqa: bool = False):
    """Causal attention of q (B, H, T, D) over k, v (B, Hkv, T, D) — with a KV cache, over all stored keys."""
    if cache is None:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True, enable_gqa=enable_gqa)
    T = q.shape[2]
    mask = cache.attention_mask(T)
    k_all, v_all = cache.update(layer, k.data, v.data)
    return F.scaled_dot_product_attention(q, Tensor(k_all), Tensor(v_all), attn_mask=mask,
                                          is_causal=mask is None and T > 1, enable_gqa=enable_gqa)


class CausalSelfAttention(Module):
    """Multi-head causal self-attention with one fused q/k/v projection ``c_attn`` (HF names)."""

    def __init__(self, config: GPTConfig, generator=None):
        super().__init__()
        C = config.n_embd
        self.c_attn = Linear(C, 3 * C, bias=config.bias, generator=generator)
        self.c_proj = Linear(C, C, bias=config.bias, generator=generator)
        self.n_head, self.dropout = config.n_head, config.dropout

    def forward(self, x, layer: int = 0, cache=None):
        B, T, C = x.shape
        H = self.n_head
        p = self.dropout if self.training else 0.0
        if cache is None:  # training / full-sequence: one GEMM, one fused attention op, no copies
            y = self.c_proj(F.qkv_attention(self.c_attn(x), H, is_causal=True, dropout_p=p))
            return F.dropout(y, p, self.training) if p else y
        q, k, v = (t.reshape(B, T, H, C // H).transpose(1, 2) for t in split_projection(x, self.c_attn, 3))
        y = cached_attention(q, k, v, layer, cache, dropout_p=p)          # (B, H, T, D)
        y = self.c_proj(y.transpose(1, 2).reshape(B, T, C))
        return F.dropout(y, p, self.training) if p else y


class MLP(Module):
    def __init__(self, config: GPTConfig, generator=None):
        super().__init__()
        C = config.n_embd
        self.c_fc = Linear(C, 4 * C, bias=config.bias, generator=generator)
        self.c_proj = Linear(4 * C, C, bias=config.bias, generator=generator)
        self.dropout = config.dropout

    def forward(self, x):
        y = self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))
        return F.dropout(y, self.dropout, self.training) if self.dropout and self.training else y


class Block(Module):
    def __init__(self, config: GPTConfig, generator=None):
        super().__init__()
        C = config.n_embd
        self.ln_1 = LayerNorm(C, eps=config.layer_norm_eps, bias=config.bias)
        self.attn = CausalSelfAttention(config, generator)
        self.ln_2 = LayerNorm(C, eps=config.layer_norm_eps, bias=config.bias)
        self.mlp = MLP(config, generator)

    def forward(self, x, layer: int = 0, cache=None):
        x = x + self.attn(self.ln_1(x), layer, cache)
        return x + self.mlp(self.ln_2(x))


class GPT(LanguageModel):
    """The GPT-2 family. ``GPT(config, generator=None)``; weights drawn as GPT-2 initialises them."""

    def __init__(self, config: GPTConfig, generator=None):
        super().__init__()
        self.config = config
        g = generator or default_generator()
        C = config.n_embd
        parts = {"wte": Embedding(config.vocab_size, C, generator=g)}
        if config.positional == "learned":
            parts["wpe"] = Embedding(config.block_size, C, generator=g)
        parts["h"] = ModuleList([Block(config, g) for _ in range(config.n_layer)])
        parts["ln_f"] = LayerNorm(C, eps=config.layer_norm_eps, bias=config.bias)
        self.transformer = ModuleDict(parts)
        if config.positional == "sinusoidal":
            self.register_buffer("sinusoid", F.sinusoidal_positions(config.block_size, C), persistent=False)
        self.init_weights(g)

    def init_weights(self, generator=None) -> None:
        """GPT-2's scheme: N(0, 0.02) weights, zero biases, residual projections N(0, 0.02/sqrt(2 n_layer))."""
        g = generator or default_generator()
        for name, p in self.named_parameters():
            if name.endswith(".bias"):
                init.zeros_(p)
            elif ".ln_" in name or name.startswith("transformer.ln_f"):
                init.ones_(p)
            elif name.endswith("c_proj.weight"):
                init.normal_(p, 0.0, 0.02 / math.sqrt(2 * self.config.n_layer), generator=g)
            else:
                init.normal_(p, 0.0, 0.02, generator=g)

    @property
    def context_length(self) -> int:
        return self.config.block_size

    def new_cache(self, batch: int, max_len: int) -> KVCache:
        c = self.config
        return KVCache(c.n_layer, batch, c.n_head, c.head_dim, min(max_len, c.block_size),
                       dtype=self.transformer.wte.weight.dtype)

    def decoder(self, batch: int, max_len: int):
        """A fast raw-array ``GPTDecoder`` for generation (see models/decode.py)."""
        from .decode import GPTDecoder
        return GPTDecoder(self, batch, max_len)

    def hidden(self, ids, cache=None):
        tr = self.transformer
        T = ids.shape[1]
        start = cache.pos if cache is not None else 0
        x = F.embedding(ids, tr.wte.weight)                               # (B, T, C)
        if self.config.positional == "learned":
            x = x + F.embedding(xp.arange(start, start + T), tr.wpe.weight)  # + (T, C)
        else:
            x = x + Tensor(self.sinusoid.data[start:start + T])
        if self.config.dropout and self.training:
            x = F.dropout(x, self.config.dropout, True)
        for i, block in enumerate(tr.h):
            x = block(x, i, cache)
        return tr.ln_f(x)

    def head(self, x):
        return F.linear(x, self.transformer.wte.weight)                    # tied: (B, T, vocab)
