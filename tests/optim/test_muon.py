"""Muon and MuonWithAdamW against a straightforward torch implementation of the published
algorithm (KellerJordan/Muon ``muon.py``: ``zeropower_via_newtonschulz5``, ``muon_update``,
``Muon.step``), written out below in float64: 25 steps from identical weights, rtol 1e-7."""
import numpy as np
import pytest
import torch

import scratchllm as sl
from scratchllm.nn.parameter import Parameter
from scratchllm.optim.muon import MuonWithAdamW, muon_param_groups, newton_schulz5

from .problem import loss_ours, loss_theirs, make_arrays, ours, theirs

STEPS = 25


# ---------------------------------------------------------------- the torch reference
def zeropower_via_newtonschulz5(G, steps):
    a, b, c = (3.4445, -4.7750, 2.0315)
    X = G.double()                                       # the repo: G.bfloat16()
    if G.size(-2) > G.size(-1):
        X = X.mT
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for _ in range(steps):
        A = X @ X.mT
        B = b * A + c * A @ A
        X = a * X + B @ X
    if G.size(-2) > G.size(-1):
        X = X.mT
    return X


def torch_muon_update(grad, momentum, beta=0.95, ns_steps=5, nesterov=True):
    momentum.lerp_(grad, 1 - beta)
    update = grad.lerp_(momentum, beta) if nesterov else momentum
    update = zeropower_via_newtonschulz5(update, steps=ns_steps)
    update *= max(1, grad.size(-2) / grad.size(-1)) ** 0.5
    return update


class TorchMuon(torch.optim.Optimizer):
    def __init__(self, params, lr=0.02, weight_decay=0, momentum=0.95, nesterov=True):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state[p]
                if len(state) == 0:
                    state["momentum_buffer"] = torch.zeros_like(p)
                update = torch_muon_update(p.grad.clone(), state["momentum_buffer"], beta=group["momentum"],
                                           nesterov=group["nesterov"])
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(update.reshape(p.shape), alpha=-group["lr"])


# ---------------------------------------------------------------- tests
@pytest.mark.parametrize("shape", [(7, 7), (5, 12), (12, 5)])
def test_newton_schulz_matches_reference(shape):
    G = np.random.default_rng(1).standard_normal(shape)
    np.testing.assert_allclose(newton_schulz5(G), zeropower_via_newtonschulz5(torch.from_numpy(G), 5).numpy(),
                               rtol=1e-7, atol=1e-12)
    s = np.linalg.svd(newton_schulz5(G), compute_uv=False)
    assert np.all((s > 0.5) & (s < 1.25))                # roughly orthogonal, as published


def _step_both(p_ours, p_theirs, opt_ours, opt_theirs, x, y, steps=STEPS):
    for _ in range(steps):
        loss_ours(p_ours, x, y).backward()
        loss_theirs(p_theirs, x, y).backward()
        opt_ours.step()
        opt_theirs.step()
        opt_ours.zero_grad()
        opt_theirs.zero_grad()


@pytest.mark.parametrize("kwargs", [dict(lr=0.02), dict(lr=0.05, weight_decay=0.1, momentum=0.9),
                                    dict(lr=0.02, nesterov=False)])
def test_muon_step_equal_to_torch_reference(kwargs):
    weights, x, y = make_arrays(0)
    p_ours, p_theirs = ours(weights), theirs(weights)
    mats = ("w1", "w2")                                   # (8, 5) tall and (3, 8) wide
    opt_ours = sl.optim.Muon([p_ours[k] for k in mats], **kwargs)
    opt_theirs = TorchMuon([p_theirs[k] for k in mats], **kwargs)
    _step_both(p_ours, p_theirs, opt_ours, opt_theirs, x, y)
    for k in mats:
        np.testing.assert_allclose(p_ours[k].data, p_theirs[k].detach().numpy(), rtol=1e-7, atol=1e-12)
        assert not np.allclose(p_ours[k].data, weights[k])
        np.testing.assert_allclose(opt_ours.state[p_ours[k]]["momentum_buffer"],
                                   opt_theirs.state[p_theirs[k]]["momentum_buffer"].numpy(), rtol=1e-7, atol=1e-12)


