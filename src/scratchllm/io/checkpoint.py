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
import struct

from ..backend import xp
from ..errors import ScratchLLMError
from ..atomic import atomic_path

_JSON_KEYS = "scratchllm.json_keys"
_MAX_HEADER = 100 * 1024 * 1024        # the limit safetensors itself enforces
_DTYPE_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "U64": 8, "I32": 4, "U32": 4,
                "I16": 2, "U16": 2, "I8": 1, "U8": 1, "BOOL": 1, "C64": 8, "F8_E4M3": 1, "F8_E5M2": 1}
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
    from safetensors.numpy import save_file

    tensors = _as_arrays(module_or_state_dict)
    encoded = _encode_metadata(metadata)
    path = os.fspath(path)
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=encoded)


# ---------------------------------------------------------------------------- load
def _read_header(path: str) -> dict:
    """Parse and check the header against the file size; ScratchLLMError naming the file if bad."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            prefix = f.read(8)
            if size < 8:
                raise ScratchLLMError(f"{path}: not a safetensors checkpoint (only {size} bytes; the "
                                      "8-byte header length is missing)")
            (n,) = struct.unpack("<Q", prefix)
            if n > size - 8:
                raise ScratchLLMError(f"{path}: truncated or not a safetensors checkpoint (header length "
                                      f"{n} goes beyond the end of the {size}-byte file)")
            if n > _MAX_HEADER or n < 2:
                raise ScratchLLMError(f"{path}: not a safetensors checkpoint (implausible header length {n})")
            raw = f.read(n)
    except FileNotFoundError:
        raise ScratchLLMError(f"{path}: checkpoint file not found") from None
    except IsADirectoryError:
        raise ScratchLLMError(f"{path}: is a folder, not a safetensors checkpoint file") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ScratchLLMError(f"{path}: not a safetensors checkpoint (the header is not JSON)") from None
    if not isinstance(header, dict):
        raise ScratchLLMError(f"{path}: not a safetensors checkpoint (the header is not a JSON object)")
    _check_entries(path, header, size - 8 - n)
    return header


def _check_entries(path: str, header: dict, data_size: int) -> None:
    end_max = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (start, end) = info["dtype"], info["shape"], info["data_offsets"]
            nbytes = _DTYPE_SIZES[dtype] * int(xp.prod(shape, dtype=xp.int64))
        except (KeyError, TypeError, ValueError):
            raise ScratchLLMError(f"{path}: corrupt safetensors header: bad entry for tensor '{name}'") from None
        if end > data_size:
            raise ScratchLLMError(f"{path}: truncated checkpoint: tensor '{name}' needs bytes up to {end} "
                                  f"but the file holds only {data_size} bytes of data")
        if end - start != nbytes or start < 0:
            raise ScratchLLMError(f"{path}: corrupt safetensors header: tensor '{name}' ({dtype}, shape "
                                  f"{shape}) has offsets {start}..{end}, expected {nbytes} bytes")
        end_max = max(end_max, end)
    if end_max != data_size:
        raise ScratchLLMError(f"{path}: corrupt checkpoint: the header describes {end_max} bytes of data "
                              f"but the file holds {data_size}")


def load(path) -> dict:
    """Read a safetensors file into ``{name: ndarray}`` (dtypes as stored)."""
    from safetensors.numpy import load_file

    path = os.fspath(path)
    _read_header(path)
    try:
        return dict(load_file(path))
    except Exception as e:  # the safetensors library's own checks (overlaps, dtypes, ...)
        raise ScratchLLMError(f"{path}: corrupt safetensors checkpoint: {e}") from None


def load_metadata(path) -> dict:
    """The metadata dict given to ``save()`` (values decoded from JSON); ``{}`` if none."""
    path = os.fspath(path)
    stored = _read_header(path).get("__metadata__") or {}
    if not isinstance(stored, dict):
        raise ScratchLLMError(f"{path}: corrupt safetensors header: __metadata__ is not an object")
    try:
        json_keys = set(json.loads(stored.get(_JSON_KEYS, "[]")))
        return {k: json.loads(v) if k in json_keys else v for k, v in stored.items() if k != _JSON_KEYS}
    except (TypeError, ValueError):
        raise ScratchLLMError(f"{path}: corrupt checkpoint metadata (a value is not valid JSON)") from None
