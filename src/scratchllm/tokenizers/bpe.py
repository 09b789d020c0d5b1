"""Byte-level BPE (GPT-2 / tiktoken / Llama 3 style): encode by merge rank, decode to text.

A vocabulary is a map ``ranks: token bytes -> id``; an id is also the token's merge rank.
Encoding one pre-token chunk starts from its UTF-8 bytes and repeatedly joins the adjacent pair
whose joined bytes have the lowest rank (leftmost on ties), exactly as tiktoken does::

    b"hello" -> h e l l o -> h e ll o -> h ell o -> h ello -> hello     (with a GPT-2 vocab)

Chunks repeat a lot in real text, so encoded chunks are cached (``str -> ids``). A chunk longer
than ``MAX_CHUNK`` characters (10 MB of one letter is one chunk for every split pattern) is
encoded in pieces of ``MAX_CHUNK`` characters, so that time and memory stay linear in the text
(identical pieces share the cache); only merges across those cut points can differ from tiktoken.
"""
from __future__ import annotations

import functools
import heapq
import os
import re
from itertools import chain

from .pretokenize import compile_pattern, resolve_pattern

__all__ = ["BPETokenizer"]

_INF = float("inf")
_CACHE_LIMIT = 200_000  # chunks kept in the encode cache before it is cleared
_BYTES = [bytes([b]) for b in range(256)]
_LONG = 32  # chunks longer than this (bytes) merge with a heap instead of a linear scan
RESERVED_IDS = 1024  # special-token ids may lie up to this far past the last token (cl100k: 21)
MAX_CHUNK = 1 << 14  # characters; longer chunks are cut (see the module docstring); < 2**32 / 4


