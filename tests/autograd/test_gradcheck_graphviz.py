"""grad_check (numerical gradient check in float64) and draw_graph (the graph as DOT text)."""
import gc
import importlib
import re
import shutil
import sys
import types
import weakref

import numpy as np
import pytest

import scratchllm as sl
from scratchllm import Scalar, Tensor, draw_graph, grad_check
from scratchllm.autograd.tensor import make_result
from scratchllm.errors import ScratchLLMError

gv = importlib.import_module("scratchllm.autograd.graphviz")


def rand(*shape, seed=0, requires_grad=True):
    return Tensor(np.random.default_rng(seed).standard_normal(shape), requires_grad=requires_grad)


# ------------------------------------------------------------------ grad_check passes
@pytest.mark.parametrize("fn, shapes", [
    (lambda x, w: (x @ w).tanh().sum(), [(3, 4), (4, 2)]),
    (lambda x: x.softmax(-1), [(2, 5)]),
    (lambda x: x.log_softmax(0), [(4, 3)]),
    (lambda x, b: (x * b + b / (1 + x * x)).sigmoid(), [(3, 4), (4,)]),     # broadcasting
    (lambda x: (x - x.mean(-1, keepdim=True)) / (x.var(-1, keepdim=True) + 1e-5).sqrt(), [(2, 6)]),
    (lambda x, w: sl.einsum("bij,jk->bik", x, w).relu().amax(-1), [(2, 3, 4), (4, 5)]),
    (lambda x: x.transpose(0, 1).reshape(6).exp()[1:5], [(2, 3)]),
])
def test_grad_check_passes_on_correct_ops(fn, shapes):
    inputs = [rand(*s, seed=i) for i, s in enumerate(shapes)]
    assert grad_check(fn, *inputs) is True


def test_grad_check_multiple_outputs_and_non_tensor_inputs():
    x = rand(4, 3)
    ids = np.array([2, 0, 2])                 # integer ids pass through unperturbed
    assert grad_check(lambda a, idx, k: tuple((a[idx] * k).split(1, dim=1)), x, ids, 3.0) is True


def test_grad_check_leaves_the_inputs_alone():
    x = Tensor([[0.5, -1.0], [2.0, 0.25]], requires_grad=True)   # float32
    before = x.data.copy()
    assert grad_check(lambda a: (a * a).sum(), x)
    assert x.dtype == np.float32 and x.grad is None
    np.testing.assert_array_equal(x.data, before)


# ------------------------------------------------------------------ grad_check fails
def square_with_wrong_backward(a, wrong_at=None, factor=1.0):
    """y = a^2 whose backward returns g*a (half the truth), or only one element scaled."""
    def backward(g):
        grad = 2.0 * g * a.data
        if wrong_at is None:
            return (grad * 0.5,)
        grad = grad.copy()
        grad[wrong_at] *= factor
        return (grad,)
    return make_result(a.data ** 2, (a,), backward, "bad_square")


def test_grad_check_catches_a_wrong_backward():
    x = rand(3, 4)
    with pytest.raises(AssertionError, match=r"gradient mismatch for input 0 \(shape \(3, 4\)\)") as err:
        grad_check(square_with_wrong_backward, x)
    assert "analytic" in str(err.value) and "numeric" in str(err.value)
    assert "12 of 144 Jacobian entries differ" in str(err.value)


def test_grad_check_names_the_worst_element_and_input():
    x, w = rand(2, 3, seed=1), rand(2, 3, seed=2)
    wrong = lambda a, b: (a * b + square_with_wrong_backward(b, wrong_at=(1, 2), factor=1.5)).sum()
    with pytest.raises(AssertionError) as err:
        grad_check(wrong, x, w)
    msg = str(err.value)
    assert "input 1 (shape (2, 3)) at element (1, 2), output 0 element ()" in msg
    b = w.data.astype(np.float64)[1, 2]
    analytic = float(re.search(r"analytic (\S+)", msg).group(1))
    numeric = float(re.search(r"numeric (\S+)", msg).group(1))
    assert analytic == pytest.approx(x.data[1, 2] + 3.0 * b, rel=1e-9)
    assert numeric == pytest.approx(x.data[1, 2] + 2.0 * b, rel=1e-6)
    assert "1 of 6 Jacobian entries differ" in msg


