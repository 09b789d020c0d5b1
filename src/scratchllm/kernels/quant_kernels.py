"""The numba loops behind int8 generation (models/quant.py), imported only when numba is there.

``quantize_rows``: rows x (N, K) float32 -> q (N, Kp) int8 and s (N, Kp/32) float32, per group
of 32: s = max|x| / 127, q = round(x / s) (half away from zero; 0 where s = 0); Kp is K
rounded up to 32 and the padding is zero. The same float32 operations as the NumPy code.

``q8_matmul``: out (N, O) = xq (N, Kp) int8 times wq (O, Kp) int8, group by group of 32:
an int32 dot per group, scaled by the weight row's and the input row's group scales and
summed over the groups in order (float32), as llama2.c's runq.c ``matmul``.
"""
import numpy as np
from numba import njit

GROUP = 32


@njit(nogil=True, cache=True, error_model="numpy")
def quantize_rows(x, q, s):
    n_rows, k_in = x.shape
    groups = s.shape[1]
    inv127 = np.float32(127.0)
    two, zero = np.float32(2.0), np.float32(0.0)
    for n in range(n_rows):
        for g in range(groups):
            lo, hi = g * GROUP, min(g * GROUP + GROUP, k_in)
            amax = zero
            for k in range(lo, hi):
                a = abs(x[n, k])
                if a > amax:
                    amax = a
            scale = amax / inv127
            s[n, g] = scale
            for k in range(lo, g * GROUP + GROUP):
                if k >= hi or scale == zero:
                    q[n, k] = 0
                    continue
                r = x[n, k] / scale
                a = abs(r)
                whole = np.floor(a)
                v = whole + np.floor(two * (a - whole))
                q[n, k] = np.int8(v if r >= zero else -v)


@njit(nogil=True, cache=True, error_model="numpy")
def q8_matmul(xq, xs, wq, ws, out):
    n_rows, kp = xq.shape
    n_out = wq.shape[0]
    groups = kp // GROUP
    for n in range(n_rows):
        for o in range(n_out):
            val = np.float32(0.0)
            for g in range(groups):
                acc = np.int32(0)
                base = g * GROUP
                for k in range(GROUP):
                    acc += np.int32(xq[n, base + k]) * np.int32(wq[o, base + k])
                val += np.float32(acc) * ws[o, g] * xs[n, g]
            out[n, o] = val
