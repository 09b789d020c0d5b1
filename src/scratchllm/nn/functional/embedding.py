"""``embedding(ids, weight)``: a row gather whose backward is a scatter-add.

The backward never builds a dense one-hot matrix: the upstream rows are summed
into the rows of dW that the ids name (sorted runs, see ``_scatter_add_rows``).
"""
from ...autograd.tensor import Tensor, make_result
from ...backend import xp
from ...kernels import kernels
from . import cuda_ops

_SMALL = 64  # below this many ids np.add.at is as fast as anything


def _ids_array(ids, num):
    a = ids.data if isinstance(ids, Tensor) else xp.asarray(ids)
    if a.dtype.kind not in "iu":
        raise TypeError(f"embedding: ids must be integers, got dtype {a.dtype}")
    if a.size and (a.min() < 0 or a.max() >= num):
        raise IndexError(f"embedding: ids must lie in [0, {num}), got values in [{a.min()}, {a.max()}]")
    return a


def _scatter_add_rows(out, idx, rows):
    """out[idx[i]] += rows[i] for every i, repeated ids summed; out (V, D), rows (N, D).

    Sort the ids; the r-th occurrence of every id is then at ``start + r`` of its run,
    and within one rank r the ids are distinct, so a plain fancy-index ``+=`` is exact.
    One pass per rank (max multiplicity passes, each over fewer ids). Measured 2-5x
    faster than ``np.add.at`` on GPT-2 / char-level shapes (benchmarks in the nn report).
    With numba, one loop over the rows in order (the same sums; char-level, 2048 ids of a
    65-row table: 0.06 ms against 2.6 ms here, whose passes are as many as the commonest id).
    """
    k = kernels() if rows.dtype == out.dtype and out.dtype in (xp.float32, xp.float64) else None
    if k is not None:
        k.scatter_add_rows(out, idx, rows)
        return
    if idx.size < _SMALL:
        xp.add.at(out, idx, rows)
        return
    order = xp.argsort(idx, kind="stable")
    s = idx[order]
    starts = xp.flatnonzero(xp.concatenate(([True], s[1:] != s[:-1])))
    counts = xp.diff(xp.append(starts, idx.size))
    out[s[starts]] = rows[order[starts]]                 # first occurrence: assign
    by_count = xp.argsort(-counts, kind="stable")
    starts, counts = starts[by_count], counts[by_count]  # runs, longest first
    live = xp.searchsorted(-counts, -xp.arange(counts[0]), side="left")  # live[r] = #runs longer than r
    for r in range(1, int(counts[0])):
        run = starts[:live[r]]
        out[s[run]] += rows[order[run + r]]


def embedding(ids, weight):
    """Rows of ``weight`` (num, dim) picked by integer ``ids`` of any shape -> (*ids.shape, dim)."""
    W = weight.data
    if W.__class__ is not xp.ndarray:                      # on a GPU: nn/functional/cuda_ops.py
        return cuda_ops.embedding(ids, weight)
    idx = _ids_array(ids, W.shape[0])
    out = W[idx]

    def backward(g):
        dw = xp.zeros_like(W)
        _scatter_add_rows(dw, idx.reshape(-1), g.reshape(-1, W.shape[1]))
        return (dw,)

    return make_result(out, (weight,), backward, "embedding")
