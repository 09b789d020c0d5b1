"""Encode scaling on hostile text (issue 13): 1 MB and 2 MB of one repeated letter, and of text
without spaces, with every tokenizer kind. Before issue 13, SentencePiece / llama2.c encode was
quadratic in the length of a word (40k letters: 33 s) and GPT-2 took 78 s for 10 MB of one letter.

Targets: each 1 MB input under 5 s, and doubling the input at most ~2.2x the time.

    .venv/bin/python benchmarks/bench_encode_scaling.py [--json] [--repeats 2]

The "no spaces" text is tiny Shakespeare with every whitespace character removed, continued by
its rot13 and swapcase (so the 2 MB text repeats no piece of the 1 MB one). Each figure is the
fastest of ``--repeats`` runs on a fresh tokenizer (empty cache).
"""
import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
MB = 1 << 20


def tokenizers():
    """name -> a function making a fresh tokenizer of that kind (an empty encode cache)."""
    from scratchllm.tokenizers import BPETokenizer, load_tokenizer
    corpus = (DATA / "tinyshakespeare.txt").read_text(encoding="utf-8")
    trained = Path(tempfile.mkdtemp()) / "trained.json"
    BPETokenizer.train(corpus[:200_000], 512, pattern="gpt4").save(trained)
    return {"gpt2 (encoder.json + vocab.bpe)": lambda: load_tokenizer(DATA / "gpt2"),
            "llama3 (tiktoken)": lambda: load_tokenizer(DATA / "llama3" / "tokenizer.model"),
            "llama2 (SentencePiece .model)": lambda: load_tokenizer(DATA / "llama2" / "tokenizer.model"),
            "llama2 (llama2.c tokenizer.bin)": lambda: load_tokenizer(DATA / "llama2" / "tokenizer.bin"),
            "scratchllm BPE (trained, 512)": lambda: load_tokenizer(trained)}


def texts():
    """The two hostile texts at a given size in bytes. The no-space text never repeats a piece:
    after the corpus come its rot13, its swapcase and both (a repeat would hit the encode cache)."""
    import codecs
    corpus = (DATA / "tinyshakespeare.txt").read_text(encoding="utf-8")
    nospace = "".join(corpus.split())
    variants = [nospace, codecs.encode(nospace, "rot13"), nospace.swapcase(),
                codecs.encode(nospace, "rot13").swapcase()]
    long_text = "".join(variants)
    assert len(long_text) >= 2 * MB and long_text.isascii()
    return {"one letter": lambda n: "a" * n, "no spaces": lambda n: long_text[:n]}


def timed(make, text, repeats):
    best, n_ids = float("inf"), 0
    for _ in range(repeats):
        tok = make()
        t0 = time.perf_counter()
        n_ids = len(tok.encode(text))
        best = min(best, time.perf_counter() - t0)
    return best, n_ids


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    rows = []
    for tok_name, make in tokenizers().items():
        make()                                                    # build the regex tables once
        for text_name, text_of in texts().items():
            t1, ids1 = timed(make, text_of(MB), args.repeats)
            t2, ids2 = timed(make, text_of(2 * MB), args.repeats)
            rows.append({"tokenizer": tok_name, "text": text_name, "seconds_1mb": round(t1, 3),
                         "seconds_2mb": round(t2, 3), "ratio": round(t2 / t1, 2), "ids_1mb": ids1, "ids_2mb": ids2})
            if not args.json:
                print(f"{tok_name:34s} {text_name:11s} 1 MB {t1:7.3f} s   2 MB {t2:7.3f} s   x{t2 / t1:4.2f}"
                      f"   ({ids1} / {ids2} ids)", flush=True)
    result = {"benchmark": "encode_scaling", "rows": rows, "machine": {
        "python": platform.python_version(), "cpus": os.cpu_count(), "loadavg_1m": os.getloadavg()[0]}}
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"load average (1 min) at the end: {result['machine']['loadavg_1m']:.1f}")


if __name__ == "__main__":
    main()
