"""Sampling the next token and the generation loop shared by GPT and Llama.

Each step turns the last position's logits (B, vocab) into one token per row:
temperature 0 takes the argmax (greedy); otherwise the logits are divided by the
temperature, cut to the ``top_k`` largest and/or the smallest set whose probability
reaches ``top_p`` (nucleus), and one token is drawn from the softmax with a seeded
``Generator``, so the same seed gives the same text.

The loop feeds the prompt once through the model's decoder (models/decode.py, the one
inference path, with a KV cache, on the CPU or on the model's GPU) and then one token per step
(each step costs one position's work). The decoder hands back host logits, so sampling runs
here, on NumPy, wherever the model lives: the same seed gives the same tokens on any device. Past the context, the model sees the last ``context_length`` tokens (nanoGPT's crop):
the one past-the-context policy (``stream_tokens``).
"""
from ..autograd.grad_mode import no_grad
from ..autograd.ops.reduce import softmax_
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
        p = softmax_(xp.take_along_axis(out, order, axis=-1))          # probabilities, descending
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
    p = softmax_(filter_logits(xp.asarray(logits, dtype=xp.float64) / temperature, top_k, top_p))
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


def stream_tokens(model, ids, max_new_tokens: int, temperature: float = 1.0, top_k=None, top_p=None,
                  seed=None, stop_tokens=()):
    """Yield (B,) int64 arrays of new tokens, one step at a time (see ``generate``); ``ids`` (B, T)
    already checked (``as_ids``)."""
    check_sampling(temperature, top_k, top_p, max_new_tokens)
    prompt = ids
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
        # then every step re-reads that window into the emptied cache.
        dec = model.decoder(B, min(T + max_new_tokens, window))
        history = prompt[:, -window:]
        logits = dec.step(history)                          # (B, V) of the last position
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
                logits = dec.step(nxt[:, None])
                filled += 1
            else:
                dec.reset()
                logits = dec.step(history)
