"""Shape ops, joins, splits and indexing against torch through ``check_op``."""
import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

import scratchllm as sl

from .helpers import FLOATS, SEEDS, SETTINGS, NoGrad, check_op, shapes


def lib(x):
    return torch if isinstance(x, torch.Tensor) else sl


@SETTINGS
@given(shape=shapes(), data=st.data(), dtype=FLOATS, seed=SEEDS)
def test_reshape_and_view_incl_minus_one(shape, data, dtype, seed):
    n = int(np.prod(shape))
    divisors = [d for d in range(1, n + 1) if n % d == 0]
    d = data.draw(st.sampled_from(divisors))
    target = data.draw(st.permutations([d, n // d, 1]))[: data.draw(st.integers(1, 3))]
    assume(int(np.prod(target)) == n)
    check_op(lambda a: a.reshape(*target), shape, dtype=dtype, seed=seed)
    check_op(lambda a: a.reshape(tuple(target)), shape, dtype=dtype, seed=seed)
    minus = list(target)
    minus[data.draw(st.integers(0, len(minus) - 1))] = -1
    check_op(lambda a: a.view(*minus), shape, dtype=dtype, seed=seed)
    check_op(lambda a: a.reshape(-1), shape, dtype=dtype, seed=seed)


@SETTINGS
@given(shape=shapes(min_dims=1), data=st.data(), dtype=FLOATS, seed=SEEDS)
def test_transpose_permute_T(shape, data, dtype, seed):
    n = len(shape)
    d0, d1 = data.draw(st.integers(-n, n - 1)), data.draw(st.integers(-n, n - 1))
    check_op(lambda a: a.transpose(d0, d1), shape, dtype=dtype, seed=seed)
    perm = data.draw(st.permutations(range(n)))
    perm = [p - n if data.draw(st.booleans()) else p for p in perm]
    check_op(lambda a: a.permute(*perm), shape, dtype=dtype, seed=seed)
    check_op(lambda a: a.permute(tuple(perm)), shape, dtype=dtype, seed=seed)
    if n == 2:
        check_op(lambda a: a.T, shape, dtype=dtype, seed=seed)
    if n >= 2:
        check_op(lambda a: a.mT, shape, dtype=dtype, seed=seed)


@SETTINGS
@given(shape=shapes(max_dims=3), data=st.data(), dtype=FLOATS, seed=SEEDS)
def test_expand(shape, data, dtype, seed):
    small = tuple(1 if data.draw(st.booleans()) else n for n in shape)
    lead = tuple(data.draw(st.lists(st.integers(1, 3), max_size=2)))
    target = list(lead + shape)
    for i in range(len(lead), len(target)):  # -1 keeps a dim as it is
        if data.draw(st.booleans()) and small[i - len(lead)] == target[i]:
            target[i] = -1
    check_op(lambda a: a.expand(tuple(target)), small, dtype=dtype, seed=seed)
    if target:
        check_op(lambda a: a.expand(*target), small, dtype=dtype, seed=seed)


@SETTINGS
@given(shape=shapes(max_dims=4, max_side=2), data=st.data(), dtype=FLOATS, seed=SEEDS)
def test_squeeze_unsqueeze(shape, data, dtype, seed):
    n = len(shape)
    check_op(lambda a: a.squeeze(), shape, dtype=dtype, seed=seed)
    if n:
        d = data.draw(st.integers(-n, n - 1))
        check_op(lambda a: a.squeeze(d), shape, dtype=dtype, seed=seed)
    u = data.draw(st.integers(-n - 1, n))
    check_op(lambda a: a.unsqueeze(u), shape, dtype=dtype, seed=seed)


@SETTINGS
@given(shape=shapes(min_dims=1, max_dims=3), data=st.data(), dtype=FLOATS, seed=SEEDS)
def test_cat_and_stack(shape, data, dtype, seed):
    n = len(shape)
    dim = data.draw(st.integers(-n, n - 1))
    sizes = data.draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))
    parts = [tuple(s if i == dim % n else m for i, m in enumerate(shape)) for s in sizes]
    check_op(lambda *xs: lib(xs[0]).cat(list(xs), dim=dim), *parts, dtype=dtype, seed=seed)
    k = len(sizes)
    sdim = data.draw(st.integers(-n - 1, n))
    check_op(lambda *xs: lib(xs[0]).stack(xs, dim=sdim), *([shape] * k), dtype=dtype, seed=seed)


def test_cat_with_a_constant_part():
    check_op(lambda a, b: lib(a).cat([b, a, b], 0), (2, 3), NoGrad(np.ones((1, 3))))


@SETTINGS
@given(shape=shapes(min_dims=1, max_dims=3, max_side=6), data=st.data(), dtype=FLOATS, seed=SEEDS)
def test_split_and_chunk(shape, data, dtype, seed):
    n = len(shape)
    dim = data.draw(st.integers(-n, n - 1))
    length = shape[dim]
    size = data.draw(st.integers(1, length))
    check_op(lambda a: a.split(size, dim), shape, dtype=dtype, seed=seed)
    cuts = sorted(data.draw(st.lists(st.integers(0, length), max_size=3)))
    sections = [b - a for a, b in zip([0] + cuts, cuts + [length])]
    check_op(lambda a: a.split(sections, dim), shape, dtype=dtype, seed=seed)
    chunks = data.draw(st.integers(1, length + 1))
    check_op(lambda a: a.chunk(chunks, dim), shape, dtype=dtype, seed=seed)
    check_op(lambda a: a.chunk(chunks, dim=dim), shape, dtype=dtype, seed=seed)


@SETTINGS
@given(shape=shapes(min_dims=1, max_dims=3, max_side=6), data=st.data(), dtype=FLOATS, seed=SEEDS)
def test_basic_slicing(shape, data, dtype, seed):
    index = []
    for n in shape[: data.draw(st.integers(1, len(shape)))]:
        kind = data.draw(st.sampled_from(["int", "slice", "full"]))
        if kind == "int":
            index.append(data.draw(st.integers(-n, n - 1)))
        elif kind == "slice":
            start = data.draw(st.one_of(st.none(), st.integers(-n, n)))
            stop = data.draw(st.one_of(st.none(), st.integers(-n, n)))
            index.append(slice(start, stop, data.draw(st.integers(1, 3))))
        else:
            index.append(slice(None))
    index = tuple(index)
    check_op(lambda a: a[index], shape, dtype=dtype, seed=seed)
    check_op(lambda a: a[..., None, 0], shape, dtype=dtype, seed=seed)


@SETTINGS
@given(shape=shapes(min_dims=1, max_dims=3, max_side=4), data=st.data(), dtype=FLOATS, seed=SEEDS)
def test_integer_array_indexing_scatter_adds_repeats(shape, data, dtype, seed):
    n = shape[0]
    ids = np.array(data.draw(st.lists(st.integers(-n, n - 1), min_size=1, max_size=8)), dtype=np.int64)
    check_op(lambda a, i: a[i], shape, ids, dtype=dtype, seed=seed)  # gather of rows
    ids2 = ids.reshape(1, -1).repeat(2, axis=0) % n                      # 2-D index array
    check_op(lambda a, i: a[i], shape, ids2, dtype=dtype, seed=seed)
    if len(shape) >= 2:
        m = shape[1]
        cols = np.array(data.draw(st.lists(st.integers(0, m - 1), min_size=len(ids), max_size=len(ids))))
        check_op(lambda a, i, j: a[i, j], shape, ids, cols, dtype=dtype, seed=seed)   # pairs, repeated
        check_op(lambda a, j: a[:, j], shape, cols, dtype=dtype, seed=seed)
    check_op(lambda a: a[[0, 0, -1]], shape, dtype=dtype, seed=seed)  # a Python list as index


@SETTINGS
@given(shape=shapes(min_dims=1, max_dims=3), dtype=FLOATS, seed=SEEDS)
def test_boolean_mask_indexing(shape, dtype, seed):
    mask = np.random.default_rng(seed).random(shape) < 0.5
    check_op(lambda a, m: a[m], shape, mask, dtype=dtype, seed=seed)


@pytest.mark.parametrize("name", ["triu", "tril"])
@SETTINGS
@given(shape=shapes(min_dims=2, max_dims=4), diagonal=st.integers(-2, 2), dtype=FLOATS, seed=SEEDS)
def test_triu_tril(name, shape, diagonal, dtype, seed):
    check_op(lambda a: getattr(a, name)(diagonal), shape, dtype=dtype, seed=seed)
    check_op(lambda a: getattr(a, name)(), shape, dtype=dtype, seed=seed)


@SETTINGS
@given(shape=shapes(min_dims=1, max_dims=4), dtype=FLOATS, seed=SEEDS)
def test_flatten_contiguous(shape, dtype, seed):
    check_op(lambda a: a.flatten(), shape, dtype=dtype, seed=seed)
    check_op(lambda a: a.transpose(0, -1).contiguous(), shape, dtype=dtype, seed=seed)


@SETTINGS
@given(shape=shapes(), src=FLOATS, seed=SEEDS)
def test_to_dtype_casts_gradients_back(shape, src, seed):
    other = np.float32 if src == np.float64 else np.float64
    to_ours, to_torch = {np.float32: (sl.float32, torch.float32), np.float64: (sl.float64, torch.float64)}[other]
    out = check_op(lambda a: (a.to(to_ours) * 3).exp(), shape, dtype=src, seed=seed, rtol=1e-4,
                   torch_fn=lambda a: (a.to(to_torch) * 3).exp())
    assert out.dtype == other
    check_op(lambda a: a.to(sl.int64), shape, dtype=src, seed=seed, low=-5, high=5,
             torch_fn=lambda a: a.to(torch.int64))
    check_op(lambda a: a.double() + a.float().double(), shape, dtype=src, seed=seed, rtol=1e-4)
