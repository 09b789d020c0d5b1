"""CUDA kernels (CuPy) for the fused ops, on plain CuPy arrays: each beside its plain-CuPy reference.

Used by ``nn/functional/cuda_ops.py`` when a tensor lives on a GPU. float32 runs the kernels
below; any other dtype (float64 for gradient checks) runs the reference, the same math as
plain CuPy array expressions. Every kernel is built on first use (CuPy compiles and caches it),
never at import time, and this module imports CuPy only when one is asked for.

    row kernels (one thread block per row, ``_BLOCK`` threads, warp-shuffle sums):
        norm_forward / norm_backward     LayerNorm (center) and RMSNorm over rows (N, D)
        softmax_rows_                    softmax of (scaled, optionally causal) rows, in place
        cross_entropy_rows               log-sum-exp and loss per row, targets / ignore_index / smoothing
    elementwise kernels:
        gelu_tanh_forward / _backward    GPT-2's GELU (saves only x)
        cross_entropy_backward           coef * (softmax - onehot (1 - eps) - eps / C)
        adam_update                      Adam / AdamW, one pass over p, g, m, v
        to_bf16 / bf16_to_f32            float32 <-> bfloat16 bits (uint16), round to nearest even
    cuBLAS:
        matmul_bf16                      gemmEx: bfloat16 inputs, float32 accumulation and output

>>> # on a GPU:  y, xhat, rstd = norm_forward(cupy.ones((4, 8), "f"), None, None, 1e-5, True)
"""
import functools
import math

_BLOCK = 256          # threads per row block (a multiple of 32: whole warps for the shuffles)

