"""The engine keeps fresh leaf gradients without a copy, but never lets two leaves (or the
caller's gradient) share one array; the allocator tuning is idempotent."""
import numpy as np

import scratchllm as sl
from scratchllm import Tensor
from scratchllm.autograd.allocator import keep_freed_memory


def test_two_leaves_fed_the_same_gradient_array_get_separate_grads():
    a = Tensor([1.0, 2.0], requires_grad=True)
    b = Tensor([3.0, 4.0], requires_grad=True)
    (a + b).backward(np.ones(2, dtype=np.float32))  # add's backward hands the same g to both
    assert a.grad.data is not b.grad.data
    a.grad.data *= 5.0                              # e.g. clip_grad_norm_ scales in place
    np.testing.assert_array_equal(b.grad.data, [1.0, 1.0])
    (a + b).backward(np.ones(2, dtype=np.float32))  # accumulation in place stays per leaf
    np.testing.assert_array_equal(a.grad.data, [6.0, 6.0])
    np.testing.assert_array_equal(b.grad.data, [2.0, 2.0])


def test_the_callers_gradient_array_is_never_kept_as_a_leaf_grad():
    a = Tensor([1.0, 2.0], requires_grad=True)
    g = np.array([1.0, 1.0], dtype=np.float32)
    a.backward(g)
    assert a.grad.data is not g
    g[:] = 7.0
    np.testing.assert_array_equal(a.grad.data, [1.0, 1.0])


def test_leaf_grad_from_a_view_is_copied():
    w = Tensor(np.ones((2, 3), dtype=np.float32), requires_grad=True)
    w.reshape(6).sum().backward()                   # reshape's backward returns a view of g
    assert w.grad.data.base is None and w.grad.data.flags.writeable
    np.testing.assert_array_equal(w.grad.data, np.ones((2, 3)))


def test_keep_freed_memory_is_idempotent_and_training_still_works():
    first = keep_freed_memory()
    assert keep_freed_memory() is first or keep_freed_memory() is True
    x = Tensor(np.random.default_rng(0).standard_normal((64, 64)), requires_grad=True)
    for _ in range(2):
        x.grad = None
        (x @ x).sum().backward()
    np.testing.assert_allclose(x.grad.data, np.ones((64, 64)) @ x.data.T + x.data.T @ np.ones((64, 64)), rtol=1e-10)
    assert sl is not None
