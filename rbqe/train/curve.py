"""The training curve: validation gain per exit against the patches seen so far.

Reads the ``train_log.jsonl`` files that :mod:`rbqe.train.loop` appends to (one entry per
validation), so anyone can see whether more training still pays.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from rbqe.model import NUM_EXITS


def read_log(path: Path) -> list[dict]:
    """Entries of one log that know their cumulative patch count, in order."""
    entries = []
    for line in path.read_text().splitlines():
        if line.strip():
            entry = json.loads(line)
            if "patches" in entry:
                entries.append(entry)
    return entries


def plot_curve(logs: Sequence[Path], out: Path) -> None:
    """One panel per validation QF: gain (dB) of each exit against patches seen.

    Solid lines are the validated (EMA) weights; dotted lines, where logged, the raw ones.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = sorted((e for log in logs for e in read_log(Path(log))),
                     key=lambda e: e["patches"])
    if not entries:
        raise ValueError(f"no entries with a patch count in {', '.join(map(str, logs))}")
    qualities = list(entries[-1]["val_gain_db"])
    fig, axes = plt.subplots(1, len(qualities), figsize=(3.2 * len(qualities), 3.4),
                             sharex=True, squeeze=False)
    colours = plt.get_cmap("viridis")
    for ax, q in zip(axes[0], qualities, strict=True):
        rows = [e for e in entries if q in e["val_gain_db"]]
        x = [e["patches"] / 1e6 for e in rows]
        for k in range(NUM_EXITS):
            colour = colours(k / (NUM_EXITS - 1))
            ax.plot(x, [e["val_gain_db"][q][k] for e in rows], "-o", ms=2.5, color=colour,
                    label=f"exit {k + 1}")
            raw = [(xi, e["val_gain_db_raw"][q][k]) for xi, e in zip(x, rows, strict=True)
                   if "val_gain_db_raw" in e]
            if raw:
                ax.plot(*zip(*raw, strict=True), ":", color=colour, lw=1)
        ax.set_title(f"QF {q}")
        ax.set_xlabel("patches seen (M)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("val ΔPSNR (dB)")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
