"""Hugging Face model folders: ``config.json`` + ``model.safetensors`` (or a sharded index).

Reading gives ``(config, state_dict)`` in scratchllm's names:
- GPT2LMHeadModel: the same names as ours, but HF's ``Conv1D`` stores weights as
  (in, out), so ``c_attn``, ``c_proj`` and ``c_fc`` are transposed to Linear's (out, in).
- LlamaForCausalLM: renamed to Meta's names, and HF's q/k row permutation (made for
  its half-split RoPE) is undone, since our Llama uses Meta's interleaved RoPE layout.

Writing (``write_hf``) does the reverse, so transformers loads the folder.
"""
import json
import os

from ..backend import xp
from ..errors import ScratchLLMError
from ..jsonio import read_json as _read_json
from ..models.config import GPTConfig, LlamaConfig
from ..models.weights import check_state_dict, hf_to_meta_qk, meta_to_hf_qk
from .safetensors_file import read_safetensors, write_safetensors
from .validate import MAX_CONTEXT, check_layer_count, count, flag, inside_folder, real, text

GPT2_ARCHS = ("GPT2LMHeadModel", "GPT2Model")
LLAMA_ARCHS = ("LlamaForCausalLM", "LlamaModel")
_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
_LLAMA_LAYER = {"self_attn.q_proj.weight": "attention.wq.weight", "self_attn.k_proj.weight": "attention.wk.weight",
                "self_attn.v_proj.weight": "attention.wv.weight", "self_attn.o_proj.weight": "attention.wo.weight",
                "mlp.gate_proj.weight": "feed_forward.w1.weight", "mlp.down_proj.weight": "feed_forward.w2.weight",
                "mlp.up_proj.weight": "feed_forward.w3.weight", "input_layernorm.weight": "attention_norm.weight",
                "post_attention_layernorm.weight": "ffn_norm.weight"}


def is_hf_folder(path: str) -> bool:
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, "config.json"))


def read_json(path: str) -> dict:
    """A config/index JSON file as a dict (depth-limited; see :mod:`scratchllm.jsonio`)."""
    return _read_json(path, "JSON file", expect=dict)


def architecture(cfg: dict, path: str) -> str:
    archs = cfg.get("architectures") or []
    if not isinstance(archs, list) or not all(isinstance(a, str) for a in archs):
        raise ScratchLLMError(f"{path}: 'architectures' must be a list of strings")
    model_type = text(cfg, "model_type", path)
    arch = archs[0] if archs else {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM"}.get(model_type)
    if arch not in GPT2_ARCHS + LLAMA_ARCHS:
        raise ScratchLLMError(f"{path}: unknown architecture {arch or cfg.get('model_type')!r}; scratchllm reads "
                              f"{', '.join(GPT2_ARCHS + LLAMA_ARCHS)}")
    return arch


def read_hf_tensors(folder: str) -> dict:
    """All tensors of the folder's safetensors file(s) (or a pytorch_model.bin), as float32 arrays."""
    single = os.path.join(folder, "model.safetensors")
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.isfile(single):
        return read_safetensors(inside_folder(folder, "model.safetensors", folder, "file"))[0]
    if os.path.isfile(index):
        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, dict):
            raise ScratchLLMError(f"{index}: no 'weight_map' object")
        for name, shard in weight_map.items():
            if not isinstance(shard, str) or not shard.endswith(".safetensors"):
                raise ScratchLLMError(f"{index}: weight_map['{name}'] must be a .safetensors file name, "
                                      f"got {json.dumps(shard)[:60]}")
        tensors = {}
        for shard in sorted(set(weight_map.values())):
            shard_path = inside_folder(folder, shard, index, "shard")
            if not os.path.isfile(shard_path):
                raise ScratchLLMError(f"{index}: names shard '{shard}' which is not in {folder}")
            part = read_safetensors(shard_path)[0]
            tensors.update({k: v for k, v in part.items() if weight_map.get(k) == shard})
        missing = sorted(k for k in weight_map if k not in tensors)
        if missing:
            raise ScratchLLMError(f"{index}: tensors {missing[:5]} are listed but absent from their shard files")
        return tensors
    binary = os.path.join(folder, "pytorch_model.bin")
    if os.path.isfile(binary):
        from .pth import load_pth
        return load_pth(inside_folder(folder, "pytorch_model.bin", folder, "file"))
    raise ScratchLLMError(f"{folder}: has config.json but no model.safetensors, model.safetensors.index.json "
                          f"or pytorch_model.bin")


def read_hf(folder: str) -> tuple:
    """HF folder -> (GPTConfig | LlamaConfig, state dict with scratchllm names)."""
    cfg_path = os.path.join(folder, "config.json")
    cfg = read_json(cfg_path)
    arch = architecture(cfg, cfg_path)
    tensors = read_hf_tensors(folder)
    if arch in GPT2_ARCHS:
        config = gpt2_config(cfg, cfg_path)
        check_layer_count(config.n_layer, tensors, cfg_path, "n_layer")
        state, names = gpt2_state(tensors, config)
    else:
        config = llama_config(cfg, cfg_path)
        check_layer_count(config.n_layers, tensors, cfg_path, "num_hidden_layers")
        state, names = llama_state(tensors, config)
    check_state_dict(state, config, f"{folder} (weights vs config.json)", names)
    return config, state


