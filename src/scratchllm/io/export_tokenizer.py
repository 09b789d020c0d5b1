"""Tokenizers written for other tools: HF ``tokenizer.json`` and llama2.c's ``tokenizer.bin``.

``hf_tokenizer_json(tok)`` builds the HF ``tokenizers`` description of a scratchllm tokenizer:

- byte-level BPE (GPT-2, tiktoken, trained by scratchllm): a ``BPE`` model over GPT-2's
  printable byte code ("Ġthe"), the split regex then ``ByteLevel`` as pre-tokenizers, and
  ``ignore_merges`` (a chunk that is a whole token is that token, as tiktoken does);
- SentencePiece BPE (Llama 2, llama2.c): a ``BPE`` model with byte fallback whose merges are
  the pieces' splits ordered by the merged piece's score (HF's ``SentencePieceExtractor``),
  the "▁" dummy prefix as a normalizer, and BOS added by the post-processor;
- character-level: a ``BPE`` model without merges (every character is a token), ``Fuse`` decoder.

``llama2c_tokenizer_bin(tok)`` is llama2.c's ``tokenizer.py`` export: ``int32 max_len``, then
per piece ``float32 score, int32 len, bytes`` with "▁" as a space and <s>/</s> as "\\n<s>\\n".
"""
import struct

from ..errors import ScratchLLMError


def _added(i: int, text: str) -> dict:
    return {"id": i, "content": text, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": False, "special": True}


def _bpe_model(vocab: dict, merges: list, **kw) -> dict:
    return {"type": "BPE", "dropout": None, "unk_token": kw.get("unk"), "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": kw.get("fuse_unk", False),
            "byte_fallback": kw.get("byte_fallback", False), "ignore_merges": kw.get("ignore_merges", False),
            "vocab": vocab, "merges": [list(m) for m in merges]}


def _doc(model, added=(), normalizer=None, pre=None, post=None, decoder=None) -> dict:
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": list(added),
            "normalizer": normalizer, "pre_tokenizer": pre, "post_processor": post, "decoder": decoder, "model": model}


