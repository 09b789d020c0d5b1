import pytest

from scratchllm.data import bundled_corpus_path
from scratchllm.train import TrainConfig

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
