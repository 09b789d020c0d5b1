"""Shared helpers: run the same computation in scratchllm and torch, compare values and grads."""
import numpy as np
import torch

import scratchllm as sl

RTOL = {np.float64: 1e-7, np.float32: 1e-4}


def assert_close(ours, ref, dtype, what=""):
    """rtol 1e-7 (float64) / 1e-4 (float32), atol scaled by the reference's magnitude."""
    ours = ours.numpy() if hasattr(ours, "numpy") and not isinstance(ours, np.ndarray) else ours
    ref = ref.detach().numpy() if isinstance(ref, torch.Tensor) else np.asarray(ref)
    ours = np.asarray(ours)
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} != {ref.shape}"
    if ours.dtype.kind == "f":
        assert ours.dtype == np.dtype(dtype), f"{what}: dtype {ours.dtype}, expected {np.dtype(dtype)}"
    rtol = RTOL[dtype]
    scale = max(float(np.abs(ref).max()) if ref.size else 0.0, 1e-2)  # floor: round-off of exact zeros
    np.testing.assert_allclose(ours, ref, rtol=rtol, atol=rtol * scale, err_msg=what)


def compare(ours_fn, torch_fn, arrays, dtype, seed=0, grad=None):
    """Call both with the same inputs (float arrays get requires_grad), backprop a random
    upstream gradient, compare the output and every input gradient. Returns (ours, torch) tensors."""
    grad = [a.dtype.kind == "f" for a in arrays] if grad is None else grad
    ts = [sl.Tensor(a, requires_grad=r) for a, r in zip(arrays, grad)]
    tt = [torch.tensor(a, requires_grad=r) for a, r in zip(arrays, grad)]
    out, ref = ours_fn(*ts), torch_fn(*tt)
    assert_close(out, ref, dtype, "output")
    # its own stream: drawn from ``seed`` itself, g would be proportional to an input drawn the same
    # way, and e.g. layer_norm's exact input gradient would then be 0 (a check of round-off only)
    g = np.random.default_rng((seed, 1)).standard_normal(ref.shape).astype(dtype)
    out.backward(g)
    ref.backward(torch.tensor(g))
    for i, (a, b) in enumerate(zip(ts, tt)):
        if b.requires_grad:
            assert_close(a.grad, b.grad, dtype, f"grad of input {i}")
    return ts, tt


def copy_params(ours, ref_module, name_map=None):
    """Load a torch module's parameters into ours (names equal, or mapped by ``name_map``)."""
    state = {(name_map or {}).get(k, k): v.detach().numpy() for k, v in ref_module.state_dict().items()}
    ours.load_state_dict(state)


def compare_param_grads(ours, ref_module, dtype, name_map=None):
    ours_p = dict(ours.named_parameters())
    for k, p in ref_module.named_parameters():
        k2 = (name_map or {}).get(k, k)
        assert_close(ours_p[k2].grad, p.grad, dtype, f"grad of {k}")


DTYPES = [np.float64, np.float32]