_ROW_SOURCE = r"""
#define SL_INF __int_as_float(0x7f800000)          /* +inf and NaN without <cmath> (NVRTC) */
#define SL_NAN __int_as_float(0x7fc00000)

__device__ __forceinline__ float block_sum(float v, float* buf) {
    // every thread gets the sum of v over the block (blockDim.x a multiple of 32, <= 1024)
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
    __syncthreads();                               // buf may still be read by the previous call
    if (lane == 0) buf[wid] = v;
    __syncthreads();
    float t = (lane < nw) ? buf[lane] : 0.f;
    for (int o = 16; o > 0; o >>= 1) t += __shfl_xor_sync(0xffffffff, t, o);
    return t;
}

__device__ __forceinline__ float block_max(float v, float* buf) {
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffff, v, o));
    __syncthreads();
    if (lane == 0) buf[wid] = v;
    __syncthreads();
    float t = (lane < nw) ? buf[lane] : -SL_INF;
    for (int o = 16; o > 0; o >>= 1) t = fmaxf(t, __shfl_xor_sync(0xffffffff, t, o));
    return t;
}

// LayerNorm (center = 1) or RMSNorm (center = 0) of row blockIdx.x of x (N, D)
extern "C" __global__ void norm_forward(const float* x, const float* w, const float* b, float* y,
                                        float* xhat, float* rstd, int D, float eps, int center,
                                        int has_w, int has_b) {
    __shared__ float buf[32];
    long long row = blockIdx.x;
    const float* xr = x + row * D;
    float s = 0.f;
    if (center) for (int i = threadIdx.x; i < D; i += blockDim.x) s += xr[i];
    float mean = center ? block_sum(s, buf) / D : 0.f, shift = 0.f;
    if (center) {                                  // the mean of x - mean, subtracted apart from mean
        float s2 = 0.f;                            // (mean + shift would round back to mean): with it
        for (int i = threadIdx.x; i < D; i += blockDim.x) s2 += xr[i] - mean;   // x = [128.05922] * 3
        shift = block_sum(s2, buf) / D;            // gives exactly the bias, as torch does
    }
    float v = 0.f;
    for (int i = threadIdx.x; i < D; i += blockDim.x) { float d = (xr[i] - mean) - shift; v += d * d; }
    float rs = rsqrtf(block_sum(v, buf) / D + eps);
    for (int i = threadIdx.x; i < D; i += blockDim.x) {
        float h = ((xr[i] - mean) - shift) * rs;
        xhat[row * D + i] = h;
        y[row * D + i] = h * (has_w ? w[i] : 1.f) + (has_b ? b[i] : 0.f);
    }
    if (threadIdx.x == 0) rstd[row] = rs;
}

// dx = rstd * (dxhat - [mean(dxhat)] - xhat * mean(dxhat * xhat)),  dxhat = g * w
extern "C" __global__ void norm_backward(const float* g, const float* xhat, const float* rstd,
                                         const float* w, float* dx, int D, int center, int has_w) {
    __shared__ float buf[32];
    long long row = blockIdx.x;
    const float* gr = g + row * D;
    const float* hr = xhat + row * D;
    float s1 = 0.f, s2 = 0.f;
    for (int i = threadIdx.x; i < D; i += blockDim.x) {
        float dh = gr[i] * (has_w ? w[i] : 1.f);
        s1 += dh; s2 += dh * hr[i];
    }
    float m1 = center ? block_sum(s1, buf) / D : 0.f;
    float m2 = block_sum(s2, buf) / D;
    float rs = rstd[row];
    for (int i = threadIdx.x; i < D; i += blockDim.x) {
        float dh = gr[i] * (has_w ? w[i] : 1.f);
        dx[row * D + i] = rs * (dh - m1 - hr[i] * m2);
    }
}

// softmax of row blockIdx.x of s (rows, n) in place, of scale * s; causal: the row r of a block of
// T query rows at positions r0.. sees keys 0 .. r0 + (r % T) (the rest become 0)
extern "C" __global__ void softmax_rows(float* s, int n, int T, int r0, int causal, float scale) {
    __shared__ float buf[32];
    long long row = blockIdx.x;
    float* r = s + row * n;
    int lim = causal ? min(n, r0 + (int)(row % T) + 1) : n;
    float m = -SL_INF;
    for (int i = threadIdx.x; i < lim; i += blockDim.x) m = fmaxf(m, r[i] * scale);
    m = block_max(m, buf);
    float z = 0.f;
    for (int i = threadIdx.x; i < lim; i += blockDim.x) { float e = __expf(r[i] * scale - m); r[i] = e; z += e; }
    float inv = 1.f / block_sum(z, buf);
    for (int i = threadIdx.x; i < n; i += blockDim.x) r[i] = (i < lim) ? r[i] * inv : 0.f;
}

// per row of logits x (N, C): m = max x, z = sum exp(x - m) (kept for the backward);
// loss = (1-eps)(log z - (x[t] - m)) + (eps/C)(C log z - sum (x - m)): every term relative to m,
// so logits ~1e30 keep their digits; loss 0 where t == ignore; NaN where t is out of range
extern "C" __global__ void cross_entropy_rows(const float* x, const long long* t, float* m_out, float* z_out,
                                              float* loss, int C, long long ignore, float eps) {
    __shared__ float buf[32];
    long long row = blockIdx.x;
    const float* xr = x + row * C;
    float m = -SL_INF;
    for (int i = threadIdx.x; i < C; i += blockDim.x) m = fmaxf(m, xr[i]);
    m = block_max(m, buf);
    float z = 0.f, sx = 0.f;
    for (int i = threadIdx.x; i < C; i += blockDim.x) { z += __expf(xr[i] - m); sx += xr[i] - m; }
    z = block_sum(z, buf);
    if (eps != 0.f) sx = block_sum(sx, buf);
    if (threadIdx.x == 0) {
        float log_z = logf(z);
        long long tt = t[row];
        m_out[row] = m;
        z_out[row] = z;
        if (tt == ignore) loss[row] = 0.f;
        else if (tt < 0 || tt >= C) loss[row] = SL_NAN;
        else loss[row] = (1.f - eps) * (log_z - (xr[tt] - m)) + (eps != 0.f ? (eps / C) * (C * log_z - sx) : 0.f);
    }
}
"""


def _cp():
    from ..device import cupy
    return cupy()


