"""The training loop: ``train(config, out_dir)``.

One step = ``grad_accum_steps`` micro-batches of ``batch_size`` windows of ``block_size``
tokens, their mean loss backpropagated, gradients clipped, one AdamW update at the
warmup + cosine learning rate of that step. Every ``eval_interval`` steps: the mean
validation loss over ``eval_batches`` fixed batches, a checkpoint (``latest/``, and
``best/`` when the validation loss improved), the loss plot.

Everything random comes from seeded generators whose states are saved in the checkpoint,
so ``train(cfg, out)`` stopped at step N and continued with ``resume=True`` ends with the
same weights, bit for bit, as one uninterrupted run.

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
from .checkpoint import (OPTIMIZER, STATE, STATE_FORMAT, TRAIN_CONFIG, load_optimizer_state, mirror_files,
                         read_json, save_optimizer, write_folder_atomically, write_json)
from .config import TrainConfig
from .data_setup import open_token_files, tokenize_corpus, write_run_data
from .metrics import MetricsLog, plot_losses
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
    def __init__(self, cfg: TrainConfig, out_dir, resume: bool = False, progress: bool = True, log=None):
        self.t0 = time.perf_counter()
        self.cfg, self.out = cfg, Path(out_dir)
        self.progress = progress
        self.log = log or (lambda msg: print(msg, flush=True))
        ckpt = check_run_folder(cfg, self.out, resume)
        self.metrics = MetricsLog(self.out / "metrics.jsonl")
        if ckpt is not None:
            self._resume(ckpt)
        else:
            if (self.out / TRAIN_CONFIG).is_file():
                self.log(f"{self.out} holds no checkpoint of this run yet: starting it from step 0")
            self._fresh()
        self.train_ids, self.val_ids = self.data
        self._last_saved = self.step if self.step > 0 else None
        self.params = [p for _, p in self.model.named_parameters() if p.requires_grad]

    # ---------------------------------------------------------------- setup
    def _fresh(self):
        cfg = self.cfg
        model = None
        if cfg.init_from:
            model = load_model_checked(cfg.init_from, "init_from model")
            check_block_size(model, cfg)
            self.log(f"fine-tuning {cfg.init_from} ({model.config.model_type}, "
                     f"{model.num_parameters():,} parameters)")
        self.tokenizer, ids, meta = tokenize_corpus(cfg, model=model, log=self.log)
        # the input is good: now claim the folder for this run
        self.out.mkdir(parents=True, exist_ok=True)
        write_json(self.out / TRAIN_CONFIG, cfg.to_dict())
        self.metrics.path.unlink(missing_ok=True)                 # of a run that died before its first checkpoint
        write_run_data(self.out, ids, meta, cfg.val_fraction, log=self.log)
        if model is None:
            model = build_fresh_model(cfg, self.tokenizer.vocab_size)
            self.log(f"model: {cfg.arch}, {cfg.n_layer} layers, {cfg.n_head} heads, width {cfg.n_embd}, "
                     f"{model.num_parameters():,} parameters")
        self.model = model
        self.log("kernels: " + ("numba (scratchllm[fast])" if kernels_name() == "numba" else
                                "NumPy alone (pip install \"scratchllm[fast]\" for the compiled ones)"))
        self.optimizer = make_optimizer(model, cfg)
        self.data_gen = Generator(cfg.seed)
        default_generator().manual_seed(cfg.seed + 2)              # dropout and anything else
        self.step, self.best_val, self.last_val, self.elapsed_base = 0, None, None, 0.0
        self.data = open_token_files(self.out)

    def _resume(self, ckpt):
        cfg = self.cfg
        check_checkpoint_matches(ckpt, cfg)
        state = read_json(ckpt / STATE, "trainer state")
        if state.get("format") != STATE_FORMAT:
            raise ScratchLLMError(f"{ckpt / STATE}: not a scratchllm trainer state")
        self.model = load_model_checked(ckpt, "checkpoint")
        self.tokenizer = load_run_tokenizer(ckpt)
        self.optimizer = make_optimizer(self.model, cfg)
        try:
            self.optimizer.load_state_dict(load_optimizer_state(ckpt / OPTIMIZER))
        except (ValueError, KeyError) as e:
            raise ScratchLLMError(f"{ckpt / OPTIMIZER} does not fit the model: {e}") from None
        for group in self.optimizer.param_groups:                   # settings may change on resume
            group["betas"] = (cfg.beta1, cfg.beta2)
        self.optimizer.param_groups[0]["weight_decay"] = cfg.weight_decay
        self.data_gen = Generator(cfg.seed)
        self.data_gen.set_state(state["rng"]["data"])
        default_generator().set_state(state["rng"]["default"])
        self.step, self.best_val = int(state["step"]), state["best_val_loss"]
        self.last_val, self.elapsed_base = state["last_val_loss"], float(state["elapsed_s"])
        write_json(self.out / TRAIN_CONFIG, cfg.to_dict())
        self.metrics.truncate_after(self.step)
        self.data = open_token_files(self.out)
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
        from ..optim.schedules import warmup_cosine
        c = self.cfg
        return warmup_cosine(step, c.lr, c.warmup_steps, c.max_steps, c.min_lr)

    def train_step(self) -> float:
        """One optimizer step; returns the mean training loss of its micro-batches."""
        from ..nn.utils import clip_grad_norm_
        from ..optim.schedules import set_lr
        c = self.cfg
        set_lr(self.optimizer, self.lr_at(self.step))
        total = 0.0
        for _ in range(c.grad_accum_steps):
            x, y = self.train_ids.batch(c.batch_size, c.block_size, self.data_gen)
            _, loss = self.model(x, y)
            value = float(loss.item())
            if not math.isfinite(value):
                self._non_finite(f"the training loss is {value}")
            (loss if c.grad_accum_steps == 1 else loss * (1.0 / c.grad_accum_steps)).backward()
            total += value
        if c.grad_clip > 0:
            norm = clip_grad_norm_(self.params, c.grad_clip)
            if not math.isfinite(norm):
                self._non_finite(f"the gradient norm is {norm}")
        self.optimizer.step()
        self.optimizer.zero_grad()
        self.step += 1
        return total / c.grad_accum_steps

    def _non_finite(self, what: str):
        kept = (f"the last good checkpoint (step {self._last_saved}) is kept in {self.out / 'latest'}"
                if self._last_saved is not None else "no checkpoint was written")
        raise ScratchLLMError(f"training stopped at step {self.step + 1}: {what}; {kept}. "
                              f"Try a lower lr (now {self.cfg.lr}) or grad_clip")

    def evaluate(self) -> float:
        """Mean validation loss over ``eval_batches`` batches (the same batches at every eval)."""
        from ..autograd.grad_mode import no_grad
        c = self.cfg
        gen = Generator(c.seed + 1)
        self.model.eval()
        losses = []
        with no_grad():
            for _ in range(c.eval_batches):
                x, y = self.val_ids.batch(c.batch_size, c.block_size, gen)
                losses.append(float(self.model(x, y)[1].item()))
        self.model.train()
        return sum(losses) / len(losses)

    def save_checkpoint(self, is_best: bool) -> None:
        state = {"format": STATE_FORMAT, "version": 1, "step": self.step, "best_val_loss": self.best_val,
                 "last_val_loss": self.last_val, "elapsed_s": self.elapsed(),
                 "rng": {"data": self.data_gen.get_state(), "default": default_generator().get_state()}}

        def write(folder):
            self.model.save_pretrained(str(folder), format="scratchllm")
            self.tokenizer.save(folder)
            save_optimizer(self.optimizer, folder / OPTIMIZER)
            write_json(folder / TRAIN_CONFIG, self.cfg.to_dict())
            write_json(folder / STATE, state)

        write_folder_atomically(self.out / "latest", write)
        if is_best:
            write_folder_atomically(self.out / "best", lambda folder: mirror_files(
                self.out / "latest", folder, skip=()))
            mirror_files(self.out / "best", self.out)
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
        from tqdm.auto import tqdm
        c, flag = self.cfg, _StopFlag()
        tokens_per_step = c.batch_size * c.block_size * c.grad_accum_steps
        reason = "max_steps"
        bar = tqdm(total=c.max_steps, initial=self.step, disable=not self.progress, unit="step",
                   dynamic_ncols=True, file=sys.stderr, smoothing=0.1)
        window_t, window_steps, loss = time.perf_counter(), 0, float("nan")
        self.model.train()
        with flag.installed():
            while self.step < c.max_steps:
                if stop_at_step is not None and self.step >= stop_at_step:
                    reason = "stop_at_step"
                    break
                if flag.set:
                    reason = "interrupted"
                    break
                if c.max_minutes and time.perf_counter() - self.t0 >= c.max_minutes * 60:
                    reason = "max_minutes"
                    break
                lr = self.lr_at(self.step)
                loss = self.train_step()
                window_steps += 1
                bar.update(1)
                is_eval = self.step % c.eval_interval == 0 or self.step == c.max_steps
                if self.step % c.log_interval == 0 or is_eval:
                    now = time.perf_counter()
                    tps = window_steps * tokens_per_step / max(now - window_t, 1e-9)
                    row = {"step": self.step, "loss": round(loss, 6), "lr": lr,
                           "elapsed_s": round(self.elapsed(), 3), "tokens_per_s": round(tps, 1)}
                    if is_eval:
                        row["val_loss"] = round(self._eval_and_save(), 6)
                    self.metrics.append(row)
                    bar.set_postfix_str(self._postfix(loss, tps), refresh=False)
                    window_t, window_steps = time.perf_counter(), 0
        bar.close()
        if reason == "max_minutes" and self.step > 0 and self._last_saved != self.step:
            val = self._eval_and_save()
            self.metrics.append({"step": self.step, "loss": round(loss, 6), "lr": self.lr_at(self.step - 1),
                                 "elapsed_s": round(self.elapsed(), 3), "val_loss": round(val, 6)})
            self.log(f"time budget of {c.max_minutes} minutes reached at step {self.step}")
        elif reason in ("interrupted", "stop_at_step") and self._last_saved != self.step:
            self.save_checkpoint(is_best=False)
        if reason == "interrupted":
            self.log(f"interrupted: step {self.step} saved in {self.out / 'latest'}; continue with --resume")
        text = None
        if reason in ("max_steps", "max_minutes") and c.sample_tokens > 0:
            text = self.sample()
            self.log(f"--- sample ({c.sample_tokens} tokens, temperature {c.temperature}) ---\n{text}\n---")
        if self.best_val is not None:
            self.log(f"best val loss {self.best_val:.4f}; model in {self.out} "
                     f"(try: scratchllm generate --model {self.out})")
        return TrainResult(self.step, self.best_val, self.last_val, self.elapsed(), reason, text, self.out)

    def _eval_and_save(self) -> float:
        val = self.evaluate()
        if not math.isfinite(val):
            self._non_finite(f"the validation loss is {val}")
        self.last_val = val
        is_best = self.best_val is None or val < self.best_val
        if is_best:
            self.best_val = val
        self.save_checkpoint(is_best)
        plot_losses(self.metrics.read() + [{"step": self.step, "val_loss": val}], self.out / "loss.png",
                    title=f"{self.cfg.preset or 'run'}: {self.out.name}")
        return val

    def _postfix(self, loss: float, tps: float) -> str:
        val = f" val {self.last_val:.3f}" if self.last_val is not None else ""
        return f"loss {loss:.3f}{val} {tps:,.0f} tok/s"


def sliding_generate(model, prompt, n_new: int, temperature: float, top_k, seed: int) -> list[int]:
    """``prompt + n_new`` token ids, generating past the model's context the way nanoGPT does:
    each chunk sees (at most) the last half-context of tokens."""
    from ..backend import xp
    from .setup import context_length
    n_ctx = context_length(model)
    ids, k = list(prompt)[-n_ctx:], 0
    while n_new > 0:
        ctx = ids[-max(1, n_ctx // 2):] if len(ids) >= n_ctx else ids
        n = min(n_new, n_ctx - len(ctx))
        out = model.generate(xp.asarray([ctx], dtype=xp.int64), max_new_tokens=n, temperature=temperature,
                             top_k=top_k, seed=seed + k)
        ids += out[0, len(ctx):].tolist()
        n_new, k = n_new - n, k + 1
    return ids


def train(cfg: TrainConfig, out_dir, resume: bool = False, stop_at_step: int | None = None,
          progress: bool = True, log=None) -> TrainResult:
    """Train (or continue training) the run ``cfg`` in ``out_dir``; see the module docstring."""
    return Trainer(cfg, out_dir, resume=resume, progress=progress, log=log).run(stop_at_step)
