"""The ``scratchllm`` command on bad input: exit status 1, one line on stderr, no traceback.

Runs ``scratchllm.cli.main`` in-process (fast); ``generate`` on a tiny character-level GPT
saved with its tokenizer, ``tokenizer`` on files in tmp_path. One good ``generate`` run checks
the printed text against ``model.generate`` (greedy) decoded by the same tokenizer.
"""
import sys

import numpy as np
import pytest

import scratchllm as sl
from scratchllm.cli import main
from scratchllm.models import GPT, GPTConfig
from scratchllm.tokenizers.char import CharTokenizer

TEXT = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n"


@pytest.fixture(scope="module")
def char_model(tmp_path_factory):
    """A tiny GPT over TEXT's characters, its tokenizer beside it (tokenizer.json)."""
    folder = tmp_path_factory.mktemp("char-model")
    tok = CharTokenizer.train(TEXT)
    sl.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=24, n_layer=1, n_head=2, n_embd=16))
    with sl.no_grad():                       # scaled up so that greedy choices are clear-cut
        for p in model.parameters():
            if p.ndim == 2:
                p.data *= 10.0
    model.save_pretrained(folder)
    tok.save(folder / "tokenizer.json")
    return folder


def fails(argv, capsys, command, *fragments):
    """``scratchllm argv`` exits 1 with one line 'scratchllm COMMAND: error: ...' naming the fragments."""
    capsys.readouterr()
    assert main([str(a) for a in argv]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"scratchllm {command}: error: "), err
    for fragment in fragments:
        assert fragment in err, err
    return err


def test_generate_prints_the_greedy_continuation(char_model, capsys):
    capsys.readouterr()
    assert main(["generate", "--model", str(char_model), "--prompt", "To be", "--max-new-tokens", "8",
                 "--temperature", "0"]) == 0
    out = capsys.readouterr().out
    tok, model = sl.load_tokenizer(char_model), sl.load_model(char_model)
    ids = np.array([tok.encode("To be")])
    expected = model.generate(ids, max_new_tokens=8, temperature=0.0, top_k=None, top_p=None, seed=0)
    assert expected.shape == (1, 13) and expected.dtype.kind == "i"
    assert out == "To be" + tok.decode(expected[0, 5:].tolist()) + "\n"


GENERATE_CASES = {
    "missing model": (["--model", "{tmp}/nope"], ["nope", "no such file or folder"]),
    "not a model": (["--model", "{tmp}"], ["not a model folder"]),
    "missing tokenizer": (["--tokenizer", "{tmp}/nope.json"], ["nope.json", "no such tokenizer"]),
    "top-p above 1": (["--top-p", "1.5"], ["top_p must be in (0, 1]"]),
    "top-p zero": (["--top-p", "0"], ["top_p must be in (0, 1]"]),
    "top-p nan": (["--top-p", "nan"], ["top_p must be in (0, 1]"]),
    "top-k zero": (["--top-k", "0"], ["top_k must be >= 1"]),
    "negative temperature": (["--temperature", "-1"], ["temperature must be >= 0"]),
    "negative max-new-tokens": (["--max-new-tokens", "-3"], ["max_new_tokens must be >= 0"]),
    "temperature not a number": (["--temperature", "nan"], ["temperature must be >= 0"]),
    "character not in the vocabulary": (["--prompt", "Zebra"], ["'Z'", "not in the vocabulary"]),
}


@pytest.mark.parametrize("case", list(GENERATE_CASES))
def test_generate_bad_input(case, char_model, tmp_path, capsys):
    extra, fragments = GENERATE_CASES[case]
    argv = {"--model": str(char_model), "--prompt": "To be", "--max-new-tokens": "3"}
    for flag, value in zip(extra[::2], extra[1::2]):
        argv[flag] = value.format(tmp=tmp_path)
    fails(["generate", *[x for kv in argv.items() for x in kv]], capsys, "generate", *fragments)


def test_generate_model_without_a_tokenizer_beside_it(char_model, tmp_path, capsys):
    sl.load_model(char_model).save_pretrained(tmp_path / "bare")
    fails(["generate", "--model", tmp_path / "bare", "--prompt", "To"], capsys, "generate",
          "no tokenizer found beside", "--tokenizer")


