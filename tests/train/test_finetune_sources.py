"""Fine-tuning (``init_from``) from the other forms ``sl.load_model`` reads: a llama2.c .bin with
its tokenizer.bin beside it, and a folder written by a scratchllm run. Each run starts from the
given weights exactly, uses the model's own tokenizer, and lowers the validation loss."""
import shutil
import struct
from pathlib import Path

import numpy as np

import scratchllm as sl
from scratchllm.models import LlamaConfig, build_model
from scratchllm.train import TrainConfig, Trainer

DATA = Path(__file__).resolve().parents[1] / "data"   # tests/data: the reference files
FAST = dict(block_size=16, batch_size=4, warmup_steps=2, lr=1e-2, min_lr=1e-3, eval_interval=6,
            eval_batches=2, sample_tokens=0, seed=0)


def write_llama2c_v0(path, model, header):
    """llama2.c's legacy format: 7 int32, then float32 weights in its order (tied classifier)."""
    sd, L = model.state_dict(), header[2]
    per = lambda name: [sd[f"layers.{i}.{name}"] for i in range(L)]  # noqa: E731
    weights = [sd["tok_embeddings.weight"], *per("attention_norm.weight"), *per("attention.wq.weight"),
               *per("attention.wk.weight"), *per("attention.wv.weight"), *per("attention.wo.weight"),
               *per("ffn_norm.weight"), *per("feed_forward.w1.weight"), *per("feed_forward.w2.weight"),
               *per("feed_forward.w3.weight"), sd["norm.weight"]]
    head_dim = header[0] // header[3]
    weights += [np.zeros((header[6], head_dim // 2), np.float32)] * 2        # RoPE tables, skipped
    with open(path, "wb") as f:
        f.write(struct.pack("<7i", *header))
        for w in weights:
            f.write(np.asarray(w, dtype="<f4").tobytes())


def finetune(init_from, text_path, out, **overrides):
    cfg = TrainConfig().updated(dict(init_from=str(init_from), tokenizer=None, data=[str(text_path)],
                                     **FAST, **overrides))
    return Trainer(cfg, out, progress=False, log=lambda m: None)


def assert_starts_from_and_learns(trainer, start_model, ids, margin=0.0):
    """The trainer's model gives ``start_model``'s logits exactly, and training lowers the best
    validation loss by more than ``margin``."""
    with sl.no_grad():
        np.testing.assert_array_equal(trainer.model(ids).numpy(), start_model(ids).numpy())
    before = trainer.evaluate()
    assert trainer.run().best_val_loss < before - margin


def test_fine_tune_a_llama2c_bin_with_its_tokenizer(tmp_path):
    src = tmp_path / "stories"
    src.mkdir()
    cfg = LlamaConfig(vocab_size=32000, dim=16, n_layers=1, n_heads=2, n_kv_heads=2, hidden_dim=32,
                      max_seq_len=64, tie_embeddings=True)
    original = build_model(cfg, sl.Generator(2))
    write_llama2c_v0(src / "model.bin", original, (16, 32, 1, 2, 2, 32000, 64))
    shutil.copy(DATA / "llama2" / "tokenizer.bin", src / "tokenizer.bin")
    text = tmp_path / "new.txt"
    text.write_text("Once upon a time there was a little cat who liked the sun. " * 60)

    trainer = finetune(src / "model.bin", text, tmp_path / "ft", max_steps=12)
    tok = sl.load_tokenizer(src / "tokenizer.bin")
    ids = np.array([tok.encode("Once upon a time")])
    assert trainer.tokenizer.encode("Once upon a time") == ids[0].tolist()     # the model's own tokenizer
    assert_starts_from_and_learns(trainer, original, ids, margin=0.3)
    again = sl.load_model(tmp_path / "ft")
    assert again.config.vocab_size == 32000 and again.config.dim == 16
    assert sl.load_tokenizer(tmp_path / "ft").encode("a cat") == tok.encode("a cat")


def test_fine_tune_a_scratchllm_run_folder(tmp_path, corpus, tiny):
    first = Trainer(tiny(max_steps=6), tmp_path / "first", progress=False, log=lambda m: None)
    first.run()
    text = tmp_path / "more.txt"
    text.write_text(corpus.read_text(encoding="utf-8")[5_000:15_000], encoding="utf-8")
    trainer = finetune(tmp_path / "first", text, tmp_path / "second", max_steps=12)
    start = sl.load_model(tmp_path / "first")
    ids = np.array([trainer.tokenizer.encode("ROMEO:")])
    assert trainer.tokenizer.encode("ROMEO:") == sl.load_tokenizer(tmp_path / "first").encode("ROMEO:")
    assert_starts_from_and_learns(trainer, start, ids)


def test_fine_tune_a_meta_folder_with_its_tokenizer_model(tmp_path):
    import json

    import torch

    src = tmp_path / "meta"
    src.mkdir()
    cfg = LlamaConfig(vocab_size=32000, dim=16, n_layers=1, n_heads=2, n_kv_heads=1, hidden_dim=64,
                      max_seq_len=64, tie_embeddings=False)
    original = build_model(cfg, sl.Generator(3))
    torch.save({k: torch.from_numpy(np.array(v)).to(torch.bfloat16) for k, v in original.state_dict().items()},
               src / "consolidated.00.pth")
    (src / "params.json").write_text(json.dumps({"dim": 16, "n_layers": 1, "n_heads": 2, "n_kv_heads": 1,
                                                 "vocab_size": 32000, "multiple_of": 64, "norm_eps": 1e-5}))
    shutil.copy(DATA / "llama2" / "tokenizer.model", src / "tokenizer.model")
    text = tmp_path / "new.txt"
    text.write_text("The quick brown fox jumps over the lazy dog by the river. " * 60)

    trainer = finetune(src, text, tmp_path / "ft", max_steps=12)
    tok = sl.load_tokenizer(src / "tokenizer.model")
    assert trainer.tokenizer.encode("The quick brown fox") == tok.encode("The quick brown fox")
    loaded = sl.load_model(src)                                    # bf16 weights, read without torch
    assert_starts_from_and_learns(trainer, loaded, np.array([tok.encode("The quick brown fox")]), margin=0.3)
