"""The fused ops on a GPU: what ``layer_norm``, ``gelu``, ``cross_entropy``, ``embedding``,
``dropout``, ``linear`` and the attentions run when their input is a CuPy array.

Each NumPy op checks its input's device at its entry and hands a GPU tensor to the function of
the same name here; the math is the same (forward and backward side by side), the arrays are
CuPy's, the products go to cuBLAS and the rest to the kernels of ``kernels/cuda_kernels.py``.
Nothing here copies to the host inside a training step (``tests/device`` counts): ids and
targets that live on the GPU are not range-checked (that would need their values on the host);
host ids are checked before they are copied over.
"""
import math

import numpy as np

from ...amp import autocast_dtype
from ...autograd.random import default_generator
from ...autograd.tensor import Tensor, make_result
from ...device import check_same_device, cupy, is_device_array
from ...errors import ScratchLLMError
from ...kernels import cuda_kernels as ck


def _rows(X, normalized_shape, who):
    ns = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if X.shape[X.ndim - len(ns):] != ns:
        raise ValueError(f"{who}: normalized_shape {ns} does not match the trailing dims of input shape {X.shape}")
    return cupy().ascontiguousarray(X).reshape(-1, math.prod(ns)), ns


def _norm(x, normalized_shape, weight, bias, eps, center, who):
    X = x.data
    check_same_device(who, X, *(p.data for p in (weight, bias) if p is not None))
    x2d, ns = _rows(X, normalized_shape, who)
    w = weight.data.reshape(-1) if weight is not None else None
    b = bias.data.reshape(-1) if bias is not None else None
    y, xhat, rstd = ck.norm_forward(x2d, w, b, eps, center)
    parents = (x,) + tuple(p for p in (weight, bias) if p is not None)

    def backward(g):
        dx, dw, db = ck.norm_backward(g.reshape(xhat.shape), xhat, rstd, w, center, x.requires_grad)
        out = [dx.reshape(X.shape) if dx is not None else None]
        if weight is not None:
            out.append(dw.reshape(ns))
        if bias is not None:
            out.append(db.reshape(ns))
        return tuple(out)

    return make_result(y.reshape(X.shape), parents, backward, who)


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    return _norm(x, normalized_shape, weight, bias, eps, True, "layer_norm")


def rms_norm(x, normalized_shape, weight=None, eps=1e-6):
    return _norm(x, normalized_shape, weight, None, eps, False, "rms_norm")


def gelu_tanh(a):
    """GPT-2's GELU: one elementwise kernel each way, saving only x."""
    X = a.data
    return make_result(ck.gelu_tanh_forward(X), (a,), lambda g: (ck.gelu_tanh_backward(X, g),), "gelu")


def linear(x, weight, bias=None):
    """x (..., in) @ W.T (out, in) + b: cuBLAS GEMMs both ways (batch folded into rows). Under
    ``sl.amp.autocast`` the three products take float16 inputs, or bfloat16 ones (uint16 bits, cuBLAS
    gemmEx with float32 accumulation); results and gradients stay float32 (the master weights')."""
    X, W = x.data, weight.data
    check_same_device("linear", X, W, None if bias is None else bias.data)
    if W.ndim != 2 or X.shape[-1] != W.shape[1]:
        raise ValueError(f"linear: input of shape {X.shape} does not match weight of shape {W.shape} "
                         f"(expected input (..., {W.shape[-1]}) and weight (out_features, in_features))")
    x2d = X.reshape(-1, X.shape[-1])                       # (N, in)
    mode = autocast_dtype() if X.dtype == W.dtype == np.float32 else None   # sl.amp: low-precision products
    if mode == "bfloat16":
        x2d, W = ck.to_bf16(x2d), ck.to_bf16(W)            # bfloat16 bits (uint16), rounded to nearest even
        out = ck.matmul_bf16(x2d, W, trans_b=True)          # (N, out) float32
    elif mode == "float16":
        x2d, W = x2d.astype(np.float16), W.astype(np.float16)
        out = (x2d @ W.T).astype(np.float32)
    else:
        out = x2d @ W.T                                     # (N, out)
    if bias is not None:
        out += bias.data
    parents = (x, weight) if bias is None else (x, weight, bias)

    def backward(g):
        g2d = g.reshape(-1, g.shape[-1])                    # (N, out)
        if mode == "bfloat16":
            gb = ck.to_bf16(g2d)
            dx = ck.matmul_bf16(gb, W) if x.requires_grad else None                   # (N, in)
            dw = ck.matmul_bf16(gb, x2d, trans_a=True) if weight.requires_grad else None   # (out, in)
        else:
            if mode == "float16":
                g2d = g2d.astype(np.float16)
            dx = (g2d @ W).astype(X.dtype, copy=False) if x.requires_grad else None
            dw = (g2d.T @ x2d).astype(X.dtype, copy=False) if weight.requires_grad else None
        dx = dx.reshape(X.shape) if dx is not None else None
        if bias is None:
            return dx, dw
        return dx, dw, (g.reshape(-1, g.shape[-1]).sum(axis=0) if bias.requires_grad else None)

    return make_result(out.reshape(X.shape[:-1] + (W.shape[0],)), parents, backward, "linear")


