"""qkv_attention (fused split + multi-head attention from a packed (B, T, 3C) projection) against torch."""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings, strategies as st

import scratchllm as sl
from scratchllm.nn import functional as F

from ._helpers import DTYPES, compare

FAST = settings(max_examples=10, deadline=None)


def torch_qkv_attention(qkv, n_head, is_causal=True):
    B, T, C3 = qkv.shape
    C = C3 // 3
    q, k, v = (t.reshape(B, T, n_head, C // n_head).transpose(1, 2) for t in qkv.split(C, dim=2))
    y = TF.scaled_dot_product_attention(q, k, v, is_causal=is_causal)
    return y.transpose(1, 2).reshape(B, T, C)


@pytest.mark.parametrize("dtype", DTYPES)
@FAST
@given(B=st.integers(1, 2), H=st.integers(1, 3), T=st.integers(1, 9), D=st.integers(1, 4),
       causal=st.booleans(), seed=st.integers(0, 99))
def test_qkv_attention_small_shapes(dtype, B, H, T, D, causal, seed):
    x = np.random.default_rng(seed).standard_normal((B, T, 3 * H * D)).astype(dtype)
    compare(lambda a: F.qkv_attention(a, H, is_causal=causal),
            lambda a: torch_qkv_attention(a, H, is_causal=causal), [x], dtype, seed)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("T", [128, 130, 200, 256])
def test_qkv_attention_causal_row_blocks(dtype, T):
    """T >= 128 takes the blocked causal path (row blocks that skip the masked keys)."""
    x = np.random.default_rng(T).standard_normal((2, T, 3 * 2 * 3)).astype(dtype)
    compare(lambda a: F.qkv_attention(a, 2), lambda a: torch_qkv_attention(a, 2), [x], dtype, T)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("T", [9, 200])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("scale", [1.0, 6.0])
def test_qkv_attention_large_and_small_scores(dtype, T, causal, scale):
    """Scores known to lie in (-80, 80) skip softmax's max shift; larger ones (scale 6 makes
    the bound |q| |k| pass 80) take the max-shifted path. Both vs torch."""
    x = np.random.default_rng(T).standard_normal((2, T, 3 * 2 * 4)).astype(dtype) * scale
    from scratchllm.nn.functional.attention import _bounded
    q = x[..., :8].reshape(2, T, 2, 4).transpose(0, 2, 1, 3) * 0.5          # scale 1/sqrt(4)
    k = x[..., 8:16].reshape(2, T, 2, 4).transpose(0, 2, 1, 3)
    assert _bounded(q, k) == (scale == 1.0)                                  # both paths are taken
    compare(lambda a: F.qkv_attention(a, 2, is_causal=causal),
            lambda a: torch_qkv_attention(a, 2, is_causal=causal), [x], dtype, T)


@pytest.mark.parametrize("dtype", DTYPES)
def test_qkv_attention_dropout_matches_sdpa(dtype):
    """With dropout the op draws the same mask as scaled_dot_product_attention on the same generator."""
    B, T, H, D, p = 2, 5, 2, 3, 0.3
    x = np.random.default_rng(0).standard_normal((B, T, 3 * H * D)).astype(dtype)
    g = np.random.default_rng(1).standard_normal((B, T, H * D)).astype(dtype)
    a = sl.Tensor(x, requires_grad=True)
    ours = F.qkv_attention(a, H, dropout_p=p, generator=sl.Generator(7))
    ours.backward(g)
    b = sl.Tensor(x, requires_grad=True)
    q, k, v = (t.reshape(B, T, H, D).transpose(1, 2) for t in (b[..., :H * D], b[..., H * D:2 * H * D], b[..., 2 * H * D:]))
    ref = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True, generator=sl.Generator(7))
    ref = ref.transpose(1, 2).reshape(B, T, H * D)
    ref.backward(g)
    np.testing.assert_allclose(ours.data, ref.data, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)
    np.testing.assert_allclose(a.grad.data, b.grad.data, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)


def test_qkv_attention_rejects_bad_shapes():
    with pytest.raises(ValueError, match="qkv_attention"):
        F.qkv_attention(np.zeros((2, 3, 10), dtype=np.float32), 2)
