"""Elementwise ops and reductions, each against torch through ``check_op`` (values and grads)."""
import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

import scratchllm as sl

from .helpers import FLOATS, SEEDS, SETTINGS, broadcast_pair, check_op, shape_and_dims, shapes


def _away_from_zero(shape, seed, dtype=np.float64):
    """Values in +-[0.5, 2]: safe denominators."""
    rng = np.random.default_rng(seed)
    return (rng.uniform(0.5, 2.0, shape) * rng.choice([-1.0, 1.0], shape)).astype(dtype)


def _grid(shape, seed, dtype=np.float64, k=3):
    """Values on a coarse grid (many exact ties): multiples of 0.5 in [-k/2, k/2]."""
    return (np.random.default_rng(seed).integers(-k, k + 1, shape) * 0.5).astype(dtype)


# ------------------------------------------------------------------ arithmetic
BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
}


@pytest.mark.parametrize("name", list(BINARY))
@SETTINGS
@given(pair=broadcast_pair(), dtype=FLOATS, seed=SEEDS)
def test_binary_broadcast(name, pair, dtype, seed):
    b = _away_from_zero(pair[1], seed + 1)
    check_op(BINARY[name], pair[0], b, dtype=dtype, seed=seed)


@pytest.mark.parametrize("name", list(BINARY))
@SETTINGS
@given(shape=shapes(), number=st.sampled_from([2, -3, 0.5, -1.75]), dtype=FLOATS, seed=SEEDS,
       left=st.booleans())
def test_binary_with_number(name, shape, number, dtype, seed, left):
    op = BINARY[name]
    a = _away_from_zero(shape, seed, dtype)
    fn = (lambda t, s: op(s, t)) if left else (lambda t, s: op(t, s))
    check_op(fn, a, number, dtype=dtype, seed=seed)


@SETTINGS
@given(shape=shapes(), dtype=FLOATS, seed=SEEDS)
def test_neg(shape, dtype, seed):
    check_op(lambda a: -a, shape, dtype=dtype, seed=seed)


@SETTINGS
@given(shape=shapes(), dtype=FLOATS, seed=SEEDS)
def test_input_used_several_times_sums_its_gradients(shape, dtype, seed):
    check_op(lambda a: a * a + a * 2 + a - a.exp() * a, shape, dtype=dtype, seed=seed)
    check_op(lambda a, b: (a * b + b) * a, shape, shape, dtype=dtype, seed=seed)


@SETTINGS
@given(shape=shapes(), exponent=st.sampled_from([2, 3, -1, -2, 0.5, 1.5, -0.5]), dtype=FLOATS, seed=SEEDS)
def test_pow_number_exponent(shape, exponent, dtype, seed):
    check_op(lambda a, e: a ** e, shape, exponent, dtype=dtype, seed=seed, low=0.3, high=2.0)
    if isinstance(exponent, int) and exponent > 0:  # negative bases with integer powers
        check_op(lambda a, e: a ** e, shape, exponent, dtype=dtype, seed=seed, low=-2.0, high=2.0)


def test_pow_at_zero_base_and_zero_exponent_matches_torch():
    check_op(lambda a: a ** 0, np.array([0.0, 1.5, -2.0]))
    check_op(lambda a: a ** 2, np.array([0.0, 1.5, -2.0]))
    check_op(lambda a, b: a ** b, np.array([0.0, 0.0, 2.0, 0.0]), np.array([0.0, 2.0, 0.0, 1.0]))


@SETTINGS
@given(pair=broadcast_pair(), dtype=FLOATS, seed=SEEDS)
def test_pow_tensor_exponent(pair, dtype, seed):
    check_op(lambda a, b: a ** b, pair[0], pair[1], dtype=dtype, seed=seed, low=0.3, high=2.0)


