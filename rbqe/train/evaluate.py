"""Evaluation and threshold calibration on folders of clean images.

Protocol (the standard one for JPEG artifact removal): each clean 8-bit image is
compressed with libjpeg (OpenCV) at quality q, 4:2:0 for colour; the network runs on the
decoded image; outputs are rounded to 8 bits; PSNR, SSIM and PSNR-B are computed on the
whole image with no border crop. Gray images (or ``gray=True``) are measured on the gray
channel; colour images on RGB and on BT.601 Y.

Every image is run once through all five exits. Because exits are progressive, the
output of ``auto`` is exactly the output of the exit it chooses. The run gives the exit
policy the file's JPEG tables, as ``rbqe enhance`` does for a user's JPEG, and records the
exit the policy chose; under the assessor rule one pass also serves every other threshold
(auto at a threshold is the first exit whose score passes it).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np

from rbqe.engine import Enhancer, EnhanceResult
from rbqe.errors import ImageReadError, UsageError, show_path
from rbqe.exit_policy import ExitSignals, JpegPrior, auto_exit, features
from rbqe.io import is_image_file
from rbqe.io.jpeg_data import jpeg_data_check, jpeg_data_complete
from rbqe.model import NUM_EXITS
from rbqe.train.data import jpeg_roundtrip_with_tables
from rbqe.train.metrics import psnr, psnr_b, ssim, to_uint8, y_channel

log = logging.getLogger(__name__)

_JPEG_EOI = b"\xff\xd9"


@dataclass
class Record:
    """One image at one quality: metrics of the JPEG input and of each exit."""

    image: str
    qf: int
    color: bool
    base: dict[str, float]
    exits: list[dict[str, float]]
    scores: list[float]
    gmacs: list[float]
    chosen: int | None = None  # auto's exit under ``policy`` (None: records made before)
    policy: str | None = None  # ExitPolicy.describe() of the policy that chose it
    # The gate's features at each exit (collect(..., features=True)); kept out of the JSON
    # (~40 numbers per exit): rbqe.train.gate.from_eval_records stores them compactly.
    features: list[list[float]] | None = None


def save_records(records: Sequence[Record], path: Path,
                 weights: dict[str, str] | None = None) -> None:
    """Keep the per-image measurements, so calibration and re-summaries need no rerun;
    with ``weights`` (``path`` and ``hash``: :func:`rbqe.backends.cache.weights_hash`),
    which network made them, so that a re-summary under other weights is refused."""
    rows = [{k: v for k, v in asdict(r).items() if k != "features"} for r in records]
    path.write_text(json.dumps(rows if weights is None else
                               {"weights": weights, "records": rows}))


def load_records(path: Path) -> list[Record]:
    """The records :func:`save_records` kept (either form: a bare list from before the
    weights were noted)."""
    doc = json.loads(Path(path).read_text())
    rows = doc["records"] if isinstance(doc, dict) else doc
    return [Record(**r) for r in rows]


def records_weights(path: Path) -> dict[str, str] | None:
    """Which weights made the records at ``path`` (None: not noted, an older file)."""
    doc = json.loads(Path(path).read_text())
    return doc.get("weights") if isinstance(doc, dict) else None


def list_clean_images(dirs: Sequence[str | Path]) -> list[Path]:
    """The image files in ``dirs`` (folders, searched recursively, or files), sorted per
    folder. A path that does not exist is an error naming it (it read "no images in")."""
    out: list[Path] = []
    for d in dirs:
        p = Path(d)
        if not p.exists():
            raise UsageError(f"{show_path(p)}: no such file or folder")
        out.extend([p] if p.is_file() else sorted(f for f in p.rglob("*") if is_image_file(f)))
    return out


def _metrics(clean: np.ndarray, test: np.ndarray, color: bool) -> dict[str, float]:
    m = {"psnr": psnr(clean, test), "ssim": ssim(clean, test), "psnrb": psnr_b(clean, test)}
    if color:
        m["psnr_y"] = psnr(y_channel(clean), y_channel(test))
    return m


def read_clean(path: Path, gray: bool) -> tuple[np.ndarray, bool]:
    """8-bit gray ``(H, W)`` or RGB ``(H, W, 3)``; a colour file with equal channels is gray.

    Raises:
        ImageReadError: The file cannot be read as an image, or it is a JPEG whose coded
            data is cut short or damaged (no clean reference).
    """
    damaged = _jpeg_damage(path)
    if damaged:
        raise ImageReadError(path, damaged)
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:  # one line naming the file, not a traceback minutes into a measurement
        raise ImageReadError(path, "cannot read it as an image")
    rgb = np.ascontiguousarray(bgr[..., ::-1])
    if gray or (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])):
        gray_img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if gray_img is None:  # read in colour a moment ago: changed or gone since
            raise ImageReadError(path, "cannot read it as an image")
        return gray_img, False
    return rgb, True


def _jpeg_damage(path: Path) -> str | None:
    """Why a JPEG is no clean reference, or None (also for any other file).

    OpenCV reads a JPEG cut short without an error, the missing rows grey: it was
    measured as a clean reference. Damage elsewhere (garbled blocks) is no clean reference
    either. Each check is a 1/8-scale decode, so only JPEGs pay for them.
    """
    try:
        with open(path, "rb") as fh:
            if fh.read(3) != b"\xff\xd8\xff":
                return None
    except OSError:
        return None  # cv2.imread then says it cannot read it
    # With the end marker supplied, a file cut inside its scan data runs short (a file
    # that lacks only the marker is whole); without, OpenCV does not decode it at all.
    if not jpeg_data_complete(path, _JPEG_EOI):
        return "truncated or corrupt image data (its JPEG data ends before the picture does)"
    damage = jpeg_data_check(path)[1]
    return f"its JPEG data is damaged (libjpeg: {damage.rstrip('.')})" if damage else None


def exit_features(result: EnhanceResult, prior: JpegPrior | None) -> list[list[float]]:
    """The gate's features at each exit, as the policy computes them while walking."""
    signals = [e.signals for e in result.exits]
    if any(s is None for s in signals):
        raise ValueError("the gate's features need every exit's signals (an untiled run)")
    walked = cast(list[ExitSignals], signals)
    return [features(walked[:k], prior, result.gray_input).tolist()
            for k in range(1, NUM_EXITS + 1)]


