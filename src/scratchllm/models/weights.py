"""The parameter names and shapes a config implies, and the check that a state dict fits them.

Every reader (HF, Meta, llama2.c, scratchllm's own folders) ends with ``check_state_dict``
so that a missing tensor, an extra one or a shape that disagrees with the config gives one
error naming the file, the tensor and both shapes.

>>> from scratchllm.models.config import GPTConfig
>>> parameter_shapes(GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=2, n_embd=4))["transformer.wte.weight"]
(10, 4)
"""
from ..errors import ScratchLLMError
from .config import GPTConfig, LlamaConfig


def parameter_shapes(config) -> dict:
    """Name -> shape of every parameter of the model ``config`` describes (scratchllm names)."""
    if isinstance(config, GPTConfig):
        return _gpt_shapes(config)
    if isinstance(config, LlamaConfig):
        return _llama_shapes(config)
    raise ScratchLLMError(f"unknown config type {type(config).__name__}")


def _gpt_shapes(c: GPTConfig) -> dict:
    C = c.n_embd
    s = {"transformer.wte.weight": (c.vocab_size, C)}
    if c.positional == "learned":
        s["transformer.wpe.weight"] = (c.block_size, C)
    for i in range(c.n_layer):
        p = f"transformer.h.{i}."
        block = {"ln_1.weight": (C,), "attn.c_attn.weight": (3 * C, C), "attn.c_proj.weight": (C, C),
                 "ln_2.weight": (C,), "mlp.c_fc.weight": (4 * C, C), "mlp.c_proj.weight": (C, 4 * C)}
        if c.bias:
            block.update({"ln_1.bias": (C,), "attn.c_attn.bias": (3 * C,), "attn.c_proj.bias": (C,),
                          "ln_2.bias": (C,), "mlp.c_fc.bias": (4 * C,), "mlp.c_proj.bias": (C,)})
        if c.value_embeds:
            block["attn.lambdas"] = (2,)
        s.update({p + k: v for k, v in block.items()})
    s["transformer.ln_f.weight"] = (C,)
    if c.bias:
        s["transformer.ln_f.bias"] = (C,)
    if c.value_embeds:                                   # the recipe's options (models/gpt_recipe.py)
        from .gpt_recipe import n_value_tables
        s.update({f"transformer.ve.{j}.weight": (c.vocab_size, C) for j in range(n_value_tables(c.n_layer))})
    if not c.tie_weights:
        s["lm_head.weight"] = (c.vocab_size, C)
    return s


def _llama_shapes(c: LlamaConfig) -> dict:
    D, H, hd, F = c.dim, c.n_heads, c.head_dim, c.ffn_hidden_dim
    s = {"tok_embeddings.weight": (c.vocab_size, D)}
    for i in range(c.n_layers):
        p = f"layers.{i}."
        s.update({p + "attention_norm.weight": (D,),
                  p + "attention.wq.weight": (H * hd, D),
                  p + "attention.wk.weight": (c.n_kv_heads * hd, D),
                  p + "attention.wv.weight": (c.n_kv_heads * hd, D),
                  p + "attention.wo.weight": (D, H * hd),
                  p + "ffn_norm.weight": (D,),
                  p + "feed_forward.w1.weight": (F, D),
                  p + "feed_forward.w2.weight": (D, F),
                  p + "feed_forward.w3.weight": (F, D)})
    s["norm.weight"] = (D,)
    if not c.tie_embeddings:
        s["output.weight"] = (c.vocab_size, D)
    return s


def check_state_dict(state: dict, config, source: str, names: dict = None) -> None:
    """Raise one ScratchLLMError if ``state`` misses, adds or misshapes a tensor of ``config``.

    ``names`` optionally maps scratchllm names to the names in the file, for the message.
    """
    want = parameter_shapes(config)
    names = names or {}
    missing = [names.get(k, k) for k in want if k not in state]
    if missing:
        more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
        raise ScratchLLMError(f"{source}: missing tensors {missing[:5]}{more} for {type(config).__name__} "
                              f"{_summary(config)}")
    extra = [names.get(k, k) for k in state if k not in want]
    if extra:
        more = f" (and {len(extra) - 5} more)" if len(extra) > 5 else ""
        raise ScratchLLMError(f"{source}: unexpected tensors {extra[:5]}{more} for {type(config).__name__} "
                              f"{_summary(config)}")
    for k, shape in want.items():
        got = tuple(state[k].shape)
        if got != tuple(shape):
            raise ScratchLLMError(f"{source}: tensor '{names.get(k, k)}' has shape {list(got)} but the config "
                                  f"({_summary(config)}) needs {list(shape)}; the config disagrees with the weights")


def _summary(c) -> str:
    if isinstance(c, GPTConfig):
        return f"vocab_size={c.vocab_size} n_layer={c.n_layer} n_head={c.n_head} n_embd={c.n_embd} " \
               f"block_size={c.block_size}"
    return f"vocab_size={c.vocab_size} dim={c.dim} n_layers={c.n_layers} n_heads={c.n_heads} " \
           f"n_kv_heads={c.n_kv_heads} hidden_dim={c.ffn_hidden_dim}"


def hf_to_meta_qk(w, n_heads: int):
    """Undo HF's row permutation of wq/wk (half-split RoPE) -> Meta's interleaved layout.

    HF stores each head's rows as [all even pairs' first halves..., all second halves...]:
    rows (h, 2, hd/2) in HF are rows (h, hd/2, 2) in Meta's order.
    """
    out, d = w.shape
    return w.reshape(n_heads, 2, out // n_heads // 2, d).transpose(0, 2, 1, 3).reshape(out, d)


def meta_to_hf_qk(w, n_heads: int):
    """Meta's interleaved wq/wk rows -> HF's half-split order (the inverse of ``hf_to_meta_qk``)."""
    out, d = w.shape
    return w.reshape(n_heads, out // n_heads // 2, 2, d).transpose(0, 2, 1, 3).reshape(out, d)
