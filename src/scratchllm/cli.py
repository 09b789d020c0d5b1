"""The ``scratchllm`` command: train, generate, tokenizer, bench.

Each sub-package registers its own sub-commands (``add_*`` functions), so this
file only assembles the parser and turns user errors into one line on stderr
and a non-zero exit status.
"""
import argparse
import os
import sys

from .errors import ScratchLLMError


def build_parser() -> argparse.ArgumentParser:
    from .tokenizers.cli import add_tokenizer_commands, add_bench_tokenize
    from .train.cli import add_train_command
    from .models.cli import add_generate_command
    from .bench.cli import add_bench_train, add_bench_generate

    parser = argparse.ArgumentParser(prog="scratchllm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_command(sub)
    add_generate_command(sub)
    add_tokenizer_commands(sub)
    bench = sub.add_parser("bench", help="time scratchllm side by side with its peer (PyTorch, HF, tiktoken)")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True)
    add_bench_train(bench_sub)
    add_bench_generate(bench_sub)
    add_bench_tokenize(bench_sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ScratchLLMError, FileNotFoundError, IsADirectoryError, PermissionError, ValueError, KeyError) as e:
        if os.environ.get("SCRATCHLLM_DEBUG"):
            raise
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"scratchllm {args.command}: error: {msg}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"scratchllm {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
