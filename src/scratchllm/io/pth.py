"""Read a PyTorch ``.pth`` state dict WITHOUT torch and without running anything in it.

``torch.save`` writes a zip: ``<name>/data.pkl`` (a pickle of the dict) and one entry
``<name>/data/<key>`` of raw little-endian bytes per storage. In the pickle each tensor is
``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`` and each storage a
"persistent id" ``('storage', torch.FloatStorage, key, location, numel)``.

A pickle can call any importable function, so the unpickler below resolves only the few
globals a state dict needs (the tensor rebuild function, the storage types, OrderedDict)
to harmless local stand-ins and refuses everything else before it is called: a file that
names ``os.system`` is rejected and nothing runs.

>>> state = load_pth("consolidated.00.pth")          # doctest: +SKIP
>>> state["tok_embeddings.weight"].dtype
dtype('float32')
"""
import collections
import pickle
import zipfile

from ..backend import xp
from ..errors import ScratchLLMError
from .safetensors_file import bf16_to_f32


class _Storage:
    """Stands for a torch storage type in the pickle: only carries its element dtype."""

    def __init__(self, name: str, dtype):
        self.name, self.dtype = name, dtype


_STORAGES = {"FloatStorage": xp.float32, "HalfStorage": xp.float16, "BFloat16Storage": "bfloat16",
             "DoubleStorage": xp.float64, "LongStorage": xp.int64, "IntStorage": xp.int32}


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    """The stand-in for torch._utils._rebuild_tensor_v2: a strided view of the storage, copied to float32."""
    raw, dtype = storage
    size, stride = tuple(size), tuple(stride)
    need = storage_offset + 1 + sum((n - 1) * s for n, s in zip(size, stride)) if all(size) else 0
    if need > raw.size:
        raise _BadPickle(f"a tensor of size {list(size)} at offset {storage_offset} needs {need} elements but "
                         f"its storage holds {raw.size}")
    item = raw.itemsize
    view = xp.lib.stride_tricks.as_strided(raw[storage_offset:], shape=size, strides=[s * item for s in stride])
    if dtype == "bfloat16":
        return bf16_to_f32(xp.ascontiguousarray(view))
    if view.dtype.kind == "f":
        return xp.ascontiguousarray(view, dtype=xp.float32)
    return xp.array(view)


class _BadPickle(Exception):
    pass


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals a tensor state dict needs; refuses any other before it can run."""

    def __init__(self, file, archive: zipfile.ZipFile, prefix: str):
        super().__init__(file)
        self._zip, self._prefix = archive, prefix

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
            raise _BadPickle(f"unexpected persistent id {pid!r:.80}")
        storage, key, numel = pid[1], str(pid[2]), int(pid[4])
        try:
            raw = self._zip.read(f"{self._prefix}data/{key}")
        except KeyError:
            raise _BadPickle(f"storage '{key}' is missing from the archive") from None
        dtype = xp.uint16 if storage.dtype == "bfloat16" else xp.dtype(storage.dtype)
        width = xp.dtype(dtype).itemsize
        if len(raw) < numel * width:
            raise _BadPickle(f"storage '{key}' holds {len(raw)} bytes, {storage.name} of {numel} elements needs "
                             f"{numel * width}")
        return xp.frombuffer(raw, dtype=xp.dtype(dtype).newbyteorder("<"), count=numel), storage.dtype


def load_pth(path: str) -> dict:
    """A torch.save'd dict of tensors -> {name: float32 array}. Raises ScratchLLMError naming ``path``."""
    if not zipfile.is_zipfile(path):
        raise ScratchLLMError(f"{path}: not a PyTorch zip checkpoint (torch.save since 1.6); the legacy "
                              f"non-zip format is not supported")
    try:
        with zipfile.ZipFile(path) as archive:
            pkl = [n for n in archive.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
            if not pkl:
                raise _BadPickle("no data.pkl entry in the archive")
            prefix = pkl[0][: -len("data.pkl")]
            byteorder = f"{prefix}byteorder"
            if byteorder in archive.namelist() and archive.read(byteorder).strip() not in (b"little", b""):
                raise _BadPickle("big-endian checkpoints are not supported")
            with archive.open(pkl[0]) as f:
                obj = _RestrictedUnpickler(f, archive, prefix).load()
    except _BadPickle as e:
        raise ScratchLLMError(f"{path}: {e}") from None
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, TypeError, ValueError, AttributeError) as e:
        raise ScratchLLMError(f"{path}: damaged PyTorch checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict):
        raise ScratchLLMError(f"{path}: holds a {type(obj).__name__}, not a state dict of tensors")
    bad = [k for k, v in obj.items() if not isinstance(v, xp.ndarray)]
    if bad:
        raise ScratchLLMError(f"{path}: entries {bad[:5]} are not tensors")
    return dict(obj)