@functools.lru_cache(maxsize=None)
def _row_kernels():
    cp = _cp()
    module = cp.RawModule(code=_ROW_SOURCE, options=("--use_fast_math",))
    return {name: module.get_function(name) for name in
            ("norm_forward", "norm_backward", "softmax_rows", "cross_entropy_rows")}


def _launch(name, n_rows, args):
    if n_rows:
        _row_kernels()[name]((int(n_rows),), (_BLOCK,), args)


def _f32(*arrays) -> bool:
    """Whether the kernels apply: every given array float32 and C-contiguous."""
    return all(a is None or (a.dtype.char == "f" and a.flags.c_contiguous) for a in arrays)


def _arg(a, stand_in):
    """An array argument, or ``stand_in`` (never read: its has_ flag is 0) for a missing one."""
    return a if a is not None else stand_in


# ---------------------------------------------------------------- LayerNorm / RMSNorm
def norm_reference(x2d, w, b, eps, center):
    """(y, xhat, rstd) in plain CuPy."""
    xc = x2d - x2d.mean(axis=1, keepdims=True) if center else x2d
    if center:
        xc = xc - xc.mean(axis=1, keepdims=True)                           # mean's rounding removed
    rstd = 1.0 / (((xc * xc).mean(axis=1, keepdims=True) + eps) ** 0.5)       # (N, 1)
    xhat = xc * rstd
    y = xhat * (1.0 if w is None else w) + (0.0 if b is None else b)
    return y.astype(x2d.dtype, copy=False), xhat, rstd


def norm_forward(x2d, w, b, eps, center):
    """LayerNorm (``center``) / RMSNorm of rows x2d (N, D) -> (y, xhat, rstd (N, 1))."""
    cp = _cp()
    if not _f32(x2d, w, b):
        return norm_reference(x2d, w, b, eps, center)
    N, D = x2d.shape
    y, xhat, rstd = cp.empty_like(x2d), cp.empty_like(x2d), cp.empty((N, 1), dtype=x2d.dtype)
    _launch("norm_forward", N, (x2d, _arg(w, x2d), _arg(b, x2d), y, xhat, rstd, cp.int32(D),
                                cp.float32(eps), cp.int32(bool(center)), cp.int32(w is not None),
                                cp.int32(b is not None)))
    return y, xhat, rstd


def norm_backward(g2d, xhat, rstd, w, center, want_dx=True):
    """(dx or None, dw = sum_n g xhat, db = sum_n g) of the row normalisation."""
    cp = _cp()
    g2d = cp.ascontiguousarray(g2d)
    dx = None
    if want_dx:
        if _f32(g2d, xhat, rstd, w):
            dx = cp.empty_like(xhat)
            _launch("norm_backward", xhat.shape[0], (g2d, xhat, rstd, _arg(w, xhat), dx, cp.int32(xhat.shape[1]),
                                                     cp.int32(bool(center)), cp.int32(w is not None)))
        else:
            dxhat = g2d * (1.0 if w is None else w)
            dx = dxhat - (dxhat * xhat).mean(axis=1, keepdims=True) * xhat
            if center:
                dx -= dxhat.mean(axis=1, keepdims=True)
            dx *= rstd
    return dx, (g2d * xhat).sum(axis=0), g2d.sum(axis=0)


# ---------------------------------------------------------------- softmax (attention's)
def softmax_rows_(s, T=None, r0=0, causal=False, scale=1.0):
    """softmax(scale * s) over the last axis of a contiguous s (..., T, n), in place; ``causal``:
    row i of every T rows (at position r0 + i) sees keys 0 .. r0 + i. Returns s."""
    cp = _cp()
    n = s.shape[-1]
    T = T or (s.shape[-2] if s.ndim > 1 else 1)
    if not _f32(s):
        if scale != 1.0:
            s *= scale
        if causal:
            rows = cp.arange(s.shape[-2])[:, None] % T + r0
            s[...] = cp.where(cp.arange(n)[None, :] <= rows, s, -cp.inf)
        s -= s.max(axis=-1, keepdims=True)
        cp.exp(s, out=s)
        s /= s.sum(axis=-1, keepdims=True)
        return s
    _launch("softmax_rows", s.size // max(n, 1) if n else 0,
            (s, cp.int32(n), cp.int32(T), cp.int32(r0), cp.int32(bool(causal)), cp.float32(scale)))
    return s


