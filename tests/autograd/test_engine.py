"""The backward engine: graph walk, accumulation, grad modes, in-place safety, errors, dtypes."""
import gc
import math

import numpy as np
import pytest
import torch

import scratchllm as sl
from scratchllm import Tensor


def leaf(values, dtype=sl.float64):
    return Tensor(np.asarray(values, dtype=dtype), requires_grad=True)


# ---------------------------------------------------------------- graph walk
def test_chain_of_100k_ops_backward_without_recursion():
    x = leaf(1.0)
    y = x
    for _ in range(100_000):
        y = y * 1.0001
    y.backward()
    assert x.grad.item() == pytest.approx(1.0001 ** 100_000, rel=1e-9)


def test_deep_retained_graph_can_be_dropped():
    x = leaf([1.0, 2.0])
    y = x
    for _ in range(100_000):
        y = y + 1.0
    y.sum().backward(retain_graph=True)
    assert x.grad.tolist() == [1.0, 1.0]
    del y  # freeing 100k linked nodes must not blow the C stack
    gc.collect()


def test_node_used_several_times_gets_the_sum_of_its_gradients():
    x = leaf(3.0)
    y = x * x + x * 2 + x       # dy/dx = 2x + 3 = 9
    y.backward()
    assert x.grad.item() == 9.0
    a = leaf([1.0, -2.0])
    b = a.exp()
    z = (b * b + b).sum()       # shared intermediate
    z.backward()
    np.testing.assert_allclose(a.grad.numpy(), 2 * np.exp(2 * a.data) + np.exp(a.data), rtol=1e-12)


def test_worked_example_dl_dx_36():
    m, x, c, y = leaf(2.0), leaf(3.0), leaf(4.0), leaf(1.0)
    loss = (m * x + c - y) ** 2
    loss.backward()
    assert (x.grad.item(), m.grad.item(), c.grad.item(), y.grad.item()) == (36.0, 54.0, 18.0, -18.0)


def test_gradient_accumulates_across_backward_calls_until_zeroed():
    x = leaf([1.0, 2.0])
    (x * x).sum().backward()
    (x * 3).sum().backward()
    assert x.grad.tolist() == [2 + 3, 4 + 3]
    x.zero_grad()
    assert x.grad is None
    (x * 5).sum().backward()
    assert x.grad.tolist() == [5, 5]
    assert isinstance(x.grad, Tensor) and not x.grad.requires_grad


def test_retain_graph_allows_a_second_backward_and_freeing_refuses_it():
    x = leaf([1.0, 2.0])
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    assert x.grad.tolist() == [4.0, 8.0]
    with pytest.raises(RuntimeError, match="second time.*retain_graph=True"):
        y.backward()


def test_backward_on_non_scalar_needs_a_gradient():
    x = leaf([1.0, 2.0])
    y = x * 2
    with pytest.raises(RuntimeError, match=r"only for scalar outputs.*shape \(2,\)"):
        y.backward()
    y.backward(sl.Tensor([1.0, -3.0]))       # explicit gradient (a Tensor or an array)
    assert x.grad.tolist() == [2.0, -6.0]
    with pytest.raises(RuntimeError, match=r"gradient has shape \(3,\)"):
        (x * 2).backward(np.ones(3))


def test_backward_on_a_tensor_without_graph_says_why():
    with pytest.raises(RuntimeError, match="does not require grad"):
        Tensor([1.0, 2.0]).sum().backward()


# ---------------------------------------------------------------- grad modes
def test_no_grad_records_nothing():
    x = leaf([1.0, 2.0])
    with sl.no_grad():
        y = x * 2 + 1
    assert not y.requires_grad and y.is_leaf
    assert sl.is_grad_enabled()
    z = x * 2
    assert z.requires_grad and not z.is_leaf


def test_no_grad_as_decorator_with_and_without_parentheses():
    x = leaf([1.0])

    @sl.no_grad()
    def f(t):
        return t * 2

    @sl.no_grad
    def g(t):
        return t * 3

    assert not f(x).requires_grad and not g(x).requires_grad
    assert f.__name__ == "f" and g.__name__ == "g"
    assert (x * 2).requires_grad


