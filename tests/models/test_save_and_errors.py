"""save_pretrained round trips (scratchllm and HF formats), configs, and one clear error per bad input."""
import json
import struct

import numpy as np
import pytest
import transformers
from safetensors.numpy import load_file, save_file

import scratchllm as sl
from scratchllm.errors import ScratchLLMError
from scratchllm.models import GPT, GPTConfig, LlamaConfig, build_model

from .model_helpers import hf_gpt2, hf_logits

IDS = np.random.default_rng(0).integers(0, 50, size=(2, 17))
TINY = {
    "gpt": GPTConfig(vocab_size=53, block_size=32, n_layer=2, n_head=2, n_embd=16),
    "gpt-sinusoidal-nobias": GPTConfig(vocab_size=53, block_size=32, n_layer=1, n_head=2, n_embd=16,
                                       positional="sinusoidal", bias=False),
    "llama": LlamaConfig(vocab_size=53, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, multiple_of=16,
                         max_seq_len=32, rope_theta=500000.0),
    "llama-tied": LlamaConfig(vocab_size=53, dim=32, n_layers=1, n_heads=2, multiple_of=16, max_seq_len=32,
                              tie_embeddings=True),
    "llama-scaled-rope": LlamaConfig(vocab_size=53, dim=32, n_layers=1, n_heads=2, multiple_of=16, max_seq_len=32,
                                     rope_theta=500000.0, rope_scaling={"factor": 8.0, "low_freq_factor": 1.0,
                                                                        "high_freq_factor": 4.0,
                                                                        "original_max_position_embeddings": 8.0}),
}


def _model(name, seed=0):
    model = build_model(TINY[name], sl.Generator(seed))
    with sl.no_grad():  # scale up from GPT-2's tiny init so logits differ visibly
        for p in model.parameters():
            p.data *= 10.0 if p.ndim == 2 else 1.0
    return model.eval()


@pytest.mark.parametrize("name", list(TINY))
def test_save_pretrained_scratchllm_round_trip(tmp_path, name):
    model = _model(name)
    model.save_pretrained(tmp_path / "m")
    back = sl.load_model(tmp_path / "m")
    assert type(back) is type(model) and back.config == model.config
    np.testing.assert_array_equal(back(IDS).numpy(), model(IDS).numpy())


@pytest.mark.parametrize("name", ["gpt", "llama", "llama-tied", "llama-scaled-rope"])
def test_save_pretrained_hf_loads_in_transformers(tmp_path, name):
    model = _model(name)
    model.save_pretrained(tmp_path / "hf", format="hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    np.testing.assert_allclose(hf_logits(hf, IDS), model(IDS).numpy(), rtol=1e-4, atol=1e-4)
    back = sl.load_model(tmp_path / "hf")
    np.testing.assert_allclose(back(IDS).numpy(), model(IDS).numpy(), rtol=1e-6, atol=1e-6)


def test_folders_written_by_sl_save_or_safetensors_numpy_load(tmp_path):
    model = _model("llama")
    sl.save(model, tmp_path / "a.safetensors", metadata={"config": model.config.to_dict()})
    np.testing.assert_array_equal(sl.load_model(tmp_path / "a.safetensors")(IDS).numpy(), model(IDS).numpy())
    folder = tmp_path / "b"
    folder.mkdir()
    save_file({k: np.ascontiguousarray(v) for k, v in model.state_dict().items()}, folder / "weights.safetensors")
    (folder / "config.json").write_text(json.dumps({"format": "scratchllm", **model.config.to_dict()}))
    np.testing.assert_array_equal(sl.load_model(folder)(IDS).numpy(), model(IDS).numpy())


@pytest.mark.parametrize("cfg,theta,scaled", [
    ({"rope_theta": 500000.0}, 500000.0, False),                                         # transformers 4.x
    ({"rope_parameters": {"rope_theta": 500000.0, "rope_type": "default"}}, 500000.0, False),  # 5.x
    ({"rope_theta": None, "rope_scaling": {"rope_theta": 1e6, "rope_type": "default"}}, 1e6, False),
    ({"rope_theta": 5e5, "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                          "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}},
     5e5, True),
    ({}, 10000.0, False)])
