"""Reader for tiktoken BPE files (``base64(token bytes) rank`` per line) and Llama 3's extras.

Llama 3's ``tokenizer.model`` is such a file with exactly 128,000 ranks. Meta's code appends
256 special tokens after them (128000 ``<|begin_of_text|>``, 128001 ``<|end_of_text|>``, ...,
128009 ``<|eot_id|>``, reserved ones between) and splits text with the "llama3" pattern::

    >>> tok = load_tiktoken("tokenizer.model")          # doctest: +SKIP
    >>> tok.encode("This is a test sentence.", bos=True, eos=True)   # doctest: +SKIP
    [128000, 2028, 374, 264, 1296, 11914, 13, 128001]
"""
from __future__ import annotations

import base64
import binascii
import os

from ..errors import FileFormatError
from .bpe import BPETokenizer

__all__ = ["read_tiktoken_ranks", "load_tiktoken", "llama3_special_tokens", "LLAMA3_N_RANKS",
           "Llama3ChatFormat"]

LLAMA3_N_RANKS = 128_000


def llama3_special_tokens(first_id: int = LLAMA3_N_RANKS) -> dict[str, int]:
    """Meta's 256 Llama 3 special tokens, in Meta's order, numbered from ``first_id``."""
    names = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
             "<|reserved_special_token_1|>", "<|reserved_special_token_2|>",
             "<|reserved_special_token_3|>", "<|start_header_id|>", "<|end_header_id|>",
             "<|reserved_special_token_4|>", "<|eot_id|>"]
    names += [f"<|reserved_special_token_{i}|>" for i in range(5, 256 - 5)]
    return {name: first_id + k for k, name in enumerate(names)}


def read_tiktoken_ranks(path: str | os.PathLike) -> dict[bytes, int]:
    """Parse a tiktoken file into ``token bytes -> rank``; errors name the file and line."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    ranks: dict[bytes, int] = {}
    seen_ranks: set[int] = set()
    for n, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2:
            raise ValueError(f"{path}: line {n}: expected 'base64 rank', got {line[:60]!r}")
        b64, rank_text = fields
        try:
            token = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"{path}: line {n}: bad base64 {b64[:60]!r}") from None
        if not rank_text.isdigit():
            raise ValueError(f"{path}: line {n}: rank {rank_text[:20]!r} is not an integer")
        rank = int(rank_text)
        if rank in seen_ranks:
            raise ValueError(f"{path}: line {n}: duplicate rank {rank}")
        if token in ranks:
            raise ValueError(f"{path}: line {n}: token {token!r} already has rank {ranks[token]}")
        seen_ranks.add(rank)
        ranks[token] = rank
    if not ranks:
        raise ValueError(f"{path}: empty tiktoken file")
    top = max(seen_ranks)
    if top >= len(ranks):
        raise ValueError(f"{path}: rank {top} is not below the number of tokens {len(ranks)}; "
                         f"tiktoken ranks number the tokens 0..{len(ranks) - 1}")
    return ranks


def load_tiktoken(path: str | os.PathLike, pattern: str | None = None,
                  special_tokens: dict[str, int] | None = None, bos: str | None = None,
                  eos: str | None = None, trust_pattern: bool = True) -> BPETokenizer:
    """A tokenizer from a tiktoken file.

    Llama 3's file (128,000 ranks) gets the "llama3" pattern, Meta's 256 special tokens and
    bos/eos unless told otherwise. Other files take ``pattern`` (default "gpt4", the cl100k
    pattern) and ``special_tokens``. (The file holds no pattern: ``pattern`` comes from the
    caller, so ``trust_pattern`` is accepted like the other readers' and not needed.)
    """
    path = os.fspath(path)
    try:
        ranks = read_tiktoken_ranks(path)
    except ValueError as exc:
        raise FileFormatError(str(exc)) from None
    if len(ranks) == LLAMA3_N_RANKS and pattern is None and special_tokens is None:
        pattern, special_tokens = "llama3", llama3_special_tokens()
        bos = bos or "<|begin_of_text|>"
        eos = eos or "<|end_of_text|>"
    try:
        return BPETokenizer(ranks, pattern=pattern or "gpt4", special_tokens=special_tokens,
                            bos=bos, eos=eos, name=path)
    except ValueError as exc:
        msg = str(exc)
        raise FileFormatError(msg if path in msg else f"{path}: {msg}") from None


class Llama3ChatFormat:
    """Meta's Llama 3 chat format on top of a Llama 3 tokenizer.

    A message ``{"role": "user", "content": "Hi"}`` becomes
    ``<|start_header_id|>user<|end_header_id|>\\n\\nHi<|eot_id|>``; a dialog prompt is
    ``<|begin_of_text|>`` + its messages + an open assistant header.
    """

    def __init__(self, tokenizer: BPETokenizer):
        self.tokenizer = tokenizer
        sp = tokenizer.special_tokens
        try:
            self.start_header_id = sp["<|start_header_id|>"]
            self.end_header_id = sp["<|end_header_id|>"]
            self.eot_id = sp["<|eot_id|>"]
        except KeyError as exc:
            raise ValueError(f"{tokenizer.name}: not a Llama 3 tokenizer (no {exc})") from None

    @property
    def stop_tokens(self) -> list[int]:
        """Ids that end an assistant turn: <|end_of_text|> and <|eot_id|>."""
        return [i for i in (self.tokenizer.eos_id, self.eot_id) if i is not None]

    def encode_header(self, message: dict) -> list[int]:
        tok = self.tokenizer
        return ([self.start_header_id] + tok.encode(message["role"]) + [self.end_header_id]
                + tok.encode("\n\n"))

    def encode_message(self, message: dict) -> list[int]:
        return (self.encode_header(message) + self.tokenizer.encode(message["content"].strip())
                + [self.eot_id])

    def encode_dialog_prompt(self, dialog: list[dict]) -> list[int]:
        ids = [self.tokenizer._id_for("bos")]
        for message in dialog:
            ids += self.encode_message(message)
        return ids + self.encode_header({"role": "assistant", "content": ""})
