"""PSNR of the 12 MP mosaics of make_mosaics.py (QF 20 and 80) forced to exits 3, 4 and 5,
against the clean mosaic: what auto's choice between exits 3 and 4 buys on them.

    python docs/bench/twelve_mp/exit_psnr.py WEIGHTS...   (from the repository root,
    after make_mosaics.py has written /tmp/m12)
"""

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT)]

from bench_tile_exits import mosaic  # noqa: E402

from rbqe.engine import Enhancer  # noqa: E402
from rbqe.io import load_image  # noqa: E402
from rbqe.train.evaluate import list_clean_images  # noqa: E402

photos = list_clean_images([ROOT.parent / "shared" / "datasets" / "val" / "bsds500_val"])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1 / np.mean((a.astype(np.float64) - b) ** 2)))


for w in sys.argv[1:]:
    enh = Enhancer(w, device="cpu")
    for seed, q in ((0, 20), (2, 80)):  # make_mosaics.py's seeds for these qualities
        clean = mosaic(photos, 4000, 3000, seed=seed).astype(np.float32) / 255
        src = load_image(f"/tmp/m12/m_q{q}.jpg")
        out = {k: psnr(np.round(enh.enhance(src.pixels, k).image * 255) / 255, clean)
               for k in (3, 4, 5)}
        print(f"{w} QF {q}: input {psnr(src.pixels, clean):.3f} dB, "
              + " ".join(f"exit {k} {v:.3f}" for k, v in out.items()), flush=True)
