"""Shared measuring tools: thread count, matmul peak, timers, resident memory.

Kept free of torch: the peers import it, never the other way round.
"""
import os
import platform
import statistics
import time

from ..backend import xp


def cores_used() -> int:
    """CPU cores this process may run on (what BLAS uses unless told otherwise)."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if os.environ.get(var, "").isdigit():
            return max(1, int(os.environ[var]))
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def machine() -> dict:
    """A short description of where the figures were taken."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"cpu": cpu, "cores": cores_used(), "python": platform.python_version(),
            "numpy": xp.__version__, "loadavg_1m": load}  # a busy machine skews every figure


def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    """NumPy's float32 matrix-multiply speed here: best of ``repeats`` (n x n) @ (n x n).

    This is the ceiling every float32 model FLOP runs against, so MFU is measured
    relative to it (not to a datasheet number).
    """
    rng = xp.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=xp.float32)
    b = rng.standard_normal((n, n), dtype=xp.float32)
    out = xp.empty((n, n), dtype=xp.float32)
    xp.matmul(a, b, out=out)  # warm-up: threads started, pages touched
    best = min(_timed(lambda: xp.matmul(a, b, out=out)) for _ in range(repeats))
    return 2.0 * n ** 3 / best / 1e9


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def summarize(times_s: list) -> dict:
    """Median and spread of per-step wall times, in milliseconds."""
    ms = [t * 1e3 for t in times_s]
    return {"median_ms": statistics.median(ms), "min_ms": min(ms), "max_ms": max(ms), "n": len(ms)}


# ----------------------------------------------------------------- resident memory (Linux)
def _proc_status_kb(key: str):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_mb():
    """Current resident set size in MiB (None where /proc is missing)."""
    kb = _proc_status_kb("VmRSS")
    return None if kb is None else kb / 1024.0


def peak_rss_mb():
    """High-water mark of the resident set size in MiB since the last reset."""
    kb = _proc_status_kb("VmHWM")
    return None if kb is None else kb / 1024.0


def reset_peak_rss() -> bool:
    """Reset the process's RSS high-water mark to its current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False
