"""scratchllm's tokenizer file: versioned, human-readable JSON, no pickle.

Format ``scratchllm-bpe`` version 1 (one merge per line so a person can read it)::

    {
      "format": "scratchllm-bpe",
      "version": 1,
      "pattern": "gpt4",                      # a pattern name, regex text, or null (no split)
      "special_tokens": {"<|endoftext|>": 512},
      "bos": null,                            # special-token texts for encode(bos=/eos=)
      "eos": "<|endoftext|>",
      "merges": [
        [101, 32, "e "],                      # token 256 = token 101 + token 32, shown as text
        [116, 104, "th"],                     # token 257
        ...
      ]
    }

Tokens 0..255 are the single bytes 0..255; merge ``i`` makes token ``256 + i`` from its two
ids. The third element is only for people (the token's bytes as text, undecodable bytes as
``\\xNN``); the reader ignores it. Writes are atomic (temporary file, then rename).
"""
from __future__ import annotations

import json
import os

from ..atomic import atomic_write
from ..errors import FileFormatError, ScratchLLMError
from ..jsonio import read_json
from .bpe import BPETokenizer
from .pretokenize import check_file_pattern

__all__ = ["FORMAT", "VERSION", "save_bpe", "load_bpe"]

FORMAT = "scratchllm-bpe"
VERSION = 1


def save_bpe(tok: BPETokenizer, path: str | os.PathLike) -> None:
    if tok.merges is None:
        raise ValueError(f"{tok.name}: only tokenizers trained by scratchllm can be saved; "
                         "GPT-2/tiktoken/SentencePiece tokenizers are read from their files")
    inv = {i: b for b, i in tok._ranks.items()}
    id_to_text = {v: k for k, v in tok.special_tokens.items()}
    head = {"format": FORMAT, "version": VERSION, "pattern": tok.pattern,
            "special_tokens": tok.special_tokens,
            "bos": id_to_text.get(tok.bos_id) if tok.bos_id is not None else None,
            "eos": id_to_text.get(tok.eos_id) if tok.eos_id is not None else None}
    lines = ["{"]
    lines += [f"  {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}," for k, v in head.items()]
    lines.append('  "merges": [')
    rows = []
    for k, (a, b) in enumerate(tok.merges):
        shown = inv[256 + k].decode("utf-8", errors="backslashreplace")
        rows.append(f"    [{a}, {b}, {json.dumps(shown, ensure_ascii=False)}]")
    lines.append(",\n".join(rows))
    lines += ["  ]", "}", ""]
    with atomic_write(path, "w") as f:
        f.write("\n".join(lines))


def _fail(path, msg: str):
    raise FileFormatError(f"{os.fspath(path)}: {msg}")


def load_bpe(path: str | os.PathLike, trust_pattern: bool = False) -> BPETokenizer:
    """Read a scratchllm tokenizer file. Its ``"pattern"`` must be a known one (see
    :func:`.pretokenize.check_file_pattern`) unless ``trust_pattern=True``."""
    try:
        doc = read_json(path, "tokenizer file", expect=None)
    except ScratchLLMError as exc:
        _fail(path, f"not a scratchllm tokenizer file (bad JSON: {str(exc).removeprefix(os.fspath(path) + ': ')})")
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        _fail(path, f'not a scratchllm tokenizer file (no "format": "{FORMAT}")')
    if doc.get("version") != VERSION:
        _fail(path, f"unsupported {FORMAT} version {doc.get('version')!r} (this reader: {VERSION})")
    merges_in = doc.get("merges")
    if not isinstance(merges_in, list):
        _fail(path, '"merges" must be a list')
    vocab = [bytes([b]) for b in range(256)]
    merges = []
    # a merge may double a token's length, so 40 merges could describe a terabyte: the tokens
    # together may hold at most 16 bytes per byte of the file (a saved file shows every token)
    budget, total = 16 * os.path.getsize(path) + (1 << 16), 256
    for k, m in enumerate(merges_in):
        if not (isinstance(m, list) and len(m) >= 2 and all(type(x) is int for x in m[:2])
                and all(0 <= x < len(vocab) for x in m[:2])):
            _fail(path, f"merge {k} must be [left_id, right_id, ...] with ids below {len(vocab)},"
                        f" got {m!r}")
        total += len(vocab[m[0]]) + len(vocab[m[1]])
        if total > budget:
            _fail(path, f"merge {k} makes the tokens longer than {budget} bytes in all; not a tokenizer")
        merges.append((m[0], m[1]))
        vocab.append(vocab[m[0]] + vocab[m[1]])
    ranks = {t: i for i, t in enumerate(vocab)}
    if len(ranks) != len(vocab):
        _fail(path, "two merges build the same token bytes")
    special = doc.get("special_tokens") or {}
    if not isinstance(special, dict) or not all(type(v) is int for v in special.values()):
        _fail(path, '"special_tokens" must map text to integer ids')
    for which in ("bos", "eos"):
        if doc.get(which) is not None and not isinstance(doc.get(which), str):
            _fail(path, f'"{which}" must be a special-token text or null')
    pattern = check_file_pattern(doc.get("pattern"), os.fspath(path), trust_pattern)
    try:
        return BPETokenizer(ranks, pattern=pattern, special_tokens=special, bos=doc.get("bos"),
                            eos=doc.get("eos"), merges=merges, name=os.fspath(path))
    except ValueError as exc:
        msg = str(exc)
        raise FileFormatError(msg if os.fspath(path) in msg else f"{os.fspath(path)}: {msg}") from None
