"""``FinetuneConfig``: every knob of a fine-tuning run (SFT or DPO, full or LoRA), one dataclass.

Saved as ``finetune_config.json`` in the run folder and in every checkpoint; ``--resume``
continues the run it describes. Values come from the command line as ``key=value`` overrides
(parsed like ``scratchllm train``'s, see train/config.py).

>>> FinetuneConfig(init_from="runs/base").updated({"lora": "true", "lora_r": "4"}).lora_r
4
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from ..errors import ScratchLLMError
from ..train.config import updated_config


@dataclass
class FinetuneConfig:
    init_from: str | None = None     # the base model (anything sl.load_model reads)
    data: list = field(default_factory=list)   # JSON/JSONL files of records
    tokenizer: str | None = None     # None: the base model's own
    template: str = "alpaca"         # alpaca, chatml, llama3, or an HF folder / tokenizer_config.json
    max_len: int | None = None       # tokens per sample (default: the model's context)
    truncate: bool = False           # cut samples longer than max_len (default: an error)
    val_fraction: float = 0.1
    # method
    dpo: bool = False                # preference pairs (chosen/rejected) instead of SFT
    dpo_beta: float = 0.1
    lora: bool = False
    lora_r: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_targets: str = ""           # comma-separated, e.g. "q,k,v,o" or "c_attn,c_proj"; "" = default
    # optimisation
    batch_size: int = 8
    grad_accum_steps: int = 1
    max_steps: int = 200
    max_minutes: float = 0.0
    lr: float = 1e-4
    min_lr: float = 1e-5
    warmup_steps: int = 10
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    grad_clip: float = 1.0
    seed: int = 1337
    # evaluation and the sample reply
    eval_interval: int = 50
    eval_batches: int = 10           # val batches per evaluation (fixed, the same each time)
    log_interval: int = 10
    sample_tokens: int = 48          # tokens of the sample reply printed at each eval (0 = none)
    sample_prompt: str = ""          # default: the first validation record's prompt
    temperature: float = 0.0

    # identity: what makes a run "this run" (may not change on resume)
    IDENTITY = ("init_from", "data", "tokenizer", "template", "max_len", "truncate", "val_fraction",
                "dpo", "lora", "lora_r", "lora_alpha", "lora_targets", "seed")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> "FinetuneConfig":
        return cls().updated(d, source=source)

    def updated(self, overrides: dict, source: str = "override") -> "FinetuneConfig":
        """A copy with ``overrides`` applied; strings are parsed to the field's type."""
        return updated_config(self, overrides, source, "fine-tuning key")

    def validate(self, source: str = "config") -> None:
        def need(cond, msg):
            if not cond:
                raise ScratchLLMError(f"{source}: {msg}")
        for key in ("batch_size", "grad_accum_steps", "max_steps", "eval_interval", "eval_batches",
                    "log_interval", "lora_r"):
            need(getattr(self, key) >= 1, f"{key} must be at least 1, got {getattr(self, key)}")
        for key in ("lr", "min_lr", "dpo_beta", "lora_alpha", "lora_dropout", "weight_decay",
                    "grad_clip", "val_fraction", "max_minutes", "temperature"):
            v = getattr(self, key)
            need(math.isfinite(v) and v >= 0, f"{key} must be a finite number >= 0, got {v}")
        need(self.lr > 0 and self.min_lr <= self.lr, f"need 0 < lr and min_lr <= lr ({self.lr}, {self.min_lr})")
        need(0.0 < self.val_fraction < 1.0, f"val_fraction must be in (0, 1), got {self.val_fraction}")
        need(self.lora_dropout < 1.0, f"lora_dropout must be < 1, got {self.lora_dropout}")
        need(self.dpo_beta > 0, f"dpo_beta must be > 0, got {self.dpo_beta}")
        need(self.max_len is None or self.max_len >= 2, f"max_len must be >= 2, got {self.max_len}")
        for key in ("beta1", "beta2"):
            need(0.0 <= getattr(self, key) < 1.0, f"{key} must be in [0, 1)")

    def identity_diff(self, other: "FinetuneConfig") -> list:
        return [f"{k}: {getattr(self, k)!r} -> {getattr(other, k)!r}" for k in self.IDENTITY
                if getattr(self, k) != getattr(other, k)]

    def targets(self) -> tuple:
        return tuple(t.strip() for t in self.lora_targets.split(",") if t.strip())