@pytest.fixture
def files(tmp_path):
    (tmp_path / "text.txt").write_text(TEXT * 3, encoding="utf-8")
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9")
    (tmp_path / "ids.txt").write_text("1 2 x")
    return tmp_path


TOKENIZER_CASES = {
    "encode: missing tokenizer": (["encode", "--tokenizer", "{d}/missing.json", "--text", "hi"],
                                  ["missing.json", "no such tokenizer"]),
    "encode: missing input": (["encode", "--tokenizer", "gpt2", "--input", "{d}/missing.txt"],
                              ["missing.txt: text file not found"]),
    "encode: not UTF-8": (["encode", "--tokenizer", "gpt2", "--input", "{d}/latin1.txt"],
                          ["latin1.txt: not UTF-8"]),
    "encode: unknown special": (["encode", "--tokenizer", "gpt2", "--text", "hi", "--allowed-special", "<|x|>"],
                                ["not special tokens", "<|x|>"]),
    "encode: output folder missing": (["encode", "--tokenizer", "gpt2", "--text", "hi", "--out", "{d}/no/x.txt"],
                                      ["cannot write", "does not exist"]),
    "decode: not integers": (["decode", "--tokenizer", "gpt2", "--input", "{d}/ids.txt"],
                             ["ids must be integers"]),
    "decode: id out of range": (["decode", "--tokenizer", "gpt2", "--ids", "15496 99999"],
                                ["99999", "not in the vocabulary"]),
    "train: missing input": (["train", "--input", "{d}/missing.txt", "--vocab-size", "300", "--out", "{d}/t.json"],
                             ["missing.txt: text file not found"]),
    "train: input is a folder": (["train", "--input", "{d}", "--vocab-size", "300", "--out", "{d}/t.json"],
                                 ["is a folder"]),
    "train: empty input": (["train", "--input", "{d}/empty.txt", "--vocab-size", "300", "--out", "{d}/t.json"],
                           ["empty.txt", "empty"]),
    "train: vocab below 256": (["train", "--input", "{d}/text.txt", "--vocab-size", "100", "--out", "{d}/t.json"],
                               ["at least 256"]),
    "train: unknown pattern name": (["train", "--input", "{d}/text.txt", "--vocab-size", "300", "--pattern", "gpt5",
                                     "--out", "{d}/t.json"], ["unknown split pattern name 'gpt5'"]),
    "train: bad regex": (["train", "--input", "{d}/text.txt", "--vocab-size", "300", "--pattern", "(",
                          "--out", "{d}/t.json"], ["invalid split pattern"]),
    "train: special twice": (["train", "--input", "{d}/text.txt", "--vocab-size", "300", "--special", "<s>", "<s>",
                              "--out", "{d}/t.json"], ["given more than once", "<s>"]),
    "train: output folder missing": (["train", "--input", "{d}/text.txt", "--vocab-size", "300",
                                      "--out", "{d}/no/t.json"], ["cannot write", "does not exist"]),
}


@pytest.mark.parametrize("case", list(TOKENIZER_CASES))
def test_tokenizer_bad_input(case, files, capsys):
    argv, fragments = TOKENIZER_CASES[case]
    before = sorted(p.name for p in files.iterdir())
    fails(["tokenizer", *[a.format(d=files) for a in argv]], capsys, "tokenizer", *fragments)
    assert sorted(p.name for p in files.iterdir()) == before      # nothing written, no temp file left


def test_tokenizer_train_notes_a_vocabulary_it_cannot_reach(files, capsys):
    out = files / "t.json"
    assert main(["tokenizer", "train", "--input", str(files / "text.txt"), "--vocab-size", "5000",
                 "--out", str(out)]) == 0
    tok = sl.load_tokenizer(out)
    assert tok.vocab_size < 5000 and tok.decode(tok.encode(TEXT)) == TEXT
    assert f"stops at {tok.vocab_size} of the 5000" in capsys.readouterr().err


def test_bench_tokenize_without_tiktoken_says_what_to_install(files, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tiktoken", None)     # as if tiktoken were not installed
    fails(["bench", "tokenize", "--input", files / "text.txt", "--repeat", "1"], capsys, "bench",
          "needs the package 'tiktoken'", "pip install")
