"""``qkv_attention``: multi-head causal self-attention straight from a fused q/k/v projection.

GPT-2's ``c_attn`` makes one (B, T, 3C) array ``[q | k | v]``; the textbook path then splits
it, reshapes and transposes each piece to (B, H, T, D), runs attention, and transposes the
result back to (B, T, C) with a copy. This op does all of that as one graph node, with views:

    q, k, v = views of qkv (B, T, 3, H, D) as (B, H, T, D)      (no copies; BLAS takes strides)
    P = softmax(q k^T * scale + causal mask)                     (B, H, T, T), in place
                                                    (float32 with numba: one compiled loop a row)
    y = P v   written into a (B, T, H, D) buffer                 == (B, T, C) without a transpose

Backward (the rules of ``scaled_dot_product_attention``), with g = dL/dy viewed as (B, H, T, D):

    dv = P^T g,   dS = P * (g v^T - rowsum(g * y)),   dq = dS k * scale,   dk = dS^T q * scale

dq, dk, dv are written straight into the three slices of one (B, T, 3C) gradient, which is
exactly what the ``c_attn`` linear's backward wants (no zero-filled gradient per slice, no sum).

>>> from scratchllm import Tensor
>>> y = qkv_attention(Tensor(xp.ones((2, 5, 12), dtype=xp.float32)), n_head=2)
>>> y.shape
(2, 5, 4)
"""
import math

from ...autograd.tensor import make_result
from ...backend import xp
from ...kernels import kernels
from ._util import as_float_tensor, row_sums
from ._threads import chunk_edges, pooled, run_chunks
from .dropout import dropout_mask

_BLOCK, _MAX_BLOCKS = 64, 4  # causal row blocks: at least 64 query rows each, at most 4 blocks
_EXP_SAFE = 80.0  # |score| < 80: exp(score) neither overflows nor underflows to 0, even in float32
_MASKS: dict = {}  # (n, dtype) -> (n, n) 0/1 array, 1 on and below the diagonal (keys a query may see)


def _lower(n: int, dtype):
    m = _MASKS.get((n, dtype))
    if m is None:
        m = _MASKS[(n, dtype)] = xp.tril(xp.ones((n, n), dtype=dtype))
    return m


def _heads(a, B, T, H, D):
    """(B, T, 3C) -> the three (B, H, T, D) views q, k, v."""
    a5 = a.reshape(B, T, 3, H, D)
    return [a5[:, :, i].transpose(0, 2, 1, 3) for i in range(3)]