def collect(
    enhancer: Enhancer,
    paths: Sequence[Path],
    qualities: Sequence[int],
    *,
    gray: bool = False,
    features: bool = False,
    on_step: Callable[[int, int], None] | None = None,
    skipped: list[dict[str, str]] | None = None,
) -> list[Record]:
    """Run every image at every quality through all exits and measure; with ``features``,
    keep the gate's features at each exit too (:attr:`Record.features`).

    With ``skipped``, an image that cannot be read is left out with a warning and noted
    there (``{"path", "error"}``); without, it raises :class:`ImageReadError`.
    """
    records: list[Record] = []
    total, done = len(paths) * len(qualities), 0
    for path in paths:
        try:
            clean, color = read_clean(path, gray)
        except ImageReadError as exc:
            if skipped is None:
                raise
            # One bad file among hundreds used to throw the whole measurement away.
            log.warning("%s; skipped", exc)
            skipped.append({"path": str(path), "error": exc.reason})
            done += len(qualities)
            if on_step:
                on_step(done, total)
            continue
        for q in qualities:
            comp, prior = jpeg_roundtrip_with_tables(clean, q)
            x = comp.astype(np.float32) / 255.0
            result = enhancer.enhance(x, "all", prior=prior)
            exits = []
            for e in result.exits:
                out = to_uint8(e.image)
                out = out[..., 0] if out.shape[-1] == 1 else out
                exits.append(_metrics(clean, out, color))
            records.append(Record(path.name, int(q), color, _metrics(clean, comp, color), exits,
                                  [e.score for e in result.exits],
                                  [e.gmacs for e in result.exits], result.chosen,
                                  enhancer.policy.describe(),
                                  exit_features(result, prior) if features else None))
            done += 1
            if on_step:
                on_step(done, total)
    return records


