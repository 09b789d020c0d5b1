"""Meta's Llama folders: ``params.json`` + ``consolidated.00.pth`` (+ ``.01``, ... for model parallel).

Each shard holds every tensor name with a slice of the big matrices, cut as Meta's
model-parallel layers cut them:
- column-parallel (output rows split): wq, wk, wv, w1, w3, output -> concatenate on dim 0;
- row-parallel (input columns split): wo, w2 -> dim 1;
- the token embedding (ParallelEmbedding splits the embedding dim) -> dim 1;
- the norms are replicated: take shard 0's.
Meta stores q/k in the interleaved RoPE layout, which is ours, so no permutation is needed.
"""
import glob
import os
import re

from ..backend import xp
from ..errors import ScratchLLMError
from ..models.config import LlamaConfig
from ..models.weights import check_state_dict
from .hf import read_json
from .pth import load_pth

_DIM0 = ("attention.wq.weight", "attention.wk.weight", "attention.wv.weight", "feed_forward.w1.weight",
         "feed_forward.w3.weight", "output.weight")
_DIM1 = ("attention.wo.weight", "feed_forward.w2.weight", "tok_embeddings.weight")
# Llama 3.1's use_scaled_rope, as in Meta's apply_scaling()
_LLAMA31_SCALING = {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                    "original_max_position_embeddings": 8192.0}


def is_meta_folder(path: str) -> bool:
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, "params.json"))


def shard_paths(folder: str) -> list:
    paths = sorted(glob.glob(os.path.join(folder, "consolidated.*.pth")),
                   key=lambda p: int(re.findall(r"consolidated\.(\d+)\.pth$", p)[0])
                   if re.search(r"consolidated\.(\d+)\.pth$", p) else -1)
    if not paths:
        raise ScratchLLMError(f"{folder}: has params.json but no consolidated.NN.pth files")
    return paths


def merge_shards(shards: list, paths: list) -> dict:
    """Concatenate model-parallel shards on Meta's axes (see the module docstring)."""
    if len(shards) == 1:
        return shards[0]
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
    try:
        dim, n_layers, n_heads = int(params["dim"]), int(params["n_layers"]), int(params["n_heads"])
    except KeyError as e:
        raise ScratchLLMError(f"{path}: missing {e.args[0]!r}") from None
    vocab = int(params.get("vocab_size", -1))
    emb = state.get("tok_embeddings.weight")
    if vocab <= 0:  # Llama 2's params.json says -1: the tokenizer decides; take it from the weights
        if emb is None:
            raise ScratchLLMError(f"{path}: vocab_size is {vocab} and no tok_embeddings.weight to infer it from")
        vocab = int(emb.shape[0])
    w1 = state.get("layers.0.feed_forward.w1.weight")
    theta = float(params.get("rope_theta", 10000.0))
    return LlamaConfig(vocab_size=vocab, dim=dim, n_layers=n_layers, n_heads=n_heads,
                       n_kv_heads=params.get("n_kv_heads") or n_heads, multiple_of=int(params.get("multiple_of", 256)),
                       ffn_dim_multiplier=params.get("ffn_dim_multiplier"),
                       hidden_dim=int(w1.shape[0]) if w1 is not None and w1.ndim == 2 else None,
                       norm_eps=float(params.get("norm_eps", 1e-5)), rope_theta=theta,
                       rope_scaling=dict(_LLAMA31_SCALING) if params.get("use_scaled_rope") else None,
                       max_seq_len=int(params.get("max_seq_len", 8192 if theta >= 500000 else 4096)),
                       tie_embeddings="output.weight" not in state)


def read_meta(folder: str) -> tuple:
    """Meta folder -> (LlamaConfig, state dict with Meta's (= scratchllm's) names)."""
    params_path = os.path.join(folder, "params.json")
    params = read_json(params_path)
    paths = shard_paths(folder)
    state = merge_shards([load_pth(p) for p in paths], paths)
    state.pop("rope.freqs", None)  # Llama 2 saved its RoPE table; we compute it
    config = meta_config(params, state, params_path)
    if config.hidden_dim is not None:
        rule = LlamaConfig(**{**config.__dict__, "hidden_dim": None}).ffn_hidden_dim
        if rule != config.hidden_dim:
            raise ScratchLLMError(f"{folder}: feed_forward.w1 has {config.hidden_dim} rows but params.json "
                                  f"(dim, multiple_of, ffn_dim_multiplier) gives hidden size {rule}; "
                                  f"the config disagrees with the weights")
    check_state_dict(state, config, f"{folder} (weights vs params.json)")
    return config, state
