"""GGML's tensor types: how many bytes a block of values takes, and how a block becomes floats.

A GGUF tensor's data is a run of blocks along its first (fastest) dimension. Plain types are
blocks of one value (F32: 4 bytes, F16 and BF16: 2 bytes). Quantized types pack ``block_size``
values into a few bytes with shared scales:

    Q8_0  32 values, 34 bytes:  f16 d | int8 q[32]                      x = d * q
    Q4_0  32 values, 18 bytes:  f16 d | 16 bytes of nibbles             x = d * (q - 8)
          (byte j holds value j in its low nibble and value j + 16 in its high nibble)
    Q4_K  256 values, 144 bytes: f16 d | f16 dmin | 12 bytes of 6-bit scales and mins for
          8 sub-blocks of 32 | 128 bytes of nibbles (64 values per 32 bytes: low nibbles
          first, then high)                                          x = d*sc * q - dmin*m
    Q6_K  256 values, 210 bytes: 128 bytes low 4 bits | 64 bytes high 2 bits | int8 scales[16]
          (one per 16 values) | f16 d                                x = d*sc * (q - 32)

>>> blocks = quantize_q8_0(xp.linspace(-1, 1, 64, dtype=xp.float32))
>>> blocks.shape                                   # 2 blocks of 34 bytes
(2, 34)
>>> float(abs(dequantize(blocks.reshape(-1), Q8_0, 64) - xp.linspace(-1, 1, 64)).max()) < 0.005
True
"""
from ..backend import xp

F32, F16, Q4_0, Q8_0, Q4_K, Q6_K, BF16 = 0, 1, 2, 8, 12, 14, 30
NAMES = {F32: "F32", F16: "F16", Q4_0: "Q4_0", Q8_0: "Q8_0", Q4_K: "Q4_K", Q6_K: "Q6_K", BF16: "BF16"}
# type -> (values per block, bytes per block)
BLOCKS = {F32: (1, 4), F16: (1, 2), BF16: (1, 2), Q4_0: (32, 18), Q8_0: (32, 34), Q4_K: (256, 144),
          Q6_K: (256, 210)}
