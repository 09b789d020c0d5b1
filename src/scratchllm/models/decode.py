"""The inference path: GPT-2 and Llama on raw arrays with a KV cache (no Tensors, no graph).

There is one model per architecture (``GPT`` / ``Llama``: training, evaluation, ``model(ids)``)
and one inference path (this module: ``generate``, ``stream``, serving). run.c's way: the
decoder is built from ``model.state_dict()`` and the config alone, and every formula in it is
``nn.functional``'s own array function, the one the Tensor ops call (``norm_forward``,
``gelu_tanh_forward``, ``silu_forward``, ``rope_rotate``, ``attention_forward``,
``parallel.matmul``); what is here is only the wiring: which weight feeds which function.

    dec = model.decoder(batch=B, max_len=L)         # weights gathered once (each generate() call)
    logits = dec.step(ids)                          # (B, T) ids -> (B, vocab) of the last position
    logits = dec.step(next_ids[:, None])            # one position, attends over the cache
    dec.cache.pos                                   # positions stored so far
    dec.reset()                                     # empty the cache, keep the gathered weights
    dec.device                                      # "cpu" or "cuda:N": where the weights and cache live

A decoder is made for the weights as they are: make a new one after training steps (on the CPU
it holds copies of the matrices, on a GPU views of them).
Dropout never applies here (generation is inference, in train mode too).

Why not the Tensor model under ``no_grad`` with a KV cache (nanochat's way)? Measured before
that path was deleted (2026-11-28, 2-core VM shared with other jobs, load ~3-5; best of 2 runs of
100 greedy one-token steps after a 16-token prompt, batch 1, float32, the ``bench generate``
shapes):

    ms per token                  raw-array decoder   Tensor model + KV cache (forward_cached)
    GPT-2 (6 x 384, vocab 50257)        13.6                    121.3
    Llama (6 x 384, GQA 6/2, 32000)     14.5                     28.1

so the raw-array decoder is the one inference path (2x-9x faster). A token step is bound by
reading the weights once; the Tensor path adds a Tensor and a graph check per op, fresh
temporaries, and (out, in) weights that stream at half the speed of the (in, out) copies made
here (17-19 vs 9-10 GB/s on one core).

On a GPU (a model moved with ``.to("cuda")``) the same classes decode: every array follows the
array module of the weights (``device.array_module``: NumPy, or CuPy, which has NumPy's API), the
cache lives on the GPU, and the few array functions with a NumPy-only body (thread pool, numba,
``out=`` products) hand a GPU array to their CUDA version (``_norm``, ``_gelu``, ``matmul``,
``Decoder.attention``), as the Tensor ops do. ``step`` takes host ids and returns host logits:
the (B, vocab) logits of the last position are the one device -> host copy of a step, so
sampling stays the CPU's code and greedy ids equal the CPU's. On a GPU ``transposed`` makes no
copy: a (in, out) transposed view, which cuBLAS reads as fast as a copy.

Hooks the serving engine (serve/engine.py) batches over, kept stable: ``dec.cache`` (``pos``,
``update(layer, k, v)``, ``advance(T)``), ``dec.attention(layer, q, k, v)`` with q (B, T, H, D),
k, v (B, T, Hkv, D) -> (B*T, H*D), the position tables ``dec.positions`` (GPT) / ``dec.cos``,
``dec.sin`` (Llama) read as ``table[pos:pos + T]``, and ``model.new_cache(batch, max_len)``.
"""
import time

from ..backend import xp
from ..autograd.ops.elementwise import silu_forward
from ..device import array_module, device_of, is_device_array, to_device, to_host
from ..kernels import cuda_kernels
from ..nn.functional import cuda_ops
from ..nn.functional.activations import gelu_tanh_forward
from ..nn.functional.attention import attention_forward
from ..nn.functional.normalization import norm_forward
from ..nn.functional.rope import rope_cache, rope_rotate, sinusoidal_positions
from ..parallel import ThreadChooser, blas_threads
from ..parallel import matmul as dense_matmul
from .config import GPTConfig, LlamaConfig
from .kv_cache import KVCache


