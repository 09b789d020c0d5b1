"""Fast decoding: the whole model on raw arrays for generation (no Tensors, no graph).

A generated token costs one position's work: per layer a norm, one fused q/k/v GEMV,
attention of one query row over the KV cache, the output projection and the MLP, then
one lm-head GEMV over the vocabulary. At batch 1 every matrix is read once per token,
so the step is bound by reading weights; what the Tensor path adds on top (a Tensor and
a graph check per op, fresh temporaries, BLAS threads waking for 30 us GEMVs) is all
overhead. ``GPTDecoder`` / ``LlamaDecoder`` do the same math as ``model.forward_cached``
(same float32 dtype, same formulas) with plain arrays:

    dec = model.decoder(batch=1, max_len=T + n)     # weights gathered once per generate()
    logits = dec.step(prompt)                       # (B, T) ids -> (B, vocab) of the last position
    logits = dec.step(next_ids[:, None])            # one position, attends over the cache

Weights are copied once when the decoder is made (each generate() call), transposed to
(in, out) so every GEMV streams memory at full speed (``transposed``), with Llama's
wq|wk|wv and w1|w3 side by side so each is one GEMV. A decoder therefore sees the weights
as they were when it was made: make a new one after training steps.
"""
import math
import time

from ..backend import xp
from .blas_threads import ThreadChooser, blas_threads
from .kv_cache import KVCache


