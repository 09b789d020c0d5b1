"""The run lock without ``flock`` (pid file: Windows, some NFS) and the trainer state's checks."""
import os
import subprocess
import sys

import pytest

from scratchllm.errors import ScratchLLMError
from scratchllm.train import lock as lock_mod
from scratchllm.train.checkpoint import STATE_FORMAT, check_state
from scratchllm.train.lock import LOCK_NAME, RunLock


def dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.fixture
def no_flock(monkeypatch):
    monkeypatch.setattr(lock_mod, "fcntl", None)


def test_pid_file_lock_of_a_live_process_is_refused(no_flock, tmp_path):
    (tmp_path / LOCK_NAME).write_text(f"{os.getppid()}\n")          # our parent: alive
    with pytest.raises(ScratchLLMError, match=rf"in use by another training process \(pid {os.getppid()}\)"):
        RunLock(tmp_path).acquire()
    assert (tmp_path / LOCK_NAME).read_text() == f"{os.getppid()}\n"


def test_pid_file_lock_of_a_dead_process_is_taken_over(no_flock, tmp_path):
    pid = dead_pid()
    (tmp_path / LOCK_NAME).write_text(f"{pid}\n")
    lock = RunLock(tmp_path)
    lock.acquire()
    assert lock.taken_over == pid and (tmp_path / LOCK_NAME).read_text() == f"{os.getpid()}\n"
    lock.release()
    assert not (tmp_path / LOCK_NAME).exists()


def test_flock_lock_is_released_with_its_process(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from scratchllm.train.lock import RunLock; "
                               f"RunLock({str(tmp_path)!r}).acquire(); print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ScratchLLMError, match=rf"\(pid {holder.pid}\)"):
            RunLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
    lock = RunLock(tmp_path)                         # killed: its flock went with it
    lock.acquire()
    assert lock.taken_over == holder.pid
    lock.release()


def good_state():
    from scratchllm.autograd.random import Generator
    g = Generator(3).get_state()
    return {"format": STATE_FORMAT, "version": 1, "step": 4, "best_val_loss": 3.5, "best_step": 4,
            "last_val_loss": 3.5, "elapsed_s": 1.2, "rng": {"data": g, "default": g}}


@pytest.mark.parametrize("change, message", [
    ({"format": "other"}, "not a scratchllm trainer state"),
    ({"step": -1}, "step must be an integer >= 0, got -1"),
    ({"step": True}, "step must be an integer >= 0, got True"),
    ({"best_step": 2.5}, "best_step must be an integer >= 0, got 2.5"),
    ({"best_val_loss": "low"}, "best_val_loss must be a finite number, got 'low'"),
    ({"last_val_loss": float("nan")}, "last_val_loss must be a finite number, got nan"),
    ({"elapsed_s": None}, "elapsed_s must be a finite number, got None"),
    ({"rng": {"data": {"seed": 1, "bit_generator": {"bit_generator": "PCG64", "state": [1]}}}},
     "rng.data is not a random generator state"),
    ({"rng": {"data": {"seed": 1, "bit_generator": {}}, "default": None}}, "rng.data is not a random generator"),
])
def test_trainer_state_checks(change, message):
    state = {**good_state(), **change}
    with pytest.raises(ScratchLLMError) as e:
        check_state(state, "run/latest/trainer_state.json")
    assert str(e.value).startswith("run/latest/trainer_state.json: ") and message in str(e.value)


def test_a_good_state_and_one_of_an_older_version_pass():
    assert check_state(good_state(), "s.json")["step"] == 4
    old = good_state()
    del old["best_step"]                             # written before best_step was kept
    assert check_state(old, "s.json") is old