@SETTINGS
@given(shape=shapes(), base=st.sampled_from([2, 0.5, 3.7, np.e]), dtype=FLOATS, seed=SEEDS)
def test_number_to_tensor_power(shape, base, dtype, seed):
    check_op(lambda a, s: s ** a, shape, base, dtype=dtype, seed=seed)


# ----------------------------------------------------------- unary functions
UNARY = {
    "exp": (lambda a: a.exp(), -2.0, 2.0),
    "log": (lambda a: a.log(), 0.1, 3.0),
    "sqrt": (lambda a: a.sqrt(), 0.1, 3.0),
    "tanh": (lambda a: a.tanh(), -3.0, 3.0),
    "sigmoid": (lambda a: a.sigmoid(), -6.0, 6.0),
    "relu": (lambda a: a.relu(), -2.0, 2.0),
    "abs": (lambda a: a.abs(), -2.0, 2.0),
    "silu": (lambda a: torch.nn.functional.silu(a) if isinstance(a, torch.Tensor) else a.silu(), -5.0, 5.0),
    "gelu": (lambda a: torch.nn.functional.gelu(a) if isinstance(a, torch.Tensor) else a.gelu(), -4.0, 4.0),
    "gelu_tanh": (lambda a: torch.nn.functional.gelu(a, approximate="tanh") if isinstance(a, torch.Tensor)
                  else a.gelu(approximate="tanh"), -4.0, 4.0),
}


@pytest.mark.parametrize("name", list(UNARY))
@SETTINGS
@given(shape=shapes(), dtype=FLOATS, seed=SEEDS)
def test_unary(name, shape, dtype, seed):
    fn, low, high = UNARY[name]
    check_op(fn, shape, dtype=dtype, seed=seed, low=low, high=high)


def test_sigmoid_extreme_values_do_not_overflow():
    check_op(lambda a: a.sigmoid(), np.array([-800.0, -50.0, 0.0, 50.0, 800.0]))
    check_op(lambda a: a.sigmoid(), np.array([-100.0, -20.0, 0.0, 20.0, 100.0]), dtype=np.float32)


def test_relu_and_abs_at_zero_match_torch():
    x = np.array([-1.0, 0.0, 0.0, 2.0])
    check_op(lambda a: a.relu(), x)
    check_op(lambda a: a.abs(), x)


@SETTINGS
@given(shape=shapes(), lo=st.sampled_from([None, -1.0, -0.5, 0.0]), hi=st.sampled_from([None, 0.5, 1.0]),
       dtype=FLOATS, seed=SEEDS)
def test_clamp_incl_values_on_the_bounds(shape, lo, hi, dtype, seed):
    assume(lo is not None or hi is not None)
    x = _grid(shape, seed, dtype)  # many values exactly at the bounds
    check_op(lambda a: a.clamp(min=lo, max=hi), x, dtype=dtype, seed=seed)
    check_op(lambda a: a.clamp(lo, hi), shape, dtype=dtype, seed=seed)


@st.composite
def _x_and_bound_shapes(draw):
    """x's shape and two bound shapes that broadcast to it (torch: bounds never enlarge x)."""
    sx = draw(shapes(max_dims=3))

    def bound():
        k = draw(st.integers(0, len(sx)))
        return tuple(n if draw(st.booleans()) else 1 for n in sx[len(sx) - k:])

    return sx, bound(), bound()


@SETTINGS
@given(shapes3=_x_and_bound_shapes(), which=st.sampled_from(["both", "min", "max"]), dtype=FLOATS, seed=SEEDS)
def test_clamp_with_tensor_bounds(shapes3, which, dtype, seed):
    sx, slo, shi = shapes3
    x, lo, hi = _grid(sx, seed, dtype), _grid(slo, seed + 1, dtype), _grid(shi, seed + 2, dtype)
    if which == "both":
        check_op(lambda a, l, h: a.clamp(l, h), x, lo, hi, dtype=dtype, seed=seed)
    elif which == "min":
        check_op(lambda a, l: a.clamp(min=l), x, lo, dtype=dtype, seed=seed)
    else:
        check_op(lambda a, h: a.clamp(max=h), x, hi, dtype=dtype, seed=seed)


