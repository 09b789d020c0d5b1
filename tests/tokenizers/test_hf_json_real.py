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


def test_llama3_tokenizer_json_as_transformers_converts_it(tmp_path, llama3, llama3_ref, corpus):
    """Llama 3's 128,000 ranks through transformers' TikTokenConverter (Split + ByteLevel,
    ignore_merges, 280,147 merges) read back equal our tiktoken reader and tiktoken."""
    from transformers.convert_slow_tokenizer import TikTokenConverter
    from scratchllm.tokenizers import PATTERNS
    from scratchllm.tokenizers.tiktoken_file import llama3_special_tokens
    from tok_helpers import LLAMA3
    hf = TikTokenConverter(vocab_file=str(LLAMA3), pattern=PATTERNS["llama3"],
                           additional_special_tokens=list(llama3_special_tokens())).converted()
    hf.add_special_tokens(list(llama3_special_tokens()))          # ids 128000.. in Meta's order
    hf.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}))
    ours = load_tokenizer(tmp_path)
    text = corpus[600_000:620_000] + " 日本語の 👨‍👩‍👧‍👦 12345 it's"
    ids = ours.encode(text)
    assert ids == hf.encode(text, add_special_tokens=False).ids == llama3.encode(text) == llama3_ref.encode(text)
    assert ours.decode(ids) == hf.decode(ids) == text
    assert (ours.bos_id, ours.eos_id) == (128000, 128009)
    assert ours.encode("<|eot_id|>x") == [128009, 87]
