"""The raw-array decoders (models/decode.py) compute the same logits as the Tensor forward.

Every config below runs a prompt, a multi-token chunk on a filled cache, then single tokens,
in float64 (tight tolerance) and float32, and compares each step's last-position logits with
``model(ids)`` over the whole sequence so far. HF equality of greedy ids through the fast
path is in test_hf_models.py (``generate`` uses it).
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import scratchllm as sl
from scratchllm.models import GPTConfig, build_model
from scratchllm.parallel import ThreadChooser, blas_thread_count, blas_threads
from scratchllm.models.decode import Decoder

from models.decoder_models import CONFIGS, random_model


def _model(name, dtype, seed=0):
    return random_model(CONFIGS[name], dtype, seed)


def _check_steps(model, ids, chunks, rtol, atol):
    """Feed ids (B, T) in ``chunks`` to a decoder; each step's logits == the full forward's."""
    dec = model.decoder(ids.shape[0], ids.shape[1])
    with sl.no_grad():
        full = model(ids).data                                           # (B, T, V)
    end = 0
    for n in chunks:
        got = dec.step(ids[:, end:end + n])
        end += n
        assert got.dtype == full.dtype and got.shape == (ids.shape[0], full.shape[-1])
        np.testing.assert_allclose(got, full[:, end - 1], rtol=rtol, atol=atol)
    assert dec.cache.pos == end


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("dtype, rtol, atol", [(np.float64, 1e-10, 1e-10), (np.float32, 1e-4, 1e-4)])
def test_decoder_steps_equal_full_forward(name, dtype, rtol, atol):
    model = _model(name, dtype)
    ids = np.random.default_rng(1).integers(0, 61, size=(2, 20))
    _check_steps(model, ids, [7, 5] + [1] * 8, rtol, atol)


@settings(max_examples=12, deadline=None)
@given(cuts=st.lists(st.integers(1, 6), min_size=1, max_size=8), batch=st.integers(1, 3),
       name=st.sampled_from(["gpt", "llama-gqa"]))
def test_any_chunking_equals_full_forward(cuts, batch, name):
    model = _model(name, np.float64)
    ids = np.random.default_rng(len(cuts)).integers(0, 61, size=(batch, sum(cuts)))
    _check_steps(model, ids, cuts, 1e-10, 1e-10)


@pytest.mark.parametrize("threads", ["auto", 1, None])
def test_every_thread_setting_gives_the_same_ids(threads, monkeypatch):
    model = _model("llama-gqa", np.float32)
    prompt = np.random.default_rng(2).integers(0, 61, size=(1, 5))
    monkeypatch.setattr(Decoder, "threads", threads)
    fast = model.generate(prompt, 30, temperature=0.0)
    slow = prompt
    with sl.no_grad():
        for _ in range(30):
            nxt = model(slow).data[:, -1].argmax(-1)[:, None]
            slow = np.concatenate([slow, nxt], axis=1)
    np.testing.assert_array_equal(fast, slow)


def test_generation_is_inference_even_in_training_mode():
    """One inference path: the decoder never applies dropout, so train mode generates as eval mode."""
    model = build_model(GPTConfig(vocab_size=61, block_size=40, n_layer=1, n_head=2, n_embd=16, dropout=0.1))
    prompt = np.array([[1, 2, 3]])
    assert isinstance(model.train().decoder(1, 8), Decoder)
    np.testing.assert_array_equal(model.train().generate(prompt, 6, temperature=0.0),
                                  model.eval().generate(prompt, 6, temperature=0.0))


def test_blas_threads_restores_the_count():
    before = blas_thread_count()
    with blas_threads(1):
        assert blas_thread_count() in (1, None)
    with blas_threads(None):
        assert blas_thread_count() == before
    assert blas_thread_count() == before


def test_thread_chooser_warms_up_both_arms_then_follows_the_faster():
    c = ThreadChooser(warmup=2, probe_every=4, keep=3)
    c.fixed = None                                  # choose even where BLAS has one thread here
    cost = {1: 0.001, None: 0.004}
    picks = []
    for _ in range(12):
        arm = c.pick()
        picks.append(arm)
        c.record(arm, cost[arm])
    assert sorted(picks[:4], key=str) == [1, 1, None, None]                 # both arms timed first
    assert picks[4:] == [None if (i + 5) % 4 == 0 else 1 for i in range(8)]  # probes every 4th call
    cost = {1: 0.010, None: 0.002}                  # the machine got quieter: two threads win now
    later = []
    for _ in range(12):
        later.append(c.pick())
        c.record(later[-1], cost[later[-1]])
    assert later[-4:] == [None if (c.calls - 3 + i) % 4 else 1 for i in range(4)]
