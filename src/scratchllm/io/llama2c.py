"""llama2.c model files (``.bin``): the legacy header and the "ak42" versioned headers.

Legacy (v0): seven int32 ``dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len``
(a negative vocab_size means the classifier is NOT shared and follows at the end), then
float32 weights, each kind for all layers at once: embeddings, rms_att, wq, wk, wv, wo,
rms_ffn, w1, w2, w3, rms_final, two RoPE tables (seq_len x head_dim/2 each, skipped),
then the classifier if untied.

Versioned: a 256-byte header ``uint32 magic 0x616b3432 ("ak42"), int32 version``, the same
seven ints, ``uint8 shared_classifier`` (and ``int32 group_size`` in v2), zero padding.
- v1 (float32): norms (rms_att, rms_ffn, rms_final), embeddings, wq, wk, wv, wo, w1, w2, w3,
  [classifier];
- v2 (Q8_0): the same norms in float32, then every matrix as int8 values plus one float32
  scale per ``group_size`` values (weight = int8 * scale), dequantized here to float32.
Weights are PyTorch's (out, in) row-major, q/k in the interleaved RoPE layout (Meta's).
"""
import math
import os
import struct

from ..backend import xp
from ..errors import ScratchLLMError
from ..models.config import LlamaConfig
from ..models.weights import check_state_dict
from .validate import MAX_CONTEXT

MAGIC = 0x616B3432


def is_llama2c_file(path: str) -> bool:
    if not os.path.isfile(path):
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(28)
    except OSError:
        return False
    if len(head) < 28:
        return False
    if struct.unpack("<I", head[:4])[0] == MAGIC:
        return True
    dim, hidden, n_layers, n_heads, n_kv, vocab, seq = struct.unpack("<7i", head)
    return path.endswith(".bin") and min(dim, hidden, n_layers, n_heads, n_kv, seq) > 0 and vocab != 0


