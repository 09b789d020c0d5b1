"""``CharTokenizer``: one token per character, the vocabulary read off a text.

The simplest tokenizer, the one of char-rnn and nanoGPT's Shakespeare demo:

>>> tok = CharTokenizer.train("hello world")
>>> tok.vocab_size, tok.encode("hello")
(8, [3, 2, 4, 4, 5])
>>> tok.decode([3, 2, 4, 4, 5])
'hello'

Saved as a small JSON file ``{"format": "scratchllm-char", "version": 1, "chars": [...]}``
(no pickle).
"""
from __future__ import annotations

import json
from pathlib import Path

from ..backend import xp
from ..errors import ScratchLLMError

FORMAT = "scratchllm-char"


class CharTokenizer:
    """Maps each distinct character of a text to an id (sorted by code point)."""

    def __init__(self, chars):
        chars = list(chars)
        if not all(isinstance(c, str) and len(c) == 1 for c in chars) or len(set(chars)) != len(chars):
            raise ScratchLLMError("CharTokenizer: chars must be distinct single characters")
        self.chars = chars
        self.stoi = {c: i for i, c in enumerate(chars)}
        # sorted code points and their ids, for the vectorised encoder
        order = sorted(range(len(chars)), key=lambda i: chars[i])
        self._codes = xp.array([ord(chars[i]) for i in order], dtype=xp.uint32)
        self._ids = xp.array(order, dtype=xp.int64)

    @classmethod
    def train(cls, text: str) -> "CharTokenizer":
        """The vocabulary of ``text``: its distinct characters in code-point order."""
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        return self.encode_array(text).tolist()

    def encode_array(self, text: str):
        """``text`` -> int64 array of ids; vectorised, ~100 MB/s."""
        codes = xp.frombuffer(text.encode("utf-32-le"), dtype=xp.uint32)
        if codes.size == 0:
            return xp.zeros(0, dtype=xp.int64)
        pos = xp.searchsorted(self._codes, codes)
        pos_clipped = xp.minimum(pos, len(self._codes) - 1)
        bad = self._codes[pos_clipped] != codes
        if bad.any():
            i = int(xp.argmax(bad))
            raise ScratchLLMError(f"CharTokenizer: character {text[i]!r} (at offset {i}) "
                                  f"is not in the vocabulary of {self.vocab_size} characters")
        return self._ids[pos_clipped]

    def decode(self, ids) -> str:
        n = self.vocab_size
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < n:
                raise ScratchLLMError(f"CharTokenizer: id {i} is out of range [0, {n})")
            out.append(self.chars[i])
        return "".join(out)

    # ----------------------------------------------------------------- files
    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": 1, "chars": self.chars}

    def save(self, path) -> None:
        """Write the JSON file atomically (temporary file + rename)."""
        from ..atomic import atomic_write
        with atomic_write(path, "w") as f:
            json.dump(self.to_dict(), f, ensure_ascii=False)

    @classmethod
    def from_dict(cls, d: dict, source="<dict>") -> "CharTokenizer":
        if not isinstance(d, dict) or d.get("format") != FORMAT or not isinstance(d.get("chars"), list):
            raise ScratchLLMError(f"{source}: not a character tokenizer file "
                                  f"(expected a JSON object with \"format\": \"{FORMAT}\" and \"chars\")")
        try:
            return cls(d["chars"])
        except ScratchLLMError as e:
            raise ScratchLLMError(f"{source}: {e}") from None

    @classmethod
    def load(cls, path) -> "CharTokenizer":
        path = Path(path)
        if not path.is_file():
            raise ScratchLLMError(f"tokenizer file not found: {path}")
        from ..jsonio import read_json
        return cls.from_dict(read_json(path, "tokenizer file", expect=None), source=str(path))

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"
