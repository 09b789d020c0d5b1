"""Read a PyTorch ``.pth`` state dict WITHOUT torch and without running anything in it.

``torch.save`` writes a zip: ``<name>/data.pkl`` (a pickle of the dict) and one entry
``<name>/data/<key>`` of raw little-endian bytes per storage. In the pickle each tensor is
``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`` and each storage a
"persistent id" ``('storage', torch.FloatStorage, key, location, numel)``.

A pickle can call any importable function, so the unpickler below resolves only the few
globals a state dict needs (the tensor rebuild function, the storage types, OrderedDict)
to harmless local stand-ins and refuses everything else before it is called: a file that
names ``os.system`` is rejected and nothing runs.

A file is read in three steps, each bounded by the file's own size, never by a number in it:

1. the pickle (at most 16 MiB) is scanned opcode by opcode (``pickletools``) before it is
   loaded: lengths beyond the data (a ``BINBYTES8`` of 2**40 bytes), memo indices beyond the
   data and the opcodes that build arbitrary objects are refused;
2. it is loaded into *descriptions* of tensors (storage, offset, size, stride), each checked
   as ``_rebuild_tensor_v2`` would receive it from torch: non-negative ints (``True``, ``-1``,
   ``inf`` are refused), no negative strides, no stride 0 across more than one element (torch
   writes that only for ``expand``-ed views, which a model's state dict does not hold: refused), every element
   inside the storage, and no more elements than the storage holds;
3. each storage entry is inflated once, streamed into a buffer of exactly the size the pickle
   declared: an entry whose size differs from ``numel * itemsize`` is refused, as is an archive
   whose storages inflate to more than twice the file's size + 1 MiB (``torch.save`` stores
   entries uncompressed, so only a zip bomb gets there) or whose tensors together hold more than
   twice the elements of the storages (tied weights share a storage once, not forty times).

>>> state = load_pth("consolidated.00.pth")          # doctest: +SKIP
>>> state["tok_embeddings.weight"].dtype
dtype('float32')
"""
from __future__ import annotations

import collections
import io
import lzma
import os
import pickle
import pickletools
import struct
import zipfile
import zlib

from ..backend import xp
from ..errors import ScratchLLMError
from .safetensors_file import bf16_to_f32

MAX_PICKLE = 16 << 20    # a 70B model's state-dict pickle is ~0.1 MiB
MAX_DIMS = 64
_STORAGES = {"FloatStorage": "float32", "HalfStorage": "float16", "BFloat16Storage": "bfloat16",
             "DoubleStorage": "float64", "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16",
             "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool"}
