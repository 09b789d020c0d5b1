"""Resume must remember the best validation loss: a worse eval after ``--resume`` leaves best/ alone.

The tiny runs elsewhere improve at every eval, so forgetting ``best_val_loss`` on resume
would pass them; here the validation losses are scripted (2.0 before the stop, then 3.0 and
2.5 after the resume: both worse), so best/ must still hold step 4.
"""
import json

import pytest

from scratchllm.data import bundled_corpus_path
from scratchllm.train import Trainer, TrainConfig, train

CFG = dict(preset="shakespeare-char", n_layer=1, n_head=2, n_embd=16, block_size=8, batch_size=4,
           max_steps=12, warmup_steps=2, lr=1e-2, min_lr=1e-3, eval_interval=4, eval_batches=1,
           log_interval=1, sample_tokens=0, seed=5)


@pytest.fixture
def cfg(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(bundled_corpus_path().read_text(encoding="utf-8")[:5_000], encoding="utf-8")
    return TrainConfig().updated({**CFG, "data": [str(corpus)]})


def _files(folder) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_worse_eval_after_resume_keeps_best(cfg, tmp_path, monkeypatch):
    vals = iter([2.0, 3.0, 2.5])
    monkeypatch.setattr(Trainer, "evaluate", lambda self: next(vals))
    quiet = dict(progress=False, log=lambda m: None)
    out = tmp_path / "run"
    first = train(cfg, out, stop_at_step=4, **quiet)
    assert first.best_val_loss == 2.0
    best_before = _files(out / "best")
    assert json.loads(best_before["trainer_state.json"])["step"] == 4
    root_model = (out / "model.safetensors").read_bytes()

    result = train(cfg, out, resume=True, **quiet)           # evals at steps 8 and 12: 3.0, 2.5
    assert result.step == 12 and result.best_val_loss == 2.0 and result.last_val_loss == 2.5
    assert _files(out / "best") == best_before
    assert (out / "model.safetensors").read_bytes() == root_model   # the run folder's model is the best one
    latest = json.loads((out / "latest" / "trainer_state.json").read_text())
    assert latest["step"] == 12 and latest["best_val_loss"] == 2.0
