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

from ..autograd.random import default_generator
from ..autograd.tensor import Tensor
from ..backend import xp
from ..nn import Embedding, LayerNorm, Linear, Module, ModuleDict, ModuleList, PackedCausalSelfAttention
from ..nn import functional as F
from ..nn import init
from .base import LanguageModel
from .config import GPTConfig


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
        self.attn = PackedCausalSelfAttention(C, config.n_head, config.bias, config.dropout, generator=generator)
        self.ln_2 = LayerNorm(C, eps=config.layer_norm_eps, bias=config.bias)
        self.mlp = MLP(config, generator)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
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

    def hidden(self, ids):
        tr = self.transformer
        T = ids.shape[1]
        x = F.embedding(ids, tr.wte.weight)                               # (B, T, C)
        if self.config.positional == "learned":
            x = x + F.embedding(xp.arange(T), tr.wpe.weight)              # + (T, C)
        else:
            x = x + Tensor(self.sinusoid.data[:T])
        if self.config.dropout and self.training:
            x = F.dropout(x, self.config.dropout, True)
        for block in tr.h:
            x = block(x)
        return tr.ln_f(x)

    def head(self, x):
        return F.linear(x, self.transformer.wte.weight)                    # tied: (B, T, vocab)
