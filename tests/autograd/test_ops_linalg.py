"""matmul / @ and einsum against torch through ``check_op``."""
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import scratchllm as sl

from .helpers import FLOATS, SEEDS, SETTINGS, NoGrad, check_op


def lib(x):
    return torch if isinstance(x, torch.Tensor) else sl


@SETTINGS
@given(batch=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3),
       mkn=st.tuples(st.integers(1, 5), st.integers(1, 5), st.integers(1, 5)),
       a_vec=st.booleans(), b_vec=st.booleans(), dtype=FLOATS, seed=SEEDS)
def test_matmul_1d_2d_batched_broadcast(batch, mkn, a_vec, b_vec, dtype, seed):
    m, k, n = mkn
    ba, bb = batch.input_shapes
    sa = (k,) if a_vec else ba + (m, k)
    sb = (k,) if b_vec else bb + (k, n)
    check_op(lambda a, b: a @ b, sa, sb, dtype=dtype, seed=seed)
    check_op(lambda a, b: a.matmul(b), sa, sb, dtype=dtype, seed=seed)
    check_op(lambda a, b: lib(a).matmul(a, b), sa, sb, dtype=dtype, seed=seed)


@SETTINGS
@given(lead=st.lists(st.integers(1, 3), max_size=2), kn=st.tuples(st.integers(1, 5), st.integers(1, 5)),
       dtype=FLOATS, seed=SEEDS)
def test_matmul_with_a_constant_operand(lead, kn, dtype, seed):
    k, n = kn
    w = np.random.default_rng(seed).standard_normal((k, n))
    check_op(lambda x, w: x @ w, tuple(lead) + (3, k), NoGrad(w), dtype=dtype, seed=seed)
    check_op(lambda w, x: x @ w, w, NoGrad(np.ones(tuple(lead) + (3, k))), dtype=dtype, seed=seed)
    wd = w.astype(dtype)
    check_op(lambda x: x @ wd, tuple(lead) + (2, k), dtype=dtype, seed=seed,   # numpy on the right
             torch_fn=lambda x: x @ torch.tensor(wd))
    check_op(lambda x: wd.T @ x, (k, 2), dtype=dtype, seed=seed,               # numpy on the left
             torch_fn=lambda x: torch.tensor(wd.T) @ x)


EINSUMS = {
    # equation: shape builder from sizes (b, t, i, o) / (b, h, q, k, d)
    "bti,oi->bto": lambda s: [(s[0], s[1], s[2]), (s[3], s[2])],          # linear layer
    "bhqd,bhkd->bhqk": lambda s: [(s[0], s[1], s[2], s[4]), (s[0], s[1], s[3], s[4])],  # scores
    "bhqk,bhkd->bhqd": lambda s: [(s[0], s[1], s[2], s[3]), (s[0], s[1], s[3], s[4])],  # weighted values
    "ij,jk->i": lambda s: [(s[0], s[1]), (s[1], s[2])],                  # k only in operand 2
    "ij,jk->ik": lambda s: [(s[0], s[1]), (s[1], s[2])],
    "bij->bj": lambda s: [(s[0], s[1], s[2])],                           # one operand, i summed
    "ij->ji": lambda s: [(s[0], s[1])],
    "i,i->": lambda s: [(s[0],), (s[0],)],
    "i,j->ij": lambda s: [(s[0],), (s[1],)],
    "bi,bj,ij->b": lambda s: [(s[0], s[1]), (s[0], s[2]), (s[1], s[2])],
}


@pytest.mark.parametrize("equation", list(EINSUMS))
@SETTINGS
@given(sizes=st.lists(st.integers(1, 4), min_size=5, max_size=5), dtype=FLOATS, seed=SEEDS)
def test_einsum(equation, sizes, dtype, seed):
    operand_shapes = EINSUMS[equation](sizes)
    check_op(lambda *xs: lib(xs[0]).einsum(equation, *xs), *operand_shapes, dtype=dtype, seed=seed)
    if len(operand_shapes) > 1:  # a constant operand, and the list spelling
        check_op(lambda *xs: lib(xs[0]).einsum(equation, list(xs)), *operand_shapes[:-1],
                 NoGrad(np.ones(operand_shapes[-1])), dtype=dtype, seed=seed)


def test_einsum_unsupported_forms_say_so():
    x = sl.randn(3, 3)
    with pytest.raises(NotImplementedError, match="repeated index"):
        sl.einsum("ii->i", x)
    with pytest.raises(ValueError, match="2 operands"):
        sl.einsum("ij,jk->ik", x)