class _Reader:
    """Sequential float32 / int8 reads from a memory map, with a clear error past the end."""

    def __init__(self, path: str, offset: int):
        self.path, self.pos = path, offset
        self.file = open(path, "rb")
        self.size = os.fstat(self.file.fileno()).st_size

    def take(self, count: int, dtype, what: str):
        """``count`` values read with one bounded ``readinto`` (no memory map: a file truncated
        while we read gives an error, not a SIGBUS)."""
        nbytes = count * xp.dtype(dtype).itemsize
        if self.pos + nbytes > self.size:
            raise ScratchLLMError(f"{self.path}: file ends at byte {self.size} while reading {what} "
                                  f"({nbytes} bytes from {self.pos}); truncated, or the header disagrees "
                                  f"with the weights")
        out = xp.empty(count, dtype=xp.dtype(dtype).newbyteorder("<"))
        self.file.seek(self.pos)
        if nbytes and self.file.readinto(out.view(xp.uint8)) != nbytes:
            raise ScratchLLMError(f"{self.path}: file ended while reading {what}; truncated while we read it?")
        self.pos += nbytes
        return out

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()

    def skip(self, nbytes: int, what: str):
        if self.pos + nbytes > self.size:
            raise ScratchLLMError(f"{self.path}: file ends at byte {self.size} while skipping {what} "
                                  f"({nbytes} bytes from {self.pos}); truncated, or the header disagrees "
                                  f"with the weights")
        self.pos += nbytes

    def f32(self, shape, what):
        return self.take(math.prod(shape), xp.float32, what).reshape(shape).astype(xp.float32, copy=False)

    def q80(self, shape, group, what):
        n = math.prod(shape)
        if n % group:
            raise ScratchLLMError(f"{self.path}: {what} has {n} values, not a multiple of group_size {group}")
        q = self.take(n, xp.int8, what).astype(xp.float32).reshape(-1, group)
        s = self.take(n // group, xp.float32, what + " scales")
        return (q * s[:, None]).reshape(shape)


def read_header(path: str) -> tuple:
    """-> (version, (dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len), shared, group_size, data offset)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(256)
    if len(head) < 28:
        raise ScratchLLMError(f"{path}: too short for a llama2.c header ({size} bytes)")
    if struct.unpack("<I", head[:4])[0] != MAGIC:
        ints = struct.unpack("<7i", head[:28])
        return 0, (*ints[:5], abs(ints[5]), ints[6]), ints[5] > 0, 0, 28
    if len(head) < 256:
        raise ScratchLLMError(f"{path}: 'ak42' header needs 256 bytes, the file has {size}")
    version = struct.unpack("<i", head[4:8])[0]
    ints = struct.unpack("<7i", head[8:36])
    shared = bool(head[36])
    if version == 1:
        return 1, ints, shared, 0, 256
    if version == 2:
        group = struct.unpack("<i", head[37:41])[0]
        if group <= 0:
            raise ScratchLLMError(f"{path}: v2 header has group_size {group}")
        return 2, ints, shared, group, 256
    raise ScratchLLMError(f"{path}: llama2.c version {version} is not supported (0, 1 and 2 are)")


def read_llama2c(path: str) -> tuple:
    """llama2.c .bin -> (LlamaConfig, state dict with Meta's names)."""
    version, (dim, hidden, L, H, KV, vocab, seq), shared, group, offset = read_header(path)
    if min(dim, hidden, L, H, KV, vocab, seq) <= 0 or dim % H or H % KV or (dim // H) % 2 or seq > MAX_CONTEXT:
        raise ScratchLLMError(f"{path}: implausible llama2.c header dim={dim} hidden_dim={hidden} n_layers={L} "
                              f"n_heads={H} n_kv_heads={KV} vocab_size={vocab} seq_len={seq} (each must be "
                              f"positive, dim a multiple of n_heads with an even head size, n_heads of "
                              f"n_kv_heads, seq_len at most {MAX_CONTEXT})")
    config = LlamaConfig(vocab_size=vocab, dim=dim, n_layers=L, n_heads=H, n_kv_heads=KV, hidden_dim=hidden,
                         max_seq_len=seq, tie_embeddings=shared, norm_eps=1e-5)
    with _Reader(path, offset) as r:
        state = _read_weights(r, version, L, dim, hidden, H, KV, vocab, seq, shared, group)
        left = r.size - r.pos
    if left:
        raise ScratchLLMError(f"{path}: {left} bytes left after the last weight; the header "
                              f"(dim={dim} hidden_dim={hidden} n_layers={L} vocab_size={vocab} "
                              f"shared_classifier={shared}) disagrees with the weights")
    check_state_dict(state, config, path)
    return config, state


def _read_weights(r, version, L, dim, hidden, H, KV, vocab, seq, shared, group) -> dict:
    """The weights in the order of the file's version (see the module docstring)."""
    hd = dim // H
    mats = [("tok_embeddings.weight", None, (vocab, dim)), ("attention.wq.weight", L, (H * hd, dim)),
            ("attention.wk.weight", L, (KV * hd, dim)), ("attention.wv.weight", L, (KV * hd, dim)),
            ("attention.wo.weight", L, (dim, H * hd)), ("feed_forward.w1.weight", L, (hidden, dim)),
            ("feed_forward.w2.weight", L, (dim, hidden)), ("feed_forward.w3.weight", L, (hidden, dim))]
    state = {}

    def per_layer(name, stacked):  # (L, ...) -> layers.i.name
        for i in range(L):
            state[f"layers.{i}.{name}"] = stacked[i]

    if version == 0:
        state["tok_embeddings.weight"] = r.f32((vocab, dim), "token embeddings")
        per_layer("attention_norm.weight", r.f32((L, dim), "rms_att"))
        for name, _, shape in mats[1:5]:
            per_layer(name, r.f32((L, *shape), name))
        per_layer("ffn_norm.weight", r.f32((L, dim), "rms_ffn"))
        for name, _, shape in mats[5:]:
            per_layer(name, r.f32((L, *shape), name))
        state["norm.weight"] = r.f32((dim,), "rms_final")
        r.skip(seq * (hd // 2) * 2 * 4, "RoPE tables")
        if not shared:
            state["output.weight"] = r.f32((vocab, dim), "classifier")
    else:
        per_layer("attention_norm.weight", r.f32((L, dim), "rms_att"))
        per_layer("ffn_norm.weight", r.f32((L, dim), "rms_ffn"))
        state["norm.weight"] = r.f32((dim,), "rms_final")
        for name, layers, shape in mats + ([] if shared else [("output.weight", None, (vocab, dim))]):
            for i in range(1 if layers is None else layers):
                key = name if layers is None else f"layers.{i}.{name}"
                state[key] = r.f32(shape, key) if version == 1 else r.q80(shape, group, key)
    return state
