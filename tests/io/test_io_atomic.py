"""atomic_write / save: a crash in the middle of a write leaves the old file intact."""
import os

import numpy as np
import pytest
import scratchllm as sl
import scratchllm.io.safetensors_file as st_file
from scratchllm.atomic import atomic_write


def test_atomic_write_replaces_on_success_and_keeps_mode(tmp_path):
    path = tmp_path / "f.txt"
    with atomic_write(path, "w") as f:
        f.write("first")
    assert path.read_text() == "first"
    assert (os.stat(path).st_mode & 0o777) == 0o644
    os.chmod(path, 0o600)
    with atomic_write(path) as f:
        f.write(b"second")
    assert path.read_bytes() == b"second"
    assert (os.stat(path).st_mode & 0o777) == 0o600
    assert os.listdir(tmp_path) == ["f.txt"]
    with pytest.raises(ValueError, match="write mode"):
        with atomic_write(path, "rb"):
            pass


def test_atomic_write_crash_midway_keeps_old_file(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old contents")
    with pytest.raises(RuntimeError, match="disk on fire"):
        with atomic_write(path) as f:
            f.write(b"new half")
            raise RuntimeError("disk on fire")
    assert path.read_bytes() == b"old contents"
    assert os.listdir(tmp_path) == ["f.bin"]        # the temporary file is gone


def test_save_crash_midway_keeps_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    old = {"w": np.arange(6, dtype=np.float32)}
    sl.save(old, path, metadata={"step": 1})
    before = path.read_bytes()

    def crashing_write_data(f, arrays):
        f.write(b"\x00" * 100)                        # half the data...
        raise OSError("killed in the middle of the write")

    monkeypatch.setattr(st_file, "_write_data", crashing_write_data)
    with pytest.raises(OSError, match="killed"):
        sl.save({"w": np.zeros(1000, dtype=np.float32)}, path, metadata={"step": 2})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.safetensors"]
    np.testing.assert_array_equal(sl.load(path)["w"], old["w"])
