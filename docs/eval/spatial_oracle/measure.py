"""Would exits chosen per block (a window-based cascade) save more than exits chosen per
image? Measured in hindsight (an oracle), which bounds what any policy can reach.

Issue 11 asks for <= 64 % of exit 5's MACs at a loss <= 0.05 dB against exit 5 at every
QF; the per-image oracle needs about 70 % on the shipped weights, so no per-image policy
can meet it. This asks whether letting each part of a photo stop at its own exit could.

Gray val photos, libjpeg at QF 10-90, all five exits of the shipped weights (torch f32).
Each output's squared error is summed per 32x32 block and cached (``--cache``). Then, per
QF, each unit (a whole image, or a block of 32/64/128 px) takes
``argmin(cost + lambda * loss)``, ``loss`` the unit's extra squared error over exit 5's
relative to the image's (in dB, linearised), ``lambda`` the smallest that keeps the QF's
mean loss (exact, in dB) within the tolerance: the same construction as
:func:`rbqe.train.gate.oracle`.

Costs, from the network's layer shapes (``rbqe.model._macs_per_px``):
* ``free``: a block at exit ``e`` costs ``gmacs(e)`` per pixel, as if every layer could
  run on just that block (no context, no shared parts): the most optimistic bound.
* ``split``: what an implementation can actually restrict. Exit 1 (the full-resolution
  encoder and X[0][1]) runs on the whole image, since every later node reads it; for
  exits k >= 2 the encoder block and the lower-resolution decoder nodes run on the whole
  image as soon as any block needs exit k (they are what later nodes and the ECA means
  read), and only the full-resolution node X[0][k] and its head run per block, times a
  halo factor for the context their 3x3 convs need around a block.
ECA means over partly computed nodes are ignored (which favours the blocks).

    python docs/eval/spatial_oracle/measure.py [--limit 100] [--cache FILE]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from rbqe.arch import NUM_EXITS  # noqa: E402
from rbqe.engine import Enhancer  # noqa: E402
from rbqe.model import RBQENet, _macs_per_px, gmacs_per_exit  # noqa: E402
from rbqe.train.data import jpeg_roundtrip_with_tables  # noqa: E402
from rbqe.train.evaluate import list_clean_images, read_clean  # noqa: E402
from rbqe.train.metrics import to_uint8  # noqa: E402

VAL = ROOT.parent / "shared" / "datasets" / "val" / "bsds500_val"
QUALITIES = list(range(10, 100, 10))
BLOCK = 32  # the recorded block; coarser ones are sums of these
DB = 10 / np.log(10)


def record(enhancer: Enhancer, limit: int) -> dict[str, np.ndarray]:
    """Per (photo, QF): the squared error of each exit summed per ``BLOCK`` block, as
    ``sse`` (records, 5, rows, cols) with zero padding, plus ``area`` and ``qf``."""
    paths = list_clean_images([VAL])[:limit]
    sse, area, qf = [], [], []
    for path in paths:
        clean, _ = read_clean(path, True)
        h, w = clean.shape[:2]
        rows, cols = -(-h // BLOCK), -(-w // BLOCK)
        ph, pw = rows * BLOCK - h, cols * BLOCK - w
        for q in QUALITIES:
            comp, prior = jpeg_roundtrip_with_tables(clean, q)
            result = enhancer.enhance(comp.astype(np.float32) / 255.0, "all", prior=prior)
            per_exit = []
            for ex in result.exits:
                img = ex.image[..., 0] if ex.image.ndim == 3 else ex.image
                err = (to_uint8(img).astype(np.float64) - clean) ** 2
                err = np.pad(err, ((0, ph), (0, pw)))
                per_exit.append(err.reshape(rows, BLOCK, cols, BLOCK).sum(axis=(1, 3)))
            sse.append(np.stack(per_exit))
            ones = np.pad(np.ones((h, w)), ((0, ph), (0, pw)))
            area.append(ones.reshape(rows, BLOCK, cols, BLOCK).sum(axis=(1, 3)))
            qf.append(q)
        print(path.name, file=sys.stderr, flush=True)
    # BSDS500 photos are 481x321 or 321x481: pad every grid to one shape to stack them.
    rmax, cmax = max(s.shape[1] for s in sse), max(s.shape[2] for s in sse)

    def pad(a: np.ndarray) -> np.ndarray:
        return np.pad(a, [(0, 0)] * (a.ndim - 2) + [(0, rmax - a.shape[-2]),
                                                    (0, cmax - a.shape[-1])])

    return {"sse": np.stack([pad(s) for s in sse]), "area": np.stack([pad(a) for a in area]),
            "qf": np.asarray(qf)}


def coarsen(a: np.ndarray, f: int) -> np.ndarray:
    """Sum ``f x f`` groups of blocks over the last two axes (grid zero-padded)."""
    r, c = a.shape[-2:]
    R, C = -(-r // f), -(-c // f)
    a = np.pad(a, [(0, 0)] * (a.ndim - 2) + [(0, R * f - r), (0, C * f - c)])
    return a.reshape(*a.shape[:-2], R, f, C, f).sum(axis=(-3, -1))


def exit_costs(net: RBQENet) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per exit, as fractions of exit 5's MACs: the whole cost, the part that must run on
    the whole image and the part that can run per block (see the module docstring)."""
    full = np.asarray(gmacs_per_exit(net, 1, 1))  # cumulative, per input pixel (x 1e9)
    block = np.array([0.0] + [_macs_per_px(net.up[f"0_{k}"], 0)
                              + _macs_per_px(net.heads[k - 1], 0)
                              for k in range(2, NUM_EXITS + 1)]) / 1e9
    block[-1] += _macs_per_px(net.refine, 0) / 1e9  # exit 5's refine blocks: full resolution
    whole = np.diff(full, prepend=0.0) - block
    return full / full[-1], whole / full[-1], block / full[-1]


