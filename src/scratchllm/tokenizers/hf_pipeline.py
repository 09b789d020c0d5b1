"""The pieces of an HF ``tokenizer.json`` pipeline, each as HF's ``tokenizers`` runs it.

Encoding a text goes: added tokens cut out -> **normalizer** (each remaining segment) ->
**pre-tokenizer** (segment -> pre-tokens) -> **model** (BPE, in :mod:`.hf_bpe`) -> **post-processor**
(BOS/EOS around the ids). Decoding: ids -> token strings -> **decoder** chain -> text.

Each builder takes the JSON object of one stage and ``where`` (the file and field, for errors),
and refuses kinds it does not know with a message naming both::

    >>> norm = build_normalizer({"type": "Sequence", "normalizers": [
    ...     {"type": "Prepend", "prepend": "▁"},
    ...     {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}, "t.json")
    >>> norm("Hello world")                  # Llama 2 / TinyLlama: SentencePiece's dummy prefix
    '▁Hello▁world'
"""
from __future__ import annotations

import re
import unicodedata

from ..errors import FileFormatError
from .gpt2 import bytes_to_unicode
from .pretokenize import PATTERNS, _WHITE_SPACE, compile_pattern, translate

__all__ = ["build_normalizer", "build_pre_tokenizer", "build_decoder", "build_template",
           "Piece", "WS_CLASS", "unsupported"]

# Unicode White_Space, what Rust's char::is_whitespace and \s match (Python's \s adds \x1c-\x1f)
WS_CLASS = "[" + "".join(f"\\U{a:08x}-\\U{b:08x}" for a, b in _WHITE_SPACE) + "]"
_WS_CHARS = "".join(chr(c) for a, b in _WHITE_SPACE for c in range(a, b + 1))
_BYTE_CHAR = bytes_to_unicode()                       # byte -> printable character
_CHAR_BYTE = {c: b for b, c in _BYTE_CHAR.items()}
_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")


class Piece:
    """A segment of the text on its way to the model: its text, and whether it starts the
    original text (Metaspace's ``prepend_scheme: "first"`` looks at that)."""
    __slots__ = ("text", "at_start")

    def __init__(self, text: str, at_start: bool):
        self.text, self.at_start = text, at_start


def unsupported(where: str, kind, known) -> FileFormatError:
    return FileFormatError(f"{where}: type {kind!r} is not supported (this reader knows "
                      f"{', '.join(known)}); only BPE tokenizers of the GPT-2 / Llama kinds are read")


def _field(spec: dict, key: str, where: str, types, default=...):
    if key not in spec:
        if default is ...:
            raise FileFormatError(f"{where}: missing field {key!r}")
        return default
    value = spec[key]
    if not isinstance(value, types):
        raise FileFormatError(f"{where}.{key}: expected {getattr(types, '__name__', types)}, got {value!r:.60}")
    return value


def _pattern(spec: dict, where: str) -> re.Pattern:
    """A ``{"String": "..."}`` or ``{"Regex": "..."}`` pattern (Oniguruma syntax) as ``re``."""
    pat = _field(spec, "pattern", where, dict)
    if set(pat) == {"String"} and isinstance(pat["String"], str):
        return re.compile(re.escape(pat["String"]))
    if set(pat) == {"Regex"} and isinstance(pat["Regex"], str):
        try:
            return re.compile(translate(pat["Regex"]))
        except (re.error, ValueError) as exc:
            raise FileFormatError(f"{where}.pattern: regex {pat['Regex']!r:.80} not supported ({exc})") from None
    raise FileFormatError(f"{where}.pattern: expected {{\"String\": ...}} or {{\"Regex\": ...}}, got {pat!r:.80}")


def _matches(rx: re.Pattern, text: str, invert: bool = False) -> list[tuple[int, int, bool]]:
    """HF's ``find_matches``: the text cut into (start, end, is_match) spans covering it."""
    out, prev = [], 0
    for m in rx.finditer(text):
        s, e = m.span()
        if s == e:
            continue
        if prev != s:
            out.append((prev, s, invert))
        out.append((s, e, not invert))
        prev = e
    if prev != len(text):
        out.append((prev, len(text), invert))
    return out