def _device_ids(ids, num, who):
    """Integer ids on the GPU: host ids checked in range then copied; GPU ids taken as they are."""
    cp = cupy()
    a = ids.data if isinstance(ids, Tensor) else ids
    if not is_device_array(a):
        import numpy as np
        a = np.asarray(a)
        if a.dtype.kind not in "iu":
            raise TypeError(f"{who}: ids must be integers, got dtype {a.dtype}")
        if a.size and (a.min() < 0 or a.max() >= num):
            raise IndexError(f"{who}: ids must lie in [0, {num}), got values in [{a.min()}, {a.max()}]")
        return cp.asarray(a)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{who}: ids must be integers, got dtype {a.dtype}")
    return a


def embedding(ids, weight):
    """Rows of W picked by ids; backward is a scatter-add (cupyx.scatter_add, atomics), no one-hot."""
    W = weight.data
    idx = _device_ids(ids, W.shape[0], "embedding")
    check_same_device("embedding", idx, W)
    out = W[idx]

    def backward(g):
        import cupyx
        dw = cupy().zeros_like(W)
        cupyx.scatter_add(dw, idx.reshape(-1), g.reshape(-1, W.shape[1]))
        return (dw,)

    return make_result(out, (weight,), backward, "embedding")


def cross_entropy(x, target, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """Fused cross-entropy over logits (..., C): one row kernel forward, one elementwise backward."""
    cp = cupy()
    X = x.data
    C = X.shape[-1]
    t = target.data if isinstance(target, Tensor) else target
    t = t if is_device_array(t) else cp.asarray(t)
    check_same_device("cross_entropy", X, t)
    if t.dtype.kind not in "iu" or t.shape != X.shape[:-1]:
        raise ValueError(f"cross_entropy: expected integer targets of shape {X.shape[:-1]} for logits of shape "
                         f"{X.shape} (classes last), got targets of shape {t.shape} and dtype {t.dtype}")
    x2d = cp.ascontiguousarray(X).reshape(-1, C)
    t1 = t.reshape(-1).astype(cp.int64, copy=False)
    eps = float(label_smoothing)
    loss, mz = ck.cross_entropy_rows(x2d, t1, ignore_index, eps)
    valid = (t1 != ignore_index).astype(X.dtype)               # (N,) 1 / 0
    n_valid = valid.sum()                                       # on the GPU: no sync
    if reduction == "mean":
        out = loss.sum() / n_valid                              # nan if every row is ignored, as torch
    elif reduction == "sum":
        out = loss.sum()
    else:
        out = loss.reshape(t.shape)

    def backward(g):
        coef = valid * (g.reshape(-1) if reduction == "none" else g)
        if reduction == "mean":
            coef = coef / cp.maximum(n_valid, 1)                # every row ignored: gradient 0, as torch
        dx = ck.cross_entropy_backward(x2d, t1, mz, cp.ascontiguousarray(coef, dtype=X.dtype), eps)
        return (dx.reshape(X.shape),)

    return make_result(out, (x,), backward, "cross_entropy")


def dropout_mask(shape, p, dtype, generator=None):
    """0 / (1/(1-p)) with P(0) = p, drawn on the GPU from a seed that ``generator`` gives (one
    host draw per mask: the same scratchllm seed, the same masks)."""
    cp = cupy()
    seed = int((generator or default_generator()).rng.integers(0, 2 ** 63 - 1))
    u = cp.random.RandomState(seed).random_sample(shape, dtype=cp.float32)
    return (u >= p).astype(dtype) * dtype.type(1.0 / (1.0 - p))


# ---------------------------------------------------------------- attention
def _attend(Q, K, V, groups, causal, mask, dropout_p, generator, scale, r0=0):
    """out = dropout(softmax(scale Q K^T [+ mask])) V on Q (..., Hk, G*T, D), K/V (..., Hk, S, D)
    -> (out, backward(g) -> (dq, dk, dv)); the G query heads of a kv head are rows of one product.
    ``r0``: the position of the first query row (a decoder's cache holds r0 earlier keys)."""
    cp = cupy()
    P = cp.matmul(Q, K.swapaxes(-1, -2))                       # (..., Hk, G*T, S) raw scores
    R, S = P.shape[-2:]
    T = R // groups
    if mask is None:
        ck.softmax_rows_(P, T=T, r0=r0, causal=causal, scale=scale)
    else:
        P *= scale
        P5 = P.reshape(P.shape[:-2] + (groups, T, S))
        if mask.dtype == bool:
            P5[...] = cp.where(mask, P5, -cp.inf)
        else:
            P5 += mask
        ck.softmax_rows_(P, T=T)
    drop, Pd = None, P
    if dropout_p > 0.0:
        drop = dropout_mask(P.shape, dropout_p, P.dtype, generator)
        Pd = P * drop
    out = cp.matmul(Pd, V)                                      # (..., Hk, G*T, Dv)

    def backward(g, want_q=True, want_k=True, want_v=True):
        dv = cp.matmul(Pd.swapaxes(-1, -2), g) if want_v else None
        dS = cp.matmul(g, V.swapaxes(-1, -2))                   # dP'
        if drop is not None:
            dS *= drop
        dS -= (g * out).sum(axis=-1, keepdims=True)             # rowsum(dP * P) == rowsum(g * out)
        dS *= P
        dS *= scale                                             # gradient of the raw scores
        dq = cp.matmul(dS, K) if want_q else None
        dk = cp.matmul(dS.swapaxes(-1, -2), Q) if want_k else None
        return dq, dk, dv

    return out, backward


def attend_rows(qs, k, v, groups, r0=0, causal=True):
    """The decoder's attention on GPU arrays (no graph): qs (B, Hk, G*T, D) already times the scale,
    k, v (B, Hk, S, D) the cache so far, query rows at positions r0 .. r0+T-1 -> (B, Hk, G*T, D)."""
    return _attend(qs, k, v, groups, causal, None, 0.0, None, 1.0, r0)[0]


def scaled_dot_product_attention(q, k, v, mask, dropout_p, is_causal, scale, groups, generator):
    """torch's op on GPU tensors (shapes and mask already checked by the NumPy entry point)."""
    Qa, Ka, Va = q.data, k.data, v.data
    check_same_device("scaled_dot_product_attention", Qa, Ka, Va, mask)
    Hq, T, D = Qa.shape[-3:]
    Hk = Ka.shape[-3]
    Qr = Qa.reshape(Qa.shape[:-3] + (Hk, groups * T, D))
    out, attend_backward = _attend(Qr, Ka, Va, groups, is_causal, mask, dropout_p, generator, scale)

    def backward(g):
        dq, dk, dv = attend_backward(g.reshape(out.shape), q.requires_grad, k.requires_grad, v.requires_grad)
        return (dq.reshape(Qa.shape) if dq is not None else None), dk, dv

    return make_result(out.reshape(Qa.shape[:-3] + (Hq, T, Va.shape[-1])), (q, k, v), backward, "sdpa")


def qkv_attention(x, n_head, is_causal, dropout_p, scale, generator):
    """GPT-2's packed (B, T, 3C) -> (B, T, C) on the GPU (shape already checked)."""
    cp = cupy()
    X = x.data
    B, T, C3 = X.shape
    C = C3 // 3
    H, D = n_head, C // n_head
    X5 = X.reshape(B, T, 3, H, D)
    Q, K, V = (cp.ascontiguousarray(X5[:, :, i].transpose(0, 2, 1, 3)) for i in range(3))  # (B, H, T, D)
    out, attend_backward = _attend(Q, K, V, 1, is_causal, None, dropout_p, generator, scale)
    Y = out.transpose(0, 2, 1, 3).reshape(B, T, C)

    def backward(g):
        dq, dk, dv = attend_backward(cp.ascontiguousarray(g.reshape(B, T, H, D).transpose(0, 2, 1, 3)))
        dX = cp.empty((B, T, 3, H, D), dtype=X.dtype)
        for i, d in enumerate((dq, dk, dv)):
            dX[:, :, i] = d.transpose(0, 2, 1, 3)
        return (dX.reshape(X.shape),)

    return make_result(Y, (x,), backward, "qkv_attention")


# ---------------------------------------------------------------- optimizers and clipping
def adam_step(opt, decoupled: bool) -> None:
    """``Adam.step`` / ``AdamW.step`` for parameters on a GPU: one elementwise kernel each
    (float32; other dtypes: the same math in CuPy expressions). The step count stays on the host."""
    cp = cupy()
    for group in opt.param_groups:
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        weight_decay, maximize = group["weight_decay"], group["maximize"]
        if group["amsgrad"]:
            raise ScratchLLMError("Adam(amsgrad=True) is not supported on a GPU yet")
        for p in group["params"]:
            if p.grad is None:
                continue
            state = opt.state.get(p)
            if state is None:
                state = opt.state[p] = opt._init_state(p, False)
            for key in ("exp_avg", "exp_avg_sq"):                   # moments follow the parameter
                if not is_device_array(state[key]) or state[key].device != p.data.device:
                    state[key] = cp.asarray(state[key])
            state["step"] += 1
            t = float(state["step"])                                # a host number: no sync
            g = p.grad.data
            if g.shape != p.data.shape:
                g = cp.broadcast_to(g, p.data.shape)
            fn = ck.adam_update if p.data.dtype.char == "f" and p.data.flags.c_contiguous else ck.adam_reference
            fn(p.data, g, state["exp_avg"], state["exp_avg_sq"], t, lr, beta1, beta2, eps, weight_decay,
               decoupled, maximize)


def clip_grad_norm_(grads, max_norm: float, norm_type: float):
    """The gradients (GPU arrays) scaled in place to a joint norm <= max_norm, without a sync:
    the norm and the factor stay on the GPU; returns the norm as a 0-d GPU array (``float()`` of
    it waits for the GPU)."""
    cp = cupy()
    if norm_type == math.inf:
        total = cp.max(cp.stack([cp.abs(g).max() for g in grads]))
    elif norm_type == 2.0:                                   # as the CPU: each squared norm a dot product
        total = cp.sqrt(sum(cp.dot(g.reshape(-1), g.reshape(-1)).astype(cp.float64) for g in grads))
    else:
        total = sum(cp.sum(cp.abs(g.astype(cp.float64)) ** norm_type) for g in grads) ** (1.0 / norm_type)
    coef = cp.minimum(max_norm / (total + 1e-6), 1.0)
    for g in grads:
        g *= coef.astype(g.dtype)
    return total
