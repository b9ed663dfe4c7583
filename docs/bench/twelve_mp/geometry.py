"""Tile geometry and sample crops on 12 MP mosaics, in one process: each config
``TILE/OVERLAP/SIDE`` (tile side, tile overlap, sample crop side) enhances the same eight
4000x3000 mosaics of BSDS500-val photos (QF 10, 30, 50, 90; two seeds) under auto;
prints the time of ``Enhancer.enhance``, PSNR against the clean mosaic, the per-tile exit
histogram, and each config's mean time ratio and PSNR change against the first config.
``MMAP_MB`` in the environment sets rbqe.heap.MMAP_THRESHOLD (MB). Run from the
repository root, training paused:
``python docs/bench/twelve_mp/geometry.py 1024/64/512 1024/32/512 1088/64/512``.
"""

import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT)]

import rbqe.heap as heap  # noqa: E402

heap.MMAP_THRESHOLD = int(os.environ.get("MMAP_MB", "64")) << 20

from bench_tile_exits import mosaic  # noqa: E402

import rbqe.tiled as tiled  # noqa: E402
from rbqe.engine import Enhancer  # noqa: E402
from rbqe.exit_policy import JpegPrior  # noqa: E402
from rbqe.io.read import load_image  # noqa: E402
from rbqe.tiling import sample_boxes  # noqa: E402
from rbqe.train.evaluate import list_clean_images  # noqa: E402

WORK = Path("/tmp/twelve_mp_geometry")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b) ** 2)))


def main() -> None:
    configs = [tuple(int(v) for v in c.split("/")) for c in sys.argv[1:]] \
        or [(1024, 64, 512), (1024, 32, 512), (1088, 64, 512)]
    photos = list_clean_images([ROOT.parent / "shared" / "datasets" / "val" / "bsds500_val"])
    engines = {c: Enhancer(device="cpu", backend="torch", tile=c[0], tile_exits="per-tile")
               for c in configs}  # the default when this was measured
    WORK.mkdir(exist_ok=True)
    rows: dict[tuple[int, ...], list[tuple[float, float]]] = {c: [] for c in configs}
    for q in (10, 30, 50, 90):
        for seed in (200, 201):
            clean = mosaic(photos, 4000, 3000, seed=seed + q)
            path = WORK / f"m_{q}_{seed}.jpg"
            cv2.imwrite(str(path), clean[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
            src = load_image(path)
            line = []
            for c in configs:
                tile, overlap, side = c
                tiled.TILE_OVERLAP = overlap  # what rbqe.tiled reads
                tiled.sample_boxes = lambda boxes, s=side: sample_boxes(boxes, s)
                t = time.perf_counter()
                r = engines[c].enhance(src.pixels, "auto", prior=JpegPrior.of(src))
                dt = time.perf_counter() - t
                out = np.round(np.clip(r.exit_result(r.chosen).image, 0, 1) * 255)
                assert r.tile_exits is not None
                hist = {k: v for k, v in r.tile_exits.histogram.items() if v}
                rows[c].append((dt, psnr(out, clean)))
                line.append(f"{tile}/{overlap}/{side}: {dt:.2f}s {rows[c][-1][1]:.3f}dB {hist}")
            print(f"q{q} s{seed} | " + " | ".join(line), flush=True)
    base = np.array(rows[configs[0]])
    for c in configs[1:]:
        r = np.array(rows[c])
        d = r[:, 1] - base[:, 1]
        print(f"{c} vs {configs[0]}: time x{(r[:, 0] / base[:, 0]).mean():.3f} (sum "
              f"{r[:, 0].sum():.1f} vs {base[:, 0].sum():.1f} s); dPSNR mean {d.mean():+.4f}, "
              f"worst {d.min():+.4f}, best {d.max():+.4f}")


if __name__ == "__main__":
    main()
