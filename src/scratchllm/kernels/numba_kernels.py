"""The numba loops behind ``kernels()`` (imported only when numba is installed).

Each function works on NumPy arrays in place, over the rows (or elements) it is given, so
the callers can cut the work into ranges for the thread pool exactly as their NumPy code
does (``nogil``: the loops run in parallel on Python threads). Float32 stays float32:
every constant is made in the input's dtype (``x.dtype.type(...)``) before it meets an element.

Norms (rows of x (N, D); ``center`` False gives RMSNorm):

    xhat = (x - mean) * rstd,  rstd = 1 / sqrt(mean((x - mean)^2) + eps),  y = xhat * w + b
    x - mean is computed as (x - m) - mean(x - m), m = mean(x): the second pass removes the
    rounding of m (x = [128.05922] * 3 in float32: m is 1 ulp off, and rstd ~ 1/sqrt(eps) made
    that 0.01 in the output). x - m goes through xhat in memory: with ``reassoc`` in one
    expression, LLVM folds (x - m) - shift into x - (m + shift), and m + shift rounds back to m.
    (The variance comes from the same pass: mean((c - shift)^2) = mean(c^2) - shift^2.)
    dx = rstd * (g w - mean(g w) - xhat * mean(g w xhat)),  dw = sum_n g xhat,  db = sum_n g

Adam: torch.optim.Adam's update, element by element, in the order and precision of the
NumPy code in ``optim/adam.py`` (no fast-math there, so both paths give the same bits).

tanh-GELU and the attention softmax (float32 only) use ``exp32``, an exp LLVM can vectorise.

Embedding backward: ``out[idx[i]] += rows[i]`` in the order of i, one pass (NumPy's sorted-run
code adds each id's rows in the same order, so the two paths give the same sums).
"""
import numpy as np
from numba import njit

# Reassociation lets LLVM vectorise the row sums; no contraction (FMA). Every row gets the same
# arithmetic in whichever range it falls, so results do not depend on how the rows are split.
# error_model="numpy": x / 0 gives inf as in NumPy; numba's default (Python's
# ZeroDivisionError) puts a branch in every division and stops vectorisation (Adam: 8x slower).
_SUMS = {"reassoc", "nsz"}


@njit(nogil=True, cache=True, fastmath=_SUMS, error_model="numpy")
def norm_forward(x, w, b, eps, center, out, xhat, rstd):
    """Rows of ``x`` (n, d) -> out, xhat (n, d) and rstd (n, 1); ``center`` False: no mean."""
    n, d = x.shape
    one, inv_d, eps = x.dtype.type(1), x.dtype.type(1.0 / d), x.dtype.type(eps)
    for i in range(n):
        shift = sq = x.dtype.type(0)
        if center:
            s = x[i, 0]
            for j in range(1, d):
                s += x[i, j]
            mean = s * inv_d
            s = x.dtype.type(0)
            for j in range(d):
                c = x[i, j] - mean
                xhat[i, j] = c                  # x - mean, stored: see the note above
                s += c
                sq += c * c
            shift = s * inv_d                   # the rounding of mean: centre once more
            var = sq * inv_d - shift * shift    # mean((c - shift)^2); shift is ~1 ulp of mean
            if var < 0:                         # round-off (nan stays nan)
                var = x.dtype.type(0)
        else:
            for j in range(d):
                sq += x[i, j] * x[i, j]
            var = sq * inv_d
        r = one / np.sqrt(var + eps)
        rstd[i, 0] = r
        for j in range(d):
            h = ((xhat[i, j] - shift) if center else x[i, j]) * r
            xhat[i, j] = h
            out[i, j] = h * w[j] + b[j]


