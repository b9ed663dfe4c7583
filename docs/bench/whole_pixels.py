"""Whole against tiled for photos of 1.9-3.8 MP on the CPU (the 2 MP bound of
rbqe.tiling.WHOLE_PIXELS): mosaics of BSDS500-val photos at 1:1 saved by OpenCV at QF 20
and 50, each enhanced in a fresh process (its peak RSS is its own) with ``--tile 1024``
(tiled) and ``--tile 0`` (whole), under auto and at exit 5; the wall time of
``Enhancer.enhance`` is the faster of two runs. Run from the repository root, training
paused: ``python docs/bench/whole_pixels.py [--sizes 1600x1200 ...] > docs/bench/whole_pixels.txt``.
"""

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORK = Path("/tmp/whole_pixels")


def make(sizes: list[str]) -> list[Path]:
    import cv2

    sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT)]
    from bench_tile_exits import mosaic

    from rbqe.train.evaluate import list_clean_images

    photos = list_clean_images([ROOT.parent / "shared" / "datasets" / "val" / "bsds500_val"])
    WORK.mkdir(exist_ok=True)
    paths = []
    for size in sizes:
        w, h = map(int, size.split("x"))
        for q in (20, 50):
            p = WORK / f"m{w}x{h}_q{q}.jpg"
            if not p.exists():
                rgb = mosaic(photos, w, h, seed=w + q)
                cv2.imwrite(str(p), rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
            paths.append(p)
    return paths


def one(path: str, tile: int, mode: str) -> None:
    from rbqe.engine import Enhancer
    from rbqe.exit_policy import JpegPrior
    from rbqe.io.read import load_image

    src = load_image(path)
    enh = Enhancer(tile=tile, device="cpu")
    times = []
    for _ in range(2):
        t = time.perf_counter()
        r = enh.enhance(src.pixels, mode if mode == "auto" else int(mode),
                        prior=JpegPrior.of(src))
        times.append(time.perf_counter() - t)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    where = (f"{r.tiles} tiles at exits {r.tile_exits.exits}" if r.tile_exits
             else f"{r.tiles} tiles" if r.tiled else "whole")
    print(f"{Path(path).name:22} {'tiled' if tile else 'whole'} {mode:>4}: {min(times):5.2f} s "
          f"(runs {times[0]:.2f} / {times[1]:.2f}), exit {r.chosen}, {where}, "
          f"peak RSS {peak:.2f} GB", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", nargs="+", default=["1600x1200", "1920x1280", "2048x1536",
                                                   "2400x1600"])
    ap.add_argument("--one", nargs=3, metavar=("PATH", "TILE", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        one(args.one[0], int(args.one[1]), args.one[2])
        return
    for path in make(args.sizes):
        for mode in ("auto", "5"):
            for tile in (1024, 0):
                subprocess.run([sys.executable, __file__, "--one", str(path), str(tile), mode],
                               check=True, stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
