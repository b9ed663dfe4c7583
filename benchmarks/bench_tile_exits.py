"""Per-tile exits against one shared exit on large pictures (a script, not a test).

There are no 12 MP photos among the val data, so the pictures are mosaics: BSDS500 *val*
photos (``../shared/datasets/val/bsds500_val``; never LIVE1/Classic5/Kodak) laid out at
1:1, portrait ones turned, in a random order per mosaic, then compressed with OpenCV's
JPEG (RGB) at each ``--qf`` and read back through :func:`rbqe.io.load_image` (so the
JPEG tables reach the policy, as with ``rbqe enhance``).

Per mosaic, default tiling (1024) and the weights' default policy:

* ``per-tile``: auto, each tile to its own exit (for every ``--floors`` value: the
  most exits a tile may stop before the samples' whole-picture decision, ``none`` for
  no floor but the policy's min_exit);
* ``shared``: auto, every tile at the samples' decision;
* ``all``: every exit 1..5 for every tile (equal to each forced exit; exit 5 is the
  baseline), the network time to exit 5 read from its stages.

Printed: the tile exit histogram; GMACs against exit 5 and against shared; wall and CPU
time; PSNR against the uncompressed mosaic; the seams: PSNR between the per-tile result
and the picture at each forced exit that a tile got, and the seam ratio (mean absolute
step across tile edges and overlap centres, over the same on 8-pixel-grid lines inside
the tiles; where neighbouring tiles got different exits) for per-tile, shared and exit 5.
Also the PSNR the uniform (forced) exits reach at per-tile's GMACs, linear between the
two around it: whether choosing per tile buys more than moving every tile. ``--mixed PX``
runs collages instead, each PX-pixel region compressed at its own QF (damage that varies
over the picture, which a uniform exit cannot follow).
``--crops DIR`` saves 256x256 crops at 1:1 across such boundaries:
``per-tile | shared | |per-tile - exit 5| x 16``.

Usage (a busy 2-core box; one thread)::

    python benchmarks/bench_tile_exits.py --threads 1 --size 2048x1536 --mosaics 2 \\
        --floors none,1,0 --crops /tmp/tile_exits
    python benchmarks/bench_tile_exits.py --threads 1 --size 4000x3000 --mosaics 1
    python benchmarks/bench_tile_exits.py --threads 1 --size 4000x3000 --mosaics 1 --mixed 1000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rbqe import tile_exits  # noqa: E402
from rbqe.engine import Enhancer, EnhanceResult  # noqa: E402
from rbqe.exit_policy import JpegPrior  # noqa: E402
from rbqe.io import load_image  # noqa: E402
from rbqe.tiling import TILE_OVERLAP, padded_box, sample_boxes, tiles  # noqa: E402

PHOTOS = ROOT.parent / "shared" / "datasets" / "val" / "bsds500_val"
CROP = 256


# -- pictures ----------------------------------------------------------------------------------
def mosaic(photos: list[Path], width: int, height: int, seed: int) -> np.ndarray:
    """A ``height x width`` RGB uint8 mosaic of ``photos`` at 1:1, landscape, shuffled."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(photos))
    out = np.zeros((height, width, 3), np.uint8)
    n, y = 0, 0
    while y < height:
        x, row_h = 0, 0
        while x < width:
            bgr = cv2.imread(str(photos[order[n % len(photos)]]), cv2.IMREAD_COLOR)
            n += 1
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            if rgb.shape[0] > rgb.shape[1]:
                rgb = np.ascontiguousarray(np.rot90(rgb))
            h, w = min(rgb.shape[0], height - y), min(rgb.shape[1], width - x)
            out[y:y + h, x:x + w] = rgb[:h, :w]
            x += w
            row_h = max(row_h, h)
        y += row_h
    return out


