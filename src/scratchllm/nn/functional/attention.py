"""Attention: one forward and one backward, used by every attention in scratchllm.

    S = (q * scale) @ k^T  (+ mask),  P = softmax(S),  P' = dropout(P),  out = P' @ v

Backward, from the saved P (and dropout mask), with g = dL/dout:

    dv = P'^T @ g
    dP = (g @ v^T) * dropmask
    dS = P * (dP - rowsum(g * out))      (rowsum(dP * P) == rowsum(g * out), as FlashAttention)
    dq = dS @ k * scale,   dk = dS^T @ q * scale

``attention_forward`` / ``attention_backward`` hold those lines on plain arrays for one block of
query rows; ``attention_reference`` is the same math in one screen, no tricks (tested equal).
Three callers:

- ``scaled_dot_product_attention``: torch's op (masks, dropout, grouped-query heads).
- ``qkv_attention``: GPT-2's fused ``c_attn`` output (B, T, 3C) straight to (B, T, C) with
  views (no split/transpose copies), cut into batch ranges for the thread pool and, under a
  causal mask, into query-row blocks that skip most of the masked upper triangle (fast path).
- the raw-array decoder (models/decode.py): new queries at positions r0.. over a KV cache.

Grouped-query attention (n_kv_heads < n_heads): the G = Hq / Hkv query heads that share a kv
head become G*T rows of one matrix product with that head's k and v (viewed, never repeated),
so dk and dv come out already summed over the group.

>>> from scratchllm import Tensor
>>> qkv_attention(Tensor(xp.ones((2, 5, 12), dtype=xp.float32)), n_head=2).shape
(2, 5, 4)
"""
import math

from ...autograd.ops.reduce import softmax_
from ...autograd.tensor import Tensor, make_result
from ...backend import xp
from ...kernels import kernels
from ...parallel import chunk_edges, pooled, run_chunks
from . import cuda_ops
from ._util import as_float_tensor
from .dropout import dropout_mask

_BLOCK, _MAX_BLOCKS = 64, 4  # causal row blocks: at least 64 query rows each, at most 4 blocks
_EXP_SAFE = 80.0  # |score| < 80: exp(score) neither overflows nor underflows to 0, even in float32
_MASKS: dict = {}  # (T, S) -> bool (T, S), True above the diagonal (keys a query may not see)


def _upper(T: int, S: int):
    m = _MASKS.get((T, S))
    if m is None:
        m = _MASKS[(T, S)] = xp.triu(xp.ones((T, S), dtype=bool), 1)
    return m


def _bounded(qs, k) -> bool:
    """Whether |q . k| < 80 for every query row of ``qs`` (..., R, D) and key row of ``k`` (..., S, D)."""
    if qs.size == 0 or k.size == 0:
        return True
    q2 = xp.einsum("...td,...td->...t", qs, qs).max(axis=-1)         # (...) largest |q|^2 per head
    k2 = xp.einsum("...td,...td->...t", k, k).max(axis=-1)
    return bool((q2 * k2).max() < _EXP_SAFE ** 2)


def attention_softmax_(S, r0: int = 0, causal: bool = False, mask=None, bounded: bool = False):
    """Softmax of scores S (..., T, keys) in place, for queries at positions r0 .. r0+T-1.

    ``causal``: query r0+i sees keys 0 .. r0+i. ``mask``: bool (True = may attend) or additive,
    broadcastable to S. ``bounded``: every score is known to lie in (-80, 80), so exp needs no max
    shift (softmax is shift-invariant). Float32 with the kernels: one compiled loop a row.
    """
    T, keys = S.shape[-2:]
    k = kernels() if S.dtype == xp.float32 and S.size and mask is None and S.flags.c_contiguous else None
    if k is not None:
        k.softmax_rows(S.reshape(-1, keys), T, r0, causal)
        return S
    if causal:
        xp.copyto(S[..., r0:], -xp.inf, where=_upper(T, keys - r0))
    elif mask is not None:
        if mask.dtype == bool:
            xp.copyto(S, -xp.inf, where=~mask)
        else:
            S += mask
    return softmax_(S, shift=not bounded)


