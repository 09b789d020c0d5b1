"""scaled_dot_product_attention, RoPE and the GQA self-attention layer against torch."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings, strategies as st

import scratchllm as sl
from scratchllm.nn import functional as F
from scratchllm.nn.functional.dropout import dropout_mask

from ._helpers import DTYPES, compare, compare_param_grads

FAST = settings(max_examples=10, deadline=None)


def _qkv(rng, B, Hq, Hk, T, S, D, dtype):
    return [rng.standard_normal(s).astype(dtype) for s in ((B, Hq, T, D), (B, Hk, S, D), (B, Hk, S, D))]


@pytest.mark.parametrize("dtype", DTYPES)
@FAST
@given(B=st.integers(1, 2), Hk=st.integers(1, 3), G=st.integers(1, 3), T=st.integers(1, 6), D=st.integers(1, 5),
       seed=st.integers(0, 99))
def test_sdpa_causal_and_gqa(dtype, B, Hk, G, T, D, seed):
    arrays = _qkv(np.random.default_rng(seed), B, Hk * G, Hk, T, T, D, dtype)
    compare(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=G > 1),
            lambda q, k, v: TF.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=G > 1),
            arrays, dtype, seed)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mask_kind", ["bool_TS", "bool_B1TS", "bool_BHTS", "add_BHTS", "add_TS"])
@pytest.mark.parametrize("G", [1, 2])
def test_sdpa_masks(dtype, mask_kind, G):
    rng = np.random.default_rng(3)
    B, Hk, T, S, D = 2, 2, 4, 6, 3
    Hq = Hk * G
    arrays = _qkv(rng, B, Hq, Hk, T, S, D, dtype)
    shape = {"TS": (T, S), "B1TS": (B, 1, T, S), "BHTS": (B, Hq, T, S)}[mask_kind.split("_")[1]]
    if mask_kind.startswith("bool"):
        mask = rng.random(shape) > 0.4
        mask[..., 0] = True  # every query sees at least one key
    else:
        mask = rng.standard_normal(shape).astype(dtype)
    compare(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=G > 1, scale=0.7),
            lambda q, k, v: TF.scaled_dot_product_attention(q, k, v, attn_mask=torch.tensor(mask),
                                                            enable_gqa=G > 1, scale=0.7),
            arrays, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sdpa_dropout_matches_reference_with_same_mask(dtype):
    """With dropout the masks come from our seeded generator; the reference reuses them."""
    rng = np.random.default_rng(5)
    B, Hk, G, T, D, p = 2, 2, 2, 5, 4, 0.25
    arrays = _qkv(rng, B, Hk * G, Hk, T, T, D, dtype)
    mask = dropout_mask((B, Hk, G * T, T), p, np.dtype(dtype), sl.Generator(11)).reshape(B, Hk * G, T, T)

    def ref(q, k, v):
        k, v = k.repeat_interleave(G, dim=1), v.repeat_interleave(G, dim=1)
        s = q @ k.transpose(-1, -2) / math.sqrt(D)
        s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
        return (s.softmax(-1) * torch.tensor(mask)) @ v

    compare(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True, enable_gqa=True,
                                                           generator=sl.Generator(11)),
            ref, arrays, dtype)


def test_sdpa_errors():
    q = sl.randn(1, 4, 3, 2)
    k = sl.randn(1, 2, 3, 2)
    with pytest.raises(ValueError, match="enable_gqa"):
        F.scaled_dot_product_attention(q, k, k)
    with pytest.raises(ValueError, match="not both"):
        F.scaled_dot_product_attention(q, q, q, attn_mask=np.ones((3, 3), bool), is_causal=True)


# ------------------------------------------------------------------------ RoPE
def meta_rope(x, theta, offset):
    """Meta's llama reference (complex multiply) on x (B, H, T, D)."""
    B, H, T, D = x.shape
    freqs = 1.0 / (theta ** (torch.arange(0, D, 2, dtype=torch.float64)[: D // 2] / D))
    t = torch.arange(offset + T, dtype=torch.float64)
    freqs_cis = torch.polar(torch.ones(offset + T, D // 2, dtype=torch.float64), torch.outer(t, freqs))[offset:]
    xc = torch.view_as_complex(x.to(torch.float64).reshape(B, H, T, D // 2, 2))
    return torch.view_as_real(xc * freqs_cis).flatten(3).to(x.dtype)


def hf_rope(x, theta, offset):
    """HF's rotate_half reference on x (B, H, T, D)."""
    D, T = x.shape[-1], x.shape[-2]
    inv_freq = 1.0 / (theta ** (torch.arange(0, D, 2, dtype=torch.float64) / D))
    freqs = torch.outer(torch.arange(offset, offset + T, dtype=torch.float64), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)

    def rotate_half(a):
        a1, a2 = a[..., : D // 2], a[..., D // 2:]
        return torch.cat((-a2, a1), dim=-1)

    return x * cos + rotate_half(x) * sin


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout,ref", [("interleaved", meta_rope), ("half", hf_rope)])
@FAST
@given(T=st.integers(1, 6), half=st.integers(1, 4), offset=st.integers(0, 5), theta=st.sampled_from([1e4, 5e5]),
       seed=st.integers(0, 99))
def test_rope(dtype, layout, ref, T, half, offset, theta, seed):
    D = 2 * half
    x = np.random.default_rng(seed).standard_normal((2, 3, T, D)).astype(dtype)
    cos, sin = F.rope_cache(D, 16, theta, dtype=dtype)
    compare(lambda t: F.apply_rope(t, cos, sin, layout=layout, offset=offset),
            lambda t: ref(t, theta, offset), [x], dtype, seed)


def test_rope_cache_values_and_errors():
    cos, sin = F.rope_cache(4, 3, theta=100.0)
    assert cos.dtype == np.float32 and cos.shape == (3, 2)
    np.testing.assert_allclose(sin[2], np.sin([2.0, 2.0 / 10.0]), rtol=1e-6)
    with pytest.raises(ValueError, match="exceed"):
        F.apply_rope(sl.randn(1, 1, 3, 4), cos, sin, offset=1)


# ------------------------------------------------------- GQA self-attention layer
class TorchGQA(torch.nn.Module):
    """Meta-style reference: separate wq/wk/wv/wo, repeat_kv, RoPE by complex multiply, causal."""

    def __init__(self, dim, n_heads, n_kv_heads, theta):
        super().__init__()
        self.n_heads, self.n_kv, self.hd, self.theta = n_heads, n_kv_heads, dim // n_heads, theta
        self.wq = torch.nn.Linear(dim, dim, bias=False)
        self.wk = torch.nn.Linear(dim, n_kv_heads * self.hd, bias=False)
        self.wv = torch.nn.Linear(dim, n_kv_heads * self.hd, bias=False)
        self.wo = torch.nn.Linear(dim, dim, bias=False)

    def forward(self, x):
        B, T, _ = x.shape
        q = self.wq(x).view(B, T, self.n_heads, self.hd).transpose(1, 2)
        k = self.wk(x).view(B, T, self.n_kv, self.hd).transpose(1, 2)
        v = self.wv(x).view(B, T, self.n_kv, self.hd).transpose(1, 2)
        q, k = meta_rope(q, self.theta, 0), meta_rope(k, self.theta, 0)
        rep = self.n_heads // self.n_kv
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(self.hd)
        att = att.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf")).softmax(-1)
        return self.wo((att @ v).transpose(1, 2).reshape(B, T, -1))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_heads,n_kv_heads", [(4, 4), (4, 2), (6, 1)])
def test_gqa_self_attention_layer(dtype, n_heads, n_kv_heads):
    torch.manual_seed(0)
    dim = 4 * n_heads
    ref = TorchGQA(dim, n_heads, n_kv_heads, 1e4).to(torch.float64 if dtype == np.float64 else torch.float32)
    ours = sl.nn.CausalSelfAttention(dim, n_heads, n_kv_heads, rope_theta=1e4, max_seq_len=32).to(dtype)
    ours.load_state_dict({k: v.detach().numpy() for k, v in ref.state_dict().items()})
    x = np.random.default_rng(1).standard_normal((2, 7, dim)).astype(dtype)
    compare(ours, ref, [x], dtype)
    compare_param_grads(ours, ref, dtype)


def test_sdpa_takes_plain_arrays_like_tensors():
    """q, k, v as NumPy arrays (as the course passes them) give what the same Tensors give."""
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((1, 2, 5, 8)).astype(np.float32) for _ in range(3))
    got = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    want = F.scaled_dot_product_attention(sl.Tensor(q), sl.Tensor(k), sl.Tensor(v), is_causal=True)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got.numpy(), want.numpy())
