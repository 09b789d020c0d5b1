"""Which tokenizer a run uses, and how it travels inside every checkpoint.

A checkpoint folder holds the tokenizer itself plus ``tokenizer_source.json`` saying how to
read it back:

- ``{"kind": "char", "file": "tokenizer.json"}``   a ``CharTokenizer`` (format scratchllm-char)
- ``{"kind": "bpe", "file": "tokenizer.json"}``    a BPE trained on the corpus (scratchllm-bpe)
- ``{"kind": "name", "name": "gpt2"}``                      a tokenizer bundled with scratchllm
- ``{"kind": "files", "files": [...]}``                     files copied from a path (e.g. a
  pretrained model's own vocab.json + merges.txt), read with ``sl.load_tokenizer(folder)``
"""
from __future__ import annotations

import shutil
from pathlib import Path

from ..tokenizers.char import CharTokenizer
from ..errors import ScratchLLMError
from .checkpoint import read_json, write_json

SOURCE = "tokenizer_source.json"
CHAR_FILE = "tokenizer.json"     # the name sl.load_tokenizer looks for in a folder
BPE_FILE = "tokenizer.json"
NAMED = ("gpt2",)
# files that hold a tokenizer in the folders load_tokenizer reads
TOKENIZER_FILE_NAMES = ("tokenizer.model", "tokenizer.bin", "tokenizer.json", "tokenizer_config.json",
                        "special_tokens_map.json", "vocab.json", "merges.txt", "encoder.json", "vocab.bpe")


class RunTokenizer:
    """A tokenizer plus what is needed to save it into a checkpoint."""

    def __init__(self, tokenizer, kind: str, name: str | None = None, files=()):
        self.tokenizer, self.kind, self.name, self.files = tokenizer, kind, name, tuple(files)

    @property
    def vocab_size(self) -> int:
        return int(self.tokenizer.vocab_size)

    def encode_array(self, text: str):
        from ..backend import xp
        if isinstance(self.tokenizer, CharTokenizer):
            return self.tokenizer.encode_array(text)
        return xp.asarray(self.tokenizer.encode(text), dtype=xp.int64)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def decode(self, ids) -> str:
        return self.tokenizer.decode([int(i) for i in ids])

    def save(self, folder) -> None:
        folder = Path(folder)
        if self.kind == "char":
            self.tokenizer.save(folder / CHAR_FILE)
            spec = {"kind": "char", "file": CHAR_FILE}
        elif self.kind == "bpe":
            self.tokenizer.save(folder / BPE_FILE)
            spec = {"kind": "bpe", "file": BPE_FILE}
        elif self.kind == "name":
            spec = {"kind": "name", "name": self.name}
        else:
            names = []
            for f in self.files:
                shutil.copyfile(f, folder / Path(f).name)
                names.append(Path(f).name)
            spec = {"kind": "files", "files": names}
        write_json(folder / SOURCE, spec)


def load_run_tokenizer(folder) -> RunTokenizer:
    """Read back the tokenizer ``RunTokenizer.save`` put into ``folder``."""
    folder = Path(folder)
    spec = read_json(folder / SOURCE, "tokenizer description")
    kind = spec.get("kind")
    if kind == "char":
        return RunTokenizer(CharTokenizer.load(folder / spec["file"]), "char")
    if kind == "bpe":
        from ..tokenizers.bpe import BPETokenizer
        return RunTokenizer(_wrap(BPETokenizer.load, folder / spec["file"]), "bpe")
    if kind == "name":
        return named_tokenizer(spec["name"])
    if kind == "files":
        files = [folder / n for n in spec["files"]]
        return RunTokenizer(_load_path(files[0] if len(files) == 1 else folder), "files", files=files)
    raise ScratchLLMError(f"{folder / SOURCE}: unknown tokenizer kind {kind!r}")


def _wrap(fn, *args):
    try:
        return fn(*args)
    except (ValueError, KeyError, OSError) as e:
        raise ScratchLLMError(str(e)) from None


def _load_path(path):
    from ..tokenizers import load_tokenizer
    return _wrap(load_tokenizer, str(path))


def named_tokenizer(name: str) -> RunTokenizer:
    return RunTokenizer(_load_path(name), "name", name=name)


def path_tokenizer(path) -> RunTokenizer:
    """A tokenizer read from a file or a folder; its files are copied into checkpoints."""
    path = Path(path)
    if not path.exists():
        raise ScratchLLMError(f"tokenizer not found: {path}")
    tok = _load_path(path)
    if path.is_file():
        files = [path]
    else:
        files = [path / n for n in TOKENIZER_FILE_NAMES if (path / n).is_file()]
    return RunTokenizer(tok, "files", files=files)


def choose_tokenizer(spec: str | None, text: str, bpe_vocab_size: int, init_from=None, model=None,
                     log=print) -> RunTokenizer:
    """The tokenizer a config asks for: "char", "bpe", "gpt2", a path, or None (the model's own)."""
    if spec is None:
        return model_tokenizer(init_from, model, log)
    if spec == "char":
        return RunTokenizer(CharTokenizer.train(text), "char")
    if spec == "bpe":
        from ..tokenizers.bpe import BPETokenizer
        log(f"training a BPE tokenizer with {bpe_vocab_size} tokens on the corpus ...")
        return RunTokenizer(_wrap(BPETokenizer.train, text, bpe_vocab_size, "gpt4"), "bpe")
    if spec in NAMED:
        return named_tokenizer(spec)
    return path_tokenizer(spec)


def model_tokenizer(init_from, model=None, log=print) -> RunTokenizer:
    """A pretrained model's own tokenizer: the files beside its weights, else GPT-2's for GPT-2 models."""
    path = Path(init_from)
    folder = path if path.is_dir() else path.parent
    if (folder / SOURCE).is_file():            # a scratchllm checkpoint or run folder
        return load_run_tokenizer(folder)
    problem = "no tokenizer files"
    if any((folder / n).is_file() for n in TOKENIZER_FILE_NAMES):
        try:
            return path_tokenizer(folder)
        except ScratchLLMError as e:
            problem = f"the tokenizer files could not be read ({e})"
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) == "gpt" and getattr(config, "vocab_size", None) == 50257:
        log(f"{problem} beside {init_from}; using GPT-2's tokenizer (the model has its 50257 ids)")
        return named_tokenizer("gpt2")
    raise ScratchLLMError(f"{problem} beside {init_from}; give one with tokenizer=PATH "
                          f"(a tokenizer file or folder) or tokenizer=gpt2")