def _char_matches(pred, text: str) -> list[tuple[int, int, bool]]:
    """find_matches for a character predicate: each matching character is its own match."""
    out, last = [], 0
    for i, c in enumerate(text):
        if pred(c):
            if last < i:
                out.append((last, i, False))
            out.append((i, i + 1, True))
            last = i + 1
    if last < len(text):
        out.append((last, len(text), False))
    return out


def split_spans(text: str, spans, behavior: str) -> list[str]:
    """HF's ``NormalizedString::split`` with one of its five delimiter behaviours."""
    keep: list[list] = []
    if behavior == "Isolated":
        keep = [[s, e] for s, e, _ in spans]
    elif behavior == "Removed":
        keep = [[s, e] for s, e, m in spans if not m]
    elif behavior in ("Contiguous", "MergedWithPrevious"):
        prev = False
        for s, e, m in spans:
            joins = (m == prev) if behavior == "Contiguous" else (m and not prev)
            if joins and keep:
                keep[-1][1] = e
            else:
                keep.append([s, e])
            prev = m
    elif behavior == "MergedWithNext":
        prev = False
        for s, e, m in reversed(spans):
            if m and not prev and keep:
                keep[-1][0] = s
            else:
                keep.append([s, e])
            prev = m
        keep.reverse()
    else:
        raise ValueError(f"unknown split behavior {behavior!r}")
    return [text[s:e] for s, e in keep if e > s]


def _stage(list_key: str):
    """Wrap the builder of one pipeline stage (``spec -> function``): ``null`` gives None, a
    ``Sequence`` the composition of its parts (``spec[list_key]``, applied in order), any other
    object what the builder makes of it."""
    def wrap(build_one):
        def build(spec, where: str):
            if spec is None:
                return None
            if not isinstance(spec, dict):
                raise FileFormatError(f"{where}: expected an object or null, got {spec!r:.60}")
            if spec.get("type") != "Sequence":
                return build_one(spec, where)
            parts = [build(s, f"{where}.{list_key}[{k}]") for k, s in enumerate(_field(spec, list_key, where, list))]

            def sequence(x):
                for f in parts:
                    x = f(x) if f else x
                return x
            return sequence
        build.__doc__ = build_one.__doc__
        return build
    return wrap


# ---- normalizers: str -> str --------------------------------------------------------------
_NORMALIZERS = ("Sequence", "Prepend", "Replace", "NFC", "NFD", "NFKC", "NFKD", "Lowercase",
                "Strip", "ByteLevel")


@_stage("normalizers")
def build_normalizer(spec, where: str):
    """The normalizer as a function ``str -> str`` (None for ``null``)."""
    kind = spec.get("type")
    if kind == "Prepend":
        prefix = _field(spec, "prepend", where, str)
        return lambda text: prefix + text if text else text
    if kind == "Replace":
        rx, content = _pattern(spec, where), _field(spec, "content", where, str)
        return lambda text: rx.sub(lambda m: content, text)
    if kind in ("NFC", "NFD", "NFKC", "NFKD"):
        return lambda text: unicodedata.normalize(kind, text)
    if kind == "Lowercase":
        return str.lower
    if kind == "Strip":
        left = _field(spec, "strip_left", where, bool, False)
        right = _field(spec, "strip_right", where, bool, False)

        def strip(text: str) -> str:
            text = text.lstrip(_WS_CHARS) if left else text
            return text.rstrip(_WS_CHARS) if right else text
        return strip
    if kind == "ByteLevel":
        return _to_byte_chars
    raise unsupported(f"{where}.type", kind, _NORMALIZERS)


def _to_byte_chars(text: str) -> str:
    """GPT-2's byte -> printable character map applied to the UTF-8 bytes of ``text``."""
    return "".join(map(_BYTE_CHAR.__getitem__, text.encode("utf-8")))


# ---- pre-tokenizers: list[Piece] -> list[Piece] -------------------------------------------
_PRE_TOKENIZERS = ("Sequence", "ByteLevel", "Split", "Metaspace", "Digits")
_BEHAVIORS = ("Isolated", "Removed", "Contiguous", "MergedWithPrevious", "MergedWithNext")


