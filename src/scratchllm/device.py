"""Devices: where a tensor's array lives. NumPy on ``"cpu"``, CuPy on ``"cuda"`` / ``"cuda:N"``.

The array module follows the arrays, not a process-wide setting: ``array_module(x)`` is
``numpy`` for a NumPy array and ``cupy`` for a CuPy one (CuPy has NumPy's API). CuPy is
imported only when a CuPy array or a CUDA device is involved, never at import time, so the
package needs nothing but NumPy on a CPU.

>>> import numpy as np
>>> array_module(np.zeros(3)).__name__, device_of(np.zeros(3)), normalize("cuda")
('numpy', 'cpu', 'cuda:0')
"""
import sys

import numpy

from .errors import ScratchLLMError

_INSTALL = ('install CuPy for your CUDA version, e.g. pip install "scratchllm[cuda]" '
            '(cupy-cuda12x), on a machine with an NVIDIA GPU')


def normalize(device) -> str:
    """``"cpu"``, ``"cuda"`` (the current GPU, 0), ``"cuda:N"`` -> ``"cpu"`` or ``"cuda:N"``."""
    name = str(getattr(device, "type", device) if not isinstance(device, str) else device).strip().lower()
    if name == "cpu":
        return "cpu"
    if name == "cuda":
        return "cuda:0"
    if name.startswith("cuda:") and name[5:].isdigit():
        return f"cuda:{int(name[5:])}"
    raise ScratchLLMError(f"unknown device {device!r}: expected 'cpu', 'cuda' or 'cuda:N'")


def is_device_name(value) -> bool:
    """Whether ``value`` names a device (``Tensor.to`` takes a device or a dtype)."""
    if not isinstance(value, str):
        return False
    v = value.strip().lower()
    return v == "cpu" or v == "cuda" or (v.startswith("cuda:") and v[5:].isdigit())


def is_device_array(a) -> bool:
    """True for a CuPy array (an array on a GPU), by its class's module: cheap (no
    ``__cuda_array_interface__`` dict built), never imports CuPy."""
    cls = a.__class__
    return cls is not numpy.ndarray and cls.__module__.startswith("cupy")


_CUPY = []  # the CuPy module once a GPU was found (asked once, then reused by every op)


def cupy():
    """The CuPy module, with a usable GPU; else one ScratchLLMError saying what to install."""
    if _CUPY:
        return _CUPY[0]
    try:
        import cupy as cp
    except ImportError:
        raise ScratchLLMError(f"device 'cuda' asked for, but CuPy is not installed: {_INSTALL}") from None
    try:
        n = cp.cuda.runtime.getDeviceCount()
    except Exception as e:  # noqa: BLE001 (cupy raises its own CUDARuntimeError when there is no driver)
        raise ScratchLLMError(f"device 'cuda' asked for, but CUDA cannot be used here ({e}); {_INSTALL}") from None
    if n < 1:
        raise ScratchLLMError(f"device 'cuda' asked for, but no CUDA GPU is visible; {_INSTALL}")
    _CUPY.append(cp)
    return cp


def array_module(*arrays):
    """``numpy``, or ``cupy`` when any of ``arrays`` is a CuPy array (Tensors count by their data).

    >>> import numpy as np; array_module(np.ones(2), 3.0).__name__
    'numpy'
    """
    for a in arrays:
        if a.__class__ is not numpy.ndarray and is_device_array(_unwrap(a)):
            return sys.modules["cupy"]            # a CuPy array exists, so CuPy is imported
    return numpy


def _unwrap(a):
    """A Tensor's array (its ``.data``); anything else as is."""
    return a if is_device_array(a) or a.__class__ is numpy.ndarray else getattr(a, "data", a)


def device_of(a) -> str:
    """``"cpu"`` for a NumPy array (or scalar, list), ``"cuda:N"`` for a CuPy array on GPU N."""
    a = _unwrap(a)
    if is_device_array(a):
        return f"cuda:{a.device.id}"
    return "cpu"


def to_device(a, device):
    """The array ``a`` on ``device`` (itself when it is there already; a copy otherwise)."""
    device = normalize(device)
    here = device_of(a)
    if device == "cpu":
        return a.get() if here != "cpu" else numpy.asarray(a)
    cp = cupy()
    index = int(device[5:])
    if index >= cp.cuda.runtime.getDeviceCount():
        raise ScratchLLMError(f"device {device!r}: only {cp.cuda.runtime.getDeviceCount()} CUDA GPU(s) here")
    if here == device:
        return a
    with cp.cuda.Device(index):
        return cp.asarray(a)                       # host -> device, or GPU -> GPU


def to_host(a):
    """A NumPy array of ``a`` (a copy when it is on a GPU): what files and ``.numpy()`` get."""
    return a.get() if is_device_array(a) else a


def check_same_device(op: str, *arrays) -> None:
    """One clear error when the arrays of one op live on different devices."""
    first = None
    for a in arrays:
        if a is None or not hasattr(a, "shape"):
            continue
        d = device_of(a)
        if first is None:
            first = d
        elif d != first:
            raise ScratchLLMError(f"{op}: expected all tensors on the same device, got {first} and {d} "
                                  f"(move them with .to({first!r}) or .to({d!r}))")


def like(a, data, dtype=None):
    """``data`` (numbers, a list, a NumPy array) as an array on ``a``'s device: constants next to ``a``."""
    xp = array_module(a)
    return xp.asarray(data, dtype=dtype)
