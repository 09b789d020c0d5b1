"""One training process per run folder: ``<run>/.scratchllm.lock``.

The lock file holds the owner's process id. Where the OS has ``flock`` (Linux, macOS) the
lock is the ``flock`` on that file, which the kernel drops when the process dies, so a lock
left by a killed run is taken over at once; elsewhere a lock whose process no longer exists
is taken over. A second ``scratchllm train`` on the same folder stops before touching it:

    scratchllm train: error: runs/x is in use by another training process (pid 4242); ...
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ..errors import ScratchLLMError

LOCK_NAME = ".scratchllm.lock"

try:
    import fcntl
except ImportError:           # Windows: a pid file, taken over when its process is gone
    fcntl = None


def _read_pid(path: Path):
    try:
        text = path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


class RunLock:
    """``acquire()`` or raise ``ScratchLLMError`` naming the other process; ``release()`` removes it."""

    def __init__(self, run_dir):
        self.path = Path(run_dir) / LOCK_NAME
        self.fd = None
        self.taken_over = None        # the pid of a dead process whose lock file was there

    @property
    def held(self) -> bool:
        return self.fd is not None

    def acquire(self) -> None:
        if self.held:
            return
        for _ in range(5):                      # the file may be replaced under us: try again
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                locked = self._lock(fd)
            except BaseException:
                os.close(fd)
                raise
            if locked:
                stale = _read_pid(self.path)
                self.taken_over = stale if stale not in (None, os.getpid()) else None
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                self.fd = fd
                return
            os.close(fd)
        self._busy(_read_pid(self.path))

    def check_free(self) -> None:
        """Raise the "in use" error if another live process holds the lock; change nothing."""
        if self.held or not self.path.is_file():
            return
        if fcntl is None:
            pid = _read_pid(self.path)
            if pid not in (None, os.getpid()) and pid_alive(pid):
                self._busy(pid)
            return
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            self._busy(_read_pid(self.path))
        except OSError:
            pass
        finally:
            os.close(fd)                 # closing drops our shared lock, if we got it

    def _lock(self, fd) -> bool:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._busy(_read_pid(self.path))
            except OSError:              # no flock on this file system (some NFS): the pid file alone
                pass
            else:                        # the owner may have removed the file between our open and flock
                try:
                    return os.fstat(fd).st_ino == os.stat(self.path).st_ino
                except FileNotFoundError:
                    return False
        pid = _read_pid(self.path)
        return pid is None or pid == os.getpid() or not pid_alive(pid)

    def _busy(self, pid):
        who = f"pid {pid}" if pid else "pid unknown"
        raise ScratchLLMError(f"{self.path.parent} is in use by another training process ({who}); "
                              f"wait for it to finish, stop it, or choose another --out")

    def release(self) -> None:
        if not self.held:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self.fd = None
