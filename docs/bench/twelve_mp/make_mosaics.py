"""Three 4000x3000 JPEGs in /tmp/m12: mosaics of BSDS500-val photos (bench_tile_exits.mosaic,
seeds 0-2) saved by OpenCV at QF 20, 50 and 80, for the 12 MP images-per-minute figure
(`bash docs/bench/twelve_mp/time.sh OLD.safetensors [NEW.safetensors]` times them)."""

import sys
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT)]

from bench_tile_exits import mosaic  # noqa: E402

from rbqe.train.evaluate import list_clean_images  # noqa: E402

photos = list_clean_images([ROOT.parent / "shared" / "datasets" / "val" / "bsds500_val"])
out = Path("/tmp/m12")
out.mkdir(exist_ok=True)
for i, q in enumerate((20, 50, 80)):
    rgb = mosaic(photos, 4000, 3000, seed=i)
    cv2.imwrite(str(out / f"m_q{q}.jpg"), rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
print(sorted(p.name for p in out.iterdir()))
