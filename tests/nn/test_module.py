"""Module machinery: registration, torch's dotted names, state_dict round trip and its errors,
to(dtype), train/eval, zero_grad, num_parameters, repr, apply, containers."""
import numpy as np
import pytest
import torch

import scratchllm as sl
from scratchllm import nn
from scratchllm.errors import ScratchLLMError


class Block(nn.Module):
    def __init__(self, d, tnn=nn):
        super().__init__()
        self.ln = tnn.LayerNorm(d)
        self.ff = tnn.Sequential(tnn.Linear(d, 2 * d), tnn.ReLU(), tnn.Linear(2 * d, d, bias=False))


class Net(nn.Module):
    def __init__(self, tnn=nn):
        super().__init__()
        self.emb = tnn.Embedding(11, 4)
        self.blocks = tnn.ModuleList([Block(4, tnn) for _ in range(2)])
        self.heads = tnn.ModuleDict({"a": tnn.Linear(4, 3), "b": tnn.Linear(4, 2)})
        self.scale = nn.Parameter(np.ones(1, np.float32))


class TorchBlock(torch.nn.Module):
    def __init__(self, d):
        super().__init__()
        self.ln = torch.nn.LayerNorm(d)
        self.ff = torch.nn.Sequential(torch.nn.Linear(d, 2 * d), torch.nn.ReLU(), torch.nn.Linear(2 * d, d, bias=False))


class TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(11, 4)
        self.blocks = torch.nn.ModuleList([TorchBlock(4) for _ in range(2)])
        self.heads = torch.nn.ModuleDict({"a": torch.nn.Linear(4, 3), "b": torch.nn.Linear(4, 2)})
        self.scale = torch.nn.Parameter(torch.ones(1))


def test_named_parameters_match_torch():
    ours, ref = Net(), TorchNet()
    assert [(n, p.shape) for n, p in ours.named_parameters()] == \
           [(n, tuple(p.shape)) for n, p in ref.named_parameters()]
    assert list(ours.state_dict()) == list(ref.state_dict())
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in ref.named_modules()]
    assert ours.num_parameters() == sum(p.numel() for p in ref.parameters())
    assert len(list(ours.parameters())) == len(list(ref.parameters()))


def test_state_dict_round_trip_arrays_and_tensors():
    a, b = Net(), Net()
    sl.manual_seed(1)
    b = Net()
    sd = a.state_dict()
    assert all(isinstance(v, np.ndarray) for v in sd.values())
    w_before = b.blocks[0].ff[0].weight
    result = b.load_state_dict({k: (sl.Tensor(v) if i % 2 else v.copy()) for i, (k, v) in enumerate(sd.items())})
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert b.blocks[0].ff[0].weight is w_before                      # loaded in place
    for k, v in b.state_dict().items():
        np.testing.assert_array_equal(v, sd[k])
    # also from torch's state dict
    ref = TorchNet()
    b.load_state_dict({k: v.numpy() for k, v in ref.state_dict().items()})
    np.testing.assert_array_equal(b.emb.weight.numpy(), ref.emb.weight.detach().numpy())


def test_load_state_dict_one_error_lists_every_problem():
    net = Net()
    sd = dict(net.state_dict())
    del sd["heads.a.bias"], sd["emb.weight"]
    sd["blocks.0.ln.weight"] = np.ones(5, np.float32)
    sd["extra.weight"] = np.ones(2, np.float32)
    with pytest.raises(ScratchLLMError) as e:
        net.load_state_dict(sd)
    msg = str(e.value)
    for needle in ("missing keys (2)", "heads.a.bias", "emb.weight", "unexpected keys (1)", "extra.weight",
                   "shape mismatches (1)", "blocks.0.ln.weight: checkpoint shape (5,), model shape (4,)"):
        assert needle in msg, msg
    # non-strict: missing/unexpected are reported, shape mismatches still raise
    del sd["blocks.0.ln.weight"]
    res = net.load_state_dict(sd, strict=False)
    assert sorted(res.missing_keys) == ["blocks.0.ln.weight", "emb.weight", "heads.a.bias"]
    assert res.unexpected_keys == ["extra.weight"]
    sd["blocks.0.ln.weight"] = np.ones(5, np.float32)
    with pytest.raises(ScratchLLMError, match="shape mismatches"):
        net.load_state_dict(sd, strict=False)


def test_tied_parameter_counted_once_but_named_in_state_dict():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(5, 3)
            self.head = nn.Linear(3, 5, bias=False)
            self.head.weight = self.wte.weight

    m = Tied()
    assert [n for n, _ in m.named_parameters()] == ["wte.weight"]
    assert list(m.state_dict()) == ["wte.weight", "head.weight"]
    assert m.num_parameters() == 15


def test_to_train_eval_zero_grad_apply_repr():
    net = Net()
    assert net.training and all(m.training for m in net.modules())
    net.eval()
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    net.to(np.float64)
    assert all(p.dtype == np.float64 for p in net.parameters())
    out = net.heads["a"](net.blocks[1].ff(net.emb([[1, 2]]))).sum()
    out.backward()
    assert net.heads["a"].weight.grad is not None
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    seen = []
    net.apply(lambda m: seen.append(type(m).__name__))
    assert seen[-1] == "Net" and seen.count("Linear") == 6
    assert repr(nn.Linear(2, 3)) == repr(torch.nn.Linear(2, 3))
    text = repr(net)
    assert "(blocks): ModuleList(" in text and "(0): Linear(in_features=4, out_features=8, bias=True)" in text
    assert repr(nn.LayerNorm(4)) == repr(torch.nn.LayerNorm(4))
    assert repr(nn.Embedding(11, 4)) == repr(torch.nn.Embedding(11, 4))


def test_registration_rules_and_containers():
    m = nn.Module()
    m.w = nn.Parameter(np.zeros(2, np.float32))
    m.register_buffer("buf", np.arange(3))
    m.register_buffer("tmp", np.arange(2), persistent=False)
    assert list(m.state_dict()) == ["w", "buf"]
    assert [n for n, _ in m.named_buffers()] == ["buf", "tmp"]
    with pytest.raises(TypeError, match="parameter 'w'"):
        m.w = np.zeros(2)
    del m.w
    assert list(m.state_dict()) == ["buf"]
    with pytest.raises(AttributeError, match="super"):
        class Bad(nn.Module):
            def __init__(self):
                self.x = nn.Linear(1, 1)
        Bad()
    ml = nn.ModuleList([nn.ReLU(), nn.Tanh()])
    ml.append(nn.Linear(1, 1))
    assert len(ml) == 3 and isinstance(ml[-1], nn.Linear) and len(ml[:2]) == 2
    assert [n for n, _ in ml.named_parameters()] == ["2.weight", "2.bias"]
    with pytest.raises(IndexError):
        ml[3]
    md = nn.ModuleDict({"x": nn.Linear(1, 2)})
    assert "x" in md and list(md.keys()) == ["x"]
    with pytest.raises(KeyError, match="no key 'y'"):
        md["y"]
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    assert seq(sl.randn(4, 2)).shape == (4, 3) and isinstance(seq[0], nn.Linear)
    assert sl.nn.init is not None and sl.nn.functional.linear is not None
