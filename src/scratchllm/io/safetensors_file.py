"""Read a ``.safetensors`` file with checks that name the file at fault.

The format: 8 bytes little-endian header length ``N``, then ``N`` bytes of JSON
(``{"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}, ...,
"__metadata__": {...}}``), then the raw little-endian tensor bytes. We parse it
ourselves (it is that small) so that bfloat16 works on NumPy and every way a file
can be broken (truncated, a header length beyond the file, offsets outside the
data) gives one clear ``ScratchLLMError``.

>>> tensors, meta = read_safetensors("model.safetensors")      # doctest: +SKIP
>>> tensors["transformer.wte.weight"].dtype
dtype('float32')
"""
import json
import os
import struct

from ..backend import xp
from ..errors import ScratchLLMError

_DTYPES = {"F64": xp.float64, "F32": xp.float32, "F16": xp.float16, "BF16": xp.uint16,
           "I64": xp.int64, "I32": xp.int32, "I16": xp.int16, "I8": xp.int8, "U8": xp.uint8,
           "BOOL": xp.bool_}


def bf16_to_f32(raw):
    """bfloat16 bits (uint16 array) -> float32: the bf16 bits are the top half of a float32."""
    return (raw.astype(xp.uint32) << 16).view(xp.float32)


def read_header(path: str) -> tuple:
    """-> (header dict, byte offset where the data starts, file size)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ScratchLLMError(f"{path}: not a safetensors file (only {size} bytes, the header length needs 8)")
        (n,) = struct.unpack("<Q", head)
        if 8 + n > size:
            raise ScratchLLMError(f"{path}: safetensors header length {n} reaches beyond the end of the file "
                                  f"({size} bytes); the file is truncated or not safetensors")
        try:
            header = json.loads(f.read(n).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ScratchLLMError(f"{path}: safetensors header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise ScratchLLMError(f"{path}: safetensors header must be a JSON object")
    return header, 8 + n, size


def read_safetensors(path: str, float32: bool = True) -> tuple:
    """-> ({name: array}, metadata dict). Floats become float32 unless ``float32=False``."""
    header, start, size = read_header(path)
    meta = header.pop("__metadata__", None) or {}
    data_len = size - start
    tensors = {}
    mm = xp.memmap(path, dtype=xp.uint8, mode="r", offset=start, shape=(data_len,)) if data_len else \
        xp.zeros(0, dtype=xp.uint8)
    for name, info in header.items():
        try:
            dtype = _DTYPES[info["dtype"]]
            shape = tuple(int(s) for s in info["shape"])
            lo, hi = (int(o) for o in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise ScratchLLMError(f"{path}: tensor '{name}' has a malformed header entry {info!r} "
                                  f"(needs dtype of {sorted(_DTYPES)}, shape, data_offsets)") from None
        if hi > data_len or lo > hi:
            raise ScratchLLMError(f"{path}: tensor '{name}' needs bytes {lo}..{hi} of the data section but the file "
                                  f"holds only {data_len}; the file is truncated")
        count = 1
        for s in shape:
            count *= s
        if (hi - lo) != count * xp.dtype(dtype).itemsize:
            raise ScratchLLMError(f"{path}: tensor '{name}' of shape {list(shape)} and dtype {info['dtype']} "
                                  f"needs {count * xp.dtype(dtype).itemsize} bytes, its offsets give {hi - lo}")
        arr = xp.frombuffer(mm[lo:hi], dtype=xp.dtype(dtype).newbyteorder("<")).reshape(shape)
        if info["dtype"] == "BF16":
            arr = bf16_to_f32(arr) if float32 else arr
        elif float32 and arr.dtype.kind == "f":
            arr = arr.astype(xp.float32)
        else:
            arr = arr.copy()
        tensors[name] = arr
    return tensors, meta
