"""llama2.c model files as its ``export.py`` writes them: v1 (float32) and v2 (int8 Q8_0).

Both start with a 256-byte header: ``uint32 0x616b3432 ("ak42") | int32 version | int32 dim,
hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, max_seq_len | uint8 shared_classifier``
(v2: ``| int32 group_size``), zero-padded. Then the RMSNorm weights in float32 (attention
norms of all layers, ffn norms of all layers, the final norm), then the matrices in this
order: token embeddings, wq of every layer, wk, wv, wo, w1, w2, w3, [the classifier].
v1 stores them as float32; v2 stores each as int8 values followed by its float32 scales,
one per ``group_size`` values (scale = max|w| / 127 per group, q = round(w / scale)).
q/k rows are in Meta's interleaved layout, as scratchllm keeps them.
"""
import struct

from ..atomic import atomic_write
from ..backend import xp
from ..errors import ScratchLLMError
from ..models.config import LlamaConfig

MAGIC = 0x616B3432
_MATS = ("attention.wq", "attention.wk", "attention.wv", "attention.wo", "feed_forward.w1", "feed_forward.w2",
         "feed_forward.w3")


def group_size_for(config: LlamaConfig) -> int:
    """The group size: 64 halved until it divides every input size of runq.c's matmuls, dim and
    hidden_dim (export.py checks dim only; with hidden_dim 172, as stories260K's, runq.c would
    then skip the last 44 inputs of w2, so here the group is 4 there)."""
    g = 64
    while g > 1 and (config.dim % g or config.ffn_hidden_dim % g):
        g //= 2
    return g


def quantize_q80(w, group: int) -> tuple:
    """export.py's quantize_q80: per group scale = max|w| / 127, q = round(w / scale) (to even)."""
    w = xp.asarray(w, dtype=xp.float32).reshape(-1, group)
    scale = xp.abs(w).max(axis=1) / xp.float32(127)
    safe = xp.where(scale == 0, xp.float32(1), scale)
    q = xp.round(w / safe[:, None]).astype(xp.int8)
    return q, scale.astype(xp.float32)


def write_llama2c(path, config, state: dict, version: int = 1) -> None:
    """(LlamaConfig, state dict in Meta's names) -> llama2.c .bin, ``version`` 1 or 2."""
    if not isinstance(config, LlamaConfig):
        raise ScratchLLMError("llama2.c files hold Llama models only (this one is a GPT)")
    if config.rope_scaling or config.rope_theta != 10000.0:
        raise ScratchLLMError(f"llama2.c's run.c uses RoPE theta 10000 without scaling; this model has theta "
                              f"{config.rope_theta}{' with scaling' if config.rope_scaling else ''}")
    if version not in (1, 2):
        raise ScratchLLMError(f"llama2.c version must be 1 (float32) or 2 (int8), got {version}")
    c, L = config, config.n_layers
    f32 = lambda a: xp.ascontiguousarray(a, dtype=xp.dtype("<f4")).tobytes()  # noqa: E731
    mats = [state["tok_embeddings.weight"]] + [state[f"layers.{i}.{m}.weight"] for m in _MATS for i in range(L)]
    if not c.tie_embeddings:
        mats.append(state["output.weight"])
    head = struct.pack("<Ii7i", MAGIC, version, c.dim, c.ffn_hidden_dim, L, c.n_heads, c.n_kv_heads,
                       c.vocab_size, c.max_seq_len) + struct.pack("<B", int(c.tie_embeddings))
    group = group_size_for(c) if version == 2 else 0
    if version == 2:
        head += struct.pack("<i", group)
    parts = [head + b"\0" * (256 - len(head))]
    parts += [f32(state[f"layers.{i}.attention_norm.weight"]) for i in range(L)]
    parts += [f32(state[f"layers.{i}.ffn_norm.weight"]) for i in range(L)]
    parts.append(f32(state["norm.weight"]))
    for m in mats:
        if version == 1:
            parts.append(f32(m))
        else:
            q, s = quantize_q80(m, group)
            parts += [q.tobytes(), f32(s)]
    with atomic_write(path) as f:
        for p in parts:
            f.write(p)
