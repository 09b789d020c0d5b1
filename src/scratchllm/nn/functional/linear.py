"""``linear(x, weight, bias)``: y = x W^T + b as one op with its own backward.

The batch dimensions are folded into one 2-D GEMM both ways, so
x (B, T, in) with W (out, in) costs exactly three matrix products:

    forward   y2d = x2d @ W.T            (B*T, out)
    backward  dx2d = g2d @ W             (B*T, in)
              dW   = g2d.T @ x2d         (out, in)   one GEMM, not a batched sum
              db   = g2d.sum(0)          (out,)
"""
from ...autograd.tensor import make_result
from ._threads import matmul, matmuls
from ._util import as_tensor, as_float_tensor


def linear(x, weight, bias=None):
    """``x @ weight.T + bias`` for x (..., in), weight (out, in), bias (out,) or None."""
    x = as_float_tensor(x)
    X, W = x.data, weight.data
    if W.ndim != 2 or X.shape[-1] != W.shape[1]:
        raise ValueError(f"linear: input of shape {X.shape} does not match weight of shape {W.shape} "
                         f"(expected input (..., {W.shape[-1]}) and weight (out_features, in_features))")
    lead = X.shape[:-1]
    x2d = X.reshape(-1, X.shape[-1])                     # (N, in)
    out = matmul(x2d, W.T)                                     # (N, out)
    if bias is not None:
        bias = as_tensor(bias)
        out += bias.data
    out = out.reshape(lead + (W.shape[0],))
    parents = (x, weight) if bias is None else (x, weight, bias)

    def backward(g):
        g2d = g.reshape(-1, g.shape[-1])                 # (N, out)
        if x.requires_grad and weight.requires_grad:
            dx, dw = matmuls([(g2d, W), (g2d.T, x2d)])  # side by side, one core each
            dx = dx.reshape(X.shape)
        else:
            dx = matmul(g2d, W).reshape(X.shape) if x.requires_grad else None
            dw = matmul(g2d.T, x2d) if weight.requires_grad else None
        if bias is None:
            return dx, dw
        return dx, dw, (g2d.sum(axis=0) if bias.requires_grad else None)

    return make_result(out, parents, backward, "linear")