@pytest.mark.parametrize("name", ["maximum", "minimum"])
@SETTINGS
@given(pair=broadcast_pair(), dtype=FLOATS, seed=SEEDS)
def test_maximum_minimum_with_ties(name, pair, dtype, seed):
    a, b = _grid(pair[0], seed, dtype, k=2), _grid(pair[1], seed + 1, dtype, k=2)
    ours = getattr(sl, name)
    theirs = getattr(torch, name)
    check_op(lambda x, y: (theirs if isinstance(x, torch.Tensor) else ours)(x, y), a, b, dtype=dtype, seed=seed)
    check_op(lambda x, y: getattr(x, name)(y), a, b, dtype=dtype, seed=seed)


@SETTINGS
@given(shapes3=st.tuples(broadcast_pair(), shapes(max_dims=2)), dtype=FLOATS, seed=SEEDS)
def test_where(shapes3, dtype, seed):
    (sa, sb), sc = shapes3
    cond = np.random.default_rng(seed).random(sc) < 0.5
    try:
        np.broadcast_shapes(sa, sb, sc)
    except ValueError:
        assume(False)
    lib = lambda x: torch if isinstance(x, torch.Tensor) else sl  # noqa: E731
    check_op(lambda c, a, b: lib(a).where(c, a, b), cond, sa, sb, dtype=dtype, seed=seed)
    check_op(lambda c, a: lib(a).where(c, a, 0.5), cond, sa, dtype=dtype, seed=seed)
    check_op(lambda c, b: lib(b).where(c, -1.0, b), cond, sb, dtype=dtype, seed=seed)


@SETTINGS
@given(shapes2=broadcast_pair(min_dims=1), value=st.sampled_from([0.0, -1e9, float("-inf"), 3.5]),
       dtype=FLOATS, seed=SEEDS)
def test_masked_fill(shapes2, value, dtype, seed):
    sa, sm = shapes2
    assume(np.broadcast_shapes(sa, sm) == tuple(sa))  # the mask broadcasts to the tensor
    mask = np.random.default_rng(seed).random(sm) < 0.4
    out = check_op(lambda a, m: a.masked_fill(m, value), sa, mask, dtype=dtype, seed=seed,
                   grad=value != float("-inf"))
    assert out.dtype == dtype


@pytest.mark.parametrize("op", ["lt", "le", "gt", "ge", "eq", "ne"])
@SETTINGS
@given(pair=broadcast_pair(), dtype=FLOATS, seed=SEEDS)
def test_comparisons_give_bool_without_grad(op, pair, dtype, seed):
    a, b = _grid(pair[0], seed, dtype), _grid(pair[1], seed + 1, dtype)
    out = check_op(lambda x, y: getattr(x, op)(y), a, b, dtype=dtype, seed=seed)
    assert out.dtype == np.bool_ and not out.requires_grad
    check_op(lambda x: getattr(x, op)(0.5), a, dtype=dtype, seed=seed)
    symbols = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}
    fn = eval(f"lambda x, y: x {symbols[op]} y")
    check_op(fn, a, b, dtype=dtype, seed=seed)


# ------------------------------------------------------------------ reductions
@pytest.mark.parametrize("name", ["sum", "mean"])
@SETTINGS
@given(sd=shape_and_dims(), keepdim=st.booleans(), dtype=FLOATS, seed=SEEDS)
def test_sum_mean(name, sd, keepdim, dtype, seed):
    shape, dim = sd
    if dim is None:
        check_op(lambda a: getattr(a, name)(), shape, dtype=dtype, seed=seed)
    else:
        check_op(lambda a: getattr(a, name)(dim, keepdim=keepdim), shape, dtype=dtype, seed=seed)


