"""``scratchllm bench train``: full GPT training steps, scratchllm vs PyTorch eager and torch.compile.

One step = forward, cross-entropy, backward, AdamW update, float32, dropout 0,
on random windows of character-level tiny Shakespeare (vocab 65). The torch
peers get a copy of our initial weights and the very same batches, and all sides
alternate step by step in one process, who goes first rotating (so a noisy neighbour
slows all alike).
Before each timed step the process idles ``SETTLE_S``: a framework's worker threads keep
spinning on a core after their last parallel op (torch's OpenMP/MKL workers measured ~12 ms,
OpenBLAS's up to ~0.1 s), and without the pause that spin would be charged to whichever
framework runs next. Each side is timed as it would run alone; its own spinning between its
own ops stays inside its step.

The peers:
- ``torch``: PyTorch eager, nanoGPT's model (``peers/torch_gpt.py``) and torch's AdamW.
- ``torch_compile`` (on by default for small and medium; ``--no-compile`` turns it off): the same
  module, weights and AdamW in ``torch.compile`` (``CompiledTorchTrainer`` says what is compiled
  and how). Compiling is untimed; its wall time is ``compile_s`` (tens of seconds cold on 2 cores,
  a few with a warm inductor cache). Without a C++ compiler (``peers/torch_compile.py``), or if
  compiling raises, the peer is skipped with a note (``{"skipped": why}`` in the JSON).

Figures (all documented in benchmarks/RESULTS.md):
- ``step_ms``: median wall time of the timed steps (warm-up steps excluded);
  ``tokens_per_s`` = batch * block / step time; ``ratio`` = ours / torch tokens/s;
  ``ratio_best`` = the same from each side's fastest step (robust to a busy machine);
  ``ratio_compile`` / ``ratio_compile_best``: the same against the ``torch_compile`` peer.
- ``mfu``: model FLOP/s over NumPy's measured float32 matmul peak here, with the
  model FLOPs of nanoGPT's ``estimate_mfu``: per token 6*N + 12*L*H*Q*T, where N
  is the parameter count without the position embedding (nanoGPT's
  ``get_num_params(non_embedding=True)``; the tied token embedding counts once).
- ``peak_mem_mb``: see ``memory.py`` (same method for both, separate processes); None for
  ``torch_compile`` (a probe would compile again in its own process).
- ``kernels``: "numba" when the optional compiled kernels ran (``scratchllm.kernels``),
  "numpy" when scratchllm ran on NumPy alone (``SCRATCHLLM_KERNELS=numpy``, or no numba).
"""
from dataclasses import asdict, dataclass
from pathlib import Path
import time

from ..backend import xp
from ..kernels import name as kernels_name
from .common import cores_used, machine, matmul_peak_gflops, summarize

LR, BETAS, WEIGHT_DECAY, EPS = 6e-4, (0.9, 0.95), 0.1, 1e-8
SETTLE_S = 0.25  # idle time before each timed step (see the module docstring)
CORPUS = Path(__file__).resolve().parent.parent / "data" / "tinyshakespeare.txt"


@dataclass
class TrainBenchConfig:
    """The model and batch of one benchmark size."""
    name: str
    n_layer: int
    n_head: int
    n_embd: int
    block_size: int
    batch_size: int
    vocab_size: int = 65

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.block_size


CONFIGS = {
    "small": TrainBenchConfig("small", n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=12),
    "medium": TrainBenchConfig("medium", n_layer=6, n_head=6, n_embd=384, block_size=256, batch_size=8),
    # hidden, for the tests: seconds, not minutes
    "tiny": TrainBenchConfig("tiny", n_layer=1, n_head=2, n_embd=16, block_size=8, batch_size=2),
}


def gpt_config(cfg: TrainBenchConfig):
    """The ``scratchllm.models.GPTConfig`` of a benchmark size (dropout 0, biases on)."""
    from ..models import GPTConfig
    return GPTConfig(vocab_size=cfg.vocab_size, block_size=cfg.block_size, n_layer=cfg.n_layer,
                     n_head=cfg.n_head, n_embd=cfg.n_embd, dropout=0.0)


