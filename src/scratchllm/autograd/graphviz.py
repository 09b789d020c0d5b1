"""``draw_graph``: the computation graph as Graphviz DOT text, and as an SVG picture drawn by scratchllm.

The picture is the DAG that ``backward()`` walks: one box per leaf (inputs and
parameters; filled when they require grad), one ellipse per op result labelled
with the op, its shape and dtype, and an arrow from every parent to the child it
was used to compute. The output node has a double border. On a ``Scalar`` graph
each node shows its value and gradient, and each edge its local derivative.

``draw_graph(y, "graph.svg")`` writes the SVG itself (a small layered layout,
``graph_svg.py``), so the picture renders anywhere, without Graphviz. PNG and PDF
(``format="png"``/``"pdf"``) go through Graphviz, which must then be installed.

>>> x = Tensor([[1.0, 2.0]], requires_grad=True)
>>> print(draw_graph((x * 2).sum()))                          # doctest: +ELLIPSIS
digraph ...
  n0 [label="sum\\nshape ()\\nfloat32\\nrequires_grad\\nvalue 6", ...];
  ...
  n1 -> n0;
...

Draw before calling ``backward()``: backward frees the graph unless it is given
``retain_graph=True``. Works on ``Scalar`` graphs too (data and grad instead of shape).
"""
from __future__ import annotations

import os
import shutil

from ..atomic import atomic_write
from ..errors import ScratchLLMError
from .engine import _freed
from .graph_svg import layered_svg
from .tensor import Tensor

FORMATS = ("svg", "png", "pdf")


def draw_graph(y, path=None, format: str = "svg", names: dict | None = None) -> str:
    """Return the DOT text of the graph that produced ``y``; also draw it into ``path`` if given.

    ``format="svg"`` (the default) is drawn by scratchllm itself (see :func:`graph_svg`);
    ``"png"`` and ``"pdf"`` need the ``graphviz`` Python package and the Graphviz ``dot``
    program. ``names``: {name: node} puts a name on chosen nodes (``{"x": x}`` titles x's
    box "x"). The graph is only read, never modified, and no reference to it is kept.
    """
    if path is not None and format not in FORMATS:
        raise ValueError(f"draw_graph: format must be one of {FORMATS}, got {format!r}")
    nodes, edges = _walk(y)
    named = {id(node): name for name, node in (names or {}).items()}
    lines = ["digraph computation_graph {", "  rankdir=LR;",
             '  node [fontname="Helvetica", fontsize=10];']
    for i, node in enumerate(nodes):
        lines.append(f"  n{i} [{_attributes(node, is_output=(i == 0), name=named.get(id(node)))}];")
    lines += [f"  n{p} -> n{c};" for p, c in edges]
    lines.append("}")
    dot = "\n".join(lines) + "\n"
    svg = _svg(nodes, edges, named) if path is not None and format == "svg" else None
    del nodes  # drop our references before anything slow (rendering) happens
    if svg is not None:
        with atomic_write(os.fspath(path), "w") as f:
            f.write(svg)
    elif path is not None:
        _render(dot, os.fspath(path), format)
    return dot


def graph_svg(y, names: dict | None = None) -> str:
    """The graph that produced ``y`` as SVG text, laid out by scratchllm (no Graphviz).

    >>> from scratchllm import Scalar
    >>> a = Scalar(3.0); b = a * a + a; b.backward()
    >>> graph_svg(b, names={"a": a}).startswith("<svg")
    True
    """
    nodes, edges = _walk(y)
    return _svg(nodes, edges, {id(node): name for name, node in (names or {}).items()})


def _svg(nodes, edges, named) -> str:
    boxes = []
    for node in nodes:
        rows, leaf, wants_grad = _rows(node, named.get(id(node)))
        boxes.append((rows, ("leaf" if wants_grad else "const") if leaf else "op"))
    labelled, seen = [], {}
    for p, c in edges:              # Scalar edges carry their local derivative d(child)/d(parent)
        k = seen[c] = seen.get(c, -1) + 1               # _walk lists a child's parents in order
        local = getattr(nodes[c], "_local_grads", None)
        labelled.append((p, c, f"{local[k]:.4g}" if local is not None and k < len(local) else None))
    return layered_svg(boxes, labelled, outputs=[0])


def _walk(root):
    """Nodes in discovery order (root first) and (parent, child) edges, iteratively."""
    index = {id(root): 0}
    nodes, edges, stack = [root], [], [root]
    while stack:
        child = stack.pop()
        for parent in child._parents:
            key = id(parent)
            if key not in index:
                index[key] = len(nodes)
                nodes.append(parent)
                stack.append(parent)
            edges.append((index[key], index[id(child)]))
    return nodes, edges


def _rows(node, name=None):
    """The text rows of a node's box, whether it is a leaf, and whether it wants a gradient."""
    leaf = not node._parents and (node._backward is None if isinstance(node, Tensor) else True)
    title = node._op or "leaf"
    if name is not None:
        title = name if leaf else f"{name} = {title}"
    if isinstance(node, Tensor):
        rows = [title, f"shape {tuple(node.data.shape)}", str(node.data.dtype),
                "requires_grad" if node.requires_grad else "no grad"]
        if node.data.size == 1:
            rows.append(f"value {node.data.item():.6g}")
            grad = getattr(node, "grad", None)
            if grad is not None:
                rows.append(f"grad {float(getattr(grad, 'data', grad).reshape(-1)[0]):.6g}")
        if node._backward is _freed:
            rows.append("(freed by backward)")
        wants_grad = node.requires_grad
    else:  # Scalar (or anything with data/grad/_parents/_op)
        rows = [title, f"data {node.data:.6g}", f"grad {node.grad:.6g}"]
        wants_grad = True
    return rows, leaf, wants_grad


def _attributes(node, is_output: bool, name=None) -> str:
    rows, leaf, wants_grad = _rows(node, name)
    label = "\\n".join(_escape(r) for r in rows)
    attrs = [f'label="{label}"']
    if leaf:
        attrs += ["shape=box", "style=filled", f'fillcolor="{"lightblue" if wants_grad else "lightgrey"}"']
    else:
        attrs.append("shape=ellipse")
    if is_output:
        attrs.append("peripheries=2")
    return ", ".join(attrs)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _render(dot: str, path: str, format: str) -> None:
    missing = []
    try:
        import graphviz
    except ImportError:
        missing.append("the `graphviz` Python package (pip install graphviz)")
    if shutil.which("dot") is None:
        missing.append("the Graphviz `dot` program (apt-get install graphviz, brew install graphviz, "
                       "or https://graphviz.org/download/)")
    if missing:
        raise ScratchLLMError(f"draw_graph: writing {path!r} as {format} needs " + " and ".join(missing)
                              + "; the DOT text itself is returned by draw_graph(y) without them")
    data = graphviz.Source(dot).pipe(format=format)
    with atomic_write(path, "wb") as f:
        f.write(data)
