"""Command-line pieces: ``scratchllm tokenizer train|encode|decode`` and ``bench tokenize``.

    scratchllm tokenizer train --input corpus.txt --vocab-size 4096 --pattern gpt4 --out tok.json
    scratchllm tokenizer encode --tokenizer gpt2 --text "Hello world"        # -> 15496 995
    scratchllm tokenizer decode --tokenizer gpt2 --ids "15496 995"           # -> Hello world
    scratchllm bench tokenize [--json]        # side by side with tiktoken (needs tiktoken)

Each ``add_*`` function registers parsers with ``set_defaults(func=handler)``;
``handler(args)`` returns the exit code.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time

from ..errors import ScratchLLMError, reading

__all__ = ["add_tokenizer_commands", "add_bench_tokenize", "run_bench_tokenize", "encode_text"]


def _read_text(path: str) -> str:
    with reading(path, "text file"), open(path, encoding="utf-8") as f:
        return f.read()


def _write_or_print(text: str, out: str | None) -> None:
    if out:
        from ..atomic import atomic_write
        with atomic_write(out, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)


def _check_pattern(pattern: str) -> str:
    """A bare word must be a pattern name: "gpt5" is a typo, not a regex that matches "gpt5"."""
    from .pretokenize import PATTERNS
    if re.fullmatch(r"\w+", pattern) and pattern != "none" and pattern not in PATTERNS:
        raise ScratchLLMError(f"unknown split pattern name {pattern!r}; choose one of: "
                              f"{', '.join(PATTERNS)}, none (or give a regex)")
    return pattern


def _cmd_train(args) -> int:
    from .bpe import BPETokenizer
    pattern = _check_pattern(args.pattern)
    text = _read_text(args.input)
    if not text:
        raise ScratchLLMError(f"{args.input}: the file is empty; nothing to train on")
    t0 = time.perf_counter()
    tok = BPETokenizer.train(text, args.vocab_size, pattern=pattern,
                             special_tokens=args.special or None, verbose=args.verbose)
    seconds = time.perf_counter() - t0
    tok.save(args.out)
    print(f"trained {len(tok.merges)} merges (vocab {tok.vocab_size}) on {len(text):,} "
          f"characters in {seconds:.2f} s -> {args.out}")
    if 256 + len(tok.merges) < args.vocab_size:
        print(f"note: no pair left to merge; the vocabulary stops at {256 + len(tok.merges)} of the "
              f"{args.vocab_size} asked for (give more text)", file=sys.stderr)
    return 0


def encode_text(tok, text: str, bos: bool = False, eos: bool = False, allowed_special=()) -> list:
    """Encode with any tokenizer kind (BPE, tiktoken, SentencePiece, llama2.c, HF, character):
    BOS/EOS are put around the ids here, so every kind takes ``--bos``/``--eos``."""
    kwargs = {}
    if allowed_special:
        if not isinstance(getattr(tok, "special_tokens", None), dict):
            raise ScratchLLMError(f"{getattr(tok, 'name', type(tok).__name__)}: this tokenizer has "
                                  "no special tokens; drop --allowed-special")
        kwargs["allowed_special"] = "all" if list(allowed_special) == ["all"] else set(allowed_special)
    ids = list(tok.encode(text, **kwargs))
    for flag, which, where in ((bos, "bos", 0), (eos, "eos", len(ids) + 1)):
        if flag:
            i = getattr(tok, f"{which}_id", None)
            if i is None:
                raise ScratchLLMError(f"{getattr(tok, 'name', type(tok).__name__)}: this tokenizer "
                                      f"has no {which} token; drop --{which}")
            ids.insert(where, i)
    return ids


def _cmd_encode(args) -> int:
    from .load import load_tokenizer
    tok = load_tokenizer(args.tokenizer)
    text = args.text if args.text is not None else _read_text(args.input)
    ids = encode_text(tok, text, args.bos, args.eos, args.allowed_special)
    _write_or_print(" ".join(map(str, ids)) + "\n", args.out)
    return 0


def _cmd_decode(args) -> int:
    from .load import load_tokenizer
    tok = load_tokenizer(args.tokenizer)
    raw = args.ids if args.ids is not None else _read_text(args.input)
    try:
        ids = [int(x) for x in raw.replace(",", " ").split()]
    except ValueError as exc:
        raise ScratchLLMError(f"ids must be integers separated by spaces ({exc})") from None
    _write_or_print(tok.decode(ids), args.out)
    return 0


def add_tokenizer_commands(subparsers) -> argparse.ArgumentParser:
    """Register ``tokenizer train|encode|decode`` on a subparsers object."""
    p = subparsers.add_parser("tokenizer", help="train a BPE tokenizer, encode, decode")
    sub = p.add_subparsers(dest="tokenizer_command", required=True)

    t = sub.add_parser("train", help="train byte-level BPE on a text file")
    t.add_argument("--input", required=True, help="UTF-8 text file")
    t.add_argument("--vocab-size", type=int, required=True, help="256 bytes + merges")
    t.add_argument("--pattern", default="gpt4",
                   help='split pattern: gpt2, gpt4, llama3, none, or a regex (default gpt4)')
    t.add_argument("--special", nargs="*", default=[], help="special tokens, ids after merges")
    t.add_argument("--out", required=True, help="tokenizer file to write (JSON)")
    t.add_argument("--verbose", action="store_true", help="print every merge")
    t.set_defaults(func=_cmd_train)

    for name, func in (("encode", _cmd_encode), ("decode", _cmd_decode)):
        e = sub.add_parser(name, help=f"{name} with any tokenizer load_tokenizer reads")
        e.add_argument("--tokenizer", required=True,
                       help='"gpt2", a tokenizer file, an HF/model folder or a scratchllm run folder')
        src = e.add_mutually_exclusive_group(required=True)
        if name == "encode":
            src.add_argument("--text", help="text to encode")
            src.add_argument("--input", help="text file to encode")
            e.add_argument("--bos", action="store_true", help="prepend the begin-of-text id")
            e.add_argument("--eos", action="store_true", help="append the end-of-text id")
            e.add_argument("--allowed-special", nargs="*", default=[],
                           help='special tokens to recognise in the text ("all" for all)')
        else:
            src.add_argument("--ids", help='ids, e.g. "15496 995"')
            src.add_argument("--input", help="file of whitespace-separated ids")
        e.add_argument("--out", help="write here instead of stdout")
        e.set_defaults(func=func)
    return p


def add_bench_tokenize(bench_subparsers) -> argparse.ArgumentParser:
    """Register ``bench tokenize`` on the bench command's subparsers."""
    from .bench import default_corpus, default_llama3
    b = bench_subparsers.add_parser("tokenize", help="BPE training and encoding vs tiktoken")
    b.add_argument("--input", default=default_corpus(), help="text corpus (UTF-8)")
    b.add_argument("--vocab-size", type=int, default=4096, help="vocab for the training run")
    b.add_argument("--pattern", default="gpt4", help="split pattern for training")
    b.add_argument("--llama3", default=default_llama3(), help="Llama 3 tokenizer.model (optional)")
    b.add_argument("--peer-train-chars", type=int, default=50_000,
                   help="corpus prefix for the training comparison with tiktoken's educational "
                        "trainer (it recounts every pair per merge)")
    b.add_argument("--peer-train-vocab", type=int, default=384)
    b.add_argument("--repeat", type=int, default=3, help="timing repeats (best is reported)")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.set_defaults(func=run_bench_tokenize)
    return b


def run_bench_tokenize(args) -> int:
    from .bench import bench_tokenize
    if not args.input or not os.path.isfile(args.input):
        raise ScratchLLMError(f"corpus {args.input!r} not found; pass --input FILE")
    result = bench_tokenize(_read_text(args.input), vocab_size=args.vocab_size,
                            pattern=args.pattern, llama3=args.llama3,
                            peer_train_chars=args.peer_train_chars,
                            peer_train_vocab=args.peer_train_vocab, repeat=args.repeat)
    result["input"] = args.input
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        from .bench import format_report
        print(format_report(result))
    return 0
