"""Evaluation and threshold calibration on folders of clean images.

Protocol (the standard one for JPEG artifact removal): each clean 8-bit image is
compressed with libjpeg (OpenCV) at quality q, 4:2:0 for colour; the network runs on the
decoded image; outputs are rounded to 8 bits; PSNR, SSIM and PSNR-B are computed on the
whole image with no border crop. Gray images (or ``gray=True``) are measured on the gray
channel; colour images on RGB and on BT.601 Y.

Every image is run once through all five exits. Because exits are progressive, the
output of ``auto`` at a threshold is exactly the output of the first exit whose score
passes it, so one pass per image serves every threshold.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from rbqe.engine import Enhancer
from rbqe.io import is_image_file
from rbqe.model import NUM_EXITS
from rbqe.train.data import jpeg_roundtrip
from rbqe.train.metrics import psnr, psnr_b, ssim, to_uint8, y_channel


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


def save_records(records: Sequence[Record], path: Path) -> None:
    """Keep the per-image measurements, so calibration and re-summaries need no rerun."""
    path.write_text(json.dumps([asdict(r) for r in records]))


def load_records(path: Path) -> list[Record]:
    return [Record(**r) for r in json.loads(Path(path).read_text())]


def list_clean_images(dirs: Sequence[str | Path]) -> list[Path]:
    out: list[Path] = []
    for d in dirs:
        p = Path(d)
        out.extend([p] if p.is_file() else sorted(f for f in p.rglob("*") if is_image_file(f)))
    return out


def _metrics(clean: np.ndarray, test: np.ndarray, color: bool) -> dict[str, float]:
    m = {"psnr": psnr(clean, test), "ssim": ssim(clean, test), "psnrb": psnr_b(clean, test)}
    if color:
        m["psnr_y"] = psnr(y_channel(clean), y_channel(test))
    return m


def read_clean(path: Path, gray: bool) -> tuple[np.ndarray, bool]:
    """8-bit gray ``(H, W)`` or RGB ``(H, W, 3)``; a colour file with equal channels is gray."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"{path}: cannot read image")
    rgb = np.ascontiguousarray(bgr[..., ::-1])
    if gray or (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])):
        return cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), False
    return rgb, True


def collect(
    enhancer: Enhancer,
    paths: Sequence[Path],
    qualities: Sequence[int],
    *,
    gray: bool = False,
    on_step: Callable[[int, int], None] | None = None,
) -> list[Record]:
    """Run every image at every quality through all exits and measure."""
    records: list[Record] = []
    total, done = len(paths) * len(qualities), 0
    for path in paths:
        clean, color = read_clean(path, gray)
        for q in qualities:
            comp = jpeg_roundtrip(clean, q)
            x = comp.astype(np.float32) / 255.0
            result = enhancer.enhance(x, "all")
            exits = []
            for e in result.exits:
                out = to_uint8(e.image)
                out = out[..., 0] if out.shape[-1] == 1 else out
                exits.append(_metrics(clean, out, color))
            records.append(Record(path.name, int(q), color, _metrics(clean, comp, color), exits,
                                  [e.score for e in result.exits],
                                  [e.gmacs for e in result.exits]))
            done += 1
            if on_step:
                on_step(done, total)
    return records


def auto_exit(scores: Sequence[float], threshold: float) -> int:
    for k, s in enumerate(scores, start=1):
        if s >= threshold:
            return k
    return NUM_EXITS


def summarize(records: Sequence[Record], threshold: float) -> dict[str, Any]:
    """Per quality: mean metrics of the input, of each exit, and of auto, with gains."""
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
        chosen = [auto_exit(r.scores, threshold) for r in rs]
        m = {k: _mean([r.exits[c - 1].get(k) for r, c in zip(rs, chosen)]) for k in keys}
        m["gmacs"] = float(np.mean([r.gmacs[c - 1] for r, c in zip(rs, chosen)]))
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


