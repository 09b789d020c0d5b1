"""Fuzzing the tokenizer readers: tiktoken, encoder.json + vocab.bpe, SentencePiece .model, llama2.c
tokenizer.bin, and scratchllm's BPE and character files.

Property for every generated file: ``load_tokenizer`` returns a tokenizer or raises ONE ScratchLLMError
(a ValueError too), never another exception, within 10x the file's size in memory (+2 MiB) and a few
seconds. A tokenizer it returns must encode text into ids inside its vocabulary without raising,
and byte-level ones must give the text back.
"""
import base64
import functools
import json
import os
import struct
import tempfile

from hypothesis import HealthCheck, event, given, settings, strategies as st

from scratchllm.tokenizers import load_tokenizer

from hostile_files import bounded, llama2c_tokenizer_bytes, sp_model_bytes

FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TEXT = "Hello wörld ab aab ba\n  x 123 ▁ <s> 😀 \x00"
hostile_int = st.one_of(st.integers(-3, 300), st.sampled_from([2**31, 2**32 - 1, 2**63, 10**18, -2**31]))
hostile_value = st.one_of(hostile_int, st.booleans(), st.floats(), st.text(max_size=3), st.none(),
                          st.lists(st.integers(0, 300), max_size=3))


def load_checked(path, byte_level=False, **kwargs):
    """The property: a tokenizer that works, or one ScratchLLMError; bounded either way."""
    tok, err = bounded(lambda: load_tokenizer(path, **kwargs), path)
    if err is not None:
        assert isinstance(err, ValueError)
        event("refused: " + str(err).split(": ", 1)[-1][:40])
        return None
    event("accepted")
    ids = tok.encode(TEXT)
    assert all(type(i) is int and 0 <= i < tok.vocab_size for i in ids), ids
    text = tok.decode(ids)
    assert isinstance(text, str)
    if byte_level:
        assert text == TEXT
    return tok


def _write(folder, name, data):
    path = os.path.join(folder, name)
    if isinstance(data, bytes):
        with open(path, "wb") as f:
            f.write(data)
    else:
        with open(path, "w", encoding="utf-8") as f:
            f.write(data)
    return path


# ================================================================== tiktoken
@FUZZ
@given(st.lists(st.binary(min_size=2, max_size=4), max_size=20, unique=True), hostile_int,
       st.lists(st.text(max_size=12), min_size=1, max_size=2), st.integers(0, 9))
def test_fuzz_tiktoken(extra, rank, garbage, mode):
    """Mostly valid (ranks in order), sometimes with a hostile rank, garbage lines or a byte missing."""
    lines = [f"{base64.b64encode(bytes([b])).decode()} {b}" for b in range(256)]
    if mode == 0:
        lines.pop(97)
    lines += [f"{base64.b64encode(t).decode()} {256 + k}" for k, t in enumerate(extra)]
    if mode == 1:
        lines += garbage
    if mode == 2:
        lines.append(f"{base64.b64encode(b'zzzzz').decode()} {rank}")
    with tempfile.TemporaryDirectory() as folder:
        load_checked(_write(folder, "t.tiktoken", "\n".join(lines) + "\n"), byte_level=True)


# ================================================================== GPT-2 encoder.json + vocab.bpe
@functools.lru_cache(maxsize=1)
def _gpt2_files():
    from scratchllm.tokenizers.gpt2 import ASSETS
    with open(os.path.join(ASSETS, "encoder.json"), encoding="utf-8") as f:
        encoder = json.load(f)
    with open(os.path.join(ASSETS, "vocab.bpe"), encoding="utf-8") as f:
        return encoder, f.read().split("\n")


@FUZZ
@given(st.data())
def test_fuzz_gpt2_files(data):
    encoder, merges = _gpt2_files()
    keep = data.draw(st.integers(0, 300))                       # a small vocabulary: the first merges
    merges = list(merges[:1 + keep])
    rank_of = {t: i for t, i in encoder.items() if i < 256 + keep}
    enc = dict(rank_of)
    enc["<|endoftext|>"] = 256 + keep
    mode = data.draw(st.integers(0, 9))             # 0-4: valid; 5-9: one kind of damage
    if mode == 5:
        enc[data.draw(st.sampled_from(sorted(enc)[:50] + ["Ġthe", "<|endoftext|>", "zz"]))] = data.draw(hostile_value)
    if mode == 6:
        merges.insert(data.draw(st.integers(0, len(merges))), data.draw(st.text(max_size=6)))
    if mode == 7:
        merges = merges[:data.draw(st.integers(0, len(merges)))]
    enc_text = data.draw(st.text(max_size=20)) if mode == 8 else json.dumps(enc)
    with tempfile.TemporaryDirectory() as folder:
        _write(folder, "encoder.json", enc_text)
        _write(folder, "vocab.bpe", "\n".join(merges))
        load_checked(folder, byte_level=True)


