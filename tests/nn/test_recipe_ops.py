"""The speedrun recipe against torch, float64 rtol 1e-7: the ops (ReLU², soft-cap, QK-norm) forward
and gradients, then a GPT with the options on against a small torch re-implementation (logits and
every parameter's gradient), its raw-array decoder, and the config saved and loaded."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import scratchllm as sl
from scratchllm.errors import ScratchLLMError
from scratchllm.models import GPT, GPTConfig
from scratchllm.models.gpt_recipe import value_embed_layers
from scratchllm.nn.functional.recipe import qk_norm, relu2, rope_heads_last, softcap, value_mix
from scratchllm.nn.functional.rope import rope_cache

RTOL, ATOL = 1e-7, 1e-10
ALL_ON = dict(qk_norm=True, positional="rope", value_embeds=True, mlp_act="relu2", zero_init_proj=True,
              tie_weights=False, logit_softcap=3.0)


def _pair(shape, seed=0, scale=2.0):
    a = np.random.default_rng(seed).standard_normal(shape) * scale
    return sl.Tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)


def _check_op(ours_fn, theirs_fn, shape=(3, 4, 5)):
    x, tx = _pair(shape)
    g = np.random.default_rng(1).standard_normal(shape)
    y, ty = ours_fn(x), theirs_fn(tx)
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=RTOL, atol=ATOL)
    (y * sl.Tensor(g)).sum().backward()
    ty.backward(torch.from_numpy(g))
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=RTOL, atol=ATOL)


def test_relu2_matches_torch():
    _check_op(relu2, lambda t: torch.relu(t) ** 2)


@pytest.mark.parametrize("cap", [0.5, 3.0, 30.0])
def test_softcap_matches_torch(cap):
    _check_op(lambda x: softcap(x, cap), lambda t: cap * torch.tanh(t / cap))


def test_qk_norm_matches_torch_rms_norm():
    _check_op(qk_norm, lambda t: TF.rms_norm(t, (t.shape[-1],)), shape=(2, 3, 4, 8))


def test_rope_heads_last_matches_torch():
    T, D = 5, 8
    cos, sin = rope_cache(D, 16, 10000.0, dtype=np.float64)
    c, s = torch.from_numpy(cos[:T])[:, None, :], torch.from_numpy(sin[:T])[:, None, :]

    def theirs(t):                                     # HF's rotate_half, heads after time
        a, b = t[..., :D // 2], t[..., D // 2:]
        return torch.cat([a * c - b * s, a * s + b * c], dim=-1)
    _check_op(lambda x: rope_heads_last(x, cos, sin, "half"), theirs, shape=(2, T, 3, D))


@pytest.mark.parametrize("with_table", [True, False])
@pytest.mark.parametrize("dtype, rtol", [(np.float64, RTOL), (np.float32, 1e-5)])
def test_value_mix_matches_torch(with_table, dtype, rtol):
    """lambdas[0] v + lambdas[1] ve (or lambdas[0] v alone) and the gradients of v, ve, lambdas;
    v a strided view, as the split of the attention's projection gives it."""
    rng = np.random.default_rng(4)
    packed = rng.standard_normal((2, 5, 12)).astype(dtype)
    e, lam, g = (rng.standard_normal(s).astype(dtype) for s in ((2, 5, 4), (2,), (2, 5, 4)))
    t = sl.Tensor(packed, requires_grad=True)
    ve, lambdas = sl.Tensor(e, requires_grad=True), sl.Tensor(lam, requires_grad=True)
    y = value_mix(t[..., 8:], ve if with_table else None, lambdas)
    y.backward(sl.Tensor(g))
    tt, tve, tl = (torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (packed, e, lam))
    ty = tl[0] * tt[..., 8:] + (tl[1] * tve if with_table else 0)
    ty.backward(torch.from_numpy(g.astype(np.float64)))
    close = lambda a, b: np.testing.assert_allclose(a, b.detach().numpy(), rtol=rtol, atol=rtol * 10)
    assert y.dtype == dtype and lambdas.grad.dtype == dtype
    close(y.numpy(), ty)
    close(t.grad.numpy(), tt.grad)
    close(lambdas.grad.numpy(), tl.grad if with_table else torch.stack([tl.grad[0], torch.zeros(())]))
    if with_table:
        close(ve.grad.numpy(), tve.grad)
    else:
        assert ve.grad is None


