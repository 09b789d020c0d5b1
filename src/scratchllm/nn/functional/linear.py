"""``linear(x, weight, bias)``: y = x W^T + b as one op with its own backward.

The batch dimensions are folded into one 2-D GEMM both ways, so
x (B, T, in) with W (out, in) costs exactly three matrix products:

    forward   y2d = x2d @ W.T            (B*T, out)
    backward  dx2d = g2d @ W             (B*T, in)
              dW   = g2d.T @ x2d         (out, in)   one GEMM, not a batched sum
              db   = 1^T g2d             (out,)      column sums, as a (1, N) @ (N, out) product

On big inputs the forward product is cut into row chunks for the thread pool (each adds the
bias to its rows), and backward puts the row chunks of dx, dW and db in one job queue
(``scratchllm.parallel.matmul`` / ``matmuls``).
"""
from ...autograd.tensor import make_result
from ...backend import xp
from ...parallel import matmul, matmuls
from . import cuda_ops
from ._util import as_tensor, as_float_tensor


def linear(x, weight, bias=None):
    """``x @ weight.T + bias`` for x (..., in), weight (out, in), bias (out,) or None."""
    x = as_float_tensor(x)
    X, W = x.data, weight.data
    if X.__class__ is not xp.ndarray or W.__class__ is not xp.ndarray:   # on a GPU: cuda_ops.py
        return cuda_ops.linear(x, weight, None if bias is None else as_tensor(bias))
    if W.ndim != 2 or X.shape[-1] != W.shape[1]:
        raise ValueError(f"linear: input of shape {X.shape} does not match weight of shape {W.shape} "
                         f"(expected input (..., {W.shape[-1]}) and weight (out_features, in_features))")
    lead = X.shape[:-1]
    x2d = X.reshape(-1, X.shape[-1])                     # (N, in)
    if bias is not None:
        bias = as_tensor(bias)
    out = matmul(x2d, W.T, bias=None if bias is None else bias.data)  # (N, out)
    out = out.reshape(lead + (W.shape[0],))
    parents = (x, weight) if bias is None else (x, weight, bias)

    def backward(g):
        g2d = g.reshape(-1, g.shape[-1])                 # (N, out)
        want = [x.requires_grad, weight.requires_grad, bias is not None and bias.requires_grad]
        products = [(g2d, W), (g2d.T, x2d), (xp.ones((1, g2d.shape[0]), dtype=g2d.dtype), g2d)]
        outs = iter(matmuls([p for p, w in zip(products, want) if w]))   # one job queue
        dx, dw, db = (next(outs) if w else None for w in want)
        dx = dx.reshape(X.shape) if dx is not None else None
        db = db.reshape(-1) if db is not None else None   # 1^T g: the column sums of g
        return (dx, dw) if bias is None else (dx, dw, db)

    return make_result(out, parents, backward, "linear")
