"""scratchllm.kernels: the kernel-backed ops on both code paths, against torch.

The ``mode`` fixture runs a test with SCRATCHLLM_KERNELS=numpy and with =numba and checks that
path is the one active; ``calls`` counts the numba kernels an op really called, so each test also
checks when an op falls back to NumPy (float64 GELU, mixed dtypes, amsgrad). The multi-core bits
of both paths are tested in tests/nn/test_threaded_paths.py.
"""
import collections
import sys
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import HealthCheck, assume, example, given, settings, strategies as st

import scratchllm as sl
from scratchllm import kernels as K
from scratchllm.io.hf import gpt2_config, gpt2_state
from scratchllm.models import GPT
from scratchllm.nn import functional as F

from models.model_helpers import hf_gpt2
from nn._helpers import DTYPES, assert_close, compare
from nn.test_packed_attention import torch_qkv_attention

MODES = ["numpy", "numba"]
KERNELS = ["norm_forward", "norm_backward", "adam_update",
           "gelu_tanh_forward", "gelu_tanh_backward", "softmax_rows", "rope_rotate",
           "scatter_add_rows", "relu2_forward", "relu2_backward"]
# the mode fixture must hold for every example of a test: its env var stays set throughout.
FAST = settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
lead_dims = st.lists(st.integers(1, 4), max_size=3).map(tuple)     # (): a single row


def use_kernels(monkeypatch, mode):
    monkeypatch.setenv("SCRATCHLLM_KERNELS", mode)
    assert K.name() == mode


@pytest.fixture(params=MODES)
def mode(request, monkeypatch):
    """The test runs once per code path: SCRATCHLLM_KERNELS=numpy, then =numba."""
    if request.param == "numba":
        pytest.importorskip("numba")
    use_kernels(monkeypatch, request.param)
    return request.param


@pytest.fixture
def calls(monkeypatch):
    """A Counter of the numba kernels called (by name) while the test runs."""
    counts, nk = collections.Counter(), K._load()

    def counted(name, fn):
        def wrapper(*args):
            counts[name] += 1
            return fn(*args)
        return wrapper

    for name in KERNELS if nk is not None else []:
        monkeypatch.setattr(nk, name, counted(name, getattr(nk, name)))
    return counts


def check_path(calls, compiled):
    """The op ran the numba kernels if ``compiled``, else none of them (then the count restarts)."""
    assert bool(calls) == compiled, f"numba kernels called: {dict(calls)}"
    calls.clear()


def rand(rng, shape, dtype, scale=1.0, shift=0.0):
    return (rng.standard_normal(shape) * scale + shift).astype(dtype)


def in_float64(torch_fn):
    """torch_fn computed in float64, returned in the input's dtype: the oracle where torch's own
    float32 rounding is the larger error (layer_norm, D = 1: xhat, dx and dw are exactly 0, ours
    too; torch float32's dw is ~1e-6, over the 1e-4 * 1e-2 floor of ``assert_close``)."""
    return lambda x, *p: torch_fn(x.double(), *(q.double() for q in p)).to(x.dtype)


