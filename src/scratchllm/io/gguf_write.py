"""Writing the GGUF container (version 3): the inverse of ``gguf_read``.

Metadata values carry their GGUF type explicitly, because llama.cpp checks it (a context
length is a uint32, an epsilon a float32, token scores an array of float32, ...):

>>> meta = [("general.architecture", STRING, "llama"), ("llama.block_count", UINT32, 2),
...         ("tokenizer.ggml.scores", (ARRAY, FLOAT32), [0.0, -1.0])]
>>> write_gguf("x.gguf", meta, [("output_norm.weight", (64,), gguf_quant.F32, raw_bytes)])  # doctest: +SKIP

Tensors are given in NumPy shape order and stored with their dims reversed (GGML's ne[0]
is the fastest dimension); each tensor's data starts at a multiple of the alignment (32).
The file is written to a temporary file and renamed into place.
"""
import os
import struct

from ..atomic import atomic_write
from ..backend import xp
from ..errors import ScratchLLMError

UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = range(13)
_CODES = {UINT8: "B", INT8: "b", UINT16: "H", INT16: "h", UINT32: "I", INT32: "i", FLOAT32: "f", BOOL: "?",
          UINT64: "Q", INT64: "q", FLOAT64: "d"}
ALIGNMENT = 32
VERSION = 3


def _string(s: str) -> bytes:
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def _value(vtype, value) -> bytes:
    """The type tag and the encoded value; ``vtype`` is a type, or (ARRAY, element type)."""
    if isinstance(vtype, tuple):
        _, etype = vtype
        head = struct.pack("<IIQ", ARRAY, etype, len(value))
        if etype == STRING:
            return head + b"".join(_string(v) for v in value)
        dtype = xp.dtype("<" + {UINT8: "u1", INT8: "i1", UINT16: "u2", INT16: "i2", UINT32: "u4", INT32: "i4",
                                FLOAT32: "f4", BOOL: "u1", UINT64: "u8", INT64: "i8", FLOAT64: "f8"}[etype])
        return head + xp.asarray(value).astype(dtype).tobytes()
    if vtype == STRING:
        return struct.pack("<I", STRING) + _string(value)
    return struct.pack("<I", vtype) + struct.pack("<" + _CODES[vtype], value)


def write_gguf(path, metadata: list, tensors: list, alignment: int = ALIGNMENT) -> None:
    """``metadata``: [(key, type, value)]; ``tensors``: [(name, shape, ggml type, raw uint8 array)]."""
    path = os.fspath(path)
    keys = [k for k, _, _ in metadata]
    if len(set(keys)) != len(keys):
        raise ScratchLLMError(f"{path}: duplicate metadata keys")
    if alignment != ALIGNMENT:
        metadata = [m for m in metadata if m[0] != "general.alignment"] + \
                   [("general.alignment", UINT32, alignment)]
    head = [b"GGUF", struct.pack("<IQQ", VERSION, len(tensors), len(metadata))]
    for key, vtype, value in metadata:
        head.append(_string(key) + _value(vtype, value))
    offset = 0
    offsets = []
    for name, shape, ttype, raw in tensors:
        dims = tuple(int(d) for d in reversed(shape))
        head.append(_string(name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
                    + struct.pack("<IQ", ttype, offset))
        offsets.append(offset)
        offset += -(-raw.size // alignment) * alignment
    header = b"".join(head)
    header += b"\0" * (-len(header) % alignment)
    with atomic_write(path) as f:
        f.write(header)
        for (name, shape, ttype, raw), off in zip(tensors, offsets):
            f.write(memoryview(xp.ascontiguousarray(raw, dtype=xp.uint8)))
            f.write(b"\0" * (-raw.size % alignment))
