"""The run's log: ``metrics.jsonl`` (one JSON object per line), the plain log line, ``loss.png``.

Each line has ``step``, ``loss`` (training, mean over the accumulated micro-batches), ``lr``,
``elapsed_s``, ``tokens_per_s``; lines of evaluation steps add ``val_loss``::

    {"step": 250, "loss": 1.92, "lr": 0.0029, "elapsed_s": 61.3, "tokens_per_s": 17100, "val_loss": 1.98}

An evaluation step's line is written (and fsync'ed) before its checkpoint, so the log never
misses a step the checkpoint holds; a resumed run drops the lines past its checkpoint.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from ..atomic import atomic_path, atomic_write
from .checkpoint import write_errors
from .killpoints import kill_point


class MetricsLog:
    """Appends lines to ``metrics.jsonl``; on resume, drops lines past the checkpoint's step."""

    def __init__(self, path):
        self.path = Path(path)

    def read(self) -> list[dict]:
        if not self.path.is_file():
            return []
        rows = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:   # a line cut short by a crash
                continue
            if isinstance(row, dict) and isinstance(row.get("step"), int):
                rows.append(row)
        return rows

    def truncate_after(self, step: int) -> None:
        """Keep only the lines up to ``step`` (those of a crashed run's lost steps, and a line cut
        short, go). The file is rewritten only when something goes."""
        rows = [r for r in self.read() if r["step"] <= step]
        lines = [json.dumps(r) + "\n" for r in rows]
        if self.path.is_file() and self.path.read_text(encoding="utf-8") == "".join(lines):
            return
        with write_errors(self.path), atomic_write(self.path, "w") as f:
            f.writelines(lines)

    def sync(self) -> None:
        """The lines written so far on disk (before a checkpoint that is not an evaluation's)."""
        if self.path.is_file():
            with write_errors(self.path), open(self.path, "a", encoding="utf-8") as f:
                os.fsync(f.fileno())

    def append(self, row: dict, sync: bool = False) -> None:
        """One line; ``sync``: on disk (fsync) before returning, as before a checkpoint."""
        line = json.dumps(row) + "\n"
        with write_errors(self.path), open(self.path, "a", encoding="utf-8") as f:
            half = len(line) // 2
            f.write(line[:half])
            f.flush()
            kill_point("metrics.partial")
            f.write(line[half:])
            f.flush()
            if sync:
                os.fsync(f.fileno())
        kill_point("metrics.row")


def log_line(row: dict, max_steps: int) -> str:
    """The plain progress line (no terminal, or ``--no-progress``), one per logged step:

    >>> log_line({"step": 200, "loss": 1.91234, "val_loss": 1.98766, "tokens_per_s": 17093.2,
    ...           "lr": 0.0029}, 1800)
    'step 200/1800 | loss 1.9123 | val 1.9877 | tok/s 17,093 | lr 2.90e-03'
    """
    parts = [f"step {row['step']}/{max_steps}", f"loss {row['loss']:.4f}"]
    if "val_loss" in row:
        parts.append(f"val {row['val_loss']:.4f}")
    if "tokens_per_s" in row:
        parts.append(f"tok/s {row['tokens_per_s']:,.0f}")
    parts.append(f"lr {row['lr']:.2e}")
    return " | ".join(parts)


def loss_series(rows: list[dict]):
    """``(train, val)``: the (step, loss) points the plot draws, every logged step of each."""
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    val = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
    return train, val


def plot_losses(rows: list[dict], path, title: str = "") -> None:
    """Training and validation loss against step, written to a PNG (atomically)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg   # no pyplot: no global backend change
    from matplotlib.figure import Figure

    train, val = loss_series(rows)
    fig = Figure(figsize=(7, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    if train:
        ax.plot(*zip(*train), label="train", color="tab:blue", alpha=0.6, linewidth=1)
    if val:
        ax.plot(*zip(*val), label="validation", color="tab:orange", marker="o", markersize=3, linewidth=1.5)
        best_step, best = min(val, key=lambda sv: sv[1])
        ax.annotate(f"best {best:.3f}", (best_step, best), textcoords="offset points", xytext=(-10, 10),
                    ha="right", fontsize=8)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per token)")
    ax.set_title(title or "loss")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.subplots_adjust(left=0.1, right=0.97, bottom=0.12, top=0.92)   # tight_layout's result, 4x cheaper
    with write_errors(path), atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})
