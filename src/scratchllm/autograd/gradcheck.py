"""``grad_check``: compare backward() with finite differences, in float64.

For every input x that requires grad and every element x[k], the numerical
derivative of every output element y[j] is the central difference

    dy[j]/dx[k]  ~  (y(x + eps e_k)[j] - y(x - eps e_k)[j]) / (2 eps)      (error O(eps^2))

and the analytical one is what backward() gives when the upstream gradient is
the one-hot vector e_j. Both full Jacobians must agree elementwise within
``atol + rtol * |numeric|`` (the rule of torch.autograd.gradcheck).

>>> x = Tensor([[0.1, 0.2], [0.3, 0.4]], requires_grad=True)
>>> grad_check(lambda a: (a @ a).tanh().sum(), x)
True
"""
from __future__ import annotations

from ..backend import xp
from .grad_mode import enable_grad, no_grad
from .tensor import Tensor


def grad_check(fn, *inputs, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-4) -> bool:
    """Check the gradients of ``fn(*inputs)`` w.r.t. every input Tensor that requires grad.

    ``fn`` returns a Tensor or a tuple/list of Tensors. Inputs are copied to float64
    (the originals are left untouched); anything that is not a floating-point Tensor
    (integer ids, masks, numbers) is passed through unchanged. Returns True, or raises
    AssertionError naming the worst mismatch: input index, element, output, analytic and
    numeric values.
    """
    args = [_as_float64(a) for a in inputs]
    wrt = [i for i, a in enumerate(args) if isinstance(a, Tensor) and a.requires_grad]
    if not wrt:
        raise ValueError("grad_check: no input Tensor has requires_grad=True, nothing to check")

    with enable_grad():
        outputs = _outputs(fn(*args))
    analytic = _analytic_jacobians(outputs, [args[i] for i in wrt])
    for i, jac in zip(wrt, analytic):
        numeric = _numeric_jacobian(fn, args, args[i], eps)  # (total output size, x.size)
        _compare(jac, numeric, atol, rtol, i, args[i].data.shape, outputs)
    return True


def _as_float64(a):
    if isinstance(a, Tensor) and a.data.dtype.kind == "f":
        return Tensor(a.data.astype(xp.float64), requires_grad=a.requires_grad)
    return a


def _outputs(out) -> list:
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    for k, o in enumerate(outs):
        if not isinstance(o, Tensor):
            raise TypeError(f"grad_check: fn must return a Tensor or a tuple of Tensors; output {k} "
                            f"is {type(o).__name__}")
    return outs


def _analytic_jacobians(outputs, xs):
    """For each x: row j = d(output element j)/dx, by one backward pass per output element."""
    total = sum(o.data.size for o in outputs)
    jacs = [xp.zeros((total, x.data.size), dtype=xp.float64) for x in xs]
    row = 0
    for o in outputs:
        if not o.requires_grad:      # output independent of every input: zero rows
            row += o.data.size
            continue
        for j in range(o.data.size):
            onehot = xp.zeros(o.data.size, dtype=o.data.dtype)
            onehot[j] = 1.0
            for x in xs:
                x.grad = None
            o.backward(onehot.reshape(o.data.shape), retain_graph=True)
            for x, jac in zip(xs, jacs):
                if x.grad is not None:
                    jac[row + j] = x.grad.data.reshape(-1)
        row += o.data.size
    for x in xs:
        x.grad = None
    return jacs


def _numeric_jacobian(fn, args, x: Tensor, eps: float):
    """Column k = (f(x + eps e_k) - f(x - eps e_k)) / 2 eps, evaluated without a graph."""
    data, cols = x.data, []
    with no_grad():
        for k in range(data.size):
            at = xp.unravel_index(k, data.shape)     # element k in C order (as reshape(-1))
            orig = data[at]
            data[at] = orig + eps
            plus = _flat_outputs(fn(*args))
            data[at] = orig - eps
            minus = _flat_outputs(fn(*args))
            data[at] = orig                          # restored exactly
            cols.append((plus - minus) / (2.0 * eps))
    return xp.stack(cols, axis=1)


def _flat_outputs(out):
    return xp.concatenate([o.data.astype(xp.float64).reshape(-1) for o in _outputs(out)])


def _compare(analytic, numeric, atol, rtol, index, shape, outputs) -> None:
    diff = xp.abs(analytic - numeric)
    excess = diff - (atol + rtol * xp.abs(numeric))
    excess = xp.where(xp.isnan(excess), xp.inf, excess)  # nan on either side is a failure
    if not (excess > 0).any():
        return
    row, col = xp.unravel_index(int(xp.argmax(excess)), excess.shape)
    element = tuple(int(e) for e in xp.unravel_index(col, shape)) if shape else ()
    out_k, out_elem = _locate_output(int(row), outputs)
    bad = int((excess > 0).sum())
    raise AssertionError(
        f"grad_check: gradient mismatch for input {index} (shape {tuple(shape)}) at element {element}, "
        f"output {out_k} element {out_elem}: analytic {float(analytic[row, col])!r} vs numeric "
        f"{float(numeric[row, col])!r} (|diff| {diff[row, col]:.3g} > atol {atol:g} + rtol {rtol:g} * |numeric|); "
        f"{bad} of {excess.size} Jacobian entries differ")


def _locate_output(row: int, outputs):
    """Flat Jacobian row -> (output index, element index within that output)."""
    for k, o in enumerate(outputs):
        if row < o.data.size:
            return k, tuple(int(e) for e in xp.unravel_index(row, o.data.shape)) if o.data.shape else ()
        row -= o.data.size
    raise IndexError(row)
