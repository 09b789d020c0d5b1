"""NumPy's BLAS thread count, read and set at run time through OpenBLAS's C API (ctypes).

Why it matters here: a small matrix product split over two BLAS threads hands half of it to a
worker and waits; when the cores are busy that wait is a scheduler time slice (milliseconds),
hundreds of times the work. Decoding (one-row products) and attention (B*H small products)
therefore run their BLAS calls single-threaded and parallelise in other ways.

Where there is no OpenBLAS (or no /proc) everything here is a no-op.

>>> with blas_threads(1):            # doctest: +SKIP
...     y = W @ x
"""
import contextlib
import ctypes

_SYMBOLS = (("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
            ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
            ("openblas_set_num_threads", "openblas_get_num_threads"))
_api = []  # [] = not looked up yet; [None] = none found; [(set, get)]


def _loaded_openblas_paths() -> list:
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower() and "/" in line}
    except OSError:
        return []
    return sorted(p for p in paths if ".so" in p)


def _find_api():
    for path in _loaded_openblas_paths():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for set_name, get_name in _SYMBOLS:
            setter, getter = getattr(lib, set_name, None), getattr(lib, get_name, None)
            if setter is not None and getter is not None:
                setter.argtypes, setter.restype = [ctypes.c_int], None
                getter.argtypes, getter.restype = [], ctypes.c_int
                return setter, getter
    return None


def blas_api():
    """(set, get) of OpenBLAS's thread count, looked up once; None without OpenBLAS."""
    if not _api:
        from .backend import xp  # noqa: F401  (BLAS is loaded with numpy)
        _api.append(_find_api())
    return _api[0]


@contextlib.contextmanager
def blas_threads(n: int):
    """Limit BLAS to ``n`` threads inside the block (process-wide while it runs); None: no change."""
    api = None if n is None else blas_api()
    if api is None:
        yield
        return
    setter, getter = api
    old = getter()
    if old == n:
        yield
        return
    setter(n)
    try:
        yield
    finally:
        setter(old)


def blas_thread_count():
    """The BLAS thread count now (None where it cannot be read)."""
    api = blas_api()
    return None if api is None else api[1]()
