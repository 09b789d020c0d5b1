"""The model side of serving: a scheduler thread that decodes every active request together.

This is the one module of ``serve/`` that touches the model; the rest speaks token ids.

Continuous batching (llama.cpp's server does the same): requests wait in a FIFO queue; between
two decoding steps the scheduler admits waiting requests into free slots (up to ``slots`` at
once), feeds each new prompt through the model on its own (the "prefill", which also gives its
first token), and then advances all active requests by one token with ONE forward of B rows,
each row with its own position and its own KV cache. A finished, stopped or cancelled request
leaves between two steps and its slot goes to the next in the queue::

    step:   rows = [req_a (pos 17), req_b (pos 5), req_c (pos 230)]
            ids (3, 1) -> one forward: every weight matrix is read once for the 3 rows
            -> logits (3, vocab) -> one sampled token per row, sent to each client

At batch 1 a step is bound by reading the weights, so B rows cost little more than one: that
is where the throughput of concurrent clients comes from.

How the batched step is built on the model's decoder (models/decode.py, ``model.decoder()``):
the decoder's math is used as is (no formula is repeated here); only two things are swapped on
one decoder instance, ``BatchedBackend``:

- its position tables (``positions`` for GPT, ``cos``/``sin`` for Llama) by ``_RowTable``, which
  hands each row the rows of its own positions;
- its ``attention(layer, q, k, v)`` by a loop that points the decoder's ``cache`` at each row's
  own ``KVCache`` (``model.new_cache(1, n)``) and calls the original attention for that row.

models/decode.py lists these hooks as kept stable for this module. A probe at start-up still
checks the batched step against plain ``model.decoder(1, n)`` on two prompts of different
lengths; if it does not match (or the decoder's insides changed shape), the engine falls back to
``SerialBackend`` (``scratchllm serve`` says so at start and in /health): one decoder per
request, stepped in turn, a fair round-robin (each active request gets one token per round)
with no batching gain.

Determinism: a forward always has at least two rows (a lone row is computed twice), because
BLAS computes a one-row product with GEMV and a many-row one with GEMM, whose rounding differs;
with GEMM every row's result is bitwise independent of the other rows. So a request's reply
does not depend on which other requests happen to run beside it.
"""
from __future__ import annotations

import collections
import itertools
import secrets
import threading
from dataclasses import dataclass

from ..autograd.grad_mode import no_grad
from ..autograd.random import Generator
from ..backend import xp
from ..errors import ScratchLLMError
from ..models.generate import check_sampling, sample_next


@dataclass
class SamplingParams:
    """How one request samples; ``stop_ids`` end the reply (the stop token is not part of it)."""
    max_tokens: int = 128
    temperature: float = 1.0
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    stop_ids: frozenset = frozenset()


class QueueFull(ScratchLLMError):
    """More requests wait than the server accepts."""


class Request:
    """One generation. The engine calls ``emit(kind, value)`` from its thread:
    ("token", id) for each new token, then once ("done", "stop" | "length" | "cancelled")
    or ("error", message)."""

    _counter = itertools.count()

    def __init__(self, prompt_ids, params: SamplingParams, emit):
        self.id = next(Request._counter)
        self.prompt = xp.asarray(list(prompt_ids), dtype=xp.int64)
        self.params = params
        self._emit = emit
        self.cancelled = False
        self.generated = 0
        self.last = None
        self.state = None                       # the backend's per-request state (a KV cache)
        seed = params.seed if params.seed is not None else secrets.randbits(63)
        self.generator = Generator(seed)

    def cancel(self) -> None:
        """Ask the engine to drop this request (its slot is freed before the next step)."""
        self.cancelled = True

    def emit(self, kind: str, value) -> None:
        try:
            self._emit(kind, value)
        except Exception:  # noqa: BLE001  a receiver that fails (its client is gone) ends the request
            self.cancelled = True


# ------------------------------------------------------------------------------ backends
class _NoCache:
    """The batched decoder's ``cache`` between rows: position 0, and advancing does nothing
    (each row's own cache advances after the forward)."""
    pos = 0

    def advance(self, T: int) -> None:
        pass


