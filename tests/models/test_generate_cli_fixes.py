"""``scratchllm generate`` as a new user meets it: the text run.c prints for stories260K, stops at
BOS, --stop/--stop-token, --prompt-file/--num-samples, a missing hub model, a closed pipe, and
every tokenizer kind in ``tokenizer encode``/``generate --tokenizer`` (exit code + exact output)."""
import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import scratchllm as sl
from scratchllm.cli import main
from scratchllm.models import GPTConfig, LlamaConfig, build_model
from scratchllm.models.cli import SEPARATOR, stop_ids_for
from scratchllm.tokenizers import CharTokenizer, load_tokenizer

from .model_helpers import write_llama2c

DATA = Path(__file__).resolve().parents[1] / "data"
STORIES = DATA / "stories260K"
MODEL, TOK = str(STORIES / "stories260K.bin"), str(STORIES / "tok512.bin")
# llama2.c's README / run.c, greedy, prompt "Once upon a time"
PUBLISHED = ("Once upon a time, there was a little girl named Lily. She loved to play outside in the park. "
             "One day, she saw a big, red ball.")


def _cli(argv, capsys):
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def stories():
    return sl.load_model(MODEL), load_tokenizer(TOK)


def test_stories260k_greedy_is_run_c_text_and_stops_at_bos(stories, capsys):
    model, tok = stories
    rc, out, err = _cli(["generate", "--model", MODEL, "--tokenizer", TOK, "--prompt", "Once upon a time",
                         "--temperature", "0", "--max-new-tokens", "400"], capsys)
    assert (rc, err) == (0, "") and out.startswith(PUBLISHED)
    ids = tok.encode("Once upon a time", bos=True)
    new = model.generate(ids, 400, temperature=0, stop_tokens=(1,))[0, len(ids):].tolist()
    assert 1 in new and new.index(1) < 399                      # the model emits BOS between stories
    assert out == tok.decode(ids[1:] + new[:new.index(1)]) + "\n"  # ... and the CLI stops there


def test_zoo_prints_zoo_was_with_the_tokenizer_found_beside(capsys):
    rc, out, _ = _cli(["generate", "--model", MODEL, "--prompt", "Zoo", "--temperature", "0",
                       "--max-new-tokens", "12"], capsys)
    assert rc == 0 and out == "Zoo was a little girl named Lily. She loved\n"


def test_stop_string_and_stop_token(stories, capsys):
    _, tok = stories
    base = ["generate", "--model", MODEL, "--prompt", "Zoo", "--temperature", "0", "--max-new-tokens", "60"]
    rc, out, _ = _cli(base + ["--stop", "park"], capsys)
    assert rc == 0 and out == "Zoo was a little girl named Lily. She loved to play outside in the \n"
    rc, out, _ = _cli(base + ["--stop-token", str(tok.piece_to_id("."))], capsys)
    assert rc == 0 and out == "Zoo was a little girl named Lily\n"
    # "</s>" is a control token: --stop takes its id, and replaces the BOS stop
    base[-1] = "240"
    _, default, _ = _cli(base, capsys)
    rc, out, _ = _cli(base + ["--stop", "</s>"], capsys)
    assert rc == 0 and default.endswith("happily ever after.\n") and out.startswith(default[:-1])
    assert len(out) > len(default) + 20


def test_prompt_file_and_num_samples(tmp_path, capsys):
    (tmp_path / "prompt.txt").write_text("Zoo", encoding="utf-8")
    rc, out, _ = _cli(["generate", "--model", MODEL, "--prompt-file", str(tmp_path / "prompt.txt"),
                       "--temperature", "0", "--max-new-tokens", "4", "--num-samples", "2"], capsys)
    assert rc == 0 and out == ("Zoo was a little g\n" + SEPARATOR + "\n") * 2
    rc, out, err = _cli(["generate", "--model", MODEL, "--prompt-file", str(tmp_path / "none.txt")], capsys)
    assert (rc, out) == (1, "") and err == f"scratchllm generate: error: {tmp_path / 'none.txt'}: no such prompt file\n"