def transposed(*ws, block_bytes: int = 1 << 20):
    """Weights w (out_i, in) -> one C-contiguous (in, sum out_i) array [w_0.T | w_1.T | ...].

    ``x @ wt`` with wt laid out (in, out) streams memory about twice as fast as ``x @ w.T``
    with w (out, in) (measured: 17-19 vs 9-10 GB/s on one core), and a token step is bound
    by reading weights. Copied in row blocks of ~1 MB so reads and writes stay cache-friendly.
    """
    n_in = ws[0].shape[1]
    out = xp.empty((n_in, sum(w.shape[0] for w in ws)), dtype=ws[0].dtype)
    rows = max(1, block_bytes // (n_in * ws[0].itemsize))
    col = 0
    for w in ws:
        for r in range(0, w.shape[0], rows):
            out[:, col + r:col + min(r + rows, w.shape[0])] = w[r:r + rows].T
        col += w.shape[0]
    return out


def _linear(x, wt, b=None):
    """x (N, in) @ wt for wt (in, out) (a ``transposed`` weight): one GEMV/GEMM; + b."""
    y = x @ wt
    if b is not None:
        y += b
    return y


def _layer_norm(x, w, b, eps):
    """LayerNorm over the last dim of x (N, C); a new array."""
    y = x - x.mean(axis=-1, keepdims=True)
    var = xp.einsum("nc,nc->n", y, y)[:, None]
    var *= 1.0 / y.shape[-1]
    var += eps
    xp.sqrt(var, out=var)
    y /= var
    if w is not None:
        y *= w
    if b is not None:
        y += b
    return y


def _rms_norm(x, w, eps):
    """RMSNorm over the last dim of x (N, C); a new array."""
    ms = xp.einsum("nc,nc->n", x, x)[:, None]
    ms *= 1.0 / x.shape[-1]
    ms += eps
    xp.sqrt(ms, out=ms)
    y = x / ms
    if w is not None:
        y *= w
    return y


def _gelu_tanh_(u):
    """GPT-2's GELU in place: u (1 + tanh(sqrt(2/pi) (u + 0.044715 u^3))) / 2."""
    t = u * u
    t *= 0.044715
    t += 1.0
    t *= u
    t *= math.sqrt(2.0 / math.pi)
    xp.tanh(t, out=t)
    t += 1.0
    u *= t
    u *= 0.5
    return u


def _silu_mul(gate, up):
    """silu(gate) * up, a new array (gate / (1 + exp(-gate)) * up)."""
    s = xp.negative(gate)
    xp.exp(s, out=s)
    s += 1.0
    y = gate / s
    y *= up
    return y


def _rope_(x, cos, sin):
    """Rotate interleaved pairs of x (B, T, h, D) in place; cos, sin (T, D/2)."""
    c, s = cos[:, None, :], sin[:, None, :]
    a, b = x[..., 0::2], x[..., 1::2]
    new_a = a * c
    new_a -= b * s
    b_new = a * s
    b_new += b * c
    a[...] = new_a
    b[...] = b_new


def _attend(q, k_all, v_all, pos: int):
    """Causal attention of new queries over the cache.

    q (B, Hkv, G, T, D) for positions pos .. pos+T-1 (G query heads share each kv head);
    k_all, v_all (B, Hkv, pos+T, D) views of the cache. -> (B, Hkv, G, T, D).
    """
    B, Hkv, G, T, D = q.shape
    q2 = q.reshape(B, Hkv, G * T, D)
    s = q2 @ k_all.swapaxes(-1, -2)                                   # (B, Hkv, G*T, pos+T)
    s *= 1.0 / math.sqrt(D)
    if T > 1:
        t = xp.arange(G * T) % T                                      # each row's position in the new chunk
        s[..., xp.arange(pos + T)[None, :] > (pos + t)[:, None]] = -xp.inf
    s -= s.max(axis=-1, keepdims=True)
    xp.exp(s, out=s)
    s /= s.sum(axis=-1, keepdims=True)
    return (s @ v_all).reshape(B, Hkv, G, T, D)


class Decoder:
    """``step(ids (B, T)) -> logits (B, vocab)`` of the last position; keeps a ``KVCache``."""

    head_weight = None       # (C, vocab)
    # BLAS threads for a step: 1 (default: a one-row product is bound by reading the weights, which
    # one core does at full speed, and the result never depends on timing), "auto" (timed, the
    # faster of 1 and the process's count; rounding may then differ by ~1e-7 between runs), or
    # None (the process's count)
    threads = 1

    def __init__(self, cache: KVCache):
        self.cache = cache
        self.chooser = ThreadChooser()

    def step(self, ids):
        ids = xp.asarray(ids)
        if ids.shape[1] > 1 or self.threads != "auto":                 # the prompt: one fixed setting
            with blas_threads(1 if self.threads == "auto" else self.threads):
                return self.logits(ids)
        n = self.chooser.pick()                                         # one token: the faster setting
        t0 = time.perf_counter()
        with blas_threads(n):
            out = self.logits(ids)
        self.chooser.record(n, time.perf_counter() - t0)
        return out

    def logits(self, ids):
        return _linear(self.last_hidden(ids), self.head_weight)        # (B, C) @ (C, V), cache advanced

    def attention(self, layer: int, q, k, v):
        """q (B, T, H, D), k, v (B, T, Hkv, D) of the new positions -> (B, T, H*D); stores k, v."""
        B, T, H, D = q.shape
        Hkv = k.shape[2]
        pos = self.cache.pos
        k_all, v_all = self.cache.update(layer, k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3))
        qg = q.transpose(0, 2, 1, 3).reshape(B, Hkv, H // Hkv, T, D)   # head h uses kv head h // G
        y = _attend(qg, k_all, v_all, pos)                            # (B, Hkv, G, T, D)
        return y.reshape(B, H, T, D).transpose(0, 2, 1, 3).reshape(B * T, H * D)


class GPTDecoder(Decoder):
    """GPT-2 on raw arrays; the same math as ``GPT.forward_cached``."""

    def __init__(self, model, batch: int, max_len: int):
        super().__init__(model.new_cache(batch, max_len))
        c, tr = model.config, model.transformer
        self.n_head, self.eps = c.n_head, c.layer_norm_eps
        self.wte = tr.wte.weight.data                                  # (V, C) for the lookup
        self.head_weight = transposed(self.wte)                        # (C, V): the tied head
        self.positions = tr.wpe.weight.data if c.positional == "learned" else model.sinusoid.data
        d = lambda p: None if p is None else p.data  # noqa: E731
        t = lambda lin: transposed(lin.weight.data)  # noqa: E731
        self.layers = [(d(b.ln_1.weight), d(b.ln_1.bias), t(b.attn.c_attn), d(b.attn.c_attn.bias),
                        t(b.attn.c_proj), d(b.attn.c_proj.bias), d(b.ln_2.weight), d(b.ln_2.bias),
                        t(b.mlp.c_fc), d(b.mlp.c_fc.bias), t(b.mlp.c_proj), d(b.mlp.c_proj.bias))
                       for b in tr.h]
        self.ln_f = (d(tr.ln_f.weight), d(tr.ln_f.bias))

    def last_hidden(self, ids):
        B, T = ids.shape
        pos, H, eps = self.cache.pos, self.n_head, self.eps
        x = self.wte[ids.reshape(-1)].reshape(B, T, -1)
        x += self.positions[pos:pos + T]
        C = x.shape[-1]
        x = x.reshape(B * T, C)                                        # (N, C) rows
        for i, (w1, b1, wqkv, bqkv, wo, bo, w2, b2, wfc, bfc, wpr, bpr) in enumerate(self.layers):
            qkv = _linear(_layer_norm(x, w1, b1, eps), wqkv, bqkv).reshape(B, T, 3, H, C // H)
            y = self.attention(i, qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2])
            x += _linear(y, wo, bo)
            h = _gelu_tanh_(_linear(_layer_norm(x, w2, b2, eps), wfc, bfc))
            x += _linear(h, wpr, bpr)
        self.cache.advance(T)
        return _layer_norm(x.reshape(B, T, C)[:, -1], *self.ln_f, eps)


class LlamaDecoder(Decoder):
    """Llama on raw arrays; the same math as ``Llama.forward_cached``."""

    def __init__(self, model, batch: int, max_len: int):
        super().__init__(model.new_cache(batch, max_len))
        c = model.config
        self.n_heads, self.n_kv_heads, self.head_dim, self.eps = c.n_heads, c.n_kv_heads, c.head_dim, c.norm_eps
        self.tok = model.tok_embeddings.weight.data
        self.head_weight = transposed(self.tok if c.tie_embeddings else model.output.weight.data)  # (dim, V)
        self.cos, self.sin = model.rope
        d = lambda p: None if p is None else p.data  # noqa: E731
        self.layers = []
        for layer in model.layers:
            a, f = layer.attention, layer.feed_forward
            wqkv = transposed(a.wq.weight.data, a.wk.weight.data, a.wv.weight.data)   # (dim, (H+2Hkv) hd)
            w13 = transposed(f.w1.weight.data, f.w3.weight.data)                      # (dim, 2 hidden)
            b13 = None if f.w1.bias is None else xp.concatenate([f.w1.bias.data, f.w3.bias.data])
            self.layers.append((d(layer.attention_norm.weight), wqkv, transposed(a.wo.weight.data),
                                d(layer.ffn_norm.weight), w13, b13, transposed(f.w2.weight.data), d(f.w2.bias)))
        self.norm = d(model.norm.weight)

    def last_hidden(self, ids):
        B, T = ids.shape
        pos, H, Hkv, hd, eps = self.cache.pos, self.n_heads, self.n_kv_heads, self.head_dim, self.eps
        cos = self.cos[pos:pos + T].astype(self.tok.dtype, copy=False)
        sin = self.sin[pos:pos + T].astype(self.tok.dtype, copy=False)
        x = self.tok[ids.reshape(-1)]                                  # (N, dim) rows
        C = x.shape[-1]
        for i, (wn1, wqkv, wo, wn2, w13, b13, w2, b2) in enumerate(self.layers):
            qkv = _linear(_rms_norm(x, wn1, eps), wqkv)                # (N, (H + 2 Hkv) hd)
            q = qkv[:, :H * hd].reshape(B, T, H, hd)
            k = qkv[:, H * hd:(H + Hkv) * hd].reshape(B, T, Hkv, hd)
            v = qkv[:, (H + Hkv) * hd:].reshape(B, T, Hkv, hd)
            _rope_(q, cos, sin)
            _rope_(k, cos, sin)
            x += _linear(self.attention(i, q, k, v), wo)
            gu = _linear(_rms_norm(x, wn2, eps), w13, b13)             # (N, 2 hidden)
            hidden = gu.shape[-1] // 2
            x += _linear(_silu_mul(gu[:, :hidden], gu[:, hidden:]), w2, b2)
        self.cache.advance(T)
        return _rms_norm(x.reshape(B, T, C)[:, -1], self.norm, eps)
