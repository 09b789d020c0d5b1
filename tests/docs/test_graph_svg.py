"""draw_graph's own SVG (autograd/graph_svg.py): a layered layout that needs no Graphviz."""
import re
import xml.etree.ElementTree as ET

import numpy as np

import scratchllm as sl
from scratchllm.autograd import graph_svg as layout
from scratchllm.autograd.graphviz import graph_svg

NS = "{http://www.w3.org/2000/svg}"


def boxes(svg):
    """(title row, other rows, x, y, w, h) of every node box, from the SVG text."""
    root = ET.fromstring(svg)
    out = []
    for g in root.iter(NS + "g"):
        rect = g.find(NS + "rect")
        rows = [t.text for t in g.findall(NS + "text")]
        out.append((rows[0], rows[1:], *(float(rect.get(k)) for k in ("x", "y", "width", "height"))))
    return out


def test_scalar_graph_shows_values_gradients_and_local_derivatives(tmp_path):
    m, x, c, y = sl.Scalar(2.0), sl.Scalar(3.0), sl.Scalar(4.0), sl.Scalar(1.0)
    L = (m * x + c - y) ** 2
    L.backward()
    path = tmp_path / "g.svg"
    dot = sl.draw_graph(L, path, names={"x": x, "L": L})
    svg = path.read_text()
    assert dot.startswith("digraph") and 'label="x\\ndata 3\\ngrad 36"' in dot
    found = {title: rows for title, rows, *_ in boxes(svg)}
    assert found["x"] == ["data 3", "grad 36"] and found["L = **2"] == ["data 81", "grad 1"]
    assert len(boxes(svg)) == 9                              # 4 leaves, *, +, neg, +, **2
    assert svg.count("marker-end=") == 8                        # one curve per edge
    labels = re.findall(r'fill="#b03030">([^<]*)</text>', svg)
    assert sorted(labels) == sorted(["3", "2", "1", "1", "-1", "1", "1", "18"])   # d(child)/d(parent)
    by_title = {title: (x0, w) for title, _, x0, _, w, _ in boxes(svg)}
    assert by_title["x"][0] + by_title["x"][1] < by_title["*"][0] < by_title["L = **2"][0]   # left to right


def test_a_node_used_twice_gets_two_parallel_edges():
    a = sl.Scalar(3.0)
    b = a * a
    b.backward()
    svg = graph_svg(b)
    assert svg.count("marker-end=") == 2 and len(boxes(svg)) == 2
    ends = re.findall(r'<path d="[^"]* ([\d.]+),([\d.]+)" fill="none"', svg)
    assert len({y for _, y in ends}) == 2                   # drawn side by side, not on top of each other


def test_layers_put_every_parent_left_of_its_children_and_leaves_next_to_their_user():
    edges = [(1, 0, None), (2, 1, None), (3, 2, None), (4, 0, None), (3, 0, None)]
    layer = layout._layers(5, edges, [0])
    assert all(layer[p] < layer[c] for p, c, _ in edges)
    assert layer[0] == max(layer) and layer[4] == layer[0] - 1   # the leaf 4 sits right before its user
    columns, chains = layout._with_dummies(5, layer, edges)
    assert [len(ch) for ch in chains] == [2, 2, 2, 2, 4]          # 3 -> 0 jumps two columns: two bend points
    assert sorted(v for col in columns for v in col) == list(range(7))


def test_boxes_never_overlap_and_the_svg_is_well_formed():
    x = sl.Tensor(np.ones((2, 3)), requires_grad=True)
    w = sl.Tensor(np.ones((3, 4)), requires_grad=True)
    y = ((x @ w).tanh() * 2.0 + (x @ w)).sum()
    found = boxes(graph_svg(y))
    assert any(rows[:1] == ["shape (2, 4)"] for _, rows, *_ in found)
    for i, (_, _, x0, y0, w0, h0) in enumerate(found):
        for _, _, x1, y1, w1, h1 in found[i + 1:]:
            assert x0 + w0 <= x1 or x1 + w1 <= x0 or y0 + h0 <= y1 or y1 + h1 <= y0


def test_long_graphs_draw_without_recursion():
    x = sl.Scalar(1.0)
    y = x
    for _ in range(3000):
        y = y * 1.0 + x                                      # x feeds 3000 ops: long edges, no bends
    svg = graph_svg(y)
    assert len(boxes(svg)) == 1 + 3 * 3000                   # x, and per step a 1.0 constant, a product, a sum
    assert svg.count("marker-end=") == 4 * 3000                 # two edges into each product and each sum