OPS = {  # name: (ours, torch's, number of (D,) parameters after x); over the last dim of x
    "layer_norm": (lambda x, *p: F.layer_norm(x, x.shape[-1], *p),
                   lambda x, *p: TF.layer_norm(x, x.shape[-1:], *p), 2),
    "rms_norm": (lambda x, *p: F.rms_norm(x, x.shape[-1], *p, eps=1e-6),
                 lambda x, *p: TF.rms_norm(x, x.shape[-1:], *p, eps=1e-6), 1),
    "gelu": (lambda x: F.gelu(x, approximate="tanh"), lambda x: TF.gelu(x, approximate="tanh"), 0),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("affine", ["both", "weight", "none"])
@FAST
@given(lead=lead_dims, d=st.integers(1, 9), seed=st.integers(0, 99))
@example(lead=(), d=1, seed=0)                                        # N = 1, D = 1
def test_layer_norm(mode, calls, dtype, affine, lead, d, seed):
    """D = 2 is float64 only: the output is +-w + b whatever x (up to eps), so the exact dx is
    eps-sized and float32 gives rounding noise (torch float32's more than ours)."""
    assume(d != 2 or dtype == np.float64)
    rng = np.random.default_rng(seed)
    n_params = {"both": 2, "weight": 1, "none": 0}[affine]
    arrays = [rand(rng, lead + (d,), dtype, 3.0, 1.0)] + [rand(rng, (d,), dtype) for _ in range(n_params)]
    compare(OPS["layer_norm"][0], in_float64(OPS["layer_norm"][1]), arrays, dtype, seed + 1)
    check_path(calls, mode == "numba")


@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_norm_near_constant_rows(mode, calls, dtype):
    """Rows a few ulps wide far from 0 ([128.05922] * 9 among them): the rounding of the mean,
    times rstd ~ 1/sqrt(eps), was 0.01 in the float32 outputs. Both paths centre twice (the
    kernel through memory: LLVM's reassociation would fold the second pass away)."""
    rng = np.random.default_rng(7)
    a = rng.uniform(-1e4, 1e4, size=(6, 1)).astype(dtype)
    x = (a + rng.integers(-3, 4, size=(6, 9)) * np.spacing(a)).astype(dtype)   # (6, 9)
    x[0] = 128.05922
    compare(OPS["layer_norm"][0], in_float64(OPS["layer_norm"][1]),
            [x, rand(rng, (9,), dtype), rand(rng, (9,), dtype)], dtype)
    check_path(calls, mode == "numba")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weight", [True, False])
@FAST
@given(lead=lead_dims, d=st.integers(1, 9), seed=st.integers(0, 99), eps=st.sampled_from([None, 1e-6]))
@example(lead=(), d=1, seed=0, eps=None)
def test_rms_norm(mode, calls, dtype, weight, lead, d, seed, eps):
    """D = 1 is float64 only, as D = 2 for layer_norm: the output is +-w whatever x (up to eps)."""
    assume(d != 1 or dtype == np.float64)
    rng = np.random.default_rng(seed)
    arrays = [rand(rng, lead + (d,), dtype, 2.0)] + ([rand(rng, (d,), dtype)] if weight else [])
    compare(lambda x, *w: F.rms_norm(x, d, *w, eps=eps), lambda x, *w: TF.rms_norm(x, (d,), *w, eps=eps),
            arrays, dtype, seed + 1)
    check_path(calls, mode == "numba")


@pytest.mark.parametrize("dtype", DTYPES)
@FAST
@given(shape=st.lists(st.integers(1, 6), max_size=3).map(tuple), seed=st.integers(0, 99))
@example(shape=(), seed=0)                                            # 0-d
def test_gelu_tanh(mode, calls, dtype, shape, seed):
    """Float32 only runs the kernel; float64 keeps the NumPy code in both modes."""
    compare(*OPS["gelu"][:2], [rand(np.random.default_rng(seed), shape, dtype, 3.0)], dtype, seed + 1)
    check_path(calls, mode == "numba" and dtype == np.float32)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(OPS))
def test_transposed_input(mode, calls, name, dtype):
    rng = np.random.default_rng(4)
    x = rand(rng, (24, 37), dtype, 2.0, 0.5).T                        # (37, 24), not contiguous
    assert not x.flags.c_contiguous
    ours, theirs, n_params = OPS[name]
    compare(ours, theirs, [x] + [rand(rng, (24,), dtype) for _ in range(n_params)], dtype)
    check_path(calls, mode == "numba" and (name != "gelu" or dtype == np.float32))


