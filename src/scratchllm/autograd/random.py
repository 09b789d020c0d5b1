"""Seeded random numbers: ``sl.manual_seed`` and ``sl.Generator``.

Every random draw in scratchllm (weights, dropout masks, batches, sampling)
comes from a ``Generator``; one seed therefore fixes a whole run. The state is
a plain dict of ints, so it can be stored in a JSON checkpoint for exact
resume.
"""
from ..backend import xp


class Generator:
    """A seeded source of random arrays (NumPy's PCG64 underneath).

    >>> g = Generator(0); a = g.normal((2, 3)); g.manual_seed(0)
    >>> bool((g.normal((2, 3)) == a).all())
    True
    """

    def __init__(self, seed: int = 0):
        self.manual_seed(seed)

    def manual_seed(self, seed: int) -> "Generator":
        self.seed = int(seed)
        self.rng = xp.random.Generator(xp.random.PCG64(self.seed))
        return self

    def get_state(self) -> dict:
        return {"seed": self.seed, "bit_generator": self.rng.bit_generator.state}

    def set_state(self, state: dict) -> None:
        self.seed = int(state["seed"])
        self.rng = xp.random.Generator(xp.random.PCG64())
        self.rng.bit_generator.state = state["bit_generator"]

    # draws, float64 underneath and cast, so float32 and float64 runs see the same numbers
    def normal(self, shape, mean=0.0, std=1.0, dtype=xp.float32):
        return (self.rng.standard_normal(shape) * std + mean).astype(dtype, copy=False)

    def uniform(self, shape, low=0.0, high=1.0, dtype=xp.float32):
        return self.rng.uniform(low, high, shape).astype(dtype, copy=False)

    def integers(self, low, high=None, size=None):
        return self.rng.integers(low, high, size=size, dtype=xp.int64)


_default = Generator(0)


def default_generator() -> Generator:
    return _default


def manual_seed(seed: int) -> Generator:
    """Seed the default generator (as ``torch.manual_seed``) and return it."""
    return _default.manual_seed(seed)