@njit(nogil=True, cache=True, fastmath=_SUMS, error_model="numpy")
def norm_backward(g, xhat, rstd, w, center, want_dx, dx, dw, db):
    """For the rows of g, xhat (n, d), rstd (n, 1): dx (when ``want_dx``) and this range's share
    of the parameter gradients, dw = sum_n g xhat and db = sum_n g (the caller adds the shares)."""
    n, d = g.shape
    zero, inv_d = g.dtype.type(0), g.dtype.type(1.0 / d)
    for j in range(d):
        dw[j] = zero
        db[j] = zero
    for i in range(n):
        for j in range(d):
            dw[j] += g[i, j] * xhat[i, j]
            db[j] += g[i, j]
        if not want_dx:
            continue
        gw = g[i, 0] * w[0]
        mean_gw = gw
        mean_gwx = gw * xhat[i, 0]
        for j in range(1, d):
            gw = g[i, j] * w[j]
            mean_gw += gw
            mean_gwx += gw * xhat[i, j]
        mean_gw = mean_gw * inv_d if center else zero
        mean_gwx *= inv_d
        r = rstd[i, 0]
        for j in range(d):
            dx[i, j] = r * (g[i, j] * w[j] - mean_gw - xhat[i, j] * mean_gwx)


@njit(nogil=True, cache=True, error_model="numpy")
def adam_update(param, grad, m, v, beta1c, beta2, beta2c, decay, l2, maximize, step_size, bc2_sqrt, eps):
    """One Adam/AdamW step over flat arrays, in place. Scalars come in the arrays' dtype:
    ``beta1c`` = 1 - beta1, ``beta2c`` = 1 - beta2, ``decay`` = 1 - lr * weight_decay (AdamW,
    1 for none), ``l2`` = weight_decay (Adam's gradient penalty, 0 for none)."""
    for i in range(param.shape[0]):
        g = -grad[i] if maximize else grad[i]
        p = param[i]
        if decay != 1:
            p = p * decay
        if l2 != 0:
            g = g + p * l2
        mi = m[i] + (g - m[i]) * beta1c
        vi = v[i] * beta2 + (g * g) * beta2c
        m[i] = mi
        v[i] = vi
        denom = np.sqrt(vi) / bc2_sqrt + eps
        param[i] = p - (mi / denom) * step_size


# GELU, tanh form, float32 only: s = (1 + tanh u) / 2 is computed as the sigmoid 1 / (1 + exp(-2u))
# (the same number; no cancellation where s is tiny), with a vectorisable exp: NumPy's and libm's
# tanh / exp are one scalar call per element here (np.tanh: ~1.9 ns an element, the fused loop: ~1).
_GELU_C = 0.7978845608028654  # sqrt(2 / pi)
_GELU_K = 0.044715
# exp(z) = p(r) * 2^n, z = n ln2 + r, |r| <= ln2 / 2 (Cephes expf: ln2 in two parts, degree-7 p)
_LN2_HI, _LN2_LO = 0.693359375, -2.12194440e-4
_EXP_P = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1)


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def exp32(z):
    """exp(z) for a float32 z, in a form LLVM vectorises (inlined into the loops below)."""
    f = np.float32
    z = f(-88.0) if z < f(-88.0) else (f(88.5) if z > f(88.5) else z)  # 2^n below: 0 at -88, inf at 88.5
    n = np.floor(z * f(1.4426950408889634) + f(0.5))
    r = z - n * f(_LN2_HI) - n * f(_LN2_LO)
    p = (((((f(_EXP_P[0]) * r + f(_EXP_P[1])) * r + f(_EXP_P[2])) * r + f(_EXP_P[3])) * r
          + f(_EXP_P[4])) * r + f(_EXP_P[5])) * (r * r) + r + f(1.0)
    return p * np.int32((np.int32(n) + np.int32(127)) << np.int32(23)).view(np.float32)  # 2^n: exponent bits


@njit(nogil=True, cache=True, error_model="numpy")
def gelu_tanh_forward(x, e, out):
    """out = x s, s = sigmoid(2u) = 1 / (1 + e), e = exp(-2u), u = C (x + K x^3), over flat
    float32 arrays; e is saved for backward."""
    f = np.float32
    a3, a1, one = f(-2 * _GELU_K * _GELU_C), f(-2 * _GELU_C), f(1.0)
    for i in range(x.shape[0]):
        xi = x[i]
        ei = exp32((xi * xi * a3 + a1) * xi)
        e[i] = ei
        out[i] = xi / (one + ei)


