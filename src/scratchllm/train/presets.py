"""Named starting configurations for ``scratchllm train --preset NAME``.

- ``shakespeare-char``: the main job. A 4-layer GPT over the 65 characters of Tiny
  Shakespeare. Measured on a 2-core CPU (2026-11-21): val loss 1.601 at step 1400 (10.1 min),
  1.561 at the end (step 1800, 13.1 min including start-up). ``max_minutes`` stops a slower
  machine gracefully (final eval, checkpoint, sample).
- ``shakespeare-char-speedrun``: the same model and data with the modded-nanogpt recipe (Muon for
  the hidden matrices, ReLU², QK-norm, zero-initialised projections, untied head, logit soft-cap
  15, RoPE, value embeddings, warmup-stable-decay) and 2,400 steps. Measured on the same 2-core CPU
  (2026-11-28, numba kernels): val loss 1.4644 at step 2,400, 10.4 min for ``make demo`` from a
  fresh clone (install, training, sample; the old recipe: 1.56 in about 12). The per-option
  ablation (benchmarks/RESULTS.md): over seeds 1337-1339 Muon and RoPE alone reach a median 1.4807,
  the whole recipe 1.4687 (1.4644-1.4821): the other seven options add about 0.01, in every seed.
- ``shakespeare-bpe``: the same corpus through a byte-level BPE trained on it.
- ``llama-tiny``: the Llama architecture (RMSNorm, RoPE, SwiGLU) on the characters.
"""
from __future__ import annotations

from ..errors import ScratchLLMError
from .config import TrainConfig

DEFAULT_PRESET = "shakespeare-char"

PRESETS = {
    "shakespeare-char": dict(
        arch="gpt", n_layer=4, n_head=4, n_embd=128, block_size=128, dropout=0.0,
        tokenizer="char", batch_size=32, lr=3e-3, min_lr=3e-4, warmup_steps=100,
        max_steps=1800, max_minutes=14.0, eval_interval=200, eval_batches=20,
        weight_decay=0.1, beta2=0.99, grad_clip=1.0),
    "shakespeare-char-speedrun": dict(
        arch="gpt", n_layer=4, n_head=4, n_embd=128, block_size=128, dropout=0.0,
        tokenizer="char", batch_size=32, lr=3e-3, min_lr=3e-4, warmup_steps=100,
        max_steps=2400, max_minutes=14.0, eval_interval=200, eval_batches=20,
        weight_decay=0.1, beta2=0.99, grad_clip=1.0,
        optimizer="muon", muon_lr=0.02, muon_momentum=0.95, schedule="wsd", decay_frac=0.2,
        mlp_act="relu2", qk_norm=True, zero_init_proj=True, tie_weights=False, logit_softcap=15.0,
        positional="rope", value_embeds=True),
    "shakespeare-bpe": dict(
        arch="gpt", n_layer=4, n_head=4, n_embd=128, block_size=64, dropout=0.0,
        tokenizer="bpe", bpe_vocab_size=1024, batch_size=32, lr=2e-3, min_lr=2e-4,
        warmup_steps=100, max_steps=3000, max_minutes=14.0, eval_interval=250,
        eval_batches=20, sample_tokens=100),
    "llama-tiny": dict(
        arch="llama", n_layer=4, n_head=4, n_kv_head=2, n_embd=128, block_size=128,
        dropout=0.0, tokenizer="char", batch_size=32, lr=3e-3, min_lr=3e-4,
        warmup_steps=100, max_steps=5000, max_minutes=14.0, eval_interval=250,
        eval_batches=20),
}


def preset_config(name: str) -> TrainConfig:
    if name not in PRESETS:
        raise ScratchLLMError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return TrainConfig().updated({**PRESETS[name], "preset": name}, source=f"preset {name}")
