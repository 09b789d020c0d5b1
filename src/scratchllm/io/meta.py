"""Meta's Llama folders: ``params.json`` + ``consolidated.00.pth`` (+ ``.01``, ... for model parallel).

Each shard holds every tensor name with a slice of the big matrices, cut as Meta's
model-parallel layers cut them:
- column-parallel (output rows split): wq, wk, wv, w1, w3, output -> concatenate on dim 0;
- row-parallel (input columns split): wo, w2 -> dim 1;
- the token embedding (ParallelEmbedding splits the embedding dim) -> dim 1;
- the norms are replicated: take shard 0's.
Meta stores q/k in the interleaved RoPE layout, which is ours, so no permutation is needed.
"""
import os
import re

from ..backend import xp
from ..errors import ScratchLLMError
from ..models.config import LlamaConfig
from ..models.weights import check_state_dict
from .hf import read_json
from .pth import load_pth
from .validate import MAX_CONTEXT, check_layer_count, count, flag, inside_folder, real

_DIM0 = ("attention.wq.weight", "attention.wk.weight", "attention.wv.weight", "feed_forward.w1.weight",
         "feed_forward.w3.weight", "output.weight")
_DIM1 = ("attention.wo.weight", "feed_forward.w2.weight", "tok_embeddings.weight")
# Llama 3.1's use_scaled_rope, as in Meta's apply_scaling()
_LLAMA31_SCALING = {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                    "original_max_position_embeddings": 8192.0}


def is_meta_folder(path: str) -> bool:
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, "params.json"))


def shard_paths(folder: str) -> list:
    names = [n for n in os.listdir(folder) if re.fullmatch(r"consolidated\.(\d{1,6})\.pth", n)]
    names.sort(key=lambda n: int(n.split(".")[1]))
    if not names:
        raise ScratchLLMError(f"{folder}: has params.json but no consolidated.NN.pth files")
    numbers = [int(n.split(".")[1]) for n in names]
    if numbers != list(range(len(names))):
        raise ScratchLLMError(f"{folder}: shards {names[:5]} are not consolidated.00.pth .. "
                              f"consolidated.{len(names) - 1:02d}.pth without gaps")
    return [inside_folder(folder, n, folder, "shard") for n in names]


def merge_shards(shards: list, paths: list) -> dict:
    """Concatenate model-parallel shards on Meta's axes (see the module docstring)."""
    if len(shards) == 1:
        return shards[0]
    if len({len(s) for s in shards}) != 1:
        raise ScratchLLMError(f"{os.path.dirname(paths[0])}: shards hold different numbers of tensors "
                              f"({[len(s) for s in shards]})")
    names = set(shards[0])
    for s, p in zip(shards[1:], paths[1:]):
        if set(s) != names:
            diff = sorted(names.symmetric_difference(s))[:5]
            raise ScratchLLMError(f"{p}: holds different tensor names than {paths[0]} (e.g. {diff})")
    merged = {}
    for k in shards[0]:
        parts = [s[k] for s in shards]
        if k.endswith(_DIM0) or k.endswith(_DIM1):
            axis = 0 if k.endswith(_DIM0) else 1
            try:
                merged[k] = xp.concatenate(parts, axis=axis)
            except ValueError:
                raise ScratchLLMError(f"{os.path.dirname(paths[0])}: shards of '{k}' have shapes "
                                      f"{[list(p.shape) for p in parts]} that do not join on dim {axis}") from None
        else:
            merged[k] = parts[0]  # replicated (norms, rope.freqs)
    return merged


def meta_config(params: dict, state: dict, path: str) -> LlamaConfig:
    dim, n_layers, n_heads = count(params, "dim", path), count(params, "n_layers", path), count(params, "n_heads", path)
    vocab = count(params, "vocab_size", path, -1, low=-1)
    emb = state.get("tok_embeddings.weight")
    if vocab <= 0:  # Llama 2's params.json says -1: the tokenizer decides; take it from the weights
        if emb is None or emb.ndim != 2 or not emb.shape[0]:
            raise ScratchLLMError(f"{path}: vocab_size is {vocab} and no 2-D tok_embeddings.weight to infer it from")
        vocab = int(emb.shape[0])
    w1 = state.get("layers.0.feed_forward.w1.weight")
    theta = real(params, "rope_theta", path, 10000.0)
    return LlamaConfig(vocab_size=vocab, dim=dim, n_layers=n_layers, n_heads=n_heads,
                       n_kv_heads=count(params, "n_kv_heads", path, n_heads),
                       multiple_of=count(params, "multiple_of", path, 256),
                       ffn_dim_multiplier=real(params, "ffn_dim_multiplier", path, None),
                       hidden_dim=int(w1.shape[0]) if w1 is not None and w1.ndim == 2 and w1.shape[0] else None,
                       norm_eps=real(params, "norm_eps", path, 1e-5), rope_theta=theta,
                       rope_scaling=dict(_LLAMA31_SCALING) if flag(params, "use_scaled_rope", path, False) else None,
                       max_seq_len=count(params, "max_seq_len", path, 8192 if theta >= 500000 else 4096,
                                         high=MAX_CONTEXT),
                       tie_embeddings="output.weight" not in state)


def read_meta(folder: str) -> tuple:
    """Meta folder -> (LlamaConfig, state dict with Meta's (= scratchllm's) names)."""
    params_path = os.path.join(folder, "params.json")
    params = read_json(params_path)
    n_layers = count(params, "n_layers", params_path)
    paths = shard_paths(folder)
    state = merge_shards([load_pth(p) for p in paths], paths)
    state.pop("rope.freqs", None)  # Llama 2 saved its RoPE table; we compute it
    check_layer_count(n_layers, state, params_path, "n_layers")
    config = meta_config(params, state, params_path)
    if config.hidden_dim is not None:
        rule = LlamaConfig(**{**config.__dict__, "hidden_dim": None}).ffn_hidden_dim
        if rule != config.hidden_dim:
            raise ScratchLLMError(f"{folder}: feed_forward.w1 has {config.hidden_dim} rows but params.json "
                                  f"(dim, multiple_of, ffn_dim_multiplier) gives hidden size {rule}; "
                                  f"the config disagrees with the weights")
    check_state_dict(state, config, f"{folder} (weights vs params.json)")
    return config, state