def summarize(records: Sequence[Record], threshold: float | None,
              min_exit: int = 1) -> dict[str, Any]:
    """Per quality: mean metrics of the input, of each exit, and of auto, with gains.

    Auto is the assessor rule at ``threshold`` from ``min_exit``; with ``threshold`` None,
    the exit each record's policy chose when it was made.
    """
    out: dict[str, Any] = {}
    for q in sorted({r.qf for r in records}):
        rs = [r for r in records if r.qf == q]
        # psnr_y exists for colour images only; each metric averages where it exists.
        keys = list(dict.fromkeys(k for r in rs for k in r.base))
        base = {k: _mean([r.base.get(k) for r in rs]) for k in keys}
        entry: dict[str, Any] = {"images": len(rs), "input": _round(base), "exits": {}}
        for e in range(NUM_EXITS):
            m = {k: _mean([r.exits[e].get(k) for r in rs]) for k in keys}
            m["gmacs"] = float(np.mean([r.gmacs[e] for r in rs]))
            entry["exits"][str(e + 1)] = _round(_with_gains(m, base))
        chosen = [auto_exit(r.scores, threshold, min_exit) if threshold is not None
                  else cast(int, r.chosen) for r in rs]
        walked = list(zip(rs, chosen, strict=True))
        m = {k: _mean([r.exits[c - 1].get(k) for r, c in walked]) for k in keys}
        m["gmacs"] = float(np.mean([r.gmacs[c - 1] for r, c in walked]))
        auto = _with_gains(m, base)
        auto["histogram"] = {str(k): chosen.count(k) for k in range(1, NUM_EXITS + 1)}
        auto["gmacs_exit5"] = float(np.mean([r.gmacs[-1] for r in rs]))
        entry["auto"] = _round(auto)
        out[str(q)] = entry
    return out


def _mean(values: Sequence[float | None]) -> float:
    return float(np.mean([v for v in values if v is not None]))


def _with_gains(m: dict[str, float], base: dict[str, float]) -> dict[str, Any]:
    gains = {f"d_{k}": m[k] - base[k] for k in base}
    return {**m, **gains}


def _round(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in d.items()}


class _Table:
    """The records as arrays, built once for the thousands of rules calibration tries."""

    def __init__(self, records: Sequence[Record]) -> None:
        self.qf = np.array([r.qf for r in records])
        self.psnr = np.array([[e["psnr"] for e in r.exits] for r in records])
        self.base = np.array([r.base["psnr"] for r in records])
        self.macs = np.array([r.gmacs for r in records])
        self.scores = np.array([r.scores for r in records])
        # Photos dealt round-robin by sorted name into up to GROUPS groups.
        names = sorted({r.image for r in records})
        index = {n: i % GROUPS for i, n in enumerate(names)}
        self.group = np.array([index[r.image] for r in records])

    def chosen(self, threshold: float, min_exit: int) -> np.ndarray:
        """0-based exit auto takes for every record (auto_exit, vectorised)."""
        passes = (self.scores >= threshold) & (np.arange(1, NUM_EXITS + 1) >= min_exit)
        passes[:, -1] = True  # exit 5 ends every walk
        return passes.argmax(axis=1)

    def stats(self, threshold: float, min_exit: int, mask: np.ndarray | None = None
              ) -> dict[str, float]:
        mask = np.ones(len(self.qf), bool) if mask is None else mask
        rows = np.flatnonzero(mask)
        chosen = self.chosen(threshold, min_exit)[rows]
        got = self.psnr[rows, chosen]
        shortfall = self.psnr[rows, -1] - got
        qfs = self.qf[rows]
        return {
            "min_exit": int(min_exit),
            "threshold": float(threshold),
            "d_psnr": float(np.mean(got - self.base[rows])),
            "gmacs": float(np.mean(self.macs[rows, chosen])),
            "worst_qf_loss": float(max(shortfall[qfs == q].mean() for q in set(qfs))),
        }


