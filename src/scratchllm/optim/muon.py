"""Muon: momentum orthogonalised by a Newton-Schulz iteration, for 2-D weight matrices.

The published algorithm (Keller Jordan, "Muon: An optimizer for hidden layers in neural
networks", 2024; code: github.com/KellerJordan/Muon ``muon.py``, ``muon_update`` and
``zeropower_via_newtonschulz5``, the one modded-nanogpt's speedrun uses). Per matrix, per step:

    m = m + (1 - beta) * (g - m)                        momentum (torch's lerp), beta = 0.95
    u = g + beta * (m - g)        (nesterov)            or u = m without nesterov
    X = u / (||u||_F + 1e-7)       (transposed when rows > cols, so X X^T is the small side)
    5 times:  A = X X^T;  B = b A + c A A;  X = a X + B X      (a, b, c) = (3.4445, -4.7750, 2.0315)
    u = X * max(1, rows / cols) ** 0.5                  (Muon repo's scale, as published)
    p = p * (1 - lr * weight_decay) - lr * u            decoupled weight decay

The quintic iteration pushes every singular value of u towards ~1 (roughly U V^T of its SVD)
without computing an SVD. The repo runs it in bfloat16 on a GPU; here it runs in the
parameter's dtype (NumPy has no bfloat16), so float64 reproduces a float64 reference exactly.

Muon is for the hidden matrices only. Embeddings, the output head, norm gains and biases go to
AdamW: ``MuonWithAdamW`` is one optimizer holding both kinds of group (the repo's
``MuonWithAuxAdam``), and ``muon_param_groups(model)`` splits a model's parameters that way:

>>> opt = MuonWithAdamW(muon_param_groups(model, muon_lr=0.02, adam_lr=3e-3, weight_decay=0.1))  # doctest: +SKIP
>>> loss.backward(); opt.step(); opt.zero_grad()                                                  # doctest: +SKIP

Both save and resume through ``state_dict()`` / ``load_state_dict()`` (momentum buffers for
Muon's parameters, Adam's moments for the others), so a resumed run continues bit for bit.
"""
from __future__ import annotations

from ..backend import xp
from ..device import array_module
from ..parallel import blas_threads, run_jobs
from .adam import AdamW
from .optimizer import Optimizer

NS_COEFFS = (3.4445, -4.7750, 2.0315)


def newton_schulz5(G, steps: int = 5, eps: float = 1e-7):
    """The quintic Newton-Schulz iteration: G (rows, cols) -> about U V^T, in G's dtype.

    >>> X = newton_schulz5(xp.random.default_rng(0).standard_normal((4, 6)))
    >>> bool(xp.all(xp.abs(xp.linalg.svd(X, compute_uv=False) - 1) < 0.35))
    True
    """
    if G.ndim != 2:
        raise ValueError(f"newton_schulz5: expected a matrix, got shape {G.shape}")
    m = array_module(G)                                      # NumPy, or CuPy for a GPU array
    a, b, c = (G.dtype.type(v) for v in NS_COEFFS)
    tall = G.shape[0] > G.shape[1]
    X = G.T if tall else G
    X = X / (m.sqrt(m.sum(X * X)) + G.dtype.type(eps))     # spectral norm <= Frobenius norm <= 1
    for _ in range(steps):
        A = X @ X.T                                          # (r, r), r = min(rows, cols)
        B = b * A + c * (A @ A)
        X = a * X + B @ X
    return X.T if tall else X


def muon_update(grad, buf, beta: float, nesterov: bool = True, ns_steps: int = 5):
    """Advance the momentum ``buf`` in place; return the orthogonalised, scaled update."""
    buf += (1 - beta) * (grad - buf)                         # lerp(buf, grad, 1 - beta)
    u = grad + beta * (buf - grad) if nesterov else buf      # lerp(grad, buf, beta)
    rows, cols = grad.shape
    return newton_schulz5(u, ns_steps) * max(1.0, rows / cols) ** 0.5


class Muon(Optimizer):
    """``Muon(params, lr=0.02, momentum=0.95, nesterov=True, ns_steps=5, weight_decay=0)``.

    Every parameter must be a 2-D matrix (use ``MuonWithAdamW`` for a whole model).
    """

    def __init__(self, params, lr: float = 0.02, momentum: float = 0.95, nesterov: bool = True,
                 ns_steps: int = 5, weight_decay: float = 0.0):
        _check_hyper(lr, momentum, ns_steps, weight_decay)
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps,
                                      weight_decay=weight_decay))
        for group in self.param_groups:
            _check_matrices(group)

    def step(self) -> None:
        _run(self._muon_jobs(self.param_groups))

    def _muon_jobs(self, groups) -> list:
        """One job per parameter with a gradient (each writes only its own parameter and buffer)."""
        jobs = []
        for group in groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state.get(p)
                if state is None:
                    state = self.state[p] = {"momentum_buffer": array_module(p.data).zeros_like(p.data)}
                jobs.append((p.data.size, _job(p, state["momentum_buffer"], group)))
        return jobs


