"""Pre-tokenization: split text into chunks with a regex before BPE runs on each chunk.

The reference split patterns (GPT-2, GPT-4's cl100k, Llama 3) are written for the Rust
``fancy-regex`` / PyPI ``regex`` dialect, which knows Unicode properties such as ``\\p{L}``
(any letter) and ``\\p{N}`` (any number) and whose ``\\s`` is Unicode's White_Space property.
The standard library's ``re`` knows neither, and its ``\\s`` is wider (it also matches the
ASCII separators U+001C..U+001F). So we translate a pattern into plain ``re`` syntax:

- ``\\p{L}``, ``\\p{N}``, ``\\p{Lu}``, ... (and ``\\P{..}``) become explicit character classes
  built once from :mod:`unicodedata` (general categories), cached;
- ``\\s`` / ``\\S`` become the explicit White_Space class and its complement.

Example::

    >>> split_text("Hello world's 123", "gpt2")
    ['Hello', ' world', "'s", ' 123']

The translated pattern matches tiktoken token for token (tests check the whole tiny-Shakespeare
corpus and generated Unicode text). Code points unassigned in Python's Unicode database
(``unicodedata.unidata_version``) are classified as unassigned, which may differ from a newer
Unicode version in the Rust library.
"""
from __future__ import annotations

import functools
import re
import sys
import unicodedata

__all__ = ["PATTERNS", "Splitter", "resolve_pattern", "compile_pattern", "split_text", "translate",
           "check_file_pattern"]

#: Named split patterns, in the dialect of tiktoken (translated by :func:`translate`).
PATTERNS = {
    "gpt2": r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
    "gpt4": r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+""",
    "llama3": r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""",
}
PATTERNS["cl100k"] = PATTERNS["gpt4"]

# Unicode's White_Space property (PropList.txt); what Rust's and `regex`'s \s match.
_WHITE_SPACE = [(0x09, 0x0D), (0x20, 0x20), (0x85, 0x85), (0xA0, 0xA0), (0x1680, 0x1680),
                (0x2000, 0x200A), (0x2028, 0x2029), (0x202F, 0x202F), (0x205F, 0x205F),
                (0x3000, 0x3000)]


def resolve_pattern(pattern: str | None) -> str | None:
    """A pattern name ("gpt2", "gpt4", "llama3") -> its regex text; anything else unchanged."""
    if pattern is None or pattern == "none":
        return None
    return PATTERNS.get(pattern, pattern)


def check_file_pattern(pattern, source: str, trust_pattern: bool = False):
    """A split pattern read from a file: a known name ("gpt2", "gpt4", "llama3", "none"), the
    exact text of a known pattern, or null -- any other regex only with ``trust_pattern=True``.

    A regex runs on every text the tokenizer encodes, and some take exponential time: the
    pattern ``(a+)+b`` needs seconds for 24 letters and centuries for 60. A file from a stranger
    must not choose one. Raises ``FileFormatError`` naming ``source``.
    """
    from ..errors import FileFormatError
    if pattern is None:
        return None
    if not isinstance(pattern, str):
        raise FileFormatError(f"{source}: \"pattern\" must be a string or null, got {type(pattern).__name__}")
    if trust_pattern or pattern == "none" or pattern in PATTERNS or pattern in PATTERNS.values():
        return pattern
    raise FileFormatError(f"{source}: split pattern {pattern[:60]!r} is not one of the known patterns "
                          f"({', '.join(sorted(PATTERNS))}, none); a regex from a file can take exponential "
                          f"time on some texts, so it is used only when the caller passes trust_pattern=True")


@functools.lru_cache(maxsize=None)
def _category_ranges() -> dict[str, list[tuple[int, int]]]:
    """General category (two letters, e.g. "Lu") -> sorted code-point ranges. Built once."""
    ranges: dict[str, list[list[int]]] = {}
    category = unicodedata.category
    prev_cat, start = None, 0
    for cp in range(sys.maxunicode + 1):
        cat = category(chr(cp))
        if cat != prev_cat:
            if prev_cat is not None:
                ranges.setdefault(prev_cat, []).append((start, cp - 1))
            prev_cat, start = cat, cp
    ranges.setdefault(prev_cat, []).append((start, sys.maxunicode))
    return ranges