def test_value_mix_rejects_mismatched_shapes():
    v = sl.Tensor(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match=r"value_mix: .*v \(2, 3, 4\), ve \(3, 4\), lambdas \(2,\)"):
        value_mix(v, sl.Tensor(np.zeros((3, 4))), sl.Tensor(np.ones(2)))
    with pytest.raises(ValueError, match=r"lambdas \(3,\)"):
        value_mix(v, None, sl.Tensor(np.ones(3)))


def test_softcap_rejects_bad_cap():
    with pytest.raises(ValueError, match="cap must be > 0"):
        softcap(sl.Tensor([1.0]), 0.0)


# ---------------------------------------------------------------- the torch GPT
def torch_gpt(p, c: GPTConfig, ids):
    """GPT-2 plus the recipe's options, written out in torch; ``p``: name -> float64 leaf tensor."""
    B, T = ids.shape
    C, H = c.n_embd, c.n_head
    D = C // H
    ids = torch.from_numpy(ids)
    x = p["transformer.wte.weight"][ids]
    if c.positional == "learned":
        x = x + p["transformer.wpe.weight"][:T]
    if c.positional == "rope":
        inv = 1.0 / c.rope_theta ** (torch.arange(0, D, 2, dtype=torch.float64) / D)
        ang = torch.outer(torch.arange(T, dtype=torch.float64), inv)
        cos, sin = torch.cos(ang), torch.sin(ang)

        def rope(t):                                   # HF's rotate_half pairs (x_i, x_{i + D/2})
            a, b = t[..., :D // 2], t[..., D // 2:]
            return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)
    which = value_embed_layers(c.n_layer) if c.value_embeds else [None] * c.n_layer
    for i in range(c.n_layer):
        h = f"transformer.h.{i}."
        y = TF.layer_norm(x, (C,), p[h + "ln_1.weight"], p[h + "ln_1.bias"], c.layer_norm_eps)
        qkv = TF.linear(y, p[h + "attn.c_attn.weight"], p[h + "attn.c_attn.bias"]).view(B, T, 3, H, D)
        q, k, v = (qkv[:, :, j].transpose(1, 2) for j in range(3))
        if c.qk_norm:
            q, k = TF.rms_norm(q, (D,)), TF.rms_norm(k, (D,))
        if c.positional == "rope":
            q, k = rope(q), rope(k)
        if c.value_embeds:
            lam = p[h + "attn.lambdas"]
            v = lam[0] * v
            if which[i] is not None:
                ve = p[f"transformer.ve.{which[i]}.weight"][ids]
                v = v + lam[1] * ve.view(B, T, H, D).transpose(1, 2)
        y = TF.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C)
        x = x + TF.linear(y, p[h + "attn.c_proj.weight"], p[h + "attn.c_proj.bias"])
        y = TF.layer_norm(x, (C,), p[h + "ln_2.weight"], p[h + "ln_2.bias"], c.layer_norm_eps)
        y = TF.linear(y, p[h + "mlp.c_fc.weight"], p[h + "mlp.c_fc.bias"])
        y = torch.relu(y) ** 2 if c.mlp_act == "relu2" else TF.gelu(y, approximate="tanh")
        x = x + TF.linear(y, p[h + "mlp.c_proj.weight"], p[h + "mlp.c_proj.bias"])
    x = TF.layer_norm(x, (C,), p["transformer.ln_f.weight"], p["transformer.ln_f.bias"], c.layer_norm_eps)
    logits = x @ (p["transformer.wte.weight"] if c.tie_weights else p["lm_head.weight"]).T
    return c.logit_softcap * torch.tanh(logits / c.logit_softcap) if c.logit_softcap else logits


