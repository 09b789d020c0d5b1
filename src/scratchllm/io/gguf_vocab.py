"""The tokenizer inside a GGUF file (``tokenizer.ggml.*``), read and written.

Two kinds, named by ``tokenizer.ggml.model``:

- ``"llama"`` (SentencePiece, Llama 2): ``tokens`` are the pieces ("▁the", "<0x0A>"),
  ``scores`` their merge scores, ``token_type`` SentencePiece's kinds (1 normal, 2 unknown,
  3 control, 4 user-defined, 5 unused, 6 byte) -> ``SentencePieceBPE``;
- ``"gpt2"`` (byte-level BPE, GPT-2 / Llama 3): ``tokens`` are the token bytes in GPT-2's
  printable-character code ("Ġthe"), ``merges`` the "left right" pairs in priority order,
  ``tokenizer.ggml.pre`` names the split pattern -> ``BPETokenizer``.

Special ids: ``tokenizer.ggml.bos_token_id``, ``eos_token_id``, ``unknown_token_id``;
``tokenizer.ggml.add_space_prefix`` is SentencePiece's dummy prefix (default true).
"""
from ..errors import ScratchLLMError
from .gguf_read import GGUFFile
from .gguf_write import ARRAY, BOOL, FLOAT32, INT32, STRING, UINT32

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
# tokenizer.ggml.pre -> scratchllm pattern name, and back
_PRE = {"default": "gpt2", "gpt-2": "gpt2", "gpt2": "gpt2", "llama-bpe": "llama3", "llama3": "llama3",
        "dbrx": "gpt4"}
_PRE_OUT = {"gpt2": "gpt-2", "llama3": "llama-bpe", "gpt4": "dbrx", "cl100k": "dbrx"}


# ------------------------------------------------------------------ reading
def gguf_tokenizer(path):
    """The tokenizer stored in a GGUF file (``SentencePieceBPE`` or ``BPETokenizer``)."""
    g = path if isinstance(path, GGUFFile) else GGUFFile(path)
    kind = g.get("tokenizer.ggml.model", None, str)
    tokens = g.get("tokenizer.ggml.tokens", None, list)
    if kind is None or tokens is None:
        raise ScratchLLMError(f"{g.path}: the GGUF file holds no tokenizer (tokenizer.ggml.model / tokens)")
    if not all(isinstance(t, str) for t in tokens):
        raise ScratchLLMError(f"{g.path}: tokenizer.ggml.tokens is not an array of strings")
    n = len(tokens)
    types = _array(g, "tokenizer.ggml.token_type", n, [NORMAL] * n)
    if kind == "llama":
        return _sentencepiece(g, tokens, types)
    if kind == "gpt2":
        return _byte_bpe(g, tokens, types)
    raise ScratchLLMError(f"{g.path}: tokenizer.ggml.model {kind!r} is not supported ('llama' and 'gpt2' are)")


def _array(g: GGUFFile, key: str, n: int, default):
    v = g.get(key, None, list)
    if v is None:
        return default
    if len(v) != n:
        raise ScratchLLMError(f"{g.path}: {key} has {len(v)} entries but tokenizer.ggml.tokens has {n}")
    return [x.item() if hasattr(x, "item") else x for x in v]


def _special_id(g: GGUFFile, which: str, n: int, default):
    v = g.get(f"tokenizer.ggml.{which}_token_id", default, int)
    if v is not None and not 0 <= v < n:
        raise ScratchLLMError(f"{g.path}: tokenizer.ggml.{which}_token_id {v} is outside the vocabulary of {n}")
    return v


