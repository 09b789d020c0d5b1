"""SentencePiece BPE (Llama 2): merge by piece score, byte fallback, the leading dummy space.

How SentencePiece's BPE encodes ``"Hello world"``:

1. normalize: spaces become "▁" (U+2581) and a "▁" is put in front: ``"▁Hello▁world"``;
2. start from single characters and repeatedly join the adjacent pair whose joined text is a
   piece with the highest score (leftmost on ties): ``▁ H e l l o ...`` -> ``▁Hello ▁world``;
3. a character that is no piece falls back to its UTF-8 bytes as ``<0xXX>`` pieces.

No Llama 2 piece has "▁" after another character, so merges never cross the start of a
"▁"-word, nor touch a character that is in no piece (such as "\n"); text is encoded word by
word with a cache (exact, and fast). Vocabularies where
that does not hold are encoded in one piece, also exactly.

Step 2 runs in O(n log n) for a word of n characters, as SentencePiece itself does: the symbols
form a linked list and a heap holds the candidate pairs ``(-score, start)`` (best score first,
then leftmost); a popped pair whose symbols have changed since it was pushed is skipped.
A long "word" (1 MB of text without a space is one) is first cut, exactly, between neighbouring
characters that no piece holds side by side (no merge can ever join them); a part still longer
than ``MAX_WORD`` characters (such as 1 MB of one letter) is encoded in pieces of ``MAX_WORD``
characters, so that time and memory stay bounded; only merges across those cut points can differ
from SentencePiece.
"""
from __future__ import annotations

import heapq
import math
import re
from itertools import chain

from ..backend import xp
from ..errors import FileFormatError

from .sp_proto import BYTE, CONTROL, UNKNOWN, UNUSED, USER_DEFINED, SentencePieceModel

__all__ = ["SentencePieceBPE", "SPACE"]

SPACE = "\u2581"
_NEG = float("-inf")
_WORDS = re.compile(f"{SPACE}*[^{SPACE}]+|{SPACE}+")
_CACHE_LIMIT = 200_000
MAX_WORD = 1 << 14   # < 2**32: a start index must fit the heap key's low bits
_LONG_WORD = 64      # longer words are first cut where no merge can join (see _split_long)