class BPETokenizer:
    """Byte-level BPE tokenizer.

    Args:
        ranks: token bytes -> id (the id is the merge rank); every single byte must be present.
        pattern: split pattern, a name ("gpt2", "gpt4", "llama3"), regex text, or None.
        special_tokens: special token text -> id; matched in text only when allowed.
        bos, eos: special token texts used by ``encode(..., bos=True, eos=True)``.
        merges: the (left id, right id) pairs in training order, kept by trained tokenizers
            so that they can be saved (:meth:`save`).

    Example::

        >>> tok = BPETokenizer.train("low lower lowest " * 50, vocab_size=260, pattern="gpt2")
        >>> tok.decode(tok.encode("lowest low")) == "lowest low"
        True
    """

    def __init__(self, ranks: dict[bytes, int], pattern: str | None = "gpt4",
                 special_tokens: dict[str, int] | None = None, bos: str | None = None,
                 eos: str | None = None, merges: list[tuple[int, int]] | None = None,
                 name: str = "bpe"):
        missing = [b for b in range(256) if bytes([b]) not in ranks]
        if missing:
            raise ValueError(f"{name}: vocabulary lacks single-byte token(s) {missing[:8]}")
        special_tokens = dict(special_tokens or {})
        limit = len(ranks) + len(special_tokens) + RESERVED_IDS
        for what, table in (("token", ranks), ("special token", special_tokens)):
            bad = [(t, i) for t, i in table.items() if type(i) is not int or not 0 <= i < limit]
            if bad:
                raise ValueError(f"{name}: {what} {bad[0][0]!r} has id {bad[0][1]!r}; ids must be integers "
                                 f"from 0 to {limit - 1} (the {len(ranks)} tokens, the {len(special_tokens)} "
                                 f"special tokens and {RESERVED_IDS} reserved ids)")
        self.name = name
        self.pattern = pattern
        self._ranks = ranks
        self.special_tokens = special_tokens
        self.merges = merges
        self._decoder = {i: b for b, i in ranks.items()}
        if len(self._decoder) != len(ranks):
            raise ValueError(f"{name}: two tokens share one id")
        for text, i in self.special_tokens.items():
            if i in self._decoder:
                raise ValueError(f"{name}: special token {text!r} reuses id {i}")
            self._decoder[i] = text.encode("utf-8")
        for which, text in (("bos", bos), ("eos", eos)):
            if text is not None and text not in self.special_tokens:
                raise ValueError(f"{name}: {which} token {text!r} is not a special token")
        self.bos_id = self.special_tokens[bos] if bos is not None else None
        self.eos_id = self.special_tokens[eos] if eos is not None else None
        self._splitter = compile_pattern(pattern) if resolve_pattern(pattern) else None
        self._cache: dict[str, tuple[int, ...]] = {}

    # ---- vocabulary ---------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """Number of ids (one past the largest id), special tokens included."""
        return max(self._decoder) + 1

    n_vocab = vocab_size

    def __len__(self) -> int:
        return self.vocab_size

    @property
    def ranks(self) -> dict[bytes, int]:
        """The ordinary tokens: bytes -> id (a copy; tiktoken calls it mergeable_ranks)."""
        return dict(self._ranks)

    def id_to_bytes(self, i: int) -> bytes:
        return self._decoder[int(i)]

    def token_to_id(self, token: str | bytes) -> int:
        if isinstance(token, str) and token in self.special_tokens:
            return self.special_tokens[token]
        key = token.encode("utf-8") if isinstance(token, str) else token
        if key not in self._ranks:
            raise KeyError(f"{self.name}: {token!r} is not a token")
        return self._ranks[key]

    # ---- encoding -----------------------------------------------------------------------
    def _bpe(self, piece: bytes) -> tuple[int, ...]:
        """Merge one chunk's bytes by rank; the lowest-rank adjacent pair first."""
        ranks = self._ranks
        whole = ranks.get(piece)
        if whole is not None:
            return (whole,)
        if len(piece) > _LONG:
            return _bpe_long(ranks, piece)
        get = ranks.get
        parts = list(map(_BYTES.__getitem__, piece))
        pair_ranks = [get(a + b, _INF) for a, b in zip(parts, parts[1:])]
        while pair_ranks:
            best = min(pair_ranks)
            if best == _INF:
                break
            i = pair_ranks.index(best)  # leftmost on ties
            parts[i] += parts.pop(i + 1)
            del pair_ranks[i]
            if i > 0:
                pair_ranks[i - 1] = get(parts[i - 1] + parts[i], _INF)
            if i < len(pair_ranks):
                pair_ranks[i] = get(parts[i] + parts[i + 1], _INF)
        return tuple(map(ranks.__getitem__, parts))

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode text with special-token text treated as ordinary text."""
        chunks = self._splitter.split(text) if self._splitter else ([text] if text else [])
        if any(len(c) > MAX_CHUNK for c in chunks):
            chunks = [c[k:k + MAX_CHUNK] for c in chunks for k in range(0, len(c), MAX_CHUNK)]
        cache = self._cache
        missing = set(chunks).difference(cache)
        if missing:
            if len(cache) + len(missing) > _CACHE_LIMIT:
                cache.clear()
                missing = set(chunks)
            try:
                for chunk in missing:
                    cache[chunk] = self._bpe(chunk.encode("utf-8"))
            except UnicodeEncodeError:  # lone surrogates: replace them as tiktoken does
                fixed = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
                return self.encode_ordinary(fixed)
        return list(chain.from_iterable(map(cache.__getitem__, chunks)))

    def encode(self, text: str, allowed_special="none", bos: bool = False,
               eos: bool = False) -> list[int]:
        """Text -> ids.

        ``allowed_special``: "all", "none" (default) or a set of special-token texts that are
        turned into their ids where they occur; any other special-token text is encoded as
        ordinary text. ``bos``/``eos`` add the begin/end-of-text ids.
        """
        if allowed_special == "all":
            allowed = frozenset(self.special_tokens)
        elif allowed_special == "none" or not allowed_special:
            allowed = frozenset()
        else:
            allowed = frozenset(allowed_special)
            unknown = allowed - self.special_tokens.keys()
            if unknown:
                raise ValueError(f"{self.name}: not special tokens: {sorted(unknown)}")
        ids = [self._id_for("bos")] if bos else []
        if not allowed:
            ids += self.encode_ordinary(text)
        else:
            for k, part in enumerate(_special_regex(allowed).split(text)):
                if k % 2:  # split() with a capturing group puts the matches at odd indices
                    ids.append(self.special_tokens[part])
                elif part:
                    ids += self.encode_ordinary(part)
        if eos:
            ids.append(self._id_for("eos"))
        return ids

    def _id_for(self, which: str) -> int:
        i = getattr(self, f"{which}_id")
        if i is None:
            raise ValueError(f"{self.name}: has no {which} token")
        return i

    # ---- decoding -----------------------------------------------------------------------
    def decode_bytes(self, ids) -> bytes:
        try:
            return b"".join(map(self._decoder.__getitem__, ids))
        except KeyError as exc:
            raise ValueError(f"{self.name}: token id {exc.args[0]} is not in the "
                             f"vocabulary (size {self.vocab_size})") from None

    def decode(self, ids) -> str:
        """Ids -> text; bytes that are not valid UTF-8 become U+FFFD, never an error."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    # ---- training and files -------------------------------------------------------------
    @classmethod
    def train(cls, text: str, vocab_size: int, pattern: str | None = "gpt4",
              special_tokens=None, bos: str | None = None, eos: str | None = None,
              verbose: bool = False) -> "BPETokenizer":
        """Learn merges from text; see :func:`scratchllm.tokenizers.train.train_bpe`."""
        from .train import train_bpe
        return train_bpe(text, vocab_size, pattern=pattern, special_tokens=special_tokens,
                         bos=bos, eos=eos, verbose=verbose)

    def save(self, path: str | os.PathLike) -> None:
        """Write the tokenizer in scratchllm's JSON format (see :mod:`.fileformat`)."""
        from .fileformat import save_bpe
        save_bpe(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike, trust_pattern: bool = False) -> "BPETokenizer":
        """Read a file written by :meth:`save`; a pattern other than a known one (gpt2, gpt4,
        llama3, none) is used only with ``trust_pattern=True``."""
        from .fileformat import load_bpe
        return load_bpe(path, trust_pattern=trust_pattern)

    def __repr__(self) -> str:
        return (f"BPETokenizer(name={self.name!r}, vocab_size={self.vocab_size}, "
                f"pattern={self.pattern!r}, special_tokens={len(self.special_tokens)})")


