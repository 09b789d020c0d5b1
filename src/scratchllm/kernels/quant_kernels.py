"""The numba loops behind int8 generation (models/quant.py), imported only when numba is there.

``quantize_rows``: rows x (N, K) float32 -> q (N, Kp) int8 and s (N, Kp/32) float32, per group
of 32: s = max|x| / 127, q = round(x / s) (half away from zero; 0 where s = 0); Kp is K
rounded up to 32 and the padding is zero. The same float32 operations as the NumPy code.
``quantize_cols``: the same for the columns of wt (K, O) (groups of 32 rows): q (Kp, O), s (G, O).

``q8_matmul``: out (N, O) = xq (N, Kp) int8 times wq (Kp, O) int8 (a transposed weight, as
the decoders keep theirs), group by group of 32: an int32 dot per group, scaled by the weight
column's and the input row's group scales and summed over the groups in order (float32), as
llama2.c's runq.c ``matmul``. The loops run along the output dimension in blocks of 512
(contiguous int8 loads, int32 accumulators that stay in L1), which the compiler vectorises.
"""
import numpy as np
from numba import njit

GROUP = 32
BLOCK = 512


@njit(nogil=True, inline="always")
def _q(r):
    """C's roundf of a float32 (half away from zero), computed as the NumPy code does."""
    a = abs(r)
    whole = np.floor(a)
    v = whole + np.floor(np.float32(2.0) * (a - whole))
    return np.int8(v if r >= np.float32(0.0) else -v)


@njit(nogil=True, cache=True, error_model="numpy")
def quantize_rows(x, q, s):
    n_rows, k_in = x.shape
    groups = s.shape[1]
    zero = np.float32(0.0)
    for n in range(n_rows):
        for g in range(groups):
            lo, hi = g * GROUP, min(g * GROUP + GROUP, k_in)
            amax = zero
            for k in range(lo, hi):
                a = abs(x[n, k])
                if a > amax:
                    amax = a
            scale = amax / np.float32(127.0)
            s[n, g] = scale
            for k in range(lo, g * GROUP + GROUP):
                q[n, k] = 0 if k >= hi or scale == zero else _q(x[n, k] / scale)


@njit(nogil=True, cache=True, error_model="numpy")
def quantize_cols(wt, q, s):
    k_in, n_out = wt.shape
    groups = s.shape[0]
    zero = np.float32(0.0)
    for g in range(groups):
        lo, hi = g * GROUP, min(g * GROUP + GROUP, k_in)
        for o in range(n_out):
            s[g, o] = zero
        for k in range(lo, hi):
            for o in range(n_out):
                a = abs(wt[k, o])
                if a > s[g, o]:
                    s[g, o] = a
        for o in range(n_out):
            s[g, o] = s[g, o] / np.float32(127.0)
        for k in range(lo, g * GROUP + GROUP):
            for o in range(n_out):
                q[k, o] = 0 if k >= hi or s[g, o] == zero else _q(wt[k, o] / s[g, o])


@njit(nogil=True, cache=True, error_model="numpy", boundscheck=False)
def q8_matmul(xq, xs, wq, ws, out):
    n_rows, kp = xq.shape
    n_out = wq.shape[1]
    groups = kp // GROUP
    acc = np.empty(BLOCK, np.int32)
    val = np.empty(BLOCK, np.float32)
    for n in range(n_rows):
        for o0 in range(0, n_out, BLOCK):
            m = min(BLOCK, n_out - o0)
            for j in range(m):
                val[j] = 0
            for g in range(groups):
                for j in range(m):
                    acc[j] = 0
                for k in range(g * GROUP, g * GROUP + GROUP):
                    xv = np.int32(xq[n, k])
                    row = wq[k, o0:o0 + m]
                    for j in range(m):
                        acc[j] += xv * np.int32(row[j])
                sx = xs[n, g]
                srow = ws[g, o0:o0 + m]
                for j in range(m):
                    val[j] += np.float32(acc[j]) * srow[j] * sx
            for j in range(m):
                out[n, o0 + j] = val[j]
