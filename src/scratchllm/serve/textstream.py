"""Token ids -> text pieces for streaming, and stop strings.

A token is not a character: byte-level BPE splits "é" (2 bytes) or "🙂" (4 bytes) over
several tokens, so decoding each token on its own would send broken characters (U+FFFD) to the
client. ``Detokenizer`` holds back the bytes of an unfinished character until the rest arrive::

    >>> d = Detokenizer(tok)                     # doctest: +SKIP
    >>> d.push(id_of(b"\\xf0\\x9f")), d.push(id_of(b"\\x99\\x82")), d.flush()   # doctest: +SKIP
    ('', '🙂', '')

``StopMatcher`` holds back text that may be the start of a stop string, so a stop string is
never sent, not even in part, and the text ends right before it.
"""
from __future__ import annotations

import codecs


class Detokenizer:
    """Incremental decoding: ``push(id) -> new text`` (possibly ""), ``flush() -> the rest``.

    Tokenizers with ``id_to_bytes`` (byte-level BPE) go through an incremental UTF-8 decoder
    (invalid bytes become U+FFFD exactly as ``tok.decode`` does). Others (SentencePiece,
    characters) are decoded as text after a few ``context`` ids (the prompt's last ones), so
    SentencePiece keeps the space it drops at the very start of a text; text that ends in
    U+FFFD (an incomplete byte sequence) waits for the next token.
    """

    CONTEXT = 4

    def __init__(self, tokenizer, context=()):
        self.tok = tokenizer
        self.bytes_mode = callable(getattr(tokenizer, "id_to_bytes", None))
        if self.bytes_mode:
            self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._context = [int(i) for i in list(context)[-self.CONTEXT:]]
        self._pending: list[int] = []

    def push(self, token_id: int) -> str:
        """The text that ``token_id`` completes; an id the tokenizer does not know (a model whose
        vocabulary is padded past the tokenizer's) shows as U+FFFD."""
        if self.bytes_mode:
            try:
                return self._utf8.decode(self.tok.id_to_bytes(int(token_id)))
            except (KeyError, ValueError):
                return self._utf8.decode(b"\xff")                       # an invalid byte: U+FFFD
        self._pending.append(int(token_id))
        try:
            text = self._text()
        except (KeyError, ValueError):
            self._pending.pop()
            return "\ufffd"
        if text.endswith("\ufffd"):
            return ""
        self._context = (self._context + self._pending)[-self.CONTEXT:]
        self._pending = []
        return text

    def flush(self) -> str:
        if self.bytes_mode:
            return self._utf8.decode(b"", final=True)
        text = self._text() if self._pending else ""
        self._pending = []
        return text

    def _text(self) -> str:
        before = self.tok.decode(self._context) if self._context else ""
        full = self.tok.decode(self._context + self._pending)
        if full.startswith(before):
            return full[len(before):]
        n = 0                                           # (not expected) skip the common start
        while n < min(len(full), len(before)) and full[n] == before[n]:
            n += 1
        return full[n:]


class StopMatcher:
    """``push(text) -> (text to send, stopped)``; ``flush()`` -> what was held back.

    >>> m = StopMatcher(["\\nUser:"])
    >>> m.push("Hello\\nUs"), m.push("er: hi")
    (('Hello', False), ('', True))
    """

    def __init__(self, stops=()):
        self.stops = [s for s in stops if s]
        self.held = ""

    def push(self, text: str):
        buf = self.held + text
        if not self.stops:
            self.held = ""
            return buf, False
        hits = [i for i in (buf.find(s) for s in self.stops) if i >= 0]
        if hits:
            self.held = ""
            return buf[:min(hits)], True
        keep = 0                                    # the longest tail that may start a stop string
        for s in self.stops:
            for k in range(min(len(s) - 1, len(buf)), keep, -1):
                if s.startswith(buf[len(buf) - k:]):
                    keep = k
                    break
        self.held = buf[len(buf) - keep:] if keep else ""
        return buf[:len(buf) - keep], False

    def flush(self) -> str:
        out, self.held = self.held, ""
        return out