@njit(nogil=True, cache=True, error_model="numpy")
def gelu_tanh_backward(x, e, g, dx):
    """dx = g (s + s (1 - s) x (2C + 6CK x^2)) over flat float32 arrays (1 - tanh^2 u = 4 s (1 - s)).

    1 - s is e s where s >= 1/2 (no cancellation), 1 - s itself where s < 1/2 (e may be inf there)."""
    f = np.float32
    b2, b0, one = f(6 * _GELU_K * _GELU_C), f(2 * _GELU_C), f(1.0)
    for i in range(x.shape[0]):
        xi, ei = x[i], e[i]
        si = one / (one + ei)
        rest = one - si if ei > one else ei * si
        dx[i] = g[i] * (si + si * rest * ((xi * xi * b2 + b0) * xi))


@njit(nogil=True, cache=True, fastmath=_SUMS, error_model="numpy")
def softmax_rows(S, n, r0, causal):
    """Row softmax of float32 attention scores S (rows, keys), in place, shifted by the row max.

    Rows come in groups of ``n`` queries (one head's block, query positions r0 .. r0 + n - 1);
    with ``causal`` the query at position q sees keys 0..q and the rest of its row becomes 0.
    """
    f = np.float32
    rows, keys = S.shape
    for i in range(rows):
        see = min(r0 + i % n + 1, keys) if causal else keys
        m = S[i, 0]
        for j in range(1, see):
            m = S[i, j] if S[i, j] > m else m
        total = f(0.0)
        for j in range(see):
            e = exp32(S[i, j] - m)
            S[i, j] = e
            total += e
        inv = f(1.0) / total
        for j in range(see):
            S[i, j] *= inv
        for j in range(see, keys):
            S[i, j] = f(0.0)


@njit(nogil=True, cache=True, error_model="numpy")
def rope_rotate(x, cos, sin, half, out):
    """RoPE over x, out (P, T, G, D) float32 with cos, sin (T, D/2): the pair (a, b) of every
    vector at position t -> (a cos - b sin, a sin + b cos), with the NumPy code's roundings.
    ``half``: pairs (i, i + D/2) (HF ``rotate_half``), else (2i, 2i + 1) (Meta)."""
    P, T, G, D = x.shape
    h = D // 2
    for p in range(P):
        for t in range(T):
            for g in range(G):
                for i in range(h):
                    ia = i if half else 2 * i
                    ib = i + h if half else 2 * i + 1
                    a, b, c, s = x[p, t, g, ia], x[p, t, g, ib], cos[t, i], sin[t, i]
                    out[p, t, g, ia] = a * c - b * s
                    out[p, t, g, ib] = a * s + b * c


@njit(nogil=True, cache=True, error_model="numpy")
def scatter_add_rows(out, idx, rows):
    """out[idx[i]] += rows[i] for i = 0, 1, ...: out (V, D), idx (N,) ids in [0, V), rows (N, D)."""
    for i in range(idx.shape[0]):
        r = idx[i]
        for d in range(rows.shape[1]):
            out[r, d] += rows[i, d]


@njit(nogil=True, cache=True, error_model="numpy")
def relu2_forward(x, out):
    """out = max(x, 0)^2 over flat arrays (the backward needs only x)."""
    zero = x.dtype.type(0)
    for i in range(x.shape[0]):
        r = x[i] if x[i] > zero or x[i] != x[i] else zero    # as np.maximum: NaN stays, -0 -> 0
        out[i] = r * r


@njit(nogil=True, cache=True, error_model="numpy")
def relu2_backward(x, g, dx):
    """dx = g * 2 max(x, 0) over flat arrays (NumPy's order: (2 r) g)."""
    zero, two = x.dtype.type(0), x.dtype.type(2)
    for i in range(x.shape[0]):
        r = x[i] if x[i] > zero or x[i] != x[i] else zero    # as np.maximum: NaN stays, -0 -> 0
        dx[i] = (r * two) * g[i]
