"""``scratchllm train`` as a user meets it, through the CLI: the log lines, the finished-run
message, the lock, what ``--resume`` refuses, damaged run files, bad config values, full and
read-only disks. Exit codes and messages exactly."""
import errno
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from scratchllm.cli import main
from scratchllm.train import metrics as metrics_mod
from scratchllm.train.lock import LOCK_NAME, RunLock
from scratchllm.train.metrics import loss_series

TINY = dict(n_layer=1, n_head=2, n_embd=32, block_size=16, batch_size=8, warmup_steps=2, lr=1e-2,
            min_lr=1e-3, eval_interval=4, eval_batches=2, log_interval=1, sample_tokens=0, seed=3)
OVERRIDES = [f"{k}={v}" for k, v in TINY.items()]
LINE = re.compile(r"step (\d+)/(\d+) \| loss \d+\.\d{4}( \| val \d+\.\d{4})? \| tok/s [\d,]+ \| lr \d\.\d\de-\d\d")


def train(*argv):
    return main(["train", *map(str, argv)])


def snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_error(capsys, pattern):
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("scratchllm train: error: ") and re.search(pattern, err), err
    return err


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 4-step run (its corpus beside it); tests copy it before changing anything."""
    from scratchllm.data import bundled_corpus_path
    folder = tmp_path_factory.mktemp("finished")
    corpus = folder / "corpus.txt"
    corpus.write_text(bundled_corpus_path().read_text(encoding="utf-8")[:20_000], encoding="utf-8")
    assert train("--no-progress", "--out", folder / "run", "--data", corpus, "--max-steps", 4, *OVERRIDES) == 0
    return folder / "run", corpus


@pytest.fixture
def run_copy(finished, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(finished[0], out)
    return out


# ------------------------------------------------------------------ the log
@pytest.mark.parametrize("flag", [["--no-progress"], []])     # under pytest stderr is not a terminal
def test_plain_log_lines_without_a_terminal(flag, corpus, tmp_path, capsys):
    assert train(*flag, "--out", tmp_path / "run", "--data", corpus, "--max-steps", 8, *OVERRIDES) == 0
    captured = capsys.readouterr()
    lines = [line for line in captured.out.splitlines() if line.startswith("step ")]
    assert [LINE.fullmatch(line) is not None for line in lines] == [True] * 8, lines
    assert [int(LINE.fullmatch(line).group(1)) for line in lines] == list(range(1, 9))
    assert {int(LINE.fullmatch(line).group(2)) for line in lines} == {8}
    assert [i + 1 for i, line in enumerate(lines) if "| val " in line] == [4, 8]
    assert "\r" not in captured.err and "it/s" not in captured.err and "step/s" not in captured.err
    rows = [json.loads(r) for r in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert lines[3] == (f"step 4/8 | loss {rows[3]['loss']:.4f} | val {rows[3]['val_loss']:.4f} | "
                        f"tok/s {rows[3]['tokens_per_s']:,.0f} | lr {rows[3]['lr']:.2e}")


def test_the_plot_has_the_train_point_of_each_eval_step(corpus, tmp_path, monkeypatch):
    plotted = []
    real = metrics_mod.plot_losses
    monkeypatch.setattr("scratchllm.train.trainer.plot_losses",
                        lambda rows, path, title="": (plotted.append(loss_series(rows)), real(rows, path, title)))
    assert train("--no-progress", "--out", tmp_path / "run", "--data", corpus, "--max-steps", 8, *OVERRIDES) == 0
    assert len(plotted) == 2
    for (points, val), eval_step in zip(plotted, (4, 8)):
        assert [s for s, _ in points] == list(range(1, eval_step + 1))        # the last one included
        assert val[-1][0] == eval_step
    assert (tmp_path / "run" / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_finished_run_says_so(finished, run_copy, capsys):
    before = snapshot(run_copy)
    capsys.readouterr()
    for argv in (["--resume"], ["--data", finished[1], "--max-steps", 4, *OVERRIDES]):   # --resume, or re-run
        assert train("--no-progress", "--out", run_copy, *argv) == 0
        out = capsys.readouterr().out
        assert "run finished at step 4; raise --max-steps to continue" in out
        assert not [line for line in out.splitlines() if line.startswith("step ")]
    assert snapshot(run_copy) == before                 # nothing rewritten
    assert train("--no-progress", "--out", run_copy, "--resume", "--max-steps", 5) == 0
    out = capsys.readouterr().out
    assert "resuming" in out and "step 5/5 | loss" in out and "run finished" not in out


def test_short_run_scales_the_warmup(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert train("--no-progress", "--out", out, "--data", corpus, "--max-steps", 20, *OVERRIDES,
                 "warmup_steps=100", "eval_interval=20") == 0
    assert ("warning: max_steps (20) is less than 2 x warmup_steps (100); the warmup is scaled to 2 steps "
            "(a tenth of max_steps)") in capsys.readouterr().out
    lrs = [json.loads(r)["lr"] for r in (out / "metrics.jsonl").read_text().splitlines()]
    assert lrs[:3] == pytest.approx([5e-3, 1e-2, 1e-2]) and lrs[3] < 1e-2       # warmup over, then the decay
    assert json.loads((out / "train_config.json").read_text())["warmup_steps"] == 100   # as asked


def test_version(capsys):
    from scratchllm import __version__
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"scratchllm {__version__}"


# ------------------------------------------------------------------ refusals, one line each
@pytest.mark.parametrize("argv, key", [
    (["n_layer=2"], "n_layer"),
    (["n_embd=64", "arch=llama"], "arch, n_embd"),
    (["--config", "{shape}"], "n_head"),
])
def test_shape_keys_with_init_from(argv, key, finished, tmp_path, capsys):
    (tmp_path / "shape.json").write_text('{"n_head": 8}')
    argv = [str(tmp_path / "shape.json") if a == "{shape}" else a for a in argv]
    out = tmp_path / "ft"
    assert train("--out", out, "--init-from", finished[0], "--data", finished[1], *argv) == 1
    one_error(capsys, re.escape(f"--init-from takes the architecture of the pretrained model; remove {key} "
                                f"(shape keys cannot change a pretrained model)"))
    assert not out.exists()


@pytest.mark.parametrize("damage", ["no latest", "no state"])
def test_resume_with_nothing_to_resume(damage, run_copy, capsys):
    if damage == "no latest":
        shutil.rmtree(run_copy / "latest")
    else:
        (run_copy / "latest" / "trainer_state.json").unlink()
    before = snapshot(run_copy)
    assert train("--out", run_copy, "--resume") == 1
    one_error(capsys, re.escape(f"nothing to resume: {run_copy} holds no checkpoint "
                                f"({run_copy / 'latest' / 'trainer_state.json'} not found); run the same "
                                f"command without --resume to start the run from step 0"))
    assert snapshot(run_copy) == before                 # best/ and the run folder's model untouched


def test_rerun_never_overwrites_best_without_latest(finished, run_copy, capsys):
    shutil.rmtree(run_copy / "latest")
    before = snapshot(run_copy)
    assert train("--out", run_copy, "--data", finished[1], "--max-steps", 4, *OVERRIDES) == 1
    one_error(capsys, "holds best/ but no latest/ checkpoint to continue from; choose another --out")
    assert snapshot(run_copy) == before


def test_second_process_on_the_same_folder(finished, run_copy, capsys):
    other = RunLock(run_copy)                     # another training process holds the folder
    other.acquire()
    try:
        before = snapshot(run_copy)
        assert train("--out", run_copy, "--resume", "--max-steps", 6) == 1
        one_error(capsys, re.escape(f"{run_copy} is in use by another training process (pid {os.getpid()}); "
                                    f"wait for it to finish, stop it, or choose another --out"))
        assert snapshot(run_copy) == before
    finally:
        other.release()
    assert not (run_copy / LOCK_NAME).exists()


def test_stale_lock_of_a_dead_process_is_taken_over(run_copy, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run_copy / LOCK_NAME).write_text(f"{dead.pid}\n")
    assert train("--no-progress", "--out", run_copy, "--resume", "--max-steps", 5) == 0
    out = capsys.readouterr().out
    assert f"taking over the lock of process {dead.pid}, which is no longer running" in out
    assert "step 5/5" in out and not (run_copy / LOCK_NAME).exists()


@pytest.mark.parametrize("damage, pattern", [
    ("truncate", r"train\.bin holds 50 tokens \(100 bytes\) but meta\.json says 18,000: the file was cut short"),
    ("flip", r"train\.bin does not match the checksum in meta\.json: the file was changed"),
])
def test_damaged_token_files(damage, pattern, run_copy, capsys):
    path = run_copy / "data" / "train.bin"
    data = bytearray(path.read_bytes())
    path.write_bytes(data[:100] if damage == "truncate" else data[:10] + bytes([data[10] ^ 1]) + data[11:])
    before = snapshot(run_copy)
    assert train("--out", run_copy, "--resume", "--max-steps", 6) == 1
    err = one_error(capsys, pattern)
    assert "delete the folder" in err and "to tokenize the corpus anew" in err
    assert snapshot(run_copy) == before


@pytest.mark.parametrize("rng, pattern", [
    ([1, 2], r"corrupt trainer state: rng must be a table with 'data' and 'default', got list"),
    ({"data": [1, 2], "default": None}, r"corrupt trainer state: rng\.data is not a random generator state"),
    ("keep-step", r"corrupt trainer state: step must be an integer >= 0, got '4'"),
])
def test_corrupt_trainer_state(rng, pattern, run_copy, capsys):
    path = run_copy / "latest" / "trainer_state.json"
    state = json.loads(path.read_text())
    if rng == "keep-step":
        state["step"] = "4"
    else:
        state["rng"] = rng
    path.write_text(json.dumps(state))
    before = snapshot(run_copy)
    assert train("--out", run_copy, "--resume", "--max-steps", 6) == 1
    one_error(capsys, re.escape(str(path)) + ": " + pattern)
    assert snapshot(run_copy) == before


@pytest.mark.parametrize("override, message", [
    ("weight_decay=-1", "weight_decay must be >= 0, got -1.0"),
    ("temperature=-1", "temperature must be >= 0, got -1.0"),
    ("beta1=1", r"beta1 must be in \[0, 1\), got 1.0"),
    ("beta2=-0.1", r"beta2 must be in \[0, 1\), got -0.1"),
    ("top_k=0", "top_k must be at least 1 \\(or none\\), got 0"),
    ("lr=nan", "lr must be a finite number, got nan"),
    ("grad_clip=inf", "grad_clip must be a finite number, got inf"),
    ("min_lr=0.1", r"min_lr \(0.1\) must not exceed lr \(0.01\)"),
    ("seed=-3", "seed must be >= 0, got -3"),
    ("warmup_steps=-1", "warmup_steps must be >= 0, got -1"),
    ("bpe_vocab_size=100", "bpe_vocab_size must be at least 256"),
])
def test_config_values_checked_before_anything(override, message, corpus, tmp_path, capsys):
    extra = ["tokenizer=bpe"] if override.startswith("bpe") else []
    out = tmp_path / "run"
    assert train("--out", out, "--data", corpus, "--max-steps", 4, *OVERRIDES, *extra, override) == 1
    one_error(capsys, "command line: " + message)
    assert not out.exists()


# ------------------------------------------------------------------ full or read-only disk
def test_disk_full_while_writing_a_checkpoint(run_copy, capsys, monkeypatch):
    def full(optimizer, path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))      # as a write() that hits the limit
    monkeypatch.setattr("scratchllm.train.trainer.save_optimizer", full)
    before = snapshot(run_copy / "latest")
    assert train("--no-progress", "--out", run_copy, "--resume", "--max-steps", 8) == 1
    one_error(capsys, re.escape(f"cannot write {run_copy / 'latest'}: No space left on device; free some space"))
    assert snapshot(run_copy / "latest") == before and not (run_copy / "latest.tmp").exists()
    assert not (run_copy / LOCK_NAME).exists()


def test_read_only_disk_names_the_file(run_copy, capsys, monkeypatch):
    def read_only(path, *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
    monkeypatch.setattr(metrics_mod, "open", read_only, raising=False)
    assert train("--no-progress", "--out", run_copy, "--resume", "--max-steps", 6) == 1
    one_error(capsys, re.escape(f"cannot write {run_copy / 'metrics.jsonl'}: Read-only file system; "
                                f"choose a writable --out"))