class _RowTable:
    """Stands in for a decoder's position table: ``table[0:T]`` -> the rows' own positions."""

    def __init__(self, table, owner: "BatchedBackend"):
        self.table, self.owner = table, owner

    def __getitem__(self, key):
        if not isinstance(key, slice):
            return self.table[key]
        starts = self.owner.starts                              # (B,) each row's first position
        T = key.stop - key.start
        if T > 1:                                               # a prefill: one prompt (B == 1)
            s = int(starts[0])
            return self.table[s + key.start:s + key.stop]       # (T, ...)
        return self.table[starts][:, None]                      # (B, 1, ...) one position per row


class BatchedBackend:
    """One forward for many requests, each with its own KV cache and positions (see the module doc)."""

    name = "continuous batching"

    def __init__(self, model):
        self.model = model
        self.dec = model.decoder(1, 1)
        names = [n for n in ("positions", "cos", "sin") if isinstance(getattr(self.dec, n, None), xp.ndarray)]
        if not names or not callable(getattr(self.dec, "attention", None)) or not hasattr(self.dec, "cache"):
            raise ScratchLLMError("the model's decoder has no position tables / attention to batch over")
        for n in names:
            setattr(self.dec, n, _RowTable(getattr(self.dec, n), self))
        self.rows, self.starts = [], xp.zeros(1, dtype=xp.int64)
        self._no_cache = _NoCache()
        self.dec.cache = self._no_cache
        attend = self.dec.attention                             # the decoder's own (bound) attention

        def attention(layer, q, k, v):                          # q (B, T, H, D), k, v (B, T, Hkv, D)
            outs = []
            for b, cache in enumerate(self.rows):
                self.dec.cache = cache                          # row b attends over its own cache
                outs.append(attend(layer, q[b:b + 1], k[b:b + 1], v[b:b + 1]))   # (T, H*D)
            self.dec.cache = self._no_cache
            return xp.concatenate(outs) if len(outs) > 1 else outs[0]          # (B*T, H*D)

        self.dec.attention = attention

    def new_state(self, n: int):
        return self.model.new_cache(1, n)

    def forward(self, states, ids):
        """ids (B, T) int64, one KV cache per row -> logits (B, vocab) of each row's last position."""
        B, T = ids.shape
        lone = B * T == 1
        if lone:                                                # keep to GEMM (see the module doc)
            states, ids = [states[0]] * 2, xp.concatenate([ids, ids])
        self.rows, self.starts = list(states), xp.asarray([c.pos for c in states], dtype=xp.int64)
        try:
            logits = self.dec.step(ids)
        finally:
            self.rows, self.dec.cache = [], self._no_cache
        for c in states[:1] if lone else states:
            c.advance(T)
        return logits[:1] if lone else logits


class _OwnDecoder:
    def __init__(self, dec):
        self.dec = dec


class SerialBackend:
    """One ``model.decoder(1, n)`` per request, stepped in turn: a fair round-robin."""

    name = "round-robin"

    def __init__(self, model):
        self.model = model

    def new_state(self, n: int):
        return _OwnDecoder(self.model.decoder(1, n))

    def forward(self, states, ids):
        return xp.concatenate([s.dec.step(ids[b:b + 1]) for b, s in enumerate(states)])


