"""``scratchllm generate``: load a model and a tokenizer, print the prompt and stream the continuation.

    scratchllm generate --model PATH [--tokenizer PATH] (--prompt TEXT | --prompt-file FILE)
                        [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S]
                        [--num-samples N] [--stop-token ID ...] [--stop STRING ...]

What is printed is exactly what the tokenizer decodes: the whole sequence (prompt and new ids)
is decoded after each new token and the part not yet shown is printed, so a SentencePiece word
that starts with "▁" gets its space (``Zoo`` + ``▁was`` prints ``Zoo was``, as llama2.c's run.c).

Generation stops at the model family's end tokens: EOS; also BOS (id 1) for llama2.c .bin models,
which TinyStories models emit between stories (run.c stops there); ``<|eot_id|>`` and
``<|end_of_text|>`` for Llama 3; the ``eos_token_id`` of an HF folder's generation_config.json.
``--stop-token``/``--stop`` replace these. ``--num-samples`` prints several samples, each
followed by a line of dashes, as nanoGPT's sample.py.

Without ``--tokenizer`` the tokenizer is looked for beside the model (the model folder, or the
folder of a llama2.c .bin, where ``tok{vocab}.bin`` counts too); a GPT-2-sized vocabulary falls
back to the bundled GPT-2 tokenizer.
"""
import os
import re
import sys

from ..errors import ScratchLLMError

GPT2_VOCAB = 50257
SEPARATOR = "---------------"     # nanoGPT's sample.py prints it after each sample
LLAMA3_STOPS = ("<|eot_id|>", "<|end_of_text|>")
HUB_NAMES = {"gpt2": "openai-community/gpt2", "gpt2-medium": "openai-community/gpt2-medium",
             "gpt2-large": "openai-community/gpt2-large", "gpt2-xl": "openai-community/gpt2-xl",
             "distilgpt2": "distilbert/distilgpt2"}


def add_generate_command(subparsers) -> None:
    p = subparsers.add_parser("generate", help="generate text from a prompt with a GPT-2 / Llama model")
    p.add_argument("--model", required=True, help="HF / Meta / scratchllm folder, or a llama2.c .bin")
    p.add_argument("--tokenizer", default=None, help="tokenizer path or name (default: found beside the model)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", help="text to continue")
    src.add_argument("--prompt-file", help="read the text to continue from this UTF-8 file")
    p.add_argument("--max-new-tokens", type=int, default=100)
    p.add_argument("--temperature", type=float, default=1.0, help="0 = greedy")
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--seed", type=int, default=None, help="sample k uses seed + k")
    p.add_argument("--num-samples", type=int, default=1, help="samples to draw, each followed by a line of dashes")
    p.add_argument("--stop-token", type=int, action="append", default=None, metavar="ID",
                   help="stop at this token id (repeatable; replaces the model's own end tokens)")
    p.add_argument("--stop", action="append", default=None, metavar="STRING",
                   help="stop before this text (repeatable; a special token's text stops at its id)")
    p.add_argument("--quantize", choices=("q8_0",), default=None,
                   help="int8 weights and activations for the matrix products, as llama2.c's runq (models/quant.py)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N (needs CuPy: scratchllm[cuda])")
    p.set_defaults(func=run_generate)


