"""The training loop: ``train(config, out_dir)``.

One step = ``grad_accum_steps`` micro-batches of ``batch_size`` windows of ``block_size``
tokens, their mean loss backpropagated, gradients clipped, one AdamW update at the
warmup + cosine learning rate of that step. Every ``eval_interval`` steps: the mean
validation loss over ``eval_batches`` fixed batches, a checkpoint (``latest/``, and
``best/`` when the validation loss improved), the loss plot.

Everything random comes from seeded generators whose states are saved in the checkpoint,
so ``train(cfg, out)`` stopped at step N and continued with ``resume=True`` ends with the
same weights, bit for bit, as one uninterrupted run; so does a run killed (SIGKILL) at any
moment, writes included (the write order and the repair on resume: checkpoint.py,
recovery.py; tested by tests/train/test_crash_safety.py). One process per run folder (lock.py).

>>> result = train(preset_config("shakespeare-char"), "runs/shakespeare-char")   # doctest: +SKIP
>>> result.best_val_loss                                                          # doctest: +SKIP
1.57
"""
from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..autograd.random import Generator, default_generator
from ..errors import ScratchLLMError
from ..kernels import name as kernels_name
from .dist import world
from .checkpoint import (OPTIMIZER, STATE, STATE_FORMAT, TRAIN_CONFIG, check_state, load_optimizer_state,
                         mirror_files, read_json, save_optimizer, write_errors, write_folder_atomically, write_json)
from .config import TrainConfig
from .data_setup import open_token_files, tokenize_corpus, write_run_data
from .killpoints import kill_point
from .lock import RunLock
from .metrics import MetricsLog, log_line, plot_losses
from .recovery import RUN_FOLDER_SKIP, clean_leftovers, repair_best
from .setup import (build_fresh_model, check_block_size, check_checkpoint_matches, check_run_folder,
                    load_model_checked, make_optimizer)
from .tokenizer_files import load_run_tokenizer


@dataclass
class TrainResult:
    step: int
    best_val_loss: float | None
    last_val_loss: float | None
    elapsed_s: float
    stop_reason: str          # "max_steps", "max_minutes", "interrupted", "stop_at_step"
    sample: str | None
    out_dir: Path


class _StopFlag:
    """First Ctrl-C: finish the current step, save, stop. A second one interrupts at once."""

    def __init__(self):
        self.set = False

    @contextlib.contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.getsignal(signal.SIGINT)

        def handler(signum, frame):
            self.set = True
            signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


