"""``TrainConfig``: every knob of a training run, in one flat dataclass.

A run's configuration is a preset, then a config file (TOML or JSON), then ``key=value``
overrides, then the named command-line options, each layer overriding the one before:

>>> cfg = TrainConfig().updated({"n_layer": "6", "lr": "1e-3"})
>>> cfg.n_layer, cfg.lr
(6, 0.001)

The config is saved as JSON in every checkpoint (``train_config.json``), so a run can be
resumed, and compared with the one asked for.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ScratchLLMError


@dataclass
class TrainConfig:
    preset: str | None = None        # the preset this config started from (informational)
    # model (ignored with init_from: the pretrained model's architecture is used)
    arch: str = "gpt"                # "gpt" (GPT-2 family) or "llama"
    n_layer: int = 4
    n_head: int = 4
    n_kv_head: int | None = None     # llama only: key/value heads (None = n_head)
    n_embd: int = 128
    block_size: int = 128            # context length in tokens
    dropout: float = 0.0
    bias: bool = True                # gpt only: biases in Linear and LayerNorm
    # gpt only, the speedrun recipe (models/gpt_recipe.py; GPTConfig keys of the same names), off by default
    positional: str = "learned"      # "learned" | "sinusoidal" | "rope"
    qk_norm: bool = False            # RMSNorm of q and k per head
    mlp_act: str = "gelu"            # "gelu" | "relu2"
    zero_init_proj: bool = False     # output projections (and an untied head) start at zero
    tie_weights: bool = True         # False: a separate output head
    logit_softcap: float = 0.0       # c > 0: logits = c tanh(logits / c)
    value_embeds: bool = False       # value embeddings in the first and last layers
    init_from: str | None = None     # a pretrained model: anything sl.load_model reads
    # data
    data: list = field(default_factory=list)  # text files or folders; empty = bundled Tiny Shakespeare
    tokenizer: str | None = "char"   # "char", "bpe" (trained on the corpus), "gpt2", a tokenizer path;
                                     # None with init_from: the pretrained model's own tokenizer
    bpe_vocab_size: int = 512
    val_fraction: float = 0.1
    # optimisation
    batch_size: int = 32
    grad_accum_steps: int = 1
    global_batch: int = 0            # windows per optimizer step over all ranks (mpiexec -n N); 0 =
                                     # batch_size x grad_accum_steps x N. Set, it fixes grad_accum_steps
                                     # = global_batch / (batch_size x N), so a run resumes on N or M ranks
    max_steps: int = 5000
    max_minutes: float = 0.0         # time budget of this session (a resume gets a new one); 0 = none.
                                     # Ends gracefully: final eval, checkpoint, sample
    lr: float = 3e-3
    min_lr: float = 3e-4
    warmup_steps: int = 100          # a run shorter than 2 warmups warms up for max_steps // 10 (warned)
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0           # 0 = no clipping
    optimizer: str = "adamw"         # "adamw" | "muon" (Muon for hidden matrices at muon_lr, AdamW at lr for the rest)
    muon_lr: float = 0.02            # Muon's peak lr; the schedule scales it like lr
    muon_momentum: float = 0.95
    schedule: str = "cosine"         # "cosine" (warmup + cosine to min_lr) | "wsd" (warmup, stable, linear decay)
    decay_frac: float = 0.2          # wsd: the share of max_steps spent decaying to min_lr
    seed: int = 1337
    device: str = "cpu"              # "cpu" | "cuda" | "cuda:N" (CuPy, pip install "scratchllm[cuda]")
    # evaluation, logging, the final sample
    eval_interval: int = 250
    eval_batches: int = 20
    log_interval: int = 10
    sample_tokens: int = 300
    sample_prompt: str = "\n"
    temperature: float = 0.8
    top_k: int | None = None

    # --------------------------------------------------------------- building
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> "TrainConfig":
        return cls().updated(d, source=source)

    def updated(self, overrides: dict, source: str = "override") -> "TrainConfig":
        """A copy with ``overrides`` applied; strings are parsed to the field's type."""
        return updated_config(self, overrides, source, "config key")

    def validate(self, source: str = "config") -> None:
        def need(cond, msg):
            if not cond:
                raise ScratchLLMError(f"{source}: {msg}")
        need(self.arch in ("gpt", "llama"), f"arch must be 'gpt' or 'llama', got {self.arch!r}")
        from ..device import is_device_name
        need(is_device_name(self.device), f"device must be 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        need(self.optimizer in ("adamw", "muon"), f"optimizer must be 'adamw' or 'muon', got {self.optimizer!r}")
        need(self.schedule in ("cosine", "wsd"), f"schedule must be 'cosine' or 'wsd', got {self.schedule!r}")
        need(0.0 <= self.decay_frac <= 1.0, f"decay_frac must be in [0, 1], got {self.decay_frac}")
        need(math.isfinite(self.muon_lr) and self.muon_lr > 0, f"muon_lr must be > 0, got {self.muon_lr}")
        need(0.0 <= self.muon_momentum < 1.0, f"muon_momentum must be in [0, 1), got {self.muon_momentum}")
        need(self.positional in ("learned", "sinusoidal", "rope"),
             f"positional must be 'learned', 'sinusoidal' or 'rope', got {self.positional!r}")
        need(self.mlp_act in ("gelu", "relu2"), f"mlp_act must be 'gelu' or 'relu2', got {self.mlp_act!r}")
        need(math.isfinite(self.logit_softcap) and self.logit_softcap >= 0,
             f"logit_softcap must be >= 0 (0 = off), got {self.logit_softcap}")
        changed = [k for k in GPT_RECIPE_KEYS if getattr(self, k) != getattr(TrainConfig, k)]
        need(self.arch == "gpt" or not changed, f"{', '.join(changed)}: options of arch 'gpt' only "
                                               f"(arch is {self.arch!r})")
        for key in ("n_layer", "n_head", "n_embd", "block_size", "batch_size", "grad_accum_steps",
                    "max_steps", "eval_interval", "eval_batches", "log_interval", "bpe_vocab_size"):
            need(getattr(self, key) >= 1, f"{key} must be at least 1, got {getattr(self, key)}")
        need(self.n_embd % self.n_head == 0, f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.n_kv_head is not None:
            need(self.n_kv_head >= 1 and self.n_head % self.n_kv_head == 0,
                 f"n_head ({self.n_head}) must be a multiple of n_kv_head ({self.n_kv_head})")
        need(0.0 < self.val_fraction < 1.0, f"val_fraction must be between 0 and 1, got {self.val_fraction}")
        need(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")
        for key in ("dropout", "val_fraction", "lr", "min_lr", "max_minutes", "weight_decay", "beta1", "beta2",
                    "grad_clip", "temperature"):
            need(math.isfinite(getattr(self, key)), f"{key} must be a finite number, got {getattr(self, key)}")
        need(self.lr > 0 and self.min_lr >= 0, f"lr must be > 0 and min_lr >= 0, got {self.lr}, {self.min_lr}")
        need(self.min_lr <= self.lr, f"min_lr ({self.min_lr}) must not exceed lr ({self.lr})")
        for key in ("warmup_steps", "max_minutes", "grad_clip", "sample_tokens", "weight_decay", "temperature",
                    "seed"):
            need(getattr(self, key) >= 0, f"{key} must be >= 0, got {getattr(self, key)}")
        need(self.global_batch >= 0, f"global_batch must be >= 0 (0 = batch_size x grad_accum_steps x ranks), "
                                     f"got {self.global_batch}")
        for key in ("beta1", "beta2"):
            need(0.0 <= getattr(self, key) < 1.0, f"{key} must be in [0, 1), got {getattr(self, key)}")
        need(self.top_k is None or self.top_k >= 1, f"top_k must be at least 1 (or none), got {self.top_k}")
        need(self.tokenizer != "bpe" or self.bpe_vocab_size >= 256,
             f"bpe_vocab_size must be at least 256 (the byte tokens), got {self.bpe_vocab_size}")
        need(self.tokenizer is not None or self.init_from is not None,
             "tokenizer=None (the model's own) needs init_from")

    def accum_steps(self, world_size: int = 1) -> int:
        """Micro-batches per rank and step: ``grad_accum_steps``, or what ``global_batch`` asks for.

        >>> TrainConfig(batch_size=4, global_batch=16).accum_steps(2)
        2
        """
        if not self.global_batch:
            return self.grad_accum_steps
        per_step = self.batch_size * world_size
        if self.global_batch % per_step or self.grad_accum_steps not in (1, self.global_batch // per_step):
            raise ScratchLLMError(f"global_batch={self.global_batch} is not batch_size ({self.batch_size}) x "
                                  f"{world_size} rank(s) x a whole number of micro-batches"
                                  + (f" equal to grad_accum_steps ({self.grad_accum_steps})"
                                     if self.grad_accum_steps != 1 else ""))
        return self.global_batch // per_step

    def warmup(self) -> int:
        """The warmup the schedule uses: ``warmup_steps``, or a tenth of ``max_steps`` when the run is
        shorter than two warmups (a 30-step run with ``warmup_steps=100`` would never leave it).

        >>> TrainConfig(max_steps=30, warmup_steps=100).warmup(), TrainConfig(max_steps=300).warmup()
        (3, 100)
        """
        return self.warmup_steps if self.max_steps >= 2 * self.warmup_steps else self.max_steps // 10


def updated_config(cfg, overrides: dict, source: str, what: str):
    """A copy of the dataclass config ``cfg`` with ``overrides`` applied (strings parsed to each
    field's type), validated; an unknown key is one error naming ``source``."""
    types = typing.get_type_hints(type(cfg))
    hints = {f.name: types[f.name] for f in dataclasses.fields(cfg)}
    values = dataclasses.asdict(cfg)
    for key, value in overrides.items():
        if key not in hints:
            raise ScratchLLMError(f"{source}: unknown {what} {key!r}; known keys: {', '.join(hints)}")
        values[key] = _coerce(value, hints[key], key, source)
    new = type(cfg)(**values)
    new.validate(source)
    return new


def _coerce(value, hint, key: str, source: str):
    """Parse ``value`` (often a string from the command line) into the type ``hint``."""
    args = typing.get_args(hint)
    optional = type(None) in args
    base = next((a for a in args if a is not type(None)), hint) if args else hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and optional:
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
    else:
        base = typing.get_origin(hint) or hint
    try:
        if base is bool:
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError
            if isinstance(value, bool):
                return value
            raise ValueError
        if base is list:
            if isinstance(value, str):
                return [value] if value else []
            if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
                return list(value)
            raise ValueError
        if base is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if base is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if base is str:
            if not isinstance(value, str):
                raise ValueError
            return value
    except (TypeError, ValueError):
        pass
    raise ScratchLLMError(f"{source}: config key {key!r} expects {_type_name(hint)}, got {value!r}")


def _type_name(hint) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


# ------------------------------------------------------------------ sources
def parse_overrides(items) -> dict:
    """``["n_layer=6", "lr=1e-3"]`` -> ``{"n_layer": "6", "lr": "1e-3"}``."""
    out = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ScratchLLMError(f"bad override {item!r}: expected key=value")
        out[key.strip()] = value
    return out


def read_config_file(path) -> dict:
    """A flat table of config keys from a ``.toml`` or ``.json`` file (a ``[train]`` table also works)."""
    path = Path(path)
    if not path.is_file():
        raise ScratchLLMError(f"config file not found: {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".toml":
        try:
            import tomllib
        except ImportError:  # Python 3.10
            raise ScratchLLMError(f"{path}: TOML config files need Python 3.11+; use a .json file") from None
        try:
            d = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ScratchLLMError(f"{path}: invalid TOML ({e})") from None
    elif path.suffix.lower() == ".json":
        from ..jsonio import loads_json
        d = loads_json(text, str(path), "config file")   # depth-limited; errors name the file
    else:
        raise ScratchLLMError(f"config file {path} must end in .toml or .json")
    if isinstance(d, dict) and set(d) == {"train"} and isinstance(d["train"], dict):
        d = d["train"]
    if not isinstance(d, dict):
        raise ScratchLLMError(f"{path}: expected a table of config keys")
    return d


# keys that fix what a checkpoint is: a resumed run may not change them
GPT_RECIPE_KEYS = ("positional", "qk_norm", "mlp_act", "zero_init_proj", "tie_weights", "logit_softcap",
                   "value_embeds")
RUN_IDENTITY_KEYS = ("arch", "n_layer", "n_head", "n_kv_head", "n_embd", "block_size", "bias",
                     "init_from", "data", "tokenizer", "bpe_vocab_size", "val_fraction", "optimizer") + GPT_RECIPE_KEYS


def identity_diff(saved: TrainConfig, asked: TrainConfig) -> list[str]:
    """``["n_layer: 4 -> 6", ...]`` for the identity keys that differ."""
    return [f"{k}: {getattr(saved, k)!r} -> {getattr(asked, k)!r}"
            for k in RUN_IDENTITY_KEYS if getattr(saved, k) != getattr(asked, k)]
