"""GGUF files written by llama.cpp's own Python writer (the ``gguf`` package) from random HF
Llama / GPT-2 weights: scratchllm reads them to transformers' logits; every tensor type
dequantizes exactly as ``gguf.quants.dequantize``; the stored tokenizers encode as the originals."""
import json
import os

import gguf
import numpy as np
import pytest
import torch
import transformers
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize as gg_dequantize
from gguf.quants import quantize as gg_quantize

import scratchllm as sl
from scratchllm.errors import ScratchLLMError
from scratchllm.io import gguf_quant
from scratchllm.io.gguf import read_gguf
from scratchllm.io.gguf_read import GGUFFile

transformers.logging.set_verbosity_error()
torch.set_num_threads(1)
DATA = os.path.join(os.path.dirname(__file__), "..", "data")

_HF_LLAMA = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.down_proj": "ffn_down",
             "mlp.up_proj": "ffn_up", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}
_HF_GPT2 = {"ln_1": "attn_norm", "attn.c_attn": "attn_qkv", "attn.c_proj": "attn_output", "ln_2": "ffn_norm",
            "mlp.c_fc": "ffn_up", "mlp.c_proj": "ffn_down"}


# ---------------------------------------------------------------- oracle: llama.cpp's converter
def scaled(model, seed, std=0.15):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln" in name or "norm" in name:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(std * torch.randn(p.shape, generator=g))
    return model.eval()


