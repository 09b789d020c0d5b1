"""``LanguageModel``: what GPT and Llama share — the loss, generation, streaming and saving.

A subclass defines ``hidden(ids)`` (token ids (B, T) -> final hidden states (B, T, C), after
the last norm) and ``head(x)`` (-> logits). Generation runs on ``decoder()`` (models/decode.py,
built from ``state_dict()`` and the config): the one inference path.
"""
import json
import os

from ..autograd.tensor import Tensor
from ..backend import xp
from ..device import array_module, is_device_array
from ..errors import ScratchLLMError
from ..nn import Module
from ..nn import functional as F
from .decode import make_decoder, new_cache
from .generate import stream_tokens


def as_ids(ids, vocab_size: int, context=None, what: str = "model input"):
    """Token ids (list, 1-D or 2-D ints, or a Tensor) -> int64 array (B, T), checked: integers
    in [0, vocab_size), at most ``context`` positions (None: any length, a prompt, which must
    not be empty). The one check of ids for ``model(ids)``, ``generate`` and ``stream``."""
    a = ids.data if isinstance(ids, Tensor) else (ids if is_device_array(ids) else xp.asarray(ids))
    if a.ndim == 1:
        a = a[None, :]
    empty_prompt = context is None and a.ndim == 2 and a.shape[1] == 0
    if a.ndim != 2 or empty_prompt or (a.size and a.dtype.kind not in "iu"):
        rule = "a non-empty int array (T,) or (B, T)" if context is None else "integer token ids of shape (B, T)"
        raise ScratchLLMError(f"{what} must be {rule} of equal-length rows, got shape {a.shape} dtype {a.dtype}")
    if context is not None and a.shape[1] > context:
        raise ScratchLLMError(f"sequence of {a.shape[1]} tokens exceeds the model's context of {context}")
    if a.size and not is_device_array(a) and (a.min() < 0 or a.max() >= vocab_size):  # (GPU ids: no sync)
        raise ScratchLLMError(f"{what}: token ids must lie in [0, {vocab_size}), got [{a.min()}, {a.max()}]")
    return a.astype(xp.int64, copy=False)


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
        t = targets.data if isinstance(targets, Tensor) else (targets if is_device_array(targets) else xp.asarray(targets))
        if t.ndim == 1 and ids.shape[0] == 1:
            t = t[None, :]
        return logits, F.cross_entropy(logits, t)

    # ------------------------------------------------------------ inference
    def decoder(self, batch: int = 1, max_len=None):
        """The raw-array decoder over this model's weights as they are now (models/decode.py):
        ``dec.step(ids (B, T)) -> logits (B, vocab)`` of the last position, a KV cache of
        ``max_len`` positions (default: the context). With ``model.generation_quant = "q8_0"``
        (models/quant.py) its matrices are int8 (on the CPU). On a GPU the same decoder runs on
        the GPU's arrays (models/decode.py)."""
        if getattr(self, "generation_quant", None) and self.device != "cpu":
            raise ScratchLLMError(f"int8 generation ({self.generation_quant}) runs on the CPU; this model is on "
                                  f"{self.device} (set_generation_quant(model, None), or model.to('cpu'))")
        dec = make_decoder(self.config, self.state_dict(), batch, max_len or self.context_length,
                           **self.decoder_tables())
        if getattr(self, "generation_quant", None):
            from .quant import quantize_decoder
            quantize_decoder(dec, self.generation_quant)
        return dec

    def decoder_tables(self) -> dict:
        """Tables the decoder takes from the model rather than the config (Llama: its RoPE tables)."""
        return {}

    def new_cache(self, batch: int, max_len: int):
        """An empty ``KVCache`` for this model (the decoder's; serve/ keeps one per request), on its device."""
        p = next(iter(self.parameters())).data
        return new_cache(self.config, batch, max_len, p.dtype, array_module(p))

    # ------------------------------------------------------------ generation
    def generate(self, ids, max_new_tokens: int, temperature: float = 1.0, top_k=None, top_p=None, seed=None,
                 stop_tokens=()):
        """Prompt ids (T,) or (B, T) -> int64 array (B, T + new); temperature 0 is greedy.

        Stops early once every row produced one of ``stop_tokens`` (kept in the output; rows that
        finished first repeat their stop token). ``seed`` fixes the sampling (default: the global
        generator, see ``sl.manual_seed``).
        """
        prompt = as_ids(ids, self.vocab_size, what="prompt ids")
        steps = list(stream_tokens(self, prompt, max_new_tokens, temperature, top_k, top_p, seed, stop_tokens))
        if not steps:
            return prompt.copy()
        return xp.concatenate([prompt, xp.stack(steps, axis=1)], axis=1)

    def stream(self, ids, max_new_tokens: int, temperature: float = 1.0, top_k=None, top_p=None, seed=None,
               stop_tokens=()):
        """Like ``generate`` but yields each new token as it is made: an int for one prompt,
        an int64 array (B,) for a batch."""
        prompt = as_ids(ids, self.vocab_size, what="prompt ids")
        single = prompt.shape[0] == 1
        for step in stream_tokens(self, prompt, max_new_tokens, temperature, top_k, top_p, seed, stop_tokens):
            yield int(step[0]) if single else step

    # ---------------------------------------------------------------- saving
    def save_pretrained(self, folder, format: str = "scratchllm") -> None:
        """Write the model to ``folder``: ``format="scratchllm"`` (model.safetensors + config.json,
        read back by ``sl.load_model``) or ``format="hf"`` (a folder transformers loads)."""
        folder = os.fspath(folder)
        state = {k: xp.ascontiguousarray(v.get() if is_device_array(v) else v, dtype=xp.float32)
                 for k, v in self.state_dict().items()}
        if format == "hf":
            from ..io.hf import write_hf
            write_hf(folder, self.config, state)
            return
        if format != "scratchllm":
            raise ScratchLLMError(f"save_pretrained: format must be 'scratchllm' or 'hf', got {format!r}")
        from ..atomic import atomic_write
        from ..io.safetensors_file import write_safetensors
        cfg = {"format": "scratchllm", **self.config.to_dict()}
        os.makedirs(folder, exist_ok=True)
        write_safetensors(os.path.join(folder, "model.safetensors"), state,
                          metadata={"format": "scratchllm", "config": json.dumps(self.config.to_dict())})
        with atomic_write(os.path.join(folder, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
