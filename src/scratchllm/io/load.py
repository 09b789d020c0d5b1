"""``load_model(path)``: pick the reader from what the path holds, build the model, load weights.

- a folder whose ``config.json`` says ``"format": "scratchllm"`` (``save_pretrained``), or a
  ``.safetensors`` file whose metadata carries the config: scratchllm's own;
- a folder with ``config.json`` (+ ``model.safetensors`` or a sharded index): Hugging Face;
- a folder with ``params.json`` + ``consolidated.NN.pth``: Meta;
- a file with a llama2.c header (legacy or "ak42"): llama2.c.
- a GGUF file (llama.cpp / ollama; ``llama`` and ``gpt2`` architectures).

>>> model = load_model("path/to/gpt2")          # doctest: +SKIP
>>> model.config.n_layer
12
"""
import glob
import os

from ..errors import ScratchLLMError
from ..jsonio import loads_json
from ..models.config import GPTConfig, LlamaConfig, config_from_dict
from ..models.weights import check_state_dict
from .hf import is_hf_folder, read_hf, read_json
from .gguf_read import is_gguf_file
from .llama2c import is_llama2c_file, read_llama2c
from .meta import is_meta_folder, read_meta
from .safetensors_file import read_safetensors
from .validate import check_config_dict, check_layer_count, inside_folder

SCRATCHLLM_FORMAT = "scratchllm"


def _scratchllm_config_from_meta(meta: dict, path: str):
    """The model config stored in a safetensors ``__metadata__`` (by save_pretrained or sl.save)."""
    for key in ("config", "model_config"):
        raw = meta.get(key)
        if raw:
            try:
                d = loads_json(raw, path, f"metadata '{key}'") if isinstance(raw, str) else raw
            except ScratchLLMError:
                continue
            if isinstance(d, dict) and "config" in d and "model_type" not in d:
                d = d["config"]
            if isinstance(d, dict) and d.get("model_type") in ("gpt", "llama"):
                return d
    return None


def _is_scratchllm_folder(path: str) -> bool:
    cfg = os.path.join(path, "config.json")
    if os.path.isfile(cfg):
        return read_json(cfg).get("format") == SCRATCHLLM_FORMAT
    return bool(glob.glob(os.path.join(path, "*.safetensors")))


def read_scratchllm(path: str) -> tuple:
    """scratchllm folder (config.json + model.safetensors) or single .safetensors -> (config, state)."""
    if os.path.isdir(path):
        files = sorted(glob.glob(os.path.join(path, "*.safetensors")))
        if not files:
            raise ScratchLLMError(f"{path}: config.json says format 'scratchllm' but there is no .safetensors file")
        weights = os.path.join(path, "model.safetensors") if os.path.join(path, "model.safetensors") in files \
            else files[0]
        weights = inside_folder(path, os.path.basename(weights), path, "file")
        cfg_path = os.path.join(path, "config.json")
    else:
        weights, cfg_path = path, os.path.join(os.path.dirname(os.path.abspath(path)), "config.json")
    state, meta = read_safetensors(weights)
    cfg, source = _scratchllm_config_from_meta(meta, weights), weights
    if cfg is None and os.path.isfile(cfg_path):
        d = read_json(cfg_path)
        cfg, source = (d.get("config", d) if d.get("format") == SCRATCHLLM_FORMAT else None), cfg_path
        if cfg is not None and not isinstance(cfg, dict):
            raise ScratchLLMError(f"{cfg_path}: 'config' must be an object")
        if cfg is not None and cfg.get("model_type") is None:
            cfg = {**cfg, "model_type": d.get("model_type")}
    if cfg is None:
        raise ScratchLLMError(f"{weights}: no model config found (neither in the safetensors metadata nor in a "
                              f"scratchllm config.json beside it)")
    cfg = {k: v for k, v in cfg.items() if k != "format"}
    model_type = cfg.get("model_type")
    cls = {"gpt": GPTConfig, "llama": LlamaConfig}.get(model_type) if isinstance(model_type, str) else None
    if cls is None:
        raise ScratchLLMError(f"{source}: model_type {str(cfg.get('model_type'))[:40]!r} is not 'gpt' or 'llama'")
    check_config_dict(cfg, cls, source)
    try:
        config = config_from_dict(cfg)
    except ScratchLLMError as e:
        raise ScratchLLMError(f"{source}: {e}") from None
    key = "n_layer" if cls is GPTConfig else "n_layers"
    check_layer_count(getattr(config, key), state, source, key)
    check_state_dict(state, config, f"{weights} (weights vs config)")
    return config, state


def read_checkpoint(path) -> tuple:
    """Any supported path -> (config, state dict in scratchllm names), without building the model."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ScratchLLMError(f"{path}: no such file or folder")
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "config.json")) and _is_scratchllm_folder(path):
            return read_scratchllm(path)
        if is_hf_folder(path):
            return read_hf(path)
        if is_meta_folder(path):
            return read_meta(path)
        if _is_scratchllm_folder(path):
            return read_scratchllm(path)
        bins = [p for p in sorted(glob.glob(os.path.join(path, "*.bin"))) if is_llama2c_file(p)]
        if len(bins) == 1:
            return read_llama2c(bins[0])
        raise ScratchLLMError(f"{path}: not a model folder (expected config.json + model.safetensors (HF or "
                              f"scratchllm), params.json + consolidated.NN.pth (Meta), or one llama2.c .bin)")
    if path.endswith(".safetensors"):
        return read_scratchllm(path)
    if is_gguf_file(path):                               # llama.cpp / ollama (io/gguf.py)
        from .gguf import read_gguf
        return read_gguf(path)
    if is_llama2c_file(path):
        return read_llama2c(path)
    if path.endswith((".pth", ".pt")):
        raise ScratchLLMError(f"{path}: give the Meta folder (params.json + consolidated.NN.pth), not the .pth file")
    raise ScratchLLMError(f"{path}: unknown model file (expected a folder, a .safetensors file, a GGUF file "
                          f"or a llama2.c .bin)")


def load_model(path):
    """Build the model a checkpoint describes and load its weights (float32, eval mode)."""
    from ..models import build_model
    config, state = read_checkpoint(path)
    model = build_model(config)
    model.load_state_dict(state)
    model.eval()
    return model


__all__ = ["load_model", "read_checkpoint", "read_scratchllm", "check_state_dict"]
