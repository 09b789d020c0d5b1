"""``load_tokenizer(path_or_name)``: pick the reader from what the path holds.

- ``"gpt2"``: GPT-2's files bundled in the package (works offline);
- a folder with ``encoder.json`` + ``vocab.bpe`` (GPT-2 format), or with one of
  ``tokenizer.json`` (scratchllm's format), ``tokenizer.model``, ``tokenizer.bin``;
- a file, recognised by its first bytes: ``{`` -> scratchllm JSON (byte-level BPE, or character-level); ``base64 rank`` lines ->
  tiktoken (Llama 3's is recognised by its 128,000 ranks); a protobuf whose first field is a
  piece (byte 0x0A), or any other ``*.model`` -> SentencePiece; otherwise llama2.c's
  ``tokenizer.bin``.
"""
from __future__ import annotations

import os
import re

__all__ = ["load_tokenizer"]

_TIKTOKEN_LINE = re.compile(rb"[A-Za-z0-9+/=]+ [0-9]+\r?")
_FOLDER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer.bin")


def _sniff(path: str) -> str:
    with open(path, "rb") as f:
        head = f.read(4096)
    if not head:
        raise ValueError(f"{path}: empty file, not a tokenizer")
    if head.lstrip()[:1] == b"{":
        return "scratchllm"
    if _TIKTOKEN_LINE.fullmatch(head.split(b"\n", 1)[0]):
        return "tiktoken"
    if head[:1] == b"\x0a" or path.endswith(".model"):
        return "sentencepiece"
    return "llama2c"


def _json_format(path: str):
    """The ``"format"`` field of a scratchllm JSON tokenizer file (None if unreadable)."""
    import json
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f).get("format")
    except (OSError, ValueError, AttributeError):
        return None


def load_tokenizer(path_or_name: str | os.PathLike, **kwargs):
    """Load a tokenizer; ``kwargs`` go to the reader (tiktoken files: ``pattern``,
    ``special_tokens``, ``bos``, ``eos``). Returns an object with ``encode``/``decode``."""
    from .gpt2 import load_gpt2

    path = os.fspath(path_or_name)
    if path == "gpt2" and not os.path.exists(path):
        return load_gpt2()
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such tokenizer file or folder (names: 'gpt2')")
    if os.path.isdir(path):
        if all(os.path.isfile(os.path.join(path, f)) for f in ("encoder.json", "vocab.bpe")):
            return load_gpt2(path)
        skipped = ""
        for name in _FOLDER_FILES:
            file = os.path.join(path, name)
            if not os.path.isfile(file):
                continue
            if name == "tokenizer.json" and not str(_json_format(file) or "").startswith("scratchllm"):
                skipped = " (its tokenizer.json is not scratchllm's format, e.g. HF's; not read)"
                continue   # an HF folder: its tokenizer.model, if any, is read instead
            return load_tokenizer(file, **kwargs)
        raise FileNotFoundError(f"{path}: folder holds no tokenizer (looked for encoder.json + "
                                f"vocab.bpe, {', '.join(_FOLDER_FILES)}){skipped}")
    if os.path.basename(path) in ("encoder.json", "vocab.bpe"):
        return load_gpt2(os.path.dirname(path) or ".")
    kind = _sniff(path)
    if kind == "scratchllm":
        from .char import FORMAT as CHAR_FORMAT, CharTokenizer
        from .fileformat import load_bpe
        if _json_format(path) == CHAR_FORMAT:
            return CharTokenizer.load(path)
        return load_bpe(path)
    if kind == "tiktoken":
        from .tiktoken_file import load_tiktoken
        return load_tiktoken(path, **kwargs)
    if kind == "sentencepiece":
        from .sentencepiece import SentencePieceBPE
        from .sp_proto import read_model_file
        return SentencePieceBPE(read_model_file(path), name=path)
    from .llama2c import load_llama2c
    return load_llama2c(path)
