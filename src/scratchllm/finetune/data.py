"""SFT data: records -> chat template -> token ids + loss targets, split, padded batches.

Input: a JSON list or JSONL file of records, each either an Alpaca record
``{"instruction", "input", "output"}`` or a chat record ``{"messages": [{"role", "content"}, ...]}``
(preference records for DPO add ``"chosen"``/``"rejected"``; see dpo.py).

A sample is the rendered conversation's ids ``t_0 .. t_n`` and its assistant mask. The model
reads ``x = t_0 .. t_{n-1}`` and is scored on ``y = t_1 .. t_n`` where ``y_i = -100``
(``ignore_index``) unless ``t_{i+1}`` is an assistant token, so the loss is the mean over the
assistant tokens only::

    ids   [Below, is, ..., Response, :, \\n, Blue, ., <eot>]
    mask  [ 0,     0,  ...,  0,       0,  0,   1,   1,   1  ]
    x     [Below, is, ..., Response, :, \\n, Blue, .]
    y     [-100, -100, ..., -100,   -100, Blue, ., <eot>]

Batches are padded on the right to the longest sample (pad id 0, target -100). With causal
attention a real token never sees a pad (pads come after it), so no attention crosses from one
sample into another; packing several samples into one row would need a block-diagonal mask.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..backend import xp
from ..errors import ScratchLLMError, reading
from ..jsonio import loads_json
from .chat_template import ChatTemplate, encode_chat, missing_special_tokens

IGNORE = -100


@dataclass
class Sample:
    ids: object          # int64 (n + 1,): the whole conversation
    targets: object      # int64 (n,): ids[1:] where an assistant token, else IGNORE

    @property
    def n_loss_tokens(self) -> int:
        return int((self.targets != IGNORE).sum())


def read_text(path) -> str:
    """A UTF-8 data file's text; one clear error naming it."""
    with reading(path, "data file"):
        return Path(path).read_text(encoding="utf-8")


def read_records(path) -> list:
    """A JSON list or JSONL file -> list of dicts; one clear error naming the file and line."""
    path, text = Path(path), read_text(path)
    stripped = text.lstrip()
    if not stripped:
        raise ScratchLLMError(f"{path}: the data file is empty")
    if stripped[0] == "[":
        records = loads_json(text, str(path), "data file", expect=list)   # depth-limited
    else:
        records = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            records.append(loads_json(line, f"{path}:{n}", "JSON line", expect=None))
    if not records:
        raise ScratchLLMError(f"{path}: no records")
    for i, r in enumerate(records):
        if not isinstance(r, dict):
            raise ScratchLLMError(f"{path}: record {i} is a {type(r).__name__}, not an object")
    return records


def make_sample(ids, mask, context: int, truncate: bool = False, where: str = "sample"):
    """ids/mask of a conversation -> Sample; longer than ``context`` + 1 tokens: an error, or
    (``truncate``) cut to that, and None when no assistant token is left."""
    ids = xp.asarray(ids, dtype=xp.int64)
    mask = xp.asarray(mask, dtype=bool)
    if len(ids) - 1 > context:
        if not truncate:
            raise ScratchLLMError(f"{where}: {len(ids)} tokens, longer than the model's context of "
                                  f"{context} + 1; drop it, raise max_len, or set truncate=true")
        ids, mask = ids[:context + 1], mask[:context + 1]
    targets = xp.where(mask[1:], ids[1:], IGNORE).astype(xp.int64)
    if not (targets != IGNORE).any():
        if truncate:
            return None
        raise ScratchLLMError(f"{where}: no assistant token to learn from")
    return Sample(ids, targets)


def encode_records(records, template: ChatTemplate, tokenizer, context: int,
                   truncate: bool = False, source: str = "data", names=None) -> list:
    """Alpaca or chat records -> Samples (None for one truncated to no assistant token); the
    first bad record raises one clear error naming ``source`` and the record (or ``names[k]``)."""
    missing = missing_special_tokens(template, tokenizer)
    if missing:
        raise ScratchLLMError(f"template {template.name!r} needs special tokens the tokenizer "
                              f"lacks: {missing}")
    out = []
    for i, rec in enumerate(records):
        where = names[i] if names else f"{source}: record {i}"
        try:
            msgs = template.messages_from_record(rec, where=where)
            if not any(m["role"] == "assistant" for m in msgs):
                raise ValueError(f"{where}: no assistant message to learn from")
            ids, mask = encode_chat(template, tokenizer, msgs)
        except ValueError as e:
            raise ScratchLLMError(str(e)) from None
        out.append(make_sample(ids, mask, context, truncate, where))
    return out


