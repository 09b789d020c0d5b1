"""Builders for the hostile-file tests: hand-assembled pickles and .pth zips, safetensors files from
a header dict, llama2.c model/tokenizer files, SentencePiece protobufs, and the bound check that
every fuzz property uses. (A uniquely named module, imported by absolute name: tests/ folders
are not packages here.)"""
from __future__ import annotations

import json
import os
import pickle
import struct
import time
import tracemalloc
import zipfile

import numpy as np

from scratchllm.errors import ScratchLLMError

# ------------------------------------------------------------------ the bound every reader must keep
MEMORY_FACTOR = 10          # peak traced memory <= 10 x the input's size + MEMORY_EXTRA
MEMORY_EXTRA = 2 << 20
SECONDS = 5.0               # per call; loose (the machine is shared), the issue asks ~1 s per MB


def input_size(path) -> int:
    path = os.fspath(path)
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(path, n)) for n in os.listdir(path)
                   if os.path.isfile(os.path.join(path, n)))
    return os.path.getsize(path)


def bounded(fn, path, extra: int = MEMORY_EXTRA):
    """Run ``fn()``: -> (result, None) or (None, the ScratchLLMError). Any other exception
    propagates (the test fails); so does more memory or time than the bound allows."""
    size = input_size(path)
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        return fn(), None
    except ScratchLLMError as e:
        assert str(e).strip(), "an empty error message"
        return None, e
    finally:
        seconds = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak <= MEMORY_FACTOR * size + extra, f"peak {peak} bytes for a {size}-byte input"
        assert seconds <= SECONDS + size / 1e6, f"{seconds:.1f} s for a {size}-byte input"


# ------------------------------------------------------------------ pickle assembly (protocol 2)
class Raw(bytes):
    """Opcodes inserted as they are."""


def op(v) -> bytes:
    """A Python value as pickle opcodes (ints, floats, bools, None, str, tuples/lists, Raw)."""
    if isinstance(v, Raw):
        return bytes(v)
    if v is None:
        return b"N"
    if v is True or v is False:
        return b"\x88" if v else b"\x89"
    if isinstance(v, int):
        if 0 <= v < 256:
            return b"K" + bytes([v])
        if -2**31 <= v < 2**31:
            return b"J" + struct.pack("<i", v)
        enc = pickle.encode_long(v)
        return b"\x8a" + bytes([len(enc)]) + enc                      # LONG1
    if isinstance(v, float):
        return b"G" + struct.pack(">d", v)
    if isinstance(v, str):
        b = v.encode("utf-8")
        return b"X" + struct.pack("<I", len(b)) + b                  # BINUNICODE
    if isinstance(v, (tuple, list)):
        return b"(" + b"".join(op(x) for x in v) + b"t"
    raise TypeError(type(v))


def glob(module: str, name: str) -> Raw:
    return Raw(b"c" + f"{module}\n{name}\n".encode())


def storage_pid(key, kind="FloatStorage", numel=0) -> Raw:
    return Raw(b"(" + op("storage") + glob("torch", kind) + op(key) + op("cpu") + op(numel) + b"tQ")


def tensor(key="0", kind="FloatStorage", numel=0, offset=0, size=(), stride=()) -> Raw:
    """``_rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())``."""
    hooks = glob("collections", "OrderedDict") + b")R"
    return Raw(glob("torch._utils", "_rebuild_tensor_v2") + b"(" + storage_pid(key, kind, numel) + op(offset)
               + op(tuple(size) if isinstance(size, list) else size)
               + op(tuple(stride) if isinstance(stride, list) else stride)
               + b"\x89" + hooks + b"tR")


def state_pickle(entries: dict) -> bytes:
    body = b"".join(op(k) + op(v) for k, v in entries.items())
    return b"\x80\x02}(" + body + b"u."


def write_pth(path, pkl: bytes, storages: dict, compress=zipfile.ZIP_STORED, byteorder=b"little") -> str:
    """A torch.save-style zip: archive/data.pkl, archive/byteorder, archive/data/<key>."""
    with zipfile.ZipFile(path, "w", compression=compress) as z:
        z.writestr("archive/data.pkl", pkl)
        if byteorder is not None:
            z.writestr("archive/byteorder", byteorder)
        z.writestr("archive/version", b"3\n")
        for key, raw in storages.items():
            z.writestr(f"archive/data/{key}", raw)
    return os.fspath(path)