@pytest.mark.parametrize("x_dtype,w_dtype", [(np.float32, np.float64), (np.float64, np.float32)])
@pytest.mark.parametrize("name", ["layer_norm", "rms_norm"])
def test_norm_weight_of_other_dtype(mode, calls, name, x_dtype, w_dtype):
    """The NumPy code runs, with torch's dtypes: output and dx in x's dtype, dw and db in the
    weight's. Oracle: torch in float64 (its layer_norm refuses mixed dtypes)."""
    ours_fn, torch_fn, n_params = OPS[name]
    rng = np.random.default_rng(5)
    arrays = [rand(rng, (6, 10), x_dtype, 3.0)] + [rand(rng, (10,), w_dtype) for _ in range(n_params)]
    ts = [sl.Tensor(a, requires_grad=True) for a in arrays]
    tt = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    out, ref = ours_fn(*ts), torch_fn(*tt)
    g = rand(rng, ref.shape, x_dtype)
    out.backward(g)
    ref.backward(torch.tensor(g, dtype=torch.float64))
    check_path(calls, False)
    assert_close(out, ref, x_dtype, "output")
    for i, (a, b) in enumerate(zip(ts, tt)):
        assert_close(a.grad, b.grad, arrays[i].dtype.type, f"grad of input {i}")


def _torch_gelu(x, dtype):
    t = torch.tensor(x, dtype=dtype, requires_grad=True)
    y = TF.gelu(t, approximate="tanh")
    y.backward(torch.ones_like(y))
    return y.detach().numpy(), t.grad.numpy()


def test_gelu_kernel_accuracy(monkeypatch, calls):
    """The float32 kernel (a sigmoid with its own exp) over [-12, 12] and special values: at most
    2x torch float32's max abs error (both against torch float64), and torch's infs and nans."""
    pytest.importorskip("numba")
    use_kernels(monkeypatch, "numba")
    x = np.concatenate([np.linspace(-12, 12, 200_001), [-np.inf, np.inf, np.nan, -0.0, 1e-30, -1e30]])
    x = x.astype(np.float32)
    t = sl.Tensor(x, requires_grad=True)
    y = F.gelu(t, approximate="tanh")
    y.backward(np.ones_like(x))
    check_path(calls, True)
    for what, ours, t32, t64 in zip(["gelu", "gradient"], [y.numpy(), t.grad.numpy()],
                                    _torch_gelu(x, torch.float32), _torch_gelu(x, torch.float64)):
        np.testing.assert_array_equal(np.isnan(ours), np.isnan(t32), err_msg=f"{what}: nan")
        np.testing.assert_array_equal(np.isinf(ours), np.isinf(t32), err_msg=f"{what}: inf")
        np.testing.assert_array_equal(ours[np.isinf(ours)], t32[np.isinf(t32)], err_msg=f"{what}: inf signs")
        finite = np.isfinite(t32) & np.isfinite(t64)
        err = np.abs(ours[finite] - t64[finite]).max()
        torch_err = np.abs(t32[finite] - t64[finite]).max()
        assert err <= 2 * torch_err, f"{what}: max abs error {err:.3g}, torch float32's {torch_err:.3g}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("T,causal,scale", [(1, True, 1.0), (9, True, 1.0), (9, False, 6.0),
                                            (130, True, 1.0), (200, True, 6.0), (64, False, 1.0)])
def test_qkv_attention(mode, calls, dtype, T, causal, scale):
    """Float32 runs the compiled softmax (row max shift, causal zeros; T >= 128: causal row
    blocks, each row seeing r0 + i + 1 keys); scale 6 makes scores leave (-80, 80), where the
    NumPy code needs its max shift."""
    x = rand(np.random.default_rng(T), (2, T, 3 * 2 * 4), dtype, scale)
    compare(lambda a: F.qkv_attention(a, 2, is_causal=causal),
            lambda a: torch_qkv_attention(a, 2, is_causal=causal), [x], dtype, T)
    check_path(calls, mode == "numba" and dtype == np.float32)