def unit_choice(sse: np.ndarray, area: np.ndarray, lam: float, costs: tuple,
                model: str, halo: float) -> tuple[float, float]:
    """One record at one ``lambda``: (MACs fraction, loss in dB) of the cheapest choice.
    ``sse`` (5, units), ``area`` (units,)."""
    full, whole, block = costs
    s5 = sse[-1].sum()
    share = area / area.sum()
    best = None
    for top in range(1, NUM_EXITS + 1):  # the highest exit any unit takes
        if model == "free":
            fixed, per_unit = 0.0, full[:top, None] * share[None]
        else:
            fixed = whole[:top].sum()
            per_unit = np.cumsum(block[:top])[:, None] * share[None] * halo
        obj = per_unit + lam * DB * (sse[:top] - sse[-1]) / s5
        pick = np.argmin(obj, axis=0)
        cols = np.arange(len(pick))
        total = fixed + obj[pick, cols].sum()
        if best is None or total < best[0]:
            mix = sse[pick, cols].sum()
            best = (total, fixed + per_unit[pick, cols].sum(), DB * np.log(mix / s5))
    return best[1], best[2]


def oracle(data: dict[str, np.ndarray], group: int | None, costs: tuple, model: str,
           halo: float, tolerance: float) -> dict[int, tuple[float, float]]:
    """Per QF: (mean MACs, mean loss dB) of the hindsight choice; ``group`` blocks of
    ``BLOCK`` per unit side, or None for one unit per image."""
    out = {}
    for q in sorted(set(data["qf"].tolist())):
        m = np.flatnonzero(data["qf"] == q)
        if group is None:
            units = [(data["sse"][i].sum(axis=(1, 2))[:, None], data["area"][i].sum()[None])
                     for i in m]
        else:
            units = []
            for i in m:
                s, a = coarsen(data["sse"][i], group), coarsen(data["area"][i], group)
                keep = a.reshape(-1) > 0
                units.append((s.reshape(NUM_EXITS, -1)[:, keep], a.reshape(-1)[keep]))

        def run(lam: float, units: list = units) -> tuple[float, float]:
            r = np.array([unit_choice(s, a, lam, costs, model, halo) for s, a in units])
            return float(r[:, 0].mean()), float(r[:, 1].mean())

        lo, hi = 0.0, 1e4
        for _ in range(50):
            mid = (lo + hi) / 2
            if run(mid)[1] <= tolerance:
                hi = mid
            else:
                lo = mid
        out[q] = run(hi)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--tolerance", type=float, default=0.045)
    p.add_argument("--cache", type=Path, help="npz of the recorded errors (made if missing)")
    args = p.parse_args()
    enhancer = None
    if args.cache and args.cache.is_file():
        data = dict(np.load(args.cache))
    else:
        enhancer = Enhancer(None, device="cpu", backend="torch", precision="f32")
        data = record(enhancer, args.limit)
        if args.cache:
            np.savez_compressed(args.cache, **data)
    net = (enhancer or Enhancer(None, device="cpu", backend="torch", precision="f32")).net
    costs = exit_costs(net)
    print(f"{len(data['qf'])} photo-QF pairs, gray val, QF {QUALITIES[0]}-{QUALITIES[-1]}; "
          f"mean loss <= {args.tolerance} dB against exit 5 at every QF")
    print("exit MACs / exit 5: " + " ".join(f"{c:.3f}" for c in costs[0]))
    print("per-block part of each exit (X[0][k] + head): "
          + " ".join(f"{b:.3f}" for b in costs[2]))
    qs = sorted(set(data["qf"].tolist()))
    print(f"{'oracle':<34} {'MACs':>6}  " + " ".join(f"{'q' + str(q):>5}" for q in qs))
    cases = [("per image", None, "free", 1.0)]
    cases += [(f"per {BLOCK * g}-px block, free", g, "free", 1.0) for g in (1, 2, 4)]
    cases += [(f"per {BLOCK * g}-px block, split, halo {h}", g, "split", h)
              for g in (1, 2, 4) for h in (1.0, 1.15, 1.3)]
    for name, group, model, halo in cases:
        per_q = oracle(data, group, costs, model, halo, args.tolerance)
        mean = np.mean([v[0] for v in per_q.values()])
        print(f"{name:<34} {mean:6.1%}  " + " ".join(f"{per_q[q][0]:5.3f}" for q in qs))


if __name__ == "__main__":
    main()
