"""``scratchllm export``: write a model (and its tokenizer) for other tools.

    scratchllm export --model RUN_OR_PATH --format hf|gguf|llama2c|scratchllm --out PATH
                      [--type f32|f16|q8_0] [--tokenizer PATH]

- ``hf``: a folder transformers loads (``config.json``, ``model.safetensors``, ``tokenizer.json``,
  ``tokenizer_config.json``), so ``transformers.pipeline("text-generation", OUT)`` runs it;
- ``gguf``: one file llama.cpp / ollama load, tokenizer inside; ``--type`` f32, f16 or q8_0;
- ``llama2c``: llama2.c's ``.bin`` (``--type f32``: version 1, ``q8_0``: version 2, int8 as
  runq.c reads) and ``tokenizer.bin`` beside it (SentencePiece vocabularies);
- ``scratchllm``: scratchllm's own folder (``config.json`` + ``model.safetensors`` + tokenizer).

The model is anything ``load_model`` reads (a training run folder, HF / Meta folders, llama2.c
and GGUF files); the tokenizer is the one ``generate`` would use, or ``--tokenizer``.

>>> export("runs/shakespeare-char", "hf", "out/hf")           # doctest: +SKIP
"""
import json
import os
import sys

from ..atomic import atomic_write
from ..errors import ScratchLLMError
from ..jsonio import read_json

FORMATS = ("hf", "gguf", "llama2c", "scratchllm")
TYPES = ("f32", "f16", "q8_0")


def add_export_command(subparsers) -> None:
    p = subparsers.add_parser("export", help="write a model for HF transformers, llama.cpp (GGUF) or llama2.c")
    p.add_argument("--model", required=True, help="run folder, HF / Meta / scratchllm folder, llama2.c .bin, .gguf")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--out", required=True, help="output folder (hf, scratchllm) or file (gguf, llama2c)")
    p.add_argument("--type", default="f32", choices=TYPES, help="weights: f32 (default), f16 (gguf), q8_0 "
                   "(gguf, llama2c v2)")
    p.add_argument("--tokenizer", default=None, help="tokenizer path or name (default: the model's)")
    p.set_defaults(func=run_export)


def run_export(args) -> int:
    written, note = export(args.model, args.format, args.out, type=args.type, tokenizer=args.tokenizer)
    for path in written:
        print(path)
    if note:
        print(f"scratchllm export: {note}", file=sys.stderr)
    return 0


def source_tokenizer(model_path: str, vocab_size: int, tokenizer=None):
    """The tokenizer given (path/name or object), the one inside a GGUF file, or the one found
    beside the model as ``generate`` finds it; None when there is none."""
    from ..tokenizers import load_tokenizer
    from .gguf_read import is_gguf_file
    if tokenizer is not None:
        return load_tokenizer(tokenizer) if isinstance(tokenizer, (str, os.PathLike)) else tokenizer
    if is_gguf_file(model_path):
        from .gguf_read import GGUFFile
        from .gguf_vocab import gguf_tokenizer
        g = GGUFFile(model_path)
        return gguf_tokenizer(g) if "tokenizer.ggml.model" in g.metadata else None
    from ..models.cli import find_tokenizer
    try:
        return find_tokenizer(os.fspath(model_path), vocab_size)
    except ScratchLLMError:
        return None


