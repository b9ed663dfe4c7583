"""The learned exit gate: its records, its fit, its operating point and the policy table.

Records (:class:`GateRecords`) hold, for every photo at every JPEG quality, the PSNR of
each exit and the gate's features (:data:`rbqe.exit_policy.FEATURES`) at each exit, from
one pass through all five exits. They are saved as ``.npz`` so that fitting and measuring
need no rerun. Three *views* of a record share its network outputs and differ only in the
JPEG-table features: ``tables`` (the file's own tables), ``blind`` (no tables: a PNG of
the same JPEG gives the very same pixels) and ``lying`` (the tables of a quality-95
re-save, which no longer say how hard the picture was compressed; the pixels of a real
re-save differ a little, which this view ignores). The gate is fitted on all three views
of the train records so that it cannot lean on the tables alone.

The gate (per exit 1..4, a ridge regression on standardised features) predicts the PSNR
still to gain by going on to exit 5. Its operating point (``tau``, ``min_exit``) is the
cheapest whose mean loss against exit 5 stays within the tolerance at every quality on the
val records with the file's tables, and within ``blind_tolerance`` on the blind and lying
views.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rbqe.engine import Enhancer
from rbqe.exit_policy import FEATURES, ExitPolicy, JpegPrior
from rbqe.io.atomic import atomic_write
from rbqe.model import NUM_EXITS
from rbqe.train.data import jpeg_roundtrip_with_tables
from rbqe.train.evaluate import Record, exit_features, read_clean
from rbqe.train.metrics import psnr, to_uint8

VIEWS = ("tables", "blind", "lying")
LYING_QUALITY = 95
_TABLE_COLS = [FEATURES.index(n) for n in ("has_tables", "q_luma", "q_chroma")]
TAU_GRID = np.round(np.arange(-0.30, 1.0001, 0.005), 4)
RIDGE = 3.0  # on standardised features; a few hundred records per exit
# A range (dB) the gains can be clipped to before the fit (``fit(..., clip=GAIN_CLIP)``):
# the gate only has to tell "worth going on" (tau, ~0.07 dB) from "not", and under a
# squared loss the few photos that gain far more pull every prediction. Not the default:
# on the 5.45M weights' records (tolerance 0.045 dB) the clipped fit's operating point cost
# 60.5 % of exit 5's MACs against 61.3 % (held out over val photos: 60.8 / 60.9 % against
# 62.5 / 62.7 %, docs/eval/gate/explore_clipped_heldout.py), but on the whole gray val
# photos auto lost 0.017 dB more at QF 90 for 2 points of MACs, and within 0.001 dB and
# 0-1 point elsewhere (docs/eval/rgb_5450k_clipped_gate).
GAIN_CLIP = (-0.2, 0.5)


@dataclass
class GateRecords:
    """Per record ``n`` (a photo at a quality): ``x[n, k]`` the features at exit k+1 with
    the file's tables, ``psnr[n, k]``, ``gmacs[n, k]``, ``base[n]`` (the JPEG's PSNR),
    ``qf[n]``, ``gray[n]`` and ``names[n]``."""

    x: np.ndarray
    psnr: np.ndarray
    gmacs: np.ndarray
    base: np.ndarray
    qf: np.ndarray
    gray: np.ndarray
    names: np.ndarray

    def save(self, path: Path, meta: dict[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda f: np.savez(f, meta=json.dumps(meta), **self.__dict__))

    @classmethod
    def load(cls, path: Path) -> tuple[GateRecords, dict[str, Any]]:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            return cls(**{k: z[k] for k in cls.__dataclass_fields__}), meta

    def view(self, name: str) -> np.ndarray:
        """The feature array as one of :data:`VIEWS` sees it."""
        x = self.x.copy()
        if name == "blind":
            x[..., _TABLE_COLS] = 0.0
        elif name == "lying":
            x[..., _TABLE_COLS] = [1.0, *_ijg_prior(LYING_QUALITY).features()]
        return x


def _ijg_prior(quality: int, gray: bool = False) -> JpegPrior:
    """The tables libjpeg writes at ``quality`` (read back from a tiny encode)."""
    blank = np.zeros((8, 8) if gray else (8, 8, 3), np.uint8)
    return jpeg_roundtrip_with_tables(blank, quality)[1]


def _crop(img: np.ndarray, side: int) -> np.ndarray:
    """The centred ``side x side`` crop (on the 8-pixel grid), or all of a smaller image."""
    if not side:
        return img
    h, w = img.shape[:2]
    y0, x0 = max(0, (h - side) // 2) // 8 * 8, max(0, (w - side) // 2) // 8 * 8
    return img[y0:y0 + side, x0:x0 + side]


def collect(enhancer: Enhancer, paths: Sequence[Path], qualities: Sequence[int], *,
            gray_every: int = 4, crop: int = 0,
            on_step: Callable[[int, int], None] | None = None) -> GateRecords:
    """Run every photo (every ``gray_every``-th one made gray) at every quality through all
    five exits and keep what the gate needs."""
    rows: dict[str, list[Any]] = {k: [] for k in GateRecords.__dataclass_fields__}
    total, done = len(paths) * len(qualities), 0
    for i, path in enumerate(paths):
        clean, _ = read_clean(path, gray=bool(gray_every) and i % gray_every == gray_every - 1)
        clean = _crop(clean, crop)
        for q in qualities:
            comp, prior = jpeg_roundtrip_with_tables(clean, q)
            gray = comp.ndim == 2
            result = enhancer.enhance(comp.astype(np.float32) / 255.0, "all", prior=prior)
            outs = [to_uint8(e.image) for e in result.exits]
            rows["x"].append(exit_features(result, prior))
            rows["psnr"].append([psnr(clean, o[..., 0] if gray else o) for o in outs])
            rows["gmacs"].append([e.gmacs for e in result.exits])
            rows["base"].append(psnr(clean, comp))
            rows["qf"].append(q)
            rows["gray"].append(gray)
            rows["names"].append(path.name)
            done += 1
            if on_step:
                on_step(done, total)
    return GateRecords(**{k: np.asarray(v) for k, v in rows.items()})


def from_eval_records(records: Sequence[Record]) -> GateRecords:
    """Records of ``rbqe eval`` made with the gate's features (``collect(...,
    features=True)``: whole photos rather than calibration's crops) as gate records, so
    that any gate can be measured on them without running the network again."""
    if any(r.features is None for r in records):
        raise ValueError("these eval records were made without the gate's features")
    return GateRecords(
        x=np.asarray([r.features for r in records]),
        psnr=np.asarray([[e["psnr"] for e in r.exits] for r in records]),
        gmacs=np.asarray([r.gmacs for r in records]),
        base=np.asarray([r.base["psnr"] for r in records]),
        qf=np.asarray([r.qf for r in records]),
        gray=np.asarray([not r.color for r in records]),
        names=np.asarray([r.image for r in records]))


def records_key(weights: Path | None, paths: Sequence[Path], qualities: Sequence[int],
                crop: int, gray_every: int) -> str:
    """What a saved record file must match to be reused: the weights' tensors (not their
    metadata, which storing a policy changes) and the set of photos and qualities."""
    h = hashlib.sha256()
    if weights is not None and weights.is_file():
        with open(weights, "rb") as f:
            # safetensors: an 8-byte header length, the JSON header, then the tensor bytes.
            f.seek(8 + int.from_bytes(f.read(8), "little"))
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    h.update(json.dumps([[p.name for p in paths], list(qualities), crop, gray_every,
                         list(FEATURES)]).encode())
    return h.hexdigest()[:16]


def load_or_collect(path: Path, enhancer: Enhancer, paths: Sequence[Path],
                    qualities: Sequence[int], *, crop: int, gray_every: int = 4,
                    on_step: Callable[[int, int], None] | None = None,
                    log: Callable[[str], None] = print) -> GateRecords:
    """The records saved at ``path`` when they match, else collected and saved there."""
    key = records_key(enhancer.info.path, paths, qualities, crop, gray_every)
    if path.is_file():
        recs, meta = GateRecords.load(path)
        if meta.get("key") == key:
            log(f"gate records: reusing {path} ({len(recs.qf)} records)")
            return recs
        log(f"gate records: {path} is for other weights or photos; collecting again")
    t0 = time.perf_counter()
    recs = collect(enhancer, paths, qualities, crop=crop, gray_every=gray_every,
                   on_step=on_step)
    recs.save(path, {"key": key, "photos": len(paths), "qualities": list(qualities),
                     "crop": crop, "seconds": round(time.perf_counter() - t0, 1)})
    log(f"gate records: {len(recs.qf)} written to {path} in {time.perf_counter() - t0:.0f} s")
    return recs


# -- fitting ----------------------------------------------------------------------------------
def fit(train: GateRecords, ridge: float = RIDGE,
        clip: tuple[float, float] | None = None) -> dict[str, Any]:
    """Per exit 1..4, ridge regression of the gain still to come (exit 5's PSNR minus this
    exit's, clipped to ``clip`` dB unless None) on the standardised features of all three
    views of the train records."""
    params: dict[str, Any] = {"features": list(FEATURES), "mean": [], "scale": [],
                              "coef": [], "bias": []}
    target = train.psnr[:, -1:] - train.psnr[:, :-1]
    if clip is not None:
        target = np.clip(target, *clip)
    for k in range(NUM_EXITS - 1):
        x = np.concatenate([train.view(v)[:, k] for v in VIEWS])
        y = np.tile(target[:, k], len(VIEWS))
        mean, scale = x.mean(0), x.std(0)
        scale[scale < 1e-9] = 1.0
        z = (x - mean) / scale
        bias = float(y.mean())
        coef = np.linalg.solve(z.T @ z + ridge * np.eye(z.shape[1]), z.T @ (y - bias))
        params["mean"].append(mean.tolist())
        params["scale"].append(scale.tolist())
        params["coef"].append(coef.tolist())
        params["bias"].append(bias)
    return params


def predictions(params: dict[str, Any], x: np.ndarray) -> np.ndarray:
    """``(N, 4)`` predicted gains at exits 1..4 for features ``x`` ``(N, 5, F)``; the
    same arithmetic as :meth:`ExitPolicy.predict_gain`."""
    return np.stack([((x[:, k] - np.asarray(params["mean"][k])) / np.asarray(params["scale"][k]))
                     @ np.asarray(params["coef"][k]) + params["bias"][k]
                     for k in range(NUM_EXITS - 1)], axis=1)


def gate_exits(pred: np.ndarray, tau: float | Sequence[float] | np.ndarray,
               min_exit: int) -> np.ndarray:
    """0-based exit the gate takes for each record (the policy's walk, vectorised);
    ``tau`` one threshold for all exits or one per exit 1..4."""
    stop = pred < np.asarray(tau, np.float64)
    stop[:, : min_exit - 1] = False
    stop = np.concatenate([stop, np.ones((len(pred), 1), bool)], axis=1)
    return stop.argmax(axis=1)


def measure(recs: GateRecords, chosen: np.ndarray) -> dict[str, Any]:
    """Cost and loss of taking exit ``chosen[n]`` (0-based) for each record."""
    rows = np.arange(len(chosen))
    loss = recs.psnr[:, -1] - recs.psnr[rows, chosen]
    macs = recs.gmacs[rows, chosen] / recs.gmacs[:, -1]
    per_qf = {}
    for q in sorted(set(recs.qf.tolist())):
        m = recs.qf == q
        per_qf[str(q)] = {"macs": float(macs[m].mean()), "loss_db": float(loss[m].mean()),
                          "worst_image_loss_db": float(loss[m].max()),
                          "histogram": np.bincount(chosen[m], minlength=NUM_EXITS).tolist()}
    return {
        "macs": float(recs.gmacs[rows, chosen].sum() / recs.gmacs[:, -1].sum()),
        "d_psnr": float((recs.psnr[rows, chosen] - recs.base).mean()),
        "loss_db": float(loss.mean()),
        "worst_qf_loss_db": max(v["loss_db"] for v in per_qf.values()),
        "worst_image_loss_db": float(loss.max()),
        "histogram": np.bincount(chosen, minlength=NUM_EXITS).tolist(),
        "per_qf": per_qf,
    }


def choose_operating_point(params: dict[str, Any], val: GateRecords, tolerance: float,
                           blind_tolerance: float, per_exit: bool = False) -> dict[str, Any]:
    """The cheapest (tau, min_exit) whose worst quality loses at most ``tolerance`` dB with
    the file's tables and at most ``blind_tolerance`` on the blind and lying views.

    With ``per_exit``, the one tau is then refined into one per exit (``taus``, exits
    1..4), each moved in turn along the grid while the others stay, as long as that gets
    cheaper within the same limits: the predicted gain still to come means something else
    at exit 3 than at exit 4 (less of the network left to pay for, a sharper prediction).
    Not the default: on the 5.45M weights it saved 0.8 point of MACs on the calibration
    crops and nothing on the whole val photos (docs/eval/rgb_5450k_whole/README.md).
    """
    preds = {v: predictions(params, val.view(v)) for v in VIEWS}

    def views_if_within(taus: np.ndarray, m: int) -> dict[str, Any] | None:
        views = {"tables": measure(val, gate_exits(preds["tables"], taus, m))}
        if views["tables"]["worst_qf_loss_db"] > tolerance:
            return None
        for v in ("blind", "lying"):
            views[v] = measure(val, gate_exits(preds[v], taus, m))
            if views[v]["worst_qf_loss_db"] > blind_tolerance:
                return None
        return views

    best: tuple[tuple[float, float], dict[str, Any]] | None = None
    for m in range(1, NUM_EXITS):
        for tau in TAU_GRID:
            views = views_if_within(np.full(NUM_EXITS - 1, tau), m)
            if views is None:
                continue
            key = (views["tables"]["macs"], -tau)
            if best is None or key < best[0]:
                best = (key, {"tau": float(tau), "min_exit": m, "views": views})
    if best is None:  # only exit 5 keeps within tolerance
        views = {v: measure(val, np.full(len(val.qf), NUM_EXITS - 1)) for v in VIEWS}
        return {"tau": -1e9, "taus": [-1e9] * (NUM_EXITS - 1), "min_exit": NUM_EXITS - 1,
                "views": views}
    point = best[1]
    taus = np.full(NUM_EXITS - 1, point["tau"])
    macs = point["views"]["tables"]["macs"]
    if per_exit:
        m = point["min_exit"]
        improved = True
        while improved:  # coordinate descent; ends because every move must save MACs
            improved = False
            for k in range(m - 1, NUM_EXITS - 1):
                for tau in TAU_GRID:
                    trial = taus.copy()
                    trial[k] = tau
                    views = views_if_within(trial, m)
                    if views is not None and views["tables"]["macs"] < macs - 1e-9:
                        taus, macs, improved = trial, views["tables"]["macs"], True
                        point["views"] = views
    point["taus"] = [float(t) for t in taus]
    return point


def oracle(recs: GateRecords, tolerance: float) -> np.ndarray:
    """The cheapest exit per image in hindsight with a mean loss within ``tolerance`` at
    every quality: per quality, each image takes argmin(MACs + lambda * loss), lambda the
    smallest that keeps the quality's mean loss within tolerance (bisection)."""
    chosen = np.full(len(recs.qf), NUM_EXITS - 1)
    loss = recs.psnr[:, -1:] - recs.psnr
    macs = recs.gmacs / recs.gmacs[:, -1:]
    for q in set(recs.qf.tolist()):
        m = np.flatnonzero(recs.qf == q)

        def pick(lam: float, m: np.ndarray = m) -> np.ndarray:
            return np.argmin(macs[m] + lam * np.maximum(loss[m], 0), axis=1)

        lo, hi = 0.0, 1e4
        for _ in range(60):
            mid = (lo + hi) / 2
            if loss[m, pick(mid)].mean() <= tolerance:
                hi = mid
            else:
                lo = mid
        chosen[m] = pick(hi)
    return chosen


def assessor_exits(recs: GateRecords, policy: ExitPolicy) -> np.ndarray:
    """0-based exit the assessor rule takes for each record."""
    score = recs.x[..., FEATURES.index("score")]
    ok = (score >= policy.params["threshold"]) & (np.arange(1, NUM_EXITS + 1) >= policy.min_exit)
    ok[:, -1] = True
    return ok.argmax(axis=1)


def compare(val: GateRecords, gate: ExitPolicy, assessor: ExitPolicy,
            tolerance: float) -> dict[str, dict[str, Any]]:
    """Every policy on the val records in one table (and the oracle)."""
    table: dict[str, dict[str, Any]] = {}
    for k in range(1, NUM_EXITS + 1):
        table[f"exit {k}"] = measure(val, np.full(len(val.qf), k - 1))
    table["assessor"] = measure(val, assessor_exits(val, assessor))
    for v in VIEWS:
        pred = predictions(gate.params, val.view(v))
        table[f"gate ({v})"] = measure(val, gate_exits(pred, gate.taus, gate.min_exit))
    table[f"oracle (<= {tolerance} dB per QF)"] = measure(val, oracle(val, tolerance))
    return table


def format_table(table: dict[str, dict[str, Any]]) -> str:
    qfs = list(next(iter(table.values()))["per_qf"])
    head = (f"{'policy':<24} {'MACs':>6} {'dPSNR':>7} {'loss':>6} {'worstQF':>7} "
            f"{'worstImg':>8}  exits 1-5         " + " ".join(f"{'q' + q:>6}" for q in qfs))
    lines = [head, "-" * len(head)]
    for name, r in table.items():
        per = " ".join(f"{r['per_qf'][q]['loss_db']:6.3f}" for q in qfs)
        hist = "/".join(map(str, r["histogram"]))
        lines.append(f"{name:<24} {r['macs']:6.1%} {r['d_psnr']:+7.3f} {r['loss_db']:6.3f} "
                     f"{r['worst_qf_loss_db']:7.3f} {r['worst_image_loss_db']:8.3f}  "
                     f"{hist:<17} {per}")
    lines.append("(MACs: share of exit 5's; loss: dB below exit 5, mean; last columns: mean "
                 "loss per QF)")
    return "\n".join(lines)


def plot_frontier(val: GateRecords, params: dict[str, Any], table: dict[str, dict[str, Any]],
                  path: Path) -> None:
    """Mean loss against MACs: the gate's tau sweep, the fixed exits and each policy."""
    from rbqe.train.plotting import pyplot

    plt = pyplot()

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    pred = predictions(params, val.view("tables"))
    for m in range(1, NUM_EXITS):
        pts = [measure(val, gate_exits(pred, t, m)) for t in TAU_GRID[::4]]
        ax.plot([p["macs"] for p in pts], [p["worst_qf_loss_db"] for p in pts], "-", lw=1,
                label=f"gate from exit {m}, tau swept")
    for name, r in table.items():
        marker = "ks" if name.startswith("exit") else "*"
        ax.plot(r["macs"], r["worst_qf_loss_db"], marker, ms=9 if marker == "*" else 5,
                label=None if name.startswith("exit") else name)
    ax.set_xlabel("MACs / exit 5's")
    ax.set_ylabel("worst QF's mean loss vs exit 5 (dB)")
    ax.set_ylim(-0.02, 0.6)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