# ------------------------------------------------------------------ GPT-2
def _get(cfg: dict, path: str, *keys, high: int = None):
    """The first of ``keys`` present, as a positive int (bools, floats, strings refused)."""
    for k in keys:
        if cfg.get(k) is not None:
            return count(cfg, k, path, **({"high": high} if high else {}))
    raise ScratchLLMError(f"{path}: missing '{keys[0]}'")


def gpt2_config(cfg: dict, path: str) -> GPTConfig:
    act = text(cfg, "activation_function", path, "gelu_new")
    if act not in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
        raise ScratchLLMError(f"{path}: activation_function {act!r} is not supported (GPT-2 uses 'gelu_new')")
    n_embd = _get(cfg, path, "n_embd", "hidden_size")
    n_inner = count(cfg, "n_inner", path, None)
    if n_inner is not None and n_inner != 4 * n_embd:
        raise ScratchLLMError(f"{path}: n_inner {n_inner} is not 4*n_embd; scratchllm's GPT MLP is 4x")
    for key in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn", "add_cross_attention"):
        if flag(cfg, key, path, False):
            raise ScratchLLMError(f"{path}: '{key}': true is not supported")
    if flag(cfg, "tie_word_embeddings", path, True) is False:
        raise ScratchLLMError(f"{path}: tie_word_embeddings false is not supported for GPT-2 (its head is tied)")
    return GPTConfig(vocab_size=_get(cfg, path, "vocab_size"),
                     block_size=_get(cfg, path, "n_positions", "n_ctx", high=MAX_CONTEXT),
                     n_layer=_get(cfg, path, "n_layer"), n_head=_get(cfg, path, "n_head"), n_embd=n_embd,
                     layer_norm_eps=real(cfg, "layer_norm_epsilon", path, 1e-5), bias=True)


def gpt2_state(tensors: dict, config: GPTConfig) -> tuple:
    state, names = {}, {}
    for k, v in tensors.items():
        if k == "lm_head.weight" or k.endswith(".attn.bias") or k.endswith(".attn.masked_bias"):
            continue  # tied head; causal-mask buffers of old transformers versions
        ours = k if k.startswith("transformer.") else "transformer." + k
        if ours.endswith(_CONV1D):
            if v.ndim != 2:
                raise ScratchLLMError(f"tensor '{k}' has shape {list(v.shape)}, a Conv1D weight must be 2-D")
            v = xp.ascontiguousarray(v.T)  # Conv1D (in, out) -> Linear (out, in)
        state[ours] = v
        names[ours] = k
    return state, names


# ------------------------------------------------------------------ Llama
def rope_settings(cfg: dict, path: str) -> tuple:
    """(rope_theta, llama3 scaling dict or None) wherever this transformers version put them."""
    params = cfg.get("rope_parameters") or {}
    scaling = cfg.get("rope_scaling") or {}
    if not isinstance(params, dict) or not isinstance(scaling, dict):
        raise ScratchLLMError(f"{path}: rope_parameters / rope_scaling must be objects")
    theta = next((real(d, "rope_theta", path) for d in (cfg, params, scaling) if d.get("rope_theta")), 10000.0)
    kind = params.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
    if not isinstance(kind, str):
        raise ScratchLLMError(f"{path}: rope_type must be a string, got {json.dumps(kind)[:40]}")
    if kind == "default":
        return float(theta), None
    if kind == "llama3":
        src = params if params.get("rope_type") == "llama3" else scaling
        try:
            scale = {k: real(src, k, path) for k in ("factor", "low_freq_factor", "high_freq_factor",
                                                     "original_max_position_embeddings")}
        except ScratchLLMError as e:
            raise ScratchLLMError(f"{e} (llama3 rope scaling)") from None
        return float(theta), scale
    raise ScratchLLMError(f"{path}: rope_type {kind!r} is not supported (only 'default' and 'llama3')")