def matmul(a, b, out=None, bias=None):
    """``parallel.matmul``; a quantized weight (models/quant.py ``Q8Weight``) runs its own product;
    on a GPU one cuBLAS product (plus the bias)."""
    if isinstance(b, xp.ndarray):
        return dense_matmul(a, b, out, bias)
    if is_device_array(b):
        y = a @ b                                                       # (N, in) @ (in, out)
        if bias is not None:
            y += bias
        return y
    return b.matmul(a, bias)

def transposed(*ws, block_bytes: int = 1 << 20):
    """Weights w (out_i, in) -> one C-contiguous (in, sum out_i) array [w_0.T | w_1.T | ...].

    ``x @ wt`` with wt laid out (in, out) streams memory about twice as fast as ``x @ w.T``
    with w (out, in), and a token step is bound by reading weights. Copied in ~1 MB row blocks.
    On a GPU: ``[w_0; w_1; ...].T``, a view of one weight (none copied) or of their stack.
    """
    if is_device_array(ws[0]):
        return (ws[0] if len(ws) == 1 else array_module(ws[0]).concatenate(ws, axis=0)).T
    n_in = ws[0].shape[1]
    out = xp.empty((n_in, sum(w.shape[0] for w in ws)), dtype=ws[0].dtype)
    rows = max(1, block_bytes // (n_in * ws[0].itemsize))
    col = 0
    for w in ws:
        for r in range(0, w.shape[0], rows):
            out[:, col + r:col + min(r + rows, w.shape[0])] = w[r:r + rows].T
        col += w.shape[0]
    return out


def _cat(*bs):
    """Biases side by side like their ``transposed`` weights (None when there are none)."""
    return None if bs[0] is None else array_module(bs[0]).concatenate(bs)


def _norm(x, w, b, eps, center=True):
    """LayerNorm (``center``) / RMSNorm of rows x (N, D): the NumPy op's array function, or on a GPU its kernel."""
    if is_device_array(x):
        return cuda_kernels.norm_forward(array_module(x).ascontiguousarray(x), w, b, eps, center)[0]
    return norm_forward(x, w, b, eps, center)[0]


def _gelu(x):
    """GPT-2's tanh GELU of an array (the NumPy op's function, or on a GPU its elementwise kernel)."""
    return cuda_kernels.gelu_tanh_forward(x) if is_device_array(x) else gelu_tanh_forward(x)[0]


def new_cache(config, batch: int, max_len: int, dtype=xp.float32, module=None) -> KVCache:
    """An empty KV cache for ``config`` (at most the model's context); ``module``: the array
    module it lives in (None: NumPy; CuPy for a cache on the GPU)."""
    if isinstance(config, GPTConfig):
        return KVCache(config.n_layer, batch, config.n_head, config.head_dim, min(max_len, config.block_size), dtype,
                       module=module)
    return KVCache(config.n_layers, batch, config.n_kv_heads, config.head_dim, min(max_len, config.max_seq_len), dtype,
                   module=module)


def make_decoder(config, state: dict, batch: int, max_len: int, rope=None):
    """The decoder of ``config`` over the arrays of ``state`` (a ``state_dict()``); ``rope``:
    Llama's (cos, sin) tables when not the config's own."""
    if isinstance(config, GPTConfig):
        if not config.is_gpt2:                                     # the speedrun options (models/gpt_recipe.py)
            from .gpt_recipe import RecipeGPTDecoder
            return RecipeGPTDecoder(config, state, batch, max_len)
        return GPTDecoder(config, state, batch, max_len)
    if isinstance(config, LlamaConfig):
        return LlamaDecoder(config, state, batch, max_len, rope)
    raise TypeError(f"make_decoder: no decoder for {type(config).__name__}")


class Decoder:
    """``step(ids (B, T)) -> logits (B, vocab)`` of the last position; keeps a ``KVCache``."""

    head_weight = None       # (C, vocab)
    # BLAS threads for a step: 1 (default: a one-row product is bound by reading the weights, which
    # one core does at full speed, and the result never depends on timing), "auto" (timed, the
    # faster of 1 and the process's count; rounding may then differ by ~1e-7 between runs), or
    # None (the process's count)
    threads = 1

    def __init__(self, config, state: dict, batch: int, max_len: int):
        self.state = state
        table = self.weight(self.embedding_key)
        self.device = device_of(table)                                  # "cpu" or "cuda:N": the weights'
        self.cache = new_cache(config, batch, max_len, table.dtype, array_module(table))
        self.chooser = ThreadChooser()

    def weight(self, name: str):
        """``state[name]`` as an array; None for an absent optional tensor (a bias)."""
        w = self.state.get(name)
        return w if w is None or isinstance(w, xp.ndarray) or is_device_array(w) else w.data  # (a Tensor: its array)

    def here(self, table):
        """A table made on the host (positions, RoPE) on the weights' device."""
        return table if self.device == "cpu" else to_device(table, self.device)

    def step(self, ids):
        if self.device != "cpu":                                        # on a GPU: ids over, logits back
            ids = to_device(ids if is_device_array(ids) else xp.asarray(ids), self.device)
            return to_host(self.logits(ids))                            # (B, V): the one copy of a step
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

    def reset(self) -> None:
        """Empty the cache (every row starts again at position 0; the weights stay)."""
        self.cache.pos = 0

    def logits(self, ids):
        return matmul(self.last_hidden(ids), self.head_weight)         # (B, C) @ (C, V), cache advanced

    def attention(self, layer: int, q, k, v):
        """q (B, T, H, D), k, v (B, T, Hkv, D) of the new positions -> (B*T, H*D); stores k, v."""
        B, T, H, D = q.shape
        Hkv = k.shape[2]
        G = H // Hkv                                                    # query heads per kv head
        pos = self.cache.pos
        k_all, v_all = self.cache.update(layer, k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3))
        qs = q.transpose(0, 2, 1, 3) * q.dtype.type(D ** -0.5)         # (B, H, T, D), times the scale
        qs = qs.reshape(B, Hkv, G * T, D)                               # head h uses kv head h // G
        if self.device != "cpu":                                        # cuBLAS + the softmax kernel
            y = cuda_ops.attend_rows(qs, k_all, v_all, G, r0=pos, causal=True)
        else:
            y = xp.empty((B, Hkv, G * T, D), dtype=q.dtype)
            attention_forward(qs, k_all, v_all, y, G, r0=pos, causal=True)  # (B, Hkv, G*T, D)
        return y.reshape(B, H, T, D).transpose(0, 2, 1, 3).reshape(B * T, H * D)


