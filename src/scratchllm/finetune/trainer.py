"""The fine-tuning loop: ``finetune(cfg, out_dir)`` — SFT or DPO, full or LoRA, resumable.

It reuses the pretraining run's pieces (train/): the folder swap of checkpoints, the optimizer
file, the metrics log and loss plot, the AdamW setup, the warmup + cosine schedule. A run folder::

    out/finetune_config.json     the run's FinetuneConfig
    out/latest/                  the last checkpoint: the model (full) or the adapter (LoRA),
                                 the tokenizer, optimizer.safetensors, trainer_state.json
    out/config.json, model.safetensors, tokenizer files
                                 the best model so far, whole (LoRA: merged into the base), so
                                 `scratchllm generate --model out` works
    out/adapter/                 LoRA only: the best adapter in HF PEFT's layout
    out/metrics.jsonl, loss.png  step 0 holds the validation loss before any training

Nothing is written before every record has been read, rendered and checked. Every random
draw (batch order, dropout, LoRA's A) comes from seeded generators saved in the checkpoint:
a run stopped at step N and resumed ends bit for bit where the uninterrupted one does.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..autograd.grad_mode import no_grad
from ..autograd.random import Generator, default_generator
from ..backend import xp
from ..errors import ScratchLLMError
from ..train.checkpoint import (OPTIMIZER, STATE, find_checkpoint, load_optimizer_state, mirror_files,
                                read_json, save_optimizer, write_folder_atomically, write_json)
from ..train.metrics import MetricsLog, plot_losses
from .chat_template import encode_chat, get_template
from .config import FinetuneConfig
from .data import (IGNORE, add_special_tokens, encode_records, grow_embeddings, pad_batch,
                   read_records, split_indices, text_samples)

CONFIG = "finetune_config.json"
STATE_FORMAT = "scratchllm-finetune-state"


@dataclass
class FinetuneResult:
    step: int
    val_before: float | None
    best_val_loss: float | None
    last_val_loss: float | None
    last_stats: dict
    sample: str | None
    out_dir: Path


class Finetuner:
    def __init__(self, cfg: FinetuneConfig, out_dir, resume: bool = False, progress: bool = True,
                 log=None):
        self.t0 = time.perf_counter()
        self.cfg, self.out = cfg, Path(out_dir)
        self.progress = progress
        self.log = log or (lambda msg: print(msg, flush=True))
        ckpt = self._check_folder(resume)
        self._prepare()                                 # reads and checks everything; writes nothing
        self.metrics = MetricsLog(self.out / "metrics.jsonl")
        if ckpt is not None:
            self._resume(ckpt)
        else:
            self.out.mkdir(parents=True, exist_ok=True)
            write_json(self.out / CONFIG, cfg.to_dict())
            self.metrics.path.unlink(missing_ok=True)
            self.step, self.best_val, self.last_val, self.val_before = 0, None, None, None
            self.elapsed_base = 0.0
            self.data_gen = Generator(cfg.seed)
            default_generator().manual_seed(cfg.seed + 2)

    # ------------------------------------------------------------------ setup
    def _check_folder(self, resume: bool):
        out, cfg = self.out, self.cfg
        if out.exists() and not out.is_dir():
            raise ScratchLLMError(f"output path {out} is a file, not a folder")
        saved_path = out / CONFIG
        if not saved_path.is_file():
            if resume:
                raise ScratchLLMError(f"nothing to resume: {out} holds no fine-tuning run")
            if out.is_dir() and any(out.iterdir()):
                raise ScratchLLMError(f"output folder {out} is not empty; choose a new --out")
            if not cfg.init_from:
                raise ScratchLLMError("fine-tuning needs a base model: --init-from MODEL")
            if not cfg.data:
                raise ScratchLLMError("fine-tuning needs data: --data FILE.json[l]")
            return None
        saved = FinetuneConfig.from_dict(read_json(saved_path, "fine-tuning config"), str(saved_path))
        diff = saved.identity_diff(cfg)
        if diff:
            raise ScratchLLMError(f"{out} holds a different fine-tuning run: {'; '.join(diff)}")
        ckpt = find_checkpoint(out, "latest")
        if ckpt is None:                  # stopped before its first checkpoint: start it over
            self.log(f"{out} holds no checkpoint of this run yet: starting it from step 0")
            return None
        if not resume:
            raise ScratchLLMError(f"{out} already holds a fine-tuning run; continue it with --resume "
                                  "or choose another --out")
        return ckpt

    def _prepare(self):
        from ..train.setup import context_length, load_model_checked
        from ..train.tokenizer_files import choose_tokenizer, model_tokenizer
        cfg = self.cfg
        model = load_model_checked(cfg.init_from, "init_from model")
        run_tok = (model_tokenizer(cfg.init_from, model, self.log) if cfg.tokenizer is None else
                   choose_tokenizer(cfg.tokenizer, "", 0, cfg.init_from, model, self.log))
        self.template = get_template(cfg.template)
        plain = all(str(p).endswith(".txt") for p in cfg.data)     # no template, no new tokens
        tok, added = add_special_tokens(run_tok.tokenizer,
                                        () if plain else self.template.special_tokens)
        if added and run_tok.kind not in ("bpe",):
            raise ScratchLLMError(f"template {self.template.name!r} needs special tokens {added} that "
                                  f"the {run_tok.kind} tokenizer of {cfg.init_from} lacks, and only a "
                                  "scratchllm-trained BPE can be saved with new ones; use a template "
                                  "whose tokens it has (e.g. --template alpaca with GPT-2's)")
        run_tok.tokenizer, self.run_tok, self.tokenizer = tok, run_tok, tok
        n_ctx = context_length(model)
        self.context = min(cfg.max_len or n_ctx, n_ctx)
        records, sources, texts = [], [], []
        for path in cfg.data:
            if str(path).endswith(".txt"):                 # plain text: continued pretraining
                texts += text_samples(path, tok, self.context)
                continue
            recs = read_records(path)
            records += recs
            sources += [str(path)] * len(recs)
        if texts and (records or cfg.dpo):
            raise ScratchLLMError("mix of .txt and record files: give either plain text "
                                  "(continued pretraining) or JSON records (SFT/DPO)")
        if cfg.dpo:
            from .dpo import encode_preferences as encode
        else:
            encode = encode_records
        names = [f"{src}: record {i}" for i, src in enumerate(sources)]
        samples = texts or encode(records, self.template, tok, self.context, cfg.truncate, names=names)
        train_idx, val_idx = split_indices(len(samples), cfg.val_fraction, cfg.seed)
        self.train_set = [samples[i] for i in train_idx if samples[i] is not None]
        self.val_set = [samples[i] for i in val_idx if samples[i] is not None]
        dropped = sum(s is None for s in samples)
        if dropped:
            self.log(f"truncate: {dropped} of {len(samples)} records lost every reply token to the "
                     f"{self.context}-token limit and are left out")
        if not self.train_set or not self.val_set:
            raise ScratchLLMError(f"no usable train or val {'pairs' if cfg.dpo else 'samples'} "
                                  f"within {self.context} tokens")
        self.sample_messages = ([{"role": "user", "content": cfg.sample_prompt or "\n"}] if texts
                                else self._prompt_messages(records[int(val_idx[0])]))
        self.plain_text = bool(texts)
        grown = grow_embeddings(model, tok.vocab_size)
        if added:
            self.log(f"added special tokens {added} to the tokenizer; embedding grew by {grown} "
                     "rows (mean initialisation)")
        if cfg.dpo:
            from .dpo import reference_logps
            self.log("reference log-probs of the base model ...")
            self.ref_train = reference_logps(model, self.train_set, cfg.batch_size)
            self.ref_val = reference_logps(model, self.val_set, cfg.batch_size)
        if cfg.lora:
            from .lora import LoRAConfig, apply_lora
            lcfg = LoRAConfig(cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.targets())
            names = apply_lora(model, lcfg, generator=Generator(cfg.seed + 3))
            self.log(f"LoRA r={cfg.lora_r} alpha={cfg.lora_alpha} on {len(names)} layers")
        self.model = model
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = self._make_optimizer()
        n_tr = sum(p.data.size for p in self.params)
        self.log(f"fine-tuning {cfg.init_from}: {len(self.train_set)} train / {len(self.val_set)} val "
                 f"{'pairs' if cfg.dpo else 'samples'}, {n_tr:,} of {model.num_parameters():,} "
                 f"parameters trained, template {self.template.name}")

    def _prompt_messages(self, record):
        if self.cfg.sample_prompt:
            return [{"role": "user", "content": self.cfg.sample_prompt}]
        base = dict(record)
        if self.cfg.dpo and "messages" not in base:
            base = {"instruction": base.get("instruction", ""), "input": base.get("input", ""),
                    "output": ""}
        msgs = self.template.messages_from_record(base) if "messages" in base or \
            "instruction" in base else base.get("messages", [])
        while msgs and msgs[-1]["role"] == "assistant":
            msgs = msgs[:-1]
        return msgs

    def _make_optimizer(self):
        from ..optim import AdamW
        c = self.cfg
        decay = [p for p in self.params if p.ndim >= 2]
        other = [p for p in self.params if p.ndim < 2]
        groups = [{"params": decay, "weight_decay": c.weight_decay}]
        if other:
            groups.append({"params": other, "weight_decay": 0.0})
        return AdamW(groups, lr=c.lr, betas=(c.beta1, c.beta2), eps=1e-8)

    def _resume(self, ckpt):
        state = read_json(ckpt / STATE, "trainer state")
        if state.get("format") != STATE_FORMAT:
            raise ScratchLLMError(f"{ckpt / STATE}: not a scratchllm fine-tuning state")
        if self.cfg.lora:
            from .lora import load_adapter
            load_adapter(self.model, ckpt)
        else:
            from ..io.checkpoint import load
            arrays = load(ckpt / "model.safetensors")
            self.model.load_state_dict(arrays)
        try:
            self.optimizer.load_state_dict(load_optimizer_state(ckpt / OPTIMIZER))
        except (ValueError, KeyError) as e:
            raise ScratchLLMError(f"{ckpt / OPTIMIZER} does not fit the model: {e}") from None
        self.data_gen = Generator(self.cfg.seed)
        self.data_gen.set_state(state["rng"]["data"])
        default_generator().set_state(state["rng"]["default"])
        self.step, self.best_val = int(state["step"]), state["best_val_loss"]
        self.last_val, self.val_before = state["last_val_loss"], state.get("val_before")
        self.elapsed_base = float(state["elapsed_s"])
        write_json(self.out / CONFIG, self.cfg.to_dict())
        self.metrics.truncate_after(self.step)
        self.log(f"resuming {self.out} at step {self.step} of {self.cfg.max_steps}")

    # ------------------------------------------------------------------ steps
    def elapsed(self) -> float:
        return self.elapsed_base + time.perf_counter() - self.t0

    def lr_at(self, step: int) -> float:
        from ..optim.schedules import warmup_cosine
        c = self.cfg
        warm = c.warmup_steps if c.max_steps >= 2 * c.warmup_steps else c.max_steps // 10
        return warmup_cosine(step, c.lr, warm, c.max_steps, c.min_lr)

    def _loss(self, items, ref=None):
        """(loss Tensor, stats) of a batch: SFT's masked mean, or DPO's with ``ref`` log-probs."""
        if self.cfg.dpo:
            from .dpo import dpo_step_loss
            return dpo_step_loss(self.model, items, ref[0], ref[1], self.cfg.dpo_beta)
        x, y = pad_batch(items)
        _, loss = self.model(x, y)
        return loss, {}

    def train_step(self) -> tuple:
        from ..nn.utils import clip_grad_norm_
        from ..optim.schedules import set_lr
        c = self.cfg
        set_lr(self.optimizer, self.lr_at(self.step))
        total, stats = 0.0, {}
        for _ in range(c.grad_accum_steps):
            idx = self.data_gen.integers(0, len(self.train_set), size=c.batch_size)
            ref = (self.ref_train[0][idx], self.ref_train[1][idx]) if c.dpo else None
            loss, stats = self._loss([self.train_set[i] for i in idx], ref)
            value = float(loss.item())
            if not math.isfinite(value):
                raise ScratchLLMError(f"fine-tuning stopped at step {self.step + 1}: the loss is "
                                      f"{value}; try a lower lr (now {c.lr})")
            (loss if c.grad_accum_steps == 1 else loss * (1.0 / c.grad_accum_steps)).backward()
            total += value
        if c.grad_clip > 0:
            clip_grad_norm_(self.params, c.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad()
        self.step += 1
        return total / c.grad_accum_steps, stats

    def evaluate(self) -> tuple:
        """(val loss, stats): SFT: the mean loss per assistant token over the fixed val batches;
        DPO: the mean DPO loss, reward margin and accuracy over them."""
        from ..nn import functional as F
        c = self.cfg
        n = min(len(self.val_set), c.eval_batches * c.batch_size)
        self.model.eval()
        total, count, acc = 0.0, 0, {}
        with no_grad():
            for k in range(0, n, c.batch_size):
                part = self.val_set[k:min(n, k + c.batch_size)]
                if c.dpo:
                    ref = (self.ref_val[0][k:k + len(part)], self.ref_val[1][k:k + len(part)])
                    loss, st = self._loss(part, ref)
                    total, count = total + float(loss.item()) * len(part), count + len(part)
                    for key, v in st.items():
                        acc[key] = acc.get(key, 0.0) + v * len(part)
                else:
                    x, y = pad_batch(part)
                    total += float(F.cross_entropy(self.model(x), y, ignore_index=IGNORE,
                                                   reduction="sum").item())
                    count += int((y != IGNORE).sum())
        self.model.train()
        return total / count, {k: v / count for k, v in acc.items()}

    def sample(self) -> str:
        """The model's greedy reply to the sample prompt (adapters merged for generation)."""
        c = self.cfg
        if self.plain_text:
            ids = self.tokenizer.encode(c.sample_prompt or "\n") or [0]
        else:
            ids, _ = encode_chat(self.template, self.tokenizer, self.sample_messages,
                                 add_generation_prompt=True)
        n_new = max(0, min(c.sample_tokens, self.context - 1))
        ids = ids[-(self.context - n_new):]
        specials = dict(getattr(self.tokenizer, "special_tokens", None) or {})
        stops = () if self.plain_text else tuple(specials[s] for s in self.template.stop_strings
                                                 if s in specials)
        self.model.eval()
        with self._merged():
            out = self.model.generate(xp.asarray([ids], dtype=xp.int64), max_new_tokens=n_new,
                                      temperature=c.temperature, seed=c.seed, stop_tokens=stops)
        self.model.train()
        reply = [int(t) for t in out[0, len(ids):]]
        for k, t in enumerate(reply):
            if t in stops:
                reply = reply[:k]
                break
        text = self.tokenizer.decode(reply)
        for s in () if self.plain_text else self.template.stop_strings:
            text = text.split(s)[0]
        return text.strip()

    def _merged(self):
        import contextlib
        if self.cfg.lora:
            from .lora import merged
            return merged(self.model)
        return contextlib.nullcontext()

    # ------------------------------------------------------------------ saving
    def save_checkpoint(self, is_best: bool) -> None:
        state = {"format": STATE_FORMAT, "version": 1, "step": self.step,
                 "best_val_loss": self.best_val, "last_val_loss": self.last_val,
                 "val_before": self.val_before, "elapsed_s": self.elapsed(),
                 "rng": {"data": self.data_gen.get_state(), "default": default_generator().get_state()}}

        def write(folder):
            if self.cfg.lora:
                from .lora import save_adapter
                save_adapter(self.model, folder, base_model=self.cfg.init_from)
            else:
                self.model.save_pretrained(str(folder), format="scratchllm")
            self.run_tok.save(folder)
            save_optimizer(self.optimizer, folder / OPTIMIZER)
            write_json(folder / CONFIG, self.cfg.to_dict())
            write_json(folder / STATE, state)

        write_folder_atomically(self.out / "latest", write)
        if is_best:
            self._publish_best()

    def _publish_best(self):
        """The whole model (LoRA: merged) + tokenizer at the top of the run folder."""
        def write(folder):
            if self.cfg.lora:
                from .lora import save_merged
                save_merged(self.model, folder)
            else:
                self.model.save_pretrained(str(folder), format="scratchllm")
            self.run_tok.save(folder)
        write_folder_atomically(self.out / "best", write)
        mirror_files(self.out / "best", self.out)
        if self.cfg.lora:
            from .lora import save_adapter
            write_folder_atomically(self.out / "adapter", lambda folder: save_adapter(
                self.model, folder, base_model=self.cfg.init_from))

    # ------------------------------------------------------------------ the loop
    def run(self, stop_at_step: int | None = None) -> FinetuneResult:
        from tqdm.auto import tqdm
        c = self.cfg
        if self.step == 0 and self.val_before is None:
            self.val_before, st = self.evaluate()
            self.metrics.append({"step": 0, "val_loss": round(self.val_before, 6), **_rounded(st)})
            self.log(f"val loss before fine-tuning: {self.val_before:.4f}" + _fmt(st))
        bar = tqdm(total=c.max_steps, initial=self.step, disable=not self.progress, unit="step",
                   dynamic_ncols=True, file=sys.stderr)
        self.stats, self.text, loss = {}, None, float("nan")
        self.model.train()
        saved_at, out_of_time = self.step, False
        while self.step < c.max_steps:
            if stop_at_step is not None and self.step >= stop_at_step:
                break
            if c.max_minutes and time.perf_counter() - self.t0 >= c.max_minutes * 60:
                self.log(f"time budget of {c.max_minutes} minutes reached at step {self.step}")
                out_of_time = True
                break
            lr = self.lr_at(self.step)
            loss, train_stats = self.train_step()
            bar.update(1)
            is_eval = self.step % c.eval_interval == 0 or self.step == c.max_steps
            if self.step % c.log_interval == 0 or is_eval:
                row = {"step": self.step, "loss": round(loss, 6), "lr": lr,
                       "elapsed_s": round(self.elapsed(), 3), **_rounded(train_stats, "train_")}
                if is_eval:
                    self._eval_and_save(row, bar)
                    saved_at = self.step
                else:
                    self.metrics.append(row)
                bar.set_postfix_str(f"loss {loss:.3f}" + (f" val {self.last_val:.3f}"
                                                          if self.last_val is not None else ""),
                                    refresh=False)
        if out_of_time and saved_at != self.step and self.step > 0:   # end with an evaluation
            self._eval_and_save({"step": self.step, "loss": round(loss, 6),
                                 "lr": self.lr_at(self.step - 1),
                                 "elapsed_s": round(self.elapsed(), 3)}, bar)
        elif saved_at != self.step and self.step > 0:
            self.save_checkpoint(is_best=False)
        bar.close()
        if self.best_val is not None:
            self.log(f"val loss {self.val_before:.4f} before, best {self.best_val:.4f}; model in "
                     f"{self.out}" + (f", adapter in {self.out / 'adapter'}" if c.lora else ""))
        return FinetuneResult(self.step, self.val_before, self.best_val, self.last_val, self.stats,
                              self.text, self.out)

    def _eval_and_save(self, row: dict, bar) -> None:
        """Evaluate, checkpoint (publishing the model when it is the best so far), log, plot,
        print a sample reply."""
        c = self.cfg
        val, self.stats = self.evaluate()
        self.last_val = val
        is_best = self.best_val is None or val < self.best_val
        self.best_val = val if is_best else self.best_val
        self.save_checkpoint(is_best)
        row.update({"val_loss": round(val, 6), **_rounded(self.stats)})
        self.metrics.append(row)
        plot_losses(self.metrics.read(), self.out / "loss.png",
                    title=f"fine-tuning ({'DPO' if c.dpo else 'SFT'}{', LoRA' if c.lora else ''}): "
                          f"{self.out.name}")
        if c.sample_tokens:
            self.text = self.sample()
            bar.write(f"step {self.step}: val loss {val:.4f}{_fmt(self.stats)}\n"
                      f"  sample reply: {self.text!r}", file=sys.stderr)


def _rounded(stats: dict, prefix: str = "") -> dict:
    return {prefix + k: round(float(v), 6) for k, v in stats.items()}


def _fmt(stats: dict) -> str:
    if not stats:
        return ""
    return f" (reward margin {stats['reward_margin']:.3f}, accuracy {stats['accuracy']:.2f})"


def finetune(cfg: FinetuneConfig, out_dir, resume: bool = False, stop_at_step: int | None = None,
             progress: bool = True, log=None) -> FinetuneResult:
    """Fine-tune (or continue fine-tuning) the run ``cfg`` in ``out_dir``; see the module docstring."""
    return Finetuner(cfg, out_dir, resume, progress, log).run(stop_at_step)
