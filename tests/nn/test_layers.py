"""Layers against torch.nn with copied weights: outputs, input and parameter gradients."""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import scratchllm as sl
from scratchllm import nn

from ._helpers import DTYPES, assert_close, compare, compare_param_grads, copy_params


def _tdtype(dtype):
    return torch.float64 if dtype == np.float64 else torch.float32


def _check_layer(ours, ref, x, dtype, name_map=None, grad_input=True):
    ref = ref.to(_tdtype(dtype))
    ours.to(dtype)
    copy_params(ours, ref, name_map)
    compare(ours, ref, [x], dtype, grad=[grad_input])
    compare_param_grads(ours, ref, dtype, name_map)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
def test_linear_layer(dtype, bias):
    x = np.random.default_rng(0).standard_normal((2, 3, 5)).astype(dtype)
    ours = nn.Linear(5, 4, bias=bias)
    assert ours.weight.shape == (4, 5) and (ours.bias is None) == (not bias)
    _check_layer(ours, torch.nn.Linear(5, 4, bias=bias), x, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_embedding_layer(dtype):
    ids = np.random.default_rng(0).integers(0, 7, (3, 9))
    ours, ref = nn.Embedding(7, 5).to(dtype), torch.nn.Embedding(7, 5).to(_tdtype(dtype))
    copy_params(ours, ref)
    out, r = ours(ids), ref(torch.tensor(ids))
    assert_close(out, r, dtype)
    g = np.random.default_rng(1).standard_normal(out.shape).astype(dtype)
    out.backward(g)
    r.backward(torch.tensor(g))
    compare_param_grads(ours, ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
def test_layer_norm_layer(dtype, bias):
    x = (np.random.default_rng(0).standard_normal((2, 3, 6)) * 2 + 1).astype(dtype)
    ref = torch.nn.LayerNorm(6, bias=bias)
    with torch.no_grad():
        ref.weight.normal_()
        if bias:
            ref.bias.normal_()
    _check_layer(nn.LayerNorm(6, bias=bias), ref, x, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rms_norm_layer(dtype):
    x = np.random.default_rng(0).standard_normal((2, 3, 6)).astype(dtype)
    ref = torch.nn.RMSNorm(6, eps=1e-6)
    with torch.no_grad():
        ref.weight.normal_()
    _check_layer(nn.RMSNorm(6, eps=1e-6), ref, x, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ours,ref", [(nn.GELU(), torch.nn.GELU()), (nn.GELU("tanh"), torch.nn.GELU("tanh")),
                                      (nn.SiLU(), torch.nn.SiLU()), (nn.ReLU(), torch.nn.ReLU()),
                                      (nn.Tanh(), torch.nn.Tanh()), (nn.Sigmoid(), torch.nn.Sigmoid()),
                                      (nn.Softmax(-1), torch.nn.Softmax(-1))])
def test_activation_layers(dtype, ours, ref):
    x = (np.random.default_rng(0).standard_normal((4, 5)) * 3).astype(dtype)
    compare(ours, ref, [x], dtype)


class TorchSwiGLU(torch.nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.w1 = torch.nn.Linear(dim, hidden, bias=False)
        self.w2 = torch.nn.Linear(hidden, dim, bias=False)
        self.w3 = torch.nn.Linear(dim, hidden, bias=False)

    def forward(self, x):
        return self.w2(TF.silu(self.w1(x)) * self.w3(x))


@pytest.mark.parametrize("dtype", DTYPES)
def test_swiglu(dtype):
    x = np.random.default_rng(0).standard_normal((2, 3, 8)).astype(dtype)
    _check_layer(nn.SwiGLU(8, 12), TorchSwiGLU(8, 12), x, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sequential_mlp(dtype):
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(dtype)
    ours = nn.Sequential(nn.Linear(4, 8), nn.GELU("tanh"), nn.LayerNorm(8), nn.Linear(8, 3))
    ref = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.GELU("tanh"), torch.nn.LayerNorm(8),
                              torch.nn.Linear(8, 3))
    _check_layer(ours, ref, x, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_weight_tying_accumulates_both_gradients(dtype):
    """One Embedding used as input table and (transposed) as output head, and a Linear called twice."""
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 6, (2, 4))
    targets = rng.integers(0, 6, (2, 4))
    emb, lin = nn.Embedding(6, 5).to(dtype), nn.Linear(5, 5).to(dtype)
    temb, tlin = torch.nn.Embedding(6, 5).to(_tdtype(dtype)), torch.nn.Linear(5, 5).to(_tdtype(dtype))
    copy_params(emb, temb)
    copy_params(lin, tlin)
    h = lin(lin(emb(ids)))
    loss = nn.functional.cross_entropy(nn.functional.linear(h, emb.weight), targets)
    th = tlin(tlin(temb(torch.tensor(ids))))
    tloss = TF.cross_entropy(TF.linear(th, temb.weight).reshape(-1, 6), torch.tensor(targets.reshape(-1)))
    assert_close(loss, tloss, dtype)
    loss.backward()
    tloss.backward()
    compare_param_grads(emb, temb, dtype)
    compare_param_grads(lin, tlin, dtype)


def test_dropout_layer_train_eval():
    drop = nn.Dropout(0.5, generator=sl.Generator(1))
    x = sl.ones(20, 20)
    assert (drop(x).numpy() == 0).any()
    drop.eval()
    assert drop(x) is x
    a = nn.Dropout(0.5, generator=sl.Generator(4))(x).numpy()
    b = nn.Dropout(0.5, generator=sl.Generator(4))(x).numpy()
    np.testing.assert_array_equal(a, b)


def test_positional_embeddings():
    pe = nn.SinusoidalPositionalEmbedding(10, 6)(5).numpy()
    assert pe.shape == (5, 6) and pe.dtype == np.float32
    pos, i = np.arange(5)[:, None], np.arange(3)[None, :]
    angle = pos / 10000.0 ** (2 * i / 6)
    np.testing.assert_allclose(pe[:, 0::2], np.sin(angle), rtol=1e-6, atol=1e-7)   # sin on even dims
    np.testing.assert_allclose(pe[:, 1::2], np.cos(angle), rtol=1e-6, atol=1e-7)   # cos on odd dims
    odd = nn.functional.sinusoidal_positions(4, 5)
    assert odd.shape == (4, 5) and np.allclose(odd[:, 4], np.sin(np.arange(4) / 10000.0 ** (4 / 5)))
    assert nn.SinusoidalPositionalEmbedding(10, 6).state_dict() == {}   # a fixed table is not saved
    learned = nn.LearnedPositionalEmbedding(8, 3)
    out = learned(4, offset=2)
    np.testing.assert_array_equal(out.numpy(), learned.weight.numpy()[2:6])
    out.sum().backward()
    np.testing.assert_array_equal(learned.weight.grad.numpy()[[0, 1, 6, 7]], 0)
    np.testing.assert_array_equal(learned.weight.grad.numpy()[2:6], 1)
    with pytest.raises(ValueError, match="exceed max_len"):
        learned(7, offset=2)