class GPTDecoder(Decoder):
    """GPT-2 on raw arrays, from ``GPT.state_dict()`` (HF names) and a ``GPTConfig``."""

    embedding_key = "transformer.wte.weight"

    def __init__(self, config: GPTConfig, state: dict, batch: int, max_len: int):
        super().__init__(config, state, batch, max_len)
        self.n_head, self.eps = config.n_head, config.layer_norm_eps
        w = self.weight
        self.wte = w("transformer.wte.weight")                         # (V, C) for the lookup
        self.head_weight = transposed(self.wte)                        # (C, V): the tied head
        self.positions = (w("transformer.wpe.weight") if config.positional == "learned" else  # the model's
                          self.here(sinusoidal_positions(config.block_size, config.n_embd).astype(self.wte.dtype)))
        self.layers = []
        for i in range(config.n_layer):
            p = f"transformer.h.{i}."
            self.layers.append((w(p + "ln_1.weight"), w(p + "ln_1.bias"),
                                transposed(w(p + "attn.c_attn.weight")), w(p + "attn.c_attn.bias"),
                                transposed(w(p + "attn.c_proj.weight")), w(p + "attn.c_proj.bias"),
                                w(p + "ln_2.weight"), w(p + "ln_2.bias"),
                                transposed(w(p + "mlp.c_fc.weight")), w(p + "mlp.c_fc.bias"),
                                transposed(w(p + "mlp.c_proj.weight")), w(p + "mlp.c_proj.bias")))
        self.ln_f = (w("transformer.ln_f.weight"), w("transformer.ln_f.bias"))

    def last_hidden(self, ids):
        B, T = ids.shape
        pos, H, eps = self.cache.pos, self.n_head, self.eps
        x = self.wte[ids.reshape(-1)].reshape(B, T, -1)
        x += self.positions[pos:pos + T]
        C = x.shape[-1]
        x = x.reshape(B * T, C)                                        # (N, C) rows
        for i, (w1, b1, wqkv, bqkv, wo, bo, w2, b2, wfc, bfc, wpr, bpr) in enumerate(self.layers):
            qkv = matmul(_norm(x, w1, b1, eps), wqkv, bias=bqkv).reshape(B, T, 3, H, C // H)
            y = self.attention(i, qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2])
            x += matmul(y, wo, bias=bo)
            h = _gelu(matmul(_norm(x, w2, b2, eps), wfc, bias=bfc))
            x += matmul(h, wpr, bias=bpr)
        self.cache.advance(T)
        return _norm(x.reshape(B, T, C)[:, -1], *self.ln_f, eps)