def test_enable_grad_inside_no_grad_and_exceptions_restore_the_mode():
    x = leaf([1.0])
    with sl.no_grad():
        with sl.enable_grad():
            y = x * 2
        z = x * 2
    assert y.requires_grad and not z.requires_grad
    with pytest.raises(ZeroDivisionError):
        with sl.no_grad():
            1 / 0
    assert sl.is_grad_enabled()


def test_detach_shares_data_but_cuts_the_graph():
    x = leaf([1.0, 2.0])
    y = x * 2
    d = y.detach()
    assert d.data is y.data or np.shares_memory(d.data, y.data)
    assert not d.requires_grad and d.is_leaf
    (d * x).sum().backward()
    assert x.grad.tolist() == [2.0, 4.0]   # d is a constant: only the direct path


# ------------------------------------------------------------ in-place safety
def test_inplace_on_a_requires_grad_tensor_under_grad_mode_is_refused():
    x = leaf([1.0, 2.0])
    for op in (lambda: x.add_(1), lambda: x.mul_(2), lambda: x.__setitem__(0, 5.0), lambda: x.zero_()):
        with pytest.raises(RuntimeError, match="in place"):
            op()
    with sl.no_grad():      # allowed (as an optimizer does)
        x.sub_(1)
    assert x.data.tolist() == [0.0, 1.0]


def test_modifying_a_saved_input_before_backward_is_refused_naming_the_op():
    x = leaf([1.0, 2.0])
    c = Tensor(np.array([3.0, 4.0]))
    y = (x * c).sum()
    c.mul_(10)              # c does not require grad, so this is allowed ... until backward
    with pytest.raises(RuntimeError, match="op 'mul'.*modified in place"):
        y.backward()
    w = Tensor(np.array([[1.0], [2.0]]))
    z = (x @ w).sum()
    with sl.no_grad():
        w[0, 0] = 7.0
    with pytest.raises(RuntimeError, match="op 'matmul'.*modified in place"):
        z.backward()
    p = leaf([1.0, 2.0])
    q = (p.exp() * 2).sum()
    with sl.no_grad():      # e.g. an optimizer step between forward and backward
        p.sub_(0.1)
    with pytest.raises(RuntimeError, match="op 'exp'.*modified in place"):
        q.backward()


def test_inplace_with_an_operand_that_requires_grad_is_refused():
    acc = sl.zeros(2, dtype=sl.float64)
    x = leaf([1.0, 2.0])
    with pytest.raises(RuntimeError, match="out-of-place"):
        acc += x * 2


# -------------------------------------------------------------------- errors
@pytest.mark.parametrize("op, fn, shapes", [
    ("add", lambda a, b: a + b, [(2, 3), (4,)]),
    ("sub", lambda a, b: a - b, [(2, 3), (2,)]),
    ("mul", lambda a, b: a * b, [(5,), (4,)]),
    ("div", lambda a, b: a / b, [(3, 1, 2), (4, 3)]),
    ("matmul", lambda a, b: a @ b, [(2, 3), (4, 5)]),
    ("cat", lambda a, b: sl.cat([a, b], 0), [(2, 3), (2, 4)]),
    ("stack", lambda a, b: sl.stack([a, b]), [(2, 3), (3, 2)]),
    ("maximum", sl.maximum, [(2,), (3,)]),
])
def test_shape_mismatch_errors_name_the_op_and_both_shapes(op, fn, shapes):
    a, b = (sl.randn(*s, requires_grad=True) for s in shapes)
    with pytest.raises(ValueError) as info:
        fn(a, b)
    msg = str(info.value)
    assert op in msg and str(shapes[0]) in msg and str(shapes[1]) in msg, msg


def test_reshape_error_names_the_shapes():
    with pytest.raises(ValueError, match=r"reshape.*\(2, 3\).*\(4, 2\)"):
        sl.randn(2, 3).reshape(4, 2)
    with pytest.raises(ValueError, match=r"reshape.*\(2, 3\).*\(4, -1\)"):
        sl.randn(2, 3).reshape(4, -1)


def test_only_float_tensors_can_require_grad():
    with pytest.raises(TypeError, match="floating-point"):
        Tensor([1, 2], requires_grad=True)


def test_repr_is_readable():
    x = Tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    assert repr(x) == "tensor([[1., 2.],\n        [3., 4.]], requires_grad=True)"
    assert "grad_fn=<mul>" in repr(x * 2)
    assert repr(Tensor([1, 2])) == "tensor([1, 2])"
    assert repr(Tensor(np.array([0.5]))) == "tensor([0.5], dtype=float64)"


