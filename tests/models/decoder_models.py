"""Small models for the decoder tests (tests/models/test_fast_decode.py on the CPU,
tests/device/test_device_decode_cuda.py on the GPU): their configs and random weights."""
import numpy as np

import scratchllm as sl
from scratchllm.models import GPTConfig, LlamaConfig, build_model

CONFIGS = {
    "gpt": GPTConfig(vocab_size=61, block_size=40, n_layer=2, n_head=2, n_embd=16),
    "gpt-sinusoidal-nobias": GPTConfig(vocab_size=61, block_size=40, n_layer=2, n_head=4, n_embd=16,
                                       positional="sinusoidal", bias=False),
    "llama-gqa": LlamaConfig(vocab_size=61, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, multiple_of=16,
                             max_seq_len=40, rope_theta=500000.0),
    "llama-mha-tied": LlamaConfig(vocab_size=61, dim=32, n_layers=1, n_heads=2, multiple_of=16, max_seq_len=40,
                                  tie_embeddings=True),
    "llama-mqa-scaled-rope": LlamaConfig(vocab_size=61, dim=32, n_layers=1, n_heads=4, n_kv_heads=1,
                                         multiple_of=16, max_seq_len=40, rope_scaling={
                                             "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                             "original_max_position_embeddings": 8.0}),
}


def random_model(config, dtype=np.float32, seed: int = 0):
    """``build_model(config)`` in eval mode with random non-trivial norms, biases and larger
    weights: logits far from uniform (peaked, no near ties)."""
    model = build_model(config, sl.Generator(seed)).to(dtype)
    rng = np.random.default_rng(seed)
    with sl.no_grad():
        for pname, p in model.named_parameters():
            scale = 0.3 if p.ndim == 2 else 0.2
            base = 1.0 if "ln" in pname or "norm" in pname else 0.0
            p.data[...] = base + scale * rng.standard_normal(p.shape)
    return model.eval()