ADAM_SHAPES = [(7, 5), (13,), (2, 3, 4), (1,)]
ADAM_CASES = [(opt, wd, maximize) for opt in ["Adam", "AdamW"] for wd in [0.0, 0.1] for maximize in [False, True]]
ADAM_STEPS = 4


def _train(lib, opt, dtype, **kw):
    """Parameters and moments (by name) after ADAM_STEPS of ``lib.optim.<opt>`` on seeded gradients."""
    rng = np.random.default_rng(3)
    tensor = sl.Tensor if lib is sl else torch.tensor
    params = [rand(rng, s, dtype) for s in ADAM_SHAPES]
    params = [sl.nn.Parameter(a) if lib is sl else torch.tensor(a, requires_grad=True) for a in params]
    o = getattr(lib.optim, opt)(params, lr=0.01, **kw)
    for _ in range(ADAM_STEPS):
        for p in params:
            p.grad = tensor(rand(rng, tuple(p.shape), dtype))
        o.step()
    out, as_array = {}, (lambda t: t.detach().numpy().copy()) if lib is torch else np.array
    for i, p in enumerate(params):
        out[f"{i}.param"] = as_array(p.data)
        out.update({f"{i}.{k}": as_array(v) for k, v in o.state[p].items() if k != "step"})
    return out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("opt,weight_decay,maximize", ADAM_CASES)
def test_adam_matches_torch(mode, calls, opt, weight_decay, maximize, amsgrad, dtype):
    """Tolerances of tests/optim; amsgrad keeps the NumPy code in both modes."""
    kw = dict(weight_decay=weight_decay, maximize=maximize, amsgrad=amsgrad)
    ours, ref = _train(sl, opt, dtype, **kw), _train(torch, opt, dtype, **kw)
    check_path(calls, mode == "numba" and not amsgrad)
    rtol, atol = {np.float64: (1e-6, 1e-12), np.float32: (1e-4, 1e-6)}[dtype]
    assert sorted(ours) == sorted(ref)
    for k, a in ours.items():
        assert a.dtype == dtype, k
        np.testing.assert_allclose(a, ref[k], rtol=rtol, atol=atol, err_msg=k)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opt,weight_decay,maximize", ADAM_CASES)
def test_adam_numba_bits_equal_numpy(monkeypatch, calls, opt, weight_decay, maximize, dtype):
    pytest.importorskip("numba")
    runs = {}
    for m in MODES:
        use_kernels(monkeypatch, m)
        runs[m] = _train(sl, opt, dtype, weight_decay=weight_decay, maximize=maximize)
    assert calls["adam_update"] == ADAM_STEPS * len(ADAM_SHAPES)
    for k, a in runs["numpy"].items():
        assert np.array_equal(a, runs["numba"][k]), k


def test_kernels_follow_the_env_var(monkeypatch):
    nk = pytest.importorskip("scratchllm.kernels.numba_kernels")
    for value, expected in [("numpy", None), ("numba", nk), ("auto", nk)]:
        monkeypatch.setenv("SCRATCHLLM_KERNELS", value)
        assert K.kernels() is expected, value
    monkeypatch.delenv("SCRATCHLLM_KERNELS")
    assert K.kernels() is nk and K.name() == "numba"


def test_numba_required_but_missing(monkeypatch):
    """Without numba: auto falls back to NumPy; SCRATCHLLM_KERNELS=numba is an error that says so."""
    monkeypatch.setattr(K, "_load", lambda: None)
    monkeypatch.delenv("SCRATCHLLM_KERNELS", raising=False)
    assert K.kernels() is None and K.name() == "numpy"
    monkeypatch.setenv("SCRATCHLLM_KERNELS", "numba")
    with pytest.raises(ImportError, match="SCRATCHLLM_KERNELS"):
        K.kernels()
    with pytest.raises(ImportError, match="SCRATCHLLM_KERNELS"):              # and so is using an op
        F.layer_norm(sl.Tensor(np.ones((2, 3), np.float32)), 3)


