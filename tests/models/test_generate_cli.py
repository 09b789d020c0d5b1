"""``scratchllm generate``: prints the prompt and the streamed continuation; finds the tokenizer."""
import argparse
import shutil
from pathlib import Path

import pytest

import scratchllm as sl
from scratchllm.errors import ScratchLLMError
from scratchllm.models import GPTConfig, LlamaConfig, build_model
from scratchllm.models.cli import add_generate_command
from scratchllm.tokenizers import load_tokenizer

from .model_helpers import write_llama2c

DATA = Path(__file__).resolve().parents[1] / "data"   # tests/data: the reference files


def _run(argv, capsys):
    parser = argparse.ArgumentParser()
    add_generate_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["generate"] + argv)
    assert args.func(args) == 0
    return capsys.readouterr().out


def _scaled(model):
    with sl.no_grad():
        for p in model.parameters():
            p.data *= 20.0 if p.ndim == 2 else 1.0
    return model


def test_generate_gpt2_vocab_falls_back_to_gpt2_tokenizer(tmp_path, capsys):
    model = _scaled(build_model(GPTConfig(vocab_size=50257, block_size=64, n_layer=1, n_head=2, n_embd=16),
                                sl.Generator(1)))
    model.save_pretrained(tmp_path / "m")
    out = _run(["--model", str(tmp_path / "m"), "--prompt", "Hello world", "--max-new-tokens", "12",
                "--temperature", "0"], capsys)
    tok = load_tokenizer("gpt2")
    ids = tok.encode("Hello world")
    expect = "Hello world" + tok.decode(model.generate(ids, 12, temperature=0)[0, len(ids):].tolist()) + "\n"
    assert out == expect
    seeded = [_run(["--model", str(tmp_path / "m"), "--prompt", "Hi", "--max-new-tokens", "8", "--seed", "3",
                    "--top-k", "50", "--top-p", "0.9"], capsys) for _ in range(2)]
    assert seeded[0] == seeded[1] and seeded[0].startswith("Hi")


def test_generate_llama2c_bin_with_tokenizer_beside_it(tmp_path, capsys):
    cfg = LlamaConfig(vocab_size=32000, dim=16, n_layers=1, n_heads=2, hidden_dim=32, max_seq_len=64,
                      tie_embeddings=True)
    model = _scaled(build_model(cfg, sl.Generator(2)))
    header = {"dim": 16, "hidden_dim": 32, "n_layers": 1, "n_heads": 2, "n_kv_heads": 2, "vocab_size": 32000,
              "seq_len": 64}
    write_llama2c(tmp_path / "model.bin", model.state_dict(), header, version=0)
    shutil.copy(DATA / "llama2" / "tokenizer.bin", tmp_path / "tokenizer.bin")
    out = _run(["--model", str(tmp_path / "model.bin"), "--prompt", "Once upon a time", "--max-new-tokens", "10",
                "--temperature", "0"], capsys)
    assert out.startswith("Once upon a time") and len(out) > len("Once upon a time\n")


def test_generate_without_tokenizer_is_a_clear_error(tmp_path, capsys):
    build_model(GPTConfig(vocab_size=300, block_size=16, n_layer=1, n_head=1, n_embd=8)).save_pretrained(tmp_path)
    with pytest.raises(ScratchLLMError, match="no tokenizer found beside"):
        _run(["--model", str(tmp_path), "--prompt", "x"], capsys)
