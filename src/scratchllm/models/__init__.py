"""``sl.models``: GPT (GPT-2 family) and Llama (Llama 2/3 family), built from ``sl.nn`` parts.

>>> import scratchllm as sl
>>> model = sl.models.build_model({"model_type": "gpt", "vocab_size": 100, "n_layer": 2, "n_head": 2,
...                                "n_embd": 32, "block_size": 64})
>>> model.generate([[1, 2, 3]], max_new_tokens=5, temperature=0).shape
(1, 8)
"""
from .config import GPTConfig, LlamaConfig, config_from_dict, llama_ffn_hidden_dim
from .gpt import GPT
from .kv_cache import KVCache
from .llama import Llama


def build_model(config, generator=None):
    """A config (GPTConfig, LlamaConfig, or a dict with ``model_type`` "gpt"/"llama") -> a new model."""
    if isinstance(config, dict):
        config = config_from_dict(config)
    if isinstance(config, GPTConfig):
        return GPT(config, generator)
    if isinstance(config, LlamaConfig):
        return Llama(config, generator)
    raise TypeError(f"build_model: expected a GPTConfig, LlamaConfig or dict, got {type(config).__name__}")


__all__ = ["GPTConfig", "LlamaConfig", "GPT", "Llama", "KVCache", "build_model", "config_from_dict",
           "llama_ffn_hidden_dim"]
