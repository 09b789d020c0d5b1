"""Run many small matrix products as a few single-threaded BLAS jobs on a Python thread pool.

Why attention needs it: ``Q @ K^T`` on (B, H, T, D) arrays is B*H separate sgemm calls
(NumPy loops over the stack). OpenBLAS splits each one over its threads, i.e. B*H thread
hand-offs per product, a few thousand per training step. On an idle machine a hand-off costs
microseconds; on a loaded one each waits for a scheduler slice (measured here, 2 cores,
load 3-4: 0.7-23 s for the fwd+bwd of one MEDIUM attention layer with 2 BLAS threads, versus
0.13 s with one). So attention runs with BLAS limited to one thread, and its batch is split
over a pool of Python threads instead (NumPy and BLAS release the GIL): one hand-off per
chunk, and the softmax / elementwise passes run on every core too.

``run_chunks(fn, chunk_edges(n))`` calls ``fn(i, a, b)`` for disjoint ranges a:b covering
``range(n)``, one per core; with one core (or one item) it is a plain call. The BLAS thread count is set with ``scratchllm.blas``.
"""
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from ...blas import blas_api

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


def chunk_edges(n_items: int, parallel: bool = True) -> list:
    """Edges of the ranges ``run_chunks`` hands out: one range per core (at most ``n_items``)."""
    k = max(1, min(_cores() if parallel else 1, n_items))
    return [n_items * i // k for i in range(k + 1)]


def run_chunks(fn, edges: list) -> None:
    """``fn(i, a, b)`` for every range ``a:b`` of ``edges`` (chunk i), BLAS single-threaded meanwhile."""
    api = blas_api()
    with _lock:  # one such op at a time changes the BLAS thread count
        old = api[1]() if api is not None else 1
        if old != 1:
            api[0](1)
        try:
            ranges = list(zip(edges[:-1], edges[1:]))
            if len(ranges) == 1:
                fn(0, *ranges[0])
                return
            futures = [_pool(len(ranges)).submit(fn, i, a, b) for i, (a, b) in enumerate(ranges) if i]
            fn(0, *ranges[0])                             # the calling thread takes the first chunk
            for f in futures:
                f.result()
        finally:
            if old != 1:
                api[0](old)
