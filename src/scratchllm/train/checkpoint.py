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
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..errors import ScratchLLMError
from ..atomic import fsync_dir, atomic_path, atomic_write

STATE = "trainer_state.json"
OPTIMIZER = "optimizer.safetensors"
TRAIN_CONFIG = "train_config.json"
STATE_FORMAT = "scratchllm-train-state"


# ------------------------------------------------------------ folder swapping
def write_folder_atomically(final, write) -> None:
    """Call ``write(tmp_folder)``, then swap the complete folder in for ``final``."""
    final = Path(final)
    tmp, old = final.with_name(final.name + ".tmp"), final.with_name(final.name + ".old")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    write(tmp)
    _fsync_tree(tmp)
    if final.exists():
        if old.exists():
            shutil.rmtree(old)
        os.rename(final, old)
    os.rename(tmp, final)
    fsync_dir(final.parent)
    if old.exists():
        shutil.rmtree(old)


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
    for f in sorted(Path(src_dir).iterdir()):
        if not f.is_file() or f.name in skip:
            continue
        with atomic_path(Path(dst_dir) / f.name) as tmp:
            os.unlink(tmp)
            try:
                os.link(f, tmp)
            except OSError:
                shutil.copyfile(f, tmp)


# ------------------------------------------------------------ the pieces
def write_json(path, obj) -> None:
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")


def read_json(path, what: str) -> dict:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ScratchLLMError(f"{what} not found: {path}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ScratchLLMError(f"{path}: corrupt {what} ({e})") from None


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
