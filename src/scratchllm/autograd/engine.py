"""The graph engine: ``make_result`` records an op's output, ``run_backward`` walks the graph.

``make_result(out, parents, backward, name)`` wraps an op's output array; when a parent needs
grad (and recording is on) the output keeps its parents and the ``backward`` closure.
``run_backward`` visits the nodes in reverse topological order (an explicit stack, no
recursion), gives each closure its upstream gradient, sums broadcast gradients back to each
parent's shape, and accumulates the leaves' gradients in ``.grad``.

``backward_reference`` is that walk and nothing else (micrograd's, in one screen); ``run_backward``
is the fast path: the same walk plus memory tricks, each marked there (sums added in place into
buffers the walk owns, gradients handed to leaves without a copy, each node's closure freed as
soon as it ran, and glibc's malloc told to keep freed pages, see allocator.py). Tested equal.
"""
from __future__ import annotations

from ..backend import xp
from ..device import is_device_array
from .allocator import keep_freed_memory
from .grad_mode import is_grad_enabled
from .tensor import Tensor, _to_array

_ndarray = xp.ndarray


def make_result(data, parents: tuple, backward, op: str) -> Tensor:
    """Wrap an op's output array; record the graph edge if any parent needs grad.

    ``backward(g)`` must return one gradient (array or None) per parent, each of
    the parent's shape or broadcastable back to it.
    """
    out = Tensor.__new__(Tensor)
    # NumPy ufuncs turn 0-d arrays into scalars; keep .data an array (in-place ops, .numpy())
    out.data = data if data.__class__ is _ndarray or is_device_array(data) else xp.asarray(data)
    out.grad = None
    out._op = op
    out._version = 0
    for p in parents:
        if p.requires_grad:
            if is_grad_enabled():
                out.requires_grad = True
                out._parents = parents
                out._backward = backward
                out._versions = tuple(q._version for q in parents)
                return out
            break
    out.requires_grad = False
    out._parents = ()
    out._backward = None
    out._versions = ()
    return out


def unbroadcast(g, shape: tuple):
    """Sum a broadcast gradient back to ``shape`` (the rule of NumPy broadcasting, reversed)."""
    if g.shape == shape:
        return g
    extra = g.ndim - len(shape)
    if extra:
        g = g.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g


def _freed(g):
    raise RuntimeError("trying to backward through the graph a second time; the saved values were freed "
                       "after the first backward(). Pass retain_graph=True to the first call to keep them")


def _topological_order(root: Tensor) -> list:
    """Nodes that need grad, each after all of its parents (iterative DFS post-order)."""
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        for p in node._parents:
            if p.requires_grad and id(p) not in visited:
                stack.append((p, False))
    return order


def backward_reference(root: Tensor, gradient=None) -> None:
    """The plain walk: each node after every node that uses it, gradients summed with +, every
    leaf's ``.grad`` a fresh array (added to an existing one). Keeps the graph."""
    grads = {id(root): xp.ones_like(root.data) if gradient is None else _to_array(gradient, root.data.dtype)}
    for node in reversed(_topological_order(root)):
        g = grads.pop(id(node), None)
        if g is None:
            continue
        if node._backward is None:                                   # a leaf
            node.grad = Tensor(g.copy() if node.grad is None else node.grad.data + g)
            continue
        for p, pg in zip(node._parents, node._backward(g)):
            if pg is None or not p.requires_grad:
                continue
            pg = unbroadcast(pg, p.data.shape).astype(p.data.dtype, copy=False)
            grads[id(p)] = grads[id(p)] + pg if id(p) in grads else pg


def run_backward(root: Tensor, gradient=None, retain_graph: bool = False) -> None:
    """``backward_reference``'s walk, the fast path (the tricks are marked FAST PATH)."""
    keep_freed_memory()  # FAST PATH, once: later steps reuse this step's pages (see allocator.py)
    if not root.requires_grad:
        raise RuntimeError("backward(): this tensor does not require grad and has no grad_fn "
                           "(no input had requires_grad=True, or it was computed under no_grad)")
    if gradient is None:
        if root.data.size != 1:
            raise RuntimeError(f"backward(): grad can be implicitly created only for scalar outputs, but this "
                               f"tensor has shape {root.data.shape}; pass backward(gradient) of that shape")
        g = xp.ones_like(root.data)
    else:
        g = _to_array(gradient, root.data.dtype)
        if g.shape != root.data.shape:
            raise RuntimeError(f"backward(): gradient has shape {g.shape} but the tensor has shape {root.data.shape}")

    grads = {id(root): g}
    owned = set()  # FAST PATH: ids whose gradient array was allocated here and may be added into in place
    handed = {id(g)}  # FAST PATH: arrays a leaf keeps as .grad (and the caller's gradient): never kept twice
    for node in reversed(_topological_order(root)):
        g = grads.pop(id(node), None)
        if g is None:
            continue
        backward = node._backward
        if backward is None:  # a leaf: accumulate into .grad (kept across backward calls)
            if node.grad is None:
                # FAST PATH: a fresh base array (not a view, not handed to another leaf) is kept as is
                fresh = id(node) in owned or (g.base is None and id(g) not in handed
                                              and getattr(g.flags, "writeable", True))  # (CuPy: no such flag)
                if not fresh:
                    g = g.copy()
                handed.add(id(g))
                node.grad = Tensor(g)
            else:
                node.grad.data += g
            continue
        for p, v in zip(node._parents, node._versions):
            if p._version != v:
                raise RuntimeError(
                    f"backward(): an input of op '{node._op}' (shape {p.data.shape}) was modified in place "
                    f"after the op used it (version {p._version}, expected {v}); its gradient would be wrong")
        parent_grads = backward(g)
        for p, pg in zip(node._parents, parent_grads):
            if pg is None or not p.requires_grad:
                continue
            if pg.shape != p.data.shape:
                pg = unbroadcast(pg, p.data.shape)
            if pg.dtype != p.data.dtype:
                pg = pg.astype(p.data.dtype)
            key = id(p)
            prev = grads.get(key)
            if prev is None:
                grads[key] = pg
            elif key in owned:
                prev += pg
                grads[key] = prev  # a 0-d sum is a NumPy scalar: += rebinds instead of adding in place
            else:
                grads[key] = prev + pg
                owned.add(key)
        if not retain_graph:  # FAST PATH: the closure (and what it saved) is freed right away
            node._parents = ()
            node._versions = ()
            node._backward = _freed