def find_tokenizer(model_path: str, vocab_size: int):
    """The tokenizer beside ``model_path`` (its folder, or a .bin's folder); GPT-2's for a GPT-2 vocab."""
    from ..tokenizers import load_tokenizer
    folder = model_path if os.path.isdir(model_path) else os.path.dirname(os.path.abspath(model_path))
    names = (("tokenizer.model",), ("tokenizer.bin",), (f"tok{vocab_size}.bin",), ("original", "tokenizer.model"))
    candidates = [folder] + [os.path.join(folder, *name) for name in names]
    if os.path.isfile(model_path) and _is_gguf(model_path):           # a GGUF file holds its tokenizer
        candidates.insert(0, model_path)
    problems, unreadable = [], False
    for cand in candidates:
        if cand != folder and not os.path.isfile(cand):
            continue
        try:
            return load_tokenizer(cand)
        except (ScratchLLMError, FileNotFoundError, ValueError, KeyError) as e:
            problems.append(str(e))
            unreadable |= not isinstance(e, FileNotFoundError)
    if vocab_size == GPT2_VOCAB and not unreadable:   # a tokenizer file that fails is not skipped
        return load_tokenizer("gpt2")
    raise ScratchLLMError(f"no tokenizer found beside {model_path} ({'; '.join(problems)}); pass --tokenizer PATH")


def _is_gguf(path: str) -> bool:
    from ..io.gguf_read import is_gguf_file
    return is_gguf_file(path)


def encode_prompt(tok, text: str, add_bos: bool) -> list:
    """Prompt ids, BOS first when asked and the tokenizer has one (any tokenizer kind)."""
    ids = list(tok.encode(text))
    bos = getattr(tok, "bos_id", None)
    return [bos] + ids if add_bos and bos is not None else ids


def check_model_path(path: str) -> None:
    """A missing model gets one line; a Hugging Face name gets the command that downloads it."""
    if os.path.exists(path):
        return
    name = HUB_NAMES.get(path)
    if name is not None:
        raise ScratchLLMError(f"{path}: no such file or folder; download the weights with: "
                              f"hf download {name} --local-dir {path}")
    if re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", path):
        raise ScratchLLMError(f"{path}: no such file or folder; if it is a Hugging Face model, download it "
                              f"with: hf download {path} --local-dir {path.split('/')[1]}")
    raise ScratchLLMError(f"{path}: no such file or folder")


def stop_ids_for(model, tok, model_path: str) -> set:
    """The ids that end a generation for this model family (see the module doc)."""
    stops = set()
    eos = getattr(tok, "eos_id", None)
    if eos is not None:
        stops.add(int(eos))
    if os.path.isfile(model_path) and _is_llama2c(model_path):
        bos = getattr(tok, "bos_id", None)
        stops.add(int(bos) if bos is not None else 1)
    specials = getattr(tok, "special_tokens", None) or {}
    stops.update(int(specials[name]) for name in LLAMA3_STOPS if name in specials)
    stops.update(_generation_config_eos(model_path))
    return {i for i in stops if 0 <= i < model.vocab_size}


def _is_llama2c(path: str) -> bool:
    from ..io.llama2c import is_llama2c_file
    return is_llama2c_file(path)


def _generation_config_eos(model_path: str) -> list:
    path = os.path.join(model_path, "generation_config.json")
    if not os.path.isfile(path):
        return []
    from ..jsonio import read_json
    value = read_json(path, "generation config").get("eos_token_id")
    values = value if isinstance(value, list) else [value]
    return [v for v in values if type(v) is int]


def _special_id(tok, text: str):
    """The id of a special/control token written as text (``<|eot_id|>``, ``</s>``), else None."""
    specials = getattr(tok, "special_tokens", None)
    if isinstance(specials, dict) and text in specials:
        return int(specials[text])
    if hasattr(tok, "piece_to_id") and hasattr(tok, "types"):      # SentencePiece: <s>, </s>
        from ..tokenizers.sp_proto import CONTROL
        i = tok.piece_to_id(text)
        if tok.types[i] == CONTROL and tok.pieces[i] == text:
            return int(i)
    return None


