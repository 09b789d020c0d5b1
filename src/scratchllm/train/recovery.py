"""After a crash: put a run folder back into the state an uninterrupted run would have.

A run killed at any moment leaves a complete ``latest/`` (or ``latest.old/`` between the two
renames of a swap, see checkpoint.py). What may lag behind it is everything written after
``latest/`` at the same step: ``best/``, the run folder's model files (links into ``best/``)
and ``loss.png``; and it may leave temporary files and folders. ``recover`` fixes each from
the checkpoint's own state, so that a resume, even of a run already at ``max_steps``, ends
with the same files as a run that was never interrupted.

>>> ckpt = recover(Path("runs/x"), log=print)      # doctest: +SKIP
"""
from __future__ import annotations

import filecmp
import os
import shutil
from pathlib import Path

from .checkpoint import OPTIMIZER, STATE, TRAIN_CONFIG, mirror_files, read_json, write_folder_atomically
from .killpoints import kill_point

# what the run folder holds of best/: the model and tokenizer files, not the optimizer or state
RUN_FOLDER_SKIP = (STATE, OPTIMIZER, TRAIN_CONFIG)


def clean_leftovers(run_dir: Path) -> None:
    """Remove ``*.tmp`` folders, ``*.old`` folders beside a complete checkpoint, and temporary files."""
    for name in ("latest", "best"):
        tmp, old, final = (run_dir / (name + s) for s in (".tmp", ".old", ""))
        if tmp.is_dir():
            shutil.rmtree(tmp)
        if old.is_dir() and not (final / STATE).is_file() and (old / STATE).is_file():
            if final.exists():                           # a half-removed or broken final folder
                shutil.rmtree(final)
            os.rename(old, final)                        # a swap cut between its two renames
        if old.is_dir():
            shutil.rmtree(old)
    for folder in (run_dir, run_dir / "data"):
        if folder.is_dir():
            for f in folder.glob(".*.tmp"):              # atomic_write's temporaries
                if f.is_file():
                    f.unlink()


def _step_of(folder: Path):
    if not (folder / STATE).is_file():
        return None
    try:
        return int(read_json(folder / STATE, "trainer state").get("step"))
    except Exception:
        return None


def repair_best(run_dir: Path, state: dict, log) -> None:
    """Make ``best/`` the checkpoint of ``state["best_step"]`` and the run folder's model that of ``best/``."""
    best_step, latest = state.get("best_step"), run_dir / "latest"
    if best_step is None:                                # a checkpoint of an older version: nothing known
        return
    best = run_dir / "best"
    if _step_of(best) != best_step:
        if best_step != state["step"]:
            log(f"warning: {best} does not hold the best checkpoint (step {best_step}); "
                f"it is written again at the next improvement")
            return
        write_folder_atomically(best, lambda folder: mirror_files(latest, folder, skip=()))
        kill_point("repair")
    stale = [f.name for f in sorted(best.iterdir())
             if f.is_file() and f.name not in RUN_FOLDER_SKIP and not _same(f, run_dir / f.name)]
    if stale:
        mirror_files(best, run_dir, skip=RUN_FOLDER_SKIP)
        kill_point("repair")


def _same(a: Path, b: Path) -> bool:
    if not b.is_file():
        return False
    try:
        return os.path.samefile(a, b) or filecmp.cmp(a, b, shallow=False)
    except OSError:
        return False