def text_samples(path, tokenizer, context: int) -> list:
    """A plain-text file -> Samples of ``context`` + 1 tokens, every token scored (continued
    pretraining, e.g. with LoRA); the last, shorter window is kept when it has 2+ tokens."""
    path, text = Path(path), read_text(path)
    ids = xp.asarray(tokenizer.encode(text), dtype=xp.int64)
    if len(ids) < 2:
        raise ScratchLLMError(f"{path}: fewer than 2 tokens of text")
    out = []
    for k in range(0, len(ids) - 1, context):
        chunk = ids[k:k + context + 1]
        if len(chunk) >= 2:
            out.append(Sample(chunk, chunk[1:].copy()))
    return out


def split_indices(n: int, val_fraction: float, seed: int) -> tuple:
    """A seeded shuffle of range(n) cut into (train, val) index arrays; val has >= 1 item."""
    if n < 2:
        raise ScratchLLMError(f"need at least 2 records to split into train and val, got {n}")
    order = xp.random.Generator(xp.random.PCG64(seed)).permutation(n)
    n_val = min(n - 1, max(1, int(round(n * val_fraction))))
    return order[n_val:], order[:n_val]


def pad_batch(samples, pad_id: int = 0) -> tuple:
    """Samples -> (x, y) int64 (B, T), T the longest; right padding, targets IGNORE on pads."""
    T = max(len(s.targets) for s in samples)
    x = xp.full((len(samples), T), pad_id, dtype=xp.int64)
    y = xp.full((len(samples), T), IGNORE, dtype=xp.int64)
    for b, s in enumerate(samples):
        n = len(s.targets)
        x[b, :n] = s.ids[:-1]
        y[b, :n] = s.targets
    return x, y


# ------------------------------------------------------------------ special tokens
def add_special_tokens(tokenizer, tokens) -> tuple:
    """A copy of a scratchllm BPE tokenizer with ``tokens`` added as special tokens (new ids
    after the current ones). Returns (tokenizer, added list)."""
    from ..tokenizers.bpe import BPETokenizer
    have = dict(getattr(tokenizer, "special_tokens", None) or {})
    added = [t for t in tokens if t not in have]
    if not added:
        return tokenizer, []
    if not isinstance(tokenizer, BPETokenizer):
        raise ScratchLLMError(f"the template needs special tokens {added} and a "
                              f"{type(tokenizer).__name__} cannot take new ones; choose a template "
                              f"whose tokens it has (e.g. alpaca)")
    nxt = tokenizer.vocab_size
    specials = {**have, **{t: nxt + k for k, t in enumerate(added)}}
    inv = {v: k for k, v in have.items()}
    new = BPETokenizer(tokenizer.ranks, tokenizer.pattern, specials,
                       bos=inv.get(tokenizer.bos_id), eos=inv.get(tokenizer.eos_id),
                       merges=tokenizer.merges, name=tokenizer.name)
    return new, added


def grow_embeddings(model, vocab_size: int) -> int:
    """Give ``model`` ``vocab_size`` rows of embedding (and output head); new rows are the mean of
    the old ones (Hewitt's trick: new tokens start as an average token). Returns rows added."""
    from ..nn import Parameter
    old = model.config.vocab_size
    if vocab_size <= old:
        return 0
    mats = []
    if hasattr(model, "transformer"):
        mats.append((model.transformer.wte, "weight"))
    else:
        mats.append((model.tok_embeddings, "weight"))
        if not model.config.tie_embeddings:
            mats.append((model.output, "weight"))
    for module, name in mats:
        W = getattr(module, name).data                                    # (old, C)
        extra = xp.broadcast_to(W.mean(axis=0, dtype=xp.float64).astype(W.dtype),
                                (vocab_size - old, W.shape[1]))
        setattr(module, name, Parameter(xp.concatenate([W, extra], axis=0)))
        if hasattr(module, "num_embeddings"):
            module.num_embeddings = vocab_size
        if hasattr(module, "out_features"):
            module.out_features = vocab_size
    model.config.vocab_size = vocab_size
    return vocab_size - old
