"""Tokenizer benchmark: BPE training and encoding side by side with tiktoken.

    python benchmarks/bench_tokenize.py [--input FILE] [--vocab-size 4096] [--json]

The same as ``scratchllm bench tokenize``; see scratchllm/tokenizers/bench.py for what is timed.
"""
import argparse
import sys

from scratchllm.tokenizers.cli import add_bench_tokenize


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="bench_tokenize")
    sub = parser.add_subparsers(dest="bench", required=True)
    add_bench_tokenize(sub)
    args = parser.parse_args(["tokenize", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