def _per_piece(fn):
    """Lift ``fn(text, at_start) -> list[str]`` to pieces (only the first keeps ``at_start``)."""
    def run(pieces: list[Piece]) -> list[Piece]:
        out = []
        for p in pieces:
            out += [Piece(t, p.at_start and k == 0) for k, t in enumerate(fn(p.text, p.at_start)) if t]
        return out
    return run


@_stage("pretokenizers")
def build_pre_tokenizer(spec, where: str):
    """The pre-tokenizer as a function ``list[Piece] -> list[Piece]`` (None for ``null``)."""
    kind = spec.get("type")
    if kind == "ByteLevel":
        prefix = _field(spec, "add_prefix_space", where, bool, True)
        splitter = compile_pattern(PATTERNS["gpt2"]) if _field(spec, "use_regex", where, bool, True) else None

        def byte_level(text: str, at_start: bool) -> list[str]:
            if prefix and not text.startswith(" "):
                text = " " + text
            chunks = splitter.split(text) if splitter else [text]
            return [_to_byte_chars(c) for c in chunks]
        return _per_piece(byte_level)
    if kind == "Split":
        behavior = _field(spec, "behavior", where, str)
        if behavior not in _BEHAVIORS:
            raise FileFormatError(f"{where}.behavior: {behavior!r} is not one of {', '.join(_BEHAVIORS)}")
        rx, invert = _pattern(spec, where), _field(spec, "invert", where, bool, False)
        return _per_piece(lambda text, _: split_spans(text, _matches(rx, text, invert), behavior))
    if kind == "Metaspace":
        rep = _field(spec, "replacement", where, str)
        scheme = _metaspace_scheme(spec, where)
        split = _field(spec, "split", where, bool, True)

        def metaspace(text: str, at_start: bool) -> list[str]:
            text = text.replace(" ", rep)
            if not text.startswith(rep) and (scheme == "always" or (scheme == "first" and at_start)):
                text = rep + text
            if not split:
                return [text]
            return split_spans(text, _char_matches(rep.__eq__, text), "MergedWithNext")
        return _per_piece(metaspace)
    if kind == "Digits":
        how = "Isolated" if _field(spec, "individual_digits", where, bool, False) else "Contiguous"
        return _per_piece(lambda text, _: split_spans(text, _char_matches(_is_numeric, text), how))
    raise unsupported(f"{where}.type", kind, _PRE_TOKENIZERS)


def _is_numeric(c: str) -> bool:
    """Rust's ``char::is_numeric``: categories Nd, Nl, No (Python's isnumeric adds CJK numerals)."""
    return unicodedata.category(c)[0] == "N"


def _metaspace_scheme(spec: dict, where: str) -> str:
    scheme = _field(spec, "prepend_scheme", where, str, "always")
    if scheme not in ("always", "first", "never"):
        raise FileFormatError(f"{where}.prepend_scheme: {scheme!r} is not always, first or never")
    if spec.get("add_prefix_space") is False:   # the older field: false means "never"
        scheme = "never"
    return scheme


# ---- decoders: list[str] -> list[str] ------------------------------------------------------
_DECODERS = ("Sequence", "ByteLevel", "Metaspace", "Replace", "ByteFallback", "Fuse", "Strip",
             "BPEDecoder")


def build_decoder(spec, where: str):
    """The decoder as a function ``list[str] -> str`` (HF joins with spaces when ``null``)."""
    chain = _decoder_chain(spec, where)
    if chain is None:
        return " ".join
    return lambda tokens: "".join(chain(list(tokens)))


@_stage("decoders")
def _decoder_chain(spec, where: str):
    """The decoder as a function ``list[str] -> list[str]`` (None for ``null``)."""
    kind = spec.get("type")
    if kind == "ByteLevel":
        return lambda tokens: [_from_byte_chars(tokens)]
    if kind == "Metaspace":
        rep = _field(spec, "replacement", where, str)
        strip_first = _metaspace_scheme(spec, where) != "never"
        return lambda tokens: [t.replace(rep, "" if i == 0 and strip_first else " ")
                               for i, t in enumerate(tokens)]
    if kind == "Replace":
        rx, content = _pattern(spec, where), _field(spec, "content", where, str)
        return lambda tokens: [rx.sub(lambda m: content, t) for t in tokens]
    if kind == "ByteFallback":
        return _byte_fallback
    if kind == "Fuse":
        return lambda tokens: ["".join(tokens)]
    if kind == "Strip":
        content = _field(spec, "content", where, str)
        start, stop = _field(spec, "start", where, int, 0), _field(spec, "stop", where, int, 0)
        return lambda tokens: [_strip(t, content, start, stop) for t in tokens]
    if kind == "BPEDecoder":
        suffix = _field(spec, "suffix", where, str, "</w>")
        return lambda tokens: [t.replace(suffix, "" if i == len(tokens) - 1 else " ")
                               for i, t in enumerate(tokens)]
    raise unsupported(f"{where}.type", kind, _DECODERS)


