"""Reader for OpenAI's GPT-2 tokenizer files: encoder.json + vocab.bpe.

GPT-2 stores token bytes as printable text: each byte 0..255 is mapped to one visible Unicode
character (``bytes_to_unicode``: printable Latin-1 bytes map to themselves, the others to
U+0100 onwards; the space 0x20 becomes "Ġ"). ``vocab.bpe`` lists the 50,000 merges in rank
order; ``encoder.json`` maps each token's text to its id. Ranks are rebuilt as tiktoken does
(bytes in GPT-2's order, then the merges) and checked against ``encoder.json``.

The files ship inside the package (``assets/``, MIT licence beside them), so
``load_gpt2()`` works offline.
"""
from __future__ import annotations

import functools
import os

from ..errors import FileFormatError, ScratchLLMError
from ..jsonio import loads_json
from .bpe import BPETokenizer

__all__ = ["bytes_to_unicode", "load_gpt2", "ASSETS"]

ASSETS = os.path.join(os.path.dirname(__file__), "assets")
ENDOFTEXT = "<|endoftext|>"


@functools.lru_cache(maxsize=None)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character map, e.g. ``{32: "Ġ", 65: "A", 10: "Ċ", ...}``."""
    keep = {b for b in range(256) if chr(b).isprintable() and chr(b) != " "}
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: GPT-2 tokenizer file not found") from None
    except UnicodeDecodeError as exc:
        raise FileFormatError(f"{path}: not UTF-8 text ({exc})") from None


def load_gpt2(folder: str | os.PathLike | None = None) -> BPETokenizer:
    """GPT-2's tokenizer from a folder holding encoder.json + vocab.bpe (default: bundled)."""
    folder = os.fspath(folder) if folder is not None else ASSETS
    enc_path = os.path.join(folder, "encoder.json")
    bpe_path = os.path.join(folder, "vocab.bpe")
    try:
        encoder = loads_json(_read(enc_path), enc_path, "encoder")
    except ScratchLLMError as exc:
        raise FileFormatError(f"{enc_path}: bad JSON ({str(exc).removeprefix(enc_path + ': ')})") from None
    if not isinstance(encoder, dict):
        raise FileFormatError(f"{enc_path}: expected a JSON object token -> id")

    byte_of = {c: b for b, c in bytes_to_unicode().items()}

    def to_bytes(text: str, where: str) -> bytes:
        try:
            return bytes(byte_of[c] for c in text)
        except KeyError as exc:
            raise FileFormatError(f"{where}: {text!r} holds {exc.args[0]!r}, not a GPT-2 byte "
                             "character") from None

    printable = [b for b in range(256) if chr(b).isprintable() and chr(b) != " "]
    order = printable + sorted(set(range(256)) - set(printable))
    ranks = {bytes([b]): i for i, b in enumerate(order)}
    lines = _read(bpe_path).split("\n")
    if lines and lines[0].startswith("#version"):
        lines = lines[1:]
    for n, line in enumerate(lines, start=2):
        if not line.strip():
            continue
        parts = line.split(" ")
        if len(parts) != 2:
            raise FileFormatError(f"{bpe_path}: line {n} must be two tokens separated by a space, "
                             f"got {line!r}")
        token = to_bytes(parts[0], bpe_path) + to_bytes(parts[1], bpe_path)
        if token in ranks:
            raise FileFormatError(f"{bpe_path}: line {n} repeats the merge {line!r}")
        ranks[token] = len(ranks)

    special = {}
    for text, i in encoder.items():
        if text == ENDOFTEXT:
            special[text] = i
            continue
        b = to_bytes(text, enc_path)
        if ranks.get(b) != i:
            raise FileFormatError(f"{enc_path}: token {text!r} has id {i} but {bpe_path} gives rank "
                             f"{ranks.get(b)}")
    if len(encoder) - len(special) != len(ranks):
        raise FileFormatError(f"{enc_path}: {len(encoder) - len(special)} tokens, but {bpe_path} "
                         f"makes {len(ranks)}")
    eot = ENDOFTEXT if special else None
    try:
        return BPETokenizer(ranks, pattern="gpt2", special_tokens=special, bos=eot, eos=eot, name=folder)
    except ValueError as exc:
        raise FileFormatError(f"{enc_path}: {exc}") from None