class SentencePieceBPE:
    """Encoder/decoder for a SentencePiece BPE model (see :mod:`.sp_proto` for the fields)."""

    def __init__(self, model: SentencePieceModel, name: str = "sentencepiece"):
        if model.model_type != "bpe":
            raise FileFormatError(f"{name}: SentencePiece model type {model.model_type!r} is not "
                             "supported (BPE models only)")
        if model.precompiled_charsmap or model.normalizer_name not in ("", "identity"):
            raise FileFormatError(f"{name}: normalizer {model.normalizer_name!r} with a character "
                             "map is not supported (identity only)")
        self.name = name
        self.model = model
        self.pieces, self.scores, self.types = model.pieces, model.scores, model.types
        # Pieces that merges may build (SentencePiece's `pieces_`): NORMAL, USER_DEFINED, UNUSED.
        self._mergeable: dict[str, int] = {}
        self._reserved: dict[str, int] = {}
        self._byte_ids: list[int | None] = [None] * 256
        for i, (piece, kind) in enumerate(zip(self.pieces, self.types)):
            if kind in (CONTROL, UNKNOWN, BYTE):
                self._reserved.setdefault(piece, i)
                if kind == BYTE:
                    m = re.fullmatch(r"<0x([0-9A-Fa-f]{2})>", piece)
                    if not m:
                        raise FileFormatError(f"{name}: byte piece {i} is {piece!r}, not <0xXX>")
                    self._byte_ids[int(m.group(1), 16)] = i
            else:
                self._mergeable.setdefault(piece, i)
        # pieces a merge may build -> priority: 0 for the best score, equal scores equal priority
        # (a NaN or -inf score never merges)
        usable = {p: self.scores[i] for p, i in self._mergeable.items()
                  if not math.isnan(self.scores[i]) and self.scores[i] != _NEG}
        order = {sc: k for k, sc in enumerate(sorted(set(usable.values()), reverse=True))}
        self._prio = {p: order[sc] for p, sc in usable.items()}
        self._unused = {p for p, i in self._mergeable.items() if self.types[i] == UNUSED}
        self._bigrams = None   # sorted codes of the character pairs inside pieces (see _split_long)
        self._user_defined = sorted((p for p, k in zip(self.pieces, self.types)
                                     if k == USER_DEFINED and p), key=len, reverse=True)
        # longest user-defined piece first: ``re`` takes the first alternative that matches
        self._user_regex = re.compile("|".join(map(re.escape, self._user_defined))) \
            if self._user_defined else None
        self.unk_id, self.bos_id, self.eos_id = model.unk_id, model.bos_id, model.eos_id
        self.pad_id = model.pad_id
        self._check_ids(name)
        if model.byte_fallback and None in self._byte_ids:
            raise FileFormatError(f"{name}: byte_fallback is on but some <0xXX> pieces are missing")
        # Word-by-word encoding is exact when no piece has "▁" after another character.
        self._by_word = not model.treat_whitespace_as_suffix and not any(
            SPACE in p.lstrip(SPACE) for p in self._mergeable)
        # Characters in no mergeable piece (e.g. "\n" for Llama 2) are words on their own.
        chars = "".join(sorted(set("".join(self._mergeable)) - {SPACE}))
        body = "".join(re.escape(c) for c in chars)
        self._words = re.compile(f"{SPACE}*[{body}]+|{SPACE}+|[^{body}{SPACE}]") if body else _WORDS
        self._cache: dict[str, tuple[int, ...]] = {}

    def _check_ids(self, name: str) -> None:
        """unk_id must name a piece; bos/eos/pad ids a piece or -1 (none), as SentencePiece checks."""
        n = len(self.pieces)
        for field, i, optional in (("unk_id", self.unk_id, False), ("bos_id", self.bos_id, True),
                                   ("eos_id", self.eos_id, True), ("pad_id", self.pad_id, True)):
            if type(i) is not int or not (0 <= i < n or (optional and i == -1)):
                allowed = f"0..{n - 1}" + (" or -1" if optional else "")
                raise FileFormatError(f"{name}: {field} is {i}, not a piece id ({allowed})")

    @property
    def vocab_size(self) -> int:
        return len(self.pieces)

    n_vocab = vocab_size

    def __len__(self) -> int:
        return len(self.pieces)

    def id_to_piece(self, i: int) -> str:
        return self.pieces[i]

    def piece_to_id(self, piece: str) -> int:
        i = self._mergeable.get(piece)
        if i is None:
            i = self._reserved.get(piece, self.unk_id)
        return i

    # ---- encoding -----------------------------------------------------------------------
    def normalize(self, text: str) -> str:
        """SentencePiece's identity normalizer: whitespace handling and the dummy prefix."""
        m = self.model
        if m.remove_extra_whitespaces:
            text = re.sub(" +", " ", text.strip(" "))
        if not text:
            return ""
        if m.add_dummy_prefix:
            text = text + " " if m.treat_whitespace_as_suffix else " " + text
        return text.replace(" ", SPACE) if m.escape_whitespaces else text

    def _initial_symbols(self, text: str) -> tuple[list[str], list[bool]]:
        """Characters, or whole user-defined pieces (frozen: never merged further)."""
        if self._user_regex is None:
            return list(text), [False] * len(text)
        syms, frozen, i = [], [], 0
        for m in self._user_regex.finditer(text):
            syms += text[i:m.start()]
            frozen += [False] * (m.start() - i)
            syms.append(m.group())
            frozen.append(True)
            i = m.end()
        syms += text[i:]
        frozen += [False] * (len(text) - i)
        return syms, frozen

    def _bpe(self, text: str) -> tuple[int, ...]:
        """Merge the best-scoring adjacent pair (leftmost on ties) until none is a piece.

        A heap entry is one int, ``priority << 32 | start`` (best score, then leftmost, pops
        first). An entry is stale when its pair has changed since; the pair now at ``start``
        is then looked up again, and merged only if it still has that priority.
        """
        syms, frozen = self._initial_symbols(text)
        n = len(syms)
        prio = self._prio.get
        unused = self._unused
        halves: dict[str, tuple] = {}  # merged UNUSED piece -> its two halves (re-split later)
        nxt = list(range(1, n + 1))
        prv = list(range(-1, n - 1))
        heap = []
        for i in range(n - 1):
            if not (frozen[i] or frozen[i + 1]):
                r = prio(syms[i] + syms[i + 1])
                if r is not None:
                    heap.append(r << 32 | i)
        heapq.heapify(heap)
        push, pop = heapq.heappush, heapq.heappop
        while heap:
            key = pop(heap)
            i = key & 0xFFFFFFFF
            left = syms[i]
            j = nxt[i]
            if left is None or j >= n or frozen[i] or frozen[j]:
                continue
            right = syms[j]
            merged = left + right
            if prio(merged) != key >> 32:
                continue
            if merged in unused:
                halves[merged] = (left, right)
            syms[i], syms[j] = merged, None
            k = nxt[j]
            nxt[i] = k
            if k < n:
                prv[k] = i
                if not frozen[k] and (r := prio(merged + syms[k])) is not None:
                    push(heap, r << 32 | i)
            p = prv[i]
            if p >= 0 and not frozen[p] and (r := prio(syms[p] + merged)) is not None:
                push(heap, r << 32 | p)
        ids: list[int] = []
        i = 0
        while i < n:
            self._emit(syms[i], halves, ids)
            i = nxt[i]
        return tuple(ids)

    def _split_long(self, word: str) -> list[str]:
        """A long word cut where no merge can ever join the two sides (exact), then, if a part
        is still longer than ``MAX_WORD``, into pieces of that size (see the module docstring).

        Two neighbouring characters can end up in one symbol only if some piece holds them side
        by side; between any other pair the word is cut, vectorised (~50 ms per MB).
        """
        if self._bigrams is None:
            pairs = {(ord(p[k]) << 21) | ord(p[k + 1]) for p in chain(self._prio, self._user_defined)
                     for k in range(len(p) - 1)}
            self._bigrams = xp.array(sorted(pairs), dtype=xp.uint64)
        codes = xp.frombuffer(word.encode("utf-32-le", "surrogatepass"), dtype=xp.uint32).astype(xp.uint64)
        pairs = (codes[:-1] << xp.uint64(21)) | codes[1:]
        pos = xp.searchsorted(self._bigrams, pairs)
        known = self._bigrams[xp.minimum(pos, max(len(self._bigrams) - 1, 0))] == pairs \
            if len(self._bigrams) else xp.zeros(len(pairs), dtype=bool)
        cuts = [0, *(xp.flatnonzero(~known) + 1).tolist(), len(word)]
        return [part for a, b in zip(cuts, cuts[1:]) for part in _cut(word[a:b])]

    def _emit(self, piece: str, halves: dict, ids: list[int]) -> None:
        i = self.piece_to_id(piece)
        if i != self.unk_id and self.types[i] == UNUSED and piece in halves:
            for half in halves[piece]:
                self._emit(half, halves, ids)
        elif i == self.unk_id and self.model.byte_fallback:
            ids.extend(self._byte_ids[b] for b in piece.encode("utf-8"))
        elif i == self.unk_id and ids and ids[-1] == self.unk_id:
            pass  # runs of unknown characters become one <unk>
        else:
            ids.append(i)

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        """Text -> ids; ``bos``/``eos`` add <s> and </s>."""
        norm = self.normalize(text)
        if not self._by_word:
            ids = [i for part in self._split_long(norm) for i in self._bpe(part)] if norm else []
        else:
            words = self._words.findall(norm)
            if any(len(w) > _LONG_WORD for w in words):
                words = [part for w in words for part in
                         (self._split_long(w) if len(w) > _LONG_WORD else (w,))]
            cache = self._cache
            missing = set(words).difference(cache)
            if len(cache) + len(missing) > _CACHE_LIMIT:
                cache.clear()
                missing = set(words)
            for w in missing:
                cache[w] = self._bpe(w)
            ids = list(chain.from_iterable(map(cache.__getitem__, words)))
            if self.unk_id in ids and not self.model.byte_fallback:
                ids = [i for k, i in enumerate(ids)  # merge <unk> runs across words too
                       if not (i == self.unk_id and k and ids[k - 1] == self.unk_id)]
        for wanted, which in ((bos, "bos_id"), (eos, "eos_id")):
            if wanted and getattr(self, which) < 0:
                raise ValueError(f"{self.name}: the model has no {which[:3]} piece ({which} is -1)")
        if bos:
            ids.insert(0, self.bos_id)
        if eos:
            ids.append(self.eos_id)
        return ids

    # ---- decoding -----------------------------------------------------------------------
    def decode(self, ids) -> str:
        """Ids -> text as SentencePiece does: control ids vanish, <0xXX> runs become UTF-8
        (each invalid byte one U+FFFD), "▁" becomes a space, the dummy-prefix space is dropped.
        """
        out: list[str] = []
        pending = bytearray()
        at_start = True  # the first text piece may lose its leading "▁" (the dummy prefix)
        strip_first = self.model.add_dummy_prefix or self.model.remove_extra_whitespaces
        for raw in ids:
            i = int(raw)
            if not 0 <= i < len(self.pieces):
                raise ValueError(f"{self.name}: token id {i} is not in the vocabulary "
                                 f"(size {len(self.pieces)})")
            kind = self.types[i]
            if kind == BYTE:
                pending.append(int(self.pieces[i][3:5], 16))
                continue
            if pending:
                out.append(_decode_bytes_sp(pending))
                pending = bytearray()
                at_start = False
            if kind == CONTROL:
                continue
            if kind == UNKNOWN:
                out.append(self.model.unk_surface)
                at_start = False
                continue
            piece = self.pieces[i]
            if at_start and strip_first and piece.startswith(SPACE):
                piece = piece[1:]
            at_start = False
            out.append(piece.replace(SPACE, " "))
        if pending:
            out.append(_decode_bytes_sp(pending))
        return "".join(out)

    def __repr__(self) -> str:
        return f"SentencePieceBPE(name={self.name!r}, vocab_size={self.vocab_size})"


def _cut(text: str) -> list[str]:
    """``text`` in pieces of at most ``MAX_WORD`` characters (identical pieces share the cache)."""
    return [text[k:k + MAX_WORD] for k in range(0, len(text), MAX_WORD)]


def _decode_bytes_sp(data: bytes | bytearray) -> str:
    """UTF-8 decode where each byte that does not start a valid character becomes U+FFFD."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    out, i, n = [], 0, len(data)
    while i < n:
        for size in (1, 2, 3, 4):
            try:
                out.append(bytes(data[i:i + size]).decode("utf-8"))
                i += size
                break
            except UnicodeDecodeError:
                continue
        else:
            out.append("\ufffd")
            i += 1
    return "".join(out)
