"""Where a scratchllm training step spends its time (the input of the optimisation work).

    .venv/bin/python benchmarks/profile_train.py --config small  [--steps 5] [--tree]

Runs the ``bench train`` model (GPT, AdamW, float32, dropout 0) and reports, per step:
1. phases: forward (incl. cross-entropy), backward, optimizer, median ms;
2. forward time per op: every op ends in ``make_result``; the time since the previous
   op's ``make_result`` is charged to the op (so Python glue between ops lands on the next op);
3. backward time per op: each graph node's backward closure is timed; the rest of
   ``backward()`` (topological sort, unbroadcast, casts, gradient accumulation) is "engine";
4. pyinstrument's self time per Python function over one step (NumPy/BLAS time is charged
   to the Python function that called it);
5. the BLAS floor: the step's model FLOPs (nanoGPT's estimate) at NumPy's measured matmul peak.
"""
import argparse
import collections
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import scratchllm.autograd.tensor  # noqa: E402,F401
from scratchllm.bench.common import matmul_peak_gflops  # noqa: E402
from scratchllm.bench.train import CONFIGS, CharBatches, ScratchTrainer, nanogpt_flops_per_token  # noqa: E402

tensor_mod = sys.modules["scratchllm.autograd.tensor"]  # (the package also exports a `tensor` function)


class ForwardOpTimer:
    """Charges wall time between consecutive ``make_result`` calls to the op being made."""

    def __init__(self):
        self.original = tensor_mod.make_result
        self.patched = []  # (module, name) pairs that held the original
        self.times = collections.defaultdict(float)
        self.counts = collections.Counter()
        self.last = None

    def _timed_make_result(self, data, parents, backward, op):
        now = time.perf_counter()
        if self.last is not None:
            self.times[op] += now - self.last
            self.counts[op] += 1
        out = self.original(data, parents, backward, op)
        self.last = time.perf_counter()
        return out

    def __enter__(self):
        for mod in list(sys.modules.values()):
            if getattr(mod, "__name__", "").startswith("scratchllm") and \
                    getattr(mod, "make_result", None) is self.original:
                mod.make_result = self._timed_make_result
                self.patched.append(mod)
        self.last = time.perf_counter()
        return self

    def __exit__(self, *exc):
        for mod in self.patched:
            mod.make_result = self.original


def time_backward_ops(loss):
    """Wrap every node's backward closure with a timer; returns (times, counts) dicts."""
    times, counts = collections.defaultdict(float), collections.Counter()
    seen, stack = set(), [loss]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if node._backward is not None:
            def timed(g, fn=node._backward, op=node._op):
                t0 = time.perf_counter()
                out = fn(g)
                times[op] += time.perf_counter() - t0
                counts[op] += 1
                return out
            node._backward = timed
        stack.extend(node._parents)
    return times, counts, len(seen)


def table(title, times, counts, total, steps, top=14):
    rows = sorted(times.items(), key=lambda kv: -kv[1])[:top]
    print(f"\n{title} (per step; % of the whole step)")
    print(f"  {'op':28}{'calls':>7}{'ms':>10}{'%':>7}")
    for op, t in rows:
        print(f"  {op:28}{counts[op] / steps:>7.0f}{t / steps * 1e3:>10.2f}{t / total:>7.1%}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="small", choices=sorted(CONFIGS))
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--tree", action="store_true", help="also print pyinstrument's call tree")
    args = ap.parse_args(argv)
    cfg = CONFIGS[args.config]
    tr = ScratchTrainer(cfg)
    batches = CharBatches(cfg.block_size, cfg.batch_size, cfg.vocab_size)
    for _ in range(2):
        tr.step(*batches.next())

    phases = collections.defaultdict(list)
    fwd_t, fwd_c = collections.defaultdict(float), collections.Counter()
    bwd_t, bwd_c = collections.defaultdict(float), collections.Counter()
    for _ in range(args.steps):
        x, y = batches.next()
        t0 = time.perf_counter()
        with ForwardOpTimer() as ft:
            _, loss = tr.model(x, y)
        t1 = time.perf_counter()
        tr.optimizer.zero_grad()
        bt, bc, n_nodes = time_backward_ops(loss)
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        tr.optimizer.step()
        t4 = time.perf_counter()
        for k, v in ft.times.items():
            fwd_t[k] += v
        fwd_c.update(ft.counts)
        for k, v in bt.items():
            bwd_t[k] += v
        bwd_c.update(bc)
        phases["forward"].append(t1 - t0)
        phases["backward"].append(t3 - t2)
        phases["optimizer"].append(t4 - t3)
        phases["step"].append(t4 - t0 - (t2 - t1))
    med = {k: statistics.median(v) for k, v in phases.items()}
    total = sum(phases["step"])
    peak = matmul_peak_gflops()
    flops = nanogpt_flops_per_token(tr.n_params_non_embedding, cfg) * cfg.tokens_per_step
    print(f"config {cfg.name}: {cfg.n_layer} layers x {cfg.n_embd}, block {cfg.block_size}, batch "
          f"{cfg.batch_size}; graph nodes per step {n_nodes}; {args.steps} profiled steps")
    print(f"step {med['step'] * 1e3:.1f} ms = forward {med['forward'] * 1e3:.1f} + backward "
          f"{med['backward'] * 1e3:.1f} + optimizer {med['optimizer'] * 1e3:.1f} (medians)")
    print(f"BLAS floor: {flops / 1e9:.2f} GFLOP per step at {peak:.0f} GFLOP/s = "
          f"{flops / peak / 1e6:.1f} ms ({flops / peak / 1e9 / med['step']:.0%} of the step)")
    table("forward ops", fwd_t, fwd_c, total, args.steps)
    table("backward ops", bwd_t, bwd_c, total, args.steps)
    engine = sum(phases["backward"]) - sum(bwd_t.values())
    print(f"  {'(engine: sort/accumulate)':28}{'':>7}{engine / args.steps * 1e3:>10.2f}{engine / total:>7.1%}")
    opt = sum(phases["optimizer"])
    print(f"\noptimizer (AdamW, {sum(1 for g in tr.optimizer.param_groups for _ in g['params'])} params): "
          f"{opt / args.steps * 1e3:.2f} ms/step, {opt / total:.1%}")
    profile_functions(tr, batches, args.tree)


def profile_functions(tr, batches, tree: bool):
    """pyinstrument over one (un-instrumented) step: self time per function."""
    from pyinstrument import Profiler

    x, y = batches.next()
    prof = Profiler(interval=0.0005)
    prof.start()
    tr.step(x, y)
    prof.stop()
    root = prof.last_session.root_frame()
    selfs = collections.defaultdict(float)
    stack = [root]
    while stack:
        f = stack.pop()
        real = [c for c in f.children if not c.is_synthetic]  # "[self]" leaves hold the self time
        selfs[f"{f.function} ({Path(f.file_path or '?').name}:{f.line_no})"] += f.time - sum(c.time for c in real)
        stack.extend(real)
    total = root.time
    print(f"\npyinstrument, one step ({total * 1e3:.1f} ms): self time per function (NumPy time included)")
    for name, t in sorted(selfs.items(), key=lambda kv: -kv[1])[:22]:
        print(f"  {t / total:6.1%}  {t * 1e3:8.2f} ms  {name}")
    if tree:
        print(prof.output_text(unicode=False, color=False, show_all=False))


if __name__ == "__main__":
    main()