# ---------------------------------------------------------------- cross-entropy
def cross_entropy_rows(x2d, t1, ignore_index, eps):
    """(loss per row (N,), (m, z)) of logits x2d (N, C) and int64 targets t1 (N,): m the row max,
    z = sum exp(x - m), what the backward needs (softmax = exp(x - m) / z)."""
    cp = _cp()
    N, C = x2d.shape
    if not _f32(x2d):
        m = x2d.max(axis=1, keepdims=True)
        z = cp.exp(x2d - m).sum(axis=1)
        log_z = cp.log(z)
        valid = t1 != ignore_index
        tc = cp.where(valid, t1, 0)
        picked = cp.take_along_axis(x2d, tc[:, None], axis=1)[:, 0] - m[:, 0]
        loss = (1.0 - eps) * (log_z - picked)
        if eps:
            loss += (eps / C) * (C * log_z - (x2d - m).sum(axis=1))
        bad = valid & ((t1 < 0) | (t1 >= C))
        loss = cp.where(valid, cp.where(bad, cp.nan, loss), 0.0).astype(x2d.dtype)
        return loss, (m[:, 0].astype(x2d.dtype), z.astype(x2d.dtype))
    loss, m, z = (cp.empty(N, dtype=x2d.dtype) for _ in range(3))
    _launch("cross_entropy_rows", N, (x2d, cp.ascontiguousarray(t1, dtype=cp.int64), m, z, loss, cp.int32(C),
                                      cp.int64(ignore_index), cp.float32(eps)))
    return loss, (m, z)


@functools.lru_cache(maxsize=None)
def _ce_backward_kernel():
    return _cp().ElementwiseKernel(
        "T x, raw T mx, raw T zs, raw int64 t, raw T coef, int64 C, T keep, T spread",
        "T dx",
        """long long row = i / C, col = i % C;
           T p = exp(x - mx[row]) / zs[row];
           dx = coef[row] * (p - (col == t[row] ? keep : (T)0) - spread);""",
        "scratchllm_ce_backward")


def cross_entropy_backward(x2d, t1, mz, coef, eps):
    """dx (N, C) = coef[:, None] * (softmax(x) - (1 - eps) onehot(t) - eps / C); coef 0 on ignored rows;
    ``mz`` = (m, z) of ``cross_entropy_rows``."""
    C = x2d.shape[1]
    dt = x2d.dtype.type
    return _ce_backward_kernel()(x2d, mz[0], mz[1], t1, coef, C, dt(1.0 - eps), dt(eps / C))


# ---------------------------------------------------------------- GELU (tanh form)
_C, _K = math.sqrt(2.0 / math.pi), 0.044715


@functools.lru_cache(maxsize=None)
def _gelu_kernels():
    cp = _cp()
    fwd = cp.ElementwiseKernel(
        "T x", "T y",
        f"T s = (T)1 / ((T)1 + exp((T)(-2 * {_C!r}) * (x + (T){_K!r} * x * x * x))); y = x * s;",
        "scratchllm_gelu_tanh_forward")
    bwd = cp.ElementwiseKernel(
        "T x, T g", "T dx",
        f"""T s = (T)1 / ((T)1 + exp((T)(-2 * {_C!r}) * (x + (T){_K!r} * x * x * x)));
            dx = g * (s + s * ((T)1 - s) * x * ((T)(2 * {_C!r}) + (T)(6 * {_C * _K!r}) * x * x));""",
        "scratchllm_gelu_tanh_backward")
    return fwd, bwd


