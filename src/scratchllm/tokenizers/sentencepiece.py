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
"""
from __future__ import annotations

import re
from itertools import chain

from .sp_proto import BYTE, CONTROL, UNKNOWN, UNUSED, USER_DEFINED, SentencePieceModel

__all__ = ["SentencePieceBPE", "SPACE"]

SPACE = "\u2581"
_NEG = float("-inf")
_WORDS = re.compile(f"{SPACE}*[^{SPACE}]+|{SPACE}+")
_CACHE_LIMIT = 200_000


class SentencePieceBPE:
    """Encoder/decoder for a SentencePiece BPE model (see :mod:`.sp_proto` for the fields)."""

    def __init__(self, model: SentencePieceModel, name: str = "sentencepiece"):
        if model.model_type != "bpe":
            raise ValueError(f"{name}: SentencePiece model type {model.model_type!r} is not "
                             "supported (BPE models only)")
        if model.precompiled_charsmap or model.normalizer_name not in ("", "identity"):
            raise ValueError(f"{name}: normalizer {model.normalizer_name!r} with a character "
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
                        raise ValueError(f"{name}: byte piece {i} is {piece!r}, not <0xXX>")
                    self._byte_ids[int(m.group(1), 16)] = i
            else:
                self._mergeable.setdefault(piece, i)
        self._score = {p: self.scores[i] for p, i in self._mergeable.items()}
        self._unused = {p for p, i in self._mergeable.items() if self.types[i] == UNUSED}
        self._user_defined = sorted((p for p, k in zip(self.pieces, self.types)
                                     if k == USER_DEFINED), key=len, reverse=True)
        self.unk_id, self.bos_id, self.eos_id = model.unk_id, model.bos_id, model.eos_id
        self.pad_id = model.pad_id
        if model.byte_fallback and None in self._byte_ids:
            raise ValueError(f"{name}: byte_fallback is on but some <0xXX> pieces are missing")
        # Word-by-word encoding is exact when no piece has "▁" after another character.
        self._by_word = not model.treat_whitespace_as_suffix and not any(
            SPACE in p.lstrip(SPACE) for p in self._mergeable)
        # Characters in no mergeable piece (e.g. "\n" for Llama 2) are words on their own.
        chars = "".join(sorted(set("".join(self._mergeable)) - {SPACE}))
        body = "".join(re.escape(c) for c in chars)
        self._words = re.compile(f"{SPACE}*[{body}]+|{SPACE}+|[^{body}{SPACE}]") if body else _WORDS
        self._cache: dict[str, tuple[int, ...]] = {}

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
        if not self._user_defined:
            return list(text), [False] * len(text)
        syms, frozen, i = [], [], 0
        while i < len(text):
            for p in self._user_defined:
                if text.startswith(p, i):
                    syms.append(p)
                    frozen.append(True)
                    i += len(p)
                    break
            else:
                syms.append(text[i])
                frozen.append(False)
                i += 1
        return syms, frozen

    def _bpe(self, text: str) -> tuple[int, ...]:
        syms, frozen = self._initial_symbols(text)
        get = self._score.get

        def pair_score(k: int) -> float:
            return _NEG if frozen[k] or frozen[k + 1] else get(syms[k] + syms[k + 1], _NEG)

        scores = [pair_score(k) for k in range(len(syms) - 1)]
        halves: dict[str, tuple] = {}  # merged UNUSED piece -> its two halves (re-split later)
        while scores:
            best = max(scores)
            if best == _NEG:
                break
            k = scores.index(best)  # leftmost on ties
            right = syms.pop(k + 1)
            del frozen[k + 1]
            merged = syms[k] + right
            if merged in self._unused:
                halves[merged] = (syms[k], right)
            syms[k] = merged
            del scores[k]
            if k > 0:
                scores[k - 1] = pair_score(k - 1)
            if k < len(scores):
                scores[k] = pair_score(k)
        ids: list[int] = []
        for piece in syms:
            self._emit(piece, halves, ids)
        return tuple(ids)

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
            ids = list(self._bpe(norm)) if norm else []
        else:
            words = self._words.findall(norm)
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