def test_grad_check_catches_a_dropped_gradient():
    x = rand(2, 2)
    with pytest.raises(AssertionError, match="analytic 0.0 vs numeric"):
        grad_check(lambda a: a.detach() * 2 + 0 * a, x)


def test_grad_check_rejects_bad_calls():
    with pytest.raises(ValueError, match="no input Tensor has requires_grad=True"):
        grad_check(lambda a: a.sum(), rand(2, requires_grad=False))
    with pytest.raises(TypeError, match="output 0 is float"):
        grad_check(lambda a: 1.0, rand(2))
    assert sl.grad_check is grad_check


# ------------------------------------------------------------------ draw_graph
def parse(dot):
    labels = dict(re.findall(r'^  (n\d+) \[label="([^"]*)"', dot, re.M))
    attrs = dict(re.findall(r"^  (n\d+) \[(.*)\];$", dot, re.M))
    edges = re.findall(r"^  (n\d+) -> (n\d+);$", dot, re.M)
    return labels, attrs, edges


def small_graph():
    x = Tensor(np.ones((2, 3)), dtype=sl.float32, requires_grad=True)
    w = Tensor(np.ones((3, 4)), dtype=sl.float64, requires_grad=True)
    b = Tensor(np.zeros(4))                                       # a constant leaf
    y = (x.to(sl.float64) @ w + b).relu().sum()
    return x, w, b, y


def test_draw_graph_dot_has_ops_shapes_dtypes_and_edges():
    x, w, b, y = small_graph()
    dot = draw_graph(y)
    assert dot.startswith("digraph computation_graph {") and dot.rstrip().endswith("}")
    labels, attrs, edges = parse(dot)
    first = {name: label.split("\\n") for name, label in labels.items()}
    by_title = {}
    for name, rows in first.items():
        by_title.setdefault(rows[0], []).append(name)
    assert sorted(by_title) == ["add", "leaf", "matmul", "relu", "sum", "to"]
    assert len(by_title["leaf"]) == 3
    rows = {name: first[name] for name in labels}
    assert rows[by_title["sum"][0]] == ["sum", "shape ()", "float64", "requires_grad", "value 24"]
    assert rows[by_title["matmul"][0]][1:3] == ["shape (2, 4)", "float64"]
    assert rows[by_title["to"][0]][1:3] == ["shape (2, 3)", "float64"]
    leaves = sorted(rows[n][1:4] for n in by_title["leaf"])
    assert leaves == [["shape (2, 3)", "float32", "requires_grad"], ["shape (3, 4)", "float64", "requires_grad"],
                      ["shape (4,)", "float64", "no grad"]]
    named = {(rows[p][0] + rows[p][1], rows[c][0]) for p, c in edges}
    assert named == {("leafshape (2, 3)", "to"), ("toshape (2, 3)", "matmul"),
                     ("leafshape (3, 4)", "matmul"), ("matmulshape (2, 4)", "add"),
                     ("leafshape (4,)", "add"), ("addshape (2, 4)", "relu"), ("relushape (2, 4)", "sum")}
    assert len(edges) == 7
    # leaves are boxes (filled blue when they require grad, grey when not), ops ellipses, output doubled
    for n in by_title["leaf"]:
        colour = "lightblue" if rows[n][3] == "requires_grad" else "lightgrey"
        assert "shape=box" in attrs[n] and f'fillcolor="{colour}"' in attrs[n]
    assert all("shape=ellipse" in attrs[n] for t in ("add", "matmul", "relu", "sum") for n in by_title[t])
    assert "peripheries=2" in attrs[by_title["sum"][0]] and dot.count("peripheries=2") == 1