def _byte_level(tok) -> tuple:
    from ..tokenizers.gpt2 import bytes_to_unicode
    from ..tokenizers.pretokenize import resolve_pattern
    from .gguf_vocab import bpe_merges
    code = bytes_to_unicode()
    text = lambda b: "".join(code[x] for x in b)  # noqa: E731
    vocab = {text(b): i for b, i in sorted(tok.ranks.items(), key=lambda kv: kv[1])}
    used = set(vocab.values()) | set(tok.special_tokens.values())
    for i in range(tok.vocab_size):              # ids no token has (a special token past a short
        if i not in used:                        # training): placeholders, so ids stay where they are
            vocab[f"<unused{i}>"] = i
    merges = [(text(a), text(b)) for a, b in bpe_merges(tok)]
    added = [_added(i, s) for s, i in sorted(tok.special_tokens.items(), key=lambda kv: kv[1])]
    pattern = resolve_pattern(tok.pattern)
    pre = [{"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]
    if pattern:
        pre.insert(0, {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": False})
    doc = _doc(_bpe_model(vocab, merges, ignore_merges=True), added,
               pre={"type": "Sequence", "pretokenizers": pre},
               decoder={"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True})
    names = {i: s for s, i in tok.special_tokens.items()}
    return doc, {"bos_token": names.get(tok.bos_id), "eos_token": names.get(tok.eos_id)}


def sentencepiece_merges(pieces, scores, mergeable) -> list:
    """HF's SentencePieceExtractor: every split (left, right) of a piece into two pieces,
    ordered by the merged piece's score (highest first), then by the halves' ids."""
    vocab = {p: i for i, p in enumerate(pieces) if i in mergeable}
    merges = []
    for piece, i in vocab.items():
        local = [(piece[:k], piece[k:]) for k in range(1, len(piece)) if piece[:k] in vocab and piece[k:] in vocab]
        local.sort(key=lambda lr: (vocab[lr[0]], vocab[lr[1]]))
        merges += [(scores[i], n, lr) for n, lr in enumerate(local)]
    order = sorted(range(len(merges)), key=lambda k: -merges[k][0])       # stable: ties keep vocab order
    return [merges[k][2] for k in order]


def _sentencepiece(tok) -> tuple:
    from ..tokenizers.sp_proto import BYTE, CONTROL, UNKNOWN
    m = tok.model
    pieces, types = list(m.pieces), list(m.types)
    vocab = {p: i for i, p in enumerate(pieces)}
    mergeable = {i for i, t in enumerate(types) if t not in (CONTROL, UNKNOWN, BYTE)}
    merges = sentencepiece_merges(pieces, list(m.scores), mergeable)
    unk = pieces[m.unk_id] if 0 <= m.unk_id < len(pieces) else None
    added = [_added(i, p) for i, p in enumerate(pieces) if types[i] in (CONTROL, UNKNOWN)]
    norm = [{"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]
    dec = [{"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "}, {"type": "ByteFallback"},
           {"type": "Fuse"}]
    if m.add_dummy_prefix:
        norm.insert(0, {"type": "Prepend", "prepend": "\u2581"})
        dec.append({"type": "Strip", "content": " ", "start": 1, "stop": 0})
    post = None
    bos = pieces[m.bos_id] if 0 <= m.bos_id < len(pieces) else None
    if bos is not None:
        special = {"SpecialToken": {"id": bos, "type_id": 0}}
        post = {"type": "TemplateProcessing", "single": [special, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [special, {"Sequence": {"id": "A", "type_id": 0}}, special,
                         {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {bos: {"id": bos, "ids": [m.bos_id], "tokens": [bos]}}}
    doc = _doc(_bpe_model(vocab, merges, unk=unk, fuse_unk=True, byte_fallback=m.byte_fallback), added,
               normalizer={"type": "Sequence", "normalizers": norm}, post=post,
               decoder={"type": "Sequence", "decoders": dec})
    eos = pieces[m.eos_id] if 0 <= m.eos_id < len(pieces) else None
    return doc, {"bos_token": bos, "eos_token": eos, "unk_token": unk}


def _chars(tok) -> tuple:
    vocab = {c: i for i, c in enumerate(tok.chars)}
    return _doc(_bpe_model(vocab, []), decoder={"type": "Fuse"}), {}


def hf_tokenizer_json(tok) -> tuple:
    """A scratchllm tokenizer -> (tokenizer.json dict, the special tokens for tokenizer_config.json)."""
    from ..tokenizers.bpe import BPETokenizer
    from ..tokenizers.char import CharTokenizer
    from ..tokenizers.sentencepiece import SentencePieceBPE
    if isinstance(tok, BPETokenizer):
        return _byte_level(tok)
    if isinstance(tok, SentencePieceBPE):
        return _sentencepiece(tok)
    if isinstance(tok, CharTokenizer):
        return _chars(tok)
    raise ScratchLLMError(f"cannot write a {type(tok).__name__} as an HF tokenizer.json")


def llama2c_tokenizer_bin(tok) -> bytes:
    """A SentencePiece tokenizer as llama2.c's tokenizer.bin."""
    from ..tokenizers.sentencepiece import SPACE, SentencePieceBPE
    if not isinstance(tok, SentencePieceBPE):
        raise ScratchLLMError(f"llama2.c's tokenizer.bin holds SentencePiece vocabularies; a "
                              f"{type(tok).__name__} cannot be written as one")
    m = tok.model
    blobs = []
    for i, piece in enumerate(m.pieces):
        if i == m.bos_id:
            piece = "\n<s>\n"
        elif i == m.eos_id:
            piece = "\n</s>\n"
        blobs.append((float(m.scores[i]), piece.replace(SPACE, " ").encode("utf-8")))
    out = [struct.pack("<i", max(len(b) for _, b in blobs))]
    out += [struct.pack("<fi", s, len(b)) + b for s, b in blobs]
    return b"".join(out)
