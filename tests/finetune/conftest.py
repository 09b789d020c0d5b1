"""Shared helpers for the fine-tuning tests (offline HF tokenizer with a chat template)."""
import pytest

from finetune_helpers import make_hf_tokenizer


@pytest.fixture
def hf_tokenizer_factory(tmp_path):
    return lambda template, **kw: make_hf_tokenizer(tmp_path, template, **kw)
