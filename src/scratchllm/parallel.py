"""The one place that decides how work uses the cores: the thread pool, the BLAS thread count
and every tuning constant that goes with them.

Ops keep their math in plain functions over a row range (``fn(a, b)`` works on rows a:b);
parallelism is one line at the call site, as in llm.c / run.c::

    parallel_ranges(lambda a, b: layer_norm_rows(x[a:b], ...), n_rows, pooled(x.size))

Why a pool of Python threads and BLAS kept single-threaded inside it: after each threaded
product OpenBLAS's worker threads busy-wait on their cores (~0.1 s, its THREAD_TIMEOUT), so
whatever runs next there (softmax, GELU) gets half a core. Measured on MEDIUM (2 cores): one
attention layer's forward+backward 27 ms alone, 50 ms right after a 2-thread product; the
whole step went from 1.60 s to 1.26-1.39 s once every product ran on this pool instead.
NumPy and BLAS release the GIL, so Python threads run the ranges side by side.

Small ops stay on the calling thread: waking a pool thread costs 0.1-0.3 ms on the 2-vCPU VMs
measured here, more than a 100k-element op takes. Below ``POOL_MIN`` elements an op runs
inline and a product uses BLAS's own threads. So SMALL (n_embd 128, 768 tokens) never touches
the pool and MEDIUM (384, 2048) always does.

Ranges never depend on the core count (``POOL_CHUNKS`` of them), so results have the same bits
on 1, 2 or 16 cores; the threads share the ranges.

BLAS threads (OpenBLAS's C API through ctypes; a no-op without OpenBLAS or /proc):

>>> with blas_threads(1):            # doctest: +SKIP
...     y = W @ x

Tuning constants (all here): ``POOL_MIN``, ``POOL_CHUNKS``, ``PRODUCT_CHUNK_ROWS``,
``PARAM_SPLIT_MIN`` and ``UPDATE_POOL_MIN`` (optimizer update), ``ThreadChooser``'s arms.
"""
import contextlib
import ctypes
import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from .backend import xp

POOL_MIN = 1 << 19          # elements: smaller ops run on the calling thread
POOL_CHUNKS = 8             # ranges of a pooled op: fixed, so the bits are the same on any machine
PRODUCT_CHUNK_ROWS = 512    # a pooled product is cut into 2-8 chunks of about this many rows
PARAM_SPLIT_MIN = 1 << 16   # optimizer: parameters at least this big are split over the ranges
UPDATE_POOL_MIN = 1 << 22   # optimizer: models smaller than this (elements) update on one thread

# ------------------------------------------------------------------ BLAS thread count
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
        _api.append(_find_api())
    return _api[0]


@contextlib.contextmanager
def blas_threads(n):
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


