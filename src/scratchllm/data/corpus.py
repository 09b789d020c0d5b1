"""Where training text comes from: the bundled Tiny Shakespeare, a file, several files, a folder.

>>> text = read_corpus([])            # no paths: the bundled corpus
>>> len(text), text[:14]
(1115394, 'First Citizen:')
"""
from __future__ import annotations

from pathlib import Path

from ..errors import ScratchLLMError

BUNDLED_NAME = "tinyshakespeare.txt"
TEXT_SUFFIXES = (".txt", ".md", ".rst", ".text")


def bundled_corpus_path() -> Path:
    """Tiny Shakespeare (1,115,394 characters, public domain), shipped as package data."""
    return Path(__file__).with_name(BUNDLED_NAME)


def corpus_files(paths) -> list[Path]:
    """Expand files and folders into the list of text files to read, in a stable order.

    A folder contributes its ``*.txt``, ``*.md``, ``*.rst`` and ``*.text`` files (recursively,
    sorted, hidden ones skipped). No paths means the bundled corpus.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if not paths:
        return [bundled_corpus_path()]
    files = []
    for p in map(Path, paths):
        if p.is_file():
            files.append(p)
        elif p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in TEXT_SUFFIXES
                           and not any(part.startswith(".") for part in f.relative_to(p).parts))
            if not found:
                raise ScratchLLMError(f"data folder {p} holds no text files ({', '.join(TEXT_SUFFIXES)})")
            files.extend(found)
        else:
            raise ScratchLLMError(f"data file not found: {p}")
    return files


def read_corpus(paths) -> str:
    """The text of all corpus files, joined by a newline. Raises on a missing, binary or empty corpus."""
    files = corpus_files(paths)
    parts = []
    for f in files:
        try:
            parts.append(f.read_text(encoding="utf-8"))
        except UnicodeDecodeError as e:
            raise ScratchLLMError(f"data file {f} is not UTF-8 text ({e.reason} at byte {e.start})") from None
        except OSError as e:
            raise ScratchLLMError(f"cannot read data file {f}: {e.strerror}") from None
    text = "\n".join(parts)
    if not text.strip():
        names = ", ".join(str(f) for f in files)
        raise ScratchLLMError(f"the corpus is empty: {names}")
    return text
