"""``sl.nn.functional`` (import as ``F``): stateless ops, torch.nn.functional's names.

Hot composites (linear, embedding, layer/RMS norm, GELU, attention, RoPE, cross-entropy)
are single ops with fused forward and backward rules; see each module.
"""
from .linear import linear
from .embedding import embedding
from .activations import softmax, log_softmax, relu, silu, sigmoid, tanh, gelu
from .normalization import layer_norm, rms_norm
from .dropout import dropout
from .attention import scaled_dot_product_attention, qkv_attention
from .rope import rope_cache, apply_rope, sinusoidal_positions
from .loss import cross_entropy, mse_loss, binary_cross_entropy_with_logits

__all__ = ["linear", "embedding", "softmax", "log_softmax", "relu", "silu", "sigmoid", "tanh", "gelu",
           "layer_norm", "rms_norm", "dropout", "scaled_dot_product_attention", "qkv_attention", "rope_cache", "apply_rope",
           "sinusoidal_positions", "cross_entropy", "mse_loss", "binary_cross_entropy_with_logits"]
