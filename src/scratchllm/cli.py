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
    from .serve.cli import add_serve_commands
    from .io.export import add_export_command
    from .finetune.cli import add_finetune_command
    from . import __version__

    parser = argparse.ArgumentParser(prog="scratchllm", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"scratchllm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_command(sub)
    add_generate_command(sub)
    add_tokenizer_commands(sub)
    add_serve_commands(sub)
    add_export_command(sub)
    add_finetune_command(sub)
    bench = sub.add_parser("bench", help="time scratchllm side by side with its peer (PyTorch, HF, tiktoken)")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True)
    add_bench_train(bench_sub)
    add_bench_generate(bench_sub)
    add_bench_tokenize(bench_sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _main(args)
    except BaseException as e:
        # under mpiexec an error on one rank must end them all, or the others wait forever
        from .train.dist import RankStopped, launched_size, stop_all_ranks
        if launched_size() > 1 and not isinstance(e, SystemExit):
            import traceback
            traceback.print_exc()
            stop_all_ranks(None if isinstance(e, RankStopped) else f"scratchllm {args.command}: {type(e).__name__}: {e}")
        raise


def _main(args) -> int:
    from .train.dist import RankStopped, stop_all_ranks
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:             # `scratchllm generate ... | head -1`: the reader is done
        _stdout_to_devnull()
        return 0
    except (ScratchLLMError, OSError, ValueError, KeyError, ImportError) as e:
        if os.environ.get("SCRATCHLLM_DEBUG") or (isinstance(e, ImportError) and not _optional(e)):
            raise
        message = f"scratchllm {args.command}: error: {_message(e)}"
        stop_all_ranks(None if isinstance(e, RankStopped) else message)   # under mpiexec: ends every rank
        print(message, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"scratchllm {args.command}: interrupted", file=sys.stderr)
        return 130


def _stdout_to_devnull() -> None:
    """Point stdout at /dev/null so that Python's flush at exit does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


_OPTIONAL = {"torch", "transformers", "tiktoken", "sentencepiece", "sklearn", "regex"}


def _optional(e: ImportError) -> bool:
    """A missing benchmark/test-only package (the bench commands' peers), not a bug of ours."""
    return (e.name or "").split(".")[0] in _OPTIONAL


def _message(e: BaseException) -> str:
    """One line for the user: KeyError's bare key, what to install for a missing optional package."""
    if isinstance(e, ImportError):
        return (f"this command needs the package {e.name!r}, a benchmark/test dependency; "
                f"install it with: pip install -e '.[test]'")
    if isinstance(e, KeyError) and e.args:
        return str(e.args[0])
    if isinstance(e, OSError) and e.filename is not None and e.strerror:
        return f"{e.filename}: {e.strerror}"
    return " ".join(str(e).split()) or type(e).__name__


if __name__ == "__main__":
    sys.exit(main())
