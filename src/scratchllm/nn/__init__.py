"""``sl.nn``: modules and layers with torch.nn's names, plus ``functional`` (as F).

>>> import scratchllm as sl
>>> net = sl.nn.Sequential(sl.nn.Linear(2, 8), sl.nn.ReLU(), sl.nn.Linear(8, 1))
>>> [n for n, _ in net.named_parameters()]
['0.weight', '0.bias', '2.weight', '2.bias']
"""
import importlib

from . import functional
from .parameter import Parameter
from .module import Module
from .containers import ModuleList, ModuleDict, Sequential
from .linear import Linear, Identity
from .embedding import Embedding
from .normalization import LayerNorm, RMSNorm
from .activation import GELU, SiLU, ReLU, Tanh, Sigmoid, Softmax
from .dropout import Dropout
from .feedforward import SwiGLU
from .attention import CausalSelfAttention, PackedCausalSelfAttention
from .positional import SinusoidalPositionalEmbedding, LearnedPositionalEmbedding, RotaryEmbedding

__all__ = ["functional", "Parameter", "Module", "ModuleList", "ModuleDict", "Sequential", "Linear", "Identity",
           "Embedding", "LayerNorm", "RMSNorm", "GELU", "SiLU", "ReLU", "Tanh", "Sigmoid", "Softmax", "Dropout",
           "SwiGLU", "CausalSelfAttention", "PackedCausalSelfAttention", "SinusoidalPositionalEmbedding",
           "LearnedPositionalEmbedding", "RotaryEmbedding", "init", "utils"]


def __getattr__(name):
    """``sl.nn.init`` / ``sl.nn.utils`` are imported on first use (they live in their own files)."""
    if name in ("init", "utils"):
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'scratchllm.nn' has no attribute '{name}'")
