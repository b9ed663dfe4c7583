"""The training curve: validation gain per exit against the pixels seen so far.

Reads the ``train_log.jsonl`` files that :mod:`rbqe.train.loop` appends to (one entry per
validation), so anyone can see whether more training still pays. The log counts patches,
but the patch size changed along the way (96, 64 and 128 px), so the default x-axis
integrates each record's ``patch`` size into pixels seen.
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


def with_pixels(entries: Sequence[dict], before_patch: int | None = None) -> list[dict]:
    """Entries with ``pixels``: the pixels seen up to each one, from its patch count.

    Patches counted since the previous entry are taken at this entry's ``patch`` size (the
    recipe is logged with each validation). ``before_patch`` is the size of the patches the
    first entry had already counted (training that happened before this log began); by
    default the first entry's own size.
    """
    out: list[dict] = []
    pixels, last_patches = 0.0, 0
    for k, entry in enumerate(entries):
        size = entry.get("patch")
        if size is None:
            raise ValueError(f"log entry at step {entry.get('step')} has no patch size")
        counted_at = before_patch if k == 0 and before_patch else size
        pixels += (entry["patches"] - last_patches) * counted_at ** 2
        last_patches = entry["patches"]
        out.append({**entry, "pixels": pixels})
    return out


def width_changes(entries: Sequence[dict]) -> list[tuple[dict, int, int]]:
    """``(entry, old width, new width)`` for each entry (in order) whose network is wider or
    narrower than the previous entry's; entries that do not log a width are skipped."""
    changes, last = [], None
    for entry in entries:
        width = entry.get("width")
        if width is None:
            continue
        if last is not None and width != last:
            changes.append((entry, last, width))
        last = width
    return changes


def plot_curve(logs: Sequence[Path], out: Path, x: str = "pixels",
               before_patch: int | None = None) -> None:
    """One panel per validation QF: gain (dB) of each exit against pixels (or patches) seen.

    Solid lines are the validated (EMA) weights; dotted lines, where logged, the raw ones.
    A dashed vertical line marks where the network was widened (:func:`width_changes`).
    Each log is integrated from its own first record (see :func:`with_pixels`).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if x not in ("pixels", "patches"):
        raise ValueError(f"x must be 'pixels' or 'patches', not {x!r}")
    per_log = [read_log(Path(log)) for log in logs]
    if x == "pixels":
        per_log = [with_pixels(entries, before_patch) for entries in per_log]
    entries = sorted((e for log_entries in per_log for e in log_entries), key=lambda e: e[x])
    if not entries:
        raise ValueError(f"no entries with a patch count in {', '.join(map(str, logs))}")
    qualities = list(entries[-1]["val_gain_db"])
    fig, axes = plt.subplots(1, len(qualities), figsize=(3.2 * len(qualities), 3.4),
                             sharex=True, squeeze=False)
    colours = plt.get_cmap("viridis")
    unit = 1e9 if x == "pixels" else 1e6
    for ax, q in zip(axes[0], qualities, strict=True):
        rows = [e for e in entries if q in e["val_gain_db"]]
        xs = [e[x] / unit for e in rows]
        for k in range(NUM_EXITS):
            colour = colours(k / (NUM_EXITS - 1))
            ax.plot(xs, [e["val_gain_db"][q][k] for e in rows], "-o", ms=2.5, color=colour,
                    label=f"exit {k + 1}")
            raw = [(xi, e["val_gain_db_raw"][q][k]) for xi, e in zip(xs, rows, strict=True)
                   if "val_gain_db_raw" in e]
            if raw:
                ax.plot(*zip(*raw, strict=True), ":", color=colour, lw=1)
        for entry, old, new in width_changes(rows):
            ax.axvline(entry[x] / unit, color="0.4", ls="--", lw=1)
            ax.annotate(f"width {old}\u2192{new}", (entry[x] / unit, 0.02), fontsize=7,
                        xycoords=("data", "axes fraction"), rotation=90, ha="right",
                        va="bottom", color="0.3")
        ax.set_title(f"QF {q}")
        ax.set_xlabel("pixels seen (G)" if x == "pixels" else "patches seen (M)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("val ΔPSNR (dB)")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
