"""Matrix products: ``matmul`` (batched, broadcast) and ``einsum``."""
from ...backend import xp
from ..tensor import make_result
from .elementwise import _pair


def _mm(a, b):
    """a @ b with a (..., K) and b (K, N) done as ONE 2-D BLAS call (no per-batch loop)."""
    if b.ndim == 2 and a.ndim > 2:
        return (a.reshape(-1, a.shape[-1]) @ b).reshape(a.shape[:-1] + (b.shape[1],))
    return a @ b


def matmul(a, b):
    a, b = _pair(a, b)
    A, B = a.data, b.data
    try:
        out = _mm(A, B)
    except ValueError:
        raise ValueError(f"matmul: shapes {A.shape} and {B.shape} are not aligned (inner dims must match)") from None

    def backward(g):
        if A.ndim == 1 and B.ndim == 1:                  # dot product
            return g * B, g * A
        A2 = A[None, :] if A.ndim == 1 else A            # (..., M, K)
        B2 = B[:, None] if B.ndim == 1 else B            # (..., K, N)
        g2 = g
        if A.ndim == 1:
            g2 = xp.expand_dims(g2, -2)
        if B.ndim == 1:
            g2 = xp.expand_dims(g2, -1)                  # (..., M, N)
        ga = gb = None
        if a.requires_grad:                              # dA = dC B^T
            ga = _mm(g2, B2.swapaxes(-1, -2))
            if A.ndim == 1:
                ga = ga[..., 0, :]
        if b.requires_grad:                              # dB = A^T dC
            if B2.ndim == 2 and A2.ndim > 2:             # fold the batch into one GEMM
                gb = A2.reshape(-1, A2.shape[-1]).T @ g2.reshape(-1, g2.shape[-1])
            else:
                gb = A2.swapaxes(-1, -2) @ g2
            if B.ndim == 1:
                gb = gb[..., 0]
        return ga, gb

    return make_result(out, (a, b), backward, "matmul")


def einsum(equation, *operands):
    """``einsum("bik,bkj->bij", a, b)`` with gradients.

    The gradient of operand i is the einsum of the upstream gradient with the
    other operands, producing operand i's subscripts; indices that only operand i
    has are summed away in the forward, so their gradient is broadcast back.
    """
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    eq = equation.replace(" ", "")
    if "..." in eq:
        raise NotImplementedError("einsum: '...' is not supported; write the batch indices out")
    if "->" not in eq:
        raise ValueError("einsum: give the output subscripts explicitly, e.g. 'ij,jk->ik'")
    lhs, out_sub = eq.split("->")
    in_subs = lhs.split(",")
    if len(in_subs) != len(operands):
        raise ValueError(f"einsum: '{equation}' names {len(in_subs)} operands but {len(operands)} were given")
    for sub in in_subs:
        if len(set(sub)) != len(sub):
            raise NotImplementedError(f"einsum: repeated index within one operand ('{sub}') is not supported")
    arrays = [t.data for t in operands]
    try:
        out = xp.einsum(eq, *arrays, optimize=True)
    except ValueError as e:
        raise ValueError(f"einsum '{equation}' on shapes {[x.shape for x in arrays]}: {e}") from None

    def backward(g):
        grads = []
        for i, (t, sub) in enumerate(zip(operands, in_subs)):
            if not t.requires_grad:
                grads.append(None)
                continue
            others = [s for j, s in enumerate(in_subs) if j != i]
            known = set(out_sub).union(*others) if others else set(out_sub)
            target = "".join(c for c in sub if c in known)
            gi = xp.einsum(",".join([out_sub] + others) + "->" + target, g,
                           *[arrays[j] for j in range(len(arrays)) if j != i], optimize=True)
            if target != sub:  # broadcast over indices summed away in the forward
                gi = xp.broadcast_to(xp.expand_dims(gi, tuple(k for k, c in enumerate(sub) if c not in known)),
                                     t.data.shape)
            grads.append(gi)
        return tuple(grads)

    return make_result(out, tuple(operands), backward, "einsum")
