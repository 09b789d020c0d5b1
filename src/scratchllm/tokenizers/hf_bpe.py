"""The BPE model of an HF ``tokenizer.json`` (``"model": {"type": "BPE", ...}``), as HF runs it.

HF ranks *pairs*: ``merges[k] = "a b"`` says that the adjacent symbols ``a`` and ``b`` join into
the token ``a + b`` with priority ``k``. A pre-token is encoded by starting from its characters
(each looked up in the vocabulary; an unknown one falls back to its ``<0xXX>`` byte tokens when
``byte_fallback`` is on, else becomes ``unk_token``, runs of them fused into one when
``fuse_unk``, or vanishes when there is no ``unk_token``) and joining the lowest-ranked
adjacent pair, leftmost first, until no listed pair is left::

    vocab {"a": 0, "b": 1, "c": 2, "ab": 3, "abc": 4}, merges ["a b", "ab c"]
    "abcab" -> a b c a b -> ab c a b -> abc a b -> abc ab      ids [4, 3]

``ignore_merges`` (Llama 3) takes a whole pre-token that is in the vocabulary as one token.
"""
from __future__ import annotations

import heapq

from ..errors import FileFormatError

__all__ = ["HFBPE"]

_LONG = 128          # words with more symbols than this merge with a heap
_CACHE_LIMIT = 200_000


class HFBPE:
    def __init__(self, spec: dict, where: str):
        vocab = spec.get("vocab")
        if not isinstance(vocab, dict) or not all(type(i) is int and i >= 0 for i in vocab.values()):
            raise FileFormatError(f"{where}.vocab: expected an object token -> id (non-negative integers)")
        if not vocab:
            raise FileFormatError(f"{where}.vocab: the vocabulary is empty")
        self.vocab: dict[str, int] = vocab
        self.id_to_token: dict[int, str] = {i: t for t, i in vocab.items()}
        if len(self.id_to_token) != len(vocab):
            raise FileFormatError(f"{where}.vocab: two tokens share one id")
        dropout = spec.get("dropout")
        if dropout not in (None, 0, 0.0):
            raise FileFormatError(f"{where}.dropout: {dropout!r}; BPE dropout (random merges) is not "
                             "supported, set it to null")
        for key in ("continuing_subword_prefix", "end_of_word_suffix", "unk_token"):
            if spec.get(key) is not None and not isinstance(spec[key], str):
                raise FileFormatError(f"{where}.{key}: expected a string or null")
        self.prefix = spec.get("continuing_subword_prefix") or None
        self.suffix = spec.get("end_of_word_suffix") or None
        self.fuse_unk = bool(spec.get("fuse_unk", False))
        self.byte_fallback = bool(spec.get("byte_fallback", False))
        self.ignore_merges = bool(spec.get("ignore_merges", False))
        unk = spec.get("unk_token")
        if unk is not None and unk not in vocab:
            raise FileFormatError(f"{where}.unk_token: {unk!r} is not in the vocabulary")
        self.unk_id = vocab[unk] if unk is not None else None
        self.merges = self._read_merges(spec.get("merges"), f"{where}.merges")
        self._byte_ids = [vocab.get(f"<0x{b:02X}>") for b in range(256)]
        self._cache: dict[str, tuple[int, ...]] = {}

    def _read_merges(self, merges, where: str) -> dict[tuple[int, int], tuple[int, int]]:
        """(left id, right id) -> (rank, merged id)."""
        if not isinstance(merges, list):
            raise FileFormatError(f"{where}: expected a list of merges")
        vocab, cut = self.vocab, len(self.prefix or "")
        if not cut:                       # the fast path; on any problem the loop below says which
            try:
                pairs = [m.split(" ") if type(m) is str else m for m in merges]
                return {(vocab[a], vocab[b]): (rank, vocab[a + b]) for rank, (a, b) in enumerate(pairs)}
            except (KeyError, ValueError, TypeError):
                pass
        out = {}
        for rank, m in enumerate(merges):
            if isinstance(m, str):
                parts = m.split(" ")
            elif isinstance(m, list) and all(isinstance(x, str) for x in m):
                parts = m
            else:
                parts = ()
            if len(parts) != 2:
                raise FileFormatError(f"{where}[{rank}]: expected \"left right\" or [left, right], got {m!r:.60}")
            a, b = parts
            merged = a + b[cut:] if cut and b.startswith(self.prefix) else a + b
            try:
                pair = (vocab[a], vocab[b])
                out[pair] = (rank, vocab[merged])
            except KeyError as exc:
                raise FileFormatError(f"{where}[{rank}]: {exc.args[0]!r} (of merge {m!r:.60}) is not in the "
                                 "vocabulary") from None
        return out

    # ---- one pre-token -> ids ---------------------------------------------------------------
    def tokenize(self, word: str) -> tuple[int, ...]:
        if self.ignore_merges and word in self.vocab:
            return (self.vocab[word],)
        return self.merge_word(word)

    def merge_word(self, word: str) -> tuple[int, ...]:
        """Characters -> symbols -> merges (cached); ``ignore_merges`` is not looked at."""
        hit = self._cache.get(word)
        if hit is not None:
            return hit
        ids = tuple(self._merge(self._symbols(word))) if word else ()
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[word] = ids
        return ids

    def _symbols(self, word: str) -> list[int]:
        """HF's ``merge_word`` before merging: one symbol per character (see the module doc)."""
        vocab, out, pending_unk = self.vocab, [], False
        last = len(word) - 1
        for k, ch in enumerate(word):
            s = ch
            if self.prefix and k > 0:
                s = self.prefix + s
            if self.suffix and k == last:
                s = s + self.suffix
            i = vocab.get(s)
            if i is not None:
                if pending_unk:
                    out.append(self.unk_id)
                    pending_unk = False
                out.append(i)
                continue
            if self.byte_fallback:
                ids = [self._byte_ids[b] for b in s.encode("utf-8")]
                if None not in ids:
                    out += ids     # as HF: a pending <unk> stays pending (it lands after these)
                    continue
            if self.unk_id is not None:
                if pending_unk and not self.fuse_unk:
                    out.append(self.unk_id)
                pending_unk = True
        if pending_unk:
            out.append(self.unk_id)
        return out

    def _merge(self, syms: list[int]) -> list[int]:
        if len(syms) > _LONG:
            return _merge_long(self.merges, syms)
        merges = self.merges
        get = merges.get
        none = (1 << 62, -1)
        pairs = [get((a, b), none)[0] for a, b in zip(syms, syms[1:])]
        while pairs:
            best = min(pairs)
            if best == none[0]:
                break
            k = pairs.index(best)          # lowest rank, leftmost on ties
            syms[k] = merges[(syms[k], syms[k + 1])][1]
            del syms[k + 1]
            del pairs[k]
            if k > 0:
                pairs[k - 1] = get((syms[k - 1], syms[k]), none)[0]
            if k < len(pairs):
                pairs[k] = get((syms[k], syms[k + 1]), none)[0]
        return syms


