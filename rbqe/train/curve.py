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

from rbqe.errors import UsageError
from rbqe.model import NUM_EXITS


def read_log(path: Path) -> list[dict]:
    """Entries of one log that know their cumulative patch count, in order.

    Raises:
        UsageError: The file is missing, unreadable or not a training log (a
            ``checkpoint.pt`` given by mistake was a UnicodeDecodeError traceback).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the training log ({exc.strerror or exc})") \
            from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a training log (train_log.jsonl)") from None
    entries = []
    for line in text.splitlines():
        if line.strip():
            try:
                entry = json.loads(line)
            except ValueError:
                raise UsageError(f"{path}: not a training log (train_log.jsonl)") from None
            if isinstance(entry, dict) and "patches" in entry:
                entries.append(entry)
    return entries


def with_pixels(entries: Sequence[dict], before_patch: int | None = None,
                start: tuple[float, int] = (0.0, 0)) -> list[dict]:
    """Entries with ``pixels``: the pixels seen up to each one, from its patch count.

    Patches counted since the previous entry are taken at this entry's ``patch`` size (the
    recipe is logged with each validation). ``before_patch`` is the size of the patches the
    first entry had already counted (training that happened before this log began); by
    default the first entry's own size. ``start`` is ``(pixels, patches)`` already counted
    elsewhere: where a branch's log (a cool-down) left its main log.
    """
    out: list[dict] = []
    pixels, last_patches = float(start[0]), int(start[1])
    for k, entry in enumerate(entries):
        size = entry.get("patch")
        if size is None:
            raise ValueError(f"log entry at step {entry.get('step')} has no patch size")
        counted_at = before_patch if k == 0 and before_patch and not start[1] else size
        pixels += (entry["patches"] - last_patches) * counted_at ** 2
        last_patches = entry["patches"]
        out.append({**entry, "pixels": pixels})
    return out


def branch_start(earlier: Sequence[Sequence[dict]], first_patches: int) -> tuple[float, int]:
    """``(pixels, patches)`` of the latest entry of the ``earlier`` logs (with pixels) at
    or before ``first_patches``: where a later log, a branch, carries on from; (0, 0) when
    none is. Branches used to be counted from 0 at their own size (a branch of a 35 G
    pixel line drawn from 91 G, joined to it by a flat line)."""
    before = [e for log in earlier for e in log if e["patches"] <= first_patches]
    if not before:
        return 0.0, 0
    last = max(before, key=lambda e: e["patches"])
    return last["pixels"], last["patches"]


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
               before_patch: int | None = None) -> Path:
    """One panel per validation QF: gain (dB) of each exit against pixels (or patches) seen.
    Returns the file written (``.png`` added to a name without a suffix).

    Solid lines are the validated (EMA) weights; dotted lines, where logged, the raw ones.
    A dashed vertical line marks where the network was widened (:func:`width_changes`).
    Each log is drawn as its own lines (the first solid, later ones, branches such as a
    cool-down, dashed), a later log carrying on from where it left the earlier ones
    (:func:`branch_start`).
    """
    from rbqe.train.plotting import pyplot

    plt = pyplot()
    from matplotlib.lines import Line2D

    if x not in ("pixels", "patches"):
        raise ValueError(f"x must be 'pixels' or 'patches', not {x!r}")
    per_log: list[list[dict]] = []
    for log in logs:
        entries = read_log(Path(log))
        if not entries:
            raise UsageError(f"{log}: no validation entries with a patch count")
        if x == "pixels":
            start = branch_start(per_log, entries[0]["patches"]) if per_log else (0.0, 0)
            entries = with_pixels(entries, before_patch, start)
        per_log.append(entries)
    qualities = list(per_log[0][-1]["val_gain_db"])
    fig, axes = plt.subplots(1, len(qualities), figsize=(3.2 * len(qualities), 3.4),
                             sharex=True, squeeze=False)
    colours = plt.get_cmap("tab10")  # five exits told apart (viridis' 3-5 were alike)
    unit = 1e9 if x == "pixels" else 1e6
    styles = ["-", "--", "-.", (0, (5, 1, 1, 1))]
    any_raw = False
    for ax, q in zip(axes[0], qualities, strict=True):
        for n, entries in enumerate(per_log):
            rows = [e for e in entries if q in e["val_gain_db"]]
            xs = [e[x] / unit for e in rows]
            for k in range(NUM_EXITS):
                ax.plot(xs, [e["val_gain_db"][q][k] for e in rows], ls=styles[n % len(styles)],
                        marker="o", ms=2.5 if n == 0 else 1.5, color=colours(k), lw=1.2)
                raw = [(xi, e["val_gain_db_raw"][q][k]) for xi, e in zip(xs, rows, strict=True)
                       if "val_gain_db_raw" in e]
                if raw:
                    any_raw = True
                    ax.plot(*zip(*raw, strict=True), ":", color=colours(k), lw=1)
            for entry, old, new in width_changes(rows):
                ax.axvline(entry[x] / unit, color="0.4", ls="--", lw=1)
                ax.annotate(f"width {old}\u2192{new}", (entry[x] / unit, 0.02), fontsize=7,
                            xycoords=("data", "axes fraction"), rotation=90, ha="right",
                            va="bottom", color="0.3")
        ax.set_title(f"QF {q}")
        ax.set_xlabel("pixels seen (G)" if x == "pixels" else "patches seen (M)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("val ΔPSNR (dB)")
    handles = [Line2D([], [], color=colours(k), marker="o", ms=3, label=f"exit {k + 1}")
               for k in range(NUM_EXITS)]
    handles += [Line2D([], [], color="0.3", ls=styles[n % len(styles)], label=Path(log).name
                       if n == 0 else f"{Path(log).parent.name}/{Path(log).name}")
                for n, log in enumerate(logs) if len(logs) > 1]
    if any_raw:
        handles.append(Line2D([], [], color="0.3", ls=":", label="raw weights (not EMA)"))
    # Below the panels: inside one it covered the curves.
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 8), fontsize=7,
               frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    out = out if out.suffix else out.with_suffix(".png")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
