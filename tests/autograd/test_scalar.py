"""Scalar: the worked examples, every op against torch float64 and central differences,
numbers on either side, a 100,000-op chain, and a tiny MLP of Scalars that learns XOR."""
import math
import random

import pytest
import torch
from hypothesis import given, settings, strategies as st

import scratchllm as sl
from scratchllm import Scalar

RTOL, ATOL = 1e-7, 1e-12          # float64 against torch float64
values = st.floats(-3.0, 3.0, allow_nan=False, allow_infinity=False)
positive = st.floats(0.05, 4.0, allow_nan=False, allow_infinity=False)


def close(a, b, rtol=RTOL, atol=ATOL):
    return math.isclose(a, b, rel_tol=rtol, abs_tol=atol)


# ------------------------------------------------------------------ worked examples
def test_worked_example_squared_error():
    m, x, c, y = Scalar(2.0), Scalar(3.0), Scalar(4.0), Scalar(1.0)
    L = (m * x + c - y) ** 2                 # r = m x + c - y = 9, L = r^2 = 81
    assert L.backward() is None
    assert L.data == 81.0
    assert x.grad == 36.0                    # dL/dx = 2 r m
    assert m.grad == 54.0                    # dL/dm = 2 r x
    assert c.grad == 18.0                    # dL/dc = 2 r
    assert y.grad == -18.0                   # dL/dy = -2 r
    assert L.grad == 1.0


def test_worked_example_polynomial():
    x = Scalar(2.0)
    f = 6 * x**5 + 2 * x**4 - 11 * x**3 + 51 * x**2 - 38 * x
    f.backward()
    assert f.data == 264.0                   # 192 + 32 - 88 + 204 - 76
    assert x.grad == 578.0                   # 30 x^4 + 8 x^3 - 33 x^2 + 102 x - 38 at x = 2


def test_node_used_several_times_sums_its_gradients():
    a = Scalar(3.0)
    b = a + a                                # two edges from a to b
    b.backward()
    assert a.grad == 2.0

    a, w = Scalar(3.0), Scalar(-2.0)
    h = a * w                                # h feeds both branches of a diamond
    out = h * a + h.tanh() + a               # d/da = 2 a w + (1 - tanh(h)^2) w + 1
    out.backward()
    t = math.tanh(-6.0)
    assert close(a.grad, 2 * 3.0 * -2.0 + (1 - t * t) * -2.0 + 1)
    assert close(w.grad, 3.0 * 3.0 + (1 - t * t) * 3.0)
    assert close(h.grad, 3.0 + (1 - t * t))


def test_backward_accumulates_on_leaves_and_recomputes_intermediates():
    m, x, c, y = Scalar(2.0), Scalar(3.0), Scalar(4.0), Scalar(1.0)
    L = (m * x + c - y) ** 2
    L.backward()
    L.backward()                             # leaves accumulate, as in PyTorch
    assert (x.grad, m.grad, c.grad, L.grad) == (72.0, 108.0, 36.0, 1.0)
    x.grad = 0.0
    L2 = x * 5
    L2.backward()
    assert x.grad == 5.0


def test_repr_and_bad_input():
    assert repr(Scalar(1.5)) == "Scalar(data=1.5, grad=0)"
    assert isinstance(Scalar(3).data, float)
    with pytest.raises(TypeError, match="real number"):
        Scalar("1.0")
    with pytest.raises(TypeError, match="real number"):
        Scalar(Scalar(1.0))
    with pytest.raises(TypeError, match="cannot combine a Scalar with str"):
        Scalar(1.0) + "a"
    with pytest.raises(TypeError, match="cannot combine a Scalar with str"):
        "a" * Scalar(1.0)


# ------------------------------------------------------------- every op vs torch
UNARY = {
    "neg": (lambda s: -s, lambda t: -t),
    "exp": (lambda s: s.exp(), torch.exp),
    "tanh": (lambda s: s.tanh(), torch.tanh),
    "relu": (lambda s: s.relu(), torch.relu),
    "sigmoid": (lambda s: s.sigmoid(), torch.sigmoid),
    "log": (lambda s: s.log(), torch.log),                 # positive inputs only
    "pow3": (lambda s: s ** 3, lambda t: t ** 3),
    "pow-1": (lambda s: s ** -1, lambda t: t ** -1),
    "pow2.5": (lambda s: s ** 2.5, lambda t: t ** 2.5),    # positive inputs only
    "rpow": (lambda s: 2.0 ** s, lambda t: 2.0 ** t),
}
BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "pow": lambda a, b: a ** b,                             # positive base only
}