def _fmt(cp: int) -> str:
    return f"\\U{cp:08x}"


@functools.lru_cache(maxsize=None)
def _class_body(prop: str, bmp_only: bool) -> str:
    """Body of a character class (no brackets) for a property: "L", "Nd", or "s" (White_Space).

    With ``bmp_only`` the ranges above U+FFFF are dropped: ``re`` tests those one range at a
    time (slow), while a class inside the BMP compiles to a two-level bitmap (fast).
    """
    if prop == "s":
        spans = _WHITE_SPACE
    else:
        cats = _category_ranges()
        names = [c for c in cats if c == prop or (len(prop) == 1 and c[0] == prop)]
        if not names:
            raise ValueError(f"unknown Unicode property \\p{{{prop}}} in split pattern")
        spans = sorted(r for name in names for r in cats[name])
    if bmp_only:
        spans = [(a, min(b, 0xFFFF)) for a, b in spans if a <= 0xFFFF]
    return "".join(_fmt(a) if a == b else f"{_fmt(a)}-{_fmt(b)}" for a, b in spans)


_TOKEN = re.compile(r"\\[pP]\{(\w+)\}|\\[pP](\w)|\\[sS]|\\.|\[\^?|\]|.", re.S)


def translate(pattern: str, bmp_only: bool = False) -> str:
    """Rewrite a fancy-regex pattern into stdlib ``re`` syntax (``\\p{..}``, ``\\s``, ``\\S``).

    ``bmp_only`` gives a faster pattern that is exact only on text without code points above
    U+FFFF (see :class:`Splitter`).
    """
    out, in_class, class_start = [], False, False
    for m in _TOKEN.finditer(pattern):
        tok = m.group(0)
        prop = m.group(1) or m.group(2)
        if prop is not None or tok in ("\\s", "\\S"):
            negated = tok[1] in "PS"
            body = _class_body(prop or "s", bmp_only)
            if in_class:
                if negated:  # a negated property inside a class has no short form in `re`
                    raise ValueError(f"{tok} inside [...] is not supported in split patterns")
                out.append(body)
            else:
                out.append(f"[{'^' if negated else ''}{body}]")
        elif tok.startswith("[") and not in_class:
            in_class, class_start = True, True
            out.append(tok)
            continue
        elif tok == "]" and in_class and not class_start:
            in_class = False
            out.append(tok)
        else:
            out.append(tok)
        class_start = False
    return "".join(out)


_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


class Splitter:
    """A compiled split pattern. ``split(text)`` -> list of chunks (the regex's matches).

    Two compiled forms are kept: one exact for all text, and a faster one whose character
    classes stop at U+FFFF, used when the text has no code point above U+FFFF (a quick scan).
    """

    def __init__(self, pattern: str):
        self.pattern = pattern
        try:
            self._full = re.compile(translate(pattern))
            self._bmp = re.compile(translate(pattern, bmp_only=True))
        except re.error as exc:
            raise ValueError(f"invalid split pattern {pattern!r}: {exc}") from None

    def split(self, text: str) -> list[str]:
        rx = self._full if _ASTRAL.search(text) else self._bmp
        if rx.groups:  # capturing groups would make findall return the groups
            return [m.group(0) for m in rx.finditer(text)]
        return rx.findall(text)


@functools.lru_cache(maxsize=32)
def compile_pattern(pattern: str) -> Splitter:
    """A pattern (name or regex text) -> its :class:`Splitter`; cached."""
    return Splitter(resolve_pattern(pattern))


def split_text(text: str, pattern: str | None) -> list[str]:
    """Split text into pre-token chunks; with no pattern the whole text is one chunk."""
    if resolve_pattern(pattern) is None:
        return [text] if text else []
    return compile_pattern(pattern).split(text)