CONV1D = ("c_attn.weight", "c_proj.weight", "c_fc.weight")  # HF's (in, out) weights


def test_gpt_forward_backward_matches_torch(mode, calls):
    """A tiny float32 GPT-2: logits, loss and every parameter's gradient equal HF's (rtol 1e-4)."""
    hf = hf_gpt2(seed=8)
    config = gpt2_config(hf.config.to_dict(), "cfg")
    state, names = gpt2_state({k: v.numpy() for k, v in hf.state_dict().items()}, config)
    ours = GPT(config)
    ours.load_state_dict(state)
    ids, targets = np.random.default_rng(0).integers(0, config.vocab_size, size=(2, 2, 20))
    logits, loss = ours(ids, targets)
    loss.backward()
    ref_logits = hf(torch.as_tensor(ids)).logits
    ref_loss = TF.cross_entropy(ref_logits.flatten(0, 1), torch.as_tensor(targets).flatten())
    ref_loss.backward()
    check_path(calls, mode == "numba")
    assert_close(logits, ref_logits, np.float32, "logits")
    assert_close(loss, ref_loss, np.float32, "loss")
    ref_grads = {k: p.grad for k, p in hf.named_parameters()}
    assert len(ref_grads) == len(dict(ours.named_parameters()))
    for name, p in ours.named_parameters():
        g = ref_grads[names[name]]
        assert_close(p.grad, g.T if name.endswith(CONV1D) else g, np.float32, name)


class _Refuse:
    """A meta-path finder that fails the import of one module with a given error."""

    def __init__(self, name, error):
        self.name, self.error = name, error

    def find_spec(self, fullname, path=None, target=None):
        if fullname == self.name:
            raise self.error
        return None


@pytest.mark.parametrize("error,warns", [(ImportError("no numba"), False),
                                         (RuntimeError("cannot cache function: no locator"), True)])
def test_kernels_that_cannot_load_fall_back_to_numpy(monkeypatch, error, warns):
    """numba missing: NumPy quietly; numba present but unusable (no cache folder): NumPy, with a warning."""
    name = "scratchllm.kernels.numba_kernels"
    monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.delattr(K, "numba_kernels", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_Refuse(name, error)] + sys.meta_path)
    monkeypatch.delenv("SCRATCHLLM_KERNELS", raising=False)
    K._load.cache_clear()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert K.kernels() is None and K.name() == "numpy"
        messages = [str(w.message) for w in caught]
        assert any("numba is installed" in m for m in messages) if warns else not messages, messages
        x = sl.Tensor(np.ones((2, 3), np.float32), requires_grad=True)
        F.layer_norm(x, 3).sum().backward()                          # the NumPy code runs
    finally:
        K._load.cache_clear()