def simple_pth(path, offset=0, size=(2, 3), stride=(3, 1), numel=6, data=None, kind="FloatStorage") -> str:
    data = np.arange(numel if isinstance(numel, int) and 0 <= numel < 1 << 20 else 6, dtype=np.float32) \
        if data is None else data
    pkl = state_pickle({"w": tensor("0", kind, numel, offset, size, stride)})
    return write_pth(path, pkl, {"0": data.tobytes()})


# ------------------------------------------------------------------ safetensors from a header dict
def write_safetensors_raw(path, header, data: bytes = b"", header_bytes: bytes | None = None) -> str:
    raw = header_bytes if header_bytes is not None else json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw + data)
    return os.fspath(path)


# ------------------------------------------------------------------ llama2.c files
def llama2c_model_bytes(dim=8, hidden=16, n_layers=2, n_heads=2, n_kv=2, vocab=16, seq=4, shared=True,
                        seed=0) -> bytes:
    """A legacy (v0) llama2.c model: 7 int32 then float32 weights (see io/llama2c.py)."""
    hd = dim // n_heads
    count = (vocab * dim + n_layers * dim + n_layers * dim * (n_heads * hd) + 2 * n_layers * dim * (n_kv * hd)
             + n_layers * (n_heads * hd) * dim + n_layers * dim + 3 * n_layers * hidden * dim + dim
             + seq * hd + (0 if shared else vocab * dim))
    w = np.random.default_rng(seed).standard_normal(count).astype("<f4") * 0.1
    head = struct.pack("<7i", dim, hidden, n_layers, n_heads, n_kv, vocab if shared else -vocab, seq)
    return head + w.tobytes()


def llama2c_tokenizer_bytes(extra=("▁a", "▁b", "ab", "▁ab", "ba", "aa"), max_len=16) -> bytes:
    """A tokenizer.bin: <unk>, <s>, </s>, the 256 byte pieces, then ``extra`` (spaces as ' ')."""
    pieces = ["<unk>", "\n<s>\n", "\n</s>\n"] + [f"<0x{b:02X}>" for b in range(256)]
    pieces += [p.replace("▁", " ") for p in extra] + list("abcdefgh")
    out = [struct.pack("<i", max_len)]
    for k, p in enumerate(pieces):
        b = p.encode("utf-8")
        out.append(struct.pack("<fi", -float(k), len(b)) + b)
    return b"".join(out)


# ------------------------------------------------------------------ SentencePiece protobuf
def _varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, wire: int, payload) -> bytes:
    key = _varint(number << 3 | wire)
    if wire == 0:
        return key + _varint(payload)
    if wire == 5:
        return key + struct.pack("<f", payload)
    return key + _varint(len(payload)) + payload


def sp_model_bytes(pieces=None, unk_id=0, bos_id=1, eos_id=2, byte_fallback=True) -> bytes:
    """A small SentencePiece BPE ModelProto: pieces (text, score, type), trainer and normalizer specs."""
    if pieces is None:
        pieces = [("<unk>", 0.0, 2), ("<s>", 0.0, 3), ("</s>", 0.0, 3)]
        pieces += [(f"<0x{b:02X}>", 0.0, 6) for b in range(256)]
        normal = ["▁a", "▁b", "ab", "▁ab", "ba", "aa", "▁", "a", "b", "c"]
        pieces += [(p, -float(k), 1) for k, p in enumerate(normal)]
    body = b""
    for text, score, kind in pieces:
        piece = _field(1, 2, text.encode("utf-8")) + _field(2, 5, score) + _field(3, 0, kind)
        body += _field(1, 2, piece)
    trainer = (_field(3, 0, 2) + _field(35, 0, int(byte_fallback)) + _field(40, 0, unk_id) + _field(41, 0, bos_id)
               + _field(42, 0, eos_id))
    normalizer = _field(1, 2, b"identity") + _field(3, 0, 1) + _field(4, 0, 0) + _field(5, 0, 1)
    return body + _field(2, 2, trainer) + _field(3, 2, normalizer)
