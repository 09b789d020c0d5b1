"""``atomic_write``: a file is either the old one or the complete new one, never half written.

The data goes to a temporary file in the same folder (so the rename stays on one file system),
is flushed and fsync'ed, then ``os.replace`` swaps it in, which is atomic on POSIX and Windows.
If anything raises inside the block the temporary file is removed and the old file is untouched.

>>> with atomic_write("model.safetensors") as f:
...     f.write(data)
"""
from __future__ import annotations

import contextlib
import os
import tempfile


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically.

    For writers that want a file name rather than a file object (e.g. safetensors' save_file).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot write {path}: folder {folder} does not exist")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        _fsync_file(tmp)
        _copy_mode(path, tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(folder)


@contextlib.contextmanager
def atomic_write(path, mode: str = "wb", encoding: str | None = None):
    """Open a temporary file for writing; on success it replaces ``path`` atomically."""
    if mode not in ("w", "wb", "wt", "x", "xb", "xt"):
        raise ValueError(f"atomic_write needs a write mode such as 'wb' or 'w', got {mode!r}")
    mode = mode.replace("x", "w")
    if "b" not in mode and encoding is None:
        encoding = "utf-8"
    with atomic_path(path) as tmp:
        with open(tmp, mode, encoding=encoding) as f:
            yield f


def _fsync_file(tmp: str) -> None:
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())


def _copy_mode(path: str, tmp: str) -> None:
    """Keep the old file's permissions; a new file gets rw-r--r-- (mkstemp makes rw-------)."""
    try:
        mode = os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o644
    with contextlib.suppress(OSError):
        os.chmod(tmp, mode)


def fsync_dir(folder) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
