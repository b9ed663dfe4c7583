"""Prototype: the quantisation-constraint projection on the luma only, as it would apply
to 4:2:0 and gray JPEGs: the first 10 BSDS500-val photos at QF 10/30/50/90, exit 5, torch
f32, PSNR change over the JPEG with and without it (docs/eval/jpeg_constraint/README.md)."""

import glob
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure_444 import ROOT, C, _written, blocks, psnr, rgb, unblocks, ycc  # noqa: E402

from rbqe.engine import Enhancer  # noqa: E402
from rbqe.io import load_image  # noqa: E402


def project_luma(out: np.ndarray, inp: np.ndarray, table: tuple[int, ...]) -> np.ndarray:
    """``out``'s luma projected into ``inp``'s quantisation intervals; its colour kept."""
    h, w = (inp.shape[0] // 8) * 8, (inp.shape[1] // 8) * 8
    gray = out.shape[2] == 1
    yo = out[..., 0] * 255.0 if gray else ycc(out * 255.0)
    yi = inp[..., 0] * 255.0 if gray else ycc(inp * 255.0)[..., 0]
    lum = (yo if gray else yo[..., 0]).copy()
    q = np.array(table, np.float64).reshape(8, 8)
    bi = C @ blocks(yi[:h, :w] - 128) @ C.T
    bo = C @ blocks(lum[:h, :w] - 128) @ C.T
    k = np.round(bi / q)
    lum[:h, :w] = unblocks(C.T @ np.clip(bo, (k - 0.5) * q, (k + 0.5) * q) @ C) + 128
    if gray:
        return np.clip(lum / 255.0, 0, 1)[..., None]
    yo[..., 0] = lum
    return np.clip(rgb(yo) / 255.0, 0, 1)


def main() -> None:
    enh = Enhancer(ROOT / "weights" / "rbqe_jpeg.safetensors", device="cpu", tile=0,
                   backend="torch", precision="f32")
    val = ROOT.parent / "shared" / "datasets" / "val" / "bsds500_val"
    files = sorted(glob.glob(str(val / "*.jpg")))[:10]
    for q in (10, 30, 50, 90):
        for gray in (True, False):
            d = []
            for f in files:
                im = Image.open(f).convert("L" if gray else "RGB")
                orig = np.asarray(im, np.float64) / 255.0
                orig = orig[..., None] if gray else orig
                buf = io.BytesIO()
                im.save(buf, "JPEG", quality=q)
                src = load_image(_written(buf))
                out = enh.enhance(src.pixels, 5).exit_result(5).image.astype(np.float64)
                out = out if out.ndim == 3 else out[..., None]
                pj = project_luma(out, src.pixels.astype(np.float64), src.quant_tables[0])
                d.append((psnr(src.pixels, orig), psnr(out, orig), psnr(pj, orig)))
            a = np.array(d)
            print(f"q{q} {'gray' if gray else '4:2:0 colour'}: exit 5 "
                  f"{a[:, 1].mean() - a[:, 0].mean():+.3f}, luma-projected "
                  f"{a[:, 2].mean() - a[:, 0].mean():+.3f} (worst change "
                  f"{min(a[:, 2] - a[:, 1]):+.3f})", flush=True)


if __name__ == "__main__":
    main()
