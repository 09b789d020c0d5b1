import json

import numpy as np
import pytest

from scratchllm.data import bundled_corpus_path
from scratchllm.io.checkpoint import load
from scratchllm.train import TrainConfig, train

TINY = dict(preset="shakespeare-char", n_layer=1, n_head=2, n_embd=32, block_size=16, batch_size=8,
            max_steps=12, warmup_steps=2, lr=1e-2, min_lr=1e-3, eval_interval=4, eval_batches=2,
            log_interval=1, sample_tokens=20, seed=3)


@pytest.fixture
def corpus(tmp_path):
    """The first 20,000 characters of Tiny Shakespeare, as a user's text file."""
    path = tmp_path / "corpus.txt"
    path.write_text(bundled_corpus_path().read_text(encoding="utf-8")[:20_000], encoding="utf-8")
    return path


@pytest.fixture
def tiny(corpus):
    """A configuration that trains in well under a second per step."""
    def make(**overrides):
        return TrainConfig().updated({**TINY, "data": [str(corpus)], **overrides})
    return make


def check_resume_is_exact(cfg, tmp_path, stop_at: int) -> None:
    """Stopped at ``stop_at`` and resumed (folder a) = one straight run (folder b), bit for bit:
    weights, optimizer state, the logged losses, the RNG state and the best validation loss."""
    def state(out):
        return json.loads((out / "latest" / "trainer_state.json").read_text())

    def logged(out):
        return [(r["step"], r["loss"], r.get("val_loss"))
                for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())]

    a, b, quiet = tmp_path / "a", tmp_path / "b", dict(progress=False, log=lambda m: None)
    first = train(cfg, a, stop_at_step=stop_at, **quiet)
    assert first.stop_reason == "stop_at_step" and state(a)["step"] == stop_at
    train(cfg, a, resume=True, **quiet)
    train(cfg, b, **quiet)
    for name in ("model.safetensors", "optimizer.safetensors"):
        wa, wb = load(a / "latest" / name), load(b / "latest" / name)
        assert wa.keys() == wb.keys()
        for k in wa:
            assert wa[k].dtype == wb[k].dtype and np.array_equal(wa[k], wb[k]), (name, k)
    assert logged(a) == logged(b)
    sa, sb = state(a), state(b)
    assert sa["rng"] == sb["rng"] and sa["best_val_loss"] == sb["best_val_loss"] and sa["step"] == cfg.max_steps