GROUPS = 4
THRESHOLD_GRID = np.round(np.arange(0.30, 1.0001, 0.0025), 4)


def sweep(records: Sequence[Record], thresholds: Sequence[float],
          min_exit: int = 1) -> list[dict[str, float]]:
    """Auto at each threshold, over all records: mean PSNR gain, mean GMACs and the largest
    shortfall of any one quality's mean PSNR against exit 5's."""
    table = _Table(records)
    return [table.stats(t, min_exit) for t in thresholds]


def _fit_rule(table: _Table, tolerance_db: float, mask: np.ndarray | None = None
              ) -> dict[str, Any]:
    """The cheapest (min_exit, threshold) whose every quality stays within tolerance, on
    the records in ``mask`` and on each group of photos among them.

    The groups guard against a rule that passes on the whole set only just: such a rule
    fails on some of its quarters, as it would on new photos (the 2-fold cross-check of a
    whole-set-only fit showed it: 0.10 dB fitted, 0.13 dB held out).
    """
    mask = np.ones(len(table.qf), bool) if mask is None else mask
    groups = [mask & (table.group == g) for g in range(GROUPS)]
    groups = [g for g in groups if g.any()]
    rows, best = [], None
    for m in range(1, NUM_EXITS + 1):
        for t in THRESHOLD_GRID if m < NUM_EXITS else [1.0]:
            row = table.stats(t, m, mask)
            row["worst_group_qf_loss"] = max(table.stats(t, m, g)["worst_qf_loss"]
                                             for g in groups)
            rows.append(row)
            if max(row["worst_qf_loss"], row["worst_group_qf_loss"]) > tolerance_db:
                continue
            # Among equal costs the earliest (lowest) threshold wins: it sits furthest
            # from the edge where an unseen photo would fall through to a deeper exit.
            # min_exit 5 (always exit 5) always qualifies.
            if best is None or (row["gmacs"], -row["d_psnr"]) < (best["gmacs"], -best["d_psnr"]):
                best = row
    assert best is not None
    return {"best": best, "rows": rows}


def choose_threshold(records: Sequence[Record], tolerance_db: float = 0.1) -> dict[str, Any]:
    """The cheapest exit rule (earliest exit, threshold) at which, *at every quality*,
    auto's mean PSNR gain is within ``tolerance_db`` of exit 5's.

    A rule on the mean over the whole mix would let heavy compression pay for the savings
    (with our weights it let QF10 lose 0.28 dB while the mix lost 0.1), and heavy
    compression is what the product is for. The earliest exit is searched too, because
    with the shipped weights the IQA score cannot tell which images exits 1-2 are enough
    for (records in docs/eval/), while exit 3 is enough for nearly all.

    Also reports the oracle (the best exit per image in hindsight) and a two-fold
    cross-check: the rule fitted on half of the photos, measured on the other half.
    """
    table = _Table(records)
    fit = _fit_rule(table, tolerance_db)
    best, rows = fit["best"], fit["rows"]
    exit5 = float(np.mean([r.exits[-1]["psnr"] - r.base["psnr"] for r in records]))
    exit5_macs = float(np.mean([r.gmacs[-1] for r in records]))
    oracle = [int(np.argmax([e["psnr"] for e in r.exits])) + 1 for r in records]
    oracle_gain = float(np.mean([r.exits[o - 1]["psnr"] - r.base["psnr"]
                                 for r, o in zip(records, oracle, strict=True)]))
    chosen = [auto_exit(r.scores, best["threshold"], best["min_exit"]) for r in records]
    return {
        "rule": f"cheapest (earliest exit, threshold) with, at every QF, mean dPSNR >= "
                f"exit 5's - {tolerance_db} dB",
        "worst_qf_loss": best["worst_qf_loss"],
        "min_exit": best["min_exit"],
        "threshold": best["threshold"],
        "auto_d_psnr": best["d_psnr"],
        "auto_gmacs": best["gmacs"],
        "exit5_d_psnr": exit5,
        "exit5_gmacs": exit5_macs,
        "gmacs_ratio": best["gmacs"] / exit5_macs,
        "auto_histogram": {str(k): chosen.count(k) for k in range(1, NUM_EXITS + 1)},
        "oracle_d_psnr": oracle_gain,
        "oracle_gmacs": float(np.mean([r.gmacs[o - 1]
                                       for r, o in zip(records, oracle, strict=True)])),
        "auto_matches_oracle": float(np.mean([a == o
                                              for a, o in zip(chosen, oracle, strict=True)])),
        "worst_group_qf_loss": best["worst_group_qf_loss"],
        "cross_check": cross_check(table, tolerance_db),
        "sweep": rows,
        "samples": len(records),
    }