def _sentencepiece(g: GGUFFile, tokens: list, types: list):
    from ..tokenizers.sentencepiece import SentencePieceBPE
    from ..tokenizers.sp_proto import SentencePieceModel
    n = len(tokens)
    scores = [float(s) for s in _array(g, "tokenizer.ggml.scores", n, [0.0] * n)]
    if any(t not in (NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE) for t in types):
        raise ScratchLLMError(f"{g.path}: tokenizer.ggml.token_type holds a kind outside 1..6")
    n_bytes = sum(1 for t in types if t == BYTE)
    model = SentencePieceModel(pieces=list(tokens), scores=scores, types=list(types), model_type="bpe",
                               byte_fallback=n_bytes == 256, unk_id=_special_id(g, "unknown", n, 0),
                               bos_id=_special_id(g, "bos", n, 1), eos_id=_special_id(g, "eos", n, 2),
                               normalizer_name="identity", remove_extra_whitespaces=False,
                               add_dummy_prefix=g.get("tokenizer.ggml.add_space_prefix", True, bool))
    try:
        return SentencePieceBPE(model, name=g.path)
    except ValueError as e:
        raise ScratchLLMError(str(e)) from None


def _byte_bpe(g: GGUFFile, tokens: list, types: list):
    from ..tokenizers.bpe import BPETokenizer
    from ..tokenizers.gpt2 import bytes_to_unicode
    byte_of = {c: b for b, c in bytes_to_unicode().items()}
    ranks, special = {}, {}
    for i, (text, kind) in enumerate(zip(tokens, types)):
        if kind in (CONTROL, USER_DEFINED):
            special[text] = i
        elif kind in (NORMAL, BYTE):
            try:
                b = bytes(byte_of[c] for c in text)
            except KeyError:
                raise ScratchLLMError(f"{g.path}: token {i} {text!r} is not in GPT-2's byte code") from None
            if b in ranks:
                raise ScratchLLMError(f"{g.path}: token {i} {text!r} repeats token {ranks[b]}")
            ranks[b] = i
    merges = g.get("tokenizer.ggml.merges", [], list)
    last = -1
    for m, line in enumerate(merges):       # our BPE merges by id: the merges must make ids in order
        parts = line.split(" ") if isinstance(line, str) else []
        if len(parts) != 2:
            raise ScratchLLMError(f"{g.path}: tokenizer.ggml.merges[{m}] is {line!r}, not 'left right'")
        r = ranks.get(bytes(byte_of.get(c, 0) for c in parts[0] + parts[1]))
        if r is None or r <= last:
            raise ScratchLLMError(f"{g.path}: tokenizer.ggml.merges[{m}] {line!r} makes token {r}, not a token "
                                  f"after the previous merge's {last}; merges out of id order are not supported")
        last = r
    pre = g.get("tokenizer.ggml.pre", "default", str)
    if pre not in _PRE:
        raise ScratchLLMError(f"{g.path}: tokenizer.ggml.pre {pre!r} is not supported ({sorted(_PRE)} are)")
    n = len(tokens)
    ids = {v: k for k, v in special.items()}
    bos, eos = _special_id(g, "bos", n, None), _special_id(g, "eos", n, None)
    try:
        return BPETokenizer(ranks, pattern=_PRE[pre], special_tokens=special, bos=ids.get(bos),
                            eos=ids.get(eos), name=g.path)
    except ValueError as e:
        raise ScratchLLMError(str(e)) from None