def sweep(records: Sequence[Record], thresholds: Sequence[float]) -> list[dict[str, float]]:
    """Mean PSNR gain and GMACs of auto at each threshold, over all records."""
    rows = []
    for t in thresholds:
        chosen = [auto_exit(r.scores, t) for r in records]
        gain = np.mean([r.exits[c - 1]["psnr"] - r.base["psnr"] for r, c in zip(records, chosen)])
        macs = np.mean([r.gmacs[c - 1] for r, c in zip(records, chosen)])
        rows.append({"threshold": float(t), "d_psnr": float(gain), "gmacs": float(macs)})
    return rows


def choose_threshold(records: Sequence[Record], tolerance_db: float = 0.1) -> dict[str, Any]:
    """The cheapest threshold at which, *at every quality*, auto's mean PSNR gain is within
    ``tolerance_db`` of exit 5's.

    A rule on the mean over the whole mix would let heavy compression pay for the savings
    (with our weights it let QF10 lose 0.28 dB while the mix lost 0.1), and heavy
    compression is what the product is for. Also reports the oracle (the best exit per
    image in hindsight) for comparison.
    """
    grid = np.round(np.arange(0.30, 1.0001, 0.0025), 4)
    rows = sweep(records, grid)
    exit5 = float(np.mean([r.exits[-1]["psnr"] - r.base["psnr"] for r in records]))
    exit5_macs = float(np.mean([r.gmacs[-1] for r in records]))
    for row in rows:
        row["worst_qf_loss"] = _worst_qf_loss(records, row["threshold"])
    ok = [row for row in rows if row["worst_qf_loss"] <= tolerance_db]
    best = min(ok, key=lambda row: (row["gmacs"], -row["d_psnr"]))
    oracle = [int(np.argmax([e["psnr"] for e in r.exits])) + 1 for r in records]
    oracle_gain = float(np.mean([r.exits[o - 1]["psnr"] - r.base["psnr"]
                                 for r, o in zip(records, oracle)]))
    chosen = [auto_exit(r.scores, best["threshold"]) for r in records]
    return {
        "rule": f"cheapest threshold with, at every QF, mean dPSNR >= exit 5's - {tolerance_db} dB",
        "worst_qf_loss": best["worst_qf_loss"],
        "threshold": best["threshold"],
        "auto_d_psnr": best["d_psnr"],
        "auto_gmacs": best["gmacs"],
        "exit5_d_psnr": exit5,
        "exit5_gmacs": exit5_macs,
        "gmacs_ratio": best["gmacs"] / exit5_macs,
        "oracle_d_psnr": oracle_gain,
        "oracle_gmacs": float(np.mean([r.gmacs[o - 1] for r, o in zip(records, oracle)])),
        "auto_matches_oracle": float(np.mean([a == o for a, o in zip(chosen, oracle)])),
        "sweep": rows,
        "samples": len(records),
    }


def _worst_qf_loss(records: Sequence[Record], threshold: float) -> float:
    """The largest shortfall of auto against exit 5, in mean dB, over the qualities."""
    by_qf: dict[int, list[float]] = {}
    for r in records:
        chosen = auto_exit(r.scores, threshold)
        by_qf.setdefault(r.qf, []).append(r.exits[-1]["psnr"] - r.exits[chosen - 1]["psnr"])
    return float(max(np.mean(v) for v in by_qf.values()))


def plot_gain_vs_macs(summary: dict[str, Any], path: Path, title: str) -> None:
    """dPSNR against average GMACs: one curve of exits per quality, auto as a star."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = cal["sweep"]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    ax.plot([r["gmacs"] for r in rows], [r["d_psnr"] for r in rows], "-", label="auto, threshold swept")
    ax.plot(cal["auto_gmacs"], cal["auto_d_psnr"], "r*", ms=14,
            label=f"chosen threshold {cal['threshold']:.4f}")
    ax.plot(cal["exit5_gmacs"], cal["exit5_d_psnr"], "ks", label="always exit 5")
    ax.plot(cal["oracle_gmacs"], cal["oracle_d_psnr"], "g^", label="oracle exit")
    ax.set_xlabel("average GMACs per image")
    ax.set_ylabel("ΔPSNR over JPEG input (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