def _row_blocks(T: int, causal: bool, dropout_p: float):
    """Query-row blocks (r0, r1): under a causal mask block i needs keys 0..r1 only.

    With 4 blocks the scores cover 5/8 of the full T x T square (the masked upper triangle is
    mostly never computed); short sequences (and dropout, whose random draws must match the
    full square) use one block.
    """
    if not causal or dropout_p > 0.0 or T < 2 * _BLOCK:
        return [(0, T)]
    n = min(_MAX_BLOCKS, T // _BLOCK)
    edges = [round(T * i / n) for i in range(n + 1)]
    return list(zip(edges[:-1], edges[1:]))


def _softmax_rows_(S, r0: int, causal: bool, bounded: bool):
    """Softmax over the last axis of the score block S (..., r1 - r0, r1), in place.

    ``bounded``: every score is known to lie in (-80, 80) (|q| |k| < 80, Cauchy-Schwarz), so
    exp needs no max shift (softmax is shift-invariant): exp, mask, sum, scale is 4 passes
    instead of 6. Otherwise the usual mask to -inf, subtract the row max, exp.
    """
    n = S.shape[-2]
    if bounded:
        xp.exp(S, out=S)
        if causal:
            S[..., r0:] *= _lower(n, S.dtype)                         # only the diagonal square is masked
    else:
        if causal:
            xp.copyto(S[..., r0:], -xp.inf, where=_lower(n, S.dtype) == 0)
        S -= S.max(axis=-1, keepdims=True)
        xp.exp(S, out=S)
    s = row_sums(S.reshape(-1, S.shape[-1])).reshape(S.shape[:-1] + (1,))
    xp.reciprocal(s, out=s)
    S *= s


def _bounded(qs, k) -> bool:
    """Whether |q . k| < 80 for every query row of ``qs`` and key row of ``k`` (b, H, T, D)."""
    if qs.size == 0:
        return True
    q2 = xp.einsum("bhtd,bhtd->bht", qs, qs).max(axis=-1)            # (b, H) largest |q|^2
    k2 = xp.einsum("bhtd,bhtd->bht", k, k).max(axis=-1)
    return bool((q2 * k2).max() < _EXP_SAFE ** 2)


def qkv_attention(qkv, n_head: int, is_causal: bool = True, dropout_p: float = 0.0, scale=None, generator=None):
    """Attention over the heads packed in ``qkv`` (B, T, 3C) -> (B, T, C) (heads concatenated).

    Same result as splitting ``qkv`` into q, k, v, viewing each as (B, n_head, T, C // n_head),
    calling ``scaled_dot_product_attention(q, k, v, is_causal=..., dropout_p=...)`` and
    transposing back; one op with no copies of q, k, v or of the output.
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
    Q, K, V = _heads(X, B, T, H, D)                                 # (B, H, T, D) views
    blocks = _row_blocks(T, is_causal, dropout_p)
    S_end = (lambda r1: r1) if is_causal else (lambda r1: T)        # keys a row block may see

    Y = xp.empty((B, T, H, D), dtype=X.dtype)
    Yh = Y.transpose(0, 2, 1, 3)                                    # (B, H, T, D) view of the output
    edges = chunk_edges(B, parallel=dropout_p == 0.0 and pooled(X.size))  # dropout draws stay in order
    probs = [[None] * len(blocks) for _ in edges[1:]]               # [chunk][row block] -> (P, P', mask)
    k = kernels() if X.dtype == xp.float32 and X.size else None     # compiled softmax (one loop a row)

    def forward_rows(c, b0, b1):                                    # batch rows b0:b1 (one pool thread)
        qs = Q[b0:b1] * X.dtype.type(scale)                         # temporary
        bounded = k is None and _bounded(qs, K[b0:b1])
        for j, (r0, r1) in enumerate(blocks):
            e = S_end(r1)
            P = xp.matmul(qs[:, :, r0:r1], K[b0:b1, :, :e].swapaxes(-1, -2))  # (b, H, r1 - r0, e) scores
            if k is not None:
                k.softmax_rows(P.reshape(-1, e), r1 - r0, r0, is_causal)
            else:
                _softmax_rows_(P, r0, is_causal, bounded)
            drop, Pd = None, P
            if dropout_p > 0.0:
                drop = dropout_mask(P.shape, dropout_p, P.dtype, generator)
                Pd = P * drop
            xp.matmul(Pd, V[b0:b1, :, :e], out=Yh[b0:b1, :, r0:r1])
            probs[c][j] = (P, Pd, drop)

    run_chunks(forward_rows, edges)

    def backward(g):
        G = g.reshape(B, T, H, D).transpose(0, 2, 1, 3)              # (B, H, T, D) view
        dX = xp.empty_like(X)
        dQ, dK, dV = _heads(dX, B, T, H, D)
        rowdot = xp.einsum("bthd,bthd->bth", g.reshape(Y.shape), Y)  # rowsum(dP * P) == rowsum(g * y)
        rowdot = rowdot.transpose(0, 2, 1)[..., None]               # (B, H, T, 1)

        def backward_rows(c, b0, b1):
            for j in range(len(blocks) - 1, -1, -1):                # the block that sees all keys first
                (r0, r1), first = blocks[j], j == len(blocks) - 1
                P, Pd, drop = probs[c][j]
                e = S_end(r1)
                Gi = G[b0:b1, :, r0:r1]
                _into(dV[b0:b1, :, :e], Pd.swapaxes(-1, -2), Gi, first)   # dv = P'^T g
                dS = xp.matmul(Gi, V[b0:b1, :, :e].swapaxes(-1, -2))      # dP', (b, H, r1 - r0, e)
                if drop is not None:
                    dS *= drop
                dS -= rowdot[b0:b1, :, r0:r1]
                dS *= P
                xp.matmul(dS, K[b0:b1, :, :e], out=dQ[b0:b1, :, r0:r1])
                _into(dK[b0:b1, :, :e], dS.swapaxes(-1, -2), Q[b0:b1, :, r0:r1], first)
            dQ[b0:b1] *= scale
            dK[b0:b1] *= scale

        run_chunks(backward_rows, edges)
        return (dX,)

    return make_result(Y.reshape(B, T, C), (x,), backward, "qkv_attention")


def _into(out, a, b, assign: bool):
    """out = a @ b (assign) or out += a @ b."""
    if assign:
        xp.matmul(a, b, out=out)
    else:
        out += xp.matmul(a, b)