def _read_prompt(args) -> str:
    if args.prompt is not None:
        return args.prompt
    try:
        with open(args.prompt_file, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise ScratchLLMError(f"{args.prompt_file}: no such prompt file") from None
    except UnicodeDecodeError as exc:
        raise ScratchLLMError(f"{args.prompt_file}: not UTF-8 text ({exc})") from None


def run_generate(args) -> int:
    from .generate import check_sampling
    from ..io.load import load_model
    from .llama import Llama
    prompt = _read_prompt(args)
    if args.num_samples < 1:
        raise ScratchLLMError(f"--num-samples must be at least 1, got {args.num_samples}")
    check_model_path(args.model)
    model = load_model(args.model)
    if getattr(args, "device", "cpu") != "cpu":
        if args.quantize:
            raise ScratchLLMError("--quantize runs on the CPU only; leave out --device or --quantize")
        model.to(args.device)                                  # a clear error without CuPy / a GPU
    if args.quantize:
        from .quant import set_generation_quant
        set_generation_quant(model, args.quantize)
    tok = find_tokenizer(args.model, model.vocab_size) if args.tokenizer is None else _load_named(args.tokenizer)
    add_bos = isinstance(model, Llama) and getattr(tok, "bos_id", None) is not None
    ids = encode_prompt(tok, prompt, add_bos)
    if not ids:
        raise ScratchLLMError("the prompt encodes to no tokens; give a non-empty --prompt")
    if max(ids) >= model.vocab_size:
        raise ScratchLLMError(f"the tokenizer produced id {max(ids)} but the model's vocabulary has "
                              f"{model.vocab_size} entries; the tokenizer does not fit the model")
    check_sampling(args.temperature, args.top_k, args.top_p, args.max_new_tokens)   # before any output
    stops, stop_texts = set(args.stop_token or ()), []
    for text in args.stop or ():
        i = _special_id(tok, text)
        (stops.add(i) if i is not None else stop_texts.append(text))
    if args.stop_token is None and args.stop is None:
        stops = stop_ids_for(model, tok, args.model)
    for k in range(args.num_samples):
        seed = None if args.seed is None else args.seed + k
        _sample(model, tok, ids, int(add_bos), args, seed, stops, stop_texts, sys.stdout)
        if args.num_samples > 1:
            sys.stdout.write(SEPARATOR + "\n")
            sys.stdout.flush()
    return 0


def _sample(model, tok, ids, skip: int, args, seed, stops, stop_texts, out) -> None:
    """Print prompt + continuation as decoded (``skip`` leading ids, the BOS, are not shown)."""
    seq = list(ids)
    prompt_text = tok.decode(seq[skip:])
    out.write(prompt_text)
    out.flush()
    shown = len(prompt_text)          # characters of the decoded sequence printed so far
    text, stopped = prompt_text, False
    for t in model.stream(ids, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                          top_k=args.top_k, top_p=args.top_p, seed=seed, stop_tokens=tuple(sorted(stops))):
        if t in stops:
            break
        seq.append(t)
        text = tok.decode(seq[skip:])
        if text.endswith("\ufffd"):   # an incomplete UTF-8 character: wait for its next bytes
            continue
        end, stopped = _printable_end(text, len(prompt_text), stop_texts)
        if end > shown:
            out.write(text[shown:end])
            out.flush()
            shown = end
        if stopped:
            break
    if not stopped:
        end, _ = _printable_end(text, len(prompt_text), stop_texts, final=True)
        out.write(text[shown:end])
    out.write("\n")
    out.flush()


def _printable_end(text: str, start: int, stop_texts, final: bool = False):
    """-> (how much of ``text`` may be printed, whether a stop string was found).

    A stop string in the continuation (``text[start:]``) ends it just before; while none is
    found, a tail that could still grow into one is held back.
    """
    if not stop_texts:
        return len(text), False
    cont = text[start:]
    hits = [i for i in (cont.find(s) for s in stop_texts) if i >= 0]
    if hits:
        return start + min(hits), True
    if final:
        return len(text), False
    hold = max((n for s in stop_texts for n in range(min(len(s) - 1, len(cont)), 0, -1)
                if cont.endswith(s[:n])), default=0)
    return len(text) - hold, False


def _load_named(name: str):
    from ..tokenizers import load_tokenizer
    return load_tokenizer(name)
