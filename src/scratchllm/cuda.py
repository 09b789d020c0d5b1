"""``sl.cuda``: is a CUDA GPU usable (CuPy installed, a driver, a device)? Imports CuPy only when asked.

>>> import scratchllm as sl
>>> sl.cuda.is_available() in (True, False)
True
"""


def is_available() -> bool:
    """True when CuPy imports and sees at least one CUDA GPU."""
    return device_count() > 0


def device_count() -> int:
    """Number of CUDA GPUs CuPy sees (0 without CuPy or without a driver)."""
    try:
        import cupy
        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception:  # noqa: BLE001 (ImportError, or CuPy's CUDARuntimeError without a driver)
        return 0


def synchronize() -> None:
    """Wait for the GPU's queued work (timings); a no-op without CuPy."""
    try:
        import cupy
    except ImportError:
        return
    cupy.cuda.get_current_stream().synchronize()


def manual_seed(seed: int) -> None:
    """Seed CuPy's global random generator (scratchllm's device dropout derives its own seeds)."""
    from .device import cupy
    cupy().random.seed(int(seed))