def gelu_tanh_forward(x):
    """y = x s, s = 1 / (1 + exp(-2u)) = (1 + tanh u) / 2, u = C (x + K x^3) (as the NumPy op)."""
    return _gelu_kernels()[0](x)


def gelu_tanh_backward(x, g):
    """dy/dx * g = g (s + s (1 - s) x (2C + 6CK x^2)), s recomputed from x (nothing else saved)."""
    return _gelu_kernels()[1](x, g)


# ---------------------------------------------------------------- Adam / AdamW
@functools.lru_cache(maxsize=None)
def _adam_kernel():
    return _cp().ElementwiseKernel(
        "T g, T gsign, T decay, T l2, T one_m_b1, T b2, T one_m_b2, T step_size, T bc2_sqrt, T eps",
        "T p, T m, T v",
        """T gg = gsign * g + l2 * p;
           p = p * decay;
           m = m + one_m_b1 * (gg - m);
           v = b2 * v + one_m_b2 * gg * gg;
           p = p - step_size * m / (sqrt(v) / bc2_sqrt + eps);""",
        "scratchllm_adam_update")


def adam_update(p, g, m, v, t, lr, beta1, beta2, eps, weight_decay, decoupled, maximize):
    """One Adam (``decoupled`` False: L2 in the gradient) / AdamW step of p, m, v in place, in
    torch.optim's order (decay p; m += (1-b1)(g-m); v = b2 v + (1-b2) g^2; p -= lr/bc1 m/(sqrt(v)/sqrt(bc2)+eps))."""
    dt = p.dtype.type
    decay = 1 - lr * weight_decay if decoupled else 1.0
    l2 = 0.0 if decoupled else weight_decay
    _adam_kernel()(g, dt(-1.0 if maximize else 1.0), dt(decay), dt(l2), dt(1 - beta1), dt(beta2),
                   dt(1 - beta2), dt(lr / (1 - beta1 ** t)), dt((1 - beta2 ** t) ** 0.5), dt(eps), p, m, v)


def adam_reference(p, g, m, v, t, lr, beta1, beta2, eps, weight_decay, decoupled, maximize):
    """The same step in plain CuPy array expressions (tests compare the kernel with it)."""
    g = -g if maximize else g
    if decoupled:
        p *= 1 - lr * weight_decay
    else:
        g = g + weight_decay * p
    m += (1 - beta1) * (g - m)
    v *= beta2
    v += (1 - beta2) * g * g
    p -= (lr / (1 - beta1 ** t)) * m / ((v ** 0.5) / ((1 - beta2 ** t) ** 0.5) + eps)


# ---------------------------------------------------------------- bfloat16 (stored as uint16) and its GEMM
# CuPy has no bfloat16 dtype: a bfloat16 is kept as its 16 bits in a uint16 array, the top half of
# the float32 with the same value. float32 -> bfloat16 rounds to nearest, ties to even (add 0x7FFF
# plus the lowest kept bit, drop the low 16 bits; a carry into the exponent rounds up to the next
# binade or to inf, as it should); every NaN becomes 0x7FC0, a quiet NaN (torch's scalar rule; its
# vectorised CPU path writes 0xFFFF and CUDA's __float2bfloat16 0x7FFF: all NaNs). bfloat16 -> float32
# puts the bits back on top: exact.
_BF16_NAN = 0x7FC0


def bf16_reference(x):
    """float32 array -> bfloat16 bits (uint16), in plain array expressions (NumPy or CuPy).

    >>> import numpy as np; hex(int(bf16_reference(np.float32([1 + 2 ** -8]))[0]))   # a tie: to even
    '0x3f80'
    """
    from ..device import array_module
    m = array_module(x)
    u = m.ascontiguousarray(x, dtype=m.float32).view(m.uint32)
    r = ((u + (((u >> 16) & 1) + 0x7FFF)) >> 16).astype(m.uint16)     # (wraps only for a NaN, replaced below)
    return m.where((u & 0x7FFFFFFF) > 0x7F800000, m.uint16(_BF16_NAN), r)


