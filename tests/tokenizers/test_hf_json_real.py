"""Real vocabularies in the tokenizer.json layout transformers itself writes (offline): Llama 2's
32,000 pieces (LlamaTokenizer from tokenizer.model's pieces, Metaspace + byte fallback) and
GPT-2's 50,257 tokens, read back by load_tokenizer(folder) and compared with AutoTokenizer."""
import json

import pytest
from hypothesis import given, settings

from scratchllm.tokenizers import load_tokenizer
from scratchllm.tokenizers.hf_json import HFTokenizer

from tok_helpers import DATA, unicode_text


@pytest.fixture(scope="module")
def llama2_hf(tmp_path_factory, sp_ref):
    from transformers import AutoTokenizer, LlamaTokenizer
    from transformers.convert_slow_tokenizer import generate_merges
    vocab = {sp_ref.id_to_piece(i): i for i in range(sp_ref.get_piece_size())}
    folder = tmp_path_factory.mktemp("llama2-hf")
    LlamaTokenizer(vocab=vocab, merges=generate_merges(vocab)).save_pretrained(str(folder))
    return AutoTokenizer.from_pretrained(str(folder)), load_tokenizer(folder)


@pytest.fixture(scope="module")
def gpt2_hf(tmp_path_factory):
    from transformers import AutoTokenizer, GPT2Tokenizer
    folder = tmp_path_factory.mktemp("gpt2-hf")
    vocab = json.loads((DATA / "gpt2" / "encoder.json").read_text(encoding="utf-8"))
    merges = [tuple(line.split(" ")) for line in
              (DATA / "gpt2" / "vocab.bpe").read_text(encoding="utf-8").split("\n")[1:] if line]
    GPT2Tokenizer(vocab=vocab, merges=merges).save_pretrained(str(folder))
    return AutoTokenizer.from_pretrained(str(folder)), load_tokenizer(folder)


def _same(auto, ours, text):
    ids = auto(text, add_special_tokens=False)["input_ids"]
    assert ours.encode(text) == ids, text
    assert ours.encode(text, add_special_tokens=True) == auto(text)["input_ids"], text
    assert ours.decode(ids) == auto.decode(ids), text


def test_llama2_tokenizer_json_equals_transformers(llama2_hf, sp_ref, corpus):
    auto, ours = llama2_hf
    assert isinstance(ours, HFTokenizer) and ours.vocab_size == 32000
    assert (ours.bos_id, ours.eos_id, ours.unk_id) == (1, 2, 0)
    text = corpus[:40_000]
    _same(auto, ours, text)
    assert ours.encode(text) == sp_ref.encode(text)      # on plain text also SentencePiece's ids
    for t in (" leading", "a  b", "<s>hi</s>", "日本語 👍🏽\n\n x"):  # where HF and SentencePiece differ
        _same(auto, ours, t)


@settings(max_examples=40, deadline=None)
@given(text=unicode_text)
def test_llama2_tokenizer_json_unicode(llama2_hf, text):
    _same(*llama2_hf, text)


def test_gpt2_tokenizer_json_equals_transformers_and_tiktoken(gpt2_hf, gpt2_ref, corpus):
    auto, ours = gpt2_hf
    text = corpus[300_000:340_000]
    _same(auto, ours, text)
    assert ours.encode(text) == gpt2_ref.encode_ordinary(text)
    assert (ours.bos_id, ours.eos_id) == (50256, 50256)
