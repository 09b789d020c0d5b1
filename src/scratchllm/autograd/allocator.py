"""Keep freed activation memory in the process instead of giving it back to the OS every step.

A training step allocates and frees the same few hundred MB of activations and gradients
every time. glibc serves each large NumPy buffer (above its ``M_MMAP_THRESHOLD``, 128 KiB
to start with) with a fresh ``mmap`` and trims the heap top after a ``free``; so every step
page-faults its whole working set back in, and the kernel zeroes every page again (measured
on the MEDIUM bench: ~12,000 faults and 50-110 ms of system time per 2.5 s step).

``keep_freed_memory()`` sets the mmap threshold to glibc's ceiling (32 MiB, so buffers below it
come from the reusable heap) and the trim threshold very high (freed heap stays mapped): the
second step on reuses the first step's pages (about 200 faults per step). Peak memory is
unchanged (the same bytes are live at the peak); memory is simply not returned between steps.

Called once, lazily, by the first ``backward()`` (never at import time). A no-op where libc
has no ``mallopt`` (not glibc) or when ``SCRATCHLLM_KEEP_FREED_MEMORY=0``.
"""
import ctypes
import ctypes.util
import os

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3      # glibc's mallopt parameter numbers
_MMAP_THRESHOLD = 32 * 2 ** 20                      # glibc's maximum (DEFAULT_MMAP_THRESHOLD_MAX, 64-bit)
_TRIM_THRESHOLD = 2 ** 31 - 1                       # (an int): freed heap below 2 GiB stays mapped
_done = False


def keep_freed_memory() -> bool:
    """Tune glibc malloc for a training loop (idempotent); True when the settings were applied."""
    global _done
    if _done:
        return True
    _done = True
    if os.environ.get("SCRATCHLLM_KEEP_FREED_MEMORY", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) == 1
    ok &= mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1
    return bool(ok)
