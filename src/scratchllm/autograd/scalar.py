"""``Scalar``: reverse-mode automatic differentiation on single numbers.

The teaching entry point (micrograd-style). Every arithmetic op on Scalars
builds a node of a directed acyclic graph. Each node remembers its parents and
the *local* derivative of its value with respect to each parent, computed in
the forward pass (for ``z = x * y``: dz/dx = y, dz/dy = x).

``backward()`` applies the chain rule on that graph. If L is the output and a
node ``z`` has parent ``x``, then

    dL/dx  +=  dz/dx * dL/dz          (local derivative * upstream gradient)

summed over every path from ``x`` to ``L`` (hence ``+=``: a node used several
times gets the sum of its gradients). Visiting nodes in reverse topological
order guarantees that dL/dz is complete before it is handed to z's parents.

Worked example: m=2, x=3, c=4, y=1, L = (m*x + c - y)**2.

>>> m, x, c, y = Scalar(2.0), Scalar(3.0), Scalar(4.0), Scalar(1.0)
>>> L = (m * x + c - y) ** 2          # (6 + 4 - 1)^2 = 81
>>> L.backward()
>>> x.grad, m.grad, c.grad            # 2*9*m, 2*9*x, 2*9
(36.0, 54.0, 18.0)
"""
from __future__ import annotations

import math
import numbers


class Scalar:
    """A number that remembers how it was computed; ``.grad`` is dL/d(self) after ``backward()``."""

    __slots__ = ("data", "grad", "_parents", "_local_grads", "_op")

    def __init__(self, data, _parents: tuple = (), _local_grads: tuple = (), _op: str = ""):
        if isinstance(data, Scalar) or not isinstance(data, numbers.Real):
            raise TypeError(f"Scalar(data): expected a real number, got {type(data).__name__}")
        self.data = float(data)
        self.grad = 0.0
        self._parents = _parents          # the nodes this one was computed from
        self._local_grads = _local_grads  # d(self)/d(parent) for each parent, same order
        self._op = _op                    # name of the op that made it ("" for a leaf)

    def __repr__(self) -> str:
        return f"Scalar(data={self.data:.6g}, grad={self.grad:.6g})"

    # ------------------------------------------------------------- the ops
    # Each op returns Scalar(value, parents, local derivatives, name).
    def __add__(self, other):                       # d(a+b)/da = 1, d(a+b)/db = 1
        other = _lift(other)
        return Scalar(self.data + other.data, (self, other), (1.0, 1.0), "+")

    def __mul__(self, other):                       # d(ab)/da = b, d(ab)/db = a
        other = _lift(other)
        return Scalar(self.data * other.data, (self, other), (other.data, self.data), "*")

    def __truediv__(self, other):                   # d(a/b)/da = 1/b, d(a/b)/db = -a/b^2
        other = _lift(other)
        a, b = self.data, other.data
        return Scalar(_div(a, b), (self, other), (_div(1.0, b), _div(-a, b * b)), "/")

    def __pow__(self, other):
        if isinstance(other, Scalar):               # a^b: d/da = b a^(b-1), d/db = a^b ln a
            a, b = self.data, other.data
            out = _pow(a, b)
            return Scalar(out, (self, other), (_dpow(a, b), out * _log(a)), "**")
        if not isinstance(other, numbers.Real):
            return NotImplemented
        n = float(other)                            # a^n: d/da = n a^(n-1)
        return Scalar(_pow(self.data, n), (self,), (_dpow(self.data, n),), f"**{other}")

    def __rpow__(self, other):                      # c^a: d/da = c^a ln c
        if not isinstance(other, numbers.Real):
            return NotImplemented
        c = float(other)
        out = _pow(c, self.data)
        return Scalar(out, (self,), (out * _log(c),), "c**")

    def __neg__(self):                              # d(-a)/da = -1
        return Scalar(-self.data, (self,), (-1.0,), "neg")

    def exp(self):                                  # d(e^a)/da = e^a
        out = _pow(math.e, self.data) if self.data > 700 else math.exp(self.data)  # inf, not an error
        return Scalar(out, (self,), (out,), "exp")

    def log(self):                                  # d(ln a)/da = 1/a
        a = self.data
        return Scalar(_log(a), (self,), (1.0 / a if a != 0 else math.inf,), "log")

    def tanh(self):                                 # d(tanh a)/da = 1 - tanh(a)^2
        t = math.tanh(self.data)
        return Scalar(t, (self,), (1.0 - t * t,), "tanh")

    def relu(self):                                 # d(max(a, 0))/da = 1 if a > 0 else 0
        pos = self.data > 0
        return Scalar(self.data if pos else 0.0, (self,), (1.0 if pos else 0.0,), "relu")

    def sigmoid(self):                              # d(s(a))/da = s(a) (1 - s(a))
        a = self.data
        s = 1.0 / (1.0 + math.exp(-a)) if a >= 0 else math.exp(a) / (1.0 + math.exp(a))
        return Scalar(s, (self,), (s * (1.0 - s),), "sigmoid")

    # Everything else is made of the ops above.
    def __radd__(self, other): return self + other
    def __sub__(self, other): return self + (-_lift(other))
    def __rsub__(self, other): return _lift(other) + (-self)
    def __rmul__(self, other): return self * other
    def __rtruediv__(self, other): return _lift(other) / self

    # ------------------------------------------------------------ backward
    def backward(self) -> None:
        """Fill ``.grad`` of every node that ``self`` depends on with d(self)/d(node).

        Leaves (nodes made by ``Scalar(x)``) accumulate across calls, as in PyTorch:
        set ``p.grad = 0.0`` before the next step. Intermediate nodes are reset.
        """
        order = _topological_order(self)
        for node in order:                          # intermediate gradients start afresh
            if node._parents:
                node.grad = 0.0
        self.grad += 1.0                            # dL/dL = 1
        for node in reversed(order):                # outputs first, leaves last
            g = node.grad                           # dL/d(node), complete by now
            for parent, local in zip(node._parents, node._local_grads):
                parent.grad += local * g            # the chain rule, one edge at a time


