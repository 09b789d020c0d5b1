"""``scratchllm export``: HF folders that transformers runs (equal logits, equal greedy text),
GGUF files that llama.cpp's own reader (``gguf.GGUFReader``) reads, llama2.c files as its
export.py writes them, and scratchllm folders; each read back to the same model."""
import os
import struct

import gguf
import numpy as np
import pytest
import torch
import transformers
from gguf.quants import dequantize as gg_dequantize
from gguf.quants import quantize as gg_quantize

import scratchllm as sl
from scratchllm.cli import main
from scratchllm.errors import ScratchLLMError
from scratchllm.io.export import export
from scratchllm.io.export_llama2c import quantize_q80
from scratchllm.io.gguf_read import GGUFFile
from scratchllm.io.load import read_checkpoint
from scratchllm.models import build_model
from scratchllm.models.config import GPTConfig, LlamaConfig
from scratchllm.tokenizers import BPETokenizer
from scratchllm.tokenizers.char import CharTokenizer

transformers.logging.set_verbosity_error()
torch.set_num_threads(1)
S260 = os.path.join(os.path.dirname(__file__), "..", "data", "stories260K")
MODEL, TOK = os.path.join(S260, "stories260K.bin"), os.path.join(S260, "tok512.bin")
TEXT = "Once upon a time, there was a little girl named Lily.\nShe  liked 東京 🙂!"


def _logits(model, ids):
    return model(np.asarray(ids)).numpy()


def _hf_logits(hf, ids):
    with torch.no_grad():
        return hf(torch.as_tensor(np.asarray(ids))).logits.numpy()


def _scaled(model, seed):
    rng = np.random.default_rng(seed)
    for name, p in model.named_parameters():
        p.data[...] = (1 + 0.2 * rng.standard_normal(p.shape) if "ln" in name or "norm" in name
                       else 0.2 * rng.standard_normal(p.shape)).astype(np.float32)
    return model


# ---------------------------------------------------------------- hf
def test_hf_export_of_stories260k_runs_in_transformers(tmp_path):
    export(MODEL, "hf", tmp_path / "hf")
    ours, tok = sl.load_model(MODEL), sl.load_tokenizer(TOK)
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert hf_tok(TEXT)["input_ids"] == tok.encode(TEXT, bos=True)
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    ids = [tok.encode(TEXT, bos=True)]
    np.testing.assert_allclose(_hf_logits(hf, ids), _logits(ours, ids), rtol=1e-4, atol=1e-4)
    pipe = transformers.pipeline("text-generation", model=hf, tokenizer=hf_tok)
    text = pipe("Once upon a time", max_new_tokens=40, do_sample=False)[0]["generated_text"]
    out = ours.generate(tok.encode("Once upon a time", bos=True), max_new_tokens=40, temperature=0)
    assert text == tok.decode(out[0]) and text.startswith("Once upon a time, there was a little girl named Lily.")


def test_hf_export_of_a_char_level_gpt(tmp_path):
    chars = CharTokenizer.train("hello world, the quick brown fox jumps over the lazy dog.\n")
    model = _scaled(build_model(GPTConfig(vocab_size=chars.vocab_size, block_size=64, n_layer=2, n_head=2,
                                          n_embd=32)), 1)
    model.save_pretrained(tmp_path / "run")
    chars.save(tmp_path / "run" / "tokenizer.json")
    export(tmp_path / "run", "hf", tmp_path / "hf")
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    prompt = "the lazy fox"
    assert hf_tok(prompt)["input_ids"] == chars.encode(prompt)
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    ids = [chars.encode(prompt)]
    np.testing.assert_allclose(_hf_logits(hf, ids), _logits(model, ids), rtol=1e-4, atol=1e-4)
    text = transformers.pipeline("text-generation", model=hf, tokenizer=hf_tok)(
        prompt, max_new_tokens=20, do_sample=False)[0]["generated_text"]
    assert text == chars.decode(model.generate(ids, max_new_tokens=20, temperature=0)[0])


def test_hf_export_of_a_trained_byte_level_bpe(tmp_path):
    bpe = BPETokenizer.train("low lower lowest newer wider 東京 " * 40, vocab_size=300, pattern="gpt4",
                             special_tokens={"<|endoftext|>": 300})
    model = _scaled(build_model(LlamaConfig(vocab_size=301, dim=32, n_layers=1, n_heads=2, hidden_dim=64,
                                            max_seq_len=64)), 2)
    model.save_pretrained(tmp_path / "m")
    export(tmp_path / "m", "hf", tmp_path / "hf", tokenizer=bpe)
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    for text in ("lowest newer, wider! 東京東京 don't 123456", "  spaces\n\nnew lines<|endoftext|>x"):
        assert hf_tok(text)["input_ids"] == bpe.encode(text, allowed_special="all")
        assert hf_tok.decode(bpe.encode(text, allowed_special="all")) == text


