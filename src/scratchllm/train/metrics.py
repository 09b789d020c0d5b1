"""The run's log: ``metrics.jsonl`` (one JSON object per line) and ``loss.png``.

Each line has ``step``, ``loss`` (training, mean over the accumulated micro-batches), ``lr``,
``elapsed_s``, ``tokens_per_s``; lines of evaluation steps add ``val_loss``::

    {"step": 250, "loss": 1.92, "lr": 0.0029, "elapsed_s": 61.3, "tokens_per_s": 17100, "val_loss": 1.98}
"""
from __future__ import annotations

import json
from pathlib import Path

from ..atomic import atomic_path, atomic_write


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
                rows.append(json.loads(line))
            except json.JSONDecodeError:   # a line cut short by a crash
                continue
        return rows

    def truncate_after(self, step: int) -> None:
        """Keep only the lines up to ``step`` (those of a crashed run's lost steps go)."""
        rows = [r for r in self.read() if r.get("step", 0) <= step]
        with atomic_write(self.path, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)

    def append(self, row: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")


def plot_losses(rows: list[dict], path, title: str = "") -> None:
    """Training and validation loss against step, written to a PNG (atomically)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg   # no pyplot: no global backend change
    from matplotlib.figure import Figure

    train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    val = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
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
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
