"""Run under ``mpiexec -n N`` (or alone): train a tiny run with the real Trainer.

    python ranks_train.py OUT CONFIG_JSON [--stop-at K] [--resume]

With SCRATCHLLM_DIST_CHECK=1 the trainer compares the parameter checksums of all ranks after
every step and stops with an error if they differ.
"""
import json
import os
import sys
from pathlib import Path

from scratchllm.train import TrainConfig
from scratchllm.train.trainer import Trainer


def main():
    pidfile = os.environ.get("SCRATCHLLM_TEST_PIDFILE")
    if pidfile:                                        # the kill test needs each rank's pid
        from scratchllm.train.dist import world
        Path(f"{pidfile}.{world().rank}").write_text(str(os.getpid()))
    out, cfg = sys.argv[1], TrainConfig().updated(json.loads(sys.argv[2]))
    stop = int(sys.argv[sys.argv.index("--stop-at") + 1]) if "--stop-at" in sys.argv else None
    Trainer(cfg, out, resume="--resume" in sys.argv, progress=False).run(stop_at_step=stop)


if __name__ == "__main__":
    try:
        main()
    except BaseException as e:                          # end every rank, as the CLI does
        from scratchllm.train.dist import RankStopped, stop_all_ranks
        import traceback
        traceback.print_exc()
        stop_all_ranks(None if isinstance(e, RankStopped) else f"{type(e).__name__}: {e}")
        raise
