"""bfloat16 as uint16 bits (kernels/cuda_kernels.py, for ``sl.amp.autocast("bfloat16")`` on a GPU):
the conversion math, on the CPU in NumPy, bit for bit against torch's bfloat16.

Rounding to nearest even is checked on random bit patterns of every exponent (normal numbers,
subnormals, infinities, NaNs), on exact ties with an even and with an odd kept bit, and at the
edges where the carry reaches the exponent (the largest finite float32 rounds to inf, as torch).
NaNs: every NaN becomes 0x7FC0 (torch's CPU path writes 0xFFFF: a NaN too; only NaN-ness is
compared with torch there). Decoding is exact: all 65,536 bit patterns against torch.
"""
import numpy as np
import torch

from scratchllm.kernels.cuda_kernels import bf16_reference, bf16_to_f32_reference


def torch_bits(x):
    return torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)


def _is_nan_bits(b):
    return ((b & 0x7F80) == 0x7F80) & ((b & 0x007F) != 0)


def _check(x):
    ours, ref = bf16_reference(x), torch_bits(x)
    assert ours.dtype == np.uint16 and ours.shape == x.shape
    nan = np.isnan(x)
    np.testing.assert_array_equal(ours[~nan], ref[~nan])
    assert np.all(ours[nan] == 0x7FC0) and np.all(_is_nan_bits(ref[nan]))


def test_random_bit_patterns_round_like_torch():
    bits = np.random.default_rng(0).integers(0, 2 ** 32, size=1_000_000, dtype=np.uint64).astype(np.uint32)
    x = bits.view(np.float32)
    assert np.isnan(x).any() and (np.abs(x) < np.finfo(np.float32).tiny).any()       # NaNs and subnormals among them
    _check(x)


def test_ties_round_to_even():
    rng = np.random.default_rng(1)
    kept = rng.integers(0, 2 ** 16, size=20_000, dtype=np.uint32)
    kept = kept[(kept & 0x7F80) != 0x7F80]                     # finite (the exponent is not all ones)
    ties = ((kept << 16) | 0x8000).view(np.float32)          # exactly half way between two bfloat16s
    ours = bf16_reference(ties)
    np.testing.assert_array_equal(ours, kept + (kept & 1))  # odd kept bit rounds up, even stays
    _check(ties)
    near = np.concatenate([((kept << 16) | 0x7FFF).view(np.float32), ((kept << 16) | 0x8001).view(np.float32)])
    _check(near)                                             # just below and just above the tie


def test_special_values_like_torch():
    f = np.finfo(np.float32)
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, f.max, -f.max, f.tiny, -f.tiny, f.smallest_subnormal,
                  -f.smallest_subnormal, 1e-40, -1e-40, 1.0, -1.0, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 65504.0, 3.3895314e38,
                  np.float32(np.uint32(0x7F7F8000).view(np.float32)), np.uint32(0x007F8000).view(np.float32),
                  np.uint32(0x7FC00001).view(np.float32), np.uint32(0xFF800001).view(np.float32)], np.float32)
    _check(x)
    assert bf16_reference(np.float32([f.max]))[0] == 0x7F80                        # rounds up to inf
    assert bf16_reference(np.float32([1 + 2 ** -8, 1 + 3 * 2 ** -8])).tolist() == [0x3F80, 0x3F82]   # ties to even
    assert bf16_reference(np.uint32([0x007F8000]).view(np.float32))[0] == 0x0080   # subnormal tie -> smallest normal


def test_decoding_is_exact_for_every_bit_pattern():
    b = np.arange(2 ** 16, dtype=np.uint32).astype(np.uint16)
    ours = bf16_to_f32_reference(b)
    ref = torch.from_numpy(b.view(np.int16).copy()).view(torch.bfloat16).float().numpy()
    assert ours.dtype == np.float32
    np.testing.assert_array_equal(ours.view(np.uint32), ref.view(np.uint32))
    finite = ~_is_nan_bits(b)
    np.testing.assert_array_equal(bf16_reference(ours)[finite], b[finite])          # a round trip


def test_rounding_error_is_at_most_half_an_ulp():
    x = np.random.default_rng(2).standard_normal(100_000).astype(np.float32) * 1e3
    back = bf16_to_f32_reference(bf16_reference(x)).astype(np.float64)
    ulp = np.exp2(np.floor(np.log2(np.abs(x.astype(np.float64)))) - 7)            # bfloat16 keeps 8 bits
    assert np.all(np.abs(back - x) <= ulp / 2)
