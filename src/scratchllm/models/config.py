"""Model configurations: ``GPTConfig`` (GPT-2 family) and ``LlamaConfig`` (Llama 2/3 family).

Each is a plain dataclass with named presets and a JSON-able ``to_dict`` carrying
``model_type`` so that ``build_model(config_dict)`` can rebuild the right model.

>>> GPTConfig.from_preset("gpt2").n_embd
768
>>> LlamaConfig.from_preset("llama3-8b").ffn_hidden_dim      # Meta's rule, see below
14336
"""
from dataclasses import asdict, dataclass, fields

from ..errors import ScratchLLMError


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ScratchLLMError(msg)


class _Config:
    model_type = ""
    PRESETS: dict = {}

    @classmethod
    def from_preset(cls, name: str, **overrides):
        if name not in cls.PRESETS:
            raise ScratchLLMError(f"unknown {cls.__name__} preset '{name}'; choose one of {sorted(cls.PRESETS)}")
        return cls(**{**cls.PRESETS[name], **overrides})

    @classmethod
    def from_dict(cls, d: dict):
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names - {"model_type"})
        if unknown:
            raise ScratchLLMError(f"{cls.__name__}: unknown config keys {unknown}; known: {sorted(names)}")
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_dict(self) -> dict:
        return {"model_type": self.model_type, **asdict(self)}


@dataclass
class GPTConfig(_Config):
    """GPT-2: learned (or sinusoidal) positions, pre-LayerNorm blocks, GELU(tanh) MLP 4x, tied head."""

    vocab_size: int = 50257
    block_size: int = 1024
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True
    positional: str = "learned"      # "learned" | "sinusoidal" | "rope" (rotary q/k, no position table)
    layer_norm_eps: float = 1e-5
    # the speedrun recipe (modded-nanogpt), each off by default: GPT-2 as published
    qk_norm: bool = False            # RMSNorm of q and k per head before attention
    mlp_act: str = "gelu"            # "gelu" (tanh form) | "relu2" (ReLU squared)
    zero_init_proj: bool = False     # attention/MLP output projections (and an untied head) start at zero
    tie_weights: bool = True         # False: a separate output head ``lm_head`` (vocab, C)
    logit_softcap: float = 0.0       # c > 0: logits = c * tanh(logits / c); 0 = off
    value_embeds: bool = False       # value embeddings mixed into v (first and last layers)
    rope_theta: float = 10000.0      # positional = "rope" only

    model_type = "gpt"

    def __post_init__(self):
        for k in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            _check(isinstance(getattr(self, k), int) and getattr(self, k) > 0,
                   f"GPTConfig.{k} must be a positive int, got {getattr(self, k)!r}")
        _check(self.n_embd % self.n_head == 0,
               f"GPTConfig: n_embd {self.n_embd} is not divisible by n_head {self.n_head}")
        _check(self.positional in ("learned", "sinusoidal", "rope"),
               f"GPTConfig.positional must be 'learned', 'sinusoidal' or 'rope', got {self.positional!r}")
        _check(self.positional != "rope" or self.head_dim % 2 == 0,
               f"GPTConfig: positional 'rope' needs an even head_dim, got {self.head_dim}")
        _check(self.mlp_act in ("gelu", "relu2"), f"GPTConfig.mlp_act must be 'gelu' or 'relu2', got {self.mlp_act!r}")
        _check(self.logit_softcap >= 0, f"GPTConfig.logit_softcap must be >= 0 (0 = off), got {self.logit_softcap}")
        _check(0.0 <= self.dropout < 1.0, f"GPTConfig.dropout must be in [0, 1), got {self.dropout}")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def recipe_attention(self) -> bool:
        """Whether attention needs the unpacked path (models/gpt_recipe.py): QK-norm, RoPE or value embeddings."""
        return self.qk_norm or self.positional == "rope" or self.value_embeds

    @property
    def is_gpt2(self) -> bool:
        """No recipe option on: the architecture GPT-2 checkpoints (HF, GGUF, llama2.c) have."""
        return (not self.recipe_attention and self.mlp_act == "gelu" and self.tie_weights
                and not self.logit_softcap)


GPTConfig.PRESETS = {
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768),
    "gpt2-medium": dict(n_layer=24, n_head=16, n_embd=1024),
    "gpt2-large": dict(n_layer=36, n_head=20, n_embd=1280),
    "gpt2-xl": dict(n_layer=48, n_head=25, n_embd=1600),
    # small CPU shapes
    "gpt-mini": dict(n_layer=6, n_head=6, n_embd=192, block_size=256),
    "gpt-micro": dict(n_layer=4, n_head=4, n_embd=128, block_size=128),
    "gpt-nano": dict(n_layer=3, n_head=3, n_embd=48, block_size=64),
    "shakespeare-char": dict(vocab_size=65, block_size=256, n_layer=6, n_head=6, n_embd=384, dropout=0.2),
}


