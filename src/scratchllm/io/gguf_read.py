"""The GGUF container (llama.cpp, ollama): header, metadata, tensor infos, aligned tensor data.

Layout (little-endian)::

    "GGUF" | uint32 version (2 or 3) | uint64 n_tensors | uint64 n_kv
    n_kv times:       string key | uint32 value type | value
    n_tensors times:  string name | uint32 n_dims | uint64 dims[n_dims] | uint32 ggml type |
                      uint64 offset (from the start of the data section)
    zero padding to ``general.alignment`` (default 32), then the data section

A string is ``uint64 length | UTF-8 bytes``; an array is ``uint32 element type | uint64 count |
elements``. Value types: 0 u8, 1 i8, 2 u16, 3 i16, 4 u32, 5 i32, 6 f32, 7 bool, 8 string,
9 array, 10 u64, 11 i64, 12 f64. ``dims[0]`` varies fastest: a PyTorch (out, in) matrix is
stored with dims ``[in, out]``, so the NumPy shape is the dims reversed.

Every count, length and offset is checked against the file's size before anything is
allocated, and every problem raises one ``ScratchLLMError`` naming the file and the field.

>>> g = GGUFFile("model.gguf")                        # doctest: +SKIP
>>> g.metadata["general.architecture"], g.tensors["token_embd.weight"].shape   # doctest: +SKIP
('llama', (32000, 4096))
"""
import mmap
import os
import struct
from dataclasses import dataclass

from ..backend import xp
from ..errors import ScratchLLMError
from . import gguf_quant as Q

MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4
MAX_NESTING = 8           # arrays of arrays: llama.cpp itself reads none; a bound keeps recursion shallow
# value type -> (struct code, size); 7 is bool, 8 string, 9 array
_SCALARS = {0: ("B", 1), 1: ("b", 1), 2: ("H", 2), 3: ("h", 2), 4: ("I", 4), 5: ("i", 4), 6: ("f", 4),
            7: ("?", 1), 10: ("Q", 8), 11: ("q", 8), 12: ("d", 8)}
_NUMPY = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "<u1", 10: "<u8",
          11: "<i8", 12: "<f8"}
STRING, ARRAY = 8, 9