def test_rope_theta_wherever_transformers_put_it(cfg, theta, scaled):
    from scratchllm.io.hf import rope_settings
    got_theta, scaling = rope_settings(cfg, "config.json")
    assert got_theta == theta and (scaling is not None) == scaled
    with pytest.raises(ScratchLLMError, match="rope_type 'yarn' is not supported"):
        rope_settings({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "config.json")


def test_presets_and_meta_hidden_size():
    assert LlamaConfig.from_preset("llama3-8b").ffn_hidden_dim == 14336
    assert LlamaConfig.from_preset("llama2-7b").ffn_hidden_dim == 11008
    assert LlamaConfig.from_preset("stories15m").ffn_hidden_dim == 768
    assert LlamaConfig.from_preset("stories42m").ffn_hidden_dim == 1376
    assert GPTConfig.from_preset("gpt2-xl").n_embd == 1600
    with pytest.raises(ScratchLLMError, match="unknown GPTConfig preset"):
        GPTConfig.from_preset("gpt5")
    with pytest.raises(ScratchLLMError, match="not a multiple of n_kv_heads"):
        LlamaConfig(dim=64, n_heads=4, n_kv_heads=3)


def test_gpt2_init_is_seeded_and_scaled():
    cfg = GPTConfig(vocab_size=100, block_size=64, n_layer=8, n_head=4, n_embd=128)
    a, b = GPT(cfg, sl.Generator(3)), GPT(cfg, sl.Generator(3))
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(p.numpy(), q.numpy(), err_msg=n)
    sd = a.state_dict()
    assert abs(sd["transformer.h.0.attn.c_attn.weight"].std() - 0.02) < 1e-3
    assert abs(sd["transformer.h.0.mlp.c_proj.weight"].std() - 0.02 / 4) < 2e-4   # 1/sqrt(2 * 8)
    assert not sd["transformer.h.0.attn.c_attn.bias"].any()
    assert (sd["transformer.ln_f.weight"] == 1).all()


def test_sampling_is_seeded_and_filters_apply():
    model = _model("gpt")
    a = model.generate(IDS[:, :3], 20, temperature=1.0, seed=5)
    b = model.generate(IDS[:, :3], 20, temperature=1.0, seed=5)
    c = model.generate(IDS[:, :3], 20, temperature=1.0, seed=6)
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    greedy = model.generate(IDS[:, :3], 20, temperature=0)
    np.testing.assert_array_equal(model.generate(IDS[:, :3], 20, temperature=0.7, top_k=1, seed=1), greedy)
    np.testing.assert_array_equal(model.generate(IDS[:, :3], 20, temperature=1.3, top_p=1e-6, seed=2), greedy)
    stop = int(greedy[0, 5])
    out = model.generate(IDS[:1, :3], 20, temperature=0, stop_tokens=[stop])
    assert out[0, -1] == stop and stop not in out[0, 3:-1]


def test_top_k_top_p_sampling_distribution():
    from scratchllm.models.generate import filter_logits, sample_next
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]]))
    np.testing.assert_array_equal(np.isfinite(filter_logits(logits, top_p=0.75)), [[True, True, False, False]])
    np.testing.assert_array_equal(np.isfinite(filter_logits(logits, top_k=3)), [[True, True, True, False]])
    g = sl.Generator(0)
    draws = np.concatenate([sample_next(np.repeat(logits, 1000, 0), 1.0, None, 0.75, g) for _ in range(20)])
    freq = np.bincount(draws, minlength=4) / draws.size
    np.testing.assert_allclose(freq, [0.5 / 0.8, 0.3 / 0.8, 0, 0], atol=0.01)


# ----------------------------------------------------------------- bad inputs
@pytest.fixture
def hf_folder(tmp_path):
    hf_gpt2(seed=3).save_pretrained(tmp_path / "hf")
    return tmp_path / "hf"


def _edit_weights(folder, fn):
    path = folder / "model.safetensors"
    tensors = load_file(path)
    fn(tensors)
    save_file(tensors, path)


def test_error_truncated_safetensors(hf_folder):
    path = hf_folder / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(ScratchLLMError, match=r"model\.safetensors.*truncated"):
        sl.load_model(hf_folder)


