"""``Dropout(p)``: active in ``train()`` mode, the identity in ``eval()`` mode."""
from . import functional as F
from .module import Module


class Dropout(Module):
    """Zeroes elements with probability p during training; masks come from ``generator``
    (the default one, seeded by ``sl.manual_seed``, unless given)."""

    def __init__(self, p: float = 0.5, generator=None):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: probability must be in [0, 1], got {p}")
        self.p = p
        self.generator = generator

    def forward(self, x):
        return F.dropout(x, self.p, self.training, self.generator)

    def extra_repr(self) -> str:
        return f"p={self.p}"
