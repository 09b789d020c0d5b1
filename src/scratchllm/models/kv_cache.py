"""``KVCache``: the keys and values of every layer for the positions seen so far.

Generation feeds the prompt once (a "prefill" of T positions) and then one token per step.
Each attention layer writes its new k, v (B, n_kv_heads, T_new, head_dim) into preallocated
arrays at ``pos .. pos+T_new`` and attends over ``0 .. pos+T_new``; so a new token costs one
position's projections plus one row of attention, not a re-forward of the whole sequence.

>>> cache = KVCache(n_layers=2, batch=1, n_kv_heads=4, head_dim=16, max_len=128)
>>> k, v = cache.update(0, k_new, v_new)     # doctest: +SKIP   (B, 4, pos+T, 16) views
>>> cache.advance(T)                          # doctest: +SKIP   after the last layer
"""
from ..backend import xp
from ..errors import ScratchLLMError


class KVCache:
    """Preallocated (n_layers, 2) arrays of shape (B, n_kv_heads, max_len, head_dim)."""

    def __init__(self, n_layers: int, batch: int, n_kv_heads: int, head_dim: int, max_len: int, dtype=xp.float32,
                 module=None):
        m = module or xp                                             # the array module: CuPy for a GPU cache
        self.max_len = int(max_len)
        self.pos = 0  # positions already stored
        self.k = [m.zeros((batch, n_kv_heads, max_len, head_dim), dtype=dtype) for _ in range(n_layers)]
        self.v = [m.zeros((batch, n_kv_heads, max_len, head_dim), dtype=dtype) for _ in range(n_layers)]

    def update(self, layer: int, k, v) -> tuple:
        """Store k, v (B, Hkv, T, D) at positions pos..pos+T; -> all keys and values so far (views)."""
        T = k.shape[-2]
        end = self.pos + T
        if end > self.max_len:
            raise ScratchLLMError(f"KV cache holds {self.max_len} positions; {end} were asked for "
                                  f"(prompt + new tokens exceed the model's context)")
        self.k[layer][:, :, self.pos:end] = k
        self.v[layer][:, :, self.pos:end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]

    def advance(self, T: int) -> None:
        """Call once per forward, after every layer stored its T new positions."""
        self.pos += T