def test_missing_hub_model_says_how_to_download(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rc, out, err = _cli(["generate", "--model", "gpt2", "--prompt", "Hi"], capsys)
    assert (rc, out) == (1, "")
    assert err == ("scratchllm generate: error: gpt2: no such file or folder; download the weights with: "
                   "hf download openai-community/gpt2 --local-dir gpt2\n")


def test_closed_pipe_ends_quietly_with_status_0():
    proc = subprocess.Popen([sys.executable, "-m", "scratchllm", "generate", "--model", MODEL, "--prompt", "Once",
                             "--max-new-tokens", "200", "--num-samples", "200", "--seed", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()                                          # as `| head -1` does
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 0 and err == b"" and first.startswith(b"Once")


def _llama3_like_tokenizer_json(folder):
    """A tiny byte-level HF tokenizer.json with Llama 3's special tokens (no merges)."""
    from scratchllm.tokenizers.gpt2 import bytes_to_unicode
    vocab = {c: b for b, c in bytes_to_unicode().items()}
    names = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"]
    added = [{"id": 256 + k, "content": n, "special": True, "normalized": False} for k, n in enumerate(names)]
    spec = {"added_tokens": added, "normalizer": None, "post_processor": None,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False}, "decoder": {"type": "ByteLevel"},
            "model": {"type": "BPE", "vocab": dict(vocab, **{n: 256 + k for k, n in enumerate(names)}), "merges": []}}
    (folder / "tokenizer.json").write_text(json.dumps(spec))
    (folder / "tokenizer_config.json").write_text(json.dumps({"bos_token": names[0], "eos_token": names[1]}))


def test_stop_tokens_per_model_family(stories, tmp_path):
    model, tok = stories
    assert stop_ids_for(model, tok, MODEL) == {1, 2}             # llama2.c: BOS too, as run.c
    _llama3_like_tokenizer_json(tmp_path)
    llama3 = load_tokenizer(tmp_path)
    small = build_model(LlamaConfig(vocab_size=259, dim=16, n_layers=1, n_heads=2, hidden_dim=32, max_seq_len=32))
    assert stop_ids_for(small, llama3, str(tmp_path)) == {257, 258}     # <|end_of_text|>, <|eot_id|>
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": [257, 7]}))
    assert stop_ids_for(small, llama3, str(tmp_path)) == {7, 257, 258}
    assert stop_ids_for(model, load_tokenizer("gpt2"), "gpt2-folder") == set()   # 50256 is past vocab 512


def test_tokenizer_encode_takes_every_kind(tmp_path, capsys):
    from scratchllm.train.tokenizer_files import RunTokenizer, named_tokenizer, path_tokenizer
    char_run, gpt2_run, hf_run, hf_folder = (tmp_path / n for n in ("char", "gpt2", "hf", "hf-gpt2"))
    for folder in (char_run, gpt2_run, hf_run, hf_folder):
        folder.mkdir()
    RunTokenizer(CharTokenizer.train("hello world"), "char").save(char_run)
    named_tokenizer("gpt2").save(gpt2_run)                        # fine-tuned from the bundled GPT-2
    (hf_folder / "vocab.json").write_bytes((DATA / "gpt2" / "encoder.json").read_bytes())
    (hf_folder / "merges.txt").write_bytes((DATA / "gpt2" / "vocab.bpe").read_bytes())
    path_tokenizer(hf_folder).save(hf_run)                        # fine-tuned from an HF GPT-2 folder
    enc = ["tokenizer", "encode", "--text"]
    assert _cli(enc + ["hello", "--tokenizer", str(char_run)], capsys) == (0, "3 2 4 4 5\n", "")
    rc, out, err = _cli(enc + ["hello", "--tokenizer", str(char_run), "--bos"], capsys)
    assert (rc, out) == (1, "") and err.endswith("has no bos token; drop --bos\n")
    assert _cli(["tokenizer", "decode", "--ids", "3 2", "--tokenizer", str(char_run)], capsys) == (0, "he", "")
    for run in (gpt2_run, hf_run):
        assert _cli(enc + ["Hello world", "--tokenizer", str(run)], capsys) == (0, "15496 995\n", "")
    for path in (TOK, str(DATA / "llama2" / "tokenizer.model"), str(tmp_path / "hf-gpt2")):
        rc, out, _ = _cli(enc + ["Zoo", "--tokenizer", path, "--bos", "--eos"], capsys)
        tok = load_tokenizer(path)
        assert rc == 0 and out == " ".join(map(str, [tok.bos_id] + tok.encode("Zoo") + [tok.eos_id])) + "\n"


def test_generate_with_a_run_folder_tokenizer_and_a_105_piece_tokenizer_bin(tmp_path, capsys):
    from scratchllm.train.tokenizer_files import RunTokenizer
    pieces = ["<unk>", "\n<s>\n", "\n</s>\n"] + [chr(c) for c in range(32, 127)]
    pieces += [" the", " a", "he", "th", "an", "in", "er"]
    assert len(pieces) == 105
    with open(tmp_path / "tokenizer.bin", "wb") as f:              # as llama2.c's tokenizer.py writes it
        f.write(len(max(pieces, key=len)).to_bytes(4, "little"))
        for k, p in enumerate(pieces):
            b = p.encode()
            f.write(struct.pack("<fI", -float(k), len(b)) + b)
    cfg = LlamaConfig(vocab_size=105, dim=16, n_layers=1, n_heads=2, hidden_dim=32, max_seq_len=64, tie_embeddings=True)
    model = build_model(cfg, sl.Generator(3))
    header = {"dim": 16, "hidden_dim": 32, "n_layers": 1, "n_heads": 2, "n_kv_heads": 2, "vocab_size": 105,
              "seq_len": 64}
    write_llama2c(tmp_path / "tiny.bin", model.state_dict(), header, version=0)
    rc, out, _ = _cli(["generate", "--model", str(tmp_path / "tiny.bin"), "--prompt", "the cat", "--temperature", "0",
                       "--max-new-tokens", "8", "--stop-token", "999"], capsys)
    tok = load_tokenizer(tmp_path / "tokenizer.bin")
    ids = tok.encode("the cat", bos=True)
    assert rc == 0 and out == tok.decode(model.generate(ids, 8, temperature=0)[0, 1:].tolist()) + "\n"
    run, gpt = tmp_path / "run", tmp_path / "gpt"
    run.mkdir()
    chars = CharTokenizer.train("the cat sat on a mat")
    RunTokenizer(chars, "char").save(run)
    build_model(GPTConfig(vocab_size=chars.vocab_size, block_size=16, n_layer=1, n_head=1, n_embd=8),
                sl.Generator(4)).save_pretrained(gpt)
    rc, out, _ = _cli(["generate", "--model", str(gpt), "--tokenizer", str(run), "--prompt", "cat",
                       "--temperature", "0", "--max-new-tokens", "3"], capsys)
    greedy = sl.load_model(gpt).generate(chars.encode("cat"), 3, temperature=0)[0, 3:]
    assert rc == 0 and out == "cat" + chars.decode(greedy) + "\n"


def test_gpt2_sized_model_with_a_broken_hf_tokenizer_is_not_given_the_bundled_one(tmp_path, capsys):
    build_model(GPTConfig(vocab_size=50257, block_size=16, n_layer=1, n_head=1, n_embd=8)).save_pretrained(tmp_path)
    (tmp_path / "vocab.json").write_text(json.dumps({"a": 0, "b": 1}))
    (tmp_path / "merges.txt").write_text("#version: 0.2\na c\n")
    rc, out, err = _cli(["generate", "--model", str(tmp_path), "--prompt", "ab"], capsys)
    assert (rc, out) == (1, "") and "no tokenizer found beside" in err
    assert f"{tmp_path / 'vocab.json'}: model.merges[0]: 'c' (of merge 'a c') is not in the vocabulary" in err