class LlamaDecoder(Decoder):
    """Llama on raw arrays, from ``Llama.state_dict()`` (Meta names) and a ``LlamaConfig``."""

    embedding_key = "tok_embeddings.weight"

    def __init__(self, config: LlamaConfig, state: dict, batch: int, max_len: int, rope=None):
        super().__init__(config, state, batch, max_len)
        c, w = config, self.weight
        self.n_heads, self.n_kv_heads, self.head_dim, self.eps = c.n_heads, c.n_kv_heads, c.head_dim, c.norm_eps
        self.tok = w("tok_embeddings.weight")
        self.head_weight = transposed(self.tok if c.tie_embeddings else w("output.weight"))  # (dim, V)
        if rope is None:
            rope = rope_cache(c.head_dim, c.max_seq_len, c.rope_theta, scaling=c.rope_scaling)
        self.cos, self.sin = (self.here(t) for t in rope)
        self.layers = []
        for i in range(c.n_layers):
            a, f = f"layers.{i}.attention.", f"layers.{i}.feed_forward."
            wqkv = transposed(w(a + "wq.weight"), w(a + "wk.weight"), w(a + "wv.weight"))  # (dim, (H+2Hkv) hd)
            w13 = transposed(w(f + "w1.weight"), w(f + "w3.weight"))                       # (dim, 2 hidden)
            self.layers.append((w(f"layers.{i}.attention_norm.weight"), wqkv, transposed(w(a + "wo.weight")),
                                w(f"layers.{i}.ffn_norm.weight"), w13, _cat(w(f + "w1.bias"), w(f + "w3.bias")),
                                transposed(w(f + "w2.weight")), w(f + "w2.bias")))
        self.norm = w("norm.weight")

    def last_hidden(self, ids):
        B, T = ids.shape
        pos, H, Hkv, hd, eps = self.cache.pos, self.n_heads, self.n_kv_heads, self.head_dim, self.eps
        cos = self.cos[pos:pos + T].astype(self.tok.dtype, copy=False)[..., None, :]   # (T, 1, hd/2)
        sin = self.sin[pos:pos + T].astype(self.tok.dtype, copy=False)[..., None, :]
        x = self.tok[ids.reshape(-1)]                                  # (N, dim) rows
        C = x.shape[-1]
        for i, (wn1, wqkv, wo, wn2, w13, b13, w2, b2) in enumerate(self.layers):
            qkv = matmul(_norm(x, wn1, None, eps, False), wqkv)        # (N, (H + 2 Hkv) hd)
            q = rope_rotate(qkv[:, :H * hd].reshape(B, T, H, hd), cos, sin)
            k = rope_rotate(qkv[:, H * hd:(H + Hkv) * hd].reshape(B, T, Hkv, hd), cos, sin)
            v = qkv[:, (H + Hkv) * hd:].reshape(B, T, Hkv, hd)
            x += matmul(self.attention(i, q, k, v), wo)
            gu = matmul(_norm(x, wn2, None, eps, False), w13, bias=b13)  # (N, 2 hidden)
            hidden = gu.shape[-1] // 2
            h, _ = silu_forward(gu[:, :hidden])
            h *= gu[:, hidden:]
            x += matmul(h, w2, bias=b2)
        self.cache.advance(T)
        return _norm(x.reshape(B, T, C)[:, -1], self.norm, None, eps, False)
