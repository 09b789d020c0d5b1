"""Issue 13's hostile tokenizer files, one test per reported case (and neighbours), and the encode
algorithms that replaced the quadratic ones checked against SentencePiece/tiktoken."""
import base64
import json
import struct

import pytest
from hypothesis import given, settings, strategies as st

from scratchllm.errors import ScratchLLMError
from scratchllm.tokenizers import BPETokenizer, load_tokenizer
from scratchllm.tokenizers.bpe import MAX_CHUNK
from scratchllm.tokenizers.sentencepiece import MAX_WORD

from hostile_files import bounded, llama2c_tokenizer_bytes, sp_model_bytes

DEEP = "[" * 100_000 + "]" * 100_000


def refused(path, *fields, **kwargs):
    result, err = bounded(lambda: load_tokenizer(path, **kwargs), path)
    assert err is not None, f"accepted: {result!r}"
    assert isinstance(err, ValueError)            # the readers raised ValueError before: still one
    for f in (str(path), *fields):
        assert f in str(err), str(err)


# ================================================================== deep JSON
def test_deep_encoder_json(tmp_path):
    folder = tmp_path / "gpt2"
    folder.mkdir()
    (folder / "encoder.json").write_text(DEEP)
    (folder / "vocab.bpe").write_text("#version: 0.2\n")
    refused(folder / "encoder.json", "nested deeper")


@pytest.mark.parametrize("doc", ['{"format": "scratchllm-bpe", "version": 1, "merges": ' + DEEP + "}",
                                 '{"format": "scratchllm-char", "version": 1, "chars": ' + DEEP + "}",
                                 '{"x": ' + DEEP + "}"])
def test_deep_tokenizer_json(tmp_path, doc):
    path = tmp_path / "tok.json"
    path.write_text(doc)
    refused(path, "nested deeper")


def test_deep_train_config_json(tmp_path):
    from scratchllm.train.config import read_config_file
    path = tmp_path / "c.json"
    path.write_text(DEEP)
    with pytest.raises(ScratchLLMError, match="nested deeper"):
        read_config_file(path)


# ================================================================== file-supplied patterns
def _scratchllm_file(path, pattern):
    tok = BPETokenizer.train("ab ab abc " * 20, 260, pattern="gpt2")
    tok.save(path)
    doc = json.loads(path.read_text())
    doc["pattern"] = pattern
    path.write_text(json.dumps(doc))


def test_file_pattern_exponential_refused_unless_trusted(tmp_path):
    path = tmp_path / "evil.json"
    _scratchllm_file(path, "(a+)+b")
    refused(path, "(a+)+b", "trust_pattern=True")
    with pytest.raises(ScratchLLMError, match="trust_pattern"):
        BPETokenizer.load(path)
    tok = load_tokenizer(path, trust_pattern=True)                   # the caller's decision
    assert tok.pattern == "(a+)+b" and tok.encode("aab") == tok.encode("aab")


@pytest.mark.parametrize("pattern", ["gpt2", "gpt4", "llama3", "cl100k", "none", None])
def test_known_patterns_by_name_are_accepted(tmp_path, pattern):
    path = tmp_path / "ok.json"
    _scratchllm_file(path, pattern)
    assert load_tokenizer(path).decode(load_tokenizer(path).encode("ab abc")) == "ab abc"


def test_known_pattern_text_is_accepted(tmp_path):
    from scratchllm.tokenizers import PATTERNS
    path = tmp_path / "text.json"
    _scratchllm_file(path, PATTERNS["llama3"])
    assert load_tokenizer(path).pattern == PATTERNS["llama3"]


def test_pattern_of_wrong_type(tmp_path):
    path = tmp_path / "t.json"
    _scratchllm_file(path, ["gpt2"])
    refused(path, "pattern")


# ================================================================== ids against the vocabulary
def _sp(tmp_path, **kw):
    path = tmp_path / "sp.model"
    path.write_bytes(sp_model_bytes(**kw))
    return path


@pytest.mark.parametrize("field,value", [("unk_id", 10**6), ("unk_id", -1), ("bos_id", -5), ("eos_id", 10**6),
                                         ("bos_id", 269), ("bos_id", 268)])