def mixed(rgb: np.ndarray, qfs: list[int], region: int, seed: int
          ) -> tuple[np.ndarray, list[list[int]]]:
    """``rgb`` with each ``region``-pixel square JPEG-compressed at its own quality from
    ``qfs`` (a collage: damage that varies over the picture; no one table, so no prior).
    Returns the pixels in [0, 1] and the quality map."""
    rng = np.random.default_rng(seed)
    out = np.empty(rgb.shape, np.float32)
    qmap = []
    for y in range(0, rgb.shape[0], region):
        qmap.append([])
        for x in range(0, rgb.shape[1], region):
            qf = int(rng.choice(qfs))
            qmap[-1].append(qf)
            block = cv2.cvtColor(rgb[y:y + region, x:x + region], cv2.COLOR_RGB2BGR)
            ok, buf = cv2.imencode(".jpg", block, [cv2.IMWRITE_JPEG_QUALITY, qf])
            dec = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            out[y:y + region, x:x + region] = dec.astype(np.float32) / 255
    return out, qmap


def compressed(rgb: np.ndarray, qf: int, folder: Path) -> tuple[np.ndarray, JpegPrior | None]:
    """``rgb`` through OpenCV's JPEG at ``qf``, read back as rbqe reads a file."""
    path = folder / f"mosaic_q{qf}.jpg"
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_JPEG_QUALITY, qf])
    src = load_image(path)
    return src.pixels, JpegPrior.of(src)


# -- measures ----------------------------------------------------------------------------------
def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


@dataclass
class Edge:
    """Where two neighbouring tiles overlap: the lines across which a seam would show
    (``axis`` 1: vertical lines at columns ``lines``, over rows ``span``)."""

    axis: int
    lines: list[int]
    span: tuple[int, int]
    exits: tuple[int, int]


