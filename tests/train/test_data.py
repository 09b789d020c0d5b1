"""The data pipeline: CharTokenizer, corpus reading, id files, batches."""
import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from scratchllm.autograd.random import Generator
from scratchllm.data import (CharTokenizer, TokenFile, bundled_corpus_path, check_split_lengths, id_dtype,
                             read_corpus, read_meta, split_ids, write_token_files)
from scratchllm.errors import ScratchLLMError


# ---------------------------------------------------------------- CharTokenizer
@settings(max_examples=40, deadline=None)
@given(st.text(min_size=1, max_size=200))
def test_char_tokenizer_round_trip(text):
    tok = CharTokenizer.train(text)
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert ids == [sorted(set(text)).index(c) for c in text]      # ids = rank of the char's code point
    assert tok.encode_array(text).dtype == np.int64


def test_char_tokenizer_docstring_example():
    tok = CharTokenizer.train("hello world")
    assert tok.vocab_size == 8 and tok.encode("hello") == [3, 2, 4, 4, 5]


def test_char_tokenizer_save_load(tmp_path):
    tok = CharTokenizer.train("Zebra ünïcode 🙂\n")
    tok.save(tmp_path / "t.json")
    d = json.loads((tmp_path / "t.json").read_text(encoding="utf-8"))
    assert d["format"] == "scratchllm-char" and d["chars"] == tok.chars
    again = CharTokenizer.load(tmp_path / "t.json")
    assert again.chars == tok.chars and again.encode("🙂 Z") == tok.encode("🙂 Z")
    assert [p.name for p in tmp_path.iterdir()] == ["t.json"]       # no temporary file left


def test_char_tokenizer_errors(tmp_path):
    tok = CharTokenizer.train("abc")
    with pytest.raises(ScratchLLMError, match=r"'z' \(at offset 2\)"):
        tok.encode("abz")
    with pytest.raises(ScratchLLMError, match="out of range"):
        tok.decode([3])
    with pytest.raises(ScratchLLMError, match="not found"):
        CharTokenizer.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"format": "scratchllm-bpe"}')
    with pytest.raises(ScratchLLMError, match="not a character tokenizer"):
        CharTokenizer.load(tmp_path / "bad.json")
    assert tok.encode("") == []


# ---------------------------------------------------------------- corpus
def test_bundled_corpus_is_tiny_shakespeare():
    text = read_corpus([])
    assert bundled_corpus_path().name == "tinyshakespeare.txt"
    assert len(text) == 1115394 and len(set(text)) == 65 and text.startswith("First Citizen:")


def test_read_corpus_files_and_folders(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "b.txt").write_text("bee")
    (tmp_path / "d" / "a.md").write_text("ay")
    (tmp_path / "d" / "sub" / "c.txt").write_text("sea")
    (tmp_path / "d" / ".hidden.txt").write_text("no")
    (tmp_path / "d" / "image.png").write_bytes(b"\x89PNG")
    assert read_corpus(tmp_path / "d") == "ay\nbee\nsea"
    assert read_corpus([tmp_path / "d" / "b.txt", tmp_path / "d" / "a.md"]) == "bee\nay"


def test_read_corpus_errors(tmp_path):
    with pytest.raises(ScratchLLMError, match="data file not found: .*nope.txt"):
        read_corpus([tmp_path / "nope.txt"])
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(ScratchLLMError, match="corpus is empty"):
        read_corpus([tmp_path / "empty.txt"])
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00abc")
    with pytest.raises(ScratchLLMError, match="not UTF-8"):
        read_corpus([tmp_path / "bin.txt"])
    (tmp_path / "nothing").mkdir()
    with pytest.raises(ScratchLLMError, match="holds no text files"):
        read_corpus([tmp_path / "nothing"])


# ---------------------------------------------------------------- id files and batches
def test_id_dtype():
    assert id_dtype(65) == np.uint16 and id_dtype(65536) == np.uint16
    assert id_dtype(65537) == np.uint32 and id_dtype(128256) == np.uint32


