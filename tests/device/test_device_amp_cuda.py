"""bfloat16 autocast on the GPU: uint16 bits, the conversion kernels, cuBLAS gemmEx, ``sl.amp``.

Collected only with SCRATCHLLM_TEST_CUDA=1 (conftest.py): on a GPU by scripts/gpu_check.sh, and
on any machine against the stand-in CuPy (tests/device/fakecupy, whose gemmEx reads and writes
the buffers through the pointers, leading dimensions and transpose flags it is given). Oracles:
the NumPy reference of the bit conversion (tests/device/test_bf16.py checks it against torch bit
for bit), float64 products of the decoded inputs, and torch.autocast(bfloat16) on the same GPU
(on the CPU where torch has no CUDA).

Tolerances, from the arithmetic rather than tuned: a product of two bfloat16s (8-bit significands)
is exact in float32, so a GEMM from the same rounded inputs differs from the float64 product only
by float32 summation, at most K * 2^-24 * sum_k |a_ik b_kj| (K terms). torch's autocast also
rounds its outputs (and the bias it adds) to bfloat16: half a unit in the last place, at most
u = 2^-8 of the value (bfloat16's unit roundoff, 8 significant bits); ours stay float32. Each
bound below is the sum of those terms, doubled.
"""
import cupy as cp
import numpy as np
import pytest

import scratchllm as sl
from scratchllm.kernels import cuda_kernels as ck
from scratchllm.models import GPT, GPTConfig
from scratchllm.nn import functional as F

FAKE = cp.__version__.endswith("fake")
try:
    import torch
    TORCH_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
except ImportError:
    torch = TORCH_DEVICE = None

EPS = 2.0 ** -24            # float32's unit roundoff
BF16_U = 2.0 ** -8          # bfloat16's unit roundoff (8 significant bits)


def _decode(bits):
    return ck.bf16_to_f32_reference(np.asarray(bits)).astype(np.float64)


def test_amp_bf16_conversion_kernels_equal_the_reference():
    rng = np.random.default_rng(0)
    f = np.finfo(np.float32)
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, f.max, -f.max, f.smallest_subnormal, 1e-40,
                        1 + 2 ** -8, 1 + 3 * 2 ** -8], np.float32)
    x = np.concatenate([rng.integers(0, 2 ** 32, 200_000, dtype=np.uint64).astype(np.uint32).view(np.float32),
                        special])
    got = ck.to_bf16(cp.asarray(x))
    assert isinstance(got, cp.ndarray) and got.dtype == np.uint16
    np.testing.assert_array_equal(got.get(), ck.bf16_reference(x))
    every = np.arange(2 ** 16, dtype=np.uint32).astype(np.uint16)
    back = ck.bf16_to_f32(cp.asarray(every))
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back.get().view(np.uint32), ck.bf16_to_f32_reference(every).view(np.uint32))
    if TORCH_DEVICE == "cuda":                       # torch's own GPU rounding, NaNs aside (their bits differ)
        ref = torch.tensor(x, device="cuda").to(torch.bfloat16).view(torch.int16).cpu().numpy().view(np.uint16)
        ok = ~np.isnan(x)
        np.testing.assert_array_equal(got.get()[ok], ref[ok])
    with pytest.raises(TypeError, match="float32"):
        ck.to_bf16(cp.ones(3, dtype=cp.float64))


@pytest.mark.parametrize("M,K,N", [(5, 37, 3), (64, 96, 48)])
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_amp_bf16_matmul_every_transpose(M, K, N, trans_a, trans_b):
    rng = np.random.default_rng(M + K + N)
    a = rng.standard_normal((K, M) if trans_a else (M, K)).astype(np.float32)
    b = rng.standard_normal((N, K) if trans_b else (K, N)).astype(np.float32)
    ab, bb = ck.bf16_reference(a), ck.bf16_reference(b)
    got = ck.matmul_bf16(cp.asarray(ab), cp.asarray(bb), trans_a=trans_a, trans_b=trans_b)
    assert got.dtype == np.float32 and got.shape == (M, N)
    A, B = _decode(ab), _decode(bb)
    A, B = (A.T if trans_a else A), (B.T if trans_b else B)
    bound = 2 * K * EPS * (np.abs(A) @ np.abs(B)) + 1e-30
    assert np.all(np.abs(got.get() - A @ B) <= bound)


def test_amp_bf16_matmul_refuses_bad_input():
    with pytest.raises(TypeError, match="uint16"):
        ck.matmul_bf16(cp.ones((2, 2), dtype=cp.float32), cp.ones((2, 2), dtype=cp.uint16))
    with pytest.raises(ValueError, match="inner sizes differ"):
        ck.matmul_bf16(cp.ones((2, 3), dtype=cp.uint16), cp.ones((2, 3), dtype=cp.uint16))