class Trainer:
    """One run in one folder. ``progress``: True draws a progress bar on stderr, False prints
    plain log lines (``step N/M | loss X | ...``) through ``log``, None picks the bar when stderr
    is a terminal. The folder is locked from the first write to the end of ``run()``."""

    # Data-parallel training (mpiexec -n N, dist.py): every rank runs this loop on its share of each
    # global batch; rank 0 alone (``is_writer``) sets up the folder first, then writes checkpoints,
    # metrics and the plot; ``_sync_gradients`` / ``_mean_over_ranks`` reduce over the ranks.

    def __init__(self, cfg: TrainConfig, out_dir, resume: bool = False, progress: bool | None = True, log=None):
        self.t0 = time.perf_counter()
        self.cfg, self.out = cfg, Path(out_dir)
        self.world = world()
        self.is_writer = self.world.is_main
        self.world.check_same("config", cfg.to_dict())
        self.accum = cfg.accum_steps(self.world.size)
        self.progress = progress if self.is_writer else False
        self.log = log or (lambda msg: print(msg, flush=True))
        if not self.is_writer:
            self.log = lambda msg: None
        self.lock = RunLock(self.out)
        self.metrics = MetricsLog(self.out / "metrics.jsonl")
        self.best_step = None
        ckpt = self._setup_writer(resume) if self.is_writer else None
        ckpt = self.world.broadcast(None if ckpt is None else str(ckpt))   # rank 0 has set the folder up
        if not self.is_writer:
            self._resume(Path(ckpt)) if ckpt is not None else self._fresh(resume)
        self.world.broadcast_arrays([p.data for p in self.model.parameters()])
        self.world.check_same("data", [self.data[0].path.stat().st_size, self.data[1].path.stat().st_size])
        self.train_ids, self.val_ids = self.data
        if cfg.device != "cpu":                   # the optimizer's moments follow on its first step
            self.model.to(cfg.device)             # (a clear error without CuPy or a GPU)
        self._last_saved = self.step if self.step > 0 else None
        self.params = [p for _, p in self.model.named_parameters() if p.requires_grad]
        if cfg.warmup() != cfg.warmup_steps:
            self.log(f"warning: max_steps ({cfg.max_steps}) is less than 2 x warmup_steps ({cfg.warmup_steps}); "
                     f"the warmup is scaled to {cfg.warmup()} steps (a tenth of max_steps)")

    def _setup_writer(self, resume: bool):
        """Rank 0 (or the only process): lock the folder, then a fresh run or a resume; the checkpoint resumed."""
        self.lock.check_free()                    # "in use by pid N" before anything else is looked at
        ckpt = check_run_folder(self.cfg, self.out, resume)
        try:
            if self.out.is_dir():
                ckpt = self._claim_folder(resume)
            if ckpt is not None:
                self._resume(ckpt)
            else:
                if (self.out / TRAIN_CONFIG).is_file():
                    self.log(f"{self.out} holds no checkpoint of this run yet: starting it from step 0")
                self._fresh(resume)
        except BaseException:
            self.lock.release()
            raise
        return ckpt

    def _claim_folder(self, resume: bool):
        """Lock the run folder, tidy what a crash left, and look again (under the lock) at what it holds."""
        with write_errors(self.out):
            self.lock.acquire()
        if self.lock.taken_over:
            self.log(f"taking over the lock of process {self.lock.taken_over}, which is no longer running")
        clean_leftovers(self.out)
        return check_run_folder(self.cfg, self.out, resume)

    def close(self) -> None:
        """Release the run folder (``run()`` does this when it ends)."""
        self.lock.release()

    # ---------------------------------------------------------------- setup
    def _fresh(self, resume: bool = False):
        cfg = self.cfg
        model = None
        if cfg.init_from:
            model = load_model_checked(cfg.init_from, "init_from model")
            check_block_size(model, cfg)
            self.log(f"fine-tuning {cfg.init_from} ({model.config.model_type}, "
                     f"{model.num_parameters():,} parameters)")
        self.tokenizer, ids, meta = tokenize_corpus(cfg, model=model, log=self.log)
        # the input is good: now claim the folder for this run
        if not self.is_writer:
            pass                                  # rank 0 has written the folder
        elif not self.lock.held:
            with write_errors(self.out):
                self.out.mkdir(parents=True, exist_ok=True)
            if self._claim_folder(resume) is not None:
                raise ScratchLLMError(f"another process started a run in {self.out} meanwhile; choose another --out")
        if self.is_writer:
            write_json(self.out / TRAIN_CONFIG, cfg.to_dict())
            for stale in (self.metrics.path, self.out / "loss.png"):  # of a run that died before its first checkpoint
                stale.unlink(missing_ok=True)
            write_run_data(self.out, ids, meta, cfg.val_fraction, log=self.log)
        if model is None:
            model = build_fresh_model(cfg, self.tokenizer.vocab_size)
            self.log(f"model: {cfg.arch}, {cfg.n_layer} layers, {cfg.n_head} heads, width {cfg.n_embd}, "
                     f"{model.num_parameters():,} parameters")
        self.model = model
        self.log("kernels: " + ("numba (compiled)" if kernels_name() == "numba" else
                                "NumPy alone (numba not installed, or SCRATCHLLM_KERNELS=numpy)"))
        self.optimizer = make_optimizer(model, cfg)
        self.data_gen = Generator(cfg.seed)
        default_generator().manual_seed(cfg.seed + 2)              # dropout and anything else
        self.step, self.best_val, self.last_val, self.elapsed_base = 0, None, None, 0.0
        self.data = open_token_files(self.out)

    def _resume(self, ckpt):
        cfg = self.cfg
        check_checkpoint_matches(ckpt, cfg)
        state = check_state(read_json(ckpt / STATE, "trainer state"), ckpt / STATE)
        self.model = load_model_checked(ckpt, "checkpoint")
        self.tokenizer = load_run_tokenizer(ckpt)
        self.optimizer = make_optimizer(self.model, cfg)
        try:
            self.optimizer.load_state_dict(load_optimizer_state(ckpt / OPTIMIZER))
        except (ValueError, KeyError) as e:
            raise ScratchLLMError(f"{ckpt / OPTIMIZER} does not fit the model: {e}") from None
        for group in self.optimizer.param_groups:                   # settings may change on resume
            group["betas"] = (cfg.beta1, cfg.beta2)
            if group.get("use_muon"):                               # Muon's matrices: muon_lr, via set_lr
                group["lr_scale"], group["momentum"] = cfg.muon_lr / cfg.lr, cfg.muon_momentum
        self.optimizer.param_groups[0]["weight_decay"] = cfg.weight_decay
        self.data_gen = Generator(cfg.seed)
        self.data_gen.set_state(state["rng"]["data"])
        default_generator().set_state(state["rng"]["default"])
        self.step, self.best_val = int(state["step"]), state["best_val_loss"]
        self.last_val, self.elapsed_base = state["last_val_loss"], float(state["elapsed_s"])
        self.best_step = state.get("best_step")
        self.data = open_token_files(self.out)                     # checked against meta.json first
        if not self.is_writer:
            return
        write_json(self.out / TRAIN_CONFIG, cfg.to_dict())
        # what a crash may have left behind the checkpoint: log rows past it, best/, the plot
        self.metrics.truncate_after(self.step)
        repair_best(self.out, state, self.log)
        plot = self.out / "loss.png"
        if self.last_val is not None and (not plot.is_file()
                                          or plot.stat().st_mtime_ns < (ckpt / STATE).stat().st_mtime_ns):
            self._plot()                                           # the plot lags behind the checkpoint
            kill_point("repair")
        if self.data is None:                                      # id files deleted: make them again
            model = self.model if cfg.init_from else None
            _, ids, meta = tokenize_corpus(cfg, model=model, log=self.log, tok=self.tokenizer)
            write_run_data(self.out, ids, meta, cfg.val_fraction, log=self.log)
            self.data = open_token_files(self.out)
        self.log(f"resuming {self.out} at step {self.step} of {cfg.max_steps}"
                 + (f" (best val loss {self.best_val:.4f})" if self.best_val is not None else ""))

    # ---------------------------------------------------------------- pieces
    def elapsed(self) -> float:
        return self.elapsed_base + time.perf_counter() - self.t0

    def lr_at(self, step: int) -> float:
        from ..optim.schedules import warmup_cosine, warmup_stable_decay
        c = self.cfg
        if c.schedule == "wsd":
            return warmup_stable_decay(step, c.lr, c.warmup(), c.max_steps, c.min_lr, c.decay_frac)
        return warmup_cosine(step, c.lr, c.warmup(), c.max_steps, c.min_lr)

    def train_step(self) -> float:
        """One optimizer step; returns the mean training loss of its micro-batches."""
        from ..nn.utils import clip_grad_norm_
        from ..optim.schedules import set_lr
        c = self.cfg
        set_lr(self.optimizer, self.lr_at(self.step))
        total, accum = 0.0, self.accum
        # the whole step's window starts over all ranks, drawn alike on every rank: (micro-batch, rank x batch)
        starts = self.train_ids.random_starts((accum, self.world.size * c.batch_size), c.block_size, self.data_gen)
        for k in range(accum):
            x, y = self._on_device(*self.train_ids.windows(self.world.my_starts(starts[k]), c.block_size))
            _, loss = self.model(x, y)
            value = float(loss.item())
            if not math.isfinite(value):
                self._non_finite(f"the training loss is {value}")
            (loss if accum == 1 else loss * (1.0 / accum)).backward()
            total += value
        self._sync_gradients()
        if c.grad_clip > 0:
            norm = clip_grad_norm_(self.params, c.grad_clip)
            if not math.isfinite(norm):
                self._non_finite(f"the gradient norm is {norm}")
        self.optimizer.step()
        self.optimizer.zero_grad()
        self.step += 1
        kill_point("step")
        if self.world.check_weights:
            self.world.check_same(f"weights after step {self.step}", [float(p.data.sum()) for p in self.params])
        return self._mean_over_ranks(total / accum)

    def _sync_gradients(self) -> None:
        """Average the gradients over the ranks, in place (one process: nothing)."""
        self.world.allreduce_mean([p.grad.data for p in self.params if p.grad is not None])

    def _mean_over_ranks(self, value: float) -> float:
        """A loss averaged over the ranks (one process: itself)."""
        return self.world.sum(value) / self.world.size if self.world.size > 1 else value

    def _non_finite(self, what: str):
        kept = (f"the last good checkpoint (step {self._last_saved}) is kept in {self.out / 'latest'}"
                if self._last_saved is not None else "no checkpoint was written")
        raise ScratchLLMError(f"training stopped at step {self.step + 1}: {what}; {kept}. "
                              f"Try a lower lr (now {self.cfg.lr}) or grad_clip")

    def _on_device(self, *arrays):
        """Host batches (ids checked on the host by the dataset) copied to ``cfg.device``."""
        if self.cfg.device == "cpu":
            return arrays
        from ..device import to_device
        return tuple(to_device(a, self.cfg.device) for a in arrays)

    def evaluate(self) -> float:
        """Mean validation loss over ``eval_batches`` batches (the same batches at every eval)."""
        from ..autograd.grad_mode import no_grad
        c = self.cfg
        gen = Generator(c.seed + 1)
        self.model.eval()
        losses = {}
        with no_grad():
            for i in range(c.eval_batches):
                starts = self.val_ids.random_starts(c.batch_size, c.block_size, gen)
                if i % self.world.size == self.world.rank:          # batches shared out over the ranks
                    x, y = self._on_device(*self.val_ids.windows(starts, c.block_size))
                    losses[i] = float(self.model(x, y)[1].item())
        self.model.train()
        losses = self.world.gather_dict(losses)                    # every batch's loss, on every rank
        return sum(losses[i] for i in range(c.eval_batches)) / c.eval_batches

    def save_checkpoint(self, is_best: bool) -> None:
        """``latest/``; then, when ``is_best``, ``best/`` and the run folder's model (that order: see
        recovery.py). The metrics rows up to this step are on disk before it."""
        if not self.is_writer:
            self._last_saved = self.step
            return
        state = {"format": STATE_FORMAT, "version": 1, "step": self.step, "best_val_loss": self.best_val,
                 "best_step": self.best_step, "last_val_loss": self.last_val, "elapsed_s": self.elapsed(),
                 "rng": {"data": self.data_gen.get_state(), "default": default_generator().get_state()}}

        def write(folder):
            for write_one in (lambda: self.model.save_pretrained(str(folder), format="scratchllm"),
                              lambda: self.tokenizer.save(folder),
                              lambda: save_optimizer(self.optimizer, folder / OPTIMIZER),
                              lambda: write_json(folder / TRAIN_CONFIG, self.cfg.to_dict()),
                              lambda: write_json(folder / STATE, state)):
                write_one()
                kill_point("ckpt.latest.file")

        write_folder_atomically(self.out / "latest", write)
        if is_best:
            write_folder_atomically(self.out / "best", lambda folder: mirror_files(
                self.out / "latest", folder, skip=()))
            mirror_files(self.out / "best", self.out, skip=RUN_FOLDER_SKIP)
        self._last_saved = self.step

    def sample(self) -> str:
        """``sample_tokens`` tokens after ``sample_prompt``, from the model as it is now."""
        c = self.cfg
        try:
            prompt = self.tokenizer.encode(c.sample_prompt) or [0]
        except Exception:                                           # a prompt outside the vocabulary
            prompt = [0]
        self.model.eval()
        ids = sliding_generate(self.model, prompt, c.sample_tokens, c.temperature, c.top_k, c.seed)
        self.model.train()
        return self.tokenizer.decode(ids)

    # ---------------------------------------------------------------- the loop
    def run(self, stop_at_step: int | None = None) -> TrainResult:
        """Train to ``max_steps`` (or the time budget, Ctrl-C, ``stop_at_step``); then release the folder."""
        try:
            return self._run(stop_at_step)
        finally:
            self.close()

    def _run(self, stop_at_step):
        c, flag = self.cfg, _StopFlag()
        reason = None
        tokens_per_step = c.batch_size * c.block_size * self.accum * self.world.size   # over all ranks
        finished = self.step >= c.max_steps
        bar = self._progress_bar()
        window_t, window_steps, loss = time.perf_counter(), 0, float("nan")
        self.model.train()
        with flag.installed():
            while self.step < c.max_steps:
                reason = self.world.broadcast(self._stop_reason(stop_at_step, flag))   # rank 0 decides
                if reason is not None:
                    break
                lr = self.lr_at(self.step)
                loss = self.train_step()
                window_steps += 1
                if bar is not None:
                    bar.update(1)
                is_eval = self.step % c.eval_interval == 0 or self.step == c.max_steps
                if self.step % c.log_interval == 0 or is_eval:
                    now = time.perf_counter()
                    tps = window_steps * tokens_per_step / max(now - window_t, 1e-9)
                    row = {"step": self.step, "loss": round(loss, 6), "lr": lr,
                           "elapsed_s": round(self.elapsed(), 3), "tokens_per_s": round(tps, 1)}
                    self._log_row(row, is_eval, bar)
                    window_t, window_steps = time.perf_counter(), 0
        if bar is not None:
            bar.close()
        reason = reason or "max_steps"
        if reason == "max_minutes" and self.step > 0 and self._last_saved != self.step:
            self._log_row({"step": self.step, "loss": round(loss, 6), "lr": self.lr_at(self.step - 1),
                           "elapsed_s": round(self.elapsed(), 3)}, True, None)
        if reason == "max_minutes" and self.step > 0:
            self.log(f"time budget of {c.max_minutes} minutes reached at step {self.step} of {c.max_steps}: the "
                     f"learning rate is still {self.lr_at(self.step - 1):.2e} (min_lr {c.min_lr:.2e}), the schedule "
                     f"is not finished; --resume continues it with a new time budget")
        if reason in ("interrupted", "stop_at_step") and self._last_saved != self.step:
            if self.is_writer:
                self.metrics.sync()
            self.save_checkpoint(is_best=False)
        if reason == "interrupted":
            self.log(f"interrupted: step {self.step} saved in {self.out / 'latest'}; continue with --resume")
        if finished:
            self.log(f"run finished at step {self.step}; raise --max-steps to continue")
        text = None
        if reason in ("max_steps", "max_minutes") and c.sample_tokens > 0 and self.is_writer:
            text = self.sample()
            self.log(f"--- sample ({c.sample_tokens} tokens, temperature {c.temperature}) ---\n{text}\n---")
        if self.best_val is not None:
            self.log(f"best val loss {self.best_val:.4f}; model in {self.out} "
                     f"(try: scratchllm generate --model {self.out})")
        return TrainResult(self.step, self.best_val, self.last_val, self.elapsed(), reason, text, self.out)

    def _stop_reason(self, stop_at_step, flag):
        """Why the loop should stop before the next step, or None."""
        if stop_at_step is not None and self.step >= stop_at_step:
            return "stop_at_step"
        if flag.set:
            return "interrupted"
        if self.cfg.max_minutes and time.perf_counter() - self.t0 >= self.cfg.max_minutes * 60:
            return "max_minutes"
        return None

    def _progress_bar(self):
        """A tqdm bar on stderr, or None: plain log lines instead (no terminal, or ``progress=False``)."""
        show = self.progress if self.progress is not None else sys.stderr.isatty()
        if not show:
            return None
        from tqdm.auto import tqdm
        return tqdm(total=self.cfg.max_steps, initial=self.step, unit="step", dynamic_ncols=True,
                    file=sys.stderr, smoothing=0.1)

    def _log_row(self, row: dict, is_eval: bool, bar) -> None:
        """Log one step: at an evaluation, evaluate and checkpoint (the row first, see checkpoint.py)."""
        if is_eval:
            row["val_loss"] = round(self._evaluate_checked(), 6)
        if self.is_writer:
            self.metrics.append(row, sync=is_eval)
        if is_eval:
            self.save_checkpoint(self.best_step == self.step)
            self._plot()
        if bar is not None:
            bar.set_postfix_str(self._postfix(row["loss"], row.get("tokens_per_s", 0.0)), refresh=False)
        else:
            self.log(log_line(row, self.cfg.max_steps))

    def _evaluate_checked(self) -> float:
        val = self.evaluate()
        if not math.isfinite(val):
            self._non_finite(f"the validation loss is {val}")
        self.last_val = val
        if self.best_val is None or val < self.best_val:
            self.best_val, self.best_step = val, self.step
        return val

    def _plot(self) -> None:
        if self.is_writer:
            plot_losses(self.metrics.read(), self.out / "loss.png",
                        title=f"{self.cfg.preset or 'run'}: {self.out.name}")

    def _postfix(self, loss: float, tps: float) -> str:
        val = f" val {self.last_val:.3f}" if self.last_val is not None else ""
        return f"loss {loss:.3f}{val} {tps:,.0f} tok/s"


def sliding_generate(model, prompt, n_new: int, temperature: float, top_k, seed: int) -> list[int]:
    """``prompt + n_new`` token ids (the prompt cropped to the model's context) from ``model.generate``,
    whose past-the-context policy (nanoGPT's crop, models/generate.py) is the one policy."""
    from ..backend import xp
    from .setup import context_length
    ids = list(prompt)[-context_length(model):]
    out = model.generate(xp.asarray([ids], dtype=xp.int64), max_new_tokens=n_new, temperature=temperature,
                         top_k=top_k, seed=seed)
    return out[0].tolist()


def train(cfg: TrainConfig, out_dir, resume: bool = False, stop_at_step: int | None = None,
          progress: bool = True, log=None) -> TrainResult:
    """Train (or continue training) the run ``cfg`` in ``out_dir``; see the module docstring."""
    return Trainer(cfg, out_dir, resume=resume, progress=progress, log=log).run(stop_at_step)