# ------------------------------------------------------------------------------ data
class CharBatches:
    """Random (x, y) windows of the character-level corpus; random ids if it is absent.

    >>> x, y = CharBatches(block_size=8, batch_size=2).next()
    >>> x.shape, bool((x[:, 1:] == y[:, :-1]).all())
    ((2, 8), True)
    """

    def __init__(self, block_size: int, batch_size: int, vocab_size: int = 65, seed: int = 1337):
        self.block_size, self.batch_size = block_size, batch_size
        self.rng = xp.random.default_rng(seed)
        if CORPUS.is_file():
            codes = xp.frombuffer(CORPUS.read_text(encoding="utf-8").encode("utf-32-le"), dtype=xp.uint32)
            chars = xp.unique(codes)  # sorted code points: the char-level vocabulary
            self.ids = xp.searchsorted(chars, codes).astype(xp.int64) % vocab_size
            self.source = "tinyshakespeare"
        else:
            self.ids = self.rng.integers(0, vocab_size, size=200_000, dtype=xp.int64)
            self.source = "random-ids"

    def next(self):
        starts = self.rng.integers(0, len(self.ids) - self.block_size - 1, size=self.batch_size)
        idx = starts[:, None] + xp.arange(self.block_size)[None, :]  # (B, T)
        return self.ids[idx], self.ids[idx + 1]


# ------------------------------------------------------------------------------ trainers
def nanogpt_flops_per_token(n_params_non_embedding: int, cfg: TrainBenchConfig) -> int:
    """nanoGPT's estimate_mfu: 6N + 12*L*H*Q*T FLOPs per token of a training step."""
    L, H, Q, T = cfg.n_layer, cfg.n_head, cfg.n_embd // cfg.n_head, cfg.block_size
    return 6 * n_params_non_embedding + 12 * L * H * Q * T


class ScratchTrainer:
    """scratchllm's GPT + AdamW (nanoGPT's two parameter groups)."""

    name = "scratchllm"

    def __init__(self, cfg: TrainBenchConfig, seed: int = 0):
        import scratchllm as sl
        from ..models import GPT
        from ..optim import AdamW

        sl.manual_seed(seed)
        self.model = GPT(gpt_config(cfg))
        self.model.train()
        params = _unique([p for _, p in self.model.named_parameters()])
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        self.optimizer = AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY},
                                {"params": no_decay, "weight_decay": 0.0}], lr=LR, betas=BETAS, eps=EPS)
        wpe = self.model.state_dict()["transformer.wpe.weight"]
        self.n_params = sum(int(p.data.size) for p in params)
        self.n_params_non_embedding = self.n_params - int(wpe.size)

    def state_dict(self) -> dict:
        return self.model.state_dict()

    def step(self, x, y) -> float:
        _, loss = self.model(x, y)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return float(loss.item())


class TorchTrainer:
    """The PyTorch-eager peer, started from the given scratchllm weights."""

    name = "torch"

    def __init__(self, cfg: TrainBenchConfig, state_dict, threads: int):
        import torch
        from .peers.torch_gpt import build_torch_gpt, configure_adamw, load_from_scratchllm

        torch.set_num_threads(threads)
        self.torch = torch
        self.model = build_torch_gpt(gpt_config(cfg))
        if state_dict is not None:  # None: torch's own init (the memory probe)
            load_from_scratchllm(self.model, state_dict)
        self.model.train()
        self.optimizer = configure_adamw(self.model, LR, BETAS, WEIGHT_DECAY, EPS)

        self.forward = self.model  # what a step calls: the module itself, or its compiled wrapper

    def step(self, x, y) -> float:
        xt, yt = self.torch.from_numpy(x), self.torch.from_numpy(y)
        _, loss = self.forward(xt, yt)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.item())


class CompiledTorchTrainer(TorchTrainer):
    """The ``torch.compile`` peer: the eager peer's module and weights in ``torch.compile``.

    Default mode, inductor backend (C++/OpenMP kernels on CPU). Only the model is compiled:
    its forward and, through AOTAutograd, its backward; the AdamW step stays torch's eager
    optimizer (the same ``configure_adamw`` as the eager peer), as nanoGPT's train.py does.
    ``compile`` runs once before the steps (untimed): forward + backward on one batch, then
    the gradients are dropped, so weights and AdamW state are as the eager peer's.
    """

    name = "torch_compile"

    def __init__(self, cfg: TrainBenchConfig, state_dict, threads: int):
        super().__init__(cfg, state_dict, threads)
        self.forward = self.torch.compile(self.model)  # lazy: compiles on the first call
        self.compile_s = None

    def compile(self, x, y) -> float:
        """Trace and compile forward + backward on one batch; the wall time in seconds."""
        t0 = time.perf_counter()
        _, loss = self.forward(self.torch.from_numpy(x), self.torch.from_numpy(y))
        loss.backward()
        self.compile_s = time.perf_counter() - t0
        self.optimizer.zero_grad(set_to_none=True)
        return self.compile_s

    def step(self, x, y) -> float:
        with self.torch.compiler.set_stance("fail_on_recompile"):  # a timed step never compiles
            return super().step(x, y)


