"""Run the course's chapters and (re)draw every picture into docs/img/.

    python docs/build_pictures.py              # all chapters
    python docs/build_pictures.py 03 07        # only chapters 03 and 07

Each chapter's ```python blocks run in order in one namespace, in a temporary working folder,
exactly as ``tests/docs/test_chapters.py`` runs them under ``make test``. The code finds the
repository and the picture folder through two environment variables (their defaults suit a
reader who runs the blocks from the repository root):

- ``SCRATCHLLM_REPO``: the repository root (for ``tests/data/...``), default ``.``;
- ``SCRATCHLLM_DOCS_OUT``: where pictures go, default ``docs/img``.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)
PICTURE = re.compile(r"!\[[^\]]*\]\((img/[^)\s]+)\)")


def chapters() -> list[Path]:
    """docs/01-*.md ... docs/08-*.md, in order."""
    return sorted(DOCS.glob("[0-9][0-9]-*.md"))


def code_blocks(markdown: Path) -> list[tuple[int, str]]:
    """(first line number, code) of every ```python block of a chapter, in order."""
    text = markdown.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in FENCE.finditer(text)]


def pictures(markdown: Path) -> list[str]:
    """The img/... files a chapter shows."""
    return PICTURE.findall(markdown.read_text(encoding="utf-8"))


@contextlib.contextmanager
def _environment(out_dir: Path, workdir: Path):
    old_env = {k: os.environ.get(k) for k in ("SCRATCHLLM_REPO", "SCRATCHLLM_DOCS_OUT", "MPLBACKEND")}
    old_cwd = os.getcwd()
    os.environ.update(SCRATCHLLM_REPO=str(REPO), SCRATCHLLM_DOCS_OUT=str(out_dir), MPLBACKEND="Agg")
    os.chdir(workdir)
    try:
        yield
    finally:
        os.chdir(old_cwd)
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_chapter(markdown: Path, out_dir: Path, workdir: Path) -> dict:
    """Execute a chapter's blocks in one namespace (cwd ``workdir``); return that namespace."""
    out_dir.mkdir(parents=True, exist_ok=True)
    namespace = {"__name__": "__chapter__"}
    with _environment(out_dir, workdir):
        for line, code in code_blocks(markdown):
            # blank lines keep the line numbers of a traceback those of the Markdown file
            exec(compile("\n" * (line - 1) + code, str(markdown), "exec"), namespace)
    try:
        import matplotlib.pyplot as plt
        plt.close("all")
    except ImportError:
        pass
    return namespace


def main(argv: list[str]) -> int:
    chosen = [c for c in chapters() if not argv or any(c.name.startswith(a) for a in argv)]
    for chapter in chosen:
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            run_chapter(chapter, DOCS / "img", Path(tmp))
        print(f"{chapter.name}: {time.perf_counter() - start:.1f} s, pictures: {', '.join(pictures(chapter))}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