def _job(p, buf, group):
    def run():
        lr, wd = group["lr"], group["weight_decay"]
        grad = p.grad.data.astype(p.data.dtype, copy=False)
        u = muon_update(grad, buf, group["momentum"], group["nesterov"], group["ns_steps"])
        if wd != 0:
            p.data *= 1 - lr * wd
        p.data -= (lr * u).astype(p.data.dtype, copy=False)
    run.on_cpu = isinstance(p.data, xp.ndarray)
    return run


def _run(jobs) -> None:
    """The matrices' updates on the thread pool, biggest first, each with one BLAS thread: the
    iteration's products are small (a 128 x 512 matrix: 8 ms on one thread, 90-120 ms with BLAS
    on 2 threads of a busy 2-core machine), and one thread gives the same bits on any machine."""
    on_cpu = all(getattr(job, "on_cpu", True) for _, job in jobs)
    jobs = [job for _, job in sorted(jobs, key=lambda j: -j[0])]
    if not on_cpu:                                           # GPU arrays: in turn, the GPU is parallel
        for job in jobs:
            job()
    elif len(jobs) == 1:
        with blas_threads(1):
            jobs[0]()
    elif jobs:
        run_jobs(jobs)


class MuonWithAdamW(AdamW):
    """One optimizer, two kinds of group: ``{"params": [...], "use_muon": True, "lr": 0.02, ...}``
    groups take Muon's update, the others AdamW's (``betas``, ``eps``, ``weight_decay``).

    Defaults: Muon's ``lr`` is the group's own (``muon_param_groups`` sets it), ``momentum=0.95``,
    ``nesterov=True``, ``ns_steps=5``; AdamW's as ``AdamW`` with ``betas=(0.9, 0.95)``.
    """

    def __init__(self, params, lr: float = 3e-3, betas=(0.9, 0.95), eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.95, nesterov: bool = True, ns_steps: int = 5):
        _check_hyper(lr, momentum, ns_steps, weight_decay)
        self._muon_defaults = dict(momentum=momentum, nesterov=nesterov, ns_steps=ns_steps)
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)

    def add_param_group(self, param_group: dict) -> None:
        group = {"use_muon": False, **self._muon_defaults, **param_group}
        super().add_param_group(group)
        if group["use_muon"]:
            _check_matrices(self.param_groups[-1])

    def step(self) -> None:
        everything = self.param_groups
        _run(Muon._muon_jobs(self, [g for g in everything if g["use_muon"]]))
        self.param_groups = [g for g in everything if not g["use_muon"]]
        try:
            if self.param_groups:
                super().step()                                    # AdamW on the other groups
        finally:
            self.param_groups = everything


def muon_param_groups(model, muon_lr: float = 0.02, adam_lr: float = 3e-3, weight_decay: float = 0.0,
                      head_names=("lm_head", "output"), embedding_types=None) -> list:
    """A model's parameters as ``MuonWithAdamW`` groups, in this order:

    0. Muon: the 2-D weights of hidden Linear layers (weight decay ``weight_decay``);
    1. AdamW: embedding tables and the output head (``head_names``: Linear modules so named);
    2. AdamW: everything else of one dimension (norm gains, biases, scalars), no weight decay.

    Any other parameter of 2+ dims joins group 1. Empty groups are left out.
    """
    from ..nn import Embedding, Linear
    embedding_types = embedding_types or (Embedding,)
    muon_ids, adam_ids = set(), set()
    for name, module in model.named_modules():
        if isinstance(module, embedding_types):
            adam_ids.update(id(p) for p in module.parameters())
        elif isinstance(module, Linear) and name.rsplit(".", 1)[-1] not in head_names:
            w = module.weight
            if w.ndim == 2 and w.requires_grad:
                muon_ids.add(id(w))
    muon, matrices, rest = [], [], []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if id(p) in muon_ids and id(p) not in adam_ids:
            muon.append(p)
        elif p.ndim >= 2:
            matrices.append(p)
        else:
            rest.append(p)
    groups = [{"params": muon, "use_muon": True, "lr": muon_lr, "weight_decay": weight_decay},
              {"params": matrices, "use_muon": False, "lr": adam_lr, "weight_decay": weight_decay},
              {"params": rest, "use_muon": False, "lr": adam_lr, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def _check_hyper(lr, momentum, ns_steps, weight_decay) -> None:
    if lr < 0.0:
        raise ValueError(f"invalid learning rate: {lr}")
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"invalid momentum: {momentum} (must be in [0, 1))")
    if int(ns_steps) != ns_steps or ns_steps < 1:
        raise ValueError(f"invalid ns_steps: {ns_steps} (a positive int)")
    if weight_decay < 0.0:
        raise ValueError(f"invalid weight_decay value: {weight_decay}")


def _check_matrices(group) -> None:
    bad = [tuple(p.shape) for p in group["params"] if p.ndim != 2]
    if bad:
        raise ValueError(f"Muon updates 2-D weight matrices only; this group has parameters of shapes {bad} "
                         f"(give embeddings' / norms' / biases' parameters to AdamW: see muon_param_groups)")
