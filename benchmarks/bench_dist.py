"""MEDIUM GPT training: 1 process x 2 threads against 2 MPI ranks x 1 thread, same global batch.

    python benchmarks/bench_dist.py [--steps 8] [--config medium]

Runs two child jobs one after the other on this machine and prints one JSON line each and
a summary: global tokens/s (median step), and for the 2-rank job the Allreduce time per step
(median). The global batch is MEDIUM's (8 windows of 256 tokens): 1 x 8 against 2 x 4.
Record the output in benchmarks/RESULTS.md with the date and the machine's load.
"""
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()
BIN = Path(sys.executable).parent


def child(config: str, steps: int) -> None:
    """One job: ``steps`` timed training steps (after 2 warm-up steps) on this rank's share."""
    import scratchllm as sl
    from scratchllm.bench.train import CONFIGS
    from scratchllm.train.dist import world
    w = world()
    c = CONFIGS[config]
    model = sl.models.build_model({"model_type": "gpt", "vocab_size": c.vocab_size, "n_layer": c.n_layer,
                                   "n_head": c.n_head, "n_embd": c.n_embd, "block_size": c.block_size},
                                  generator=sl.autograd.random.Generator(0))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = sl.optim.AdamW(params, lr=6e-4, betas=(0.9, 0.95), weight_decay=0.1)
    rng = np.random.default_rng(0)
    step_s, reduce_s = [], []
    for i in range(steps + 2):
        x = rng.integers(0, c.vocab_size, (c.batch_size, c.block_size))   # the global batch
        y = rng.integers(0, c.vocab_size, (c.batch_size, c.block_size))
        w.barrier()
        t0 = time.perf_counter()
        _, loss = model(w.my_starts(x), w.my_starts(y))
        loss.backward()
        t1 = time.perf_counter()
        w.allreduce_mean([p.grad.data for p in params])
        t2 = time.perf_counter()
        opt.step()
        opt.zero_grad()
        w.barrier()
        if i >= 2:
            step_s.append(time.perf_counter() - t0)
            reduce_s.append(t2 - t1)
    if w.is_main:
        step = statistics.median(step_s)
        print(json.dumps({"ranks": w.size, "tokens_per_s": round(c.batch_size * c.block_size / step, 1),
                          "step_ms": round(step * 1e3, 1),
                          "allreduce_ms": round(statistics.median(reduce_s) * 1e3, 2),
                          "grad_mb": round(sum(p.data.nbytes for p in params) / 2**20, 1)}), flush=True)


def main() -> None:
    steps = int(sys.argv[sys.argv.index("--steps") + 1]) if "--steps" in sys.argv else 8
    config = sys.argv[sys.argv.index("--config") + 1] if "--config" in sys.argv else "medium"
    me = [sys.executable, str(HERE), "--child", "--steps", str(steps), "--config", config]
    one = {**os.environ, "OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2"}
    two = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    results = []
    for cmd, env in ((me, one), ([str(BIN / "mpiexec"), "-n", "2"] + me, two)):
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
        print(out.strip(), flush=True)
    print(json.dumps({"config": config, "ratio_2ranks_over_1process": round(
        results[1]["tokens_per_s"] / results[0]["tokens_per_s"], 3), "load_avg": os.getloadavg()[0]}))


if __name__ == "__main__":
    child(sys.argv[sys.argv.index("--config") + 1], int(sys.argv[sys.argv.index("--steps") + 1])) \
        if "--child" in sys.argv else main()
