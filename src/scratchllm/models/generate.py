"""Sampling the next token and the generation loop shared by GPT and Llama.

Each step turns the last position's logits (B, vocab) into one token per row:
temperature 0 takes the argmax (greedy); otherwise the logits are divided by the
temperature, cut to the ``top_k`` largest and/or the smallest set whose probability
reaches ``top_p`` (nucleus), and one token is drawn from the softmax with a seeded
``Generator``, so the same seed gives the same text.

The loop feeds the prompt once through the model with a ``KVCache`` and then one
token per step (each step costs one position's work), through the model's raw-array
decoder (models/decode.py) when it has one.
"""
from ..autograd.grad_mode import no_grad
from ..autograd.random import Generator, default_generator
from ..backend import xp
from ..errors import ScratchLLMError


def filter_logits(logits, top_k=None, top_p=None):
    """Set to -inf every logit outside the top_k / nucleus top_p set; logits (B, V) float, a new array.

    >>> filter_logits(xp.array([[1.0, 3.0, 2.0]]), top_k=2)
    array([[-inf,   3.,   2.]])
    """
    out = xp.array(logits, dtype=xp.float64)
    V = out.shape[-1]
    if top_k is not None and 0 < top_k < V:
        kth = xp.partition(out, V - top_k, axis=-1)[:, V - top_k][:, None]   # k-th largest per row
        out[out < kth] = -xp.inf
    if top_p is not None and top_p < 1.0:
        order = xp.argsort(-out, axis=-1, kind="stable")                       # descending
        sorted_logits = xp.take_along_axis(out, order, axis=-1)
        p = xp.exp(sorted_logits - sorted_logits[:, :1])
        p /= p.sum(axis=-1, keepdims=True)
        before = xp.cumsum(p, axis=-1) - p              # probability mass of the tokens ranked above
        drop_sorted = before >= top_p                   # keep tokens until the mass reaches top_p
        drop_sorted[:, 0] = False                       # always keep the most likely token
        drop = xp.zeros_like(drop_sorted)
        xp.put_along_axis(drop, order, drop_sorted, axis=-1)
        out[drop] = -xp.inf
    return out


def sample_next(logits, temperature: float = 1.0, top_k=None, top_p=None, generator: Generator = None):
    """One token id per row of logits (B, V) -> int64 array (B,)."""
    if temperature == 0:
        return xp.argmax(logits, axis=-1).astype(xp.int64)
    z = filter_logits(xp.asarray(logits, dtype=xp.float64) / temperature, top_k, top_p)
    z -= z.max(axis=-1, keepdims=True)
    p = xp.exp(z)
    cdf = xp.cumsum(p, axis=-1)
    u = (generator or default_generator()).rng.random((p.shape[0], 1)) * cdf[:, -1:]
    ids = (cdf <= u).sum(axis=-1)                       # first index whose cdf exceeds u
    return xp.minimum(ids, p.shape[-1] - 1).astype(xp.int64)


def check_sampling(temperature, top_k, top_p, max_new_tokens) -> None:
    if temperature is None or not temperature >= 0:      # also refuses NaN
        raise ScratchLLMError(f"temperature must be >= 0, got {temperature}")
    if top_k is not None and int(top_k) < 1:
        raise ScratchLLMError(f"top_k must be >= 1, got {top_k}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ScratchLLMError(f"top_p must be in (0, 1], got {top_p}")
    if max_new_tokens < 0:
        raise ScratchLLMError(f"max_new_tokens must be >= 0, got {max_new_tokens}")


def as_prompt(ids, vocab_size: int):
    """Prompt ids (list, 1-D or 2-D ints, or a Tensor) -> int64 array (B, T) with T >= 1."""
    a = ids.data if hasattr(ids, "data") and not isinstance(ids, xp.ndarray) else ids
    a = xp.asarray(a)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[1] == 0 or (a.size and a.dtype.kind not in "iu"):
        raise ScratchLLMError(f"prompt ids must be a non-empty int array (T,) or (B, T) of equal-length rows, "
                              f"got shape {a.shape} dtype {a.dtype}")
    if a.min() < 0 or a.max() >= vocab_size:
        raise ScratchLLMError(f"prompt ids must lie in [0, {vocab_size}), got [{a.min()}, {a.max()}]")
    return a.astype(xp.int64)


def make_step(model, batch: int, max_len: int):
    """``step(ids (B, T)) -> logits (B, V)`` of the last position, feeding a fresh KV cache.

    The model's fast raw-array decoder (models/decode.py) when it has one; the Tensor path
    ``forward_cached`` otherwise, and while dropout is active (a model in training mode).
    """
    dropout = getattr(model.config, "dropout", 0.0)
    if hasattr(model, "decoder") and not (model.training and dropout):
        return model.decoder(batch, max_len).step
    cache = model.new_cache(batch, max_len)
    return lambda ids: model.forward_cached(ids, cache)


def stream_tokens(model, ids, max_new_tokens: int, temperature: float = 1.0, top_k=None, top_p=None,
                  seed=None, stop_tokens=()):
    """Yield (B,) int64 arrays of new tokens, one step at a time (see ``generate``)."""
    check_sampling(temperature, top_k, top_p, max_new_tokens)
    prompt = as_prompt(ids, model.vocab_size)
    B, T = prompt.shape
    if max_new_tokens == 0:
        return
    window = model.context_length
    gen = Generator(seed) if seed is not None else default_generator()
    stops = xp.asarray(sorted(set(int(t) for t in stop_tokens)), dtype=xp.int64)
    done = xp.zeros(B, dtype=bool)
    last = None
    with no_grad():
        # Past the context, the model sees only the last `window` tokens (nanoGPT's crop):
        # then every step re-reads that window into a fresh cache.
        feed = make_step(model, B, min(T + max_new_tokens, window))
        history = prompt[:, -window:]
        logits = feed(history)                              # (B, V) of the last position
        filled = history.shape[1]
        for step in range(max_new_tokens):
            nxt = sample_next(logits, temperature, top_k, top_p, gen)
            if done.any():
                nxt = xp.where(done, last, nxt)             # finished rows repeat their stop token
            done |= xp.isin(nxt, stops)
            last = nxt
            yield nxt
            if done.all() or step == max_new_tokens - 1:
                return
            history = xp.concatenate([history[:, 1 - window:] if window > 1 else history[:, :0], nxt[:, None]], axis=1)
            if filled < window:
                logits = feed(nxt[:, None])
                filled += 1
            else:
                feed = make_step(model, B, window)
                logits = feed(history)
