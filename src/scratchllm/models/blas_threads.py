"""``blas_threads(n)``: run a block with NumPy's BLAS limited to ``n`` threads (OpenBLAS), then restore.

Why decoding wants it: a one-token step multiplies one vector by matrices of ~0.5M
weights, 25-50 us of work. A two-thread GEMV hands half of it to a BLAS worker thread
and waits for it; when the machine's cores are busy with other processes that wait
is a scheduler time slice, measured at 4-12 ms here (2 cores, load 5) -- 200x the work.
On an idle machine, though, two threads read weights from memory about twice as fast.
So the decoder times its one-token steps both ways (``ThreadChooser``) and uses the
faster.

The count is set through OpenBLAS's C API (ctypes, found in the libraries this process
has loaded); where there is no OpenBLAS (or no /proc) the block just runs unchanged.

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


def _get_api():
    if not _api:
        from ..backend import xp  # noqa: F401  (BLAS is loaded with numpy)
        _api.append(_find_api())
    return _api[0]


@contextlib.contextmanager
def blas_threads(n: int):
    """Limit BLAS to ``n`` threads inside the block (process-wide while it runs); None: no change."""
    api = None if n is None else _get_api()
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
    api = _get_api()
    return None if api is None else api[1]()


class ThreadChooser:
    """Times repeated work under 1 BLAS thread and under the process's count; picks the faster.

    Measured, not guessed: on an idle machine two threads read a matrix from memory about
    twice as fast as one; on a busy one a two-thread GEMV waits a scheduler slice for its
    worker and one thread wins by far. The first ``warmup`` samples of each arm alternate;
    after that the arm with the lower median of its last ``keep`` times is used, and every
    ``probe_every``-th call times the other arm again, so the choice follows the load.

    >>> chooser = ThreadChooser()
    >>> n = chooser.pick()          # 1 or None (= leave the count alone)
    >>> chooser.record(n, 0.004)    # seconds the work took with that setting
    """

    ARMS = (1, None)

    def __init__(self, warmup: int = 3, probe_every: int = 16, keep: int = 5):
        self.warmup, self.probe_every, self.keep = warmup, probe_every, keep
        self.times = {a: [] for a in self.ARMS}
        self.calls = 0
        count = blas_thread_count()
        self.fixed = 1 if count is None or count <= 1 else None   # nothing to choose between

    def _median(self, arm) -> float:
        t = sorted(self.times[arm])
        return t[len(t) // 2]

    def pick(self):
        if self.fixed is not None:
            return self.fixed
        self.calls += 1
        fewest = min(self.ARMS, key=lambda a: len(self.times[a]))
        if len(self.times[fewest]) < self.warmup:
            return fewest
        best = min(self.ARMS, key=self._median)
        if self.calls % self.probe_every == 0:
            return self.ARMS[1] if best == self.ARMS[0] else self.ARMS[0]
        return best

    def record(self, arm, seconds: float) -> None:
        times = self.times[arm]
        times.append(seconds)
        if len(times) > self.keep:
            del times[0]
