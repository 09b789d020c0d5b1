"""The one safetensors reader and writer: every header field checked before a byte is read.

The format: 8 bytes little-endian header length ``N``, then ``N`` bytes of JSON
(``{"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}, ...,
"__metadata__": {"key": "text", ...}}``), then the raw little-endian tensor bytes.
We parse it ourselves (it is that small) so that bfloat16 works on NumPy and every way
a file can be broken gives one ``ScratchLLMError`` naming the file, the tensor and the field.

What ``read_header`` accepts (the safetensors library's own rules, stated):
- the header: at most 100 MiB of UTF-8 JSON, an object, nested at most 64 levels, no
  ``NaN``/``Infinity``; ``__metadata__`` absent or an object of strings;
- each tensor: a known ``dtype``, a ``shape`` of non-negative ints (booleans, floats and
  strings such as ``2.9`` or ``"22"`` are refused), ``data_offsets`` two non-negative ints
  ``[begin, end]`` with ``end - begin`` exactly the bytes the dtype and shape need;
- together the tensors tile the data section: sorted by offset each begins where the previous
  one ended (no overlap, no gap) and the last ends at the end of the file.
Only then are the tensors read, each with one bounded ``readinto`` (no memory map, so a file
truncated while we read it gives an error, not a SIGBUS).

>>> tensors, meta = read_safetensors("model.safetensors")      # doctest: +SKIP
>>> tensors["transformer.wte.weight"].dtype
dtype('float32')
>>> write_safetensors("out.safetensors", tensors, {"format": "pt"})   # doctest: +SKIP
"""
from __future__ import annotations

import json
import os
import struct

from ..backend import xp
from ..errors import ScratchLLMError, reading
from ..jsonio import loads_json

MAX_HEADER = 100 * 1024 * 1024        # the limit the safetensors library enforces
MAX_DIMS = 64                         # NumPy's limit
DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "uint16", "I64": "int64",
          "U64": "uint64", "I32": "int32", "U32": "uint32", "I16": "int16", "U16": "uint16",
          "I8": "int8", "U8": "uint8", "BOOL": "uint8", "C64": "complex64"}
_CODES = {v: k for k, v in DTYPES.items() if k not in ("BF16", "BOOL")} | {"bool": "BOOL"}


def bf16_to_f32(raw):
    """bfloat16 bits (uint16 array) -> float32: the bf16 bits are the top half of a float32."""
    return (raw.astype(xp.uint32) << 16).view(xp.float32)


def _is_count(v) -> bool:
    return type(v) is int and v >= 0