# ------------------------------------------------------------------ writing
def tokenizer_metadata(tok, vocab_size: int) -> list:
    """A scratchllm tokenizer -> ``tokenizer.ggml.*`` metadata entries for ``vocab_size`` ids."""
    from ..tokenizers.bpe import BPETokenizer
    from ..tokenizers.char import CharTokenizer
    from ..tokenizers.sentencepiece import SPACE, SentencePieceBPE
    if isinstance(tok, SentencePieceBPE):
        m = tok.model
        pieces, scores, types = list(m.pieces), [float(s) for s in m.scores], list(m.types)
        meta = [("tokenizer.ggml.model", STRING, "llama"), ("tokenizer.ggml.pre", STRING, "default")]
        ids = {"bos": m.bos_id, "eos": m.eos_id, "unknown": m.unk_id}
        prefix = bool(m.add_dummy_prefix)
    elif isinstance(tok, CharTokenizer):       # one piece per character, no merges, no dummy prefix
        pieces = [SPACE if c == " " else c for c in tok.chars]
        scores, types = [0.0] * len(pieces), [NORMAL] * len(pieces)
        meta = [("tokenizer.ggml.model", STRING, "llama"), ("tokenizer.ggml.pre", STRING, "default")]
        ids, prefix = {}, False
    elif isinstance(tok, BPETokenizer):
        return _bpe_metadata(tok, vocab_size)
    else:
        raise ScratchLLMError(f"cannot store a {type(tok).__name__} in a GGUF file")
    if len(pieces) > vocab_size:
        raise ScratchLLMError(f"the tokenizer has {len(pieces)} tokens, more than the model's {vocab_size}")
    for i in range(len(pieces), vocab_size):               # a padded embedding: unused ids
        pieces.append(f"<unused{i}>")
        scores.append(0.0)
        types.append(UNUSED)
    meta += [("tokenizer.ggml.tokens", (ARRAY, STRING), pieces), ("tokenizer.ggml.scores", (ARRAY, FLOAT32), scores),
             ("tokenizer.ggml.token_type", (ARRAY, INT32), types),
             ("tokenizer.ggml.add_space_prefix", BOOL, prefix)]
    meta += [(f"tokenizer.ggml.{k}_token_id", UINT32, v) for k, v in ids.items() if v is not None and v >= 0]
    if ids.get("bos") is not None:
        meta += [("tokenizer.ggml.add_bos_token", BOOL, True), ("tokenizer.ggml.add_eos_token", BOOL, False)]
    return meta


def bpe_merges(tok) -> list:
    """The merges of a byte-level BPE as (left bytes, right bytes) in priority order.

    Trained tokenizers keep them; for others (GPT-2's files, tiktoken) each token's merge is
    found as tiktoken's converters do: BPE of its bytes using only lower-ranked tokens ends in
    exactly two parts.
    """
    if tok.merges:
        return [(tok.id_to_bytes(a), tok.id_to_bytes(b)) for a, b in tok.merges]
    ranks = tok.ranks
    out = []
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        if len(token) < 2:
            continue
        parts = [bytes([b]) for b in token]
        while len(parts) > 2:
            pair = [ranks.get(a + b, rank) for a, b in zip(parts, parts[1:])]
            k = min(range(len(pair)), key=pair.__getitem__)
            if pair[k] >= rank:
                break
            parts[k:k + 2] = [parts[k] + parts[k + 1]]
        if len(parts) != 2:
            raise ScratchLLMError(f"{tok.name}: token {rank} {token!r} is not one merge of two lower tokens")
        out.append((parts[0], parts[1]))
    return out


def _bpe_metadata(tok, vocab_size: int) -> list:
    from ..tokenizers.gpt2 import bytes_to_unicode
    code = bytes_to_unicode()
    text = lambda b: "".join(code[x] for x in b)  # noqa: E731
    if tok.vocab_size > vocab_size:
        raise ScratchLLMError(f"the tokenizer has {tok.vocab_size} ids, more than the model's {vocab_size}")
    pattern = tok.pattern if tok.pattern in _PRE_OUT else None
    if pattern is None:
        raise ScratchLLMError(f"{tok.name}: split pattern {tok.pattern!r} has no llama.cpp name "
                              f"(gpt2, llama3 and gpt4 do)")
    tokens, types = [f"<unused{i}>" for i in range(vocab_size)], [UNUSED] * vocab_size
    for b, i in tok.ranks.items():
        tokens[i], types[i] = text(b), NORMAL
    for s, i in tok.special_tokens.items():
        tokens[i], types[i] = s, CONTROL
    merges = [f"{text(a)} {text(b)}" for a, b in bpe_merges(tok)]
    meta = [("tokenizer.ggml.model", STRING, "gpt2"), ("tokenizer.ggml.pre", STRING, _PRE_OUT[pattern]),
            ("tokenizer.ggml.tokens", (ARRAY, STRING), tokens), ("tokenizer.ggml.token_type", (ARRAY, INT32), types),
            ("tokenizer.ggml.merges", (ARRAY, STRING), merges)]
    for which, i in (("bos", tok.bos_id), ("eos", tok.eos_id)):
        if i is not None:
            meta.append((f"tokenizer.ggml.{which}_token_id", UINT32, i))
    return meta


__all__ = ["gguf_tokenizer", "tokenizer_metadata", "bpe_merges"]
