"""GGUF models (llama.cpp, ollama) in and out: ``read_gguf(path)`` and ``write_gguf_model(...)``.

The container is parsed by ``gguf_read`` and written by ``gguf_write``; the block formats
(F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K) live in ``gguf_quant``; the tokenizer stored in the file
(``tokenizer.ggml.*``) in ``gguf_vocab``. This file maps llama.cpp's names and hyperparameter
keys to scratchllm's configs and state dicts:

    llama                                    scratchllm (Meta's names)
    token_embd.weight                        tok_embeddings.weight
    blk.N.attn_norm / attn_q / attn_k /      layers.N.attention_norm / attention.wq / wk /
          attn_v / attn_output                     wv / wo
    blk.N.ffn_norm / ffn_gate / ffn_down /   layers.N.ffn_norm / feed_forward.w1 / w2 / w3
          ffn_up
    output_norm.weight, output.weight        norm.weight, output.weight (absent: tied)

    gpt2: token_embd, position_embd, blk.N.attn_norm (ln_1), attn_qkv (c_attn), attn_output
          (c_proj), ffn_norm (ln_2), ffn_up (c_fc), ffn_down (mlp.c_proj), output_norm (ln_f)

Q/K rows: llama.cpp's converter permutes HF's q/k rows (``LlamaModel.permute``:
rows (head, 2, hd/2) -> (head, hd/2, 2)), which undoes HF's own permutation of Meta's
weights, so GGUF holds q/k in Meta's interleaved-RoPE layout, the layout scratchllm's Llama
uses: they are read and written unchanged (io/hf.py does the HF <-> Meta permutation).
"""
import os

from ..backend import xp
from ..errors import ScratchLLMError
from ..models.config import GPTConfig, LlamaConfig
from ..models.weights import check_state_dict
from . import gguf_quant as Q
from .gguf_read import GGUFFile, is_gguf_file
from .gguf_write import FLOAT32, STRING, UINT32, write_gguf
from .validate import MAX_CONTEXT

__all__ = ["read_gguf", "write_gguf_model", "is_gguf_file", "GGUFFile", "FILE_TYPES"]

_LLAMA_LAYER = {"attn_norm.weight": "attention_norm.weight", "attn_q.weight": "attention.wq.weight",
                "attn_k.weight": "attention.wk.weight", "attn_v.weight": "attention.wv.weight",
                "attn_output.weight": "attention.wo.weight", "ffn_norm.weight": "ffn_norm.weight",
                "ffn_gate.weight": "feed_forward.w1.weight", "ffn_down.weight": "feed_forward.w2.weight",
                "ffn_up.weight": "feed_forward.w3.weight"}
_GPT2_LAYER = {"attn_norm": "ln_1", "attn_qkv": "attn.c_attn", "attn_output": "attn.c_proj", "ffn_norm": "ln_2",
               "ffn_up": "mlp.c_fc", "ffn_down": "mlp.c_proj"}
_GLOBAL = {"llama": {"token_embd.weight": "tok_embeddings.weight", "output_norm.weight": "norm.weight",
                     "output.weight": "output.weight"},
           "gpt2": {"token_embd.weight": "transformer.wte.weight", "position_embd.weight": "transformer.wpe.weight",
                    "output_norm.weight": "transformer.ln_f.weight", "output_norm.bias": "transformer.ln_f.bias"}}
# --type -> (general.file_type, GGML type of the matrices)
FILE_TYPES = {"f32": (0, Q.F32), "f16": (1, Q.F16), "q8_0": (7, Q.Q8_0)}


# ------------------------------------------------------------------ reading
def _hparam(g: GGUFFile, arch: str, key: str, kind=int, default=None):
    v = g.get(f"{arch}.{key}", default, kind)
    if v is None:
        raise ScratchLLMError(f"{g.path}: metadata '{arch}.{key}' is missing")
    high = MAX_CONTEXT if key == "context_length" else 1 << 31
    if kind is int and not 0 < v <= high:
        raise ScratchLLMError(f"{g.path}: metadata '{arch}.{key}' is {v}, not a size in 1..{high}")
    return v


def _check_blocks(g: GGUFFile, arch: str) -> None:
    """block_count must be the blocks the tensors hold (before anything is sized by it)."""
    n = _hparam(g, arch, "block_count")
    blocks = {int(p[1]) for p in (name.split(".") for name in g.tensors) if p[0] == "blk" and p[1].isdigit()}
    if len(blocks) != n or (blocks and max(blocks) != n - 1):
        raise ScratchLLMError(f"{g.path}: {arch}.block_count is {n} but the tensors hold {len(blocks)} blocks "
                              f"(blk.0 ..); the metadata disagrees with the weights")


