"""One helper to test an op against PyTorch: ``check_op`` (tinygrad's helper_test_op style).

The same function runs on scratchllm Tensors and on torch tensors built from copies of the
same arrays; the outputs must agree, and so must every input's gradient of
``sum(out * w)`` for a random upstream gradient ``w`` (not just ones).

>>> check_op(lambda a, b: a * b, (2, 3), (3,))            # two float64 inputs, shapes drawn
>>> check_op(lambda a, s: a + s, (4,), 2.5)                # a Python number passes through
>>> check_op(lambda a: a.max(1), (3, 4))                   # tuple outputs (values, indices)
"""
import os

import numpy as np
import torch
from hypothesis import HealthCheck, settings

import scratchllm as sl

torch.set_num_threads(1)

# hypothesis budget per test: small, the whole file must stay fast on 2 cores
# (SCRATCHLLM_HYPOTHESIS_EXAMPLES=500 for a long bug hunt)
SETTINGS = settings(max_examples=int(os.environ.get("SCRATCHLLM_HYPOTHESIS_EXAMPLES", 20)), deadline=None, derandomize=False,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

RTOL = {np.dtype(np.float64): 1e-7, np.dtype(np.float32): 1e-4}
_TORCH_DTYPE = {np.dtype(np.float64): torch.float64, np.dtype(np.float32): torch.float32,
                np.dtype(np.int64): torch.int64, np.dtype(np.bool_): torch.bool,
                np.dtype(np.int32): torch.int32}


class NoGrad:
    """Wrap a float array so that it enters the op as a constant (requires_grad=False)."""

    def __init__(self, array):
        self.array = np.asarray(array)


def _leaves(inputs, dtype, rng, low, high):
    """-> list of (numpy array or passthrough value, needs_grad)."""
    out = []
    for x in inputs:
        if isinstance(x, tuple) and all(isinstance(n, (int, np.integer)) for n in x):
            out.append((np.asarray(rng.uniform(low, high, size=x), dtype=dtype), True))
        elif isinstance(x, NoGrad):
            arr = x.array.astype(dtype) if x.array.dtype.kind == "f" else x.array
            out.append((arr, False))
        elif isinstance(x, (np.ndarray, np.generic)):
            x = np.asarray(x)
            arr = x.astype(dtype) if x.dtype.kind == "f" else x
            out.append((arr, arr.dtype.kind == "f"))
        else:
            out.append((x, None))  # not an array: passed to fn unchanged
    return out


def _outputs(result):
    return list(result) if isinstance(result, (tuple, list)) else [result]


def _np(t):
    if isinstance(t, torch.Tensor):
        return t.detach().numpy()
    return np.asarray(t.numpy())


def _assert_same(ours, theirs, rtol, atol, what):
    o, t = _np(ours), _np(theirs)
    assert o.shape == t.shape, f"{what}: shape {o.shape} != torch {t.shape}"
    assert _TORCH_DTYPE[o.dtype] == theirs.dtype, f"{what}: dtype {o.dtype} != torch {theirs.dtype}"
    if o.dtype.kind in "biu":
        np.testing.assert_array_equal(o, t, err_msg=what)
    else:
        np.testing.assert_allclose(o, t, rtol=rtol, atol=atol, err_msg=what)


def check_op(fn, *inputs, dtype=np.float64, rtol=None, atol=None, grad=True, torch_fn=None,
             low=-2.0, high=2.0, seed=0):
    """Run ``fn`` on scratchllm and on torch; compare outputs and input gradients.

    inputs: a shape tuple (random uniform(low, high) array of ``dtype``, requires grad),
    a numpy array (float arrays require grad and are cast to ``dtype``; int/bool arrays
    are constants), ``NoGrad(array)`` (a float constant), or anything else (a number,
    a slice, a list ...) handed to ``fn`` as it is. ``torch_fn`` replaces ``fn`` on the
    torch side where the spellings differ. Returns scratchllm's output.
    """
    dtype = np.dtype(dtype)
    rtol = RTOL[dtype] if rtol is None else rtol
    atol = rtol if atol is None else atol
    rng = np.random.default_rng(seed)
    leaves = _leaves(inputs, dtype, rng, low, high)

    ours_in, torch_in = [], []
    for value, needs_grad in leaves:
        if needs_grad is None:
            ours_in.append(value)
            torch_in.append(value)
            continue
        ours_in.append(sl.Tensor(value.copy(), requires_grad=grad and needs_grad))
        torch_in.append(torch.tensor(value.copy(), requires_grad=grad and needs_grad))

    ours = _outputs(fn(*ours_in))
    theirs = _outputs((torch_fn or fn)(*torch_in))
    assert len(ours) == len(theirs), f"{len(ours)} outputs != torch's {len(theirs)}"
    for i, (o, t) in enumerate(zip(ours, theirs)):
        _assert_same(o, t, rtol, atol, f"output {i}")
    if not grad:
        return ours[0] if len(ours) == 1 else ours

    loss_ours, loss_torch = None, None
    for o, t in zip(ours, theirs):
        if not t.dtype.is_floating_point or not t.requires_grad:
            assert not o.requires_grad, "an integer/bool output must not require grad"
            continue
        assert o.requires_grad, "a float output of grad inputs must require grad"
        w = rng.standard_normal(t.shape).astype(_np(o).dtype)
        lo = (o * sl.Tensor(w)).sum()
        lt = (t * torch.tensor(w)).sum()
        loss_ours = lo if loss_ours is None else loss_ours + lo
        loss_torch = lt if loss_torch is None else loss_torch + lt
    if loss_torch is None:
        return ours[0] if len(ours) == 1 else ours
    loss_ours.backward()
    loss_torch.backward()
    for i, (a, b) in enumerate(zip(ours_in, torch_in)):
        if not isinstance(b, torch.Tensor) or not b.requires_grad:
            continue
        tg = b.grad if b.grad is not None else torch.zeros_like(b)
        assert a.grad is not None or not tg.any(), f"input {i}: no gradient, torch has one"
        og = a.grad if a.grad is not None else sl.Tensor(np.zeros(a.shape, a.dtype))
        _assert_same(og, tg, rtol, atol, f"grad of input {i}")
    return ours[0] if len(ours) == 1 else ours


# ------------------------------------------------------------ hypothesis strategies
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

FLOATS = st.sampled_from([np.float64, np.float32])
SEEDS = st.integers(0, 2**31 - 1)


def shapes(min_dims=0, max_dims=4, max_side=5):
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=1, max_side=max_side)


def broadcast_pair(min_dims=0, max_dims=4):
    """Two shapes that broadcast together (size-1 dims, missing leading dims, both ways)."""
    return hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=min_dims, max_dims=max_dims,
                                             max_side=4).map(lambda r: r.input_shapes)


@st.composite
def shape_and_dims(draw, min_dims=1, max_dims=4, allow_none=True, single=False):
    """(shape, dim): dim is None, an int (maybe negative) or a tuple of distinct ints."""
    shape = draw(shapes(min_dims=min_dims, max_dims=max_dims))
    n = len(shape)
    kinds = ["int"] + ([] if single else ["tuple"]) + (["none"] if allow_none else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "none":
        return shape, None
    if kind == "int":
        return shape, draw(st.integers(-n, n - 1))
    axes = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=n, unique=True))
    return shape, tuple(a - n if draw(st.booleans()) else a for a in axes)
