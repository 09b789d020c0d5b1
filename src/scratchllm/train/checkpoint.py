"""Training checkpoints: a folder per checkpoint, swapped into place as a whole.

A run folder looks like this::

    runs/shakespeare-char/
        train_config.json        the run's TrainConfig (what makes it "this run")
        config.json, model.safetensors, tokenizer.json, tokenizer_source.json
                                 the best model (hard links into best/), so
                                 `scratchllm generate --model runs/shakespeare-char` works
        latest/                  the last checkpoint: the model files and tokenizer as above,
                                 optimizer.safetensors, trainer_state.json (step, best and last
                                 val loss, elapsed time, RNG states), train_config.json
        best/                    the same, at the lowest validation loss so far
        data/                    train.bin, val.bin, meta.json (token ids)
        metrics.jsonl, loss.png

A checkpoint is written into ``latest.tmp/``; then ``latest/`` becomes ``latest.old/``,
``latest.tmp/`` becomes ``latest/`` and ``latest.old/`` is removed. A crash at any point
leaves a complete checkpoint in ``latest/`` or (between the two renames) ``latest.old/``,
and ``find_checkpoint`` picks whichever is there.

At an evaluation step the order is: the metrics row (fsync'ed), ``latest/``, then (if the
validation loss improved) ``best/`` and the run folder's model files, then ``loss.png``.
A resumed run drops the log rows past its checkpoint and repairs what a crash left behind
the checkpoint (``recovery.py``), so a run killed anywhere ends as an uninterrupted one.
"""
from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
from pathlib import Path

from ..errors import ScratchLLMError
from ..atomic import fsync_dir, atomic_path, atomic_write
from .killpoints import kill_point

STATE = "trainer_state.json"
OPTIMIZER = "optimizer.safetensors"
TRAIN_CONFIG = "train_config.json"
STATE_FORMAT = "scratchllm-train-state"


# ------------------------------------------------------------ folder swapping
def write_folder_atomically(final, write) -> None:
    """Call ``write(tmp_folder)``, then swap the complete folder in for ``final``.

    A failed write (disk full, read-only) removes the temporary folder, leaves ``final``
    untouched and raises ``ScratchLLMError`` naming the path.
    """
    final = Path(final)
    tmp, old = final.with_name(final.name + ".tmp"), final.with_name(final.name + ".old")
    label = f"ckpt.{final.name}"
    with write_errors(final):
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        try:
            write(tmp)
            _fsync_tree(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        kill_point(label + ".written")
        if final.exists():
            if old.exists():
                shutil.rmtree(old)
            os.rename(final, old)
            kill_point(label + ".renamed")
        os.rename(tmp, final)
        fsync_dir(final.parent)
        kill_point(label + ".swapped")
        if old.exists():
            shutil.rmtree(old)


class WriteError(ScratchLLMError, OSError):
    """A write that failed (disk full, read-only): one line naming the path; still an ``OSError``."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@contextlib.contextmanager
def write_errors(path):
    """Turn an ``OSError`` while writing (ENOSPC, read-only, permissions) into one line naming the path."""
    try:
        yield
    except WriteError:
        raise
    except OSError as e:
        where = e.filename or path
        hint = {errno.ENOSPC: "; free some space", errno.EROFS: "; choose a writable --out",
                errno.EACCES: "; choose a writable --out"}.get(e.errno, "")
        raise WriteError(f"cannot write {where}: {e.strerror or e}{hint}") from None


def find_checkpoint(run_dir, name: str = "latest"):
    """``run_dir/name`` if complete, else ``run_dir/name.old`` (a swap cut short), else None."""
    for candidate in (Path(run_dir) / name, Path(run_dir) / (name + ".old")):
        if (candidate / STATE).is_file():
            return candidate
    return None


def _fsync_tree(folder: Path) -> None:
    for f in folder.iterdir():
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
    fsync_dir(folder)


def mirror_files(src_dir, dst_dir, skip=(STATE, OPTIMIZER)) -> None:
    """Put each file of ``src_dir`` (but ``skip``) into ``dst_dir``, one atomic replace per file.

    Hard links where the file system allows (no copy of the weights), else copies.
    """
    with write_errors(dst_dir):
        for f in sorted(Path(src_dir).iterdir()):
            if not f.is_file() or f.name in skip or _linked(f, Path(dst_dir) / f.name):
                continue
            with atomic_path(Path(dst_dir) / f.name) as tmp:
                os.unlink(tmp)
                try:
                    os.link(f, tmp)
                except OSError:
                    shutil.copyfile(f, tmp)
            kill_point("mirror.file")


def _linked(a: Path, b: Path) -> bool:
    """Already one file (a rename of one hard link over the other would leave the temporary behind)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


# ------------------------------------------------------------ the pieces
def write_json(path, obj) -> None:
    with write_errors(path), atomic_write(path, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
        f.flush()
        kill_point("json.written")


def read_json(path, what: str) -> dict:
    """A JSON object file, depth-limited; one ScratchLLMError naming it (see scratchllm.jsonio)."""
    from ..jsonio import read_json as read_json_file
    if not Path(path).is_file():
        raise ScratchLLMError(f"{what} not found: {path}")
    return read_json_file(path, what)


def save_optimizer(optimizer, path) -> None:
    """``optimizer.state_dict()`` as safetensors: buffers as ``state.<index>.<name>``, groups as metadata."""
    from ..io.checkpoint import save

    sd = optimizer.state_dict()
    arrays = {f"state.{i}.{k}": v for i, s in sd["state"].items() for k, v in s.items()}
    save(arrays, path, metadata={"param_groups": sd["param_groups"]})


def load_optimizer_state(path) -> dict:
    """The dict ``save_optimizer`` wrote, ready for ``optimizer.load_state_dict``."""
    from ..io.checkpoint import load, load_metadata

    arrays, meta = load(path), load_metadata(path)
    if "param_groups" not in meta:
        raise ScratchLLMError(f"{path}: not an optimizer checkpoint (no param_groups in its metadata)")
    state: dict = {}
    for name, arr in arrays.items():
        _, idx, key = name.split(".", 2)
        state.setdefault(int(idx), {})[key] = arr
    return {"state": state, "param_groups": meta["param_groups"]}


# ------------------------------------------------------------ the trainer state
def check_state(state, path) -> dict:
    """``trainer_state.json`` as read: every field of the right type, or one error naming it."""
    from ..autograd.random import Generator

    def bad(field, why):
        raise ScratchLLMError(f"{path}: corrupt trainer state: {field} {why}")
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ScratchLLMError(f"{path}: not a scratchllm trainer state")
    for key in ("step", "best_step"):
        v = state.get(key)
        if not (key == "best_step" and v is None) and (type(v) is not int or v < 0):
            bad(key, f"must be an integer >= 0, got {v!r}")
    for key in ("best_val_loss", "last_val_loss", "elapsed_s"):
        v = state.get(key)
        if v is None and key != "elapsed_s":
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            bad(key, f"must be a finite number, got {v!r}")
    rng = state.get("rng")
    if not isinstance(rng, dict):
        bad("rng", f"must be a table with 'data' and 'default', got {type(rng).__name__}")
    for key in ("data", "default"):
        try:
            g = rng[key]
            if not isinstance(g, dict) or not isinstance(g.get("bit_generator"), dict):
                raise TypeError("not a generator state")
            Generator(0).set_state(g)
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            bad(f"rng.{key}", f"is not a random generator state ({type(e).__name__}: {e})")
    return state
