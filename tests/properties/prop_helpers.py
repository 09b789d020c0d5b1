"""Drawn arrays (values and shapes) and a torch comparison that understands nan and inf.
(A uniquely named module, imported by absolute name: tests/properties is not a package.)"""
import numpy as np
import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import scratchllm as sl

RTOL = {np.float64: 1e-7, np.float32: 1e-4}
# derandomized: the same examples on every run, so CI never flakes on a newly drawn one
PROPS = settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])

# values near float32's exp overflow (88.72) and float64's (709.78), and near the largest floats
EDGES = [88.0, 88.7, 89.0, -87.3, -104.0, 709.0, 710.0, 1e30, -1e30, 3e38, -3e38, 1e-40, -0.0]


def floats(dtype, lo=-1e3, hi=1e3, nonfinite=False, edges=True):
    """Elements: values in [lo, hi] (subnormals among them), the ``EDGES`` (all of them, or only
    those in [lo, hi] with ``edges="in-range"``; none with False) and, optionally, nan and inf."""
    width = 32 if dtype == np.float32 else 64
    parts = [st.floats(lo, hi, width=width)]
    if edges:
        chosen = [e for e in EDGES if edges != "in-range" or lo <= e <= hi]
        parts.append(st.sampled_from([float(np.asarray(e, dtype)) for e in chosen]))
    if nonfinite:
        parts.append(st.sampled_from([np.nan, np.inf, -np.inf]))
    return st.one_of(*parts)


def arrays(dtype, shape, **kw):
    return hnp.arrays(dtype, shape, elements=floats(dtype, **kw))


def shapes(min_dims=1, max_dims=3, min_side=0, max_side=4):
    """Shapes with empty (0) and size-1 dimensions among them."""
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side)


def assert_same(ours, ref, dtype, what=""):
    """nan where torch has nan, the same infs, finite values at rtol 1e-7 / 1e-4 (atol scaled)."""
    ours = ours.numpy() if isinstance(ours, sl.Tensor) else np.asarray(ours)
    ref = ref.detach().numpy() if isinstance(ref, torch.Tensor) else np.asarray(ref)
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} != {ref.shape}"
    assert ours.dtype == np.dtype(dtype), f"{what}: dtype {ours.dtype} != {np.dtype(dtype)}"
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref), err_msg=f"{what}: nan positions")
    inf = np.isinf(ref)
    np.testing.assert_array_equal(ours[inf], ref[inf], err_msg=f"{what}: infs")
    finite = np.isfinite(ref)
    assert np.isfinite(ours[finite]).all(), f"{what}: non-finite where torch is finite"
    scale = max(float(np.abs(ref[finite]).max()) if finite.any() else 0.0, 1e-2)
    np.testing.assert_allclose(ours[finite], ref[finite], rtol=RTOL[dtype], atol=RTOL[dtype] * scale,
                               err_msg=what)


def compare(ours_fn, torch_fn, x, dtype, grad=True, seed=0):
    """Forward and (when ``grad``) the input gradient of sum(out * w), ours against torch."""
    t, r = sl.Tensor(x, requires_grad=grad), torch.tensor(x, requires_grad=grad)
    out, ref = ours_fn(t), torch_fn(r)
    assert_same(out, ref, dtype, "output")
    if grad:
        w = np.random.default_rng(seed).standard_normal(ref.shape).astype(dtype)
        out.backward(w)
        ref.backward(torch.tensor(w))
        assert_same(t.grad, r.grad, dtype, "gradient")