# ---------------------------------------------------------------- gguf
@pytest.mark.parametrize("kind", ["f32", "f16", "q8_0"])
def test_gguf_export_reads_in_llama_cpp_reader(tmp_path, kind):
    path = tmp_path / "s.gguf"
    assert main(["export", "--model", MODEL, "--format", "gguf", "--out", str(path), "--type", kind]) == 0
    config, state = read_checkpoint(MODEL)
    r = gguf.GGUFReader(path)
    field = lambda k: r.fields[k].contents()  # noqa: E731
    assert field("general.architecture") == "llama" and field("llama.block_count") == 5
    assert field("llama.attention.head_count_kv") == 4 and field("llama.feed_forward_length") == 172
    assert field("tokenizer.ggml.model") == "llama" and len(field("tokenizer.ggml.tokens")) == 512
    tensors = {t.name: t for t in r.tensors}
    assert len(tensors) == 2 + 9 * 5                         # tied classifier: no output.weight
    wq = tensors["blk.0.attn_q.weight"]
    assert list(wq.shape) == [64, 64]
    want = state["layers.0.attention.wq.weight"]
    if kind == "q8_0":
        assert wq.tensor_type == gguf.GGMLQuantizationType.Q8_0
        np.testing.assert_array_equal(np.asarray(wq.data).reshape(-1), gg_quantize(want, wq.tensor_type).reshape(-1))
        assert tensors["blk.0.ffn_down.weight"].tensor_type == gguf.GGMLQuantizationType.F32   # 172 % 32
    else:
        np.testing.assert_array_equal(np.asarray(wq.data).reshape(want.shape),
                                      want.astype(np.float16 if kind == "f16" else np.float32))
    assert tensors["output_norm.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    # back through scratchllm: every tensor as llama.cpp's dequantizer gives it, the same tokenizer
    ours = GGUFFile(path)
    for name, t in tensors.items():
        np.testing.assert_array_equal(ours.array(name).reshape(-1), gg_dequantize(t.data, t.tensor_type).reshape(-1))
    assert sl.load_tokenizer(path).encode(TEXT) == sl.load_tokenizer(TOK).encode(TEXT)
    assert read_checkpoint(path)[0] == config                 # the same config (eps 1e-05 from float32)
    if kind == "f32":                                         # and the very same model
        ids = [sl.load_tokenizer(TOK).encode(TEXT, bos=True)]
        np.testing.assert_array_equal(_logits(sl.load_model(path), ids), _logits(sl.load_model(MODEL), ids))


def test_gguf_export_of_gpt2_with_its_tokenizer(tmp_path):
    model = _scaled(build_model(GPTConfig(vocab_size=50257, block_size=32, n_layer=1, n_head=2, n_embd=32)), 3)
    model.save_pretrained(tmp_path / "m")
    export(tmp_path / "m", "gguf", tmp_path / "g.gguf", tokenizer="gpt2", type="q8_0")
    g = GGUFFile(tmp_path / "g.gguf")
    assert g.metadata["tokenizer.ggml.model"] == "gpt2" and g.metadata["tokenizer.ggml.pre"] == "gpt-2"
    with open(os.path.join(S260, "..", "gpt2", "vocab.bpe"), encoding="utf-8") as f:
        assert g.metadata["tokenizer.ggml.merges"] == [ln for ln in f.read().split("\n")[1:] if ln]
    assert sl.load_tokenizer(tmp_path / "g.gguf").encode(TEXT) == sl.load_tokenizer("gpt2").encode(TEXT)
    # a small GPT through llama.cpp's reader: gpt2 names, shapes (ne0 first) and types
    small = _scaled(build_model(GPTConfig(vocab_size=96, block_size=32, n_layer=2, n_head=2, n_embd=32)), 4)
    small.save_pretrained(tmp_path / "s")
    export(tmp_path / "s", "gguf", tmp_path / "s.gguf", type="q8_0")
    r = gguf.GGUFReader(tmp_path / "s.gguf")
    tensors = {t.name: t for t in r.tensors}
    assert r.fields["general.architecture"].contents() == "gpt2" and r.fields["gpt2.block_count"].contents() == 2
    assert list(tensors["blk.1.attn_qkv.weight"].shape) == [32, 96] and "output.weight" not in tensors
    assert tensors["blk.1.attn_qkv.bias"].tensor_type == gguf.GGMLQuantizationType.F32
    assert tensors["position_embd.weight"].tensor_type == gguf.GGMLQuantizationType.Q8_0
    ids = [[5, 17, 33, 2, 95]]
    for path, m in ((tmp_path / "g.gguf", model), (tmp_path / "s.gguf", small)):
        state = m.state_dict()
        deq = {k: gg_dequantize(gg_quantize(v, gguf.GGMLQuantizationType.Q8_0), gguf.GGMLQuantizationType.Q8_0)
               if v.ndim == 2 else v for k, v in state.items()}
        m.load_state_dict(deq)
        np.testing.assert_allclose(_logits(sl.load_model(path), ids), _logits(m, ids), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- llama2.c
def test_llama2c_v1_export_equals_the_model_and_tokenizer_bin_is_llama2c_s(tmp_path):
    written, _ = export(MODEL, "llama2c", tmp_path / "m.bin")
    assert written == [str(tmp_path / "m.bin"), str(tmp_path / "tokenizer.bin")]
    head = (tmp_path / "m.bin").read_bytes()[:37]
    assert struct.unpack("<Ii7iB", head) == (0x616B3432, 1, 64, 172, 5, 8, 4, 512, 512, 1)
    (c0, s0), (c1, s1) = read_checkpoint(MODEL), read_checkpoint(tmp_path / "m.bin")
    assert c0 == c1 and all(np.array_equal(s0[k], s1[k]) for k in s0)
    # llama2.c's own tokenizer.py wrote tok512.bin from the same vocabulary: the same bytes
    assert (tmp_path / "tokenizer.bin").read_bytes() == open(TOK, "rb").read()


def test_llama2c_v2_export_is_export_py_q8_0(tmp_path):
    export(MODEL, "llama2c", tmp_path / "q.bin", type="q8_0")
    raw = (tmp_path / "q.bin").read_bytes()
    # group 4: runq.c needs it to divide hidden_dim 172 as well as dim 64 (export.py would pick 64)
    assert struct.unpack("<Ii7iBi", raw[:41])[1] == 2 and struct.unpack("<i", raw[37:41])[0] == 4
    c0, s0 = read_checkpoint(MODEL)
    c1, s1 = read_checkpoint(tmp_path / "q.bin")
    for k, w in s0.items():
        if w.ndim == 2:
            q, s = quantize_q80(w, 4)
            np.testing.assert_array_equal(s1[k], (q.astype(np.float32) * s[:, None]).reshape(w.shape))
            assert np.abs(s1[k] - w).max() <= np.abs(w).max() / 254 + 1e-6
        else:
            np.testing.assert_array_equal(s1[k], w)


# ---------------------------------------------------------------- scratchllm, errors
def test_scratchllm_export_round_trips(tmp_path):
    export(MODEL, "scratchllm", tmp_path / "s")
    model, back = sl.load_model(MODEL), sl.load_model(tmp_path / "s")
    ids = [[1, 403, 407, 261, 378]]
    np.testing.assert_array_equal(_logits(back, ids), _logits(model, ids))
    assert sl.load_tokenizer(tmp_path / "s").encode(TEXT) == sl.load_tokenizer(TOK).encode(TEXT)


def test_export_refuses_what_a_format_cannot_hold(tmp_path, capsys):
    gpt = build_model(GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=1, n_embd=8))
    gpt.save_pretrained(tmp_path / "g")
    with pytest.raises(ScratchLLMError, match="Llama models only"):
        export(tmp_path / "g", "llama2c", tmp_path / "x.bin")
    assert main(["export", "--model", MODEL, "--format", "hf", "--out", str(tmp_path / "h"), "--type", "q8_0"]) == 1
    assert "--format hf writes --type f32" in capsys.readouterr().err


def test_generate_reads_a_gguf_file_with_its_tokenizer(tmp_path, capsys):
    (tmp_path / "g").mkdir()
    export(MODEL, "gguf", tmp_path / "g" / "s.gguf")
    args = ["--prompt", "Once upon a time", "--temperature", "0", "--max-new-tokens", "30"]
    assert main(["generate", "--model", MODEL, "--tokenizer", TOK] + args) == 0
    want = capsys.readouterr().out
    assert main(["generate", "--model", str(tmp_path / "g" / "s.gguf")] + args) == 0
    assert capsys.readouterr().out == want


def test_llama2c_v2_group_64_when_the_sizes_allow(tmp_path):
    model = _scaled(build_model(LlamaConfig(vocab_size=96, dim=64, n_layers=2, n_heads=4, n_kv_heads=2,
                                            hidden_dim=192, max_seq_len=32)), 5)
    model.save_pretrained(tmp_path / "m")
    export(tmp_path / "m", "llama2c", tmp_path / "q.bin", type="q8_0")
    assert struct.unpack("<i", (tmp_path / "q.bin").read_bytes()[37:41])[0] == 64
    _, back = read_checkpoint(tmp_path / "q.bin")
    w = model.state_dict()["output.weight"]
    q, s = quantize_q80(w, 64)
    np.testing.assert_array_equal(back["output.weight"], (q.astype(np.float32) * s[:, None]).reshape(w.shape))
