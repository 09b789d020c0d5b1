"""A model folder as HF publishes it holds HF's tokenizer.json beside tokenizer.model:
load_tokenizer(folder) prefers the SentencePiece file, and says what is wrong with a bad tokenizer.json."""
import shutil

import pytest

from scratchllm.tokenizers import SentencePieceBPE, load_tokenizer

from tok_helpers import LLAMA2_MODEL

HF_TOKENIZER_JSON = '{"version": "1.0", "model": {"type": "BPE", "vocab": {}, "merges": []}}'


def test_hf_folder_reads_tokenizer_model_not_hf_tokenizer_json(tmp_path, sp_ref):
    (tmp_path / "tokenizer.json").write_text(HF_TOKENIZER_JSON)
    shutil.copy(LLAMA2_MODEL, tmp_path / "tokenizer.model")
    tok = load_tokenizer(tmp_path)
    assert isinstance(tok, SentencePieceBPE)
    text = "Hello world, this is a test."
    assert tok.encode(text) == sp_ref.encode(text)


def test_folder_with_only_an_empty_hf_tokenizer_json_says_so(tmp_path):
    (tmp_path / "tokenizer.json").write_text(HF_TOKENIZER_JSON)
    with pytest.raises(ValueError, match=r"tokenizer.json: model.vocab: the vocabulary is empty"):
        load_tokenizer(tmp_path)