def _start_compiled_peer(cfg: TrainBenchConfig, state_dict, threads: int, seed: int):
    """``(CompiledTorchTrainer, None)`` compiled and ready, or ``(None, why it is skipped)``."""
    from .peers.torch_compile import compile_skip_reason, failure_note

    reason = compile_skip_reason()
    if reason is not None:
        return None, reason
    try:
        trainer = CompiledTorchTrainer(cfg, state_dict, threads)
        # compiled on the first batch of the run (a separate stream: the run's batches are untouched)
        trainer.compile(*CharBatches(cfg.block_size, cfg.batch_size, cfg.vocab_size, seed=1337 + seed).next())
    except Exception as e:  # inductor's errors: no compiler after all, unsupported Python, ...
        return None, failure_note(e)
    return trainer, None


def _unique(params):
    seen, out = set(), []
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


# ------------------------------------------------------------------------------ the run
COMPILE_BY_DEFAULT = ("small", "medium")  # the configs whose run adds the torch.compile peer
SIDES = ("scratchllm", "torch", "torch_compile")
LABELS = {"scratchllm": "scratchllm", "torch": "torch", "torch_compile": "torch.compile"}


def run_train_bench(config: str = "small", steps: int = None, warmup: int = 2, peer: bool = True,
                    memory=None, seed: int = 0, compiled: bool = None) -> dict:
    """Time ``steps`` training steps of ours and the peers', alternating; a JSON-able dict.

    ``memory``: None/False, or ``bench.memory.measure_train_memory`` (what the CLI passes; it runs
    this module's trainers in subprocesses, so this module does not import it).
    ``compiled``: add the ``torch.compile`` peer (None: for the configs in ``COMPILE_BY_DEFAULT``);
    never without ``peer``. If it cannot run, ``result["torch_compile"]`` is ``{"skipped": why}``."""
    cfg = CONFIGS[config]
    steps = steps if steps is not None else {"small": 30, "medium": 6}.get(config, 3)
    threads = cores_used()
    peak = matmul_peak_gflops(256 if config == "tiny" else 2048)
    want_compiled = peer and (compiled if compiled is not None else config in COMPILE_BY_DEFAULT)

    ours = ScratchTrainer(cfg, seed)
    theirs = TorchTrainer(cfg, ours.state_dict(), threads) if peer else None
    fast, skipped = _start_compiled_peer(cfg, ours.state_dict(), threads, seed) if want_compiled else (None, None)
    trainers = [t for t in (ours, theirs, fast) if t is not None]
    batches = CharBatches(cfg.block_size, cfg.batch_size, cfg.vocab_size, seed=1337 + seed)

    times = {t.name: [] for t in trainers}
    losses = {t.name: [] for t in trainers}
    for i in range(warmup + steps):
        x, y = batches.next()
        k = i % len(trainers)
        for t in trainers[k:] + trainers[:k]:  # rotate who goes first
            if len(trainers) > 1:
                time.sleep(SETTLE_S)
            t0 = time.perf_counter()
            try:
                loss = t.step(x, y)
            except Exception as e:
                if t is not fast:
                    raise
                from .peers.torch_compile import failure_note
                skipped, fast = failure_note(e), None  # never crash the bench for the compiled peer
                trainers.remove(t)
                del times[t.name], losses[t.name]
                continue
            dt = time.perf_counter() - t0
            losses[t.name].append(loss)
            if i >= warmup:
                times[t.name].append(dt)

    flops_per_token = nanogpt_flops_per_token(ours.n_params_non_embedding, cfg)
    result = {
        "config": {**asdict(cfg), "dtype": "float32", "dropout": 0.0, "params": ours.n_params,
                   "params_non_embedding": ours.n_params_non_embedding,
                   "flops_per_token": flops_per_token, "data": batches.source},
        "steps": steps, "warmup": warmup, "threads": threads,
        "kernels": kernels_name(),  # "numba": the compiled kernels ran; "numpy": NumPy alone
        "matmul_peak_gflops": round(peak, 1),
    }
    mem = {}
    if memory:  # the memory probe knows scratchllm and torch eager only
        mem = {name: memory(name, config, threads) for name in times if name != "torch_compile"}
    for name in SIDES:
        if name not in times:
            result[name] = None
            continue
        s = summarize(times[name])
        tps = cfg.tokens_per_step / (s["median_ms"] / 1e3)
        gflops = tps * flops_per_token / 1e9
        result[name] = {"tokens_per_s": round(tps, 1), "step_ms": round(s["median_ms"], 2),
                        "step_ms_min": round(s["min_ms"], 2), "step_ms_max": round(s["max_ms"], 2),
                        "model_gflops": round(gflops, 2), "mfu": round(gflops / peak, 4),
                        "loss_first": round(losses[name][0], 5), "loss_last": round(losses[name][-1], 5),
                        **mem.get(name, {"peak_mem_mb": None})}
    ours_r, torch_r, fast_r = (result[name] for name in SIDES)
    both = torch_r is not None
    result["ratio"] = round(ours_r["tokens_per_s"] / torch_r["tokens_per_s"], 3) if both else None
    # fastest step vs fastest step: less sensitive to a busy machine than the medians
    result["ratio_best"] = round(torch_r["step_ms_min"] / ours_r["step_ms_min"], 3) if both else None
    pm = (ours_r["peak_mem_mb"], torch_r["peak_mem_mb"]) if both else (None, None)
    result["mem_ratio"] = round(pm[0] / pm[1], 3) if pm[0] and pm[1] else None
    result["mfu"] = ours_r["mfu"]
    if fast_r is not None:
        from .peers.torch_compile import find_cxx
        fast_r.update({"compile_s": round(fast.compile_s, 2), "backend": "inductor", "mode": "default",
                       "optimizer": "eager", "cxx": find_cxx()[1],
                       "loss_last_vs_torch": float(f"{abs(losses['torch_compile'][-1] - losses['torch'][-1]):.3g}")})
    elif skipped is not None:
        result["torch_compile"] = {"skipped": skipped}
    result["ratio_compile"] = round(ours_r["tokens_per_s"] / fast_r["tokens_per_s"], 3) if fast_r else None
    result["ratio_compile_best"] = round(fast_r["step_ms_min"] / ours_r["step_ms_min"], 3) if fast_r else None
    result["machine"] = machine()
    return result


