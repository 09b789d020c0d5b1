"""GPT-2 and Llama against HF transformers: logits, greedy generation, KV cache, gradients."""
import numpy as np
import pytest
import torch

import scratchllm as sl
from scratchllm.io.hf import gpt2_config, gpt2_state, llama_config, llama_state
from scratchllm.models import GPT, Llama

from .model_helpers import hf_gpt2, hf_greedy, hf_llama, hf_logits

GPT2_CONFIGS = [dict(seed=0), dict(seed=1, n_layer=3, n_head=2, n_embd=48, vocab=61),
                dict(seed=2, n_layer=1, n_head=8, n_embd=64, vocab=130)]
LLAMA_CONFIGS = [dict(seed=0),                                                      # GQA 4:2, theta 5e5
                 dict(seed=1, n_heads=8, n_kv_heads=2, dim=64, intermediate=160, n_layers=3),
                 dict(seed=2, n_heads=4, n_kv_heads=4, theta=10000.0, tie=True, vocab=77),
                 dict(seed=3, n_heads=4, n_kv_heads=1, dim=32, intermediate=96,
                      rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                    "high_freq_factor": 4.0, "original_max_position_embeddings": 64})]


def _ids(seed, vocab, B=2, T=40):
    return np.random.default_rng(seed).integers(0, vocab, size=(B, T))


@pytest.mark.parametrize("kw", GPT2_CONFIGS)
def test_gpt2_logits_equal_hf(tmp_path, kw):
    hf = hf_gpt2(**kw)
    hf.save_pretrained(tmp_path)
    model = sl.load_model(tmp_path)
    assert isinstance(model, GPT)
    ids = _ids(kw["seed"], hf.config.vocab_size)
    ref = hf_logits(hf, ids)
    assert ref.std() > 1.0  # not near uniform
    out = model(ids)
    assert isinstance(out, sl.Tensor) and out.dtype == np.float32 and out.shape == ref.shape
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kw", LLAMA_CONFIGS)
def test_llama_logits_equal_hf(tmp_path, kw):
    hf = hf_llama(**kw)
    hf.save_pretrained(tmp_path)
    model = sl.load_model(tmp_path)
    assert isinstance(model, Llama)
    assert model.config.rope_theta == kw.get("theta", 500000.0)
    ids = _ids(kw["seed"], hf.config.vocab_size, T=100)
    ref = hf_logits(hf, ids)
    assert ref.std() > 0.5  # not near uniform
    np.testing.assert_allclose(model(ids).numpy(), ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("make", [lambda: hf_gpt2(seed=5), lambda: hf_llama(seed=5)], ids=["gpt2", "llama"])
def test_greedy_generate_equals_hf(tmp_path, make):
    hf = make()
    hf.save_pretrained(tmp_path)
    model = sl.load_model(tmp_path)
    ids = _ids(7, hf.config.vocab_size, B=2, T=6)
    ref = hf_greedy(hf, ids, 50)
    out = model.generate(ids, max_new_tokens=50, temperature=0.0)
    assert out.shape == (2, 56) and out.dtype == np.int64
    np.testing.assert_array_equal(out, ref)
    streamed = list(model.stream(ids[0], max_new_tokens=50, temperature=0.0))
    assert streamed == ref[0, 6:].tolist()


@pytest.mark.parametrize("make", [lambda: hf_gpt2(seed=6), lambda: hf_llama(seed=6)], ids=["gpt2", "llama"])
def test_kv_cache_logits_equal_full_forward(tmp_path, make):
    hf = make()
    hf.save_pretrained(tmp_path)
    model = sl.load_model(tmp_path)
    ids = _ids(3, hf.config.vocab_size, B=2, T=30)
    full = model(ids).numpy()
    with sl.no_grad():
        dec = model.decoder(2, 30)
        steps = [dec.step(ids[:, :12])]                            # prefill 12, then chunks
        steps.append(dec.step(ids[:, 12:20]))                      # a multi-token step on a filled cache
        for t in range(20, 30):
            steps.append(dec.step(ids[:, t:t + 1]))
    got = np.stack(steps, axis=1)                                  # logits at 11, 19, 20..29
    np.testing.assert_allclose(got, full[:, [11, 19] + list(range(20, 30))], rtol=1e-4, atol=1e-4)


def _grad_check(ours, hf, state_names, ids, targets, transform):
    logits, loss = ours(ids, targets)
    loss.backward()
    ref_logits = hf(torch.as_tensor(ids)).logits
    ref_loss = torch.nn.functional.cross_entropy(ref_logits.reshape(-1, ref_logits.shape[-1]),
                                                 torch.as_tensor(targets).reshape(-1))
    ref_loss.backward()
    np.testing.assert_allclose(loss.item(), ref_loss.item(), rtol=1e-12)
    ref_grads = {k: p.grad.numpy() for k, p in hf.named_parameters()}
    checked = 0
    for name, p in ours.named_parameters():
        ref = transform(name, ref_grads[state_names[name]])
        np.testing.assert_allclose(p.grad.numpy(), ref, rtol=1e-6, atol=1e-9 * np.abs(ref).max(), err_msg=name)
        checked += 1
    assert checked == len(ref_grads)


def test_gpt2_gradients_equal_pytorch():
    hf = hf_gpt2(seed=8).double()
    tensors = {k: v.numpy() for k, v in hf.state_dict().items()}
    config = gpt2_config(hf.config.to_dict(), "cfg")
    state, names = gpt2_state(tensors, config)
    ours = GPT(config).to(np.float64)
    ours.load_state_dict(state)
    ids, targets = _ids(1, config.vocab_size, T=20), _ids(2, config.vocab_size, T=20)
    conv = ("c_attn.weight", "c_proj.weight", "c_fc.weight")
    _grad_check(ours, hf, names, ids, targets, lambda n, g: g.T if n.endswith(conv) else g)


def _rms_norm_in_input_dtype(self, x):
    """HF's LlamaRMSNorm always computes in float32; the float64 oracle must not."""
    return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))


@pytest.mark.parametrize("tie", [False, True])
def test_llama_gradients_equal_pytorch(tie, monkeypatch):
    from transformers.models.llama import modeling_llama
    monkeypatch.setattr(modeling_llama.LlamaRMSNorm, "forward", _rms_norm_in_input_dtype)
    hf = hf_llama(seed=9, tie=tie).double()
    c = hf.config
    tensors = {k: v.numpy() for k, v in hf.state_dict().items()}
    config = llama_config(c.to_dict(), "cfg")
    state, names = llama_state(tensors, config)
    ours = Llama(config).to(np.float64)
    ours.load_state_dict(state)
    ids, targets = _ids(3, config.vocab_size, T=24), _ids(4, config.vocab_size, T=24)
    if tie:
        names["tok_embeddings.weight"] = "model.embed_tokens.weight"
    # HF computes its RoPE tables in float32 even in a float64 model; use the same tables
    cos, sin = hf.model.rotary_emb(torch.zeros(1, dtype=torch.float64), torch.arange(24)[None])
    half = config.head_dim // 2
    ours.rope = (cos[0, :, :half].numpy(), sin[0, :, :half].numpy())

    def transform(name, g):
        from scratchllm.models.weights import hf_to_meta_qk
        if name.endswith("wq.weight"):
            return hf_to_meta_qk(g, c.num_attention_heads)
        if name.endswith("wk.weight"):
            return hf_to_meta_qk(g, c.num_key_value_heads)
        return g
    _grad_check(ours, hf, names, ids, targets, transform)