def _linear_ours(x, w, b, r, dtype):
    xs, ws, bs = (sl.Tensor(a, device="cuda", requires_grad=True) for a in (x, w, b))
    with sl.amp.autocast(dtype or "float16", enabled=dtype is not None):      # None: float32
        y = F.linear(xs, ws, bs)
    (y * sl.Tensor(r, device="cuda")).sum().backward()
    assert y.dtype == np.float32 and all(t.grad.dtype == np.float32 for t in (xs, ws, bs))
    return [t.numpy() for t in (y, xs.grad, ws.grad, bs.grad)]


def test_amp_bf16_linear_against_torch_autocast(monkeypatch):
    """sl.amp.autocast("bfloat16") F.linear forward and backward against torch.autocast(bfloat16)."""
    rng = np.random.default_rng(3)
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((2, 5, 64), (48, 64), (48,)))
    r = rng.standard_normal((2, 5, 48)).astype(np.float32)
    calls = _gemm_calls()
    y, dx, dw, db = _linear_ours(x, w, b, r, "bfloat16")
    if FAKE:
        assert _gemm_calls() - calls == 3                 # forward, dx, dw: each one gemmEx
    if TORCH_DEVICE == "cuda":     # split-K sums of bfloat16 outputs in float32, as the bound assumes
        monkeypatch.setattr(torch.backends.cuda.matmul, "allow_bf16_reduced_precision_reduction", False)
    tx, tw, tb = (torch.tensor(a, device=TORCH_DEVICE, requires_grad=True) for a in (x, w, b))
    with torch.autocast(TORCH_DEVICE, dtype=torch.bfloat16):
        ty = torch.nn.functional.linear(tx, tw, tb)
    assert ty.dtype == torch.bfloat16
    (ty.float() * torch.tensor(r, device=TORCH_DEVICE)).sum().backward()
    ref = [t.detach().float().cpu().numpy() for t in (ty, tx.grad, tw.grad, tb.grad)]
    xb, wb, gb = (_decode(ck.bf16_reference(a)) for a in (x.reshape(-1, 64), w, r.reshape(-1, 48)))
    sums = {"y": (np.abs(xb) @ np.abs(wb).T, 64), "dx": (np.abs(gb) @ np.abs(wb), 48),   # sum_k |a_ik b_kj|, K
            "dw": (np.abs(gb).T @ np.abs(xb), 10)}
    for name, got, want in zip(("y", "dx", "dw"), (y, dx, dw), ref):
        abs_sum, k = sums[name]
        got, want = got.reshape(abs_sum.shape), want.reshape(abs_sum.shape)
        bound = BF16_U * np.abs(want) + k * EPS * abs_sum + (BF16_U * np.abs(b) if name == "y" else 0)
        assert np.all(np.abs(got - want) <= 2 * bound), name
    # db: ours sums the float32 gradient, torch the bfloat16-rounded one (then rounds the sum)
    bound = BF16_U * (np.abs(r.reshape(-1, 48)).sum(0) + np.abs(ref[3]))
    assert np.all(np.abs(db - ref[3]) <= 2 * bound)
    plain = _linear_ours(x, w, b, r, None)
    assert not np.allclose(y, plain[0], rtol=1e-6, atol=0), "autocast did not round the inputs"


def _gemm_calls():
    if not FAKE:
        return 0
    from cupy_backends.cuda.libs import cublas
    return cublas.CALLS[0]


def test_amp_bf16_training_follows_float32_without_loss_scaling():
    """A few AdamW steps of GPT under autocast("bfloat16"), no GradScaler (bfloat16 has float32's
    exponent range), follow the float32 run. Linear's inputs carry up to 2^-8 relative rounding,
    random in sign, which the sums over 32-128 terms average down: the losses (~4.3) differ by
    ~3e-5 relative (stand-in CuPy); rtol 1e-3 leaves 30x room for 5 steps of AdamW drift on a GPU."""
    runs = {}
    for dtype in (None, "bfloat16"):
        sl.manual_seed(0)
        model = GPT(GPTConfig.from_preset("gpt-nano", vocab_size=71)).to("cuda")
        opt = sl.optim.AdamW(model.parameters(), lr=1e-3)
        rng = np.random.default_rng(7)
        losses = []
        for _ in range(5):
            ids = rng.integers(0, 71, (4, 33))
            with sl.amp.autocast(dtype or "float16", enabled=dtype is not None):
                _, loss = model(sl.Tensor(ids[:, :-1], device="cuda"), sl.Tensor(ids[:, 1:], device="cuda"))
            loss.backward()
            opt.step()
            opt.zero_grad()
            losses.append(loss.item())
        runs[dtype] = losses
    np.testing.assert_allclose(runs["bfloat16"], runs[None], rtol=1e-3)
    assert runs["bfloat16"] != runs[None]                  # the bfloat16 products did run
