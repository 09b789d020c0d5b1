"""Token-id files and batches.

A corpus is tokenized once into two flat files of ids, ``train.bin`` and ``val.bin``
(``uint16`` when the vocabulary fits in 65,536 ids, else ``uint32``), plus ``meta.json``
describing them. Training maps them into memory (``numpy.memmap``) and draws random
windows from them with a seeded generator:

>>> ids = xp.arange(1000) % 50
>>> info = write_token_files(ids, "data", vocab_size=50, val_fraction=0.1)   # doctest: +SKIP
>>> train = TokenFile("data/train.bin", info["dtype"])                       # doctest: +SKIP
>>> x, y = train.batch(batch_size=4, block_size=8, generator=Generator(0))   # doctest: +SKIP
>>> x.shape, y.shape, bool((x[:, 1:] == y[:, :-1]).all())                    # doctest: +SKIP
((4, 8), (4, 8), True)
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..backend import xp
from ..errors import ScratchLLMError
from ..atomic import atomic_write

META = "meta.json"


def id_dtype(vocab_size: int):
    """The smallest unsigned type that holds every id."""
    return xp.uint16 if vocab_size <= 2 ** 16 else xp.uint32


def split_ids(ids, val_fraction: float):
    """First ``1 - val_fraction`` of the ids for training, the rest for validation."""
    if not 0.0 < val_fraction < 1.0:
        raise ScratchLLMError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    n_val = int(round(len(ids) * val_fraction))
    return ids[: len(ids) - n_val], ids[len(ids) - n_val:]


def check_split_lengths(n_train: int, n_val: int, block_size: int, what: str) -> None:
    need = block_size + 1
    if n_train < need or n_val < need:
        raise ScratchLLMError(
            f"{what} is too short: {n_train + n_val} tokens give {n_train} for training and {n_val} "
            f"for validation, and each part needs at least block_size + 1 = {need}; "
            f"give a longer text, a smaller block_size or another val_fraction")


def _write_array(arr, path: Path) -> None:
    with atomic_write(path) as f:
        f.write(xp.ascontiguousarray(arr).tobytes())


def write_token_files(ids, out_dir, vocab_size: int, val_fraction: float, extra_meta=None) -> dict:
    """Split ``ids`` into ``train.bin``/``val.bin`` in ``out_dir`` and write ``meta.json`` last.

    ``meta.json`` is written after both id files, so its presence marks a complete set.
    Returns the meta dict (``dtype``, ``vocab_size``, ``train_tokens``, ``val_tokens``, ...).
    """
    ids = xp.asarray(ids)
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
        raise ScratchLLMError(f"token ids must lie in [0, {vocab_size}), got [{int(ids.min())}, {int(ids.max())}]")
    dtype = id_dtype(vocab_size)
    train, val = split_ids(ids.astype(dtype), val_fraction)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / META).unlink(missing_ok=True)
    _write_array(train, out_dir / "train.bin")
    _write_array(val, out_dir / "val.bin")
    meta = {"dtype": xp.dtype(dtype).name, "vocab_size": int(vocab_size), "val_fraction": val_fraction,
            "train_tokens": int(len(train)), "val_tokens": int(len(val)),
            "train_sha256": file_sha256(out_dir / "train.bin"), "val_sha256": file_sha256(out_dir / "val.bin"),
            **(extra_meta or {})}
    with atomic_write(out_dir / META, "w") as f:
        json.dump(meta, f, indent=1)
    return meta


def read_meta(data_dir):
    """The ``meta.json`` of a token-file folder, or None when the set is absent or incomplete."""
    path = Path(data_dir) / META
    if not path.is_file():
        return None
    from ..errors import ScratchLLMError
    from ..jsonio import read_json
    try:
        return read_json(path, "token-file description")
    except ScratchLLMError:
        return None


def file_sha256(path) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB pieces (about 1 s per GB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for piece in iter(lambda: f.read(1 << 20), b""):
            h.update(piece)
    return h.hexdigest()


def check_token_files(data_dir, meta: dict) -> None:
    """``train.bin``/``val.bin`` must be the files ``meta.json`` describes: the size its token
    counts give, and (for files written since checksums were kept) the same SHA-256."""
    folder = Path(data_dir)
    redo = f"; delete the folder {folder} and run again to tokenize the corpus anew"
    if not isinstance(meta, dict) or meta.get("dtype") not in ("uint16", "uint32"):
        raise ScratchLLMError(f"{folder / META}: 'dtype' must be uint16 or uint32{redo}")
    itemsize = xp.dtype(meta["dtype"]).itemsize
    for part in ("train", "val"):
        path, n = folder / f"{part}.bin", meta.get(f"{part}_tokens")
        if type(n) is not int or n < 0:
            raise ScratchLLMError(f"{folder / META}: '{part}_tokens' must be a count, got {n!r}{redo}")
        if not path.is_file():
            raise ScratchLLMError(f"token file not found: {path}{redo}")
        size = path.stat().st_size
        if size != n * itemsize:
            raise ScratchLLMError(f"{path} holds {size // itemsize:,} tokens ({size:,} bytes) but {META} says "
                                  f"{n:,}: the file was cut short or replaced{redo}")
        want = meta.get(f"{part}_sha256")
        if want is not None and file_sha256(path) != want:
            raise ScratchLLMError(f"{path} does not match the checksum in {META}: the file was changed{redo}")


class TokenFile:
    """A flat file of token ids, memory-mapped; ``batch`` draws random training windows."""

    def __init__(self, path, dtype):
        self.path = Path(path)
        if not self.path.is_file():
            raise ScratchLLMError(f"token file not found: {self.path}")
        self.data = xp.memmap(self.path, dtype=xp.dtype(dtype), mode="r")

    def __len__(self) -> int:
        return len(self.data)

    def batch(self, batch_size: int, block_size: int, generator):
        """``batch_size`` windows of ``block_size + 1`` consecutive ids at random offsets.

        Returns ``(x, y)``, both int64 ``(batch_size, block_size)``, ``y`` shifted by one:
        ``y[b, t]`` is the token that follows ``x[b, t]``.
        """
        return self.windows(self.random_starts(batch_size, block_size, generator), block_size)

    def random_starts(self, size, block_size: int, generator):
        """Random window starts, an int64 array of shape ``size`` (an int or a tuple)."""
        n_start = len(self.data) - block_size
        if n_start < 1:
            raise ScratchLLMError(f"{self.path} holds {len(self.data)} tokens, fewer than block_size + 1 = {block_size + 1}")
        return generator.integers(0, n_start, size=size)

    def windows(self, starts, block_size: int):
        """The windows at ``starts`` (B,): ``(x, y)``, both int64 ``(B, block_size)``, y shifted by one."""
        idx = starts[:, None] + xp.arange(block_size + 1)[None, :]          # (B, T + 1)
        chunk = self.data[idx].astype(xp.int64)                             # (B, T + 1)
        return chunk[:, :-1], chunk[:, 1:]