def bf16_to_f32_reference(b):
    """bfloat16 bits (uint16) -> float32 (exact), in plain array expressions."""
    from ..device import array_module
    m = array_module(b)
    return (m.ascontiguousarray(b, dtype=m.uint16).astype(m.uint32) << 16).view(m.float32)


@functools.lru_cache(maxsize=None)
def _bf16_kernels():
    cp = _cp()
    to = cp.ElementwiseKernel(
        "float32 x", "uint16 y",
        f"""unsigned int u = __float_as_uint(x);
            y = (u & 0x7fffffffu) > 0x7f800000u ? (unsigned short){_BF16_NAN}
                                                 : (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);""",
        "scratchllm_f32_to_bf16")
    back = cp.ElementwiseKernel("uint16 b", "float32 y", "y = __uint_as_float(((unsigned int)b) << 16);",
                                "scratchllm_bf16_to_f32")
    return to, back


def to_bf16(x):
    """float32 CuPy array -> its bfloat16 bits (uint16, the same shape), one elementwise kernel."""
    if x.dtype.char != "f":
        raise TypeError(f"to_bf16: expected float32, got {x.dtype}")
    return _bf16_kernels()[0](x)


def bf16_to_f32(b):
    """bfloat16 bits (uint16 CuPy array) -> float32, one elementwise kernel."""
    return _bf16_kernels()[1](b)


def _cublas():
    try:
        from cupy_backends.cuda.libs import cublas
    except ImportError:                                  # an older CuPy layout
        from cupy.cuda import cublas
    return cublas


_CUDA_R_32F, _CUDA_R_16BF = 0, 14                        # cudaDataType_t (library_types.h)
_COMPUTE_32F, _GEMM_DEFAULT, _OP_N, _OP_T = 68, -1, 0, 1  # cuBLAS: float32 compute, default algorithm, ops


def matmul_bf16(a, b, trans_a=False, trans_b=False):
    """``op(a) @ op(b)`` in float32 from bfloat16 bits: a, b uint16 2-D CuPy arrays, ``op`` a
    transpose where asked; cuBLAS ``gemmEx`` with bfloat16 inputs and float32 accumulation and
    output (tensor cores). a (M, K) [or (K, M) with trans_a], b (K, N) [or (N, K)] -> (M, N).

    cuBLAS is column-major: a row-major (r, c) buffer is the column-major (c, r) matrix, its
    transpose. So C (M, N) row-major = C^T column-major = op(b)^T op(a)^T: b goes first."""
    cp = _cp()
    if a.dtype != cp.uint16 or b.dtype != cp.uint16 or a.ndim != 2 or b.ndim != 2:
        raise TypeError(f"matmul_bf16: expected 2-D uint16 (bfloat16 bits), got {a.dtype} {a.shape}, {b.dtype} {b.shape}")
    a, b = cp.ascontiguousarray(a), cp.ascontiguousarray(b)
    M, K = a.shape[::-1] if trans_a else a.shape
    K2, N = b.shape[::-1] if trans_b else b.shape
    if K != K2:
        raise ValueError(f"matmul_bf16: inner sizes differ: op(a) {(M, K)} @ op(b) {(K2, N)}")
    out = cp.empty((M, N), dtype=cp.float32)
    if out.size == 0 or K == 0:
        out.fill(0)
        return out
    import numpy
    one, zero = numpy.ones(1, numpy.float32), numpy.zeros(1, numpy.float32)    # alpha, beta (host pointers)
    cublas = _cublas()
    cublas.gemmEx(cp.cuda.device.get_cublas_handle(), _OP_T if trans_b else _OP_N, _OP_T if trans_a else _OP_N,
                  N, M, K, one.ctypes.data, b.data.ptr, _CUDA_R_16BF, b.shape[1], a.data.ptr, _CUDA_R_16BF,
                  a.shape[1], zero.ctypes.data, out.data.ptr, _CUDA_R_32F, N,
                  getattr(cublas, "CUBLAS_COMPUTE_32F", _COMPUTE_32F), _GEMM_DEFAULT)
    return out
