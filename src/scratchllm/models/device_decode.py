"""Generation for a model on a GPU: ``DeviceDecoder`` has the raw decoder's ``step`` / ``reset``.

The CPU decoder (models/decode.py) runs on NumPy arrays with a KV cache. On a GPU this one
keeps the tokens seen so far and runs the model's own forward (the same CuPy kernels as
training) over all of them at every step, under ``no_grad``: O(T^2) work over a generation
instead of O(T), no cache yet. The logits of the last position come back to the host (the
next token has to), so sampling is the CPU's code and greedy ids equal the CPU's.
"""
from ..autograd.grad_mode import no_grad
from ..backend import xp
from ..device import to_device, to_host


class DeviceDecoder:
    """``step(ids (B, T)) -> logits (B, vocab)`` (a host array) of the last position."""

    def __init__(self, model, batch: int, max_len: int):
        self.model, self.batch, self.max_len = model, batch, max_len
        self.device = model.device
        self.history = None                                  # (B, T) int64 on the GPU

    def step(self, ids):
        ids = to_device(xp.asarray(ids, dtype=xp.int64), self.device)
        self.history = ids if self.history is None else self._append(ids)
        with no_grad():
            logits = self.model(self.history)               # (B, T, vocab) on the GPU
        return to_host(logits.data[:, -1])                   # (B, vocab): the one copy per token

    def _append(self, ids):
        from ..device import array_module
        return array_module(ids).concatenate([self.history, ids], axis=1)

    def reset(self) -> None:
        self.history = None