def export(model, fmt: str, out, type: str = "f32", tokenizer=None) -> tuple:
    """Write ``model`` (a path) in format ``fmt`` to ``out``; -> (paths written, a note or "")."""
    from .load import read_checkpoint
    if fmt not in FORMATS:
        raise ScratchLLMError(f"export format must be one of {list(FORMATS)}, got {fmt!r}")
    if type not in TYPES:
        raise ScratchLLMError(f"export type must be one of {list(TYPES)}, got {type!r}")
    allowed = {"hf": ("f32",), "scratchllm": ("f32",), "llama2c": ("f32", "q8_0"), "gguf": TYPES}[fmt]
    if type not in allowed:
        raise ScratchLLMError(f"--format {fmt} writes --type {' or '.join(allowed)}, not {type}")
    config, state = read_checkpoint(model)
    tok = source_tokenizer(model, config.vocab_size, tokenizer)
    out = os.fspath(out)
    note = "" if tok is not None else "no tokenizer found beside the model (pass --tokenizer); wrote the weights only"
    if fmt == "gguf":
        from .gguf import write_gguf_model
        _parent(out)
        write_gguf_model(out, config, state, tok, type=type)
        return [out], note
    if fmt == "llama2c":
        return _llama2c(out, config, state, tok, type, note)
    os.makedirs(out, exist_ok=True)
    if fmt == "hf":
        return _hf(out, config, state, tok), note
    return _scratchllm(out, config, state, tok), note


def _parent(path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)


def _write_json(path: str, obj) -> None:
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)


def _hf(out: str, config, state: dict, tok) -> list:
    from .export_tokenizer import hf_tokenizer_json
    from .hf import write_hf
    write_hf(out, config, state)
    written = [os.path.join(out, "config.json"), os.path.join(out, "model.safetensors")]
    if tok is None:
        return written
    doc, special = hf_tokenizer_json(tok)
    _write_json(os.path.join(out, "tokenizer.json"), doc)
    special = {k: v for k, v in special.items() if v is not None}
    _write_json(os.path.join(out, "tokenizer_config.json"),
                {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": _context(config),
                 "clean_up_tokenization_spaces": False, **special})
    ids = {f"{k}_token_id": _id(doc, special[f"{k}_token"]) if f"{k}_token" in special else None
           for k in ("bos", "eos")}                    # None: no such token (not GPT-2's 50256)
    cfg_path = os.path.join(out, "config.json")
    cfg = read_json(cfg_path, "config written above")
    _write_json(cfg_path, {**cfg, **ids})
    return written + [os.path.join(out, "tokenizer.json"), os.path.join(out, "tokenizer_config.json")]


def _id(doc: dict, text: str):
    for t in doc["added_tokens"]:
        if t["content"] == text:
            return t["id"]
    return doc["model"]["vocab"].get(text)


def _context(config) -> int:
    return getattr(config, "max_seq_len", None) or config.block_size


def _llama2c(out: str, config, state: dict, tok, type: str, note: str) -> tuple:
    from .export_llama2c import write_llama2c
    from .export_tokenizer import llama2c_tokenizer_bin
    _parent(out)
    write_llama2c(out, config, state, version=2 if type == "q8_0" else 1)
    written = [out]
    if tok is not None:
        try:
            blob = llama2c_tokenizer_bin(tok)
        except ScratchLLMError as e:
            return written, str(e) + "; wrote the model only"
        path = os.path.join(os.path.dirname(os.path.abspath(out)), "tokenizer.bin")
        with atomic_write(path) as f:
            f.write(blob)
        written.append(path)
    return written, note


def _scratchllm(out: str, config, state: dict, tok) -> list:
    from ..models import build_model
    from ..tokenizers.sentencepiece import SentencePieceBPE
    model = build_model(config)
    model.load_state_dict(state)
    model.save_pretrained(out)
    written = [os.path.join(out, "config.json"), os.path.join(out, "model.safetensors")]
    if tok is None:
        return written
    if getattr(tok, "merges", None) is not None or hasattr(tok, "chars"):   # scratchllm's own formats
        path = os.path.join(out, "tokenizer.json")
        tok.save(path)
    elif isinstance(tok, SentencePieceBPE):
        from .export_tokenizer import llama2c_tokenizer_bin
        path = os.path.join(out, "tokenizer.bin")
        with atomic_write(path) as f:
            f.write(llama2c_tokenizer_bin(tok))
    else:
        from .export_tokenizer import hf_tokenizer_json
        path = os.path.join(out, "tokenizer.json")
        _write_json(path, hf_tokenizer_json(tok)[0])
    return written + [path]
