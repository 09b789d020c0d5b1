"""``scratchllm bench train`` and ``scratchllm bench generate``.

Each ``add_*`` registers one sub-command on the ``bench`` sub-parsers with
``set_defaults(func=handler)``; the handler returns the exit code.
"""
import argparse
import json
import sys

from ..errors import ScratchLLMError


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_bench_train(bench_sub) -> argparse.ArgumentParser:
    p = bench_sub.add_parser(
        "train", help="time GPT training steps, scratchllm vs PyTorch eager and torch.compile",
        description="Full training steps (forward, cross-entropy, backward, AdamW) of a GPT on "
                    "character-level tiny Shakespeare, float32, alternating with PyTorch eager "
                    "and PyTorch with torch.compile (inductor; needs a C++ compiler, else skipped).")
    p.add_argument("--config", choices=["small", "medium", "tiny"], default="small",
                   help="small: 4 layers x 128 wide, block 64, batch 12; medium: 6 x 384, block 256, batch 8")
    p.add_argument("--steps", type=_positive, default=None, help="timed steps (default: small 30, medium 6)")
    p.add_argument("--warmup", type=int, default=2, help=argparse.SUPPRESS)
    p.add_argument("--json", nargs="?", const="-", default=None, metavar="PATH",
                   help="print one JSON object; with PATH, write it there and print the table")
    p.add_argument("--no-peer", action="store_true", help="skip PyTorch (no torch needed)")
    p.add_argument("--compile", dest="compiled", action=argparse.BooleanOptionalAction, default=None,
                   help="add the torch.compile peer (default: on for small and medium); "
                        "skipped with a note when inductor has no C++ compiler")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    p.set_defaults(func=_train)
    return p


def add_bench_generate(bench_sub) -> argparse.ArgumentParser:
    p = bench_sub.add_parser(
        "generate", help="time greedy KV-cache generation, scratchllm vs HF transformers",
        description="Batch 1, 16-token prompt, 200 new tokens, greedy, GPT-2 and Llama shapes of "
                    "6 layers x 384 wide with random weights; HF generate() on the same weights.")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-peer", action="store_true", help="skip HF transformers (no torch needed)")
    p.add_argument("--model", choices=["gpt2", "llama", "both"], default="both")
    p.add_argument("--new-tokens", type=_positive, default=200, help=argparse.SUPPRESS)
    p.add_argument("--repeats", type=_positive, default=2, help=argparse.SUPPRESS)
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # tests: a 1-layer toy
    p.set_defaults(func=_generate)
    return p


def _need_peer(no_peer: bool, modules) -> None:
    if no_peer:
        return
    import importlib.util
    for m in modules:
        if importlib.util.find_spec(m) is None:
            raise ScratchLLMError(f"the peer needs the '{m}' package (pip install {m}), or pass --no-peer")


def _train(args) -> int:
    from .memory import measure_train_memory
    from .train import format_train, run_train_bench
    _need_peer(args.no_peer, ["torch"])
    result = run_train_bench(args.config, steps=args.steps, warmup=args.warmup, peer=not args.no_peer,
                             memory=None if args.no_memory else measure_train_memory, seed=args.seed,
                             compiled=args.compiled)
    if args.json not in (None, "-"):
        _write_json(args.json, result)
    print(json.dumps(result) if args.json == "-" else format_train(result))
    return 0


def _write_json(path: str, result: dict) -> None:
    """``result`` as one line of JSON at ``path``, written atomically (temp file + rename)."""
    import os
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps(result) + "\n")
        os.replace(tmp, path)
    except OSError as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise ScratchLLMError(f"cannot write the JSON result to {path}: {e}") from e


def _generate(args) -> int:
    from .generate import format_generate, run_generate_bench
    _need_peer(args.no_peer, ["torch", "transformers"])
    models = ("gpt2", "llama") if args.model == "both" else (args.model,)
    result = run_generate_bench(tiny=args.tiny, new_tokens=args.new_tokens, repeats=args.repeats,
                                peer=not args.no_peer, models=models)
    print(json.dumps(result) if args.json else format_generate(result))
    return 0


def main(argv=None) -> int:
    """``python -m scratchllm.bench.cli train|generate ...`` (the same as ``scratchllm bench ...``)."""
    parser = argparse.ArgumentParser(prog="scratchllm bench")
    sub = parser.add_subparsers(dest="bench_command", required=True)
    add_bench_train(sub)
    add_bench_generate(sub)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ScratchLLMError as e:
        print(f"scratchllm bench: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
