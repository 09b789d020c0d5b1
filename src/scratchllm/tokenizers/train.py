"""Training a byte-level BPE vocabulary: incremental pair counts and a heap.

The corpus is pre-tokenized once into unique chunks with their counts, each chunk a list of
token ids (its bytes at first). We keep

- ``counts[pair]``: how often the adjacent pair occurs in the corpus (chunk counts weighted),
- ``where[pair]``: which chunks may hold it,
- a heap of ``(-count, left, right)``: the most frequent pair on top, ties broken by the
  smaller (left id, right id) so that training is deterministic.

Each merge rewrites only the chunks in ``where[pair]`` and updates the counts of the pairs that
changed there; stale heap entries (count no longer current) are skipped when popped. So a merge
costs work proportional to where the pair occurs, not to the corpus size.

Example::

    >>> tok = train_bpe("aaabdaaabac", vocab_size=259, pattern=None)
    >>> tok.merges          # aa -> 256 (4 times), ab -> 257 (2, ties with 256+a), 256+257 -> 258
    [(97, 97), (97, 98), (256, 257)]
"""
from __future__ import annotations

import heapq
from collections import Counter, defaultdict

from .bpe import BPETokenizer
from .pretokenize import split_text

__all__ = ["train_bpe"]


def _merge_chunk(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every non-overlapping occurrence of ``pair`` (left to right) by ``new_id``."""
    a, b = pair
    out, i, n = [], 0, len(ids)
    while i < n:
        if i < n - 1 and ids[i] == a and ids[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def _special_ids(special_tokens, first_id: int) -> dict[str, int]:
    """Special tokens (a list of texts, or a dict text -> id) -> dict text -> id.

    >>> _special_ids(["<|endoftext|>", "<|pad|>"], 300)
    {'<|endoftext|>': 300, '<|pad|>': 301}
    """
    if not special_tokens:
        return {}
    texts = list(special_tokens)
    for text in texts:
        if not isinstance(text, str) or not text:
            raise ValueError(f"special tokens must be non-empty strings, got {text!r}")
    twice = sorted({t for t in texts if texts.count(t) > 1})
    if twice:
        raise ValueError(f"special token(s) given more than once: {twice}")
    if isinstance(special_tokens, dict):
        return {str(k): int(v) for k, v in special_tokens.items()}
    return {text: first_id + k for k, text in enumerate(texts)}


def train_bpe(text: str, vocab_size: int, pattern: str | None = "gpt4", special_tokens=None,
              bos: str | None = None, eos: str | None = None,
              verbose: bool = False) -> BPETokenizer:
    """Learn ``vocab_size - 256`` merges from ``text``.

    ``vocab_size`` counts the ordinary tokens (256 bytes + merges); special tokens (a list of
    texts, or a dict text -> id) get the ids after them. Training stops early when no pair is
    left to merge. If a merge would build bytes that already are a token, the chunks are
    rewritten to that token and no new id is made (so token bytes stay unique). ``bos``/``eos``
    name special tokens for ``encode(..., bos=True, eos=True)``.

    Cost: each merge rewrites the chunks that hold the pair, so it grows with chunk length.
    With a split pattern chunks are words (vocab 4,096 on tiny Shakespeare: about a second);
    with ``pattern=None`` the whole text is one chunk and every merge rewrites all of it.
    """
    if vocab_size < 256:
        raise ValueError(f"vocab_size must be at least 256 (the bytes), got {vocab_size}")
    _special_ids(special_tokens, vocab_size)   # bad special tokens fail before the (long) training
    chunk_counts = Counter(split_text(text, pattern))
    chunks = [list(c.encode("utf-8")) for c in chunk_counts]
    freqs = list(chunk_counts.values())

    counts: dict[tuple[int, int], int] = defaultdict(int)
    where: dict[tuple[int, int], set[int]] = defaultdict(set)
    for idx, ids in enumerate(chunks):
        f = freqs[idx]
        for pair in zip(ids, ids[1:]):
            counts[pair] += f
            where[pair].add(idx)
    heap = [(-c, p) for p, c in counts.items()]
    heapq.heapify(heap)

    vocab = [bytes([b]) for b in range(256)]
    id_of = {t: i for i, t in enumerate(vocab)}
    merges: list[tuple[int, int]] = []
    while len(vocab) < vocab_size and heap:
        neg, pair = heapq.heappop(heap)
        if counts.get(pair, 0) != -neg:
            continue  # stale entry
        token = vocab[pair[0]] + vocab[pair[1]]
        new_id = id_of.get(token)
        if new_id is None:
            new_id = len(vocab)
            vocab.append(token)
            id_of[token] = new_id
            merges.append(pair)
            if verbose:
                print(f"merge {len(merges)}: {pair} -> {new_id} {token!r} ({-neg})")
        changed: dict[tuple[int, int], int] = defaultdict(int)
        for idx in where.pop(pair, ()):
            old = chunks[idx]
            new = _merge_chunk(old, pair, new_id)
            if len(new) == len(old):
                continue  # the pair left this chunk earlier
            f = freqs[idx]
            for p in zip(old, old[1:]):
                changed[p] -= f
            for p in zip(new, new[1:]):
                changed[p] += f
                where[p].add(idx)
            chunks[idx] = new
        for p, delta in changed.items():
            if delta:
                c = counts[p] + delta
                if c > 0:
                    counts[p] = c
                    heapq.heappush(heap, (-c, p))
                else:
                    del counts[p]
    special = _special_ids(special_tokens, len(vocab))   # ids right after the merges
    ranks = {t: i for i, t in enumerate(vocab)}
    return BPETokenizer(ranks, pattern=pattern, special_tokens=special, bos=bos, eos=eos,
                        merges=merges, name="trained")
