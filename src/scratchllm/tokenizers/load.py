"""``load_tokenizer(path_or_name)``: pick the reader from what the path holds.

- ``"gpt2"``: GPT-2's files bundled in the package (works offline);
- a folder: a scratchllm run or checkpoint (``tokenizer_source.json`` says what it uses), or one
  holding, in this order of preference, ``encoder.json`` + ``vocab.bpe`` (GPT-2's files),
  ``tokenizer.json`` in scratchllm's format, ``tokenizer.model``, ``tokenizer.bin``, HF's
  ``tokenizer.json``, or HF's ``vocab.json`` + ``merges.txt``; an HF folder's
  ``tokenizer_config.json`` adds the ``chat_template`` (``tok.chat_template``);
- a file, recognised by its first bytes: ``{`` -> JSON (scratchllm's byte-level BPE or
  character-level format, or HF's ``tokenizer.json``); ``base64 rank`` lines -> tiktoken
  (Llama 3's is recognised by its 128,000 ranks); a protobuf whose first field is a piece
  (byte 0x0A), or any other ``*.model`` -> SentencePiece; ``GGUF`` -> the tokenizer inside a
  llama.cpp model file (io/gguf_vocab.py); otherwise llama2.c's ``tokenizer.bin``.
"""
from __future__ import annotations

import os
import re

__all__ = ["load_tokenizer", "FOLDER_FILES"]

_TIKTOKEN_LINE = re.compile(rb"[A-Za-z0-9+/=]+ [0-9]+\r?")
FOLDER_FILES = ("encoder.json + vocab.bpe", "tokenizer.json", "tokenizer.model", "tokenizer.bin",
                "vocab.json + merges.txt")
_RUN_SOURCE = "tokenizer_source.json"   # written by scratchllm.train into runs and checkpoints


def _sniff(path: str) -> str:
    with open(path, "rb") as f:
        head = f.read(4096)
    if not head:
        from ..errors import FileFormatError
        raise FileFormatError(f"{path}: empty file, not a tokenizer")
    if head[:4] == b"GGUF":
        return "gguf"
    if head.lstrip()[:1] == b"{":
        return "json"
    if _TIKTOKEN_LINE.fullmatch(head.split(b"\n", 1)[0]):
        return "tiktoken"
    if head[:1] == b"\x0a" or path.endswith(".model"):
        return "sentencepiece"
    return "llama2c"


def _is_scratchllm_json(path: str) -> bool:
    """A scratchllm tokenizer file names its format near the top; HF's tokenizer.json does not."""
    with open(path, "rb") as f:
        head = f.read(4096)
    return re.search(rb'"format"\s*:\s*"scratchllm', head) is not None


def _both(folder: str, a: str, b: str) -> bool:
    return os.path.isfile(os.path.join(folder, a)) and os.path.isfile(os.path.join(folder, b))


def _load_run_folder(folder: str, **kwargs):
    """A scratchllm run/checkpoint folder: its ``tokenizer_source.json`` says where to look."""
    from ..jsonio import read_json
    spec = read_json(os.path.join(folder, _RUN_SOURCE), "tokenizer description")
    kind = spec.get("kind")
    if kind == "name" and isinstance(spec.get("name"), str):
        return load_tokenizer(spec["name"], **kwargs)
    if kind in ("char", "bpe") and isinstance(spec.get("file"), str):
        return load_tokenizer(os.path.join(folder, os.path.basename(spec["file"])), **kwargs)
    if kind == "files" and isinstance(spec.get("files"), list):
        files = [os.path.basename(str(f)) for f in spec["files"]]
        if len(files) == 1:
            return load_tokenizer(os.path.join(folder, files[0]), **kwargs)
        return _load_folder(folder, **kwargs)
    raise ValueError(f"{os.path.join(folder, _RUN_SOURCE)}: unknown tokenizer kind {kind!r}")


def _load_folder(folder: str, **kwargs):
    from .gpt2 import load_gpt2
    from .hf_json import attach_config, load_hf_tokenizer, load_vocab_merges
    if _both(folder, "encoder.json", "vocab.bpe"):
        return load_gpt2(folder)
    tok_json = os.path.join(folder, "tokenizer.json")
    has_json = os.path.isfile(tok_json)
    if has_json and _is_scratchllm_json(tok_json):
        return load_tokenizer(tok_json, **kwargs)
    for name in ("tokenizer.model", "tokenizer.bin"):
        file = os.path.join(folder, name)
        if os.path.isfile(file):
            return attach_config(load_tokenizer(file, **kwargs), folder)
    if has_json:
        return load_hf_tokenizer(tok_json)
    if _both(folder, "vocab.json", "merges.txt"):
        return load_vocab_merges(folder)
    raise FileNotFoundError(f"{folder}: folder holds no tokenizer (looked for "
                            f"{', '.join(FOLDER_FILES)})")


def load_tokenizer(path_or_name: str | os.PathLike, **kwargs):
    """Load a tokenizer; ``kwargs`` go to the reader (tiktoken files: ``pattern``,
    ``special_tokens``, ``bos``, ``eos``). Returns an object with ``encode``/``decode``."""
    from .gpt2 import load_gpt2

    path = os.fspath(path_or_name)
    if path == "gpt2" and not os.path.exists(path):
        return load_gpt2()
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such tokenizer file or folder (names: 'gpt2')")
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, _RUN_SOURCE)):
            return _load_run_folder(path, **kwargs)
        return _load_folder(path, **kwargs)
    base, folder = os.path.basename(path), os.path.dirname(path) or "."
    if base in ("encoder.json", "vocab.bpe"):
        return load_gpt2(folder)
    if base in ("vocab.json", "merges.txt"):
        from .hf_json import load_vocab_merges
        return load_vocab_merges(folder)
    kind = _sniff(path)
    if kind == "gguf":                         # the tokenizer stored in a llama.cpp model file
        from ..io.gguf_vocab import gguf_tokenizer
        return gguf_tokenizer(path)
    if kind == "json":
        return _load_json(path, kwargs.get("trust_pattern", False))
    if kind == "tiktoken":
        from .tiktoken_file import load_tiktoken
        return load_tiktoken(path, **kwargs)
    if kind == "sentencepiece":
        from .sentencepiece import SentencePieceBPE
        from .sp_proto import read_model_file
        return SentencePieceBPE(read_model_file(path), name=path)
    from .llama2c import load_llama2c
    return load_llama2c(path)


def _load_json(path: str, trust_pattern: bool = False):
    """scratchllm's JSON formats (byte-level BPE, character-level) or HF's tokenizer.json."""
    from ..errors import FileFormatError, ScratchLLMError
    from ..jsonio import read_json
    from .char import FORMAT as CHAR_FORMAT, CharTokenizer
    from .fileformat import load_bpe
    from .hf_json import hf_from_spec
    try:
        doc = read_json(path, "tokenizer file")
    except ScratchLLMError as exc:
        raise FileFormatError(f"{path}: not a tokenizer file (bad JSON: "
                         f"{str(exc).removeprefix(path + ': ')})") from None
    fmt = doc.get("format")
    if fmt == CHAR_FORMAT:
        return CharTokenizer.from_dict(doc, source=path)
    if isinstance(fmt, str) and fmt.startswith("scratchllm"):
        return load_bpe(path, trust_pattern=trust_pattern)
    if "model" in doc:
        return hf_from_spec(doc, path)
    raise FileFormatError(f"{path}: a JSON file that is neither a scratchllm tokenizer (no \"format\") "
                     "nor HF's tokenizer.json (no \"model\")")
