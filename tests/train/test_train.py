"""The training loop: learning, exact resume, crash safety, NaN stop, fine-tuning."""
import json
import math

import numpy as np
import pytest

import scratchllm as sl
from scratchllm.errors import ScratchLLMError
from scratchllm.io.checkpoint import load
from scratchllm.train import Trainer, train
from scratchllm.train import checkpoint as ckpt_mod
from scratchllm.tokenizers import load_tokenizer
from scratchllm.train.checkpoint import find_checkpoint

from train.conftest import check_resume_is_exact


def rows(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def state(out, name="latest"):
    return json.loads((find_checkpoint(out, name) / "trainer_state.json").read_text())


def test_a_few_steps_lower_the_loss(tiny, tmp_path):
    out = tmp_path / "run"
    trainer = Trainer(tiny(max_steps=24, eval_interval=12), out, progress=False, log=lambda m: None)
    before = trainer.evaluate()
    assert abs(before - math.log(trainer.tokenizer.vocab_size)) < 0.5   # about uniform at the start
    result = trainer.run()
    assert result.stop_reason == "max_steps" and result.step == 24
    assert result.best_val_loss < before - 0.5
    log = rows(out)
    assert [r["step"] for r in log] == list(range(1, 25))
    assert [r["step"] for r in log if "val_loss" in r] == [12, 24]
    assert all({"step", "loss", "lr", "elapsed_s", "tokens_per_s"} <= set(r) for r in log)
    assert np.mean([r["loss"] for r in log[-4:]]) < np.mean([r["loss"] for r in log[:4]]) - 0.3
    assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert isinstance(result.sample, str) and len(result.sample) == 21        # prompt "\n" + 20 characters
    # the run folder is a model folder: sl.load_model reads it, and its best/latest checkpoints
    for folder in (out, out / "best", out / "latest"):
        model = sl.load_model(folder)
        assert model.config.n_layer == 1 and model.config.vocab_size == trainer.tokenizer.vocab_size
    assert state(out)["step"] == 24


@pytest.mark.parametrize("arch, extra", [("gpt", dict(dropout=0.1, grad_accum_steps=2)),
                                         ("llama", dict(n_kv_head=1))])
def test_resume_is_exact(tiny, tmp_path, arch, extra):
    check_resume_is_exact(tiny(arch=arch, max_steps=10, eval_interval=4, **extra), tmp_path, stop_at=6)


def test_crash_while_writing_a_checkpoint_keeps_the_previous_one(tiny, tmp_path, monkeypatch):
    cfg, out = tiny(max_steps=12, eval_interval=4), tmp_path / "run"
    quiet = dict(progress=False, log=lambda m: None)
    train(cfg, out, stop_at_step=4, **quiet)
    weights = load(out / "latest" / "model.safetensors")
    real_save = ckpt_mod.save_optimizer

    def crash(optimizer, path):          # the process dies half-way through the next checkpoint
        path.write_bytes(b"\x00" * 10)
        raise KeyboardInterrupt
    monkeypatch.setattr("scratchllm.train.trainer.save_optimizer", crash)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, out, resume=True, **quiet)
    assert state(out)["step"] == 4
    again = load(out / "latest" / "model.safetensors")
    assert all(np.array_equal(weights[k], again[k]) for k in weights)
    sl.load_model(out / "latest")
    monkeypatch.setattr("scratchllm.train.trainer.save_optimizer", real_save)
    result = train(cfg, out, resume=True, **quiet)       # and the run continues from it
    assert result.step == 12 and [r["step"] for r in rows(out)] == list(range(1, 13))


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tiny, tmp_path, monkeypatch):
    cfg, out = tiny(max_steps=12, eval_interval=4), tmp_path / "run"
    quiet = dict(progress=False, log=lambda m: None)
    train(cfg, out, stop_at_step=4, **quiet)
    before = (out / "latest" / "model.safetensors").read_bytes()
    from scratchllm.nn import functional as F
    real = F.cross_entropy
    monkeypatch.setattr(F, "cross_entropy", lambda logits, t, **kw: real(logits, t, **kw) * float("nan"))
    with pytest.raises(ScratchLLMError, match=r"step 5: the training loss is nan; the last good checkpoint "
                                              r"\(step 4\) is kept"):
        train(cfg, out, resume=True, **quiet)
    assert (out / "latest" / "model.safetensors").read_bytes() == before and state(out)["step"] == 4


def test_time_budget_ends_with_a_final_eval(tiny, tmp_path):
    out = tmp_path / "run"
    lines = []
    result = train(tiny(max_steps=10_000, max_minutes=0.02), out, progress=False, log=lines.append)
    assert result.stop_reason == "max_minutes" and 0 < result.step < 10_000
    said = [m for m in lines if m.startswith("time budget")]                 # the schedule is cut short: say so
    assert said == [f"time budget of 0.02 minutes reached at step {result.step} of 10000: the learning rate is "
                    f"still {rows(out)[-1]['lr']:.2e} (min_lr {tiny().min_lr:.2e}), the schedule is not finished; "
                    f"--resume continues it with a new time budget"]
    assert state(out)["step"] == result.step and rows(out)[-1]["val_loss"] == pytest.approx(result.last_val_loss,
                                                                                            abs=1e-6)
    assert result.sample is not None


def test_bpe_preset_pipeline(tiny, tmp_path):
    out = tmp_path / "run"
    result = train(tiny(tokenizer="bpe", bpe_vocab_size=300, max_steps=4), out, progress=False, log=lambda m: None)
    tok = load_tokenizer(out)                       # the run folder holds its BPE tokenizer
    assert tok.vocab_size == 300 and sl.load_model(out).config.vocab_size == 300
    assert result.step == 4
    meta = json.loads((out / "data" / "meta.json").read_text())
    assert meta["dtype"] == "uint16" and meta["vocab_size"] == 300


def test_fine_tune_hf_gpt2_folder(tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        n_layer=1, n_head=2, n_embd=32, n_positions=64, vocab_size=50257))
    hf.eval()
    hf.save_pretrained(tmp_path / "gpt2-tiny")
    text = "The quick brown fox jumps over the lazy dog. " * 60
    (tmp_path / "new.txt").write_text(text)
    from scratchllm.train import TrainConfig
    cfg = TrainConfig().updated(dict(init_from=str(tmp_path / "gpt2-tiny"), tokenizer=None,   # the model's own
                                     data=[str(tmp_path / "new.txt")], block_size=32, batch_size=4, max_steps=12,
                                     warmup_steps=2, lr=3e-3, eval_interval=6, eval_batches=2, sample_tokens=5))
    trainer = Trainer(cfg, tmp_path / "ft", progress=False, log=lambda m: None)
    assert (trainer.tokenizer.kind, trainer.tokenizer.name) == ("name", "gpt2")   # no files: GPT-2's by its vocab
    ids = np.array([load_tokenizer("gpt2").encode(text[:64])])
    with sl.no_grad():                                   # it starts from the HF weights exactly
        ours = trainer.model(ids).numpy()
        theirs = hf(torch.tensor(ids)).logits.detach().numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)
    before = trainer.evaluate()
    result = trainer.run()
    assert result.best_val_loss < before - 1.0
    assert sl.load_model(tmp_path / "ft").config.vocab_size == 50257