def test_sentencepiece_ids_outside_the_vocabulary(tmp_path, field, value):
    path = _sp(tmp_path, **{field: value})
    if value == 268:                                      # the last piece of this 269-piece model
        assert load_tokenizer(path).encode("ab", bos=True)[0] == 268
        return
    refused(path, field, str(value))


def test_sentencepiece_disabled_bos_is_minus_one(tmp_path):
    tok = load_tokenizer(_sp(tmp_path, bos_id=-1))
    assert tok.encode("ab") == tok.encode("ab")
    with pytest.raises(ValueError, match="no bos"):
        tok.encode("ab", bos=True)


def _tiktoken(path, extra):
    lines = [f"{base64.b64encode(bytes([b])).decode()} {b}" for b in range(256)] + extra
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("rank", [10**18, 300, 2**31])
def test_tiktoken_rank_beyond_the_vocabulary(tmp_path, rank):
    path = _tiktoken(tmp_path / "t.tiktoken", [f"{base64.b64encode(b'ab').decode()} {rank}"])
    refused(path, f"rank {rank}")


@pytest.mark.parametrize("special", [{"<|x|>": -1}, {"<|x|>": 10**18}, {"<|x|>": True}, {"<|x|>": 3}])
def test_tiktoken_special_ids(tmp_path, special):
    path = _tiktoken(tmp_path / "t.tiktoken", [])
    refused(path, "<|x|>", special_tokens=special)


def test_scratchllm_file_special_ids_and_merge_bomb(tmp_path):
    path = tmp_path / "t.json"
    tok = BPETokenizer.train("ab ab abc " * 20, 260, pattern="gpt2", special_tokens={"<s>": 260})
    tok.save(path)
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, "special_tokens": {"<s>": 10**12}}))
    refused(path, "<s>")
    doubling = [[97, 97]] + [[256 + k, 256 + k] for k in range(60)]       # token 256+k: 2**(k+1) bytes
    path.write_text(json.dumps({**doc, "special_tokens": {}, "merges": doubling}))
    refused(path, "tokens longer than")


def test_llama2c_tokenizer_bin_truncated_and_lying(tmp_path):
    data = llama2c_tokenizer_bytes()
    path = tmp_path / "tok.bin"
    path.write_bytes(data[:4] + struct.pack("<fi", 0.0, 2**31 - 1) + data[12:])
    refused(path, "claims")
    path.write_bytes(struct.pack("<i", 2**31 - 1) + data[4:])
    refused(path, "max_token_length")


# ================================================================== near-linear encode, still exact
def test_heap_sentencepiece_matches_the_library_on_long_words(sp_ref, llama2_model, llama2_bin):
    import random
    rng = random.Random(0)
    for n in (50, 700, 5000, MAX_WORD):
        word = "".join(rng.choice("abcdefghij,.'-") for _ in range(n))
        want = sp_ref.encode(word)
        assert llama2_model.encode(word) == want
        assert llama2_bin.encode(word) == want


@settings(max_examples=60, deadline=None)
@given(st.text(st.sampled_from("aabbcdé▁ \n<>0x"), max_size=300))
def test_heap_sentencepiece_matches_the_library(sp_ref, llama2_model, text):
    assert llama2_model.encode(text) == sp_ref.encode(text)


def test_heap_bpe_matches_tiktoken_on_long_chunks(llama3, llama3_ref):
    import random
    rng = random.Random(1)
    for n in (40, 300, 3000, MAX_CHUNK):
        text = "".join(rng.choice("abcdefgh") for _ in range(n))
        assert llama3.encode(text) == llama3_ref.encode(text)


def test_ten_megabytes_of_one_letter_is_bounded(gpt2, tmp_path):
    text = "a" * (10 << 20)
    path = tmp_path / "size"
    path.write_bytes(b"")                        # bounded() measures against the text's size instead
    import os
    size = len(text)
    result, err = bounded(lambda: gpt2.encode(text), path, extra=10 * size)
    assert err is None and len(result) == 10 << 20 >> 2 and os.path.getsize(path) == 0


def test_long_words_encode_in_near_linear_time(llama2_bin):
    import time
    word = "".join("abcdefghijklmnopqrstuvwxyz"[(i * 7) % 26] for i in range(40_000))
    t0 = time.perf_counter()
    llama2_bin.encode(word)
    assert time.perf_counter() - t0 < 10            # 33 s before (quadratic); ~0.1 s now