# -------------------------------------------------------------------- dtypes
def test_dtype_rules_follow_torch():
    assert Tensor(3).dtype == sl.int64 and Tensor([1, 2]).dtype == sl.int64
    assert Tensor(3.0).dtype == sl.float32 and Tensor([1, 2.5]).dtype == sl.float32
    assert Tensor([True]).dtype == np.bool_
    assert Tensor([1, 2], dtype=sl.float64).dtype == np.float64
    assert sl.float64 is np.float64 and sl.float32 is np.float32 and sl.int64 is np.int64
    assert sl.zeros(2).dtype == sl.float32 and sl.randn(2).dtype == sl.float32
    assert sl.arange(3).dtype == sl.int64 and sl.arange(0.0, 1.0, 0.5).dtype == sl.float32
    assert Tensor(np.zeros(2)).dtype == np.float64          # numpy arrays keep their dtype
    assert Tensor([1, 2]).to(sl.float64).dtype == np.float64


@pytest.mark.parametrize("expr", [
    "i + 1", "i * 2", "i + 2.5", "i / 2", "i / i", "i * f", "f + i", "f * 2", "f / 3", "f ** 2",
    "f + np.float64(1.5)", "f / np.sqrt(np.float64(8.0))", "2.0 - f", "f > 0", "i == 1",
    "f.sum()", "f.mean()", "f.exp()", "f @ f", "f.softmax(-1)", "f.var()",
])
def test_result_dtypes_match_torch(expr):
    i, f = Tensor([1, 2]), Tensor([0.5, 1.5])
    ours = eval(expr, {"i": i, "f": f, "np": np})
    ti, tf = torch.tensor([1, 2]), torch.tensor([0.5, 1.5])
    theirs = eval(expr, {"i": ti, "f": tf, "np": np})
    assert str(ours.dtype) == str(theirs.dtype).replace("torch.", ""), expr
    np.testing.assert_allclose(np.asarray(ours.numpy(), dtype=np.float64), theirs.double().numpy(), rtol=1e-6)


def test_float32_stays_float32_through_ops_and_gradients():
    sl.manual_seed(0)
    x = sl.randn(2, 3, 4, requires_grad=True)
    w = sl.randn(4, 5, requires_grad=True)
    b = sl.randn(5, requires_grad=True)
    h = (x @ w + b).gelu().tanh().sigmoid() / np.sqrt(np.float64(5.0))
    h = h.softmax(-1).log() + h.log_softmax(-1) * 0.5 - h.amax(-1, keepdim=True)
    h = sl.where(h > 0, h, h * 0.1).masked_fill(sl.ones(5) > 2, 0.0).var(-1)
    h = sl.einsum("bt,bt->b", h, h.sqrt()) + h.max(1).values
    outs = [h, x @ w, x.mean(), x.std(), (x.exp() ** 1.5).clamp(0.1, 2.0), x.abs().max(), x.T, x[0, [1, 1]]]
    for o in outs:
        assert o.dtype == np.float32, o
    h.sum().backward()
    for p in (x, w, b):
        assert p.grad.dtype == np.float32 and p.grad.shape == p.shape


def test_manual_seed_makes_randn_deterministic():
    sl.manual_seed(123)
    a, b = sl.randn(3, 4), sl.rand(5)
    sl.manual_seed(123)
    assert np.array_equal(sl.randn(3, 4).numpy(), a.numpy()) and np.array_equal(sl.rand(5).numpy(), b.numpy())
    sl.manual_seed(124)
    assert not np.array_equal(sl.randn(3, 4).numpy(), a.numpy())
    g = sl.Generator(7)
    c = sl.randn(2, generator=g)
    assert np.array_equal(sl.randn(2, generator=sl.Generator(7)).numpy(), c.numpy())


def test_scalar_results_are_arrays_and_items():
    x = leaf([1.0, 2.0])
    s = (x @ x) * 2                     # NumPy would hand back scalars here
    assert isinstance(s.numpy(), np.ndarray) and s.shape == ()
    assert s.item() == 10.0 and float(s) == 10.0 and math.isclose(s.exp().log().item(), 10.0)
    with pytest.raises(ValueError, match="2 elements"):
        x.item()