def test_draw_graph_neither_modifies_nor_keeps_the_graph():
    x, w, b, y = small_graph()
    parents = y._parents
    draw_graph(y)
    assert y._parents is parents
    y.backward()
    np.testing.assert_array_equal(w.grad.data, np.full((3, 4), 2.0))   # relu'(3) = 1, x rows sum to 2
    assert "(freed by backward)" in draw_graph(y)                        # drawn after backward: freed

    x, w, b, y = small_graph()
    inner = weakref.ref(y._parents[0])                                   # the relu node
    draw_graph(y)
    del y
    gc.collect()
    assert inner() is None


def test_draw_graph_is_iterative_and_handles_shared_nodes():
    x = Tensor([1.0], requires_grad=True)
    y = x
    for _ in range(5000):
        y = y * 1.0 + x                                                  # x feeds every add
    labels, _, edges = parse(draw_graph(y))
    assert len(labels) == 1 + 2 * 5000
    assert len(edges) == 3 * 5000 - 1 + 1


def test_draw_graph_on_scalars():
    a = Scalar(2.0)
    b = a * a + a
    b.backward()
    labels, attrs, edges = parse(draw_graph(b))
    assert sorted(labels.values()) == ["*\\ndata 4\\ngrad 1", "+\\ndata 6\\ngrad 1", "leaf\\ndata 2\\ngrad 5"]
    assert len(edges) == 4                                               # a -> *, twice; a -> +; * -> +
    assert sl.draw_graph is draw_graph


# ------------------------------------------------------------------ rendering
def _renderable():
    try:
        import graphviz  # noqa: F401
    except ImportError:
        return False
    return shutil.which("dot") is not None


def test_draw_graph_writes_a_picture_or_says_what_to_install(tmp_path):
    *_, y = small_graph()
    svg, png = tmp_path / "g.svg", tmp_path / "g.png"
    dot = draw_graph(y, svg)                                   # SVG: drawn by scratchllm, no Graphviz
    assert dot.startswith("digraph") and svg.read_text().startswith("<svg")
    if _renderable():
        draw_graph(y, str(png), format="png")
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        with pytest.raises(ScratchLLMError, match=r"writing .*g\.png.* as png needs .*graphviz") as err:
            draw_graph(y, png, format="png")
        assert "install" in str(err.value) and "draw_graph(y)" in str(err.value)
        assert not png.exists() and [p.name for p in tmp_path.iterdir()] == ["g.svg"]
    assert list(tmp_path.glob(".draw_graph-*")) == []


def test_draw_graph_render_plumbing_with_a_stand_in_graphviz(tmp_path, monkeypatch):
    """The write path (format, atomic replace) with a fake `graphviz` module and `dot`."""
    calls = []

    class Source:
        def __init__(self, text):
            self.text = text

        def pipe(self, format):
            calls.append((self.text, format))
            return b"<svg>" + format.encode() + b"</svg>"

    monkeypatch.setitem(sys.modules, "graphviz", types.SimpleNamespace(Source=Source))
    monkeypatch.setattr(gv.shutil, "which", lambda name: "/usr/bin/dot" if name == "dot" else None)
    *_, y = small_graph()
    out = tmp_path / "graph.svg"
    out.write_bytes(b"old")
    dot = draw_graph(y, out, format="png")
    assert calls == [(dot, "png")] and out.read_bytes() == b"<svg>png</svg>"
    draw_graph(y, out, format="pdf")
    assert out.read_bytes() == b"<svg>pdf</svg>"
    draw_graph(y, out)                                                   # svg: never Graphviz
    assert len(calls) == 2 and out.read_text().startswith("<svg xmlns")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["graph.svg"]
    with pytest.raises(ValueError, match="format must be one of"):
        draw_graph(y, out, format="jpeg")

    monkeypatch.setattr(gv.shutil, "which", lambda name: None)           # package present, no `dot`
    with pytest.raises(ScratchLLMError) as err:
        draw_graph(y, tmp_path / "x.png", format="png")
    assert "`dot` program" in str(err.value) and "pip install graphviz" not in str(err.value)
