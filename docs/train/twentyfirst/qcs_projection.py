"""Does projecting each exit's output onto the JPEG's quantisation constraint set pay?

The decoder knows each 8x8 luma block's DCT coefficient only to within half a quantiser
step: the clean image lies in the box ``[(k - 1/2) q, (k + 1/2) q]`` per coefficient.
Clipping an output's coefficients into those boxes can only bring it closer to the clean
image (up to 8-bit rounding), so the gain it gives measures how often the network steps
outside what the file allows. Gray val photos, libjpeg at each QF, all five exits.

    python docs/train/twentyfirst/qcs_projection.py WEIGHTS|- N QF[,QF...] [RESAVE_QF]

With RESAVE_QF each JPEG is decoded and saved again at that quality, and the projection
uses the second file's tables (a blind case: the tables do not describe the damage).
"""

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from rbqe.engine import Enhancer  # noqa: E402
from rbqe.train.data import jpeg_roundtrip_with_tables  # noqa: E402
from rbqe.train.evaluate import list_clean_images, read_clean  # noqa: E402
from rbqe.train.metrics import psnr, to_uint8  # noqa: E402

VAL = ROOT.parent / "shared" / "datasets" / "val" / "bsds500_val"


def dct_matrix() -> np.ndarray:
    """The orthonormal 8-point DCT-II, which is JPEG's FDCT."""
    k, i = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
    d = np.sqrt(2 / 8) * np.cos(np.pi * (2 * i + 1) * k / 16)
    d[0] /= np.sqrt(2)
    return d


D = dct_matrix()


def project(out: np.ndarray, decoded: np.ndarray, table: tuple[int, ...]) -> tuple[np.ndarray, float]:
    """``out`` (float, 0-255) with every whole 8x8 block's coefficients clipped into the
    boxes that ``decoded`` (the JPEG's pixels) and its luma ``table`` allow; and the share
    of coefficients that were clipped. The quantised indices are recovered from the
    decoded pixels (exact where the step is more than a few levels)."""
    h8, w8 = decoded.shape[0] // 8 * 8, decoded.shape[1] // 8 * 8

    def coeffs(img: np.ndarray) -> np.ndarray:
        b = img[:h8, :w8].astype(np.float64).reshape(h8 // 8, 8, w8 // 8, 8).transpose(0, 2, 1, 3)
        return D @ (b - 128) @ D.T

    q = np.asarray(table, np.float64).reshape(8, 8)
    k = np.round(coeffs(decoded) / q)
    c = coeffs(out)
    clipped = np.clip(c, (k - 0.5) * q, (k + 0.5) * q)
    res = out.astype(np.float64).copy()
    res[:h8, :w8] = (D.T @ clipped @ D + 128).transpose(0, 2, 1, 3).reshape(h8, w8)
    return res, float(np.mean(clipped != c))


def main() -> None:
    weights = None if sys.argv[1] == "-" else sys.argv[1]
    count, qualities = int(sys.argv[2]), [int(q) for q in sys.argv[3].split(",")]
    resave = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    enhancer = Enhancer(weights, device="cpu")
    paths = list_clean_images([VAL])[:count]
    sums = {q: np.zeros((5, 3)) for q in qualities}
    for path in paths:
        clean, _ = read_clean(path, True)
        for q in qualities:
            comp, prior = jpeg_roundtrip_with_tables(clean, q)
            if resave:  # the decoded JPEG saved again: its pixels and its tables
                comp, prior = jpeg_roundtrip_with_tables(comp, resave)
            result = enhancer.enhance(comp.astype(np.float32) / 255.0, "all", prior=prior)
            base = psnr(clean, comp)
            for e, ex in enumerate(result.exits):
                img = ex.image[..., 0] if ex.image.ndim == 3 else ex.image
                plain = to_uint8(img)
                proj, share = project(np.clip(img * 255.0, 0, 255), comp, prior.luma)
                projected = np.clip(np.round(proj), 0, 255).astype(np.uint8)
                sums[q][e] += [psnr(clean, plain) - base, psnr(clean, projected) - base, share]
    how = f", each re-saved at QF {resave} (its tables used)" if resave else ""
    print(f"{weights or 'shipped weights'}, {len(paths)} gray val photos{how}; per exit: "
          "dB over the JPEG, plain -> projected (difference), share of coefficients clipped")
    for q in qualities:
        m = sums[q] / len(paths)
        print(f"QF {q}:  " + "  ".join(
            f"e{e + 1} {m[e, 0]:+.4f} -> {m[e, 1]:+.4f} ({m[e, 1] - m[e, 0]:+.4f}, {m[e, 2]:.2%})"
            for e in range(5)))


if __name__ == "__main__":
    main()