def cross_check(table: _Table, tolerance_db: float) -> list[dict[str, Any]]:
    """Fit the rule on half of the photos and measure it on the other half, both ways
    round: how the calibrated rule should hold up on photos it has not seen."""
    halves = [np.isin(table.group, [0, 2]), np.isin(table.group, [1, 3])]
    if not all(h.any() for h in halves):
        return []
    out = []
    for fit_on, test_on in (halves, halves[::-1]):
        best = _fit_rule(table, tolerance_db, fit_on)["best"]
        held = table.stats(best["threshold"], best["min_exit"], test_on)
        exit5_macs = float(np.mean(table.macs[test_on, -1]))
        out.append({"min_exit": best["min_exit"], "threshold": best["threshold"],
                    "held_out_worst_qf_loss": held["worst_qf_loss"],
                    "held_out_gmacs_ratio": held["gmacs"] / exit5_macs})
    return out


def plot_gain_vs_macs(summary: dict[str, Any], path: Path, title: str) -> None:
    """dPSNR against average GMACs: one curve of exits per quality, auto as a star."""
    from rbqe.train.plotting import pyplot

    plt = pyplot()

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for q, entry in summary.items():
        xs = [entry["exits"][str(k)]["gmacs"] for k in range(1, NUM_EXITS + 1)]
        ys = [entry["exits"][str(k)]["d_psnr"] for k in range(1, NUM_EXITS + 1)]
        (line,) = ax.plot(xs, ys, "o-", label=f"QF {q}")
        ax.plot(entry["auto"]["gmacs"], entry["auto"]["d_psnr"], "*", ms=14,
                color=line.get_color(), markeredgecolor="black")
    ax.set_xlabel("average GMACs per image")
    ax.set_ylabel("ΔPSNR over JPEG input (dB)")
    ax.set_title(title + "  (dots: exits 1-5, star: auto)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_sweep(cal: dict[str, Any], path: Path) -> None:
    from rbqe.train.plotting import pyplot

    plt = pyplot()

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for m in range(1, NUM_EXITS):
        rows = [r for r in cal["sweep"] if r.get("min_exit", 1) == m]
        ax.plot([r["gmacs"] for r in rows], [r["d_psnr"] for r in rows], "-",
                label=f"auto from exit {m}, threshold swept")
    ax.plot(cal["auto_gmacs"], cal["auto_d_psnr"], "r*", ms=14,
            label=f"chosen: from exit {cal.get('min_exit', 1)}, threshold {cal['threshold']:.4f}")
    ax.plot(cal["exit5_gmacs"], cal["exit5_d_psnr"], "ks", label="always exit 5")
    ax.plot(cal["oracle_gmacs"], cal["oracle_d_psnr"], "g^", label="oracle exit")
    ax.set_xlabel("average GMACs per image")
    ax.set_ylabel("ΔPSNR over JPEG input (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