def _model(options, seed=0):
    cfg = GPTConfig(vocab_size=23, block_size=16, n_layer=4, n_head=2, n_embd=16, **options)
    model = GPT(cfg).double()
    rng = np.random.default_rng(seed)
    for _, p in model.named_parameters():             # random everywhere (zero-init would hide terms)
        p.data[...] = rng.standard_normal(p.shape) * 0.3
    return model


@pytest.mark.parametrize("options", [ALL_ON, dict(qk_norm=True, mlp_act="relu2", logit_softcap=5.0),
                                     dict(value_embeds=True, tie_weights=False)], ids=["all", "some", "ve"])
def test_gpt_options_match_torch_reference(options):
    model = _model(options)
    ids = np.random.default_rng(5).integers(0, 23, (2, 11))
    tgt = np.random.default_rng(6).integers(0, 23, (2, 11))
    logits, loss = model(ids, tgt)
    tp = {n: torch.tensor(p.data, requires_grad=True) for n, p in model.named_parameters()}
    tlogits = torch_gpt(tp, model.config, ids)
    np.testing.assert_allclose(logits.numpy(), tlogits.detach().numpy(), rtol=RTOL, atol=ATOL)
    loss.backward()
    TF.cross_entropy(tlogits.reshape(-1, 23), torch.from_numpy(tgt).reshape(-1)).backward()
    for n, p in model.named_parameters():
        assert p.grad is not None, n
        np.testing.assert_allclose(p.grad.numpy(), tp[n].grad.numpy(), rtol=RTOL, atol=ATOL, err_msg=n)


def test_decoder_matches_model_with_options():
    model = _model(ALL_ON, seed=1)
    ids = np.random.default_rng(7).integers(0, 23, (2, 10))
    full = model(ids).numpy()                                           # (B, T, V)
    dec = model.decoder(batch=2)
    np.testing.assert_allclose(dec.step(ids[:, :6]), full[:, 5], rtol=RTOL, atol=ATOL)
    for t in range(6, 10):                                              # one token at a time, from the cache
        np.testing.assert_allclose(dec.step(ids[:, t:t + 1]), full[:, t], rtol=RTOL, atol=ATOL)


def test_options_default_off_and_zero_init():
    cfg = GPTConfig.from_preset("gpt-nano", vocab_size=30)
    assert cfg.is_gpt2 and not cfg.recipe_attention
    plain = GPT(cfg)
    assert not any(n.startswith("lm_head") or ".ve." in n or "lambdas" in n for n, _ in plain.named_parameters())
    model = GPT(GPTConfig.from_preset("gpt-nano", vocab_size=30, **ALL_ON))
    params = dict(model.named_parameters())
    assert all(not params[n].data.any() for n in params if n.endswith("c_proj.weight") or n == "lm_head.weight")
    assert all((params[n].data == 0.5).all() for n in params if n.endswith("lambdas"))
    assert "transformer.wpe.weight" not in params and "transformer.ve.0.weight" in params
    logits = model(np.zeros((1, 4), dtype=np.int64)).numpy()
    assert not logits.any()                                              # the zero head: uniform start


def test_options_saved_in_config_json_and_reloaded(tmp_path):
    model = _model(ALL_ON, seed=2)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert {k: saved[k] for k in ALL_ON} == ALL_ON
    again = sl.load_model(str(tmp_path))
    ids = np.random.default_rng(8).integers(0, 23, (1, 7))
    np.testing.assert_allclose(again(ids).numpy(), model(ids).numpy().astype(np.float32), rtol=1e-5, atol=1e-6)
    with pytest.raises(ScratchLLMError, match="recipe options"):
        GPT(GPTConfig(vocab_size=23, block_size=16, n_layer=1, n_head=2, n_embd=16, qk_norm=True)).save_pretrained(
            tmp_path / "hf", format="hf")


def test_bad_option_values_are_named():
    with pytest.raises(ScratchLLMError, match="mlp_act"):
        GPTConfig(mlp_act="swish")
    with pytest.raises(ScratchLLMError, match="logit_softcap"):
        GPTConfig(logit_softcap=-1.0)
    with pytest.raises(ScratchLLMError, match="positional"):
        GPTConfig(positional="alibi")
