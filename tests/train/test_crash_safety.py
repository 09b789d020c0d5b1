"""kill -9 a real ``scratchllm train`` process, anywhere, again and again: the run ends bit for bit
as one that was never interrupted.

Each chain below is a sequence of processes on one run folder. Every process but the last is
killed with SIGKILL, either at a named point of the write path (``SCRATCHLLM_TEST_KILL_AT``, see
scratchllm/train/killpoints.py: inside checkpoint writes, between the two renames of a swap,
half-way through a metrics row, while ``best/`` or the run folder's model is being written,
while a resumed run repairs them) or at a random moment. The next process continues the run
(``--resume`` when a checkpoint is there, else the same command again). At the end every
tensor of every checkpoint and model file, ``trainer_state.json`` and ``metrics.jsonl`` must
equal those of an uninterrupted run, all other files byte for byte; only the wall-clock fields
(``elapsed_s``, ``tokens_per_s``) may differ.
"""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from scratchllm.io.checkpoint import load, load_metadata

ARGS = ["--max-steps", "12", "n_layer=1", "n_head=2", "n_embd=32", "block_size=16", "batch_size=8",
        "warmup_steps=2", "lr=1e-2", "min_lr=1e-3", "eval_interval=3", "eval_batches=2", "log_interval=1",
        "sample_tokens=0", "seed=3"]
# evaluations at steps 3, 6, 9, 12; the validation loss improves at 3, 6 and 12, not at 9
CLOCK = ("elapsed_s", "tokens_per_s")          # wall-clock fields: the only ones allowed to differ

# Kill points, one list per chain (each entry kills one process; the counts are per process).
CHAINS = {
    "latest": ["ckpt.latest.file:3",        # first checkpoint half written (model, tokenizer, optimizer)
               "ckpt.latest.written:1",     # latest.tmp/ complete, not swapped in
               "ckpt.latest.swapped:1",     # latest/ at step 3, best/ and the model files not yet written
               "repair:1",                  # the resume that repairs best/ is killed in turn
               "ckpt.latest.renamed:1",     # step 6: latest/ -> latest.old/, latest.tmp/ not in place
               "ckpt.latest.file:5",        # resumed from latest.old/: all files written, no fsync/swap
               "ckpt.latest.swapped:1"],    # step 6 swapped in, latest.old/ left, best/ stale
    "best": ["ckpt.best.written:1",         # best.tmp/ complete, best/ absent
             "ckpt.best.renamed:1",         # step 6: best/ -> best.old/
             "ckpt.best.swapped:1",         # the repair's swap of best/, best.old/ not removed
             "mirror.file:2",               # the repair's links of the model into the run folder cut short
             "step:2",
             "json.written:1",              # train_config.json written under its temporary name
             "json.written:3"],             # step 9 (not a best): trainer_state.json in latest.tmp/
    "log": ["json.written:1",               # fresh run: train_config.json not yet renamed into place
            "data.file:1",                  # fresh run: token files written, nothing else
            "step:2",
            "metrics.partial:3",            # half of the eval row of step 3 (no newline)
            "metrics.row:3",                # the eval row of step 3 on disk, its checkpoint not
            "step:5",
            "metrics.partial:2",            # resumed at 3: half of step 5's row
            "metrics.row:3",                # resumed at 3: step 6's eval row, no checkpoint
            "ckpt.latest.file:1",
            "step:3"],
    "end": ["ckpt.latest.swapped:4",        # latest/ at max_steps (a best), best/, the model, the plot stale
            "ckpt.best.written:1",          # the finished run's repair killed in turn
            "mirror.file:8"],               # ... and again, while it links the run folder's model
}
N_RANDOM = 5                                  # and kills at random moments (seeded delays)


def command(out, corpus, resume):
    return [sys.executable, "-m", "scratchllm", "train", "--no-progress", "--out", str(out), "--data",
            str(corpus), *ARGS, *(["--resume"] if resume else [])]


