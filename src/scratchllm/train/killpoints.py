"""Named crash points for the crash-safety test: a real SIGKILL at a chosen place in a write.

The run's write path calls ``kill_point("ckpt.latest.renamed")`` and the like. They do nothing
unless the environment variable ``SCRATCHLLM_TEST_KILL_AT`` is ``LABEL:N``: then the N-th time
this process reaches ``LABEL`` it kills itself with SIGKILL (no cleanup, no ``finally``, as
``kill -9`` or a power cut would). ``tests/train/test_crash_safety.py`` kills ``scratchllm
train`` this way at every label, resumes it, and compares the result with an uninterrupted run.

    SCRATCHLLM_TEST_KILL_AT=ckpt.latest.renamed:2 scratchllm train ...   # dies in the 2nd swap

The labels, in the order a checkpoint at an evaluation step reaches them::

    step                      after an optimizer step, before anything is written
    metrics.partial           half of a metrics.jsonl row written (no newline yet)
    metrics.row               a metrics.jsonl row written and fsync'ed
    ckpt.<name>.file          after each file written into <name>.tmp/ (name: latest, best)
    ckpt.<name>.written       <name>.tmp/ complete and fsync'ed, nothing renamed yet
    ckpt.<name>.renamed       <name>/ renamed to <name>.old/, <name>.tmp/ not yet in place
    ckpt.<name>.swapped       <name>.tmp/ is <name>/, <name>.old/ not yet removed
    mirror.file               after each model file linked from best/ into the run folder
    json.written              a JSON file written in full under its temporary name, not renamed
    data.file                 a fresh run's token files and meta.json written, no checkpoint yet
    repair                    after each repair step of a resumed run (best/, run folder, plot)
"""
from __future__ import annotations

import os
import signal

ENV = "SCRATCHLLM_TEST_KILL_AT"
_counts: dict[str, int] = {}


def kill_point(label: str) -> None:
    """SIGKILL this process if ``SCRATCHLLM_TEST_KILL_AT`` names this label and occurrence."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    want, _, n = spec.rpartition(":")
    if want != label:
        return
    _counts[label] = _counts.get(label, 0) + 1
    if _counts[label] == int(n):
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))
