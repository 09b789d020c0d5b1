"""The numba loop behind int8 generation (models/quant.py), imported only when numba is there.

``q8_matmul``: out (N, O) = xq (N, Kp) int8 times wq (O, Kp) int8, group by group of 32:
an int32 dot per group, scaled by the weight row's and the input row's group scales and
summed over the groups in order (float32), as llama2.c's runq.c ``matmul``.
"""
import numpy as np
from numba import njit

GROUP = 32


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