def llama_config(cfg: dict, path: str) -> LlamaConfig:
    if text(cfg, "hidden_act", path, "silu") != "silu":
        raise ScratchLLMError(f"{path}: hidden_act {cfg['hidden_act']!r} is not supported (Llama uses 'silu')")
    if flag(cfg, "attention_bias", path, False) or flag(cfg, "mlp_bias", path, False):
        raise ScratchLLMError(f"{path}: attention_bias / mlp_bias true is not supported")
    dim, n_heads = _get(cfg, path, "hidden_size"), _get(cfg, path, "num_attention_heads")
    if count(cfg, "head_dim", path, None) not in (None, dim // n_heads):
        raise ScratchLLMError(f"{path}: head_dim {cfg['head_dim']} differs from hidden_size/num_attention_heads "
                              f"{dim // n_heads}; not supported")
    theta, scaling = rope_settings(cfg, path)
    return LlamaConfig(vocab_size=_get(cfg, path, "vocab_size"), dim=dim, n_layers=_get(cfg, path, "num_hidden_layers"),
                       n_heads=n_heads, n_kv_heads=count(cfg, "num_key_value_heads", path, n_heads),
                       hidden_dim=_get(cfg, path, "intermediate_size"), norm_eps=real(cfg, "rms_norm_eps", path, 1e-6),
                       rope_theta=theta, rope_scaling=scaling,
                       max_seq_len=count(cfg, "max_position_embeddings", path, 2048, high=MAX_CONTEXT),
                       tie_embeddings=flag(cfg, "tie_word_embeddings", path, False))


def llama_state(tensors: dict, config: LlamaConfig) -> tuple:
    state, names = {}, {}
    for k, v in tensors.items():
        key = k[len("model."):] if k.startswith("model.") else k
        if key.endswith("rotary_emb.inv_freq"):
            continue  # a buffer some transformers versions saved
        if key == "embed_tokens.weight":
            ours = "tok_embeddings.weight"
        elif key == "norm.weight":
            ours = "norm.weight"
        elif key == "lm_head.weight":
            if config.tie_embeddings:
                continue
            ours = "output.weight"
        elif key.startswith("layers."):
            _, i, rest = key.split(".", 2)
            ours = f"layers.{i}.{_LLAMA_LAYER.get(rest, rest)}"
        else:
            ours = key
        if ours.endswith("attention.wq.weight") and v.ndim == 2 and v.shape[0] == config.dim:
            v = hf_to_meta_qk(v, config.n_heads)
        elif ours.endswith("attention.wk.weight") and v.ndim == 2 and v.shape[0] == config.n_kv_heads * config.head_dim:
            v = hf_to_meta_qk(v, config.n_kv_heads)
        state[ours] = v
        names[ours] = k
    return state, names


# ------------------------------------------------------------------ writing
def hf_config_and_tensors(config, state: dict) -> tuple:
    """scratchllm (config, state dict) -> (HF config.json dict, HF-named tensors)."""
    if isinstance(config, GPTConfig):
        if config.positional != "learned" or not config.bias or not config.is_gpt2:
            raise ScratchLLMError("format='hf' needs a GPT with learned positions and bias=True (as GPT-2), "
                                  "and none of the recipe options (qk_norm, mlp_act, tie_weights, logit_softcap, "
                                  "value_embeds)")
        cfg = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": config.vocab_size,
               "n_positions": config.block_size, "n_embd": config.n_embd, "n_layer": config.n_layer,
               "n_head": config.n_head, "n_inner": None, "activation_function": "gelu_new",
               "layer_norm_epsilon": config.layer_norm_eps, "resid_pdrop": config.dropout,
               "embd_pdrop": config.dropout, "attn_pdrop": config.dropout, "tie_word_embeddings": True,
               "bos_token_id": 50256, "eos_token_id": 50256}
        out = {k: (xp.ascontiguousarray(v.T) if k.endswith(_CONV1D) else v) for k, v in state.items()}
        return cfg, out
    rope = {"rope_theta": config.rope_theta, "rope_type": "default"}
    if config.rope_scaling:
        rope = {**rope, **config.rope_scaling, "rope_type": "llama3"}
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": config.vocab_size,
           "hidden_size": config.dim, "intermediate_size": config.ffn_hidden_dim,
           "num_hidden_layers": config.n_layers, "num_attention_heads": config.n_heads,
           "num_key_value_heads": config.n_kv_heads, "head_dim": config.head_dim, "hidden_act": "silu",
           "max_position_embeddings": config.max_seq_len, "rms_norm_eps": config.norm_eps,
           "rope_theta": config.rope_theta, "rope_parameters": rope,
           "rope_scaling": rope if config.rope_scaling else None,
           "tie_word_embeddings": config.tie_embeddings, "attention_bias": False, "mlp_bias": False}
    back = {v: k for k, v in _LLAMA_LAYER.items()}
    out = {}
    for k, v in state.items():
        if k == "tok_embeddings.weight":
            name = "model.embed_tokens.weight"
        elif k == "norm.weight":
            name = "model.norm.weight"
        elif k == "output.weight":
            name = "lm_head.weight"
        else:
            _, i, rest = k.split(".", 2)
            name = f"model.layers.{i}.{back[rest]}"
            if rest == "attention.wq.weight":
                v = meta_to_hf_qk(v, config.n_heads)
            elif rest == "attention.wk.weight":
                v = meta_to_hf_qk(v, config.n_kv_heads)
        out[name] = v
    return cfg, out


def write_hf(folder: str, config, state: dict) -> None:
    """Write ``config.json`` + ``model.safetensors`` (float32) that transformers can load."""
    from ..atomic import atomic_write
    cfg, tensors = hf_config_and_tensors(config, state)
    os.makedirs(folder, exist_ok=True)
    write_safetensors(os.path.join(folder, "model.safetensors"),
                      {k: xp.ascontiguousarray(v, dtype=xp.float32) for k, v in tensors.items()},
                      metadata={"format": "pt"})
    with atomic_write(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