def _from_byte_chars(tokens) -> str:
    """ByteLevel decoding: each token's characters back to bytes (a token with a character
    outside the map, e.g. an added token, keeps its own UTF-8), then lossy UTF-8."""
    out = bytearray()
    for t in tokens:
        try:
            out += bytes(map(_CHAR_BYTE.__getitem__, t))
        except KeyError:
            out += t.encode("utf-8")
    return out.decode("utf-8", errors="replace")


def _byte_fallback(tokens: list[str]) -> list[str]:
    """``<0xXX>`` runs -> their UTF-8 text, or one U+FFFD per byte when not valid UTF-8."""
    out, pending = [], bytearray()

    def flush():
        if pending:
            try:
                out.append(pending.decode("utf-8"))
            except UnicodeDecodeError:
                out.extend("\ufffd" * len(pending))
            pending.clear()

    for t in tokens:
        m = _BYTE_TOKEN.fullmatch(t) if len(t) == 6 else None
        if m:
            pending.append(int(m.group(1), 16))
        else:
            flush()
            out.append(t)
    flush()
    return out


def _strip(token: str, content: str, start: int, stop: int) -> str:
    lo = 0
    while lo < min(start, len(token)) and token[lo] == content:
        lo += 1
    hi = len(token)
    for _ in range(stop):
        if hi > lo and token[hi - 1] == content:
            hi -= 1
        else:
            break
    return token[lo:hi]


# ---- post-processors: the ids put around a sequence ----------------------------------------
_PROCESSORS = ("TemplateProcessing", "ByteLevel", "Sequence", "RobertaProcessing", "BertProcessing")


def build_template(spec, where: str) -> tuple[list[int], list[int]]:
    """The ids a post-processor puts before and after a single sequence (``add_special_tokens``)."""
    if spec is None:
        return [], []
    if not isinstance(spec, dict):
        raise FileFormatError(f"{where}: expected an object or null, got {spec!r:.60}")
    kind = spec.get("type")
    if kind == "ByteLevel":
        return [], []
    if kind == "Sequence":
        before, after = [], []
        for k, s in enumerate(_field(spec, "processors", where, list)):
            b, a = build_template(s, f"{where}.processors[{k}]")
            before, after = before + b, after + a
        return before, after
    if kind in ("RobertaProcessing", "BertProcessing"):
        cls, sep = _field(spec, "cls", where, list), _field(spec, "sep", where, list)
        if len(cls) != 2 or len(sep) != 2 or not all(type(x[1]) is int for x in (cls, sep)):
            raise FileFormatError(f"{where}: cls and sep must be [token, id]")
        return [cls[1]], [sep[1]]
    if kind == "TemplateProcessing":
        specials = _field(spec, "special_tokens", where, dict, {})
        before, after, seen_a = [], [], False
        for k, item in enumerate(_field(spec, "single", where, list)):
            if not isinstance(item, dict) or len(item) != 1:
                raise FileFormatError(f"{where}.single[{k}]: expected {{\"SpecialToken\": ...}} or "
                                      "{\"Sequence\": ...}")
            (tag, body), = item.items()
            if tag == "Sequence":
                seen_a = True
                continue
            name = body.get("id") if isinstance(body, dict) else None
            entry = specials.get(name) if isinstance(name, str) else None
            ids = entry.get("ids") if isinstance(entry, dict) else None
            if tag != "SpecialToken" or not isinstance(ids, list) or not all(type(i) is int for i in ids):
                raise FileFormatError(f"{where}.single[{k}]: special token {name!r} has no ids in "
                                 f"{where}.special_tokens")
            (after if seen_a else before).extend(ids)
        return before, after
    raise unsupported(f"{where}.type", kind, _PROCESSORS)
