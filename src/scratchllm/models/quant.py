"""int8 generation (Q8_0): weights and activations in int8 with one float32 scale per 32 values.

As llama2.c's ``runq.c`` does it, a matrix-vector product ``y = W x`` becomes

    x  -> xq (int8), xs:  per group of 32 inputs, s = max|x| / 127, q = round(x / s)
    W  -> wq (int8), ws:  the same per output and group of 32 inputs (when the decoder is made)
    y[o] = sum over groups g of  (sum_k xq[g,k] * wq[g,k,o]) * ws[g,o] * xs[g]
                                  ^ an exact int32 dot of 32 int8 products

so the weights take 1 + 4/32 = 1.125 bytes per value instead of 4, and a token step, which
is bound by reading the weights, reads a quarter of the bytes. An input size that is not a
multiple of 32 is padded with zeros (zeros add nothing to the dots). A model read from a Q8_0
GGUF file gets back exactly the file's int8 blocks and scales (re-quantizing d * q gives q and
d again), so its int8 path runs on the file's own weights, losslessly.

>>> w = Q8Weight.quantize(xp.ones((3, 64), dtype=xp.float32))      # W (out, in)
>>> (xp.ones((1, 64), dtype=xp.float32) @ w).tolist()              # x (N, in) @ W.T -> (N, out)
[[64.0, 64.0, 64.0]]

``Q8Weight`` stands where the decoders keep a transposed weight ``wt`` (in, out): ``x @ wt``
calls its ``__rmatmul__``, so models/decode.py runs unchanged on quantized weights
(``quantize_decoder``). The int32 dots run in a numba loop (kernels/quant_kernels.py) when
numba is there, else in NumPy: float32 products of int8 values summed 32 at a time are exact
(|sum| <= 32 * 127 * 127 < 2**24), so both give the same integers.
"""
import os

from ..backend import xp
from ..errors import ScratchLLMError

GROUP = 32
KINDS = ("q8_0",)
_CHUNK_BYTES = 1 << 20          # NumPy path: int8 weight rows converted to float32 ~1 MB at a time


def _kernel():
    """kernels/quant_kernels.py when numba can be used (``SCRATCHLLM_KERNELS`` as for the other kernels)."""
    from ..kernels import kernels
    if kernels() is None:
        return None
    try:
        from ..kernels import quant_kernels
    except ImportError:
        if os.environ.get("SCRATCHLLM_KERNELS") == "numba":
            raise
        return None
    return quant_kernels