def attention_forward(qs, k, v, out, groups: int = 1, r0: int = 0, causal: bool = False, mask=None,
                      dropout_p: float = 0.0, generator=None, bounded: bool = False):
    """out = dropout(softmax(qs k^T)) v for one block of query rows, written into ``out``.

    qs (..., R, D) queries already times the scale, R = groups * T (grouped heads as rows);
    k (..., S, D), v (..., S, Dv); out (..., R, Dv). ``mask`` broadcastable to (..., groups, T, S).
    ``bounded``: see ``attention_softmax_``. -> (P, P', dropmask), saved for the backward.
    """
    P = xp.matmul(qs, k.swapaxes(-1, -2))                           # (..., R, S) scores
    R, S = P.shape[-2:]
    attention_softmax_(P.reshape(P.shape[:-2] + (groups, R // groups, S)), r0, causal, mask, bounded)
    drop, Pd = None, P
    if dropout_p > 0.0:
        drop = dropout_mask(P.shape, dropout_p, P.dtype, generator)
        Pd = P * drop
    xp.matmul(Pd, v, out=out)
    return P, Pd, drop


def attention_backward(g, q, k, v, P, Pd, drop, rowdot, dq=None, dk=None, dv=None, accumulate: bool = False):
    """Gradients of one block into dq (..., R, D), dk (..., S, D), dv (..., S, Dv) (None: not
    wanted). dk and dv are added to when ``accumulate`` (later row blocks see the same keys).
    ``rowdot`` = rowsum(g * out) (..., R, 1). dq and dk come out unscaled: dq = dS k, dk = dS^T q;
    the caller multiplies by the scale (pass q already scaled to get dk scaled)."""
    if dv is not None:
        _into(dv, Pd.swapaxes(-1, -2), g, accumulate)              # dv = P'^T g
    if dq is None and dk is None:
        return
    dS = xp.matmul(g, v.swapaxes(-1, -2))                           # dP', (..., R, S)
    if drop is not None:
        dS *= drop
    dS -= rowdot
    dS *= P                                                         # dS = P * (dP - rowsum(g * out))
    if dq is not None:
        xp.matmul(dS, k, out=dq)
    if dk is not None:
        _into(dk, dS.swapaxes(-1, -2), q, accumulate)


def _into(out, a, b, accumulate: bool):
    """out = a @ b, or out += a @ b."""
    if accumulate:
        out += xp.matmul(a, b)
    else:
        xp.matmul(a, b, out=out)


def attention_reference(q, k, v, causal: bool = True):
    """Plain causal attention on arrays q, k, v (..., T, D) -> (out, backward(g) -> (dq, dk, dv))."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    s = q @ k.swapaxes(-1, -2) * scale                              # (..., T, T)
    if causal:
        s = xp.where(xp.tril(xp.ones(s.shape[-2:], dtype=bool)), s, -xp.inf)
    p = xp.exp(s - s.max(axis=-1, keepdims=True))
    p = p / p.sum(axis=-1, keepdims=True)
    out = p @ v

    def backward(g):
        dv = p.swapaxes(-1, -2) @ g
        dp = g @ v.swapaxes(-1, -2)
        ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))      # softmax's Jacobian times dp
        return ds @ k * scale, ds.swapaxes(-1, -2) @ q * scale, dv

    return out, backward


def _mask5(m, q_shape, Hk, G):
    """Broadcast an attention mask (..., T, S) onto the (..., Hk, G, T, S) score view."""
    while m.ndim < len(q_shape):
        m = m[None]
    mh = m.shape[-3]
    if mh == 1:
        return m[..., None, :, :]
    if mh == Hk * G:
        return m.reshape(m.shape[:-3] + (Hk, G) + m.shape[-2:])
    raise ValueError(f"scaled_dot_product_attention: attn_mask head dim {mh} is neither 1 nor the number "
                     f"of query heads {Hk * G} (mask shape {m.shape})")


def scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p: float = 0.0, is_causal: bool = False,
                                 scale=None, enable_gqa: bool = False, generator=None):
    """Attention on q (..., Hq, T, D), k (..., Hkv, S, D), v (..., Hkv, S, Dv) -> (..., Hq, T, Dv).

    ``attn_mask``: bool (True = may attend) or additive float, broadcastable to (..., Hq, T, S).
    ``is_causal``: query i sees keys 0..i (top-left aligned, as torch). ``dropout_p`` drops
    attention probabilities with a seeded ``generator``.
    """
    q, k, v = as_float_tensor(q), as_float_tensor(k, q), as_float_tensor(v, q)
    Q, K, V = q.data, k.data, v.data
    if Q.ndim < 3 or K.ndim != Q.ndim or V.ndim != Q.ndim or K.shape[-1] != Q.shape[-1] or K.shape[-2] != V.shape[-2]:
        raise ValueError(f"scaled_dot_product_attention: shapes q {Q.shape}, k {K.shape}, v {V.shape} do not fit "
                         f"(expected q (B, Hq, T, D), k (B, Hkv, S, D), v (B, Hkv, S, Dv))")
    if is_causal and attn_mask is not None:
        raise ValueError("scaled_dot_product_attention: give either attn_mask or is_causal=True, not both")
    Hq, T, D = Q.shape[-3:]
    Hk = K.shape[-3]
    if Hq != Hk and (not enable_gqa or Hq % Hk):
        raise ValueError(f"scaled_dot_product_attention: {Hq} query heads but {Hk} key/value heads; "
                         f"pass enable_gqa=True with the query heads a multiple of the kv heads")
    G = Hq // Hk
    batch = Q.shape[:-3]
    scale = 1.0 / math.sqrt(D) if scale is None else float(scale)
    mask = None
    if attn_mask is not None:
        m = attn_mask.data if isinstance(attn_mask, Tensor) else xp.asarray(attn_mask)
        mask = _mask5(m, Q.shape, Hk, G)
    if Q.__class__ is not xp.ndarray:                      # on a GPU: nn/functional/cuda_ops.py
        return cuda_ops.scaled_dot_product_attention(q, k, v, mask, dropout_p, is_causal, scale, G, generator)

    qs = (Q * Q.dtype.type(scale)).reshape(batch + (Hk, G * T, D))  # (..., Hk, G*T, D) no copy
    out = xp.empty(batch + (Hk, G * T, V.shape[-1]), dtype=Q.dtype)
    P, Pd, drop = attention_forward(qs, K, V, out, G, causal=is_causal, mask=mask, dropout_p=dropout_p,
                                    generator=generator, bounded=False)

    def backward(g):
        g4 = g.reshape(out.shape)
        rowdot = xp.einsum("...d,...d->...", g4, out)[..., None]
        dq = xp.empty_like(qs) if q.requires_grad else None
        dk = xp.empty(K.shape, dtype=Q.dtype) if k.requires_grad else None
        dv = xp.empty(V.shape, dtype=Q.dtype) if v.requires_grad else None
        attention_backward(g4, qs, K, V, P, Pd, drop, rowdot, dq, dk, dv)   # qs: dk comes out scaled
        if dq is not None:
            dq *= scale
            dq = dq.reshape(Q.shape)
        return dq, dk, dv

    return make_result(out.reshape(batch + (Hq, T, V.shape[-1])), (q, k, v), backward, "sdpa")


# ---------------------------------------------------------------- fast path: GPT-2's packed q|k|v
def _heads(a, B, T, H, D):
    """(B, T, 3C) -> the three (B, H, T, D) views q, k, v."""
    a5 = a.reshape(B, T, 3, H, D)
    return [a5[:, :, i].transpose(0, 2, 1, 3) for i in range(3)]


def _row_blocks(T: int, causal: bool, dropout_p: float):
    """Query-row blocks (r0, r1): under a causal mask block i needs keys 0..r1 only. With 4
    blocks the scores cover 5/8 of the T x T square; short sequences and dropout (whose draws
    must match the full square) use one block."""
    if not causal or dropout_p > 0.0 or T < 2 * _BLOCK:
        return [(0, T)]
    n = min(_MAX_BLOCKS, T // _BLOCK)
    edges = [round(T * i / n) for i in range(n + 1)]
    return list(zip(edges[:-1], edges[1:]))


def qkv_attention(qkv, n_head: int, is_causal: bool = True, dropout_p: float = 0.0, scale=None, generator=None):
    """Attention over the heads packed in ``qkv`` (B, T, 3C) -> (B, T, C) (heads concatenated).

    Same result as splitting ``qkv`` into q, k, v (B, n_head, T, C // n_head), calling
    ``scaled_dot_product_attention`` and transposing back; one op with no copies of q, k, v or
    the output, dq|dk|dv written straight into the slices of one (B, T, 3C) gradient.
    """
    x = as_float_tensor(qkv)
    X = x.data
    if X.ndim != 3 or X.shape[-1] % (3 * n_head):
        raise ValueError(f"qkv_attention: expected qkv of shape (B, T, 3 * C) with C a multiple of "
                         f"n_head={n_head}, got {X.shape}")
    B, T, C3 = X.shape
    C = C3 // 3
    H, D = n_head, C // n_head
    scale = 1.0 / math.sqrt(D) if scale is None else float(scale)
    if X.__class__ is not xp.ndarray:                      # on a GPU: nn/functional/cuda_ops.py
        return cuda_ops.qkv_attention(x, n_head, is_causal, dropout_p, scale, generator)
    Q, K, V = _heads(X, B, T, H, D)                                 # (B, H, T, D) views
    blocks = _row_blocks(T, is_causal, dropout_p)
    keys = (lambda r1: r1) if is_causal else (lambda r1: T)         # keys a row block may see

    Y = xp.empty((B, T, H, D), dtype=X.dtype)
    Yh = Y.transpose(0, 2, 1, 3)                                    # (B, H, T, D) view of the output
    edges = chunk_edges(B, parallel=dropout_p == 0.0 and pooled(X.size))  # dropout draws stay in order
    saved = [[None] * len(blocks) for _ in edges[1:]]               # [chunk][row block] -> (P, P', mask)

    def forward_rows(c, b0, b1):                                    # batch rows b0:b1 (one pool thread)
        qs = Q[b0:b1] * X.dtype.type(scale)                         # temporary
        bounded = (X.dtype != xp.float32 or kernels() is None) and _bounded(qs, K[b0:b1])  # NumPy softmax
        for j, (r0, r1) in enumerate(blocks):
            e = keys(r1)
            saved[c][j] = attention_forward(qs[:, :, r0:r1], K[b0:b1, :, :e], V[b0:b1, :, :e],
                                            Yh[b0:b1, :, r0:r1], r0=r0, causal=is_causal,
                                            dropout_p=dropout_p, generator=generator, bounded=bounded)

    run_chunks(forward_rows, edges)

    def backward(g):
        G = g.reshape(B, T, H, D).transpose(0, 2, 1, 3)              # (B, H, T, D) view
        dX = xp.empty_like(X)
        dQ, dK, dV = _heads(dX, B, T, H, D)
        rowdot = xp.einsum("bthd,bthd->bth", g.reshape(Y.shape), Y)  # rowsum(dP * P) == rowsum(g * y)
        rowdot = rowdot.transpose(0, 2, 1)[..., None]               # (B, H, T, 1)

        def backward_rows(c, b0, b1):
            for j in range(len(blocks) - 1, -1, -1):                # the block that sees all keys first
                (r0, r1), e = blocks[j], keys(blocks[j][1])
                attention_backward(G[b0:b1, :, r0:r1], Q[b0:b1, :, r0:r1], K[b0:b1, :, :e], V[b0:b1, :, :e],
                                   *saved[c][j], rowdot[b0:b1, :, r0:r1], dQ[b0:b1, :, r0:r1],
                                   dK[b0:b1, :, :e], dV[b0:b1, :, :e], accumulate=j < len(blocks) - 1)
            dQ[b0:b1] *= scale
            dK[b0:b1] *= scale

        run_chunks(backward_rows, edges)
        return (dX,)

    return make_result(Y.reshape(B, T, C), (x,), backward, "qkv_attention")
