"""Data-parallel training over MPI: ``mpiexec -n N scratchllm train ...`` equals one process.

Each of the N processes (ranks) holds the whole model. One optimizer step:

1. every rank draws the *same* global set of ``batch_size x grad_accum x N`` window starts
   from the shared data generator, and keeps its own disjoint share (``my_starts``);
2. forward and backward on its share, exactly as one process would;
3. the gradients are averaged over the ranks with one in-place float Allreduce per bucket
   of about 4 MB (``allreduce_mean``), so every rank holds the same gradient;
4. every rank applies the same AdamW step, so the weights stay identical without ever being
   sent. Rank 0 alone writes checkpoints, metrics and the plot.

Because the random state is global (every rank advances the data generator by the whole
global batch), a run checkpointed with N ranks resumes with M ranks when the global batch
``batch_size x grad_accum x N`` is the same. The gradient of a mean loss over equal shares is
the mean of the shares' gradients, so 2 ranks x batch B/2 end at the weights of 1 rank x batch B
(up to the rounding of a different summation order).

The world is found from the launcher's environment (MPICH/Hydra ``PMI_SIZE``, Open MPI
``OMPI_COMM_WORLD_SIZE``, Slurm ``SLURM_NTASKS``); mpi4py is imported only then, so a plain
``scratchllm train`` never needs it (``pip install "scratchllm[dist]"`` installs mpi4py + mpich).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys

from ..backend import xp
from ..errors import ScratchLLMError

class RankStopped(ScratchLLMError):
    """An error that every rank saw and rank 0 reports: the other ranks stop without a message."""


_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS")
BUCKET_BYTES = 4 << 20


def launched_size() -> int:
    """How many processes the launcher started (1 when not under mpiexec/srun)."""
    for var in _SIZE_VARS:
        value = os.environ.get(var)
        if value and value.isdigit():
            return int(value)
    return 1


class World:
    """This process's place among the ranks: ``rank``, ``size``, and the collectives the trainer needs.

    ``World()`` outside mpiexec is the world of one (every collective is the identity).
    """

    def __init__(self, comm=None):
        self.comm = comm
        self.rank = 0 if comm is None else comm.Get_rank()
        self.size = 1 if comm is None else comm.Get_size()
        self._buffer = None
        # SCRATCHLLM_DIST_CHECK=1: compare the parameters' checksums over the ranks after every step
        self.check_weights = comm is not None and os.environ.get("SCRATCHLLM_DIST_CHECK") == "1"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ------------------------------------------------------------------ batches
    def my_starts(self, starts):
        """This rank's share of one micro-step's global window starts ``(size * b,)`` -> ``(b,)``."""
        b = len(starts) // self.size
        return starts[self.rank * b:(self.rank + 1) * b]

    # ------------------------------------------------------------------ collectives
    def allreduce_mean(self, arrays) -> None:
        """Average float arrays over the ranks, in place, in buckets of ~``BUCKET_BYTES``.

        The arrays are copied into one contiguous float buffer per bucket, summed with
        ``Allreduce(IN_PLACE)``, divided by the world size and copied back.
        """
        if self.comm is None:
            return
        from mpi4py import MPI
        arrays = list(arrays)
        i = 0
        while i < len(arrays):
            dtype, n, j = arrays[i].dtype, 0, i
            while j < len(arrays) and arrays[j].dtype == dtype and (j == i or (n + arrays[j].size) * dtype.itemsize <= BUCKET_BYTES):
                n += arrays[j].size
                j += 1
            buf = self._bucket(n, dtype)
            at = 0
            for a in arrays[i:j]:
                buf[at:at + a.size] = a.reshape(-1)                 # a copy when a is not contiguous
                at += a.size
            self.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            buf *= 1.0 / self.size
            at = 0
            for a in arrays[i:j]:
                a[...] = buf[at:at + a.size].reshape(a.shape)
                at += a.size
            i = j

    def _bucket(self, n: int, dtype):
        if self._buffer is None or self._buffer.dtype != dtype or self._buffer.size < n:
            self._buffer = xp.empty(max(n, BUCKET_BYTES // dtype.itemsize), dtype=dtype)
        return self._buffer[:n]

    def sum(self, value: float) -> float:
        """The sum of one float over the ranks."""
        if self.comm is None:
            return float(value)
        from mpi4py import MPI
        return float(self.comm.allreduce(float(value), op=MPI.SUM))

    def barrier(self) -> None:
        if self.comm is not None:
            self.comm.Barrier()

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every rank (a small JSON-able value)."""
        return obj if self.comm is None else self.comm.bcast(obj, root=0)

    def broadcast_arrays(self, arrays) -> None:
        """Overwrite every rank's arrays with rank 0's, in place (the starting weights)."""
        if self.comm is not None:
            for a in arrays:
                self.comm.Bcast(a, root=0)

    def gather_dict(self, d: dict) -> dict:
        """The union of every rank's small dict (e.g. {eval batch: loss}), on every rank."""
        if self.comm is None:
            return dict(d)
        out = {}
        for part in self.comm.allgather(d):
            out.update(part)
        return out

    def check_same(self, what: str, value) -> None:
        """Stop every rank with one message when ``value`` (JSON-able) differs between ranks."""
        if self.comm is None:
            return
        digest = hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()
        digests = self.comm.allgather(digest)
        bad = [r for r, d in enumerate(digests) if d != digests[0]]
        if bad and self.is_main:
            raise ScratchLLMError(f"ranks disagree on the {what}: ranks {bad} differ from rank 0 "
                                  f"(start every rank with the same command, config and data)")
        if bad:
            raise RankStopped(f"rank {self.rank}: rank 0 reports the error")



def stop_all_ranks(message: str | None, code: int = 1) -> None:
    """After an error on this rank under mpiexec: print it (rank 0's alone for an error every rank
    saw) and end every rank with ``MPI_Abort``, so no rank waits forever in a collective (the
    semantics of ``python -m mpi4py``). Outside mpiexec: nothing."""
    if launched_size() <= 1:
        return
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    if message is None:                       # a RankStopped: give rank 0 a moment to print and abort
        import time
        time.sleep(10)
    else:
        rank = comm.Get_rank()
        print(message if rank == 0 else f"[rank {rank} of {comm.Get_size()}] {message}", file=sys.stderr, flush=True)
    comm.Abort(code)


def world() -> World:
    """MPI's COMM_WORLD as a World under a launcher with several processes, else the world of one."""
    if launched_size() <= 1:
        return World()
    try:
        from mpi4py import MPI
    except ImportError:
        raise ScratchLLMError("started by mpiexec/srun with several processes, but mpi4py is "
                              "not installed: pip install \"scratchllm[dist]\"") from None
    if MPI.COMM_WORLD.Get_size() <= 1:
        return World()
    from ..parallel import share_cores
    share_cores(MPI.COMM_WORLD.Split_type(MPI.COMM_TYPE_SHARED).Get_size())   # ranks on this machine
    return World(MPI.COMM_WORLD)