@pytest.mark.parametrize("vocab", [65, 100_000])
def test_write_token_files(tmp_path, vocab):
    ids = (np.arange(1000) * 7919) % vocab
    meta = write_token_files(ids, tmp_path / "data", vocab_size=vocab, val_fraction=0.1)
    assert meta == read_meta(tmp_path / "data")
    assert meta["dtype"] == ("uint16" if vocab < 65536 else "uint32")
    assert (meta["train_tokens"], meta["val_tokens"]) == (900, 100)
    train = np.fromfile(tmp_path / "data" / "train.bin", dtype=meta["dtype"])
    val = np.fromfile(tmp_path / "data" / "val.bin", dtype=meta["dtype"])
    np.testing.assert_array_equal(np.concatenate([train, val]), ids)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["meta.json", "train.bin", "val.bin"]


def test_write_token_files_checks_ids(tmp_path):
    with pytest.raises(ScratchLLMError, match=r"\[0, 10\)"):
        write_token_files(np.array([1, 2, 10]), tmp_path, vocab_size=10, val_fraction=0.5)
    assert read_meta(tmp_path) is None


@settings(max_examples=25, deadline=None)
@given(n=st.integers(20, 300), block=st.integers(1, 19), batch=st.integers(1, 8), seed=st.integers(0, 99))
def test_batches_are_shifted_windows(tmp_path_factory, n, block, batch, seed):
    folder = tmp_path_factory.mktemp("ids")
    ids = np.random.default_rng(seed).integers(0, 500, size=n)
    (folder / "ids.bin").write_bytes(ids.astype(np.uint16).tobytes())
    f = TokenFile(folder / "ids.bin", "uint16")
    x, y = f.batch(batch, block, Generator(seed))
    assert x.shape == y.shape == (batch, block) and x.dtype == y.dtype == np.int64
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
    for row_x, row_y in zip(x, y):                  # every row is a real window of the file
        starts = [s for s in range(n - block) if (ids[s:s + block] == row_x).all()
                  and (ids[s + 1:s + block + 1] == row_y).all()]
        assert starts
    x2, y2 = f.batch(batch, block, Generator(seed))  # the seed fixes the batch
    np.testing.assert_array_equal(x, x2)


def test_batch_reaches_the_last_token(tmp_path):
    (tmp_path / "ids.bin").write_bytes(np.arange(6, dtype=np.uint16).tobytes())
    f = TokenFile(tmp_path / "ids.bin", "uint16")
    x, y = f.batch(200, 4, Generator(0))
    assert {int(r[0]) for r in x} == {0, 1} and int(y.max()) == 5


def test_split_and_length_checks():
    a, b = split_ids(np.arange(10), 0.2)
    assert list(a) == list(range(8)) and list(b) == [8, 9]
    with pytest.raises(ScratchLLMError, match="val_fraction"):
        split_ids(np.arange(10), 1.0)
    check_split_lengths(129, 129, 128, "corpus")
    with pytest.raises(ScratchLLMError, match=r"too short: 200 tokens .* block_size \+ 1 = 129"):
        check_split_lengths(180, 20, 128, "the corpus x.txt")
    with pytest.raises(ScratchLLMError, match="token file not found"):
        TokenFile("/nonexistent/ids.bin", "uint16")


def test_load_tokenizer_reads_char_tokenizer_file(tmp_path):
    import scratchllm as sl
    from scratchllm.tokenizers import CharTokenizer
    tok = CharTokenizer.train("to be or not to be")
    tok.save(tmp_path / "tokenizer.json")
    for where in (tmp_path / "tokenizer.json", tmp_path):
        loaded = sl.load_tokenizer(where)
        assert isinstance(loaded, CharTokenizer)
        assert loaded.encode("not to be") == tok.encode("not to be")
        assert loaded.decode(tok.encode("or not")) == "or not"
