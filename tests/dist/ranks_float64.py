"""Run under ``mpiexec -n N``: K AdamW steps of a float64 GPT, data-parallel over the ranks,
against the same K steps in one process on the whole batch (computed on every rank).

Prints one JSON line on rank 0: the largest relative weight difference, and whether the
parameter checksums gathered after every step were equal on all ranks.
"""
import json
import sys

import numpy as np

import scratchllm as sl
from scratchllm.train.dist import world


def make_model():
    model = sl.models.build_model({"model_type": "gpt", "vocab_size": 40, "n_layer": 2, "n_head": 2,
                                   "n_embd": 16, "block_size": 12}, generator=sl.autograd.random.Generator(0))
    return model.to(np.float64)


def steps(model, batches, w, accum):
    """K optimizer steps; ``batches[k]`` is step k's global (accum * B, T) inputs and targets."""
    opt = sl.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    params = [p for p in model.parameters() if p.requires_grad]
    checksums_equal = True
    for x, y in batches:
        per = len(x) // accum
        for k in range(accum):
            xs, ys = x[k * per:(k + 1) * per], y[k * per:(k + 1) * per]
            xs, ys = w.my_starts(xs), w.my_starts(ys)            # this rank's share of the micro-batch
            _, loss = model(xs, ys)
            (loss * (1.0 / accum)).backward()
        w.allreduce_mean([p.grad.data for p in params])
        opt.step()
        opt.zero_grad()
        checksum = float(sum(float(np.sum(p.data)) for p in params))
        try:
            w.check_same("weights", repr(checksum))
        except sl.errors.ScratchLLMError:
            checksums_equal = False
    return model, checksums_equal


def main():
    accum_n, accum_1 = int(sys.argv[1]), int(sys.argv[2])
    w = world()
    rng = np.random.default_rng(7)
    B = 8
    batches = [(rng.integers(0, 40, (B, 12)), rng.integers(0, 40, (B, 12))) for _ in range(4)]
    dist_model, equal = steps(make_model(), batches, w, accum_n)
    one_model, _ = steps(make_model(), batches, sl.train.dist.World(), accum_1)
    worst = max(float(np.max(np.abs(a.data - b.data)) / (np.max(np.abs(b.data)) + 1e-30))
                for a, b in zip(dist_model.parameters(), one_model.parameters()))
    if w.is_main:
        print(json.dumps({"size": w.size, "max_rel_diff": worst, "checksums_equal": equal}))


if __name__ == "__main__":
    main()
