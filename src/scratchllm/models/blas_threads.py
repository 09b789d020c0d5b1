"""``ThreadChooser``: time one-token decode steps with 1 BLAS thread and with the process's count.

On an idle machine two threads read weights from memory about twice as fast as one; on a busy
one a two-thread GEMV waits a scheduler slice for its worker. ``Decoder.threads = "auto"`` uses
this chooser; the default is a fixed single thread (see models/decode.py).
"""
from ..blas import blas_thread_count, blas_threads  # noqa: F401  (re-exported for the decoder)


class ThreadChooser:
    """Times repeated work under 1 BLAS thread and under the process's count; picks the faster.

    Measured, not guessed: on an idle machine two threads read a matrix from memory about
    twice as fast as one; on a busy one a two-thread GEMV waits a scheduler slice for its
    worker and one thread wins by far. The first ``warmup`` samples of each arm alternate;
    after that the arm with the lower median of its last ``keep`` times is used, and every
    ``probe_every``-th call times the other arm again, so the choice follows the load.

    >>> chooser = ThreadChooser()
    >>> n = chooser.pick()          # 1 or None (= leave the count alone)
    >>> chooser.record(n, 0.004)    # seconds the work took with that setting
    """

    ARMS = (1, None)

    def __init__(self, warmup: int = 3, probe_every: int = 16, keep: int = 5):
        self.warmup, self.probe_every, self.keep = warmup, probe_every, keep
        self.times = {a: [] for a in self.ARMS}
        self.calls = 0
        count = blas_thread_count()
        self.fixed = 1 if count is None or count <= 1 else None   # nothing to choose between

    def _median(self, arm) -> float:
        t = sorted(self.times[arm])
        return t[len(t) // 2]

    def pick(self):
        if self.fixed is not None:
            return self.fixed
        self.calls += 1
        fewest = min(self.ARMS, key=lambda a: len(self.times[a]))
        if len(self.times[fewest]) < self.warmup:
            return fewest
        best = min(self.ARMS, key=self._median)
        if self.calls % self.probe_every == 0:
            return self.ARMS[1] if best == self.ARMS[0] else self.ARMS[0]
        return best

    def record(self, arm, seconds: float) -> None:
        times = self.times[arm]
        times.append(seconds)
        if len(times) > self.keep:
            del times[0]
