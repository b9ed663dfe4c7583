"""Sample crops of 512 px (before) against rbqe.tiling.sample_side (about a tenth of the
picture, 256-512 px) on mosaics of BSDS500-val photos of 2.5-3.8 MP at QF 10-90, under
auto: the wall time of ``Enhancer.enhance`` and the PSNR against the clean mosaic.
Run from the repository root, training paused:
``python docs/bench/sample_side.py > docs/bench/sample_side.txt``.
"""

import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT)]

from bench_tile_exits import mosaic  # noqa: E402

import rbqe.tiled as tiled  # noqa: E402
from rbqe.engine import Enhancer  # noqa: E402
from rbqe.exit_policy import JpegPrior  # noqa: E402
from rbqe.io.read import load_image  # noqa: E402
from rbqe.tiling import Box, sample_boxes  # noqa: E402
from rbqe.train.evaluate import list_clean_images  # noqa: E402

WORK = Path("/tmp/sample_side")


def fixed_512(boxes: list[Box]) -> list[Box]:
    return sample_boxes(boxes, 512)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def main() -> None:
    photos = list_clean_images([ROOT.parent / "shared" / "datasets" / "val" / "bsds500_val"])
    enh = Enhancer(device="cpu", backend="torch")
    WORK.mkdir(exist_ok=True)
    rows = []
    for w, h in [(1920, 1280), (2400, 1600), (2048, 1536)]:
        for q in (10, 30, 50, 90):
            for seed in (100, 101):
                clean = mosaic(photos, w, h, seed=seed + q + w)
                path = WORK / f"{w}_{q}_{seed}.jpg"
                cv2.imwrite(str(path), clean[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
                src = load_image(path)
                res = {}
                for name, boxes_of in (("512", fixed_512), ("adaptive", sample_boxes)):
                    tiled.sample_boxes = boxes_of  # what rbqe.tiled calls
                    t = time.perf_counter()
                    r = enh.enhance(src.pixels, "auto", prior=JpegPrior.of(src))
                    dt = time.perf_counter() - t
                    out = np.round(np.clip(r.exit_result(r.chosen).image, 0, 1) * 255)
                    assert r.tile_exits is not None
                    hist = {k: v for k, v in r.tile_exits.histogram.items() if v}
                    res[name] = (dt, psnr(out, clean), r.chosen, hist)
                a, b = res["512"], res["adaptive"]
                rows.append((b[0] / a[0], b[1] - a[1]))
                print(f"{w}x{h} q{q} s{seed}: 512 {a[0]:.2f}s {a[1]:.3f}dB e{a[2]} {a[3]} | "
                      f"adaptive {b[0]:.2f}s {b[1]:.3f}dB e{b[2]} {b[3]} | "
                      f"time x{b[0] / a[0]:.2f} dPSNR {b[1] - a[1]:+.4f}", flush=True)
    r = np.array(rows)
    print(f"mean time ratio {r[:, 0].mean():.3f} (min {r[:, 0].min():.2f}, max "
          f"{r[:, 0].max():.2f}); dPSNR mean {r[:, 1].mean():+.4f}, worst {r[:, 1].min():+.4f}, "
          f"best {r[:, 1].max():+.4f}")


if __name__ == "__main__":
    main()
