"""GPT's speedrun options (KellerJordan/modded-nanogpt), each a ``GPTConfig`` key, off by default:

    qk_norm=True           q, k = rms_norm(q), rms_norm(k) per head (no gain) before RoPE / attention
    positional="rope"      rotary q/k (HF's "half" pairs, ``rope_theta``) instead of a position table
    value_embeds=True      v = l0 v + l1 ve_j[ids] in the first k and last k layers (k <= 3 tables, each
                           shared by one early and one late layer: ``value_embed_layers``); (l0, l1)
                           learned per layer, from (0.5, 0.5)
    mlp_act="relu2"        MLP activation max(x, 0)^2 instead of GELU
    zero_init_proj=True    c_proj of attention and MLP (and an untied head) start at zero
    tie_weights=False      a separate head ``lm_head.weight`` (vocab, C)
    logit_softcap=c        logits = c tanh(logits / c)

The GPT class (models/gpt.py) builds these parts from here; ``RecipeGPTDecoder`` is the raw-array
inference path for a GPT with any of them on (``make_decoder`` picks it).

>>> cfg = GPTConfig.from_preset("gpt-nano", vocab_size=50, qk_norm=True, positional="rope", value_embeds=True)
>>> value_embed_layers(6)
[0, 1, 2, 0, 1, 2]
"""
from ..autograd import ops
from ..backend import xp
from ..nn import Embedding, Linear, Module, ModuleList, RotaryEmbedding
from ..nn import functional as F
from ..nn.functional.recipe import (qk_norm, relu2, relu2_forward, rope_heads_last, softcap, softcap_forward,
                                    value_mix, value_mix_forward)
from ..nn.functional.rope import rope_rotate
from ..nn.parameter import Parameter
from .config import GPTConfig
from .decode import GPTDecoder, _gelu, _norm, matmul, transposed

ROPE_LAYOUT = "half"                     # modded-nanogpt's rotary pairs (x_i, x_{i + D/2})


