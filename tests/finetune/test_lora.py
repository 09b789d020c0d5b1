"""LoRA against HF PEFT: logits, gradients, adapter files both ways, merge, frozen base."""
import numpy as np
import pytest
import torch

from finetune_helpers import hf_copy, ids_batch, randomize_adapters, tiny_model
from scratchllm.finetune.lora import _hf_module_name, _qk_heads
from scratchllm.models.weights import meta_to_hf_qk
from scratchllm.finetune.lora import (LoRAConfig, apply_lora, load_adapter, lora_modules,
                                      lora_parameters, merge_lora, merged, save_adapter,
                                      unmerge_lora)

TARGETS = {"gpt": ("c_attn", "c_proj", "c_fc"),
           "llama": ("q", "k", "v", "o", "gate", "up", "down")}


def _ours_logits(model, ids):
    model.eval()
    return model(ids).numpy()


def _peft_load(hf, folder):
    from peft import PeftModel
    return PeftModel.from_pretrained(hf, str(folder)).eval()


@pytest.mark.parametrize("arch", ["gpt", "llama"])
def test_our_adapter_loads_in_peft(tmp_path, arch):
    model = tiny_model(arch)
    hf = hf_copy(model, tmp_path / "base")
    apply_lora(model, LoRAConfig(r=4, alpha=8, targets=TARGETS[arch]))
    randomize_adapters(model)
    save_adapter(model, tmp_path / "adapter", base_model=str(tmp_path / "base"))
    peft_model = _peft_load(hf, tmp_path / "adapter")
    ids = ids_batch(model.vocab_size)
    with torch.no_grad():
        want = peft_model(torch.as_tensor(ids)).logits.numpy()
    got = _ours_logits(model, ids)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # the adapter really changes the output (so the comparison above is not vacuous)
    with torch.no_grad(), peft_model.disable_adapter():
        base = peft_model(torch.as_tensor(ids)).logits.numpy()
    assert np.abs(base - want).max() > 1e-2


@pytest.mark.parametrize("arch", ["gpt", "llama"])
def test_peft_adapter_loads_in_ours(tmp_path, arch):
    from peft import LoraConfig, get_peft_model
    model = tiny_model(arch)
    hf = hf_copy(model, tmp_path / "base")
    targets = ["c_attn", "c_proj", "c_fc"] if arch == "gpt" else \
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    cfg = LoraConfig(r=3, lora_alpha=6, target_modules=targets, lora_dropout=0.0,
                     init_lora_weights=False, fan_in_fan_out=arch == "gpt")
    torch.manual_seed(0)
    peft_model = get_peft_model(hf, cfg).eval()
    peft_model.save_pretrained(str(tmp_path / "peft_adapter"))
    names = load_adapter(model, tmp_path / "peft_adapter")
    assert len(names) == len(targets) * 2 if arch == "llama" else len(names) == 8
    ids = ids_batch(model.vocab_size, seed=5)
    with torch.no_grad():
        want = peft_model(torch.as_tensor(ids)).logits.numpy()
    np.testing.assert_allclose(_ours_logits(model, ids), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch", ["gpt", "llama"])
def test_adapter_gradients_match_torch_float64(tmp_path, arch, monkeypatch):
    from peft import PeftModel
    from transformers.models.llama import modeling_llama

    def rms_norm_float64(self, x):   # HF's casts to float32 inside; keep float64 throughout
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))
    monkeypatch.setattr(modeling_llama.LlamaRMSNorm, "forward", rms_norm_float64)
    model = tiny_model(arch).double()
    hf = hf_copy(model, tmp_path / "base", dtype=torch.float64)
    if arch == "llama":   # HF computes its RoPE tables in float32: use exactly those
        c = model.config
        pos = torch.arange(c.max_seq_len)[None]
        cos, sin = hf.model.rotary_emb(torch.zeros(1, dtype=torch.float64), pos)
        model.rope = (cos[0, :, :c.head_dim // 2].numpy(), sin[0, :, :c.head_dim // 2].numpy())
    apply_lora(model, LoRAConfig(r=2, alpha=5, targets=TARGETS[arch]))
    randomize_adapters(model, seed=7)
    save_adapter(model, tmp_path / "adapter")
    peft_model = PeftModel.from_pretrained(hf, str(tmp_path / "adapter"), is_trainable=True)
    peft_model = peft_model.double().train()
    # the file holds float32 copies: round ours the same way so both hold the same values
    for m in lora_modules(model).values():
        for lin in (m.lora_A, m.lora_B):
            lin.weight.data[...] = lin.weight.data.astype(np.float32)
    ids, targets = ids_batch(model.vocab_size, seed=11), ids_batch(model.vocab_size, seed=12)
    model.train()
    _, loss = model(ids, targets)
    loss.backward()
    out = peft_model(torch.as_tensor(ids)).logits
    t_loss = torch.nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]),
                                               torch.as_tensor(targets).reshape(-1))
    t_loss.backward()
    np.testing.assert_allclose(loss.item(), t_loss.item(), rtol=1e-12)
    t_grads = {n: p.grad.numpy() for n, p in peft_model.named_parameters() if p.requires_grad}
    mods = lora_modules(model)
    assert len(t_grads) == 2 * len(mods)
    for name, m in mods.items():
        key = "base_model.model." + _hf_module_name(arch, name)
        gA, gB = m.lora_A.weight.grad.numpy(), m.lora_B.weight.grad.numpy()
        heads = _qk_heads(model, name) if arch == "llama" else None
        if heads:                                 # HF's row order of q_proj / k_proj
            gB = meta_to_hf_qk(gB, heads)
        np.testing.assert_allclose(gA, t_grads[key + ".lora_A.default.weight"], rtol=1e-7, atol=1e-12)
        np.testing.assert_allclose(gB, t_grads[key + ".lora_B.default.weight"], rtol=1e-7, atol=1e-12)