def _bpe_long(ranks: dict[bytes, int], piece: bytes) -> tuple[int, ...]:
    """The same merges as ``BPETokenizer._bpe`` in O(n log n) for long chunks.

    Parts form a linked list (``nxt``/``prv`` by start position); a heap entry is one int,
    ``rank << 32 | start``, so the lowest rank and then the leftmost pops first. An entry is
    stale when its pair has changed since; it is then skipped.
    """
    n = len(piece)
    nxt = list(range(1, n + 1))  # start of the next part (n: none)
    prv = list(range(-1, n - 1))
    alive = [True] * n
    get = ranks.get
    heap = [r << 32 | i for i in range(n - 1) if (r := get(piece[i:i + 2])) is not None]
    heapq.heapify(heap)
    push, pop = heapq.heappush, heapq.heappop
    while heap:
        key = pop(heap)
        i = key & 0xFFFFFFFF
        j = nxt[i]
        if not alive[i] or j >= n or get(piece[i:nxt[j]]) != key >> 32:
            continue
        alive[j] = False
        k = nxt[i] = nxt[j]
        if k < n:
            prv[k] = i
            if (r := get(piece[i:nxt[k]])) is not None:
                push(heap, r << 32 | i)
        p = prv[i]
        if p >= 0 and (r := get(piece[p:k])) is not None:
            push(heap, r << 32 | p)
    out, i = [], 0
    while i < n:
        out.append(ranks[piece[i:nxt[i]]])
        i = nxt[i]
    return tuple(out)


@functools.lru_cache(maxsize=64)
def _special_regex(allowed: frozenset) -> re.Pattern:
    alternatives = sorted(allowed, key=lambda s: (-len(s), s))  # longest first
    return re.compile("(" + "|".join(map(re.escape, alternatives)) + ")")