def value_embed_layers(n_layer: int) -> list:
    """Which value-embedding table each layer uses (None: none): k = min(3, max(1, n_layer // 2))
    tables, used by the first k layers and again by the last k (modded-nanogpt's layout)."""
    k = min(3, max(1, n_layer // 2))
    out = [None] * n_layer
    for j in range(k):
        out[j] = j
        out[n_layer - k + j] = j
    return out


def n_value_tables(n_layer: int) -> int:
    return min(3, max(1, n_layer // 2))


def rotary(config: GPTConfig):
    """The shared RoPE layer of a ``positional="rope"`` config (else None)."""
    if config.positional != "rope":
        return None
    return RotaryEmbedding(config.head_dim, config.block_size, config.rope_theta, ROPE_LAYOUT,
                           dtype=xp.float64)                        # cast to the activations' dtype


def mlp_act(h, kind: str):
    """The MLP's activation: ``relu2`` or GPT-2's tanh GELU."""
    return relu2(h) if kind == "relu2" else F.gelu(h, approximate="tanh")


class RecipeAttention(Module):
    """GPT-2's attention (``c_attn`` q|k|v, ``c_proj``: the same names and shapes) with QK-norm,
    RoPE and value embeddings as configured. x (B, T, C) [, ve (B, T, C)] -> (B, T, C)."""

    def __init__(self, config: GPTConfig, rope=None, generator=None):
        super().__init__()
        C = config.n_embd
        self.c_attn = Linear(C, 3 * C, bias=config.bias, generator=generator)
        self.c_proj = Linear(C, C, bias=config.bias, generator=generator)
        if config.value_embeds:
            self.lambdas = Parameter(xp.array([0.5, 0.5], dtype=xp.float32))
        self.n_head, self.dropout, self.use_qk_norm = config.n_head, config.dropout, config.qk_norm
        self.rope = rope                                            # one layer shared by every block

    def forward(self, x, ve=None):
        """Works in the (B, T, heads, D) layout the projection gives, then hands the packed
        q|k|v to ``F.qkv_attention`` (GPT-2's fast fused attention)."""
        B, T, C = x.shape
        H, D = self.n_head, C // self.n_head
        qk, v = ops.split(self.c_attn(x), [2 * C, C], dim=-1)       # (B, T, 2C), (B, T, C)
        if self.use_qk_norm or self.rope is not None:
            qk = qk.reshape(B, T, 2 * H, D)                         # q heads, then k heads
            if self.use_qk_norm:
                qk = qk_norm(qk)
            if self.rope is not None:
                qk = rope_heads_last(qk, self.rope.cos.data, self.rope.sin.data, ROPE_LAYOUT)
            qk = qk.reshape(B, T, 2 * C)
        if "lambdas" in self._parameters:
            v = value_mix(v, ve, self.lambdas)                      # (B, T, C)
        p = self.dropout if self.training else 0.0
        y = self.c_proj(F.qkv_attention(ops.cat([qk, v], dim=-1), H, is_causal=True, dropout_p=p))
        return F.dropout(y, p, self.training) if p else y

    def extra_repr(self) -> str:
        return f"n_heads={self.n_head}, qk_norm={self.use_qk_norm}, rope={self.rope is not None}"


def extra_parts(config: GPTConfig, generator=None) -> dict:
    """Modules the options add to ``GPT.transformer``: the value-embedding tables ``ve``."""
    if not config.value_embeds:
        return {}
    return {"ve": ModuleList([Embedding(config.vocab_size, config.n_embd, generator=generator)
                              for _ in range(n_value_tables(config.n_layer))])}


def init_special(name: str, p, config: GPTConfig) -> bool:
    """Initialise the parameters the options own or re-initialise; True when ``name`` was one."""
    from ..nn import init
    if name.endswith("attn.lambdas"):
        p.data[...] = 0.5
        return True
    if config.zero_init_proj and (name.endswith("c_proj.weight") or name == "lm_head.weight"):
        init.zeros_(p)
        return True
    return False


def value_embeddings(model, ids) -> list:
    """Per layer: the (B, T, C) value embedding of ``ids``, or None."""
    if not model.config.value_embeds:
        return [None] * model.config.n_layer
    tables = [F.embedding(ids, e.weight) for e in model.transformer.ve]
    return [None if j is None else tables[j] for j in value_embed_layers(model.config.n_layer)]


def head_logits(model, x):
    """The head: tied (``wte``) or ``lm_head``, then the soft-cap when configured."""
    w = model.transformer.wte.weight if model.config.tie_weights else model.lm_head.weight
    logits = F.linear(x, w)                                             # (B, T, vocab)
    return softcap(logits, model.config.logit_softcap) if model.config.logit_softcap else logits


class RecipeGPTDecoder(GPTDecoder):
    """``GPTDecoder`` with the recipe's options (same state-dict names, plus ``lm_head.weight``,
    ``transformer.ve.*`` and ``*.attn.lambdas``)."""

    def __init__(self, config: GPTConfig, state: dict, batch: int, max_len: int):
        super().__init__(config, state, batch, max_len)
        c, w = config, self.weight
        self.config = c
        if not c.tie_weights:
            self.head_weight = transposed(w("lm_head.weight"))         # (C, V)
        if c.positional == "rope":
            self.positions = None
            cos, sin = F.rope_cache(c.head_dim, c.block_size, c.rope_theta, dtype=self.wte.dtype)
            self.cos, self.sin = self.here(cos), self.here(sin)         # on the weights' device
        self.ve = [w(f"transformer.ve.{j}.weight") for j in range(n_value_tables(c.n_layer))] if c.value_embeds else []
        self.lambdas = [w(f"transformer.h.{i}.attn.lambdas") if c.value_embeds else None for i in range(c.n_layer)]

    def last_hidden(self, ids):
        B, T = ids.shape
        c, pos, H, eps = self.config, self.cache.pos, self.n_head, self.eps
        flat = ids.reshape(-1)
        x = self.wte[flat].reshape(B, T, -1)
        C = x.shape[-1]
        D = C // H
        if self.positions is not None:
            x += self.positions[pos:pos + T]
        else:
            cos = self.cos[pos:pos + T][:, None, :]                     # (T, 1, D/2)
            sin = self.sin[pos:pos + T][:, None, :]
        x = x.reshape(B * T, C)
        tables = [t[flat] for t in self.ve]                             # (N, C) each
        qk_eps = float(xp.finfo(x.dtype).eps)
        which = value_embed_layers(c.n_layer)
        for i, (w1, b1, wqkv, bqkv, wo, bo, w2, b2, wfc, bfc, wpr, bpr) in enumerate(self.layers):
            qkv = matmul(_norm(x, w1, b1, eps), wqkv, bias=bqkv).reshape(B, T, 3, H, D)
            q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]          # (B, T, H, D)
            if c.qk_norm:
                q = _norm(q.reshape(-1, D), None, None, qk_eps, False).reshape(B, T, H, D)
                k = _norm(k.reshape(-1, D), None, None, qk_eps, False).reshape(B, T, H, D)
            if self.positions is None:
                q, k = rope_rotate(q, cos, sin, ROPE_LAYOUT), rope_rotate(k, cos, sin, ROPE_LAYOUT)
            if self.lambdas[i] is not None:
                ve = None if which[i] is None else tables[which[i]].reshape(B, T, H, D)
                v = value_mix_forward(v, ve, self.lambdas[i])
            y = self.attention(i, q, k, v)
            x += matmul(y, wo, bias=bo)
            h = matmul(_norm(x, w2, b2, eps), wfc, bias=bfc)
            h = relu2_forward(h)[0] if c.mlp_act == "relu2" else _gelu(h)
            x += matmul(h, wpr, bias=bpr)
        self.cache.advance(T)
        return _norm(x.reshape(B, T, C)[:, -1], *self.ln_f, eps)

    def logits(self, ids):
        out = super().logits(ids)
        return softcap_forward(out, self.config.logit_softcap) if self.config.logit_softcap else out


__all__ = ["RecipeAttention", "RecipeGPTDecoder", "value_embed_layers", "rotary", "mlp_act", "extra_parts",
           "init_special", "value_embeddings", "head_logits"]
