"""``Embedding``: a lookup table of ``num_embeddings`` vectors, N(0, 1) at start as torch."""
from . import functional as F
from ._init import normal_param
from .module import Module


class Embedding(Module):
    """ids (any shape, ints) -> (*ids.shape, embedding_dim).

    >>> Embedding(10, 4)([[1, 2, 3]]).shape
    (1, 3, 4)
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, dtype=None, generator=None):
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = normal_param((num_embeddings, embedding_dim), 1.0, dtype, generator)

    def forward(self, ids):
        return F.embedding(ids, self.weight)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}"
