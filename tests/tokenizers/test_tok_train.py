"""Training: incremental merges, determinism, equality with tiktoken on the trained ranks,
special tokens, save/load round trip, decode(encode(x)) == x."""
import json
import time

import pytest
from hypothesis import given, settings

from scratchllm.tokenizers import BPETokenizer, load_tokenizer
from scratchllm.tokenizers.pretokenize import PATTERNS

from tok_helpers import unicode_text


@pytest.fixture(scope="module")
def trained(corpus):
    t0 = time.perf_counter()
    tok = BPETokenizer.train(corpus, 4096, pattern="gpt4", special_tokens=["<|endoftext|>"])
    return tok, time.perf_counter() - t0


def test_worked_example():
    tok = BPETokenizer.train("aaabdaaabac", 259, pattern=None)  # Wikipedia's BPE example
    assert tok.merges == [(97, 97), (97, 98), (256, 257)]  # aa=Z, ab=Y, ZY=X
    assert tok.encode("aaabdaaabac") == [258, 100, 258, 97, 99]


def test_ties_break_by_smallest_pair_and_training_is_deterministic():
    tok = BPETokenizer.train("ab cd", 257, pattern=None)  # (97,98),(98,32),(32,99),(99,100): 1 each
    assert tok.merges == [(32, 99)]
    a = BPETokenizer.train("the cat sat on the mat " * 20, 300, pattern="gpt2")
    b = BPETokenizer.train("the cat sat on the mat " * 20, 300, pattern="gpt2")
    assert a.merges == b.merges


def test_whole_corpus_vocab_4096_fast_and_equal_to_tiktoken(trained, corpus):
    import tiktoken
    tok, seconds = trained
    assert seconds < 30, f"training took {seconds:.1f} s"
    assert len(tok.merges) == 4096 - 256 and tok.vocab_size == 4097
    assert tok.special_tokens == {"<|endoftext|>": 4096}
    ref = tiktoken.Encoding("t", pat_str=PATTERNS["gpt4"], mergeable_ranks=tok.ranks,
                            special_tokens=tok.special_tokens)
    ids = tok.encode(corpus)
    assert ids == ref.encode_ordinary(corpus)
    assert tok.decode(ids) == corpus
    assert len(ids) < len(corpus.encode()) / 3  # the merges compress the training text


def test_special_tokens_only_when_allowed(trained):
    tok, _ = trained
    text = "to be<|endoftext|>or not"
    assert 4096 not in tok.encode(text)
    ids = tok.encode(text, allowed_special="all")
    assert ids.count(4096) == 1 and tok.decode(ids) == text
    assert tok.encode(text, allowed_special={"<|endoftext|>"}) == ids
    with pytest.raises(ValueError, match="not special tokens"):
        tok.encode(text, allowed_special={"<|nope|>"})


def test_save_load_round_trip(trained, corpus, tmp_path):
    tok, _ = trained
    path = tmp_path / "tok.json"
    tok.save(path)
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["format"] == "scratchllm-bpe" and doc["version"] == 1
    assert doc["merges"][0][:2] == list(tok.merges[0]) and isinstance(doc["merges"][0][2], str)
    for loaded in (BPETokenizer.load(path), load_tokenizer(path)):
        assert loaded.merges == tok.merges and loaded.ranks == tok.ranks
        assert loaded.special_tokens == tok.special_tokens and loaded.pattern == "gpt4"
        sample = corpus[:20000] + "<|endoftext|>"
        assert loaded.encode(sample, allowed_special="all") == tok.encode(sample,
                                                                          allowed_special="all")
    assert [p.name for p in tmp_path.iterdir()] == ["tok.json"]  # no temp file left behind


def test_custom_pattern_none_and_decode_errors(tmp_path):
    tok = BPETokenizer.train("hello hello world", 270, pattern=r"\p{L}+|\s+",
                             special_tokens={"<s>": 300, "</s>": 301}, bos="<s>", eos="</s>")
    tok.save(tmp_path / "t.json")
    with pytest.raises(ValueError, match="trust_pattern=True"):   # a file's own regex: only when trusted
        load_tokenizer(tmp_path / "t.json")
    again = load_tokenizer(tmp_path / "t.json", trust_pattern=True)
    assert again.pattern == r"\p{L}+|\s+" and again.encode("hello") == tok.encode("hello")
    assert again.encode("hello", bos=True, eos=True) == [300, *tok.encode("hello"), 301]
    none = BPETokenizer.train("hello hello world", 262, pattern=None)
    assert none.encode("hello hello") == [none.token_to_id("hello "), none.token_to_id("hello")]
    assert tok.decode([0xE2, 0x82]) == "\ufffd"  # invalid UTF-8 never raises
    with pytest.raises(ValueError, match="not in the vocabulary"):
        tok.decode([99999])
    with pytest.raises(ValueError, match="at least 256"):
        BPETokenizer.train("x", 100)
    with pytest.raises(ValueError, match="only tokenizers trained"):
        load_tokenizer("gpt2").save(tmp_path / "g.json")


@settings(max_examples=200, deadline=None)
@given(text=unicode_text)
def test_round_trip(trained, text):
    tok, _ = trained
    assert tok.decode(tok.encode(text)) == text
    assert tok.decode(tok.encode(text, allowed_special="all")) == text
