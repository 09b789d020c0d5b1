"""`scratchllm tokenizer train|encode|decode` and `scratchllm bench tokenize --json`."""
import argparse
import json

from scratchllm.tokenizers.cli import add_bench_tokenize, add_tokenizer_commands


def _run(argv):
    parser = argparse.ArgumentParser(prog="scratchllm")
    sub = parser.add_subparsers(dest="command", required=True)
    add_tokenizer_commands(sub)
    bench = sub.add_parser("bench").add_subparsers(dest="bench", required=True)
    add_bench_tokenize(bench)
    args = parser.parse_args([str(a) for a in argv])
    return args.func(args)


def test_train_encode_decode(tmp_path, corpus, capsys):
    src = tmp_path / "corpus.txt"
    src.write_text(corpus[:30000], encoding="utf-8")
    out = tmp_path / "tok.json"
    assert _run(["tokenizer", "train", "--input", src, "--vocab-size", 300, "--pattern", "gpt2",
                 "--special", "<|endoftext|>", "--out", out]) == 0
    assert "trained 44 merges" in capsys.readouterr().out
    text = "First Citizen:\nSpeak, speak.<|endoftext|>"
    assert _run(["tokenizer", "encode", "--tokenizer", out, "--text", text,
                 "--allowed-special", "all"]) == 0
    ids = capsys.readouterr().out.split()
    assert ids[-1] == "300"
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text(" ".join(ids))
    assert _run(["tokenizer", "decode", "--tokenizer", out, "--input", ids_file,
                 "--out", tmp_path / "back.txt"]) == 0
    assert (tmp_path / "back.txt").read_text(encoding="utf-8") == text
    assert _run(["tokenizer", "encode", "--tokenizer", "gpt2", "--text", "Hello world",
                 "--eos"]) == 0
    assert capsys.readouterr().out == "15496 995 50256\n"
    assert _run(["tokenizer", "decode", "--tokenizer", "gpt2", "--ids", "15496 995"]) == 0
    assert capsys.readouterr().out == "Hello world"


def test_bench_tokenize_json(tmp_path, corpus, capsys):
    src = tmp_path / "small.txt"
    src.write_text(corpus[:20000], encoding="utf-8")
    assert _run(["bench", "tokenize", "--input", src, "--vocab-size", 300, "--llama3", "",
                 "--peer-train-chars", 3000, "--peer-train-vocab", 270, "--repeat", 1,
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["train"]["vocab_size"] == 300 and result["train"]["ours_s"] > 0
    assert result["train_vs_peer"]["tiktoken_educational_s"] > 0
    rows = {row["tokenizer"]: row for row in result["encode"]}
    assert set(rows) == {"trained-300", "gpt2"}
    for row in rows.values():
        assert row["identical"] and row["ratio_cold"] > 0 and row["tokens"] > 0
