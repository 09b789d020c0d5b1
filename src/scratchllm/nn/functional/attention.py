"""``scaled_dot_product_attention``: one op, forward and backward fused.

    S = (q * scale) @ k^T  (+ mask),  P = softmax(S),  P' = dropout(P),  out = P' @ v

Backward, from the saved P (and dropout mask), with g = dL/dout:

    dv = P'^T @ g
    dP = (g @ v^T) * dropmask
    dS = P * (dP - rowsum(g * out))      (rowsum(dP * P) == rowsum(g * out), as FlashAttention)
    dq = dS @ k * scale,   dk = dS^T @ (q * scale)

Grouped-query attention (n_kv_heads < n_heads, ``enable_gqa=True``): q (B, Hq, T, D) is
viewed, without a copy, as (B, Hkv, G*T, D) where G = Hq // Hkv: the G query heads that
share one kv head become extra rows of one bigger matrix product, so k and v are never
repeated, and dk, dv come out already summed over the group.
"""
import math

from ...autograd.tensor import Tensor, make_result
from ...backend import xp
from ._util import as_float_tensor
from .dropout import dropout_mask


def softmax_lastdim_(s):
    """Softmax over the last axis, in place; returns s."""
    s -= s.max(axis=-1, keepdims=True)
    xp.exp(s, out=s)
    s /= s.sum(axis=-1, keepdims=True)
    return s


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
    Hk, S = K.shape[-3], K.shape[-2]
    if Hq != Hk:
        if not enable_gqa or Hq % Hk:
            raise ValueError(f"scaled_dot_product_attention: {Hq} query heads but {Hk} key/value heads; "
                             f"pass enable_gqa=True with the query heads a multiple of the kv heads")
    G = Hq // Hk
    batch = Q.shape[:-3]
    scale = 1.0 / math.sqrt(D) if scale is None else float(scale)

    qs = (Q * Q.dtype.type(scale)).reshape(batch + (Hk, G * T, D))  # (..., Hk, G*T, D) no copy
    P = qs @ K.swapaxes(-1, -2)                                     # (..., Hk, G*T, S) scores
    P5 = P.reshape(batch + (Hk, G, T, S))
    if is_causal:
        xp.copyto(P5, -xp.inf, where=xp.triu(xp.ones((T, S), dtype=bool), 1))
    elif attn_mask is not None:
        m = attn_mask.data if isinstance(attn_mask, Tensor) else xp.asarray(attn_mask)
        m5 = _mask5(m, Q.shape, Hk, G)
        if m.dtype == bool:
            xp.copyto(P5, -xp.inf, where=~m5)
        else:
            P5 += m5
    softmax_lastdim_(P)                                             # P = softmax(S), in place
    drop = None
    if dropout_p > 0.0:
        drop = dropout_mask(P.shape, dropout_p, P.dtype, generator)
        Pd = P * drop
    else:
        Pd = P
    out = Pd @ V                                                    # (..., Hk, G*T, Dv)

    def backward(g):
        g4 = g.reshape(out.shape)
        dv = Pd.swapaxes(-1, -2) @ g4 if v.requires_grad else None  # (..., Hk, S, Dv)
        dq = dk = None
        if q.requires_grad or k.requires_grad:
            dS = g4 @ V.swapaxes(-1, -2)                            # dP', (..., Hk, G*T, S)
            if drop is not None:
                dS *= drop
            rowdot = xp.einsum("...d,...d->...", g4, out)[..., None]
            dS -= rowdot
            dS *= P
            if q.requires_grad:
                dq = dS @ K
                dq *= scale
                dq = dq.reshape(Q.shape)
            if k.requires_grad:
                dk = dS.swapaxes(-1, -2) @ qs                       # (..., Hk, S, D)
        return dq, dk, dv

    return make_result(out.reshape(batch + (Hq, T, V.shape[-1])), (q, k, v), backward, "sdpa")