def _torch_unary(name, v):
    t = torch.tensor(v, dtype=torch.float64, requires_grad=True)
    out = UNARY[name][1](t)
    out.backward()
    return out.item(), t.grad.item()


@settings(max_examples=40, deadline=None)
@given(v=values, pos=positive)
@pytest.mark.parametrize("name", list(UNARY))
def test_unary_op_matches_torch(name, v, pos):
    if name in ("log", "pow2.5"):
        v = pos
    if name == "pow-1" and abs(v) < 0.05:
        v = pos
    s = Scalar(v)
    out = UNARY[name][0](s)
    out.backward()
    want, want_grad = _torch_unary(name, v)
    assert close(out.data, want), (out.data, want)
    assert close(s.grad, want_grad), (s.grad, want_grad)


@settings(max_examples=40, deadline=None)
@given(a=values, b=values, pos=positive)
@pytest.mark.parametrize("name", list(BINARY))
def test_binary_op_matches_torch(name, a, b, pos):
    if name == "div" and abs(b) < 0.05:
        b = pos
    if name == "pow":
        a = pos
    fn = BINARY[name]
    sa, sb = Scalar(a), Scalar(b)
    out = fn(sa, sb)
    out.backward()
    ta = torch.tensor(a, dtype=torch.float64, requires_grad=True)
    tb = torch.tensor(b, dtype=torch.float64, requires_grad=True)
    tout = fn(ta, tb)
    tout.backward()
    assert close(out.data, tout.item())
    assert close(sa.grad, ta.grad.item()), (sa.grad, ta.grad.item())
    assert close(sb.grad, tb.grad.item()), (sb.grad, tb.grad.item())


@settings(max_examples=40, deadline=None)
@given(a=values, b=values)
def test_composite_expression_matches_torch(a, b):
    def f(x, y):
        return ((x * y).tanh() + (x - y).sigmoid() * 3 - (y * 0.5).exp() * x.relu()
                + (x * x + 1).log() / (y * y + 2)) ** 2 - 1 / (1 + x * x)

    sa, sb = Scalar(a), Scalar(b)
    out = f(sa, sb)
    out.backward()
    ta = torch.tensor(a, dtype=torch.float64, requires_grad=True)
    tb = torch.tensor(b, dtype=torch.float64, requires_grad=True)
    tout = f(ta, tb)
    tout.backward()
    assert close(out.data, tout.item())
    assert close(sa.grad, ta.grad.item(), atol=1e-10)
    assert close(sb.grad, tb.grad.item(), atol=1e-10)


def test_relu_at_zero_and_edge_values_match_torch():
    for v in (0.0, -0.0):
        s = Scalar(v)
        s.relu().backward()
        assert s.grad == 0.0                     # torch: relu'(0) = 0
    s = Scalar(0.0)
    (s ** 0).backward()
    assert s.grad == 0.0                         # torch: d(x^0)/dx = 0 even at 0
    assert Scalar(0.0).log().data == -math.inf
    assert math.isnan(Scalar(-1.0).log().data)
    assert math.isnan((Scalar(-8.0) ** (1 / 3)).data)
    assert Scalar(1000.0).exp().data == math.inf
    assert (1 / Scalar(0.0)).data == math.inf and (-1 / Scalar(-0.0)).data == math.inf
    assert math.isnan((Scalar(0.0) / 0).data)
    assert close(Scalar(-800.0).sigmoid().data, 0.0) and Scalar(800.0).sigmoid().data == 1.0


# ------------------------------------------------------------- central differences
@settings(max_examples=30, deadline=None)
@given(v=values, pos=positive)
@pytest.mark.parametrize("name", list(UNARY))
def test_unary_op_matches_central_differences(name, v, pos):
    if name in ("log", "pow2.5") or (name == "pow-1" and abs(v) < 0.05):
        v = pos
    if name == "relu" and abs(v) < 1e-3:       # the kink has no derivative
        v = pos
    h = 1e-6
    f = UNARY[name][0]
    s = Scalar(v)
    f(s).backward()
    numeric = (f(Scalar(v + h)).data - f(Scalar(v - h)).data) / (2 * h)
    assert math.isclose(s.grad, numeric, rel_tol=1e-5, abs_tol=1e-6), (s.grad, numeric)


@settings(max_examples=30, deadline=None)
@given(a=values, b=values, pos=positive)
@pytest.mark.parametrize("name", list(BINARY))
def test_binary_op_matches_central_differences(name, a, b, pos):
    if name == "div" and abs(b) < 0.05:
        b = pos
    if name == "pow":
        a = pos
    h = 1e-6
    fn = BINARY[name]
    sa, sb = Scalar(a), Scalar(b)
    fn(sa, sb).backward()
    da = (fn(Scalar(a + h), Scalar(b)).data - fn(Scalar(a - h), Scalar(b)).data) / (2 * h)
    db = (fn(Scalar(a), Scalar(b + h)).data - fn(Scalar(a), Scalar(b - h)).data) / (2 * h)
    assert math.isclose(sa.grad, da, rel_tol=1e-5, abs_tol=1e-6), (sa.grad, da)
    assert math.isclose(sb.grad, db, rel_tol=1e-5, abs_tol=1e-6), (sb.grad, db)