def quantize_groups(x, group: int = GROUP):
    """Rows x (N, K) -> (q int8 (N, Kp), s float32 (N, Kp/group)), Kp = K rounded up to ``group``.

    s = max|x| / 127 per group, q = round(x / s) (half away from zero, C's roundf); an
    all-zero group has s = 0 and q = 0.
    """
    x = xp.ascontiguousarray(x, dtype=xp.float32)
    N, K = x.shape
    k = _kernel() if group == GROUP else None
    if k is not None:                                    # one pass instead of ~10 NumPy ones
        G = -(-K // group)
        q, s = xp.empty((N, G * group), dtype=xp.int8), xp.empty((N, G), dtype=xp.float32)
        k.quantize_rows(x, q, s)
        return q, s
    pad = -K % group
    if pad:
        x = xp.concatenate([x, xp.zeros((N, pad), dtype=xp.float32)], axis=1)
    g = x.reshape(N, -1, group)
    s = xp.abs(g).max(axis=-1) / xp.float32(127)                                # (N, G)
    with xp.errstate(divide="ignore", invalid="ignore"):
        r = g / s[:, :, None]
    r = xp.where(s[:, :, None] == 0, xp.float32(0), r)
    a = xp.abs(r)
    whole = xp.floor(a)
    q = (xp.sign(r) * (whole + xp.floor(2 * (a - whole)))).astype(xp.int8)     # roundf; |r| <= 127
    return q.reshape(N, -1), s.astype(xp.float32)


def quantize_columns(wt):
    """A transposed weight wt (K, O) -> (q int8 (Kp, O), s float32 (Kp/32, O)): the groups of 32
    run down the columns (along the input dimension), as ``quantize_groups`` of wt.T."""
    wt = xp.ascontiguousarray(wt, dtype=xp.float32)
    k = _kernel()
    if k is not None:
        G = -(-wt.shape[0] // GROUP)
        q, s = xp.empty((G * GROUP, wt.shape[1]), dtype=xp.int8), xp.empty((G, wt.shape[1]), dtype=xp.float32)
        k.quantize_cols(wt, q, s)
        return q, s
    q, s = quantize_groups(wt.T)
    return xp.ascontiguousarray(q.T), xp.ascontiguousarray(s.T)


def q8_matmul_numpy(xq, xs, wq, ws):
    """(N, Kp) int8 times (Kp, O) int8 with scales (N, G), (G, O) -> (N, O) float32.

    Per group an exact integer dot (a float32 GEMM of small integers), then scaled and
    summed over the groups in order, as the numba loop does.
    """
    N, Kp = xq.shape
    O = wq.shape[1]
    out = xp.empty((N, O), dtype=xp.float32)
    cols = max(1, _CHUNK_BYTES // (GROUP * 4))
    for c in range(0, O, cols):
        val = xp.zeros((N, min(cols, O - c)), dtype=xp.float32)
        for g in range(Kp // GROUP):
            rows = slice(g * GROUP, (g + 1) * GROUP)
            dots = xq[:, rows].astype(xp.float32) @ wq[rows, c:c + cols].astype(xp.float32)   # exact
            dots *= ws[g, c:c + cols]
            dots *= xs[:, g:g + 1]
            val += dots
        out[:, c:c + cols] = val
    return out


class Q8Weight:
    """A weight W (out, in) kept as its transpose (in, out) in int8: ``q`` (Kp, out) and float32
    scales ``s`` (Kp/32, out), one per group of 32 inputs of each output.

    It stands for the transposed weight (in, out) that the decoders multiply with:
    ``x (N, in) @ q8`` -> (N, out). ``shape`` is therefore (in, out).
    """

    __array_ufunc__ = None          # NumPy defers ``ndarray @ Q8Weight`` to __rmatmul__

    def __init__(self, q, s, n_in: int):
        self.q, self.s, self.n_in = q, s, n_in

    @classmethod
    def quantize(cls, w):
        """W (out, in) float -> Q8Weight."""
        w = xp.asarray(w)
        if w.ndim != 2:
            raise ScratchLLMError(f"Q8Weight.quantize: expected a matrix (out, in), got shape {w.shape}")
        return cls.from_transposed(w.T)

    @classmethod
    def from_transposed(cls, wt):
        """A decoder's transposed weight wt (in, out) -> Q8Weight of W = wt.T."""
        q, s = quantize_columns(wt)
        return cls(q, s, wt.shape[0])

    @property
    def shape(self) -> tuple:
        return (self.n_in, self.q.shape[1])

    @property
    def nbytes(self) -> int:
        return self.q.nbytes + self.s.nbytes

    def dequantize(self):
        """-> W (out, in) float32."""
        O = self.q.shape[1]
        wt = self.q.reshape(-1, GROUP, O).astype(xp.float32) * self.s[:, None, :]
        return xp.ascontiguousarray(wt.reshape(-1, O)[:self.n_in].T)

    def matmul(self, x, bias=None):
        """x (N, in) -> x W^T (+ bias) (N, out), float32 (the decoders' ``matmul(x, wt, bias=)``)."""
        y = self.__rmatmul__(x)
        if bias is not None:
            y += bias
        return y

    def __rmatmul__(self, x):
        x = xp.asarray(x, dtype=xp.float32)
        lead = x.shape[:-1]
        if x.shape[-1] != self.n_in:
            raise ScratchLLMError(f"Q8Weight: input has {x.shape[-1]} features, the weight expects {self.n_in}")
        xq, xs = quantize_groups(x.reshape(-1, self.n_in))
        k = _kernel()
        if k is not None:
            out = xp.empty((xq.shape[0], self.q.shape[1]), dtype=xp.float32)
            k.q8_matmul(xq, xs, self.q, self.s, out)
        else:
            out = q8_matmul_numpy(xq, xs, self.q, self.s)
        return out.reshape(*lead, self.q.shape[1])

    def __repr__(self) -> str:
        return f"Q8Weight(out={self.q.shape[1]}, in={self.n_in}, group={GROUP})"


class Q8Rows:
    """An embedding table (V, C) kept as Q8_0 rows; ``table[ids]`` dequantizes the rows looked up."""

    dtype = xp.dtype(xp.float32)

    def __init__(self, table):
        self.q, self.s = quantize_groups(table)                         # (V, Cp) int8, (V, Cp/32)
        self.shape = tuple(table.shape)

    @property
    def nbytes(self) -> int:
        return self.q.nbytes + self.s.nbytes

    def __getitem__(self, ids):
        q, s = self.q[ids], self.s[ids]                                 # (..., Cp), (..., G)
        rows = q.reshape(*q.shape[:-1], -1, GROUP).astype(xp.float32) * s[..., None]
        return rows.reshape(*q.shape[:-1], -1)[..., :self.shape[1]]


def _quantize_item(v):
    if isinstance(v, xp.ndarray) and v.ndim == 2 and v.dtype.kind == "f":
        return Q8Weight.from_transposed(v)
    return v


def quantize_decoder(decoder, kind: str = "q8_0"):
    """Replace a decoder's matrices (its ``head_weight`` and the 2-D arrays of ``layers``) by
    ``Q8Weight``s and its embedding table by ``Q8Rows``, in place; returns the decoder. Norm
    weights and biases stay float32 (llama2.c's runq also keeps the table quantized but
    dequantizes all of it at load; here only the rows looked up are)."""
    if kind not in KINDS:
        raise ScratchLLMError(f"quantize: kind must be one of {list(KINDS)}, got {kind!r}")
    decoder.head_weight = _quantize_item(decoder.head_weight)
    for table in ("tok", "wte"):                         # the embedding lookup table (Llama, GPT)
        if isinstance(getattr(decoder, table, None), xp.ndarray):
            setattr(decoder, table, Q8Rows(getattr(decoder, table)))
    layers = []
    for layer in decoder.layers:
        if isinstance(layer, (tuple, list)):
            layers.append(type(layer)(_quantize_item(v) for v in layer))
        elif isinstance(layer, dict):
            layers.append({k: _quantize_item(v) for k, v in layer.items()})
        else:
            for k, v in vars(layer).items():
                setattr(layer, k, _quantize_item(v))
            layers.append(layer)
    decoder.layers = layers
    return decoder


def set_generation_quant(model, kind=None):
    """``kind="q8_0"``: the model's generate()/stream() run the int8 path; None: float32 again."""
    if kind is not None and kind not in KINDS:
        raise ScratchLLMError(f"quantize: kind must be one of {list(KINDS)} or None, got {kind!r}")
    model.generation_quant = kind
    return model


def weight_bytes(decoder) -> int:
    """Bytes of the matrices a decoder holds: the embedding table it looks rows up in and the
    matrices it multiplies with (float32 arrays, or Q8Rows / Q8Weights)."""
    items = [decoder.head_weight] + [getattr(decoder, t) for t in ("tok", "wte") if hasattr(decoder, t)]
    for layer in decoder.layers:
        items += list(layer.values()) if isinstance(layer, dict) else \
            list(layer) if isinstance(layer, (tuple, list)) else list(vars(layer).values())
    return sum(v.nbytes for v in items
               if isinstance(v, (Q8Weight, Q8Rows)) or (isinstance(v, xp.ndarray) and v.ndim == 2))


__all__ = ["Q8Weight", "Q8Rows", "quantize_groups", "quantize_decoder", "set_generation_quant", "weight_bytes", "GROUP"]