@pytest.mark.parametrize("layout", ["half", "interleaved"])
@pytest.mark.parametrize("grouped", [False, True])
def test_rope_kernel_bits_equal_numpy_and_torch(mode, calls, layout, grouped):
    """RoPE forward and backward: the numba loop gives the NumPy code's bits; both match torch."""
    from scratchllm.nn.functional.recipe import rope_heads_last
    from scratchllm.nn.functional.rope import apply_rope, rope_cache, rope_rotate_reference
    rng = np.random.default_rng(7)
    B, T, G, D = 2, 9, 6, 8
    cos, sin = rope_cache(D, 16, 10000.0)
    x = rng.standard_normal((B, T, G, D) if grouped else (B, G, T, D)).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    t = sl.Tensor(x, requires_grad=True)
    y = rope_heads_last(t, cos, sin, layout) if grouped else apply_rope(t, cos, sin, layout)
    y.backward(sl.Tensor(g))
    c, s = (cos[:T, None], sin[:T, None]) if grouped else (cos[:T], sin[:T])
    assert np.array_equal(y.numpy(), rope_rotate_reference(x, c, s, layout))      # same bits on both paths
    assert np.array_equal(t.grad.numpy(), rope_rotate_reference(g, c, -s, layout))
    assert calls["rope_rotate"] == (2 if mode == "numba" else 0)
    # torch: rotate pairs by the same angles, float64
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    ct, st_ = torch.tensor(c, dtype=torch.float64), torch.tensor(s, dtype=torch.float64)
    a, b = (xt[..., :D // 2], xt[..., D // 2:]) if layout == "half" else (xt[..., 0::2], xt[..., 1::2])
    ra, rb = a * ct - b * st_, a * st_ + b * ct
    yt = torch.cat([ra, rb], -1) if layout == "half" else torch.stack([ra, rb], -1).flatten(-2)
    yt.backward(torch.tensor(g, dtype=torch.float64))
    assert_close(y.numpy(), yt.detach().numpy(), np.float32)
    assert_close(t.grad.numpy(), xt.grad.numpy(), np.float32)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_ids, vocab", [(10, 3), (300, 65), (2048, 65)])   # np.add.at / sorted runs
def test_embedding_scatter_add_bits_equal_numpy_and_torch(monkeypatch, mode, calls, dtype, n_ids, vocab):
    """The embedding's backward: the numba loop adds each id's rows in the NumPy code's order
    (the same bits); both match torch's embedding backward."""
    from scratchllm.nn.functional.embedding import _scatter_add_rows
    rng = np.random.default_rng(3)
    ids = np.minimum(rng.zipf(1.3, n_ids), vocab) - 1                  # heavy repeats, as characters
    rows = rng.standard_normal((n_ids, 16)).astype(dtype)
    w = sl.Tensor(np.zeros((vocab, 16), dtype), requires_grad=True)
    F.embedding(ids, w).backward(sl.Tensor(rows))
    assert calls["scatter_add_rows"] == (1 if mode == "numba" else 0)
    use_kernels(monkeypatch, "numpy")
    plain = np.zeros((vocab, 16), dtype)
    _scatter_add_rows(plain, ids, rows)
    assert np.array_equal(w.grad.numpy(), plain)                          # same bits on both paths
    wt = torch.zeros((vocab, 16), dtype=torch.float64, requires_grad=True)
    TF.embedding(torch.tensor(ids), wt).backward(torch.tensor(rows, dtype=torch.float64))
    assert_close(w.grad.numpy(), wt.grad.numpy(), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [7, 1 << 20])                                  # one range / the pool's ranges
def test_relu2_kernel_bits_equal_numpy_and_torch(mode, calls, dtype, n):
    """ReLU² forward and backward: the numba loops give the NumPy passes' bits (NaN, -0 and inf
    included); both match torch's relu(x) ** 2."""
    from scratchllm.nn.functional.recipe import relu2
    rng = np.random.default_rng(5)
    x = (rng.standard_normal(n) * 3).astype(dtype)
    x[:5] = [np.nan, -0.0, 0.0, np.inf, -np.inf]
    g = rng.standard_normal(n).astype(dtype)
    t = sl.Tensor(x, requires_grad=True)
    y = relu2(t)
    y.backward(sl.Tensor(g))
    assert calls["relu2_forward"] == calls["relu2_backward"] == (0 if mode == "numpy" else (1 if n == 7 else 8))
    r = np.maximum(x, 0)
    np.testing.assert_array_equal(y.numpy(), r * r)                        # NumPy's passes, bit for bit
    np.testing.assert_array_equal(t.grad.numpy(), np.multiply(r, 2, dtype=dtype) * g)
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    (torch.relu(xt) ** 2).backward(torch.tensor(g, dtype=torch.float64))
    fin = np.isfinite(x)
    assert_close(y.numpy()[fin], (torch.relu(xt) ** 2).detach().numpy()[fin], dtype)
    assert_close(t.grad.numpy()[fin], xt.grad.numpy()[fin], dtype)
