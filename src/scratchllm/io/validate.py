"""Checks every reader runs on what a file says before it builds or reads anything from it.

- ``count`` / ``real`` / ``flag``: a config value of the right JSON type (``true`` is not a
  layer count, ``12.5`` is not a head count, ``Infinity`` is not an epsilon), in range;
- ``check_config_dict``: the same for a whole ``GPTConfig``/``LlamaConfig`` dict;
- ``check_layer_count``: ``n_layer`` against the layers the tensors actually hold, so that a
  config claiming 10**6 layers fails at once instead of listing 12 million expected shapes;
- ``inside_folder``: a file a folder names (an index's shard) must stay inside that folder.

>>> count({"n_layer": True}, "n_layer", "config.json")
Traceback (most recent call last):
...
scratchllm.errors.ScratchLLMError: config.json: 'n_layer' must be an integer, got true
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re

from ..errors import ScratchLLMError

MAX_CONTEXT = 1 << 20     # context lengths above this are refused (RoPE/position tables are built up front)
MAX_DIM = 1 << 31
_MISSING = object()
_LAYER = re.compile(r"(?:^|\.)(?:h|layers)\.(\d{1,9})\.")


def _shown(v) -> str:
    try:
        return json.dumps(v)[:60]
    except (TypeError, ValueError):
        return repr(v)[:60]


def count(cfg: dict, key: str, path: str, default=_MISSING, low: int = 1, high: int = MAX_DIM):
    """``cfg[key]`` as an int in ``[low, high]`` (bools and floats refused); ``default`` if absent/null."""
    v = cfg.get(key)
    if v is None:
        if default is _MISSING:
            raise ScratchLLMError(f"{path}: missing '{key}'")
        return default
    if type(v) is not int:
        raise ScratchLLMError(f"{path}: '{key}' must be an integer, got {_shown(v)}")
    if not low <= v <= high:
        raise ScratchLLMError(f"{path}: '{key}' is {v}, outside [{low}, {high}]")
    return v


def real(cfg: dict, key: str, path: str, default=_MISSING, positive: bool = True) -> float:
    """``cfg[key]`` as a finite float (ints allowed, bools and strings refused)."""
    v = cfg.get(key)
    if v is None:
        if default is _MISSING:
            raise ScratchLLMError(f"{path}: missing '{key}'")
        return default
    if type(v) not in (int, float) or not math.isfinite(v) or (positive and v <= 0):
        need = "a finite positive number" if positive else "a finite number"
        raise ScratchLLMError(f"{path}: '{key}' must be {need}, got {_shown(v)}")
    return float(v)


def flag(cfg: dict, key: str, path: str, default: bool) -> bool:
    v = cfg.get(key)
    if v is None:
        return default
    if type(v) is not bool:
        raise ScratchLLMError(f"{path}: '{key}' must be true or false, got {_shown(v)}")
    return v


def text(cfg: dict, key: str, path: str, default=None):
    v = cfg.get(key, default)
    if v is not None and not isinstance(v, str):
        raise ScratchLLMError(f"{path}: '{key}' must be a string, got {_shown(v)}")
    return v


def check_config_dict(d: dict, cls, path: str) -> None:
    """Every field of dataclass ``cls`` present in ``d`` has its declared JSON type."""
    for f in dataclasses.fields(cls):
        if f.name not in d:
            continue
        v, kind = d[f.name], f.type if isinstance(f.type, type) else None
        if v is None and f.default is None:
            continue
        if kind is int:
            count(d, f.name, path, high=MAX_CONTEXT if f.name in ("block_size", "max_seq_len") else MAX_DIM)
        elif kind is float:
            real(d, f.name, path, positive=False)
        elif kind is bool:
            flag(d, f.name, path, False)
        elif kind is str:
            text(d, f.name, path)
        elif kind is dict and not isinstance(v, dict):
            raise ScratchLLMError(f"{path}: '{f.name}' must be an object, got {_shown(v)}")


def layers_present(names) -> set:
    """Layer indices named by ``...h.<i>.`` / ``...layers.<i>.`` tensor names."""
    out = set()
    for name in names:
        m = _LAYER.search(name)
        if m:
            out.add(int(m.group(1)))
    return out


def check_layer_count(n_layers: int, names, path: str, key: str) -> None:
    """The config's layer count must be the layers the tensors hold: 0..n-1, no more, no fewer."""
    present = layers_present(names)
    if len(present) != n_layers or (present and (min(present) != 0 or max(present) != n_layers - 1)):
        have = f"layers {min(present)}..{max(present)} ({len(present)} distinct)" if present else "no layers"
        raise ScratchLLMError(f"{path}: '{key}' is {n_layers} but the weights hold {have}; the config "
                              f"disagrees with the weights")


def _roots(folder: str) -> list:
    """Real paths a folder's files may live under: the folder, and for a Hugging Face cache
    snapshot (``models--x/snapshots/<rev>/``, whose files are symlinks) that repo's ``blobs/``."""
    real_folder = os.path.realpath(folder)
    roots = [real_folder]
    parent = os.path.dirname(os.path.abspath(folder).rstrip(os.sep))
    if os.path.basename(parent) == "snapshots":
        roots.append(os.path.realpath(os.path.join(os.path.dirname(parent), "blobs")))
    return roots


def inside_folder(folder: str, name, source: str, what: str) -> str:
    """``folder/name`` if it is a relative path that stays (symlinks resolved) inside ``folder``."""
    if not isinstance(name, str) or not name:
        raise ScratchLLMError(f"{source}: {what} must be a file name, got {_shown(name)}")
    if os.path.isabs(name) or "\x00" in name or ".." in name.replace("\\", "/").split("/"):
        raise ScratchLLMError(f"{source}: {what} {name!r} points outside the model folder {folder}; refusing "
                              f"to read it (pass such a file explicitly)")
    path = os.path.join(folder, name)
    real = os.path.realpath(path)
    if not any(real == r or real.startswith(r.rstrip(os.sep) + os.sep) for r in _roots(folder)):
        raise ScratchLLMError(f"{source}: {what} {name!r} is a link to {real}, outside the model folder "
                              f"{folder}; refusing to read it (pass such a file explicitly)")
    return path