def _merge_long(merges: dict, syms: list[int]) -> list[int]:
    """The same merges in O(n log n): a linked list of symbols and a heap of (rank, position)
    entries; an entry whose pair has changed since it was pushed is skipped."""
    n = len(syms)
    sym = list(syms)
    nxt = list(range(1, n + 1))
    prv = list(range(-1, n - 1))
    alive = [True] * n
    heap = []
    for i in range(n - 1):
        m = merges.get((sym[i], sym[i + 1]))
        if m is not None:
            heap.append((m[0], i, m[1]))
    heapq.heapify(heap)
    while heap:
        rank, i, new = heapq.heappop(heap)
        j = nxt[i]
        if not alive[i] or j >= n:
            continue
        m = merges.get((sym[i], sym[j]))
        if m is None or m[1] != new:
            continue
        sym[i] = new
        alive[j] = False
        nxt[i] = nxt[j]
        if nxt[j] < n:
            prv[nxt[j]] = i
        p = prv[i]
        if p >= 0 and (m := merges.get((sym[p], sym[i]))) is not None:
            heapq.heappush(heap, (m[0], p, m[1]))
        q = nxt[i]
        if q < n and (m := merges.get((sym[i], sym[q]))) is not None:
            heapq.heappush(heap, (m[0], i, m[1]))
    return [sym[i] for i in range(n) if alive[i]]