def _probe(model, backend, tol: float = 1e-4) -> str | None:
    """Compare ``backend`` with plain decoders on two prompts of different lengths; None if equal."""
    rng = xp.random.default_rng(0)
    V, n = model.vocab_size, min(8, model.context_length)
    prompts = [rng.integers(0, V, size=min(5, n - 1)), rng.integers(0, V, size=min(3, n - 1))]
    with no_grad():
        want = []
        for p in prompts:
            d = model.decoder(1, n)
            first = d.step(p[None])
            want.append((first, d.step(xp.argmax(first, axis=-1)[:, None])))
        states = [backend.new_state(n) for _ in prompts]
        firsts = [backend.forward([s], p[None]) for s, p in zip(states, prompts)]
        nxt = xp.stack([xp.argmax(f[0]) for f in firsts])[:, None]
        second = backend.forward(states, nxt)
    for (w1, w2), got1, got2 in zip(want, firsts, xp.split(second, len(prompts))):
        for w, g in ((w1, got1), (w2, got2)):
            scale = max(1.0, float(xp.abs(w).max()))
            if g.shape != w.shape or not xp.allclose(g, w, rtol=tol, atol=tol * scale):
                return f"batched logits differ from the plain decoder's (max |diff| {float(xp.abs(g - w).max()):.3g})"
    return None


def pick_backend(model, batching: str = "auto"):
    """``batching``: "auto" (batched if the probe passes, else round-robin), "on", or "off"."""
    if batching == "off":
        return SerialBackend(model), "asked for"
    try:
        backend = BatchedBackend(model)
        problem = _probe(model, backend)
    except Exception as e:                                      # the decoder changed shape: fall back
        problem = f"{type(e).__name__}: {e}"
    if problem is None:
        return backend, "probe passed"
    if batching == "on":
        raise ScratchLLMError(f"batched decoding is not available for this model: {problem}")
    return SerialBackend(model), problem


def load(model_path: str, tokenizer_path=None):
    """-> (model, tokenizer, bos_id): the tokenizer is found beside the model unless given (as
    ``scratchllm generate`` does); ``bos_id`` starts the prompts of Llama models (None otherwise)."""
    from ..io.load import load_model
    from ..models.cli import find_tokenizer
    from ..models.llama import Llama
    from ..tokenizers import load_tokenizer
    model = load_model(model_path)
    tok = load_tokenizer(tokenizer_path) if tokenizer_path else find_tokenizer(model_path, model.vocab_size)
    bos = getattr(tok, "bos_id", None)
    return model, tok, (int(bos) if isinstance(model, Llama) and bos is not None else None)


