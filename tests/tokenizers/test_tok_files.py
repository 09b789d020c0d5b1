"""load_tokenizer detects the format by content; malformed files raise errors naming the file."""
import base64
import struct

import pytest

from scratchllm.tokenizers import BPETokenizer, SentencePieceBPE, load_tokenizer

from tok_helpers import DATA, LLAMA2_BIN, LLAMA2_MODEL, LLAMA3


def test_detection_by_content(tmp_path):
    for src, kind in ((LLAMA3, BPETokenizer), (LLAMA2_MODEL, SentencePieceBPE),
                      (LLAMA2_BIN, SentencePieceBPE)):
        renamed = tmp_path / f"renamed-{src.name}.dat"
        renamed.write_bytes(src.read_bytes())
        assert isinstance(load_tokenizer(renamed), kind)
    assert load_tokenizer(DATA / "gpt2").encode("Hello world") == [15496, 995]
    assert load_tokenizer(DATA / "gpt2" / "vocab.bpe").vocab_size == 50257
    assert load_tokenizer(DATA / "llama2").vocab_size == 32000


def test_other_tiktoken_file_takes_pattern_and_specials(tmp_path):
    lines = [f"{base64.b64encode(bytes([b])).decode()} {b}" for b in range(256)]
    lines.append(f"{base64.b64encode(b'ab').decode()} 256")
    path = tmp_path / "small.tiktoken"
    path.write_text("\n".join(lines) + "\n")
    tok = load_tokenizer(path, pattern="gpt2", special_tokens={"<|x|>": 257}, eos="<|x|>")
    assert tok.pattern == "gpt2" and tok.encode("ab ab", eos=True) == [256, 32, 256, 257]


def _fails(path, match):
    with pytest.raises((ValueError, FileNotFoundError)) as err:
        load_tokenizer(path)
    assert str(path) in str(err.value), str(err.value)
    assert match in str(err.value), str(err.value)


def test_tiktoken_malformed(tmp_path):
    good = [f"{base64.b64encode(bytes([b])).decode()} {b}" for b in range(256)]
    cases = {"bad_b64": (good + ["@@@= 256"], "bad base64"),
             "dup_rank": (good + [f"{base64.b64encode(b'ab').decode()} 7"], "duplicate rank"),
             "dup_token": (good + [f"{base64.b64encode(b'a').decode()} 300"], "already has rank"),
             "bad_rank": (good + [f"{base64.b64encode(b'ab').decode()} x7"], "is not an integer"),
             "fields": (good + ["YWI= 1 2"], "expected 'base64 rank'"),
             "no_bytes": (good[:100], "lacks single-byte")}
    for name, (lines, match) in cases.items():
        path = tmp_path / name
        path.write_text("\n".join(lines) + "\n")
        _fails(path, match)


def test_sentencepiece_malformed(tmp_path):
    data = LLAMA2_MODEL.read_bytes()
    cut = tmp_path / "truncated.model"
    cut.write_bytes(data[:len(data) // 2])
    _fails(cut, "not a valid SentencePiece model")
    junk = tmp_path / "junk.model"
    junk.write_bytes(b"\x0a\xff\xff\xff\xff\x0f" + b"\x00" * 10)
    _fails(junk, "not a valid SentencePiece model")
    wrong = tmp_path / "wrong.model"  # valid protobuf, but pieces hold a varint, not a message
    wrong.write_bytes(b"\x08\x01")
    _fails(wrong, "not a valid SentencePiece model")
    no_pieces = tmp_path / "nopieces.model"
    no_pieces.write_bytes(b"\x0a\x00")
    _fails(no_pieces, "no piece text")


def test_llama2c_malformed(tmp_path):
    data = LLAMA2_BIN.read_bytes()
    cut = tmp_path / "truncated.bin"
    cut.write_bytes(data[:-3])
    _fails(cut, "token 31999")
    bad = tmp_path / "bad.bin"
    bad.write_bytes(struct.pack("<i", -5) + data[4:100])
    _fails(bad, "max_token_length")


def test_scratchllm_and_gpt2_malformed(tmp_path):
    for name, text, match in (("v9.json", '{"format": "scratchllm-bpe", "version": 9}', "version 9"),
                              ("other.json", '{"model": {}}', "only BPE tokenizers are read"),
                              ("broken.json", '{"format": ', "bad JSON"),
                              ("merge.json", '{"format": "scratchllm-bpe", "version": 1, '
                                             '"merges": [[1, 999]]}', "merge 0")):
        path = tmp_path / name
        path.write_text(text)
        _fails(path, match)
    folder = tmp_path / "gpt2"
    folder.mkdir()
    (folder / "encoder.json").write_bytes((DATA / "gpt2" / "encoder.json").read_bytes())
    lines = (DATA / "gpt2" / "vocab.bpe").read_text(encoding="utf-8").split("\n")
    (folder / "vocab.bpe").write_text("\n".join(lines[:1000] + ["a b c"]), encoding="utf-8")
    _fails(folder / "vocab.bpe", "two tokens separated")
    _fails(tmp_path / "missing.model", "no such tokenizer")
    empty = tmp_path / "empty"
    empty.mkdir()
    _fails(empty, "folder holds no tokenizer")
