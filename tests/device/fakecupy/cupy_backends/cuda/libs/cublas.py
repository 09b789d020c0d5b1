"""The stand-in's cuBLAS: ``gemmEx`` as cuBLAS defines it, on the stand-in's buffers (host memory).

Column-major, as cuBLAS: C (m, n) = alpha op(A) op(B) + beta C, A of leading dimension lda, etc.;
the matrices are read from and written to the pointers given (``ndarray.data.ptr``), so a wrong
transpose flag, size or leading dimension in the caller gives wrong numbers here too. Data types
by cudaDataType code: 0 float32, 14 bfloat16 (uint16 bits, decoded exactly to float32).
"""
import ctypes

import numpy as _np

CUBLAS_OP_N, CUBLAS_OP_T = 0, 1
CUBLAS_COMPUTE_32F = 68
_TYPES = {0: _np.float32, 14: _np.uint16}
CALLS = [0]                                   # gemmEx calls so far (tests count them)


def _matrix(ptr, code, rows, cols, ld):
    """The column-major (rows, cols) matrix at ``ptr`` with leading dimension ld, as a NumPy view."""
    if ld < max(1, rows):
        raise ValueError(f"cuBLAS: leading dimension {ld} < rows {rows} (CUBLAS_STATUS_INVALID_VALUE)")
    dt = _np.dtype(_TYPES[code])
    buf = (ctypes.c_char * (dt.itemsize * ld * cols)).from_address(ptr)
    return _np.frombuffer(buf, dtype=dt).reshape(cols, ld)[:, :rows].T        # (rows, cols), a view


def _value(m, code):
    return (m.astype(_np.uint32) << 16).view(_np.float32) if code == 14 else m


def gemmEx(handle, transa, transb, m, n, k, alpha, A, Atype, lda, B, Btype, ldb, beta, C, Ctype, ldc,
           computeType, algo):
    CALLS[0] += 1
    if computeType != CUBLAS_COMPUTE_32F or Ctype != 0:
        raise ValueError("stand-in gemmEx: float32 compute and output only")
    a = _value(_matrix(A, Atype, *((m, k) if transa == CUBLAS_OP_N else (k, m)), lda), Atype)
    b = _value(_matrix(B, Btype, *((k, n) if transb == CUBLAS_OP_N else (n, k)), ldb), Btype)
    a = a if transa == CUBLAS_OP_N else a.T
    b = b if transb == CUBLAS_OP_N else b.T
    al = _np.frombuffer((ctypes.c_float * 1).from_address(alpha), dtype=_np.float32)[0]
    be = _np.frombuffer((ctypes.c_float * 1).from_address(beta), dtype=_np.float32)[0]
    c = _matrix(C, Ctype, m, n, ldc)
    c[...] = (al * (a.astype(_np.float64) @ b.astype(_np.float64)) + (be * c if be else 0)).astype(_np.float32)
