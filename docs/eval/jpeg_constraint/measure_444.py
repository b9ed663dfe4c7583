"""Prototype: quantisation-constraint projection of the network's output for 4:4:4 JPEGs.
McMaster colour photos saved by Pillow at 4:4:4 q80/90/95 (and q20); exit 5 and auto,
torch f32; RGB PSNR against the lossless original, before and after projecting the output's
Y/Cb/Cr 8x8 DCT coefficients into the input's quantisation intervals."""
import glob
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
from rbqe.engine import Enhancer  # noqa: E402
from rbqe.io import load_image  # noqa: E402

C = np.array([[np.sqrt((1 if u == 0 else 2) / 8) * np.cos((2 * x + 1) * u * np.pi / 16)
               for x in range(8)] for u in range(8)])  # orthonormal DCT-II == JPEG's FDCT

def ycc(rgb):  # JFIF, 0-255
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return np.stack([0.299*r + 0.587*g + 0.114*b,
                     -0.168736*r - 0.331264*g + 0.5*b + 128,
                     0.5*r - 0.418688*g - 0.081312*b + 128], -1)

def rgb(y):
    Y, cb, cr = y[..., 0], y[..., 1] - 128, y[..., 2] - 128
    return np.stack([Y + 1.402*cr, Y - 0.344136*cb - 0.714136*cr, Y + 1.772*cb], -1)

def blocks(p):  # (H, W) -> (H/8, W/8, 8, 8)
    h, w = p.shape
    return p.reshape(h // 8, 8, w // 8, 8).transpose(0, 2, 1, 3)

def unblocks(b):
    n, m = b.shape[:2]
    return b.transpose(0, 2, 1, 3).reshape(n * 8, m * 8)

def project(out, inp, tables):
    """out, inp: (H, W, 3) in [0, 1]; tables: {0: luma 64, 1: chroma 64} natural order."""
    h, w = (inp.shape[0] // 8) * 8, (inp.shape[1] // 8) * 8
    yo, yi = ycc(out * 255.0), ycc(inp * 255.0)
    res = yo.copy()
    for c in range(3):
        q = np.array(tables[0 if c == 0 else 1], np.float64).reshape(8, 8)
        bi = C @ blocks(yi[:h, :w, c] - 128) @ C.T
        bo = C @ blocks(yo[:h, :w, c] - 128) @ C.T
        k = np.round(bi / q)
        bo = np.clip(bo, (k - 0.5) * q, (k + 0.5) * q)
        res[:h, :w, c] = unblocks(C.T @ bo @ C) + 128
    return np.clip(rgb(res) / 255.0, 0, 1)

def psnr(a, b):
    a8 = np.round(np.clip(a, 0, 1) * 255)
    b8 = np.round(np.clip(b, 0, 1) * 255)
    return 10 * np.log10(255 ** 2 / ((a8 - b8) ** 2).mean())

def _written(buf: io.BytesIO) -> Path:
    path = Path("/tmp/measure_444.jpg")
    path.write_bytes(buf.getvalue())
    return path


def main() -> None:
    enh = Enhancer(ROOT / "weights" / "rbqe_jpeg.safetensors", device="cpu", tile=0, backend="torch", precision="f32")
    files = sorted(glob.glob(str(ROOT.parent / "shared" / "datasets" / "val" / "mcmaster" / "*.png")))[: int(sys.argv[1]) if len(sys.argv) > 1 else 18]
    for q, sub in ((95, 0), (90, 0), (80, 0), (50, 0), (20, 0), (90, 2), (20, 2)):
        d_in, d_out, d_proj = [], [], []
        for f in files:
            orig = np.asarray(Image.open(f).convert("RGB"), np.float64) / 255.0
            buf = io.BytesIO()
            Image.open(f).convert("RGB").save(buf, "JPEG", quality=q, subsampling=sub)
            src = load_image(_written(buf))
            out = enh.enhance(src.pixels, 5).exit_result(5).image.astype(np.float64)
            d_in.append(psnr(src.pixels, orig))
            d_out.append(psnr(out, orig))
            if sub == 0:
                d_proj.append(psnr(project(out, src.pixels.astype(np.float64), src.quant_tables), orig))
        line = f"q{q} {'4:4:4' if sub == 0 else '4:2:0'}: exit 5 {np.mean(d_out) - np.mean(d_in):+.3f} dB"
        if d_proj:
            line += f", projected {np.mean(d_proj) - np.mean(d_in):+.3f} dB (worst photo {min(np.array(d_proj) - np.array(d_in)):+.2f}, unprojected worst {min(np.array(d_out) - np.array(d_in)):+.2f})"
        print(line, flush=True)


if __name__ == "__main__":
    main()