# the types GGML knows but this reader does not dequantize (for the error message)
OTHER_NAMES = {3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 9: "Q8_1", 10: "Q2_K", 11: "Q3_K", 13: "Q5_K", 15: "Q8_K",
               16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S",
               22: "IQ2_S", 23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64", 29: "IQ1_M",
               34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4"}


def type_name(t: int) -> str:
    return NAMES.get(t) or OTHER_NAMES.get(t) or f"type {t}"


def nbytes(t: int, n_values: int) -> int:
    """Bytes that ``n_values`` values of type ``t`` take (n_values a multiple of the block size)."""
    size, block_bytes = BLOCKS[t]
    return n_values // size * block_bytes


def _f16(b):
    """(n, 2) uint8 -> (n, 1) float32."""
    return xp.ascontiguousarray(b).view(xp.float16).astype(xp.float32)


def _q8_0(b):
    return _f16(b[:, :2]) * b[:, 2:].view(xp.int8).astype(xp.float32)           # (n, 32)


def _q4_0(b):
    q = b[:, 2:]
    q = xp.concatenate([q & 0x0F, q >> 4], axis=1).astype(xp.int8) - 8          # (n, 32)
    return _f16(b[:, :2]) * q.astype(xp.float32)


def _k_scales(s):
    """Q4_K's 12 bytes -> 8 six-bit scales and 8 six-bit mins, each (n, 8).

    bytes 0-3: scales 0-3 (low 6 bits), bytes 4-7: mins 0-3 (low 6 bits); bytes 8-11: low
    nibble = scale 4+j's low 4 bits, high nibble = min 4+j's low 4 bits; the top 2 bits of
    bytes 0-3 / 4-7 are the high bits of scales / mins 4-7.
    """
    d, m, md = s[:, 0:4], s[:, 4:8], s[:, 8:12]
    sc = xp.concatenate([d & 0x3F, (md & 0x0F) | ((d >> 2) & 0x30)], axis=1)
    mn = xp.concatenate([m & 0x3F, (md >> 4) | ((m >> 2) & 0x30)], axis=1)
    return sc.astype(xp.float32), mn.astype(xp.float32)


def _q4_k(b):
    n = b.shape[0]
    d, dmin = _f16(b[:, 0:2]), _f16(b[:, 2:4])
    sc, mn = _k_scales(b[:, 4:16])
    qs = b[:, 16:].reshape(n, 4, 1, 32) >> xp.array([0, 4], dtype=xp.uint8).reshape(1, 1, 2, 1)
    q = (qs & 0x0F).reshape(n, 8, 32).astype(xp.float32)                         # sub-block j, value i
    return ((d * sc)[:, :, None] * q - (dmin * mn)[:, :, None]).reshape(n, 256)


def _q6_k(b):
    n = b.shape[0]
    ql, qh, sc, d = b[:, :128], b[:, 128:192], b[:, 192:208], _f16(b[:, 208:210])
    lo = (ql.reshape(n, 2, 1, 64) >> xp.array([0, 4], dtype=xp.uint8).reshape(1, 1, 2, 1)) & 0x0F
    hi = (qh.reshape(n, 2, 1, 32) >> xp.array([0, 2, 4, 6], dtype=xp.uint8).reshape(1, 1, 4, 1)) & 0x03
    q = (lo.reshape(n, 8, 32) | (hi.reshape(n, 8, 32) << 4)).astype(xp.int8) - 32   # (n, 8, 32)
    scale = d * sc.view(xp.int8).astype(xp.float32)                                 # (n, 16)
    return (scale.reshape(n, 16, 1) * q.reshape(n, 16, 16).astype(xp.float32)).reshape(n, 256)


_BLOCK_DEQUANT = {Q8_0: _q8_0, Q4_0: _q4_0, Q4_K: _q4_k, Q6_K: _q6_k}


def dequantize(raw, t: int, n_values: int):
    """Raw bytes (uint8 array of ``nbytes(t, n_values)``) -> float32 array (n_values,)."""
    if t == F32:
        return raw.view(xp.dtype("<f4")).astype(xp.float32)
    if t == F16:
        return raw.view(xp.dtype("<f2")).astype(xp.float32)
    if t == BF16:
        return (raw.view(xp.dtype("<u2")).astype(xp.uint32) << 16).view(xp.float32)
    size, block_bytes = BLOCKS[t]
    blocks = raw.reshape(n_values // size, block_bytes)
    out = xp.empty((blocks.shape[0], size), dtype=xp.float32)
    step = max(1, (1 << 22) // size)                          # ~16 MB of float32 temporaries at a time
    with xp.errstate(invalid="ignore", over="ignore"):        # a float16 scale may be inf/NaN: as GGML
        for i in range(0, blocks.shape[0], step):
            out[i:i + step] = _BLOCK_DEQUANT[t](blocks[i:i + step])
    return out.reshape(-1)


def round_away(x):
    """Round half away from zero (C's roundf), as GGML's quantizers do (exact: no ``+ 0.5``,
    which rounds 0.49999997 up in float32)."""
    a = xp.abs(x)
    whole = xp.floor(a)
    return xp.sign(x) * (whole + xp.floor(2 * (a - whole)))


def quantize_q8_0(x):
    """float32 values (n, a multiple of 32) -> Q8_0 blocks (n/32, 34) uint8, bit for bit as GGML.

    d = max|x| / 127 per block, q = round(x / d) (half away from zero), d stored as float16.
    """
    blocks = xp.asarray(x, dtype=xp.float32).reshape(-1, 32)
    d = xp.abs(blocks).max(axis=1, keepdims=True) / xp.float32(127)
    with xp.errstate(divide="ignore"):
        inv = xp.where(d == 0, xp.float32(0), xp.float32(1) / d)
    q = round_away(blocks * inv).astype(xp.int8)
    return xp.concatenate([d.astype(xp.float16).view(xp.uint8), q.view(xp.uint8)], axis=1)


def encode_plain(x, t: int):
    """float32 array -> raw little-endian bytes of type F32 or F16 (uint8 array)."""
    dtype = {F32: "<f4", F16: "<f2"}[t]
    return xp.ascontiguousarray(x, dtype=xp.dtype(dtype)).reshape(-1).view(xp.uint8)
