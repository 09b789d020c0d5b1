"""``LanguageModel``: what GPT and Llama share — the loss, generation, streaming and saving.

A subclass defines ``hidden(ids, cache)`` (token ids (B, T) -> final hidden states (B, T, C),
after the last norm), ``head(x)`` (-> logits) and ``new_cache(batch, max_len)``.
"""
import json
import os

from ..autograd.tensor import Tensor
from ..backend import xp
from ..errors import ScratchLLMError
from ..nn import Module
from ..nn import functional as F
from .generate import as_prompt, stream_tokens


def as_ids(ids, vocab_size: int, context: int):
    """Token ids (list, array or Tensor) -> int64 array (B, T), checked against vocab and context."""
    a = ids.data if isinstance(ids, Tensor) else xp.asarray(ids)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.dtype.kind not in "iu":
        raise ScratchLLMError(f"model input must be integer token ids of shape (B, T), got shape {a.shape} "
                              f"dtype {a.dtype}")
    if a.shape[1] > context:
        raise ScratchLLMError(f"sequence of {a.shape[1]} tokens exceeds the model's context of {context}")
    if a.size and (a.min() < 0 or a.max() >= vocab_size):
        raise ScratchLLMError(f"token ids must lie in [0, {vocab_size}), got [{a.min()}, {a.max()}]")
    return a


class LanguageModel(Module):
    """Base of GPT and Llama: ``model(ids)`` -> logits Tensor (B, T, vocab); with targets -> (logits, loss)."""

    config = None

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    @property
    def context_length(self) -> int:
        raise NotImplementedError

    def forward(self, ids, targets=None):
        ids = as_ids(ids, self.vocab_size, self.context_length)
        logits = self.head(self.hidden(ids))
        if targets is None:
            return logits
        t = targets.data if isinstance(targets, Tensor) else xp.asarray(targets)
        if t.ndim == 1 and ids.shape[0] == 1:
            t = t[None, :]
        return logits, F.cross_entropy(logits, t)

    def forward_cached(self, ids, cache):
        """ids (B, T) after the cache's positions -> logits (B, vocab) array of the last position."""
        T = ids.shape[1]
        x = self.hidden(ids, cache)
        cache.advance(T)
        return self.head(x[:, -1]).data

    # ------------------------------------------------------------ generation
    def generate(self, ids, max_new_tokens: int, temperature: float = 1.0, top_k=None, top_p=None, seed=None,
                 stop_tokens=()):
        """Prompt ids (T,) or (B, T) -> int64 array (B, T + new); temperature 0 is greedy.

        Stops early once every row produced one of ``stop_tokens`` (kept in the output; rows that
        finished first repeat their stop token). ``seed`` fixes the sampling (default: the global
        generator, see ``sl.manual_seed``).
        """
        prompt = as_prompt(ids, self.vocab_size)
        steps = list(stream_tokens(self, prompt, max_new_tokens, temperature, top_k, top_p, seed, stop_tokens))
        if not steps:
            return prompt.copy()
        return xp.concatenate([prompt, xp.stack(steps, axis=1)], axis=1)

    def stream(self, ids, max_new_tokens: int, temperature: float = 1.0, top_k=None, top_p=None, seed=None,
               stop_tokens=()):
        """Like ``generate`` but yields each new token as it is made: an int for one prompt,
        an int64 array (B,) for a batch."""
        prompt = as_prompt(ids, self.vocab_size)
        single = prompt.shape[0] == 1
        for step in stream_tokens(self, prompt, max_new_tokens, temperature, top_k, top_p, seed, stop_tokens):
            yield int(step[0]) if single else step

    # ---------------------------------------------------------------- saving
    def save_pretrained(self, folder, format: str = "scratchllm") -> None:
        """Write the model to ``folder``: ``format="scratchllm"`` (model.safetensors + config.json,
        read back by ``sl.load_model``) or ``format="hf"`` (a folder transformers loads)."""
        folder = os.fspath(folder)
        state = {k: xp.ascontiguousarray(v, dtype=xp.float32) for k, v in self.state_dict().items()}
        if format == "hf":
            from ..io.hf import write_hf
            write_hf(folder, self.config, state)
            return
        if format != "scratchllm":
            raise ScratchLLMError(f"save_pretrained: format must be 'scratchllm' or 'hf', got {format!r}")
        from safetensors.numpy import save

        from ..atomic import atomic_write
        cfg = {"format": "scratchllm", **self.config.to_dict()}
        os.makedirs(folder, exist_ok=True)
        blob = save(state, metadata={"format": "scratchllm", "config": json.dumps(self.config.to_dict())})
        with atomic_write(os.path.join(folder, "model.safetensors")) as f:
            f.write(blob)
        with atomic_write(os.path.join(folder, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