def _pow(a: float, b: float) -> float:
    """a**b as PyTorch gives it: nan for (-1)**0.5, inf for 0**-1 (not an exception)."""
    try:
        return math.pow(a, b)
    except ValueError:
        return math.nan if a < 0 else math.inf
    except OverflowError:
        return math.inf


def _div(a: float, b: float) -> float:
    """a / b, with x/0 = +-inf and 0/0 = nan as in PyTorch (not ZeroDivisionError)."""
    try:
        return a / b
    except ZeroDivisionError:
        return math.nan if a == 0 or a != a else math.copysign(math.inf, a) * math.copysign(1.0, b)


def _dpow(a: float, n: float) -> float:
    """d(a**n)/da = n a**(n-1), and 0 when n == 0 (a constant, even at a = 0)."""
    return 0.0 if n == 0 else n * _pow(a, n - 1)


def _log(a: float) -> float:
    """ln a, with ln 0 = -inf and ln(negative) = nan as in PyTorch."""
    return math.log(a) if a > 0 else (-math.inf if a == 0 else math.nan)


def _lift(x) -> Scalar:
    """A plain number on either side of an op becomes a constant leaf."""
    if isinstance(x, Scalar):
        return x
    if isinstance(x, numbers.Real):
        return Scalar(x)
    raise TypeError(f"Scalar op: cannot combine a Scalar with {type(x).__name__}")


def _topological_order(root: Scalar) -> list:
    """Every node reachable from ``root``, each after all its parents.

    Depth-first post-order with an explicit stack (no recursion, so a chain of
    100,000 ops works): a node is pushed once to expand its parents, and once
    more (``done=True``) to be emitted after them.
    """
    order, seen = [], set()
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        if done:
            order.append(node)
        elif id(node) not in seen:
            seen.add(id(node))
            stack.append((node, True))
            stack.extend((p, False) for p in node._parents if id(p) not in seen)
    return order