def test_error_header_length_beyond_file(hf_folder):
    path = hf_folder / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(struct.pack("<Q", len(data) * 2) + data[8:])
    with pytest.raises(ScratchLLMError, match="header length .* beyond the end of the file"):
        sl.load_model(hf_folder)


def test_error_missing_tensor(hf_folder):
    _edit_weights(hf_folder, lambda t: t.pop("transformer.h.1.mlp.c_fc.weight"))
    with pytest.raises(ScratchLLMError, match=r"missing tensors \['transformer.h.1.mlp.c_fc.weight'\]"):
        sl.load_model(hf_folder)


def test_error_misshapen_tensor(hf_folder):
    _edit_weights(hf_folder, lambda t: t.update({"transformer.h.0.attn.c_proj.weight": np.zeros((32, 31), np.float32)}))
    with pytest.raises(ScratchLLMError, match=r"'transformer.h.0.attn.c_proj.weight' has shape \[31, 32\]"):
        sl.load_model(hf_folder)


def test_error_config_disagrees_with_weights(hf_folder):
    cfg = json.loads((hf_folder / "config.json").read_text())
    cfg["vocab_size"] = 500
    (hf_folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ScratchLLMError, match="transformer.wte.weight.*vocab_size=500.*disagrees"):
        sl.load_model(hf_folder)


def test_error_unknown_architecture(hf_folder):
    cfg = json.loads((hf_folder / "config.json").read_text())
    cfg["architectures"] = ["BertForMaskedLM"]
    (hf_folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ScratchLLMError, match="unknown architecture 'BertForMaskedLM'"):
        sl.load_model(hf_folder)


def test_error_not_a_model(tmp_path):
    with pytest.raises(ScratchLLMError, match="no such file"):
        sl.load_model(tmp_path / "nothing")
    with pytest.raises(ScratchLLMError, match="not a model folder"):
        sl.load_model(tmp_path)
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(ScratchLLMError, match="unknown model file"):
        sl.load_model(tmp_path / "x.txt")


def test_error_sharded_index_names_missing_shard(tmp_path):
    hf = hf_gpt2(seed=4)
    hf.save_pretrained(tmp_path, max_shard_size="20KB")
    assert (tmp_path / "model.safetensors.index.json").exists()
    model = sl.load_model(tmp_path)
    np.testing.assert_allclose(model(IDS).numpy(), hf_logits(hf, IDS), rtol=1e-4, atol=1e-4)
    shard = sorted(tmp_path.glob("model-*.safetensors"))[-1]
    shard.unlink()
    with pytest.raises(ScratchLLMError, match=f"names shard '{shard.name}'"):
        sl.load_model(tmp_path)


def test_error_bad_generate_arguments():
    model = _model("gpt")
    with pytest.raises(ScratchLLMError, match="temperature"):
        model.generate(IDS[:, :3], 5, temperature=float("nan"))
    with pytest.raises(ScratchLLMError, match="temperature"):
        model.generate(IDS[:, :3], 5, temperature=-1)
    with pytest.raises(ScratchLLMError, match="token ids must lie"):
        model(np.array([[1, 99]]))
    with pytest.raises(ScratchLLMError, match="top_p"):
        _model("llama").generate(IDS[:, :3], 5, top_p=1.5)


@pytest.mark.parametrize("arch", ["gpt", "llama"])
def test_generate_past_the_context_crops_like_nanogpt(arch):
    """Beyond context_length, each next token is predicted from the last context_length tokens."""
    model = _model(arch)
    ctx = model.context_length
    prompt = np.random.default_rng(5).integers(0, model.vocab_size, size=(1, ctx - 3))
    out = model.generate(prompt, max_new_tokens=8, temperature=0.0)
    assert out.shape == (1, ctx - 3 + 8)
    ref = prompt.copy()
    with sl.no_grad():
        for _ in range(8):                                     # nanoGPT's loop: crop, full forward, argmax
            logits = model(ref[:, -ctx:]).numpy()[:, -1]
            ref = np.concatenate([ref, logits.argmax(-1)[:, None]], axis=1)
    np.testing.assert_array_equal(out, ref)