def llama_ffn_hidden_dim(dim: int, multiple_of: int, ffn_dim_multiplier=None) -> int:
    """Meta's SwiGLU hidden size: 2/3 of 4*dim, times the multiplier, rounded up to ``multiple_of``.

    >>> llama_ffn_hidden_dim(4096, 256)          # Llama-2-7B
    11008
    >>> llama_ffn_hidden_dim(4096, 1024, 1.3)    # Llama-3-8B
    14336
    """
    hidden = int(2 * (4 * dim) / 3)
    if ffn_dim_multiplier is not None:
        hidden = int(ffn_dim_multiplier * hidden)
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)


@dataclass
class LlamaConfig(_Config):
    """Llama 2/3: RMSNorm, RoPE, grouped-query attention, SwiGLU, tied or untied output.

    ``hidden_dim`` overrides Meta's rule (HF's ``intermediate_size``, llama2.c's header).
    ``rope_scaling`` is None or Llama 3.1's dict (factor, low_freq_factor, high_freq_factor,
    original_max_position_embeddings).
    """

    vocab_size: int = 32000
    dim: int = 4096
    n_layers: int = 32
    n_heads: int = 32
    n_kv_heads: int = None
    multiple_of: int = 256
    ffn_dim_multiplier: float = None
    hidden_dim: int = None
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    rope_scaling: dict = None
    max_seq_len: int = 2048
    tie_embeddings: bool = False
    dropout: float = 0.0

    model_type = "llama"

    def __post_init__(self):
        if self.n_kv_heads is None:
            self.n_kv_heads = self.n_heads
        for k in ("vocab_size", "dim", "n_layers", "n_heads", "n_kv_heads", "multiple_of", "max_seq_len"):
            _check(isinstance(getattr(self, k), int) and getattr(self, k) > 0,
                   f"LlamaConfig.{k} must be a positive int, got {getattr(self, k)!r}")
        _check(self.dim % self.n_heads == 0, f"LlamaConfig: dim {self.dim} is not divisible by n_heads {self.n_heads}")
        _check(self.n_heads % self.n_kv_heads == 0,
               f"LlamaConfig: n_heads {self.n_heads} is not a multiple of n_kv_heads {self.n_kv_heads}")
        _check(self.head_dim % 2 == 0, f"LlamaConfig: head_dim {self.head_dim} must be even for RoPE")
        _check(self.hidden_dim is None or (isinstance(self.hidden_dim, int) and self.hidden_dim > 0),
               f"LlamaConfig.hidden_dim must be a positive int or None, got {self.hidden_dim!r}")
        _check(self.rope_scaling is None or isinstance(self.rope_scaling, dict),
               f"LlamaConfig.rope_scaling must be a dict or None, got {self.rope_scaling!r}")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def ffn_hidden_dim(self) -> int:
        if self.hidden_dim is not None:
            return self.hidden_dim
        return llama_ffn_hidden_dim(self.dim, self.multiple_of, self.ffn_dim_multiplier)


LlamaConfig.PRESETS = {
    "llama2-7b": dict(vocab_size=32000, dim=4096, n_layers=32, n_heads=32, multiple_of=256, norm_eps=1e-5,
                      max_seq_len=4096),
    "llama3-8b": dict(vocab_size=128256, dim=4096, n_layers=32, n_heads=32, n_kv_heads=8, multiple_of=1024,
                      ffn_dim_multiplier=1.3, norm_eps=1e-5, rope_theta=500000.0, max_seq_len=8192),
    # small CPU shapes (llama2.c's TinyStories models and smaller)
    "stories15m": dict(vocab_size=32000, dim=288, n_layers=6, n_heads=6, multiple_of=32, max_seq_len=256,
                       tie_embeddings=True),
    "stories42m": dict(vocab_size=32000, dim=512, n_layers=8, n_heads=8, multiple_of=32, max_seq_len=1024,
                       tie_embeddings=True),
    "stories110m": dict(vocab_size=32000, dim=768, n_layers=12, n_heads=12, multiple_of=32, max_seq_len=1024,
                        tie_embeddings=True),
    "llama-mini": dict(vocab_size=32000, dim=256, n_layers=4, n_heads=8, n_kv_heads=4, multiple_of=32,
                       max_seq_len=256),
    "llama-nano": dict(vocab_size=512, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, multiple_of=16,
                       max_seq_len=128),
}


def config_from_dict(d: dict):
    """``{"model_type": "gpt"|"llama", ...}`` -> the matching config dataclass."""
    if not isinstance(d, dict):
        raise ScratchLLMError(f"model config must be a JSON object, got {type(d).__name__}")
    kind = d.get("model_type")
    classes = {"gpt": GPTConfig, "llama": LlamaConfig}
    if kind not in classes:
        raise ScratchLLMError(f"unknown model_type {kind!r} in config; expected one of {sorted(classes)}")
    return classes[kind].from_dict(d)