def env(kill_at=None):
    e = {**os.environ, "SCRATCHLLM_KERNELS": "numpy", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    e.pop("SCRATCHLLM_TEST_KILL_AT", None)
    if kill_at:
        e["SCRATCHLLM_TEST_KILL_AT"] = kill_at
    return e


def has_checkpoint(out):
    return any((out / name / "trainer_state.json").is_file() for name in ("latest", "latest.old"))


def start(out, corpus, kill_at=None):
    return subprocess.Popen(command(out, corpus, resume=has_checkpoint(out)), env=env(kill_at),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait(p, timeout=120.0, kill_after=None):
    """The process's output once it ends; SIGKILL it after ``kill_after`` seconds (or when it hangs)."""
    try:
        return p.communicate(timeout=kill_after or timeout)[0]
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGKILL)
        text = p.communicate()[0]
        if kill_after is None:
            raise AssertionError(f"scratchllm train hung for {timeout} s:\n{text}") from None
        return text


def run_chain(out, corpus, kills):
    """Kill one process per entry (a label, or a delay in seconds); then finish the run."""
    log = []
    for kill in kills:
        if isinstance(kill, str):
            p = start(out, corpus, kill)
            log.append((kill, p, wait(p)))
        else:
            p = start(out, corpus)
            log.append((f"after {kill:.2f} s", p, wait(p, kill_after=kill)))
    p = start(out, corpus)
    log.append(("finish", p, wait(p)))
    return [(what, p.returncode, text) for what, p, text in log]


def files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def assert_same_run(got, want):
    assert files(got) == files(want)
    for name in files(want):
        a, b = got / name, want / name
        if name.endswith(".safetensors"):
            ta, tb = load(a), load(b)
            assert ta.keys() == tb.keys(), name
            for k in tb:
                assert ta[k].dtype == tb[k].dtype and np.array_equal(ta[k], tb[k]), (name, k)
            assert load_metadata(a) == load_metadata(b), name
        elif name.endswith("trainer_state.json"):
            sa, sb = json.loads(a.read_text()), json.loads(b.read_text())
            assert {k: v for k, v in sa.items() if k not in CLOCK} == \
                {k: v for k, v in sb.items() if k not in CLOCK}, name
        elif name == "metrics.jsonl":
            ra = [{k: v for k, v in json.loads(x).items() if k not in CLOCK} for x in a.read_text().splitlines()]
            rb = [{k: v for k, v in json.loads(x).items() if k not in CLOCK} for x in b.read_text().splitlines()]
            assert ra == rb
            assert [r["step"] for r in rb] == list(range(1, 13))
        else:
            assert a.read_bytes() == b.read_bytes(), name
    # the run folder's model is best/'s
    for name in ("model.safetensors", "config.json", "tokenizer.json"):
        assert (got / name).read_bytes() == (got / "best" / name).read_bytes()


@pytest.fixture
def fast_tmp(tmp_path):
    """A folder in memory (/dev/shm) where there is one: the runs fsync every file, and SIGKILL
    (unlike a power cut) leaves what was written in the page cache either way."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(prefix="scratchllm-crash-", dir=shm))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_sigkill_anywhere_then_resume_equals_an_uninterrupted_run(corpus, fast_tmp):
    rng = random.Random(20261128)
    chains = {**CHAINS, "random": [round(rng.uniform(0.3, 2.5), 2) for _ in range(N_RANDOM)]}
    folders = {name: fast_tmp / name / "run" for name in ["reference", *chains]}
    for f in folders.values():
        f.parent.mkdir()
    with ThreadPoolExecutor(max_workers=2) as pool:
        reference = pool.submit(run_chain, folders["reference"], corpus, [])
        logs = {name: pool.submit(run_chain, folders[name], corpus, kills) for name, kills in chains.items()}
        logs = {name: job.result() for name, job in logs.items()}
    assert reference.result()[-1][1] == 0, reference.result()
    killed = 0
    for name, log in logs.items():
        *kills, (_, rc, text) = log
        assert rc == 0, (name, text)
        for what, code, out in kills:
            if isinstance(chains[name][0], str):      # a named point must be reached, and kill
                assert code == -signal.SIGKILL, (name, what, code, out)
            killed += code == -signal.SIGKILL
        assert_same_run(folders[name], folders["reference"])
    named = sum(len(kills) for kills in CHAINS.values())
    assert named >= 20 and killed >= named            # 27 named points, and the random kills that landed
    end = logs["end"][-1][2]
    assert "run finished at step 12; raise --max-steps to continue" in end
