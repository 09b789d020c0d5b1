"""Adam and AdamW: moment estimates with bias correction.

The update per parameter at step ``t`` (1, 2, ...), in torch.optim.Adam's order:

    p = p * (1 - lr * weight_decay)                 (AdamW: decoupled decay)
    g = g + weight_decay * p                        (Adam: L2 penalty in the gradient)
    m = m + (1 - beta1) * (g - m)                   (first moment, torch's lerp)
    v = beta2 * v + (1 - beta2) * g * g             (second moment)
    v_max = max(v_max, v)                           (amsgrad: use v_max below instead of v)
    p = p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

Everything runs in place on ``p.data`` and the moments, with NumPy ``out=`` temporaries, so a
float32 model stays float32 and no step allocates parameter-sized arrays after the first.
With numba installed (``scratchllm.kernels``) the update is one compiled loop per parameter
(no temporaries; the same arithmetic in the same order, so the same bits); amsgrad and
non-contiguous parameters keep the NumPy code.
"""
from __future__ import annotations

from typing import NamedTuple

from .. import parallel
from ..backend import xp
from ..kernels import kernels
from .optimizer import Optimizer


def adam_reference(param, grad, m, v, t: int, lr: float, beta1: float, beta2: float, eps: float,
                   weight_decay: float, decoupled: bool):
    """The plain update (llm.c's ``gpt2_update``), new arrays -> (param, m, v); the fast path
    below (``Adam.step``) computes the same numbers in place, in torch's order, on all cores.

    >>> p, m, v = adam_reference(p, g, m, v, t=1, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
    ...                          weight_decay=0.1, decoupled=True)    # doctest: +SKIP
    """
    if weight_decay and not decoupled:
        grad = grad + weight_decay * param                # Adam: L2 penalty in the gradient
    m = beta1 * m + (1 - beta1) * grad                    # first moment
    v = beta2 * v + (1 - beta2) * grad * grad             # second moment
    m_hat = m / (1 - beta1 ** t)                          # bias corrections
    v_hat = v / (1 - beta2 ** t)
    if weight_decay and decoupled:
        param = param * (1 - lr * weight_decay)           # AdamW: decoupled decay
    return param - lr * m_hat / (xp.sqrt(v_hat) + eps), m, v


class AdamStep(NamedTuple):
    """The scalars of one update of one parameter."""
    t: float
    lr: float
    beta1: float
    beta2: float
    eps: float
    weight_decay: float
    amsgrad: bool
    maximize: bool


