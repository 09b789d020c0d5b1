"""``scratchllm generate``: load a model and a tokenizer, print the prompt and stream the continuation.

    scratchllm generate --model PATH [--tokenizer PATH] --prompt TEXT [--max-new-tokens N]
                        [--temperature T] [--top-k K] [--top-p P] [--seed S]

Without ``--tokenizer`` the tokenizer is looked for beside the model (the model folder, or the
folder of a llama2.c .bin); a GPT-2-sized vocabulary falls back to the bundled GPT-2 tokenizer.
"""
import os
import sys

from ..errors import ScratchLLMError

GPT2_VOCAB = 50257


def add_generate_command(subparsers) -> None:
    p = subparsers.add_parser("generate", help="generate text from a prompt with a GPT-2 / Llama model")
    p.add_argument("--model", required=True, help="HF / Meta / scratchllm folder, or a llama2.c .bin")
    p.add_argument("--tokenizer", default=None, help="tokenizer path or name (default: found beside the model)")
    p.add_argument("--prompt", required=True, help="text to continue")
    p.add_argument("--max-new-tokens", type=int, default=100)
    p.add_argument("--temperature", type=float, default=1.0, help="0 = greedy")
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.set_defaults(func=run_generate)


def find_tokenizer(model_path: str, vocab_size: int):
    """The tokenizer beside ``model_path`` (its folder, or a .bin's folder); GPT-2's for a GPT-2 vocab."""
    from ..tokenizers import load_tokenizer
    folder = model_path if os.path.isdir(model_path) else os.path.dirname(os.path.abspath(model_path))
    candidates = [folder] + [os.path.join(folder, *name) for name in
                             (("tokenizer.model",), ("tokenizer.bin",), ("original", "tokenizer.model"))]
    problems = []
    for cand in candidates:
        if cand != folder and not os.path.isfile(cand):
            continue
        try:
            return load_tokenizer(cand)
        except (ScratchLLMError, FileNotFoundError, ValueError, KeyError) as e:
            problems.append(str(e))
    if vocab_size == GPT2_VOCAB:
        return load_tokenizer("gpt2")
    raise ScratchLLMError(f"no tokenizer found beside {model_path} ({'; '.join(problems)}); pass --tokenizer PATH")


def _encode(tok, text: str, add_bos: bool):
    if add_bos and getattr(tok, "bos_id", None) is not None:
        try:
            return tok.encode(text, bos=True)
        except TypeError:
            return [tok.bos_id] + list(tok.encode(text))
    return list(tok.encode(text))


def run_generate(args) -> int:
    from .generate import check_sampling
    from ..io.load import load_model
    from .llama import Llama
    model = load_model(args.model)
    tok = find_tokenizer(args.model, model.vocab_size) if args.tokenizer is None else _load_named(args.tokenizer)
    ids = _encode(tok, args.prompt, isinstance(model, Llama))
    if not ids:
        raise ScratchLLMError("the prompt encodes to no tokens; give a non-empty --prompt")
    if max(ids) >= model.vocab_size:
        raise ScratchLLMError(f"the tokenizer produced id {max(ids)} but the model's vocabulary has "
                              f"{model.vocab_size} entries; the tokenizer does not fit the model")
    check_sampling(args.temperature, args.top_k, args.top_p, args.max_new_tokens)   # before any output
    n = args.max_new_tokens          # past the context, the model sees the last context_length tokens
    eos = getattr(tok, "eos_id", None)
    out = sys.stdout
    out.write(args.prompt)
    out.flush()
    new, shown = [], ""
    for t in model.stream(ids, max_new_tokens=n, temperature=args.temperature, top_k=args.top_k,
                          top_p=args.top_p, seed=args.seed, stop_tokens=() if eos is None else (eos,)):
        if t == eos:
            break
        new.append(t)
        text = tok.decode(new)
        if text.endswith("\ufffd"):   # an incomplete UTF-8 character: wait for its next bytes
            continue
        out.write(text[len(shown):])
        out.flush()
        shown = text
    text = tok.decode(new) if new else ""
    out.write(text[len(shown):] + "\n")
    out.flush()
    return 0


def _load_named(name: str):
    from ..tokenizers import load_tokenizer
    return load_tokenizer(name)