@dataclass
class TensorInfo:
    name: str
    shape: tuple          # NumPy order (dims reversed): (out, in) for a matrix
    type: int             # GGML type (gguf_quant.F32, Q8_0, ...)
    offset: int           # absolute byte offset in the file
    nbytes: int

    @property
    def n_values(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


class _Cursor:
    """Sequential reads from a byte buffer; every read checks the bytes are there."""

    def __init__(self, buf, path: str):
        self.buf, self.path, self.pos, self.size = buf, path, 0, len(buf)

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise ScratchLLMError(f"{self.path}: GGUF file ends inside {what} (needs {n} bytes at offset "
                                  f"{self.pos}, the file has {self.size}); truncated or not a GGUF file")

    def scalar(self, vtype: int, what: str):
        code, size = _SCALARS[vtype]
        self.need(size, what)
        (v,) = struct.unpack_from("<" + code, self.buf, self.pos)
        self.pos += size
        return v

    def u32(self, what):
        return self.scalar(4, what)

    def u64(self, what):
        return self.scalar(10, what)

    def string(self, what: str) -> str:
        n = self.u64(f"the length of {what}")
        self.need(n, what)
        raw = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ScratchLLMError(f"{self.path}: {what} is not UTF-8 (offset {self.pos - n})") from None

    def strings(self, count: int, what: str) -> list:
        """``count`` strings in a row (a vocabulary: 10^5 of them), in one tight loop."""
        buf, pos, size, out = self.buf, self.pos, self.size, []
        unpack, append = struct.Struct("<Q").unpack_from, out.append
        try:
            for i in range(count):
                if pos + 8 > size:
                    raise IndexError(i)
                (n,) = unpack(buf, pos)
                pos += 8
                if pos + n > size:
                    raise IndexError(i)
                append(buf[pos:pos + n].decode("utf-8"))
                pos += n
        except IndexError as e:
            self.pos = pos
            self.need(size + 1, f"{what}[{e.args[0]}]")
        except UnicodeDecodeError:
            raise ScratchLLMError(f"{self.path}: {what}[{len(out)}] is not UTF-8 (offset {pos})") from None
        self.pos = pos
        return out

    def value(self, vtype: int, what: str, depth: int = 0):
        if vtype in _SCALARS:
            return self.scalar(vtype, what)
        if vtype == STRING:
            return self.string(what)
        if vtype != ARRAY:
            raise ScratchLLMError(f"{self.path}: {what} has unknown value type {vtype} (0-12 are defined)")
        etype = self.u32(f"the element type of {what}")
        count = self.u64(f"the length of {what}")
        if etype in _SCALARS:
            size = _SCALARS[etype][1]
            self.need(count * size, f"{what} ({count} elements)")
            arr = xp.frombuffer(self.buf, dtype=xp.dtype(_NUMPY[etype]), count=count, offset=self.pos).copy()
            self.pos += count * size
            return arr.astype(bool) if etype == 7 else arr
        if etype == STRING:
            self.need(count * 8, f"{what} ({count} strings)")      # each string has at least its length
            return self.strings(count, what)
        if etype == ARRAY:
            if depth >= MAX_NESTING:
                raise ScratchLLMError(f"{self.path}: {what} nests arrays deeper than {MAX_NESTING} levels")
            self.need(count * 12, f"{what} ({count} arrays)")
            return [self.value(ARRAY, f"{what}[{i}]", depth + 1) for i in range(count)]
        raise ScratchLLMError(f"{self.path}: {what} has unknown element type {etype}")


class GGUFFile:
    """A parsed GGUF file: ``version``, ``metadata`` (dict), ``tensors`` (name -> TensorInfo).

    Tensor data is read lazily from a memory map by ``array(name)`` (float32) or ``raw(name)``.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        try:
            size = os.path.getsize(self.path)
            if size < 24:
                raise ScratchLLMError(f"{self.path}: not a GGUF file ({size} bytes; the header needs 24)")
            with open(self.path, "rb") as f:
                self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            self._buf = xp.frombuffer(self._map, dtype=xp.uint8)
        except (OSError, ValueError) as e:
            raise ScratchLLMError(f"{self.path}: cannot read ({getattr(e, 'strerror', None) or e})") from None
        c = _Cursor(self._map, self.path)
        if self._map[:4] != MAGIC:
            raise ScratchLLMError(f"{self.path}: not a GGUF file (magic {self._map[:4]!r}, expected b'GGUF')")
        c.pos = 4
        self.version = c.u32("the version")
        if self.version not in (2, 3):
            hint = " (a big-endian file?)" if self.version > 0xFFFF else ""
            raise ScratchLLMError(f"{self.path}: GGUF version {self.version} is not supported (2 and 3 are){hint}")
        n_tensors, n_kv = c.u64("the tensor count"), c.u64("the metadata count")
        # each metadata entry takes >= 13 bytes (key length, type, a 1-byte value), each tensor info >= 28
        if n_kv * 13 > size or n_tensors * 28 > size:
            raise ScratchLLMError(f"{self.path}: header claims {n_tensors} tensors and {n_kv} metadata entries, "
                                  f"more than a {size}-byte file can hold")
        self.metadata = {}
        for i in range(n_kv):
            key = c.string(f"metadata key #{i}")
            vtype = c.u32(f"the type of metadata '{key}'")
            if key in self.metadata:
                raise ScratchLLMError(f"{self.path}: metadata key '{key}' appears twice")
            self.metadata[key] = c.value(vtype, f"metadata '{key}'")
        self.alignment = self._alignment()
        infos = [self._tensor_info(c, i) for i in range(n_tensors)]
        self.data_offset = -(-c.pos // self.alignment) * self.alignment
        self.tensors = {}
        spans = []
        for name, shape, ttype, rel in infos:
            n = 1
            for d in shape:
                n *= d
            size_t = Q.nbytes(ttype, n)
            if rel % self.alignment:
                raise ScratchLLMError(f"{self.path}: tensor '{name}' offset {rel} is not a multiple of the "
                                      f"alignment {self.alignment}")
            start = self.data_offset + rel
            if start + size_t > size:
                raise ScratchLLMError(f"{self.path}: tensor '{name}' ({Q.type_name(ttype)}, shape {list(shape)}) "
                                      f"needs bytes {start}..{start + size_t} but the file has {size}; truncated")
            if name in self.tensors:
                raise ScratchLLMError(f"{self.path}: tensor '{name}' appears twice")
            self.tensors[name] = TensorInfo(name, shape, ttype, start, size_t)
            spans.append((start, start + size_t, name))
        spans.sort()
        for (s0, e0, n0), (s1, e1, n1) in zip(spans, spans[1:]):
            if s1 < e0:
                raise ScratchLLMError(f"{self.path}: tensors '{n0}' and '{n1}' overlap in the file")

    def _alignment(self) -> int:
        a = self.metadata.get("general.alignment", DEFAULT_ALIGNMENT)
        if not isinstance(a, int) or isinstance(a, bool) or a <= 0 or a & (a - 1) or a > 1 << 20:
            raise ScratchLLMError(f"{self.path}: general.alignment {a!r} is not a power of two up to 1 MiB")
        return a

    def _tensor_info(self, c: _Cursor, i: int) -> tuple:
        name = c.string(f"the name of tensor #{i}")
        n_dims = c.u32(f"the dimension count of tensor '{name}'")
        if not 1 <= n_dims <= MAX_DIMS:
            raise ScratchLLMError(f"{self.path}: tensor '{name}' has {n_dims} dimensions (1 to {MAX_DIMS} allowed)")
        dims = [c.u64(f"dimension {k} of tensor '{name}'") for k in range(n_dims)]
        ttype = c.u32(f"the type of tensor '{name}'")
        rel = c.u64(f"the offset of tensor '{name}'")
        if ttype not in Q.BLOCKS:
            raise ScratchLLMError(f"{self.path}: tensor '{name}' has type {Q.type_name(ttype)}, which scratchllm "
                                  f"does not read (it reads {', '.join(Q.NAMES.values())})")
        n = 1
        for d in dims:
            if d == 0 or d > 1 << 40:
                raise ScratchLLMError(f"{self.path}: tensor '{name}' has dimension {d}")
            n *= d
        if n > self._buf.size * 8:             # even 1 bit per value would not fit in the file
            raise ScratchLLMError(f"{self.path}: tensor '{name}' claims {n} values, more than the file holds")
        block = Q.BLOCKS[ttype][0]
        if dims[0] % block:
            raise ScratchLLMError(f"{self.path}: tensor '{name}' ({Q.type_name(ttype)}) has first dimension "
                                  f"{dims[0]}, not a multiple of its block size {block}")
        return name, tuple(int(d) for d in reversed(dims)), ttype, rel

    def raw(self, name: str):
        """The tensor's bytes as a read-only uint8 view of the memory map."""
        t = self.tensors[name]
        return self._buf[t.offset:t.offset + t.nbytes]

    def array(self, name: str):
        """The tensor dequantized to a float32 array of its NumPy shape."""
        t = self.tensors[name]
        return Q.dequantize(xp.asarray(self.raw(name)), t.type, t.n_values).reshape(t.shape)

    def get(self, key: str, default=None, kind=None):
        """A metadata value, checked to be of ``kind`` (int, float, str, bool, list) when given."""
        if key not in self.metadata:
            return default
        v = self.metadata[key]
        ok = {int: lambda: isinstance(v, int) and not isinstance(v, bool),
              float: lambda: isinstance(v, (int, float)) and not isinstance(v, bool),
              str: lambda: isinstance(v, str), bool: lambda: isinstance(v, bool),
              list: lambda: isinstance(v, (list, xp.ndarray))}
        if kind is not None and not ok[kind]():
            raise ScratchLLMError(f"{self.path}: metadata '{key}' should be {kind.__name__}, got {type(v).__name__}")
        return v


def is_gguf_file(path) -> bool:
    path = os.fspath(path)
    if not os.path.isfile(path):
        return False
    with open(path, "rb") as f:
        return f.read(4) == MAGIC