# -------------------------------------------------------------------------------- engine
class Engine:
    """The scheduler: ``submit(Request)`` from any thread; one thread runs the model.

    >>> eng = Engine(model, slots=4).start()                        # doctest: +SKIP
    >>> eng.submit(Request(ids, SamplingParams(max_tokens=8), print))  # doctest: +SKIP
    """

    def __init__(self, model, slots: int = 8, max_queue: int = 64, batching: str = "auto"):
        if slots < 1 or max_queue < 0:
            raise ScratchLLMError(f"slots must be >= 1 and max_queue >= 0, got {slots}, {max_queue}")
        self.model = model
        self.context = model.context_length
        self.slots, self.max_queue = int(slots), int(max_queue)
        self.backend, self.backend_reason = pick_backend(model, batching)
        self._waiting: collections.deque = collections.deque()
        self._active: list = []
        self._cv = threading.Condition()
        self._closing = False
        self._thread = None
        self.steps = 0                  # decoding steps (forwards of the active rows) so far
        self.rows_stepped = 0           # sum of their row counts: rows_stepped / steps = mean batch

    @property
    def batching(self) -> str:
        return self.backend.name

    def start(self) -> "Engine":
        self._thread = threading.Thread(target=self._run, name="scratchllm-engine", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        with self._cv:
            self._closing = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def load(self) -> dict:
        with self._cv:
            return {"active": len(self._active), "waiting": len(self._waiting), "slots": self.slots}

    def submit(self, req: Request) -> Request:
        p = req.params
        check_sampling(p.temperature, p.top_k, p.top_p, p.max_tokens)
        if len(req.prompt) == 0:
            raise ScratchLLMError("the prompt encodes to no tokens")
        if req.prompt.min() < 0 or req.prompt.max() >= self.model.vocab_size:
            raise ScratchLLMError(f"prompt token ids must lie in [0, {self.model.vocab_size}), "
                                  f"got [{req.prompt.min()}, {req.prompt.max()}]")
        if len(req.prompt) + p.max_tokens > self.context:
            raise ScratchLLMError(f"prompt ({len(req.prompt)} tokens) + max_tokens ({p.max_tokens}) "
                                  f"exceeds the model's context of {self.context} tokens")
        with self._cv:
            if len(self._waiting) + len(self._active) >= self.slots + self.max_queue:
                raise QueueFull(f"the server is busy: {len(self._waiting)} requests are waiting")
            self._waiting.append(req)
            self._cv.notify_all()
        return req

    # ---------------------------------------------------------------- the scheduler thread
    def _run(self) -> None:
        with no_grad():
            while True:
                with self._cv:
                    while not self._closing and not self._active and not self._waiting:
                        self._cv.wait()
                    if self._closing:
                        break
                    admit = []
                    while self._waiting and len(self._active) + len(admit) < self.slots:
                        admit.append(self._waiting.popleft())
                for req in admit:
                    self._prefill(req)
                self._step()
        for req in self._active + list(self._waiting):
            req.emit("done", "cancelled")

    def _prefill(self, req: Request) -> None:
        if req.cancelled:
            req.emit("done", "cancelled")
            return
        try:
            req.state = self.backend.new_state(len(req.prompt) + req.params.max_tokens)
            logits = self.backend.forward([req.state], req.prompt[None, :])
            alive = self._take(req, logits[0])
        except Exception as e:  # noqa: BLE001  one bad request must not stop the server
            req.emit("error", f"{type(e).__name__}: {e}")
            return
        if alive:
            with self._cv:
                self._active.append(req)

    def _step(self) -> None:
        with self._cv:
            rows = []
            for req in self._active:
                if req.cancelled:
                    req.emit("done", "cancelled")
                else:
                    rows.append(req)
            self._active = rows
        if not rows:
            return
        ids = xp.asarray([[r.last] for r in rows], dtype=xp.int64)
        try:
            logits = self.backend.forward([r.state for r in rows], ids)
        except Exception as e:  # noqa: BLE001
            for r in rows:
                r.emit("error", f"{type(e).__name__}: {e}")
            with self._cv:
                self._active = []
            return
        self.steps += 1
        self.rows_stepped += len(rows)
        keep = []
        for b, r in enumerate(rows):
            try:
                if self._take(r, logits[b]):
                    keep.append(r)
            except Exception as e:  # noqa: BLE001
                r.emit("error", f"{type(e).__name__}: {e}")
        with self._cv:
            self._active = keep

    def _take(self, req: Request, logits) -> bool:
        """Sample req's next token from logits (vocab,), send it; False when req is finished."""
        p = req.params
        tok = int(sample_next(logits[None, :], p.temperature, p.top_k, p.top_p, req.generator)[0])
        if tok in p.stop_ids:
            req.emit("done", "stop")
            return False
        req.generated += 1
        req.last = tok
        req.emit("token", tok)
        if req.generated >= p.max_tokens:
            req.emit("done", "length")
            return False
        return True                             # a cancelled request leaves before the next step


def generate_ids(engine_or_model, prompt_ids, params: SamplingParams, on_token=None, stop_flag=None):
    """Run one request in the calling thread (the chat REPL): -> (ids, finish_reason).

    Same code as the server's engine (the batched backend with one row), so the REPL and the
    server give the same reply for the same prompt and seed. ``stop_flag()`` True stops early.
    """
    engine = engine_or_model if isinstance(engine_or_model, Engine) else Engine(engine_or_model, slots=1)
    out, finish = [], []

    def emit(kind, value):
        if kind == "token":
            out.append(value)
            if on_token is not None:
                on_token(value)
        else:
            finish.append(value)

    req = Request(prompt_ids, params, emit)
    with no_grad():
        engine._prefill(req)
        alive = not finish
        while alive and not finish:
            if stop_flag is not None and stop_flag():
                finish.append("cancelled")
                break
            logits = engine.backend.forward([req.state], xp.asarray([[req.last]], dtype=xp.int64))
            alive = engine._take(req, logits[0])
    return out, (finish[0] if finish else "cancelled")