def format_train(result: dict) -> str:
    """The human-readable table of ``run_train_bench``'s result."""
    c = result["config"]
    lines = [f"bench train --config {c['name']}: n_layer {c['n_layer']}, n_head {c['n_head']}, "
             f"n_embd {c['n_embd']}, block {c['block_size']}, batch {c['batch_size']}, "
             f"{c['params']:,} params, data {c['data']}, {result['threads']} threads, "
             f"{result['steps']} timed steps after {result['warmup']} warm-up, "
             f"kernels: {result.get('kernels', 'numpy')}",
             f"NumPy float32 matmul peak: {result['matmul_peak_gflops']} GFLOP/s",
             f"{'':14}{'tokens/s':>11}{'step ms':>10}{'GFLOP/s':>9}{'MFU':>7}{'peak MB':>9}{'loss 1st/last':>18}"]
    for name in SIDES:
        r = result.get(name)
        if r is None or "skipped" in r:
            continue
        mem = "-" if r.get("peak_mem_mb") is None else f"{r['peak_mem_mb']:.0f}"
        lines.append(f"{LABELS[name]:14}{r['tokens_per_s']:>11,.0f}{r['step_ms']:>10.1f}{r['model_gflops']:>9.1f}"
                     f"{r['mfu']:>7.1%}{mem:>9}{r['loss_first']:>9.4f}/{r['loss_last']:.4f}")
    if result["ratio"] is not None:
        lines.append(f"ratio scratchllm/torch: {result['ratio']:.2f}x tokens/s (fastest steps {result['ratio_best']:.2f}x)"
                     + (f", {result['mem_ratio']:.2f}x peak memory" if result["mem_ratio"] else ""))
    fast = result.get("torch_compile")
    if fast and "skipped" in fast:
        lines.append(f"torch.compile: skipped ({fast['skipped']})")
    elif fast:
        lines.append(f"ratio scratchllm/torch.compile: {result['ratio_compile']:.2f}x tokens/s (fastest steps "
                     f"{result['ratio_compile_best']:.2f}x); compile {fast['compile_s']:.1f} s, untimed "
                     f"(inductor, default mode, {fast['cxx']}; AdamW eager); last loss vs torch eager: "
                     f"|diff| {fast['loss_last_vs_torch']:.1e}")
    return "\n".join(lines)
