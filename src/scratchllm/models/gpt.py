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
from ..device import array_module
from ..nn import Embedding, LayerNorm, Linear, Module, ModuleDict, ModuleList, PackedCausalSelfAttention
from ..nn import functional as F
from ..nn import init
from .base import LanguageModel
from .config import GPTConfig
from . import gpt_recipe as recipe


class MLP(Module):
    def __init__(self, config: GPTConfig, generator=None):
        super().__init__()
        C = config.n_embd
        self.c_fc = Linear(C, 4 * C, bias=config.bias, generator=generator)
        self.c_proj = Linear(4 * C, C, bias=config.bias, generator=generator)
        self.dropout = config.dropout
        self.act = config.mlp_act                                  # "gelu" | "relu2"

    def forward(self, x):
        y = self.c_proj(recipe.mlp_act(self.c_fc(x), self.act))
        return F.dropout(y, self.dropout, self.training) if self.dropout and self.training else y


class Block(Module):
    def __init__(self, config: GPTConfig, generator=None, rope=None):
        super().__init__()
        C = config.n_embd
        self.ln_1 = LayerNorm(C, eps=config.layer_norm_eps, bias=config.bias)
        if config.recipe_attention:                                # QK-norm / RoPE / value embeddings
            self.attn = recipe.RecipeAttention(config, rope, generator)
        else:
            self.attn = PackedCausalSelfAttention(C, config.n_head, config.bias, config.dropout, generator=generator)
        self.ln_2 = LayerNorm(C, eps=config.layer_norm_eps, bias=config.bias)
        self.mlp = MLP(config, generator)

    def forward(self, x, ve=None):
        x = x + (self.attn(self.ln_1(x)) if ve is None else self.attn(self.ln_1(x), ve))
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
        self.rotary = recipe.rotary(config)                               # positional "rope": one shared table
        parts["h"] = ModuleList([Block(config, g, self.rotary) for _ in range(config.n_layer)])
        parts["ln_f"] = LayerNorm(C, eps=config.layer_norm_eps, bias=config.bias)
        parts.update(recipe.extra_parts(config, g))                       # value embeddings
        self.transformer = ModuleDict(parts)
        if not config.tie_weights:
            self.lm_head = Linear(C, config.vocab_size, bias=False, generator=g)
        if config.positional == "sinusoidal":
            self.register_buffer("sinusoid", F.sinusoidal_positions(config.block_size, C), persistent=False)
        self.init_weights(g)

    def init_weights(self, generator=None) -> None:
        """GPT-2's scheme: N(0, 0.02) weights, zero biases, residual projections N(0, 0.02/sqrt(2 n_layer))."""
        g = generator or default_generator()
        for name, p in self.named_parameters():
            if recipe.init_special(name, p, self.config):                 # zero_init_proj, value-embed mixing
                continue
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
            pos = xp.arange(T) if ids.__class__ is xp.ndarray else array_module(ids).arange(T)  # (GPU ids: there)
            x = x + F.embedding(pos, tr.wpe.weight)                       # + (T, C)
        elif self.config.positional == "sinusoidal":
            x = x + Tensor(self.sinusoid.data[:T])                        # ("rope": q/k rotated in attention)
        if self.config.dropout and self.training:
            x = F.dropout(x, self.config.dropout, True)
        for block, ve in zip(tr.h, recipe.value_embeddings(self, ids)):
            x = block(x, ve)
        return tr.ln_f(x)

    def head(self, x):
        if not self.config.is_gpt2:
            return recipe.head_logits(self, x)                             # untied and/or soft-capped
        return F.linear(x, self.transformer.wte.weight)                    # tied: (B, T, vocab)