class Adam(Optimizer):
    """``Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False)``.

    ``weight_decay`` here is an L2 penalty added to the gradient; use ``AdamW`` for decoupled decay.
    """

    _decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, *, maximize: bool = False):
        if lr < 0.0:
            raise ValueError(f"invalid learning rate: {lr}")
        if eps < 0.0:
            raise ValueError(f"invalid epsilon value: {eps}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"invalid beta parameters: {betas} (each must be in [0, 1))")
        if weight_decay < 0.0:
            raise ValueError(f"invalid weight_decay value: {weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize))

    def _init_state(self, p, amsgrad: bool) -> dict:
        state = {"step": xp.array(0.0, dtype=xp.float32),
                 "exp_avg": xp.zeros_like(p.data), "exp_avg_sq": xp.zeros_like(p.data)}
        if amsgrad:
            state["max_exp_avg_sq"] = xp.zeros_like(p.data)
        return state

    def step(self) -> None:
        """One update of every parameter that has a gradient (others are skipped).

        The elementwise update runs on every core: each large parameter is cut into the same
        number of flat ranges (``chunk_edges``), small ones go whole to one range each; every
        element gets the same arithmetic whatever the split, so results do not depend on the
        number of cores.
        """
        if any(p.data.__class__ is not xp.ndarray for g in self.param_groups for p in g["params"]):
            from ..nn.functional.cuda_ops import adam_step     # parameters on a GPU: one CUDA kernel each
            return adam_step(self, self._decoupled)
        jobs, total = [], 0
        k = kernels()
        compiled = {id(p) for g in self.param_groups for p in g["params"]
                    if p.grad is not None and self._compilable(k, p, g["amsgrad"])}
        self._reserve([(p, g["maximize"] or (g["weight_decay"] != 0 and not self._decoupled))
                       for g in self.param_groups for p in g["params"]
                       if p.grad is not None and id(p) not in compiled])
        for group in self.param_groups:
            lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
            weight_decay, amsgrad, maximize = group["weight_decay"], group["amsgrad"], group["maximize"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state.get(p)
                if state is None:
                    state = self.state[p] = self._init_state(p, amsgrad)
                elif amsgrad and "max_exp_avg_sq" not in state:
                    state["max_exp_avg_sq"] = xp.zeros_like(p.data)
                state["step"] += 1
                t = float(state["step"])
                hyper = AdamStep(t, lr, beta1, beta2, eps, weight_decay, amsgrad, maximize)
                jobs.append(self._compiled_job(k, p, state, hyper) if id(p) in compiled
                            else self._job(p, state, hyper))
                total += p.data.size
        if not jobs:
            return
        n_chunks = len(parallel.chunk_edges(total, total >= parallel.UPDATE_POOL_MIN)) - 1

        def chunk(i, _a, _b):
            for j, (update, arrays, flat, hyper) in enumerate(jobs):
                n = arrays[0].size
                if flat and n >= parallel.PARAM_SPLIT_MIN:
                    lo, hi = n * i // n_chunks, n * (i + 1) // n_chunks
                    update(*(x if x is None else x[lo:hi] for x in arrays), *hyper)
                elif j % n_chunks == i:
                    update(*arrays, *hyper)

        parallel.run_chunks(chunk, list(range(n_chunks + 1)))

    def _compilable(self, k, p, amsgrad: bool) -> bool:
        """Whether the compiled loop can update ``p``: kernels present, no amsgrad, a contiguous
        float32/float64 parameter whose gradient and moments (if any yet) have its dtype and shape."""
        like = [p.grad.data] + [a for a in (self.state.get(p) or {}).values() if a.ndim]
        return (k is not None and not amsgrad and p.data.dtype.char in "fd" and p.data.flags.c_contiguous
                and all(a.dtype == p.data.dtype and a.shape == p.data.shape for a in like)
                and all(a.flags.c_contiguous for a in like[1:]))

    def _compiled_job(self, k, p, state, hyper):
        """(update, arrays, flat, hyper) for the compiled loop: flat views, scalars in the dtype."""
        t, lr, beta1, beta2, eps, weight_decay, _, maximize = hyper
        dt = p.data.dtype.type
        decay = 1 - lr * weight_decay if self._decoupled and weight_decay != 0 else 1
        l2 = weight_decay if not self._decoupled else 0
        scalars = (dt(1 - beta1), dt(beta2), dt(1 - beta2), dt(decay), dt(l2), bool(maximize),
                   dt(lr / (1 - beta1 ** t)), dt((1 - beta2 ** t) ** 0.5), dt(eps))
        g = p.grad.data
        arrays = (p.data.reshape(-1), (g if g.flags.c_contiguous else xp.ascontiguousarray(g)).reshape(-1),
                  state["exp_avg"].reshape(-1), state["exp_avg_sq"].reshape(-1))
        return k.adam_update, arrays, True, scalars

    def _job(self, p, state, hyper):
        """(update, arrays, flat, hyper) for the NumPy code: the update's arrays, flattened when
        every one can be (views, no copies)."""
        param = p.data
        m, v, vmax = state["exp_avg"], state["exp_avg_sq"], state.get("max_exp_avg_sq") if hyper.amsgrad else None
        grad = p.grad.data
        if grad.shape != param.shape:
            grad = xp.broadcast_to(grad, param.shape)
        tmp0 = self._own_tmp(param, 0)                       # jobs run at once: each has its own scratch
        tmp1 = self._own_tmp(param, 1) if hyper.maximize or (hyper.weight_decay != 0 and not self._decoupled) else None
        arrays = (param, grad, m, v, vmax, tmp0, tmp1)
        flat = all(x is None or x.flags.c_contiguous for x in (param, m, v, vmax))
        if flat:
            arrays = tuple(None if x is None else x.reshape(-1) for x in arrays[:1]) + \
                tuple(None if x is None else (x.reshape(-1) if x.flags.c_contiguous else xp.ravel(x))
                      for x in arrays[1:])
        return self._update_arrays, arrays, flat, hyper

    def _own_tmp(self, like, slot: int):
        """Scratch shaped like ``like``, disjoint from every other job's in this step (reused across steps)."""
        key = ("adam", like.dtype.str, slot)
        start = self._offsets.get(key, 0)
        self._offsets[key] = start + like.size
        return self._scratch[key][start:start + like.size].reshape(like.shape)

    def _reserve(self, params) -> None:
        """Size the per-step scratch (one region per parameter and slot) before any job takes a view.

        ``params``: (parameter, needs the second slot) pairs."""
        need = {}
        for p, second in params:
            for slot in ((0, 1) if second else (0,)):
                key = ("adam", p.data.dtype.str, slot)
                need[key] = need.get(key, 0) + p.data.size
        for key, n in need.items():
            buf = self._scratch.get(key)
            if buf is None or buf.size < n:
                self._scratch[key] = xp.empty(n, dtype=xp.dtype(key[1]))
        self._offsets = {}

    def _update_arrays(self, param, grad, m, v, vmax, tmp, tmp1, t, lr, beta1, beta2, eps, weight_decay,
                       amsgrad, maximize):
        """The update on matching arrays (whole parameters or the same range of each), all in place."""
        if maximize:
            grad = xp.negative(grad, out=tmp1)
        if weight_decay != 0:
            if self._decoupled:
                param *= 1 - lr * weight_decay
            else:
                g2 = xp.multiply(param, weight_decay, out=tmp)   # (tmp1 may hold -grad)
                grad = xp.add(grad, g2, out=tmp1)
        # m <- m + (1 - beta1) * (g - m)
        xp.subtract(grad, m, out=tmp)
        tmp *= 1 - beta1
        m += tmp
        # v <- beta2 * v + (1 - beta2) * g * g
        v *= beta2
        xp.multiply(grad, grad, out=tmp)
        tmp *= 1 - beta2
        v += tmp
        if amsgrad:
            v = xp.maximum(vmax, v, out=vmax)
        step_size = lr / (1 - beta1 ** t)
        bias_correction2_sqrt = (1 - beta2 ** t) ** 0.5
        # denom = sqrt(v) / sqrt(bc2) + eps ; p <- p - step_size * m / denom
        xp.sqrt(v, out=tmp)
        tmp /= bias_correction2_sqrt
        tmp += eps
        xp.divide(m, tmp, out=tmp)
        tmp *= step_size
        param -= tmp


class AdamW(Adam):
    """``AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False)``.

    Weight decay is decoupled from the gradient: ``p *= 1 - lr * weight_decay`` before the
    Adam step (Loshchilov & Hutter), which is what GPT-style training uses.
    """

    _decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, maximize=maximize)