def edges(h: int, w: int, tile: int, exits: list[int]) -> list[Edge]:
    """The tile edges and overlap centres between neighbours, with their two exits."""
    grid = [b for b, _, _ in tiles(h, w, tile, TILE_OVERLAP)]
    cols = len({b[2] for b in grid})
    found = []
    for i, (y0, y1, x0, x1) in enumerate(grid):
        if (i + 1) % cols:  # right neighbour
            b = grid[i + 1]
            found.append(Edge(1, [b[2], (b[2] + x1) // 2, x1], (y0, y1), (exits[i], exits[i + 1])))
        if i + cols < len(grid):  # neighbour below
            b = grid[i + cols]
            found.append(Edge(0, [b[0], (b[0] + y1) // 2, y1], (x0, x1),
                              (exits[i], exits[i + cols])))
    return found


def seam_ratio(img: np.ndarray, found: list[Edge], h: int, w: int) -> float:
    """Mean absolute step across the ``found`` lines over the mean step across the
    8-pixel-grid lines elsewhere (the JPEG block edges, where tile edges also lie)."""
    y = img.astype(np.float64).mean(axis=2) * 255
    dx = np.abs(np.diff(y, axis=1))  # dx[:, x - 1]: step between columns x - 1 and x
    dy = np.abs(np.diff(y, axis=0))
    on = np.zeros(dx.shape, bool), np.zeros(dy.shape, bool)
    near = np.zeros(dx.shape, bool), np.zeros(dy.shape, bool)
    for e in found:
        a, b = e.span
        lo, hi = min(e.lines), max(e.lines)
        if e.axis == 1:
            on[0][a:b, [x - 1 for x in e.lines if 0 < x < w]] = True
            near[0][a:b, max(lo - 9, 0):hi + 8] = True
        else:
            on[1][[v - 1 for v in e.lines if 0 < v < h], a:b] = True
            near[1][max(lo - 9, 0):hi + 8, a:b] = True
    grid_x = np.zeros(dx.shape, bool)
    grid_x[:, 7::8] = True
    grid_y = np.zeros(dy.shape, bool)
    grid_y[7::8] = True
    inside = np.concatenate([dx[grid_x & ~near[0]], dy[grid_y & ~near[1]]])
    across = np.concatenate([dx[on[0]], dy[on[1]]])
    return float(across.mean() / inside.mean()) if across.size else float("nan")


def save_crops(folder: Path, name: str, found: list[Edge], per_tile: np.ndarray,
               shared: np.ndarray, exit5: np.ndarray, count: int) -> list[Path]:
    """256x256 crops across the ``count`` boundaries whose exits differ most:
    ``per-tile | shared | |per-tile - exit 5| x 16``, 8-bit PNG."""
    found = sorted((e for e in found if e.exits[0] != e.exits[1]),
                   key=lambda e: -abs(e.exits[0] - e.exits[1]))[:count]
    h, w = per_tile.shape[:2]
    saved = []
    for n, e in enumerate(found):
        c = (e.span[0] + e.span[1]) // 2
        centre = e.lines[1]
        if e.axis == 1:
            y0, x0 = c - CROP // 2, centre - CROP // 2
        else:
            y0, x0 = centre - CROP // 2, c - CROP // 2
        y0, x0 = int(np.clip(y0, 0, h - CROP)), int(np.clip(x0, 0, w - CROP))
        box = (slice(y0, y0 + CROP), slice(x0, x0 + CROP))
        diff = np.clip(np.abs(per_tile[box] - exit5[box]) * 16, 0, 1)
        strip = np.concatenate([per_tile[box], shared[box], diff], axis=1)
        path = folder / f"{name}_{n}_{'vh'[e.axis]}_{e.exits[0]}-{e.exits[1]}_y{y0}_x{x0}.png"
        cv2.imwrite(str(path), cv2.cvtColor((strip * 255).round().astype(np.uint8),
                                            cv2.COLOR_RGB2BGR))
        saved.append(path)
    return saved


def uniform_gmacs(enh: Enhancer, h: int, w: int) -> list[float]:
    """GMACs of every tile at one forced exit k = 1..5, the samples' walk to k included."""
    boxes = [b for b, _, _ in tiles(h, w, enh.tile, TILE_OVERLAP)]
    every = boxes + sample_boxes(boxes)
    return [sum(enh.gmacs(*padded_box(b))[k - 1] for b in every) for k in range(1, 6)]


def on_frontier(gm: float, points: list[tuple[float, float]]) -> float:
    """The PSNR the uniform exits reach at ``gm`` GMACs: linear between the two forced
    exits around it (``points``: (GMACs, PSNR) of exits 1..5)."""
    xs, ys = zip(*points, strict=True)
    return float(np.interp(gm, xs, ys))


def timed(enh: Enhancer, img: np.ndarray, mode, prior) -> tuple[EnhanceResult, float, float]:
    w0, c0 = time.perf_counter(), time.process_time()
    res = enh.enhance(img, mode, prior=prior)
    return res, time.perf_counter() - w0, time.process_time() - c0


# -- the run -----------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="2048x1536", help="WxH of the mosaics")
    ap.add_argument("--mosaics", type=int, default=2, help="mosaics per QF")
    ap.add_argument("--qf", default="10,30,50,90")
    ap.add_argument("--floors", default="none",
                    help="per-tile floors to compare: exits below the samples' decision "
                         "a tile may stop at, or none (comma separated)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--backend", default="auto", help="auto, torch or openvino")
    ap.add_argument("--weights", type=Path)
    ap.add_argument("--crops", type=Path, help="save boundary crops (PNG) here")
    ap.add_argument("--crop-count", type=int, default=3)
    ap.add_argument("--mixed", type=int, default=0, metavar="PX",
                    help="instead: collages, each PX-pixel region at a random --qf")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    w, h = (int(v) for v in args.size.split("x"))
    floors = [None if f == "none" else int(f) for f in args.floors.split(",")]
    photos = sorted(PHOTOS.glob("*.jpg"))
    if not photos:
        sys.exit(f"no photos in {PHOTOS}")
    if args.crops:
        args.crops.mkdir(parents=True, exist_ok=True)
    kw = dict(device="cpu", backend=args.backend)
    per_tile = Enhancer(args.weights, tile_exits="per-tile", **kw)
    shared = Enhancer(args.weights, tile_exits="shared", **kw)
    if per_tile.runs_whole(h, w):
        sys.exit(f"a {args.size} image runs whole here, not tiled: give a larger --size")
    print(f"{w}x{h} mosaics of {len(photos)} BSDS500 val photos, {args.mosaics} per QF; "
          f"tile {per_tile.tile}, overlap {TILE_OVERLAP}; backend {per_tile.backend.name} "
          f"{per_tile.backend.precision}; policy: {per_tile.policy.describe()}; "
          f"{args.threads} thread(s)")
    rows: dict[str, list[dict]] = {}
    # Warm-up: OpenVINO compiles each stage on first use (both ECA modes), inside the
    # timed stages otherwise.
    warm = np.random.default_rng(0).random((96, per_tile.tile + 64, 3), np.float32)
    shared.enhance(warm, "all")
    forced_gm = uniform_gmacs(per_tile, h, w)
    with tempfile.TemporaryDirectory() as tmp:
        for label, m, clean, img, prior in pictures(args, photos, w, h, Path(tmp)):
            ref = clean.astype(np.float32) / 255
            every, _, _ = timed(shared, img, "all", prior)
            exit5 = every.exit_result(5).image
            e5_ms = sum(e.time_ms for e in every.exits)  # network, stages 1..5 + heads
            sh, t_sh, c_sh = timed(shared, img, "auto", prior)
            forced = {k: psnr(every.exit_result(k).image, ref) for k in range(1, 6)}
            base = {"qf": label, "mosaic": m, "chosen": sh.chosen, "tiles": sh.tiles,
                    "psnr_in": psnr(img, ref), "psnr5": forced[5],
                    "psnr_shared": psnr(sh.image, ref), "t_shared": t_sh, "c_shared": c_sh,
                    "t5_net": e5_ms / 1000, "forced": forced}
            for floor in floors:
                tile_exits.FLOOR_DROP = floor
                pt, t_pt, c_pt = timed(per_tile, img, "auto", prior)
                te = pt.tile_exits
                assert te is not None and pt.chosen == sh.chosen
                assert abs(te.gmacs_exit5 - forced_gm[4]) < 1e-6 * forced_gm[4]
                found = edges(h, w, pt.tile_size, te.exits)
                mixed_edges = [e for e in found if e.exits[0] != e.exits[1]]
                row = dict(base, floor=floor, hist=te.histogram, gm=te.gmacs,
                           gm_shared=te.gmacs_shared, gm5=te.gmacs_exit5,
                           t_pt=t_pt, c_pt=c_pt, psnr_pt=psnr(pt.image, ref),
                           frontier=on_frontier(te.gmacs, list(zip(forced_gm,
                                                                   forced.values(),
                                                                   strict=True))),
                           vs_forced={k: psnr(pt.image, every.exit_result(k).image)
                                      for k in sorted(set(te.exits))},
                           mixed=len(mixed_edges), edges=len(found))
                if mixed_edges:
                    row["seam"] = {n: seam_ratio(im, mixed_edges, h, w) for n, im in
                                   (("per-tile", pt.image), ("shared", sh.image),
                                    ("exit5", exit5))}
                    if args.crops and m == 0 and floor == floors[0]:
                        row["crops"] = save_crops(args.crops, f"q{label}_{w}x{h}",
                                                  mixed_edges, pt.image, sh.image, exit5,
                                                  args.crop_count)
                rows.setdefault(str(floor), []).append(row)
                report_row(row)
    for floor, rs in rows.items():
        summary(floor, rs)


def pictures(args: argparse.Namespace, photos: list[Path], w: int, h: int, tmp: Path):
    """``(label, index, clean uint8, input float32, prior)`` per picture: ``--mosaics``
    mosaics per QF, read back as JPEG files; or, with ``--mixed``, collages of regions
    at different qualities."""
    qfs = [int(q) for q in args.qf.split(",")]
    for m in range(args.mosaics):
        clean = mosaic(photos, w, h, seed=1000 * m + 7)
        if args.mixed:
            img, qmap = mixed(clean, qfs, args.mixed, seed=m)
            print(f"\nmixed picture {m}: QF per {args.mixed}-pixel region (rows): {qmap}")
            yield "mixed", m, clean, img, None
    for qf in ([] if args.mixed else qfs):
        for m in range(args.mosaics):
            clean = mosaic(photos, w, h, seed=1000 * m + 7)
            img, prior = compressed(clean, qf, tmp)
            yield qf, m, clean, img, prior


def report_row(r: dict) -> None:
    hist = " ".join(f"{k}:{v}" for k, v in r["hist"].items() if v)
    print(f"\nQF {r['qf']} mosaic {r['mosaic']} floor {r['floor']}: {r['tiles']} tiles, "
          f"shared exit {r['chosen']}, per-tile exits [{hist}]")
    print(f"  GMACs per-tile {r['gm']:.0f} = {r['gm'] / r['gm5']:.1%} of exit 5 "
          f"({r['gm5']:.0f}), {r['gm'] / r['gm_shared']:.1%} of shared "
          f"({r['gm_shared']:.0f}, {r['gm_shared'] / r['gm5']:.1%} of exit 5)")
    print(f"  time s (wall/cpu): per-tile {r['t_pt']:.1f}/{r['c_pt']:.1f}, shared "
          f"{r['t_shared']:.1f}/{r['c_shared']:.1f}; exit-5 network {r['t5_net']:.1f}")
    print(f"  PSNR vs clean dB: input {r['psnr_in']:.2f}, per-tile {r['psnr_pt']:.3f}, "
          f"shared {r['psnr_shared']:.3f}, exit 5 {r['psnr5']:.3f}; forced "
          + " ".join(f"{k}:{v:.3f}" for k, v in r["forced"].items())
          + f"; uniform exits at per-tile's GMACs {r['frontier']:.3f}")
    print("  PSNR per-tile vs forced exit: "
          + " ".join(f"{k}:{v:.1f}" for k, v in r["vs_forced"].items())
          + f"; mixed boundaries {r['mixed']}/{r['edges']}")
    if "seam" in r:
        print("  seam ratio on mixed boundaries (1 = like any block edge): "
              + ", ".join(f"{n} {v:.3f}" for n, v in r["seam"].items()))
    for p in r.get("crops", []):
        print(f"  crop {p}")


def summary(floor: str, rs: list[dict]) -> None:
    print(f"\n== floor {floor}: per QF (mean over mosaics) ==")
    print("QF     tiles  exits(1-5)          per-tile/exit5  shared/exit5  per-tile/shared  "
          "dPSNR vs exit5: per-tile  shared  per-tile vs uniform  CPU per-tile/shared")
    for qf in dict.fromkeys(r["qf"] for r in rs):
        q = [r for r in rs if r["qf"] == qf]
        hist = [sum(r["hist"][k] for r in q) for k in range(1, 6)]
        gm, gm5, gs = (sum(r[k] for r in q) for k in ("gm", "gm5", "gm_shared"))
        d_pt = np.mean([r["psnr_pt"] - r["psnr5"] for r in q])
        d_sh = np.mean([r["psnr_shared"] - r["psnr5"] for r in q])
        d_fr = np.mean([r["psnr_pt"] - r["frontier"] for r in q])
        # CPU time: wall time on a shared box counts the other jobs' turns (and stalls).
        t = sum(r["c_pt"] for r in q) / sum(r["c_shared"] for r in q)
        print(f"{qf!s:<6} {sum(r['tiles'] for r in q):>5}  {str(hist):<19} {gm / gm5:>14.1%} "
              f"{gs / gm5:>13.1%} {gm / gs:>16.1%} {d_pt:>+24.3f} {d_sh:>+7.3f} "
              f"{d_fr:>+20.3f} {t:>20.2f}")
    gm, gm5, gs = (sum(r[k] for r in rs) for k in ("gm", "gm5", "gm_shared"))
    seams = [r["seam"] for r in rs if "seam" in r]
    print(f"all: per-tile {gm / gm5:.1%} of exit 5's GMACs, shared {gs / gm5:.1%}; "
          f"worst per-tile loss vs exit 5 "
          f"{min(r['psnr_pt'] - r['psnr5'] for r in rs):+.3f} dB; lowest per-tile vs forced "
          f"PSNR {min(min(r['vs_forced'].values()) for r in rs):.1f} dB")
    if seams:
        print("seam ratio, mean (max) over pictures with mixed boundaries: " + ", ".join(
            f"{n} {np.mean([s[n] for s in seams]):.3f} ({max(s[n] for s in seams):.3f})"
            for n in ("per-tile", "shared", "exit5")))


if __name__ == "__main__":
    main()
