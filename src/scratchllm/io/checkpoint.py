"""Checkpoints: named arrays in a safetensors file, plus JSON metadata in its header. No pickle.

A safetensors file is ``8-byte little-endian header length N | N bytes of JSON | raw tensor
bytes``; the JSON maps each name to ``{"dtype", "shape", "data_offsets"}`` and may hold a
``"__metadata__"`` dict of strings. Metadata strings are stored as they are (so ``{"format":
"pt"}`` stays readable by other tools); other values are stored as JSON and listed under the
reserved key ``scratchllm.json_keys`` so ``load_metadata`` turns them back into Python values.

>>> sl.save(model, "ckpt.safetensors", metadata={"config": {"n_layer": 2}, "step": 100})
>>> state = sl.load("ckpt.safetensors")            # {"lm_head.weight": array, ...}
>>> sl.io.checkpoint.load_metadata("ckpt.safetensors")["step"]
100

Writes are atomic (temporary file + rename): a crash mid-save leaves the old file intact.
Bad files raise one ``ScratchLLMError`` naming the file and what is wrong with it.
"""
from __future__ import annotations

import json
import os

from ..backend import xp
from ..errors import ScratchLLMError
from ..jsonio import loads_json
from .safetensors_file import read_header, read_safetensors, write_safetensors

_JSON_KEYS = "scratchllm.json_keys"
_SAVABLE = {"float64", "float32", "float16", "int64", "uint64", "int32", "uint32", "int16", "uint16",
            "int8", "uint8", "bool", "complex64"}


# ---------------------------------------------------------------------------- save
def _as_arrays(obj) -> dict:
    """Module or dict of Tensors/arrays -> ``{name: contiguous ndarray}`` (checked)."""
    if hasattr(obj, "state_dict") and callable(obj.state_dict):
        obj = obj.state_dict()
    if not isinstance(obj, dict):
        raise ScratchLLMError(f"save() takes a Module or a dict of arrays, got {type(obj).__name__}")
    out = {}
    for name, value in obj.items():
        if not isinstance(name, str):
            raise ScratchLLMError(f"save(): tensor names must be strings, got {name!r}")
        if name == "__metadata__":
            raise ScratchLLMError("save(): '__metadata__' is reserved by safetensors; pass metadata=")
        arr = value if isinstance(value, xp.ndarray) else getattr(value, "data", None)
        if value.__class__.__module__.startswith("cupy") or arr.__class__.__module__.startswith("cupy"):
            arr = (value if value.__class__.__module__.startswith("cupy") else arr).get()  # GPU -> host bytes
        if not isinstance(arr, xp.ndarray):
            raise ScratchLLMError(f"save(): '{name}' is a {type(value).__name__}, not an array or Tensor")
        if arr.dtype.name not in _SAVABLE:
            raise ScratchLLMError(f"save(): '{name}' has dtype {arr.dtype}, which safetensors cannot store")
        # safetensors reads raw memory, so C order (ascontiguousarray would turn 0-d into 1-d)
        out[name] = arr if arr.flags.c_contiguous else arr.copy(order="C")
    return out


def _encode_metadata(metadata) -> dict | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise ScratchLLMError(f"save(): metadata must be a dict, got {type(metadata).__name__}")
    encoded, json_keys = {}, []
    for key, value in metadata.items():
        if not isinstance(key, str) or key == _JSON_KEYS:
            raise ScratchLLMError(f"save(): metadata key {key!r} is not allowed (string keys only, "
                                  f"'{_JSON_KEYS}' is reserved)")
        if isinstance(value, str):
            encoded[key] = value
            continue
        try:
            encoded[key] = json.dumps(value, sort_keys=True)
        except (TypeError, ValueError) as e:
            raise ScratchLLMError(f"save(): metadata '{key}' is not JSON-serialisable: {e}") from None
        json_keys.append(key)
    if json_keys:
        encoded[_JSON_KEYS] = json.dumps(json_keys)
    return encoded


def save(module_or_state_dict, path, metadata: dict | None = None) -> None:
    """Write a Module's ``state_dict()`` (or a dict of arrays/Tensors) to a safetensors file.

    ``metadata``: a dict of JSON-serialisable values (config, step, ...) kept in the header.
    """
    tensors = _as_arrays(module_or_state_dict)
    encoded = _encode_metadata(metadata)
    write_safetensors(os.fspath(path), tensors, metadata=encoded)


# ---------------------------------------------------------------------------- load
def load(path) -> dict:
    """Read a safetensors file into ``{name: ndarray}`` (dtypes as stored; BF16 as float32)."""
    return read_safetensors(os.fspath(path), float32=False)[0]


def load_metadata(path) -> dict:
    """The metadata dict given to ``save()`` (values decoded from JSON); ``{}`` if none."""
    path = os.fspath(path)
    stored = read_header(path)[1]
    json_keys = loads_json(stored.get(_JSON_KEYS, "[]"), path, f"metadata '{_JSON_KEYS}'", expect=list)
    out = {}
    for k, v in stored.items():
        if k != _JSON_KEYS:
            out[k] = loads_json(v, path, f"metadata '{k}'", expect=None) if k in json_keys else v
    return out