def _combined(weights):
    p_ours, p_theirs = ours(weights), theirs(weights)
    opt_ours = MuonWithAdamW([
        {"params": [p_ours["w1"], p_ours["w2"]], "use_muon": True, "lr": 0.03, "weight_decay": 0.1},
        {"params": [p_ours["b1"], p_ours["b2"]], "lr": 0.01, "weight_decay": 0.0}], betas=(0.9, 0.95))
    return p_ours, p_theirs, opt_ours


def test_muon_with_adamw_step_equal_to_torch_reference():
    weights, x, y = make_arrays(2)
    p_ours, p_theirs, opt_ours = _combined(weights)
    muon = TorchMuon([p_theirs["w1"], p_theirs["w2"]], lr=0.03, weight_decay=0.1)
    adam = torch.optim.AdamW([p_theirs["b1"], p_theirs["b2"]], lr=0.01, betas=(0.9, 0.95), weight_decay=0.0)

    class Both:
        def step(self):
            muon.step(), adam.step()

        def zero_grad(self):
            muon.zero_grad(), adam.zero_grad()

    _step_both(p_ours, p_theirs, opt_ours, Both(), x, y)
    for k in weights:
        np.testing.assert_allclose(p_ours[k].data, p_theirs[k].detach().numpy(), rtol=1e-7, atol=1e-12, err_msg=k)
        assert not np.allclose(p_ours[k].data, weights[k])


def test_state_dict_resumes_bit_for_bit():
    weights, x, y = make_arrays(3)
    p_a, _, opt_a = _combined(weights)
    for _ in range(6):
        loss_ours(p_a, x, y).backward()
        opt_a.step()
        opt_a.zero_grad()
    saved = opt_a.state_dict()
    assert set(saved["state"][0]) == {"momentum_buffer"} and set(saved["state"][2]) == {"step", "exp_avg",
                                                                                        "exp_avg_sq"}
    p_b, _, opt_b = _combined({k: v.data.copy() for k, v in p_a.items()})
    opt_b.load_state_dict(saved)
    assert opt_b.param_groups[0]["use_muon"] and not opt_b.param_groups[1]["use_muon"]
    for p, opt in ((p_a, opt_a), (p_b, opt_b)):
        for _ in range(5):
            loss_ours(p, x, y).backward()
            opt.step()
            opt.zero_grad()
    for k in weights:
        np.testing.assert_array_equal(p_a[k].data, p_b[k].data)


def test_muon_param_groups_split_a_gpt():
    model = sl.models.GPT(sl.models.GPTConfig.from_preset("gpt-nano", vocab_size=50))
    groups = muon_param_groups(model, muon_lr=0.02, adam_lr=1e-3, weight_decay=0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    muon, mats, rest = ([names[id(p)] for p in g["params"]] for g in groups)
    assert all(n.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight")) for n in muon)
    assert len(muon) == 4 * model.config.n_layer
    assert sorted(mats) == ["transformer.wpe.weight", "transformer.wte.weight"]
    params = dict(model.named_parameters())
    assert rest and all(params[n].ndim == 1 for n in rest)
    assert [g["use_muon"] for g in groups] == [True, False, False]
    assert [g["weight_decay"] for g in groups] == [0.1, 0.1, 0.0]
    assert len(muon) + len(mats) + len(rest) == len(list(model.parameters()))


def test_muon_rejects_vectors():
    with pytest.raises(ValueError, match="2-D weight matrices only"):
        sl.optim.Muon([Parameter(np.zeros(3))])
    with pytest.raises(ValueError, match="momentum"):
        sl.optim.Muon([Parameter(np.zeros((3, 3)))], momentum=1.0)


def test_muon_param_groups_split_a_llama():
    model = sl.models.Llama(sl.models.LlamaConfig.from_preset("llama-nano"))
    names = {id(p): n for n, p in model.named_parameters()}
    muon, mats, rest = ([names[id(p)] for p in g["params"]] for g in muon_param_groups(model))
    assert len(muon) == 7 * model.config.n_layers and not any("output" in n or "tok_" in n for n in muon)
    assert sorted(mats) == ["output.weight", "tok_embeddings.weight"]
    assert all("norm" in n for n in rest)