def hf_llama(seed=0, vocab=101, dim=64, n_heads=4, n_kv=2, hidden=192, tie=False):
    cfg = transformers.LlamaConfig(vocab_size=vocab, hidden_size=dim, intermediate_size=hidden, num_hidden_layers=2,
                                   num_attention_heads=n_heads, num_key_value_heads=n_kv, max_position_embeddings=128,
                                   rms_norm_eps=1e-5, rope_parameters={"rope_theta": 10000.0, "rope_type": "default"},
                                   tie_word_embeddings=tie, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(seed)
    return scaled(transformers.LlamaForCausalLM(cfg), seed)


def hf_gpt2(seed=0, vocab=97):
    cfg = transformers.GPT2Config(vocab_size=vocab, n_positions=64, n_embd=64, n_layer=2, n_head=4,
                                  resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    torch.manual_seed(seed)
    return scaled(transformers.GPT2LMHeadModel(cfg), seed)


def permute(w, n_head):
    """convert_hf_to_gguf.py's LlamaModel.permute (HF's q/k rows -> llama.cpp's)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def add(writer, name, arr, qtype):
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if arr.ndim == 1 or qtype == T.F32:
        writer.add_tensor(name, arr)
    elif qtype == T.F16:
        writer.add_tensor(name, arr.astype(np.float16))
    else:
        writer.add_tensor(name, gg_quantize(arr, qtype), raw_dtype=qtype)


def llama_gguf(hf, path, qtype=T.F32, tokenizer=None):
    """What llama.cpp's convert_hf_to_gguf.py writes for a LlamaForCausalLM (weights part)."""
    c = hf.config
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_block_count(c.num_hidden_layers)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_rope_freq_base(10000.0)
    w.add_rope_dimension_count(c.hidden_size // c.num_attention_heads)
    w.add_vocab_size(c.vocab_size)
    if tokenizer:
        tokenizer(w)
    for k, v in hf.state_dict().items():
        v = v.numpy()
        k = k.removeprefix("model.")
        if k == "lm_head.weight":
            if c.tie_word_embeddings:
                continue
            name = "output.weight"
        elif k in ("embed_tokens.weight", "norm.weight"):
            name = {"embed_tokens.weight": "token_embd.weight", "norm.weight": "output_norm.weight"}[k]
        else:
            _, i, rest = k.split(".", 2)
            part = rest.removesuffix(".weight")
            if part == "self_attn.q_proj":
                v = permute(v, c.num_attention_heads)
            elif part == "self_attn.k_proj":
                v = permute(v, c.num_key_value_heads)
            name = f"blk.{i}.{_HF_LLAMA[part]}.weight"
        add(w, name, v, qtype)
    _finish(w)


def gpt2_gguf(hf, path, qtype=T.F32, with_output=True):
    c = hf.config
    w = gguf.GGUFWriter(str(path), "gpt2")
    w.add_block_count(c.n_layer)
    w.add_context_length(c.n_positions)
    w.add_embedding_length(c.n_embd)
    w.add_feed_forward_length(4 * c.n_embd)
    w.add_head_count(c.n_head)
    w.add_layer_norm_eps(c.layer_norm_epsilon)
    for k, v in hf.state_dict().items():
        v = v.numpy()
        k = k.removeprefix("transformer.")
        if k.endswith((".attn.bias", ".attn.masked_bias")):
            continue
        if k.endswith((".c_attn.weight", ".c_proj.weight", ".c_fc.weight")):
            v = v.T                                     # Conv1D (in, out) -> (out, in), as the converter
        if k == "lm_head.weight":
            if not with_output:
                continue
            name = "output.weight"
        elif k.startswith("h."):
            _, i, rest = k.split(".", 2)
            part, suffix = rest.rsplit(".", 1)
            name = f"blk.{i}.{_HF_GPT2[part]}.{suffix}"
        else:
            name = {"wte.weight": "token_embd.weight", "wpe.weight": "position_embd.weight",
                    "ln_f.weight": "output_norm.weight", "ln_f.bias": "output_norm.bias"}[k]
        add(w, name, v, qtype)
    _finish(w)


def _finish(w):
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def hf_logits(hf, ids):
    with torch.no_grad():
        return hf(torch.as_tensor(ids)).logits.numpy()


IDS = np.random.default_rng(5).integers(0, 97, size=(2, 19))


# ---------------------------------------------------------------- models
@pytest.mark.parametrize("tie,n_kv", [(False, 2), (True, 4)])
def test_llama_gguf_logits_equal_transformers(tmp_path, tie, n_kv):
    hf = hf_llama(seed=1, tie=tie, n_kv=n_kv)
    llama_gguf(hf, tmp_path / "m.gguf")
    model = sl.load_model(tmp_path / "m.gguf")
    assert model.config.tie_embeddings == tie and model.config.n_kv_heads == n_kv
    np.testing.assert_allclose(model(IDS).numpy(), hf_logits(hf, IDS), rtol=1e-4, atol=1e-4)


def test_gpt2_gguf_logits_equal_transformers(tmp_path):
    hf = hf_gpt2(seed=2)
    for out in (True, False):
        gpt2_gguf(hf, tmp_path / f"g{out}.gguf", with_output=out)
        model = sl.load_model(tmp_path / f"g{out}.gguf")
        np.testing.assert_allclose(model(IDS).numpy(), hf_logits(hf, IDS), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("qtype", [T.F16, T.Q8_0, T.Q4_0])
def test_quantized_llama_equals_its_dequantized_weights(tmp_path, qtype):
    """A Q8_0 / Q4_0 / F16 file gives the logits of the HF model holding the dequantized weights."""
    hf = hf_llama(seed=3)
    llama_gguf(hf, tmp_path / "q.gguf", qtype)
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if p.ndim == 2:
                raw = gg_quantize(p.numpy(), qtype) if qtype != T.F16 else p.numpy().astype(np.float16)
                p.copy_(torch.from_numpy(gg_dequantize(raw, qtype).reshape(p.shape).astype(np.float32)))
    model = sl.load_model(tmp_path / "q.gguf")
    np.testing.assert_allclose(model(IDS).numpy(), hf_logits(hf, IDS), rtol=1e-4, atol=1e-4)


def _random_blocks(qtype, n_blocks, rng):
    """Random bytes for ``n_blocks`` blocks with sane float16 scales (no inf/NaN)."""
    size, nbytes = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(n_blocks, nbytes), dtype=np.uint8)
    scale = rng.uniform(-0.1, 0.1, size=(n_blocks, 2)).astype(np.float16).view(np.uint8).reshape(n_blocks, 4)
    if qtype == T.Q6_K:
        raw[:, -2:] = scale[:, :2]
    elif qtype == T.Q4_K:
        raw[:, :4] = scale
    elif qtype in (T.Q8_0, T.Q4_0):
        raw[:, :2] = scale[:, :2]
    return raw


@pytest.mark.parametrize("qtype", [T.F32, T.F16, T.BF16, T.Q8_0, T.Q4_0, T.Q4_K, T.Q6_K])
def test_every_type_dequantizes_as_gguf(tmp_path, qtype):
    rng = np.random.default_rng(int(qtype))
    shape = (3, 512)                                       # two Q4_K/Q6_K blocks per row
    if qtype in (T.F32, T.F16, T.BF16):
        vals = rng.standard_normal(shape).astype(np.float32)
        raw = gg_quantize(vals, qtype).reshape(-1).view(np.uint8)
    else:
        size, nb = gguf.GGML_QUANT_SIZES[qtype]
        raw = _random_blocks(qtype, shape[0] * shape[1] // size, rng).reshape(shape[0], -1)
    w = gguf.GGUFWriter(str(tmp_path / "t.gguf"), "llama")
    w.add_tensor("x", raw.reshape(shape[0], -1), raw_dtype=qtype)
    _finish(w)
    g = GGUFFile(tmp_path / "t.gguf")
    assert g.tensors["x"].shape == shape and g.tensors["x"].type == int(qtype)
    want = gg_dequantize(raw.reshape(shape[0], -1), qtype).reshape(shape)
    np.testing.assert_array_equal(g.array("x"), want)


def test_q8_0_quantizer_is_bit_exact_with_ggml():
    x = np.random.default_rng(0).standard_normal((4, 96)).astype(np.float32)
    x[0, :32] = 0.0                                        # an all-zero block
    x[1, :32] = np.linspace(-0.5, 0.5, 32) / 127 * 127     # ties at .5 steps
    np.testing.assert_array_equal(gguf_quant.quantize_q8_0(x).reshape(4, -1), gg_quantize(x, T.Q8_0))


# ---------------------------------------------------------------- tokenizers stored in the file
def _sp_tokenizer(path):
    from scratchllm.tokenizers.sp_proto import read_model_file
    m = read_model_file(path)

    def write(w):
        w.add_tokenizer_model("llama")
        w.add_token_list(m.pieces)
        w.add_token_scores(m.scores)
        w.add_token_types(m.types)
        w.add_bos_token_id(m.bos_id)
        w.add_eos_token_id(m.eos_id)
        w.add_unk_token_id(m.unk_id)
    return write


def test_llama_tokenizer_in_gguf_encodes_as_sentencepiece(tmp_path):
    import sentencepiece
    model_file = os.path.join(DATA, "llama2", "tokenizer.model")
    hf = hf_llama(seed=4, vocab=32000, dim=32, n_heads=2, n_kv=2, hidden=32)
    llama_gguf(hf, tmp_path / "t.gguf", tokenizer=_sp_tokenizer(model_file))
    tok = sl.load_tokenizer(tmp_path / "t.gguf")
    sp = sentencepiece.SentencePieceProcessor(model_file=model_file)
    text = "Hello world, how are you?\n  Ünïcödé 東京 🙂 tabs\tand  spaces"
    assert tok.encode(text) == sp.encode(text)
    assert tok.decode(sp.encode(text)) == sp.decode(sp.encode(text))
    assert (tok.bos_id, tok.eos_id) == (1, 2)


def test_gpt2_tokenizer_in_gguf_encodes_as_gpt2(tmp_path):
    folder = os.path.join(DATA, "gpt2")
    with open(os.path.join(folder, "encoder.json"), encoding="utf-8") as f:
        encoder = json.load(f)
    with open(os.path.join(folder, "vocab.bpe"), encoding="utf-8") as f:
        merges = [ln for ln in f.read().split("\n")[1:] if ln]
    tokens = sorted(encoder, key=encoder.get)
    w = gguf.GGUFWriter(str(tmp_path / "t.gguf"), "gpt2")
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tokens)
    w.add_token_types([3 if t == "<|endoftext|>" else 1 for t in tokens])
    w.add_token_merges(merges)
    w.add_bos_token_id(50256)
    w.add_eos_token_id(50256)
    _finish(w)
    tok, ref = sl.load_tokenizer(tmp_path / "t.gguf"), sl.load_tokenizer("gpt2")
    text = "Hello world's 123 tokens!\n\n  Ünïcödé 東京 🙂 <|endoftext|>"
    assert tok.encode(text) == ref.encode(text) and tok.eos_id == 50256
    assert tok.decode(ref.encode(text)) == text


# ---------------------------------------------------------------- bad files
def _valid_file(tmp_path):
    hf = hf_llama(seed=6, vocab=40, dim=32, n_heads=2, n_kv=2, hidden=32)
    llama_gguf(hf, tmp_path / "ok.gguf", T.Q8_0)
    return (tmp_path / "ok.gguf").read_bytes()


def test_bad_files_raise_one_clear_error(tmp_path):
    good = _valid_file(tmp_path)
    cases = {"magic": b"GGUX" + good[4:], "version": good[:4] + (1).to_bytes(4, "little") + good[8:],
             "huge tensor count": good[:8] + (2**62).to_bytes(8, "little") + good[16:],
             "huge kv count": good[:16] + (2**40).to_bytes(8, "little") + good[24:],
             "truncated header": good[:200], "truncated data": good[:-100], "empty": b""}
    for what, blob in cases.items():
        p = tmp_path / f"{what}.gguf"
        p.write_bytes(blob)
        with pytest.raises(ScratchLLMError, match="gguf"):
            read_gguf(p)


def test_unsupported_architecture_and_type_are_named(tmp_path):
    w = gguf.GGUFWriter(str(tmp_path / "a.gguf"), "falcon")
    w.add_tensor("token_embd.weight", np.zeros((4, 32), np.float32))
    _finish(w)
    with pytest.raises(ScratchLLMError, match="architecture 'falcon'"):
        read_gguf(tmp_path / "a.gguf")
    w = gguf.GGUFWriter(str(tmp_path / "b.gguf"), "llama")
    w.add_tensor("x", gg_quantize(np.zeros((2, 32), np.float32), T.Q5_0), raw_dtype=T.Q5_0)
    _finish(w)
    with pytest.raises(ScratchLLMError, match="Q5_0"):
        GGUFFile(tmp_path / "b.gguf")


def test_every_metadata_type_reads_back(tmp_path):
    w = gguf.GGUFWriter(str(tmp_path / "m.gguf"), "llama")
    values = {"u8": (7, gguf.GGUFValueType.UINT8), "i8": (-7, gguf.GGUFValueType.INT8),
              "u16": (700, gguf.GGUFValueType.UINT16), "i16": (-700, gguf.GGUFValueType.INT16),
              "u32": (70000, gguf.GGUFValueType.UINT32), "i32": (-70000, gguf.GGUFValueType.INT32),
              "f32": (0.5, gguf.GGUFValueType.FLOAT32), "b": (True, gguf.GGUFValueType.BOOL),
              "s": ("héllo", gguf.GGUFValueType.STRING), "u64": (2**40, gguf.GGUFValueType.UINT64),
              "i64": (-2**40, gguf.GGUFValueType.INT64), "f64": (0.25, gguf.GGUFValueType.FLOAT64)}
    for k, (v, t) in values.items():
        w.add_key_value(f"t.{k}", v, t)
    w.add_array("t.arr_i32", [1, -2, 3])
    w.add_array("t.arr_s", ["a", "bé", ""])
    w.add_array("t.arr_f", [0.5, 1.5])
    w.add_custom_alignment(64)
    w.add_tensor("x", np.arange(32, dtype=np.float32))
    _finish(w)
    g = GGUFFile(tmp_path / "m.gguf")
    for k, (v, _) in values.items():
        assert g.metadata[f"t.{k}"] == v, k
    assert g.metadata["t.arr_i32"].tolist() == [1, -2, 3] and g.metadata["t.arr_s"] == ["a", "bé", ""]
    assert g.metadata["t.arr_f"].tolist() == [0.5, 1.5] and g.alignment == 64
    assert g.tensors["x"].offset % 64 == 0
    np.testing.assert_array_equal(g.array("x"), np.arange(32, dtype=np.float32))


def test_q8_0_file_stays_exactly_its_blocks_in_int8_generation(tmp_path):
    """--quantize q8_0 on a Q8_0 GGUF re-quantizes the dequantized blocks back to the very same
    int8 values and scales: the file's weights are what the int8 products use, losslessly."""
    from scratchllm.models.quant import Q8Weight, set_generation_quant
    hf = hf_llama(seed=7)
    llama_gguf(hf, tmp_path / "q.gguf", T.Q8_0)
    model = set_generation_quant(sl.load_model(tmp_path / "q.gguf"), "q8_0")
    dec = model.decoder(1, 8)
    raw = np.asarray(GGUFFile(tmp_path / "q.gguf").raw("blk.1.attn_q.weight")).reshape(64, 2, 34)  # (out, groups, block)
    wqkv = next(v for v in dec.layers[1] if isinstance(v, Q8Weight))   # the fused (dim, q | k | v) weight
    assert wqkv.shape == (64, 64 + 32 + 32)
    np.testing.assert_array_equal(wqkv.q[:, :64], raw[:, :, 2:].view(np.int8).reshape(64, 64).T)
    np.testing.assert_array_equal(wqkv.s[:, :64], raw[:, :, :2].copy().view(np.float16)[..., 0].astype(np.float32).T)