def test_merge_equals_w_plus_scaled_ba_and_unmerge_restores():
    model = tiny_model("gpt")
    before = {k: v.copy() for k, v in model.state_dict().items()}
    apply_lora(model, LoRAConfig(r=4, alpha=12, targets=("c_attn", "c_fc")))
    randomize_adapters(model)
    ids = ids_batch(model.vocab_size)
    unmerged_logits = _ours_logits(model, ids)
    merge_lora(model)
    for name, m in lora_modules(model).items():
        want = before[name + ".weight"] + (12 / 4) * (m.lora_B.weight.data @ m.lora_A.weight.data)
        np.testing.assert_allclose(m.weight.data, want, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(_ours_logits(model, ids), unmerged_logits, rtol=1e-5, atol=1e-5)
    unmerge_lora(model)
    for name in lora_modules(model):                              # bit for bit
        assert model.state_dict()[name + ".weight"].tobytes() == before[name + ".weight"].tobytes()
    with merged(model):
        assert all(m.merged for m in lora_modules(model).values())
    assert not any(m.merged for m in lora_modules(model).values())


def test_training_touches_only_adapters():
    from scratchllm.optim import AdamW
    model = tiny_model("llama")
    apply_lora(model, LoRAConfig(r=2, alpha=4, dropout=0.1, targets=("q", "v", "down")))
    base = {k: v.copy() for k, v in model.state_dict().items() if "lora_" not in k}
    params = lora_parameters(model)
    assert {id(p) for p in params} == {id(p) for p in model.parameters() if p.requires_grad}
    opt = AdamW(params, lr=1e-2, weight_decay=0.1)
    model.train()
    for step in range(3):
        _, loss = model(ids_batch(model.vocab_size, seed=step), ids_batch(model.vocab_size, seed=9))
        loss.backward()
        assert all(p.grad is None for p in model.parameters() if not p.requires_grad)
        opt.step()
        opt.zero_grad()
    after = model.state_dict()
    for k, v in base.items():
        assert after[k].tobytes() == v.tobytes(), k               # bit-identical
    state = opt.state_dict()["state"]
    assert len(state) == len(params) == 2 * 3 * model.config.n_layers   # (A, B) x 3 targets x layers
    shapes = sorted(tuple(s["exp_avg"].shape) for s in state.values())
    assert shapes == sorted(tuple(p.shape) for p in params)
    assert any(np.abs(p.data).max() > 0 for p in params[1::2])     # B moved off zero


def test_bad_targets_and_adapter_errors(tmp_path):
    from scratchllm.errors import ScratchLLMError
    with pytest.raises(ScratchLLMError, match="unknown target 'q'"):
        apply_lora(tiny_model("gpt"), LoRAConfig(targets=("q",)))
    with pytest.raises(ScratchLLMError, match="adapter config not found"):
        load_adapter(tiny_model("gpt"), tmp_path)
    with pytest.raises(ScratchLLMError, match="lora_r"):
        apply_lora(tiny_model("gpt"), LoRAConfig(r=0))