# ---------------------------------------------------------------------------- header
def read_header(path) -> tuple:
    """-> ({name: (dtype code, shape, begin, end)}, metadata {str: str}, data start, file size).

    Offsets are relative to the data section, as in the file. Raises ScratchLLMError.
    """
    path = os.fspath(path)
    with reading(path, "safetensors file"), open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        prefix = f.read(8)
        if len(prefix) < 8:
            raise ScratchLLMError(f"{path}: not a safetensors file (only {size} bytes; the 8-byte "
                                  f"header length is missing)")
        (n,) = struct.unpack("<Q", prefix)
        if n > size - 8:
            raise ScratchLLMError(f"{path}: safetensors header length {n} goes beyond the end of the file "
                                  f"({size} bytes); the file is truncated or not safetensors")
        if n > MAX_HEADER or n < 2:
            raise ScratchLLMError(f"{path}: not a safetensors file (implausible header length {n})")
        raw = f.read(n)
    if len(raw) != n:
        raise ScratchLLMError(f"{path}: truncated while reading the {n}-byte safetensors header")
    try:
        header = loads_json(raw, path, "safetensors header")
    except ScratchLLMError as e:
        raise ScratchLLMError(f"{e} (the header is not JSON)") from None
    if not isinstance(header, dict):
        raise ScratchLLMError(f"{path}: not a safetensors file (the header is not a JSON object)")
    meta = header.pop("__metadata__", None)
    if meta is None:
        meta = {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise ScratchLLMError(f"{path}: safetensors header field '__metadata__' must be an object of strings, "
                              f"got {str(meta)[:80]}")
    entries = {name: _entry(path, name, info) for name, info in header.items()}
    _check_tiling(path, entries, size - 8 - n)
    return entries, meta, 8 + n, size


def _entry(path: str, name: str, info) -> tuple:
    """One header entry -> (dtype code, shape, begin, end), every field checked."""
    where = f"{path}: bad entry for tensor '{name}'"
    if not isinstance(info, dict):
        raise ScratchLLMError(f"{where}: expected an object with dtype, shape, data_offsets, got {str(info)[:60]}")
    missing = [k for k in ("dtype", "shape", "data_offsets") if k not in info]
    if missing:
        raise ScratchLLMError(f"{where}: field {missing[0]!r} is missing")
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise ScratchLLMError(f"{where}: field 'dtype' is {str(dtype)[:30]!r}, not one of {sorted(DTYPES)}")
    if not isinstance(shape, list) or len(shape) > MAX_DIMS or not all(_is_count(s) for s in shape):
        raise ScratchLLMError(f"{where}: field 'shape' must be a list of at most {MAX_DIMS} non-negative "
                              f"integers, got {str(shape)[:60]}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)):
        raise ScratchLLMError(f"{where}: field 'data_offsets' must be two non-negative integers "
                              f"[begin, end], got {str(offsets)[:60]}")
    begin, end = offsets
    count = 1
    for s in shape:
        count *= s
    nbytes = count * xp.dtype(DTYPES[dtype]).itemsize
    if end - begin != nbytes:
        raise ScratchLLMError(f"{path}: corrupt safetensors header: tensor '{name}' ({dtype}, shape {shape}) "
                              f"has data_offsets {begin}..{end}, expected {nbytes} bytes")
    return dtype, tuple(shape), begin, end


def _check_tiling(path: str, entries: dict, data_size: int) -> None:
    """Sorted by offset, the tensors must cover the data section exactly (no overlap, no gap)."""
    pos, prev = 0, None
    for name, (_, _, begin, end) in sorted(entries.items(), key=lambda kv: (kv[1][2], kv[1][3])):
        if end > data_size:
            raise ScratchLLMError(f"{path}: truncated checkpoint: tensor '{name}' needs bytes up to {end} "
                                  f"of the data section but the file holds only {data_size}")
        if begin != pos:
            how = f"overlaps tensor '{prev}' (which ends at {pos})" if begin < pos else \
                f"leaves a gap after byte {pos}"
            raise ScratchLLMError(f"{path}: corrupt safetensors header: tensor '{name}' at data_offsets "
                                  f"{begin}..{end} {how}")
        pos, prev = end, name
    if pos != data_size:
        raise ScratchLLMError(f"{path}: corrupt checkpoint: the header describes {pos} bytes of data "
                              f"but the file holds {data_size}")


# ---------------------------------------------------------------------------- read
def read_safetensors(path, float32: bool = True) -> tuple:
    """-> ({name: array}, metadata dict of strings).

    ``float32=True`` turns every floating tensor (F64/F16/BF16) into float32; otherwise dtypes
    stay as stored, except BF16 (NumPy has none), which becomes float32 either way.
    """
    path = os.fspath(path)
    entries, meta, start, size = read_header(path)
    tensors = {}
    try:
        with open(path, "rb") as f:
            for name, (dtype, shape, begin, end) in entries.items():
                tensors[name] = _read_tensor(f, path, name, dtype, shape, start + begin, end - begin, float32)
    except OSError as e:
        raise ScratchLLMError(f"{path}: cannot read the safetensors file ({e.strerror or e})") from None
    return tensors, meta


def _read_tensor(f, path: str, name: str, dtype: str, shape: tuple, at: int, nbytes: int, float32: bool):
    arr = xp.empty(shape, dtype=xp.dtype(DTYPES[dtype]).newbyteorder("<"))
    if nbytes:
        f.seek(at)
        got = f.readinto(arr.reshape(-1).view(xp.uint8))
        if got != nbytes:
            raise ScratchLLMError(f"{path}: truncated checkpoint: tensor '{name}' needs {nbytes} bytes at {at}, "
                                  f"the file gave {got}")
    if arr.dtype.byteorder == ">":  # a big-endian host: NumPy keeps the little-endian view working
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if dtype == "BF16":
        return bf16_to_f32(arr)
    if dtype == "BOOL":
        return arr.astype(xp.bool_)        # any non-zero byte is True (and 0-d stays an array)
    if float32 and arr.dtype.kind == "f" and arr.dtype != xp.float32:
        return arr.astype(xp.float32)
    return arr


# ---------------------------------------------------------------------------- write
def write_safetensors(path, tensors: dict, metadata: dict | None = None) -> None:
    """Write ``{name: ndarray}`` (+ ``metadata`` of strings) atomically; the library reads it back.

    Tensors are laid out widest dtype first, then by name, after a header padded with spaces
    to a multiple of 8 bytes, so every tensor starts aligned to its element size.
    """
    from ..atomic import atomic_write

    path = os.fspath(path)
    arrays = {}
    for name, arr in tensors.items():
        if not isinstance(name, str) or name == "__metadata__":
            raise ScratchLLMError(f"{path}: tensor name {name!r} is not allowed (strings other than '__metadata__')")
        if arr.__class__.__module__.startswith("cupy"):   # a GPU array: files hold host bytes (device-independent)
            arr = arr.get()
        if not isinstance(arr, xp.ndarray) or arr.dtype.newbyteorder("=").name not in _CODES:
            raise ScratchLLMError(f"{path}: tensor '{name}' has dtype {getattr(arr, 'dtype', type(arr).__name__)}, "
                                  f"which safetensors cannot store")
        arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
        arrays[name] = arr if arr.flags.c_contiguous else arr.copy(order="C")
    if metadata is not None and not (isinstance(metadata, dict) and
                                     all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())):
        raise ScratchLLMError(f"{path}: safetensors metadata must map strings to strings")
    order = sorted(arrays, key=lambda k: (-arrays[k].dtype.itemsize, k))
    header, pos = {}, 0
    if metadata:
        header["__metadata__"] = dict(metadata)
    for name in order:
        arr = arrays[name]
        header[name] = {"dtype": _CODES[arr.dtype.newbyteorder("=").name], "shape": list(arr.shape),
                        "data_offsets": [pos, pos + arr.nbytes]}
        pos += arr.nbytes
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    with atomic_write(path) as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        _write_data(f, [arrays[name] for name in order])


def _write_data(f, arrays: list) -> None:
    """The raw bytes of each array, in order, without copying them."""
    for arr in arrays:
        if arr.nbytes:
            f.write(arr.reshape(-1).view(xp.uint8))