# opcodes that build instances of arbitrary classes or use the extension registry
_FORBIDDEN_OPS = {"INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "EXT1", "EXT2", "EXT4"}
_MEMO_OPS = {"BINPUT", "LONG_BINPUT", "PUT", "BINGET", "LONG_BINGET", "GET"}
_READ_ERRORS = (pickle.UnpicklingError, zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, TypeError,
                ValueError, AttributeError, KeyError, IndexError, OverflowError, struct.error, zlib.error,
                lzma.LZMAError, RuntimeError, NotImplementedError, RecursionError)


class _BadPickle(Exception):
    pass


class _Storage:
    """Stands for a torch storage type in the pickle: only carries its element dtype."""

    def __init__(self, name: str, dtype: str):
        self.name, self.dtype = name, dtype


class _StorageRef:
    """One storage entry named by the pickle: not read until every tensor has been checked."""

    def __init__(self, key: str, kind: _Storage, numel: int):
        self.key, self.kind, self.numel = key, kind, numel
        raw = {"bfloat16": "uint16", "bool": "uint8"}.get(kind.dtype, kind.dtype)
        self.raw_dtype = xp.dtype(raw).newbyteorder("<")
        self.nbytes = numel * self.raw_dtype.itemsize


class _TensorRef:
    """A checked ``_rebuild_tensor_v2`` call: a strided view of a storage, built after reading."""

    def __init__(self, storage: _StorageRef, offset: int, size: tuple, stride: tuple):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride
        self.numel = 1
        for n in size:
            self.numel *= n


def _ints(value, what: str) -> tuple:
    if not isinstance(value, (tuple, list)) or len(value) > MAX_DIMS:
        raise _BadPickle(f"a tensor's {what} must be a tuple of at most {MAX_DIMS} integers, got {str(value)[:60]}")
    if not all(type(v) is int and v >= 0 for v in value):
        raise _BadPickle(f"a tensor's {what} must hold non-negative integers, got {str(value)[:60]}")
    return tuple(value)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    """The stand-in for torch._utils._rebuild_tensor_v2: checks the layout, reads nothing yet."""
    if not isinstance(storage, _StorageRef):
        raise _BadPickle("a tensor is built from something that is not a storage")
    if type(storage_offset) is not int or storage_offset < 0:
        raise _BadPickle(f"storage offset must be a non-negative integer, got {str(storage_offset)[:40]}")
    size, stride = _ints(size, "size"), _ints(stride, "stride")
    if len(size) != len(stride):
        raise _BadPickle(f"a tensor of size {list(size)} has stride {list(stride)} (lengths differ)")
    t = _TensorRef(storage, storage_offset, size, stride)
    where = f"a tensor of size {list(size)}, stride {list(stride)}, offset {storage_offset}"
    if any(n > 1 and s == 0 for n, s in zip(size, stride)):
        raise _BadPickle(f"{where} repeats elements with stride 0 (an expanded view); a state dict holds "
                         f"real tensors only")
    if t.numel:
        end = storage_offset + 1 + sum((n - 1) * s for n, s in zip(size, stride))
        if end > storage.numel or t.numel > storage.numel:
            raise _BadPickle(f"{where} needs {max(end, t.numel)} elements but its storage "
                             f"'{storage.key}' holds {storage.numel}")
    elif storage_offset > storage.numel:
        raise _BadPickle(f"{where} starts beyond its storage '{storage.key}' of {storage.numel} elements")
    return t


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals a tensor state dict needs; refuses any other before it can run."""

    def __init__(self, file):
        super().__init__(file)
        self.storages = {}

    def find_class(self, module: str, name: str):
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGES:
            return _Storage(name, _STORAGES[name])
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise _BadPickle(f"it names the global '{module}.{name}', which is not a tensor; refusing to load it "
                         f"(only torch tensors of float32/float16/bfloat16 are read)")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and isinstance(pid[1], _Storage)):
            raise _BadPickle(f"unexpected persistent id {str(pid)[:80]}")
        kind, key, numel = pid[1], pid[2], pid[4]
        if not isinstance(key, (str, int)) or type(key) is bool or len(str(key)) > 64:
            raise _BadPickle(f"storage key {str(key)[:40]!r} is not a short name")
        if type(numel) is not int or numel < 0:
            raise _BadPickle(f"storage '{key}' has numel {str(numel)[:40]}, not a non-negative integer")
        key = str(key)
        ref = self.storages.get(key)
        if ref is None:
            ref = self.storages[key] = _StorageRef(key, kind, numel)
        elif ref.kind.dtype != kind.dtype or ref.numel != numel:
            raise _BadPickle(f"storage '{key}' is named twice with different types or sizes")
        return ref


def _scan_opcodes(raw: bytes) -> None:
    """Refuse a pickle whose opcodes claim more data than it holds, or build arbitrary objects."""
    limit = len(raw)
    try:
        for op, arg, pos in pickletools.genops(io.BytesIO(raw)):
            if op.name in _FORBIDDEN_OPS:
                raise _BadPickle(f"pickle opcode {op.name} at byte {pos} builds arbitrary objects; refused")
            if op.name in _MEMO_OPS and isinstance(arg, int) and not 0 <= arg <= limit:
                raise _BadPickle(f"pickle memo index {arg} at byte {pos} is beyond the pickle's size")
            if op.name == "FRAME" and arg > limit:
                raise _BadPickle(f"pickle frame of {arg} bytes at byte {pos} is beyond the pickle's size")
    except ValueError as e:  # pickletools: "expected 1099511627776 bytes in a bytes8, but only 20 remain"
        raise _BadPickle(f"damaged pickle ({str(e)[:120]})") from None


def _read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, nbytes: int, what: str) -> bytearray:
    """Exactly ``nbytes`` of an entry, streamed; the entry must hold exactly that many."""
    if info.file_size != nbytes:
        raise _BadPickle(f"{what} '{info.filename}' holds {info.file_size} bytes, the pickle says {nbytes}")
    buf = bytearray(nbytes)
    view, pos = memoryview(buf), 0
    with archive.open(info) as f:
        while pos < nbytes:
            got = f.readinto(view[pos:pos + (1 << 24)])
            if not got:
                raise _BadPickle(f"{what} '{info.filename}' ends after {pos} of {nbytes} bytes")
            pos += got
        if f.read(1):
            raise _BadPickle(f"{what} '{info.filename}' holds more than {nbytes} bytes")
    return buf


def _materialize(t: _TensorRef, raw) -> object:
    """The checked view of the storage array ``raw``, copied out as float32 (or ints as stored)."""
    item = raw.itemsize
    view = xp.lib.stride_tricks.as_strided(raw[t.offset:], shape=t.size, strides=[s * item for s in t.stride]) \
        if t.numel else xp.zeros(t.size, dtype=raw.dtype)
    if t.storage.kind.dtype == "bfloat16":
        return bf16_to_f32(xp.array(view, order="C"))        # (ascontiguousarray would turn 0-d into 1-d)
    if t.storage.kind.dtype == "bool":
        return view.astype(xp.bool_)
    if view.dtype.kind == "f":
        return xp.array(view, dtype=xp.float32, order="C")
    return xp.array(view, dtype=view.dtype.newbyteorder("="))


def _load(path: str, archive: zipfile.ZipFile) -> dict:
    pkl = [n for n in archive.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
    if len(pkl) != 1:
        raise _BadPickle("no data.pkl entry in the archive" if not pkl else f"several data.pkl entries {pkl[:3]}")
    prefix = pkl[0][: -len("data.pkl")]
    names = set(archive.namelist())
    if f"{prefix}byteorder" in names:
        info = archive.getinfo(f"{prefix}byteorder")
        if info.file_size > 16 or archive.read(info).strip() not in (b"little", b""):
            raise _BadPickle("big-endian checkpoints are not supported")
    info = archive.getinfo(pkl[0])
    if info.file_size > MAX_PICKLE:
        raise _BadPickle(f"data.pkl is {info.file_size} bytes; more than {MAX_PICKLE} is not a state dict")
    raw = bytes(_read_entry(archive, info, info.file_size, "entry"))
    _scan_opcodes(raw)
    unpickler = _RestrictedUnpickler(io.BytesIO(raw))
    obj = unpickler.load()
    if not isinstance(obj, dict):
        raise _BadPickle(f"holds a {type(obj).__name__}, not a state dict of tensors")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, _TensorRef)]
    if bad:
        raise _BadPickle(f"entries {[str(k)[:40] for k in bad[:5]]} are not named tensors")
    used = {id(t.storage): t.storage for t in obj.values()}
    inflated = sum(s.nbytes for s in used.values())
    limit = 2 * os.path.getsize(path) + (1 << 20)
    if inflated > limit:
        raise _BadPickle(f"its storages declare {inflated} bytes, more than twice the file's size + 1 MiB "
                         f"({limit}); torch.save stores entries uncompressed (a zip bomb?)")
    elements = sum(t.numel for t in obj.values())
    stored = sum(s.numel for s in used.values())
    if elements > 2 * stored + (1 << 16):
        raise _BadPickle(f"its tensors hold {elements} elements drawn from storages of {stored}; a state dict "
                         f"does not reference its storages that many times")
    arrays = {}
    for ref in used.values():   # each entry inflated once, however many tensors use it
        name = f"{prefix}data/{ref.key}"
        if name not in names:
            raise _BadPickle(f"storage '{ref.key}' is missing from the archive")
        buf = _read_entry(archive, archive.getinfo(name), ref.nbytes, "storage")
        arrays[id(ref)] = xp.frombuffer(buf, dtype=ref.raw_dtype) if ref.nbytes else xp.zeros(0, ref.raw_dtype)
    return {k: _materialize(t, arrays[id(t.storage)]) for k, t in obj.items()}


def load_pth(path: str) -> dict:
    """A torch.save'd dict of tensors -> {name: float32 array}. Raises ScratchLLMError naming ``path``."""
    path = os.fspath(path)
    try:
        if not zipfile.is_zipfile(path):   # (which itself raises BadZipFile on some damaged files)
            raise ScratchLLMError(f"{path}: not a PyTorch zip checkpoint (torch.save since 1.6); the legacy "
                                  f"non-zip format is not supported")
        with zipfile.ZipFile(path) as archive:
            return _load(path, archive)
    except _BadPickle as e:
        raise ScratchLLMError(f"{path}: {e}") from None
    except _READ_ERRORS as e:
        raise ScratchLLMError(f"{path}: damaged PyTorch checkpoint ({type(e).__name__}: {str(e)[:160]})") from None
    except OSError as e:
        raise ScratchLLMError(f"{path}: cannot read the PyTorch checkpoint ({e.strerror or e})") from None