def share_cores(n_processes: int) -> None:
    """Give this process its share of the machine's cores (BLAS, and so the pool): one of
    ``n_processes`` on this machine, e.g. the ranks of ``mpiexec -n 2`` on one host. A thread
    count the user set (OPENBLAS_NUM_THREADS / OMP_NUM_THREADS) is left alone."""
    api = blas_api()
    if api is None or n_processes <= 1 or any(v in os.environ for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")):
        return
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    api[0](max(1, cores // n_processes))


# ------------------------------------------------------------------ the pool
_state = {}
_lock = threading.Lock()


def _cores() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count() or 1
    count = blas_thread_count()  # respect the BLAS thread count the user or the bench chose
    return n if count is None else min(n, max(1, count))


def _pool(n: int) -> ThreadPoolExecutor:
    pool = _state.get("pool")
    if pool is None or _state.get("pool_size") != n:
        pool = _state["pool"] = ThreadPoolExecutor(max_workers=n, thread_name_prefix="scratchllm")
        _state["pool_size"] = n
    return pool


def pooled(n_elements: int) -> bool:
    """Whether an op on arrays of ``n_elements`` should use the pool (``POOL_MIN``)."""
    return n_elements >= POOL_MIN


def chunk_edges(n_items: int, parallel: bool = True) -> list:
    """Edges of ``POOL_CHUNKS`` ranges over ``range(n_items)`` (at most ``n_items``) when
    ``parallel``, else one. They never depend on the core count (see the module docstring)."""
    k = max(1, min(POOL_CHUNKS, n_items)) if parallel else 1
    return [n_items * i // k for i in range(k + 1)]


def run_chunks(fn, edges: list) -> None:
    """``fn(i, a, b)`` for every range ``a:b`` of ``edges`` (chunk i), BLAS single-threaded meanwhile.

    Each thread (the caller and up to cores - 1 pool threads) takes the next chunk not yet
    taken. Chunks must write disjoint outputs. One range is a plain call (BLAS keeps its count).
    """
    ranges = list(zip(edges[:-1], edges[1:]))
    if len(ranges) == 1:
        fn(0, *ranges[0])
        return
    counter = itertools.count()

    def take():
        i = next(counter)                                 # next() on a count is atomic under the GIL
        while i < len(ranges):
            fn(i, *ranges[i])
            i = next(counter)

    k = min(_cores(), len(ranges))                        # threads (before BLAS is set to 1)
    api = blas_api()
    with _lock:  # one such op at a time changes the BLAS thread count
        old = api[1]() if api is not None else 1
        if old != 1:
            api[0](1)
        futures = []
        try:
            futures = [_pool(_cores()).submit(take) for _ in range(k - 1)]
            take()                                        # the calling thread works too
        finally:
            errors = [f.exception() for f in futures]      # waits: no chunk outlives the call
            if old != 1:
                api[0](old)
        for e in errors:
            if e is not None:
                raise e


def parallel_ranges(fn, n: int, parallel: bool = True) -> None:
    """``fn(a, b)`` over ranges covering ``range(n)``: ``POOL_CHUNKS`` of them on the pool when
    ``parallel``, else one plain call ``fn(0, n)``."""
    run_chunks(lambda _, a, b: fn(a, b), chunk_edges(n, parallel))


def run_jobs(jobs: list, parallel: bool = True) -> None:
    """Call every zero-argument job once, on the pool, or in turn when not ``parallel``.
    Give the biggest jobs first: threads that finish early take the small ones at the end."""
    if not parallel:
        for job in jobs:
            job()
        return
    run_chunks(lambda i, a, b: jobs[i](), list(range(len(jobs) + 1)))


# ------------------------------------------------------------------ products on the pool
def _row_chunks(M: int) -> list:
    """Row edges of a pooled product: 2-8 chunks of >= ``PRODUCT_CHUNK_ROWS`` rows, fixed by M
    alone (the same bits on any number of cores)."""
    n = 1 if M < 128 else min(8, max(2, M // PRODUCT_CHUNK_ROWS))
    return [M * i // n for i in range(n + 1)]


def _big(a, b, out) -> bool:
    return pooled(max(a.size, b.size, out.size))


def _product_jobs(a, b, out, bias=None) -> list:
    """(multiply-adds, job) per row chunk of ``out = a @ b (+ bias)``; one job for a small product."""
    def job(i, j):
        def run():
            xp.matmul(a[i:j], b, out=out[i:j])
            if bias is not None:
                out[i:j] += bias                         # while the rows are still in cache
        return (j - i) * a.shape[1] * b.shape[1], run
    e = _row_chunks(a.shape[0]) if _big(a, b, out) else [0, a.shape[0]]
    return [job(i, j) for i, j in zip(e[:-1], e[1:])]


def matmul(a, b, out=None, bias=None):
    """``a @ b (+ bias)`` for 2-D a (M, K), b (K, N), bias (N,); big ones in row chunks on the pool.
    A small product is one plain call on BLAS's own threads."""
    if out is None:
        out = xp.empty((a.shape[0], b.shape[1]), dtype=xp.result_type(a, b))
    run_jobs([job for _, job in _product_jobs(a, b, out, bias)])  # one job: a plain call
    return out


def matmuls(pairs: list) -> list:
    """``[a @ b for a, b in pairs]`` for independent 2-D products, all their row chunks in one
    job queue (biggest first), e.g. linear's backward dx = g W, dW = g^T x, db = 1^T g."""
    outs = [xp.empty((a.shape[0], b.shape[1]), dtype=xp.result_type(a, b)) for a, b in pairs]
    jobs = [job for (a, b), out in zip(pairs, outs) for job in _product_jobs(a, b, out)]
    jobs.sort(key=lambda sj: -sj[0])                      # biggest first (stable: same order every run)
    run_jobs([job for _, job in jobs], parallel=any(_big(a, b, out) for (a, b), out in zip(pairs, outs)))
    return outs


# ------------------------------------------------------------------ decoding: 1 or all BLAS threads
class ThreadChooser:
    """Times repeated work under 1 BLAS thread and under the process's count; picks the faster.

    On an idle machine two threads read a matrix from memory about twice as fast as one; on a
    busy one a two-thread GEMV waits a scheduler slice for its worker. The first ``warmup``
    samples of each arm alternate; then the arm with the lower median of its last ``keep``
    times is used, and every ``probe_every``-th call times the other arm again.

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