def _f32(v) -> float:
    """A float32 from the file as the shortest decimal that is that float32 (1e-05, not 9.99999974e-06)."""
    return float(str(xp.float32(v)))


def _vocab_size(g: GGUFFile, arch: str) -> int:
    emb = g.tensors.get("token_embd.weight")
    if emb is None or len(emb.shape) != 2:
        raise ScratchLLMError(f"{g.path}: no 2-D tensor 'token_embd.weight'")
    return emb.shape[0]


def _llama_config(g: GGUFFile) -> LlamaConfig:
    a = "llama"
    dim, heads = _hparam(g, a, "embedding_length"), _hparam(g, a, "attention.head_count")
    rope_dim = g.get("llama.rope.dimension_count", None, int)
    if dim % heads or (rope_dim is not None and rope_dim != dim // heads):
        raise ScratchLLMError(f"{g.path}: head_dim {dim}/{heads} with rope.dimension_count {rope_dim} is not "
                              f"supported (RoPE over the whole head only)")
    scaling = g.get("llama.rope.scaling.type", "none", str)
    if scaling not in ("none", "") or "rope_freqs.weight" in g.tensors:
        raise ScratchLLMError(f"{g.path}: RoPE scaling ({scaling if scaling != 'none' else 'rope_freqs'}) in a "
                              f"GGUF file is not supported")
    if g.get("llama.expert_count", 0, int):
        raise ScratchLLMError(f"{g.path}: mixture-of-experts Llama files are not supported")
    return LlamaConfig(vocab_size=_vocab_size(g, a), dim=dim, n_layers=_hparam(g, a, "block_count"),
                       n_heads=heads, n_kv_heads=_hparam(g, a, "attention.head_count_kv", default=heads),
                       hidden_dim=_hparam(g, a, "feed_forward_length"),
                       norm_eps=_f32(_hparam(g, a, "attention.layer_norm_rms_epsilon", float, 1e-5)),
                       rope_theta=_f32(_hparam(g, a, "rope.freq_base", float, 10000.0)),
                       max_seq_len=_hparam(g, a, "context_length", default=2048),
                       tie_embeddings="output.weight" not in g.tensors)


def _gpt2_config(g: GGUFFile) -> GPTConfig:
    a = "gpt2"
    n_embd = _hparam(g, a, "embedding_length")
    ff = g.get("gpt2.feed_forward_length", 4 * n_embd, int)
    if ff != 4 * n_embd:
        raise ScratchLLMError(f"{g.path}: gpt2.feed_forward_length {ff} is not 4 * embedding_length ({4 * n_embd})")
    return GPTConfig(vocab_size=_vocab_size(g, a), block_size=_hparam(g, a, "context_length"),
                     n_layer=_hparam(g, a, "block_count"), n_head=_hparam(g, a, "attention.head_count"),
                     n_embd=n_embd, layer_norm_eps=_f32(_hparam(g, a, "attention.layer_norm_epsilon", float, 1e-5)))


def _our_name(arch: str, name: str):
    """llama.cpp's tensor name -> scratchllm's (None if unknown)."""
    if name in _GLOBAL[arch]:
        return _GLOBAL[arch][name]
    parts = name.split(".", 2)
    if len(parts) != 3 or parts[0] != "blk" or not parts[1].isdigit():
        return None
    i, rest = parts[1], parts[2]
    if arch == "llama":
        return f"layers.{i}.{_LLAMA_LAYER[rest]}" if rest in _LLAMA_LAYER else None
    kind, _, suffix = rest.rpartition(".")
    return f"transformer.h.{i}.{_GPT2_LAYER[kind]}.{suffix}" if kind in _GPT2_LAYER else None


def read_gguf(path) -> tuple:
    """GGUF file -> (config, state dict in scratchllm names, float32 arrays)."""
    g = path if isinstance(path, GGUFFile) else GGUFFile(path)
    arch = g.get("general.architecture", None, str)
    if arch not in ("llama", "gpt2"):
        raise ScratchLLMError(f"{g.path}: architecture {arch!r} is not supported (scratchllm reads 'llama' "
                              f"and 'gpt2' GGUF files)")
    _check_blocks(g, arch)
    config = _llama_config(g) if arch == "llama" else _gpt2_config(g)
    state, names = {}, {}
    for name in g.tensors:
        ours = _our_name(arch, name)
        if arch == "gpt2" and name == "output.weight":
            continue                                   # checked against token_embd below
        ours = ours or name
        state[ours] = g.array(name)
        names[ours] = name
    check_state_dict(state, config, g.path, names)
    if arch == "gpt2" and "output.weight" in g.tensors:
        out, wte = g.array("output.weight"), state["transformer.wte.weight"]
        if out.shape != wte.shape or not xp.array_equal(out, wte):
            raise ScratchLLMError(f"{g.path}: output.weight differs from token_embd.weight; scratchllm's GPT-2 "
                                  f"ties its head to the embedding")
    return config, state


# ------------------------------------------------------------------ writing
def _tensor(name: str, arr, ggml_type: int):
    """(name, shape, type, raw bytes); 1-D tensors and rows not a multiple of 32 stay float32."""
    arr = xp.ascontiguousarray(arr, dtype=xp.float32)
    if arr.ndim < 2 or ggml_type == Q.F32:
        return name, arr.shape, Q.F32, Q.encode_plain(arr, Q.F32)
    if ggml_type == Q.F16:
        return name, arr.shape, Q.F16, Q.encode_plain(arr, Q.F16)
    if arr.shape[-1] % 32:
        return name, arr.shape, Q.F32, Q.encode_plain(arr, Q.F32)
    return name, arr.shape, Q.Q8_0, Q.quantize_q8_0(arr).reshape(-1)


def _llama_meta(c: LlamaConfig) -> list:
    if c.rope_scaling:
        raise ScratchLLMError("GGUF export of Llama 3.1 RoPE scaling is not supported")
    a = "llama"
    return [(f"{a}.vocab_size", UINT32, c.vocab_size), (f"{a}.context_length", UINT32, c.max_seq_len),
            (f"{a}.embedding_length", UINT32, c.dim), (f"{a}.block_count", UINT32, c.n_layers),
            (f"{a}.feed_forward_length", UINT32, c.ffn_hidden_dim),
            (f"{a}.rope.dimension_count", UINT32, c.head_dim), (f"{a}.attention.head_count", UINT32, c.n_heads),
            (f"{a}.attention.head_count_kv", UINT32, c.n_kv_heads),
            (f"{a}.attention.layer_norm_rms_epsilon", FLOAT32, c.norm_eps),
            (f"{a}.rope.freq_base", FLOAT32, c.rope_theta)]


def _gpt2_meta(c: GPTConfig) -> list:
    if c.positional != "learned" or not c.bias or not c.is_gpt2:
        raise ScratchLLMError("GGUF 'gpt2' needs a GPT with learned positions and bias=True (as GPT-2), "
                              "and none of the recipe options (qk_norm, mlp_act, tie_weights, logit_softcap, "
                              "value_embeds)")
    a = "gpt2"
    return [(f"{a}.context_length", UINT32, c.block_size), (f"{a}.embedding_length", UINT32, c.n_embd),
            (f"{a}.feed_forward_length", UINT32, 4 * c.n_embd), (f"{a}.block_count", UINT32, c.n_layer),
            (f"{a}.attention.head_count", UINT32, c.n_head),
            (f"{a}.attention.layer_norm_epsilon", FLOAT32, c.layer_norm_eps)]


def write_gguf_model(path, config, state: dict, tokenizer=None, type: str = "f32", name: str = None) -> None:
    """Write (config, state dict in scratchllm names) [+ tokenizer] as a GGUF file llama.cpp reads.

    ``type``: "f32", "f16" (matrices as float16) or "q8_0" (matrices as Q8_0 blocks; norms,
    biases and matrices whose rows are not a multiple of 32 stay float32).
    """
    from .gguf_vocab import tokenizer_metadata
    if type not in FILE_TYPES:
        raise ScratchLLMError(f"GGUF type must be one of {sorted(FILE_TYPES)}, got {type!r}")
    file_type, ggml_type = FILE_TYPES[type]
    check_state_dict(state, config, "write_gguf_model")
    arch = "llama" if isinstance(config, LlamaConfig) else "gpt2"
    meta = [("general.architecture", STRING, arch), ("general.name", STRING, name or os.path.basename(
            os.fspath(path)).rsplit(".", 1)[0]), ("general.file_type", UINT32, file_type),
            ("general.quantization_version", UINT32, 2)]
    meta += _llama_meta(config) if arch == "llama" else _gpt2_meta(config)
    if tokenizer is not None:
        meta += tokenizer_metadata(tokenizer, config.vocab_size)
    back = {}
    for gname in list(_GLOBAL[arch]):
        back[_GLOBAL[arch][gname]] = gname
    n_layers = config.n_layers if arch == "llama" else config.n_layer
    for i in range(n_layers):
        if arch == "llama":
            back.update({f"layers.{i}.{v}": f"blk.{i}.{k}" for k, v in _LLAMA_LAYER.items()})
        else:
            for k, v in _GPT2_LAYER.items():
                back.update({f"transformer.h.{i}.{v}.{s}": f"blk.{i}.{k}.{s}" for s in ("weight", "bias")})
    tensors = [_tensor(back[k], v, ggml_type) for k, v in state.items()]
    write_gguf(path, meta, tensors)