# ------------------------------------------------------------- numbers on either side
@pytest.mark.parametrize("expr, value, grad", [
    (lambda a: a + 2, 5.0, 1.0), (lambda a: 2 + a, 5.0, 1.0),
    (lambda a: a - 2, 1.0, 1.0), (lambda a: 2 - a, -1.0, -1.0),
    (lambda a: a * 2, 6.0, 2.0), (lambda a: 2 * a, 6.0, 2.0),
    (lambda a: a / 2, 1.5, 0.5), (lambda a: 6 / a, 2.0, -6 / 9),
    (lambda a: a ** 2, 9.0, 6.0), (lambda a: 2 ** a, 8.0, 8 * math.log(2)),
    (lambda a: a + 0.5 * a - 1.0, 3.5, 1.5), (lambda a: -a, -3.0, -1.0),
])
def test_numbers_on_either_side(expr, value, grad):
    a = Scalar(3.0)
    out = expr(a)
    out.backward()
    assert close(out.data, value) and close(a.grad, grad)


# ------------------------------------------------------------- a 100,000-op chain
def test_chain_of_100k_ops_needs_no_recursion():
    a = Scalar(0.5)
    y = a
    for _ in range(100_000):
        y = y + a                              # y = 100,001 a
    y.backward()
    assert close(y.data, 50_000.5)
    assert a.grad == 100_001.0
    del y                                      # freeing the deep chain must not overflow either


# ------------------------------------------------------------- a tiny MLP of Scalars
class Neuron:
    def __init__(self, n_in, rng, act=True):
        self.w = [Scalar(rng.uniform(-1, 1)) for _ in range(n_in)]
        self.b = Scalar(0.0)
        self.act = act

    def __call__(self, x):
        z = sum((wi * xi for wi, xi in zip(self.w, x)), self.b)
        return z.tanh() if self.act else z

    def parameters(self):
        return self.w + [self.b]


class MLP:
    def __init__(self, sizes, seed):
        rng = random.Random(seed)
        self.layers = [[Neuron(sizes[i], rng, act=i < len(sizes) - 2) for _ in range(sizes[i + 1])]
                       for i in range(len(sizes) - 1)]

    def __call__(self, x):
        for layer in self.layers:
            x = [n(x) for n in layer]
        return x[0]

    def parameters(self):
        return [p for layer in self.layers for n in layer for p in n.parameters()]


def train_xor(seed, steps=300, lr=1.0):
    xs = [(0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0)]
    ys = [0.0, 1.0, 1.0, 0.0]
    model = MLP([2, 4, 1], seed)
    losses = []
    for _ in range(steps):
        logits = [model(x) for x in xs]
        # binary cross-entropy with logits: log(1 + e^z) - y z, averaged
        loss = sum(((1 + z.exp()).log() - y * z for z, y in zip(logits, ys)), Scalar(0.0)) / len(xs)
        for p in model.parameters():
            p.grad = 0.0
        loss.backward()
        for p in model.parameters():
            p.data -= lr * p.grad
        losses.append(loss.data)
    preds = [model(x).sigmoid().data for x in xs]
    return losses, preds, ys


def test_tiny_mlp_learns_xor():
    losses, preds, ys = train_xor(seed=0)
    assert losses[0] > 0.6                     # ~ln 2 at the start: no better than chance
    assert losses[-1] < 0.05
    assert all(b <= a + 1e-12 for a, b in zip(losses[50:], losses[51:]))  # falls steadily
    assert [round(p) for p in preds] == ys
    assert train_xor(seed=0)[0] == losses      # seeded: the same run twice
    assert sl.Scalar is Scalar


def test_example_scalar_mlp_script_trains():
    import pathlib
    import runpy

    path = pathlib.Path(__file__).resolve().parents[2] / "examples" / "scalar_mlp.py"
    lines = []
    losses, preds = runpy.run_path(str(path))["train"](log=lines.append)
    assert losses[0] > 1.0 and losses[-1] < 0.01
    assert all(b < a for a, b in zip(losses, losses[1:]))
    assert [round(p) for p in preds] == [1, -1, -1, 1]
    assert lines[0] == "41 parameters, each a Scalar" and lines[1].startswith("step   0  loss")
