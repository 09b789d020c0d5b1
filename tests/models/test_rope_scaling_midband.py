"""Llama 3.1's scaled RoPE where it matters most: the mid band, whose frequencies are blended.

Llama 3.1 divides the long-wavelength frequencies by ``factor``, keeps the short ones, and in
between (``high_freq_wavelen <= wavelen <= low_freq_wavelen``) blends the two with a weight
``smooth``. A head dimension of 16 with theta 10,000 and original context 64 has wavelengths
6.3, 19.9, 62.8, 199, ...: two of them fall in the band [16, 64], so a wrong blend changes the
logits (a head dimension with no mid-band frequency would not notice).
"""
import math

import numpy as np
import torch

import scratchllm as sl
from scratchllm.models import Llama

from .model_helpers import hf_llama, hf_logits

SCALING = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
           "original_max_position_embeddings": 64}
KW = dict(seed=21, dim=64, n_heads=4, n_kv_heads=2, intermediate=128, theta=10000.0, max_pos=256,
          rope_scaling=SCALING)


def _mid_band(head_dim, theta, s):
    inv_freq = theta ** -(np.arange(0, head_dim, 2) / head_dim)
    wavelen = 2 * math.pi / inv_freq
    low, high = s["original_max_position_embeddings"] / np.array([s["low_freq_factor"], s["high_freq_factor"]])
    return (wavelen >= high) & (wavelen <= low)


def test_config_has_mid_band_frequencies():
    assert _mid_band(KW["dim"] // KW["n_heads"], KW["theta"], SCALING).sum() == 2


def test_scaled_rope_tables_equal_hf_inv_freq(tmp_path):
    hf = hf_llama(**KW)
    hf.save_pretrained(tmp_path)
    model = sl.load_model(tmp_path)
    T = 200
    cos, sin = hf.model.rotary_emb(torch.zeros(1, dtype=torch.float32), torch.arange(T)[None])
    half = model.config.head_dim // 2
    ours_cos, ours_sin = model.rope
    np.testing.assert_allclose(ours_cos[:T], cos[0, :, :half].numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ours_sin[:T], sin[0, :, :half].numpy(), rtol=1e-4, atol=1e-4)


def test_scaled_rope_logits_equal_hf_with_mid_band(tmp_path):
    hf = hf_llama(**KW)
    hf.save_pretrained(tmp_path)
    model = sl.load_model(tmp_path)
    assert isinstance(model, Llama) and model.config.rope_scaling is not None
    ids = np.random.default_rng(5).integers(0, hf.config.vocab_size, size=(2, 200))
    ref = hf_logits(hf, ids)
    assert ref.std() > 0.5
    np.testing.assert_allclose(model(ids).numpy(), ref, rtol=1e-4, atol=1e-4)
