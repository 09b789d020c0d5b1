"""The BPE *trainer* against independent trainers (not against tiktoken built from our own ranks).

- tiktoken's own ``_educational.bpe_train`` on a text whose most frequent pair is unique at
  every one of the merges compared (tiktoken breaks ties by first occurrence, we by the
  smaller ids; without ties the merges are fully determined by the counts);
- a brute-force trainer written here (recount every pair of every chunk at each merge, the
  tie rule of ``train.py``: the smaller (left id, right id)) over many merges of real text;
- a multi-chunk example counted by hand, with chunks that occur more than once.
"""
import collections

import numpy as np
import regex
from tiktoken._educational import bpe_train as tiktoken_bpe_train

from scratchllm.tokenizers import PATTERNS
from scratchllm.tokenizers.train import train_bpe
from tok_helpers import CORPUS

GPT2 = PATTERNS["gpt2"]


def brute_force_bpe(text: str, pattern: str, n_merges: int) -> tuple[list, list]:
    """-> (merged token bytes in order, whether each merge's top count was tied).

    Every step recounts all pairs from scratch (chunk counts weighted); the top pair wins,
    ties to the smaller (left id, right id). Bytes that already are a token are reused, not
    counted as a merge (as ``train_bpe`` documents)."""
    chunks = collections.Counter(tuple(w.encode("utf-8")) for w in regex.findall(pattern, text))
    vocab = [bytes([b]) for b in range(256)]
    merged, tied = [], []
    while len(merged) < n_merges:
        stats = collections.Counter()
        for ch, c in chunks.items():
            for p in zip(ch, ch[1:]):
                stats[p] += c
        if not stats:
            break
        top = max(stats.values())
        best = [p for p, c in stats.items() if c == top]
        pair = min(best)
        token = vocab[pair[0]] + vocab[pair[1]]
        if token in vocab:
            new = vocab.index(token)
        else:
            new = len(vocab)
            vocab.append(token)
            merged.append(token)
            tied.append(len(best) > 1)
        rewritten = collections.Counter()
        for ch, c in chunks.items():
            out, i = [], 0
            while i < len(ch):
                if i + 1 < len(ch) and (ch[i], ch[i + 1]) == pair:
                    out.append(new)
                    i += 2
                else:
                    out.append(ch[i])
                    i += 1
            rewritten[tuple(out)] += c
        chunks = rewritten
    return merged, tied


def _merged_bytes(tok) -> list:
    """Our trained tokenizer's merges as the bytes of each new token, in rank order."""
    by_id = {i: b for b, i in tok.ranks.items()}
    return [by_id[i] for i in sorted(by_id) if i >= 256]


def weighted_words_text(n_words=300, seed=0) -> str:
    """Shakespeare's first ``n_words`` distinct words, each repeated 1-29 times, shuffled."""
    words = list(dict.fromkeys(regex.findall(r"[a-z]+", CORPUS.read_text(encoding="utf-8").lower())))
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 30, size=n_words)
    seq = [w for w, k in zip(words[:n_words], counts) for _ in range(k)]
    rng.shuffle(seq)
    return " ".join(seq)


def test_merges_equal_tiktoken_educational_trainer_without_ties():
    text = weighted_words_text()
    ref_merged, tied = brute_force_bpe(text, GPT2, 60)
    n = tied.index(True)                          # merges before the first tie
    assert n >= 30, "the test text should have a long tie-free start"
    ours = train_bpe(text, 256 + n, pattern=GPT2)
    theirs = tiktoken_bpe_train(text, 256 + n, GPT2, visualise=None)
    assert len(theirs) == 256 + n
    assert ours.ranks == theirs                   # the same bytes at the same ranks
    assert _merged_bytes(ours) == ref_merged[:n]


def test_merges_equal_brute_force_trainer_on_shakespeare():
    text = CORPUS.read_text(encoding="utf-8")[:20_000]
    ref_merged, tied = brute_force_bpe(text, GPT2, 250)
    assert sum(tied) > 10                         # the tie rule is exercised too
    ours = train_bpe(text, 256 + 250, pattern=GPT2)
    assert _merged_bytes(ours) == ref_merged


def test_hand_counted_multi_chunk_example():
    # chunks (GPT-2 pattern): "xy" once, " xy" 4 times, " za", " zb", " zc", " zd" once each.
    # pair counts: (x, y) 5, (' ', x) 4, (' ', z) 4, (z, a..d) 1 each.
    #  merge 1: x+y (5) -> 256;  now (' ', 256) 4 and (' ', z) 4 tie: the smaller ids win,
    #  merge 2: ' '+z (32, 122) -> 257;  merge 3: ' '+256 (4) -> 258;
    #  merge 4: ties at 1 between (257, a..d): 257+a -> 259.
    tok = train_bpe("xy xy xy xy xy za zb zc zd", 260, pattern=GPT2)
    assert tok.merges == [(120, 121), (32, 122), (32, 256), (257, 97)]
    assert _merged_bytes(tok) == [b"xy", b" z", b" xy", b" za"]