# ================================================================== SentencePiece .model
PIECE_TEXT = st.one_of(st.sampled_from(["▁a", "▁b", "ab", "ba", "a", "b", "▁", "<0x41>", "<0xZZ>", "", "▁▁"]),
                       st.text(max_size=3))


@FUZZ
@given(st.lists(st.tuples(PIECE_TEXT, st.floats(width=32), st.integers(0, 8)), max_size=12),
       hostile_int, hostile_int, hostile_int, st.booleans(), st.booleans())
def test_fuzz_sentencepiece_structure(pieces, unk, bos, eos, byte_fallback, with_bytes):
    base = [("<unk>", 0.0, 2), ("<s>", 0.0, 3), ("</s>", 0.0, 3)]
    if with_bytes:
        base += [(f"<0x{b:02X}>", 0.0, 6) for b in range(256)]
    model = sp_model_bytes(base + pieces, unk_id=unk, bos_id=bos, eos_id=eos, byte_fallback=byte_fallback)
    with tempfile.TemporaryDirectory() as folder:
        load_checked(_write(folder, "t.model", model))


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 3000), st.integers(0, 255)), max_size=4),
       st.one_of(st.none(), st.none(), st.integers(0, 3000)))
def test_fuzz_sentencepiece_bytes(flips, cut):
    data = bytearray(sp_model_bytes())
    for pos, byte in flips:
        if pos < len(data):
            data[pos] = byte
    with tempfile.TemporaryDirectory() as folder:
        load_checked(_write(folder, "t.model", bytes(data[:cut] if cut is not None else data)))


# ================================================================== llama2.c tokenizer.bin
@FUZZ
@given(st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 255)), max_size=6),
       st.one_of(st.none(), st.integers(0, 5000)), st.lists(st.text(min_size=1, max_size=4), max_size=8))
def test_fuzz_llama2c_tokenizer(flips, cut, extra):
    data = bytearray(llama2c_tokenizer_bytes(extra=("▁a", "ab", *extra)))
    for pos, byte in flips:
        if pos < len(data):
            data[pos] = byte
    with tempfile.TemporaryDirectory() as folder:
        load_checked(_write(folder, "tokenizer.bin", bytes(data[:cut] if cut is not None else data)))


@FUZZ
@given(hostile_int, st.lists(st.tuples(st.floats(width=32), hostile_int, st.binary(max_size=6)), max_size=8))
def test_fuzz_llama2c_tokenizer_fields(max_len, records):
    body = b"".join(struct.pack("<f", s) + (n % 2**32).to_bytes(4, "little") + b for s, n, b in records)
    head = (max_len % 2**32).to_bytes(4, "little")
    with tempfile.TemporaryDirectory() as folder:
        load_checked(_write(folder, "tokenizer.bin", head + llama2c_tokenizer_bytes()[4:] + body))


# ================================================================== scratchllm files
@FUZZ
@given(st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 1000)), max_size=12), st.integers(0, 9), st.data())
def test_fuzz_scratchllm_bpe_file(pairs, mode, data):
    """Valid merges (ids below the tokens made so far), then, in half the cases, one hostile field."""
    merges = [[a % (256 + k), b % (256 + k)] for k, (a, b) in enumerate(pairs)]
    n = 256 + len(merges)
    doc = {"format": "scratchllm-bpe", "version": 1, "pattern": "gpt2", "special_tokens": {"<|e|>": n},
           "bos": None, "eos": "<|e|>", "merges": merges}
    if mode == 5:
        doc["merges"] = data.draw(st.lists(st.one_of(st.lists(hostile_value, max_size=3), hostile_value), max_size=4))
    if mode == 6:
        doc["special_tokens"] = data.draw(st.dictionaries(st.text(max_size=5), hostile_value, max_size=2))
    if mode == 7:
        doc["pattern"] = data.draw(st.sampled_from(["gpt4", "llama3", "none", None, "(a+)+b", "[", 5, "\\p{L}+"]))
    if mode == 8:
        doc["eos"] = data.draw(hostile_value)
    if mode == 9:
        doc["version"] = data.draw(st.one_of(hostile_value, st.just("1")))
    with tempfile.TemporaryDirectory() as folder:
        load_checked(_write(folder, "t.json", json.dumps(doc)), byte_level=True)


@FUZZ
@given(st.one_of(st.lists(st.characters(), max_size=10, unique=True),
                 st.lists(st.characters(), max_size=10, unique=True),
                 st.lists(st.one_of(st.characters(), st.text(max_size=2), hostile_value), max_size=10),
                 hostile_value))
def test_fuzz_char_tokenizer_file(chars):
    doc = {"format": "scratchllm-char", "version": 1, "chars": chars}
    with tempfile.TemporaryDirectory() as folder:
        path = _write(folder, "c.json", json.dumps(doc))
        tok, err = bounded(lambda: load_tokenizer(path), path)
        event("accepted" if err is None else "refused")
        if tok is not None:
            known = "".join(c for c in TEXT if c in tok.chars)
            assert tok.decode(tok.encode(known)) == known