@SETTINGS
@given(sd=shape_and_dims(), keepdim=st.booleans(), correction=st.sampled_from([0, 1, 2]),
       dtype=FLOATS, seed=SEEDS)
def test_var(sd, keepdim, correction, dtype, seed):
    shape, dim = sd
    axes = range(len(shape)) if dim is None else ((dim,) if isinstance(dim, int) else dim)
    assume(int(np.prod([shape[d] for d in axes])) > correction)
    check_op(lambda a: a.var(dim, keepdim=keepdim, correction=correction), shape, dtype=dtype, seed=seed)
    check_op(lambda a: a.std(dim, keepdim=keepdim, correction=correction), shape, dtype=dtype, seed=seed)


@pytest.mark.parametrize("name", ["amax", "amin"])
@SETTINGS
@given(sd=shape_and_dims(), keepdim=st.booleans(), dtype=FLOATS, seed=SEEDS)
def test_amax_amin_with_ties(name, sd, keepdim, dtype, seed):
    shape, dim = sd
    x = _grid(shape, seed, dtype, k=1)  # values in {-0.5, 0, 0.5}: ties everywhere
    if dim is None:
        check_op(lambda a: getattr(a, name)(), x, dtype=dtype, seed=seed)
    else:
        check_op(lambda a: getattr(a, name)(dim, keepdim=keepdim), x, dtype=dtype, seed=seed)


@pytest.mark.parametrize("name", ["max", "min"])
@SETTINGS
@given(sd=shape_and_dims(allow_none=False, single=True), keepdim=st.booleans(), dtype=FLOATS, seed=SEEDS)
def test_max_min_with_dim_values_and_indices(name, sd, keepdim, dtype, seed):
    shape, dim = sd
    x = np.random.default_rng(seed).permutation(int(np.prod(shape))).reshape(shape).astype(dtype)  # distinct
    values, indices = check_op(lambda a: getattr(a, name)(dim, keepdim=keepdim), x, dtype=dtype, seed=seed)
    assert indices.dtype == np.int64
    out = getattr(sl.Tensor(x), name)(dim=dim, keepdim=keepdim)
    assert out.values.shape == out.indices.shape == values.shape


@pytest.mark.parametrize("name", ["max", "min"])
@SETTINGS
@given(shape=shapes(), dtype=FLOATS, seed=SEEDS)
def test_max_min_full_reduction_with_ties(name, shape, dtype, seed):
    check_op(lambda a: getattr(a, name)(), _grid(shape, seed, dtype, k=1), dtype=dtype, seed=seed)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@SETTINGS
@given(sd=shape_and_dims(allow_none=False, single=True), dtype=FLOATS, seed=SEEDS, scale=st.sampled_from([1.0, 30.0]))
def test_softmax_log_softmax(name, sd, dtype, seed, scale):
    shape, dim = sd
    check_op(lambda a: getattr(a, name)(dim), shape, dtype=dtype, seed=seed, low=-scale, high=scale)
    check_op(lambda a: getattr(a, name)(axis=dim) if isinstance(a, sl.Tensor) else getattr(a, name)(dim),
             shape, dtype=dtype, seed=seed)


# ------------------------------------------------------------ numpy spellings
@SETTINGS
@given(sd=shape_and_dims(allow_none=False), keepdims=st.booleans(), seed=SEEDS)
def test_numpy_axis_keepdims_spellings(sd, keepdims, seed):
    shape, axis = sd
    for name in ["sum", "mean", "amax", "amin", "var"]:
        check_op(lambda a: getattr(a, name)(axis=axis, keepdims=keepdims), shape, seed=seed,
                 torch_fn=lambda a: getattr(a, name)(dim=axis, keepdim=keepdims))
    if isinstance(axis, int):
        check_op(lambda a: a.max(axis=axis, keepdims=keepdims), shape, seed=seed,
                 torch_fn=lambda a: a.max(dim=axis, keepdim=keepdims))
