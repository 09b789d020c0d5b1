"""int8 (Q8_0) generation: the product equals llama2.c runq's integer arithmetic exactly (numba
loop and NumPy path), and greedy ids on the real stories260K model match float32's."""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import scratchllm as sl
from scratchllm.errors import ScratchLLMError
from scratchllm.models.quant import GROUP, Q8Rows, Q8Weight, quantize_groups, set_generation_quant, weight_bytes

S260 = os.path.join(os.path.dirname(__file__), "..", "data", "stories260K")
MODEL, TOK = os.path.join(S260, "stories260K.bin"), os.path.join(S260, "tok512.bin")


def runq_quantize(x):
    """llama2.c runq.c ``quantize``: per group of 32, scale = max|x| / 127, q = (int8) round(x / scale)."""
    x = np.asarray(x, dtype=np.float32)
    pad = -x.size % GROUP
    x = np.concatenate([x, np.zeros(pad, np.float32)])
    q, s = [], []
    for g in x.reshape(-1, GROUP):
        scale = np.float32(np.abs(g).max() / np.float32(127))
        s.append(scale)
        q += [0 if scale == 0 else int(np.sign(v) * np.floor(abs(np.float32(v / scale)) + 0.5)) for v in g]
    return np.array(q, np.int64), np.array(s, np.float32)


def runq_matmul(x, w):
    """runq.c ``matmul``: int32 dot per group, ``val += ival * w.s * x.s`` in float32, row by row."""
    xq, xs = runq_quantize(x)
    out = []
    for row in w:
        wq, ws = runq_quantize(row)
        val = np.float32(0)
        for g in range(len(xs)):
            ival = int(np.dot(xq[g * GROUP:(g + 1) * GROUP], wq[g * GROUP:(g + 1) * GROUP]))
            val = np.float32(val + np.float32(ival) * ws[g] * xs[g])
        out.append(val)
    return np.array(out, np.float32)


@pytest.mark.parametrize("path", ["numba", "numpy"])
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n_in=st.integers(1, 100), n_out=st.integers(1, 9), seed=st.integers(0, 2**16))
def test_q8_product_is_runq_arithmetic(monkeypatch, path, n_in, n_out, seed):
    monkeypatch.setenv("SCRATCHLLM_KERNELS", path)
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((n_out, n_in)).astype(np.float32)
    x = rng.standard_normal((2, n_in)).astype(np.float32)
    x[1, : min(n_in, GROUP)] = 0.0                             # an all-zero group: scale 0
    q8 = Q8Weight.quantize(w)
    y = x @ q8                                                  # the decoders' ``x @ wt``
    for n in range(2):
        np.testing.assert_array_equal(y[n], runq_matmul(x[n], w))
    np.testing.assert_array_equal(q8.matmul(x, bias=np.ones(n_out, np.float32)), y + 1)


def test_quantize_groups_bounds_and_dequantize():
    w = np.random.default_rng(0).standard_normal((5, 70)).astype(np.float32)
    q, s = quantize_groups(w)
    assert q.dtype == np.int8 and q.shape == (5, 96) and s.shape == (5, 3) and np.abs(q).max() == 127
    deq = Q8Weight.quantize(w).dequantize()
    assert deq.shape == w.shape
    assert np.all(np.abs(deq - w) <= np.repeat(s, GROUP, axis=1)[:, :70] / 2 + 1e-7)


def test_numba_path_is_the_kernel(monkeypatch):
    from scratchllm.models import quant
    monkeypatch.setenv("SCRATCHLLM_KERNELS", "numba")
    assert quant._kernel() is not None
    monkeypatch.setenv("SCRATCHLLM_KERNELS", "numpy")
    assert quant._kernel() is None


def test_int8_greedy_ids_match_float32_on_stories260k():
    model, tok = sl.load_model(MODEL), sl.load_tokenizer(TOK)
    ids = tok.encode("Once upon a time", bos=True)
    fp32 = model.generate(ids, max_new_tokens=60, temperature=0)[0]    # (they part at new token 67)
    set_generation_quant(model, "q8_0")
    int8 = model.generate(ids, max_new_tokens=60, temperature=0)[0]
    assert fp32.tolist() == int8.tolist()
    dec = model.decoder(1, 8)
    assert isinstance(dec.head_weight, Q8Weight) and isinstance(dec.tok, Q8Rows)
    np.testing.assert_allclose(dec.tok[np.array([5, 7])], model.tok_embeddings.weight.data[[5, 7]], atol=0.02)
    set_generation_quant(model, None)
    assert weight_bytes(dec) * 3.4 < weight_bytes(model.decoder(1, 8))      # 1.125 vs 4 bytes a value


def test_int8_gpt_decoder_logits_close_to_float32():
    from scratchllm.models import build_model
    from scratchllm.models.config import GPTConfig
    model = build_model(GPTConfig(vocab_size=97, block_size=32, n_layer=2, n_head=2, n_embd=64))
    ids = np.array([[3, 14, 15, 92, 65, 35]])
    ref = model.decoder(1, 16).step(ids)
    set_generation_quant(model, "q8_0")
    got = model.decoder(1, 16).step(ids)
    assert np.abs(got - ref).max() < 0.02 * np.abs(ref).max()
    with pytest.raises(ScratchLLMError, match="q8_0"):
        set_generation_quant(model, "q4")


def test_generate_cli_quantize_flag(capsys):
    from scratchllm.cli import main
    cmd = ["generate", "--model", MODEL, "--tokenizer", TOK, "--prompt", "Once upon a time", "--temperature", "0",
           "--max-new-tokens", "30"]
    assert main(cmd) == 0
    fp32 = capsys.readouterr().out
    assert main(cmd + ["--quantize", "q8_0"]) == 0
    int8 = capsys.readouterr().out
    assert int8 == fp32 and fp32.startswith("Once upon a time, there was a little girl named Lily.")
