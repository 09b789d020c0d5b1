"""Tokenizer benchmark: our BPE training and encoding next to tiktoken (imported here only).

Encoding is timed on one string, single thread, best of ``repeat``: tiktoken's
``encode_ordinary`` against ours with an empty chunk cache ("cold", the fair comparison) and
with the cache already filled ("warm", e.g. a second pass over the same corpus). Training is
timed for our trainer on the whole corpus; tiktoken ships no production trainer, so the peer is
``tiktoken._educational.bpe_train`` on a prefix of the corpus, both trainers on the same prefix.
"""
from __future__ import annotations

import os
import platform
import time

from .bpe import BPETokenizer
from .pretokenize import PATTERNS

__all__ = ["bench_tokenize", "format_report", "default_corpus", "default_llama3"]


def _first_existing(*paths: str) -> str | None:
    return next((p for p in paths if os.path.isfile(p)), None)


def default_corpus() -> str | None:
    here = os.path.dirname(os.path.dirname(__file__))
    return _first_existing(os.path.join(here, "data", "tinyshakespeare.txt"),
                           os.path.join("..", "shared", "data", "tinyshakespeare.txt"))


def default_llama3() -> str | None:
    return _first_existing(os.path.join("tests", "data", "llama3", "tokenizer.model"),
                           os.path.join("..", "shared", "data", "llama3", "tokenizer.model"))


def _best(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _encode_row(name: str, ours: BPETokenizer, peer, text: str, repeat: int) -> dict:
    """Best of ``repeat`` rounds; each round times tiktoken, ours cold, ours warm in turn
    (interleaved, so that load from other processes hits both sides alike)."""
    mb = len(text.encode("utf-8")) / 1e6
    t_peer = t_cold = t_warm = float("inf")
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        ids_peer = peer.encode_ordinary(text)
        t1 = time.perf_counter()
        ours._cache.clear()
        ids = ours.encode_ordinary(text)
        t2 = time.perf_counter()
        ours.encode_ordinary(text)
        t3 = time.perf_counter()
        t_peer, t_cold, t_warm = min(t_peer, t1 - t0), min(t_cold, t2 - t1), min(t_warm, t3 - t2)
    return {"tokenizer": name, "tokens": len(ids), "identical": ids == ids_peer,
            "tiktoken_s": t_peer, "ours_cold_s": t_cold, "ours_warm_s": t_warm,
            "tiktoken_MBps": mb / t_peer, "ours_cold_MBps": mb / t_cold,
            "ours_warm_MBps": mb / t_warm, "ratio_cold": t_peer / t_cold,
            "ratio_warm": t_peer / t_warm}


def bench_tokenize(text: str, vocab_size: int = 4096, pattern: str = "gpt4",
                   llama3: str | None = None, peer_train_chars: int = 100_000,
                   peer_train_vocab: int = 512, repeat: int = 3) -> dict:
    import tiktoken  # benchmark-only dependency
    from tiktoken._educational import bpe_train

    from .gpt2 import load_gpt2
    from .tiktoken_file import load_tiktoken

    result = {"machine": f"{platform.machine()} {os.cpu_count()} cpu(s), {platform.system()}",
              "python": platform.python_version(), "tiktoken": tiktoken.__version__,
              "chars": len(text), "bytes": len(text.encode("utf-8"))}
    t_train, tok = _best(lambda: BPETokenizer.train(text, vocab_size, pattern=pattern), 1)
    result["train"] = {"vocab_size": vocab_size, "pattern": pattern, "ours_s": t_train}

    part = text[:peer_train_chars]
    t_ours, _ = _best(lambda: BPETokenizer.train(part, peer_train_vocab, pattern=pattern), 1)
    t_peer, _ = _best(lambda: bpe_train(part, peer_train_vocab, PATTERNS[pattern],
                                        visualise=None), 1)
    result["train_vs_peer"] = {"chars": len(part), "vocab_size": peer_train_vocab,
                               "ours_s": t_ours, "tiktoken_educational_s": t_peer,
                               "speedup": t_peer / t_ours}

    rows = []
    peer = tiktoken.Encoding("trained", pat_str=PATTERNS[pattern], mergeable_ranks=tok.ranks,
                             special_tokens={})
    rows.append(_encode_row(f"trained-{vocab_size}", tok, peer, text, repeat))
    gpt2 = load_gpt2()
    peer = tiktoken.Encoding("gpt2", pat_str=PATTERNS["gpt2"], mergeable_ranks=gpt2.ranks,
                             special_tokens=gpt2.special_tokens)
    rows.append(_encode_row("gpt2", gpt2, peer, text, repeat))
    if llama3 and os.path.isfile(llama3):
        l3 = load_tiktoken(llama3)
        peer = tiktoken.Encoding("llama3", pat_str=PATTERNS["llama3"], mergeable_ranks=l3.ranks,
                                 special_tokens=l3.special_tokens)
        rows.append(_encode_row("llama3", l3, peer, text, repeat))
    result["encode"] = rows
    return result


def format_report(r: dict) -> str:
    lines = [f"corpus: {r.get('input', '?')} ({r['bytes']:,} bytes); {r['machine']}; "
             f"python {r['python']}; tiktoken {r['tiktoken']}",
             f"train vocab {r['train']['vocab_size']} ({r['train']['pattern']}) on the whole "
             f"corpus: {r['train']['ours_s']:.2f} s"]
    p = r["train_vs_peer"]
    lines.append(f"train vocab {p['vocab_size']} on the first {p['chars']:,} chars: ours "
                 f"{p['ours_s']:.2f} s, tiktoken._educational {p['tiktoken_educational_s']:.2f} s"
                 f" ({p['speedup']:.0f}x)")
    lines.append("encode, one thread   tiktoken MB/s   ours cold MB/s (ratio)   "
                 "ours warm MB/s (ratio)   identical")
    for row in r["encode"]:
        lines.append(f"  {row['tokenizer']:<18} {row['tiktoken_MBps']:>10.2f}   "
                     f"{row['ours_cold_MBps']:>10.2f} ({row['ratio_cold']:.2f})   "
                     f"{row['ours_warm_MBps']:>14.2f} ({row['ratio_warm']:.2f})   "
                     f"{row['identical']}")
    return "\n".join(lines)
