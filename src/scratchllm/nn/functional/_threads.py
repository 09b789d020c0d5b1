"""One pool of Python threads for every multi-core op of a training step (BLAS kept single-threaded).

Why not let OpenBLAS thread the products itself: after each threaded product its worker
threads busy-wait on their cores (for ~0.1 s, OpenBLAS's THREAD_TIMEOUT), so whatever runs next
on those cores, e.g. the softmax or GELU passes, gets half a core. Measured on MEDIUM (2 cores):
one attention layer's forward+backward 27 ms alone, 50 ms right after a 2-thread product; the
whole step went from 1.60 s to 1.26-1.39 s once every product ran on this pool instead.
Attention's B*H small products are worse still with BLAS threads: one hand-off each.

So BLAS runs with one thread inside ``run_chunks`` and the work is split here instead:
``matmul`` / ``matmuls`` cut products into row chunks for a job queue (``run_jobs``),
attention splits by batch, GELU / LayerNorm / Adam by ranges (NumPy and BLAS release the
GIL). ``run_chunks(fn, chunk_edges(n))`` calls ``fn(i, a, b)`` for disjoint ranges a:b
covering ``range(n)``, a fixed number of them, shared by the cores; one range is a plain call. The BLAS
thread count is set with ``scratchllm.blas``.

Small ops stay on the calling thread: waking a pool thread costs 0.1-0.3 ms on the 2-vCPU VMs
measured here (a halted virtual CPU needs an interrupt), more than a 100k-element op takes.
Below ``POOL_MIN`` elements an op runs inline and a product uses BLAS's own threads (their
spinning makes back-to-back small products cheap, and no pool op runs beside them then). So
SMALL (n_embd 128, 768 tokens) never touches the pool and MEDIUM (384, 2048) always does.
"""
import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from ...backend import xp
from ...blas import blas_api

POOL_MIN = 1 << 19  # elements: smaller ops run on the calling thread (see above)
_state = {}
_lock = threading.Lock()


def _cores() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count() or 1
    api = blas_api()
    if api is not None:  # respect the BLAS thread count the user or the bench chose
        n = min(n, max(1, api[1]()))
    return n


def _pool(n: int) -> ThreadPoolExecutor:
    pool = _state.get("pool")
    if pool is None or _state.get("pool_size") != n:
        pool = _state["pool"] = ThreadPoolExecutor(max_workers=n, thread_name_prefix="scratchllm")
        _state["pool_size"] = n
    return pool


def pooled(n_elements: int) -> bool:
    """Whether an op on arrays of ``n_elements`` should use the pool (``POOL_MIN``)."""
    return n_elements >= POOL_MIN


POOL_CHUNKS = 8  # ranges of a pooled op: fixed, so the ranges (and the bits) are the same on any machine


def chunk_edges(n_items: int, parallel: bool = True) -> list:
    """Edges of the ranges ``run_chunks`` hands out: ``POOL_CHUNKS`` of them (at most ``n_items``)
    when ``parallel``, else one. The edges never depend on the core count: an op whose result
    depends on its ranges (a BLAS row sum rounds a range's last rows by the range's length)
    then gives the same bits on 1, 2 or 16 cores; the threads share the ranges (``run_chunks``)."""
    k = max(1, min(POOL_CHUNKS, n_items)) if parallel else 1
    return [n_items * i // k for i in range(k + 1)]


def run_chunks(fn, edges: list) -> None:
    """``fn(i, a, b)`` for every range ``a:b`` of ``edges`` (chunk i), BLAS single-threaded meanwhile.

    Each thread (the caller and up to cores - 1 pool threads) takes the next chunk not yet
    taken, so a pool thread that wakes late does fewer chunks instead of keeping the caller
    waiting. Chunks must write disjoint outputs; which thread runs one does not change its
    result. One range is a plain call (BLAS keeps its thread count: the op is small).
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


def run_jobs(jobs: list, parallel: bool = True) -> None:
    """Call every zero-argument job once: on the pool (``run_chunks``'s scheduling), or one
    after the other on the calling thread when not ``parallel``.

    Give the biggest jobs first: threads that finish early take the small ones at the end.
    """
    if not parallel:
        for job in jobs:
            job()
        return
    run_chunks(lambda i, a, b: jobs[i](), list(range(len(jobs) + 1)))


def _row_chunks(M: int) -> list:
    """Row edges of a pooled product: 2-8 chunks of >= 512 rows (>= 64), fixed by M alone, so
    the result has the same bits on any number of cores. (BLAS rounds a 512-row product like
    the same rows of the whole only sometimes, so a chunked product may differ in the last bit
    from one call.)"""
    n = 1 if M < 128 else min(8, max(2, M // 512))
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

    Each chunk is one single-threaded BLAS call. A small product is one plain call on BLAS's
    own threads (their spinning makes back-to-back small products cheap).
    """
    if out is None:
        out = xp.empty((a.shape[0], b.shape[1]), dtype=xp.result_type(a, b))
    run_jobs([job for _, job in _product_jobs(a, b, out, bias)])  # one job: a plain call
    return out


def matmuls(pairs: list) -> list:
    """``[a @ b for a, b in pairs]`` for independent 2-D products, run side by side.

    All the row chunks of all the products go to one job queue (biggest first), so the cores
    share the work of, e.g., linear's backward (dx = g W, dW = g^T x, db = 1^T g) without
    waiting for each other between products. All small: one plain call each, in turn.
    """
    outs = [xp.empty((a.shape[0], b.shape[1]), dtype=xp.result_type(a, b)) for a, b in pairs]
    jobs = [job for (a, b), out in zip(pairs, outs) for job in _product_jobs(a, b, out)]
    jobs.sort(key=lambda sj: -sj[0])                      # biggest first (stable: same order every run)
    run_jobs([job for _, job in jobs], parallel=any(_big(a, b, out) for (a, b), out in zip(pairs, outs)))
    return outs
