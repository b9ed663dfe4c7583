"""What a JPEG file says its image can be: each 8x8 block's DCT coefficients lie within
half a quantisation step of the decoded ones. An output is made consistent with that by
clamping its own coefficients into those intervals (the quantisation constraint set).

Applied to colour JPEGs saved without chroma subsampling (4:4:4) only. The network saw
4:2:0 JPEGs in training and blurs full-resolution colour; on 8 McMaster photos at 4:4:4
(2026-12-06, torch f32, exit 5 against the JPEG) the projection turned -0.53 dB into +0.29
at quality 95, +0.03 into +0.53 at 90, +0.47 into +0.83 at 80 and +1.43 into +1.52 at 20
(worst photo at 95: -2.14 -> -0.22 dB). On 4:2:0 and gray JPEGs projecting the luma moved
10 BSDS500-val photos by at most +0.002 dB at QF 10-90, so those are left as they are.

The pixels must keep the file's block grid: :func:`rbqe.io.load_image` sets
``LoadedImage.jpeg_444_tables`` only for an unrotated (EXIF orientation 1) YCbCr JPEG.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rbqe.color import rgb_band, split_band

BLOCK = 8
BAND_ROWS = 256  # rows per band: a 24 MP image is worked a band at a time
# The orthonormal 8-point DCT-II, which is the JPEG standard's forward DCT.
_DCT = np.array([[np.sqrt((1 if u == 0 else 2) / BLOCK) * np.cos((2 * x + 1) * u * np.pi / 16)
                  for x in range(BLOCK)] for u in range(BLOCK)], np.float32)
# The 2-D DCT of a block as one 64x64 matrix on its 64 pixels (row-major): one large
# matrix product per band instead of two tiny ones per block (12 MP, 2 cores: 1.09 -> 0.87 s).
_DCT2 = np.kron(_DCT, _DCT)


def _rows_of_blocks(plane: np.ndarray) -> np.ndarray:
    """``(h, w)`` with h, w multiples of 8 -> ``(h/8 * w/8, 64)``: a block per row."""
    h, w = plane.shape
    return plane.reshape(h // BLOCK, BLOCK, w // BLOCK, BLOCK).swapaxes(1, 2).reshape(-1, 64)


def _plane_of_blocks(rows: np.ndarray, h: int, w: int) -> np.ndarray:
    """The inverse of :func:`_rows_of_blocks`."""
    return rows.reshape(h // BLOCK, w // BLOCK, BLOCK, BLOCK).swapaxes(1, 2).reshape(h, w)


def _ycbcr_planes(rgb: np.ndarray) -> list[np.ndarray]:
    """``(h, w, 3)`` RGB in [0, 1] -> Y, Cb, Cr planes as the encoder's DCT sees them:
    0-255, level-shifted by 128 (the package's one YCbCr, :mod:`rbqe.color`)."""
    h, w = rgb.shape[:2]
    y, cbcr = np.empty((h, w), np.float32), np.empty((h, w, 2), np.float32)
    split_band(rgb, y, cbcr)
    return [p * np.float32(255.0) - np.float32(128.0) for p in (y, cbcr[..., 0], cbcr[..., 1])]


def _project_band(out: np.ndarray, inp: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """``out`` (h, w, 3, RGB in [0, 1], h and w multiples of 8) with its YCbCr blocks' DCT
    coefficients clamped to within half a step of ``inp``'s; ``steps`` (3, 64)."""
    h, w = out.shape[:2]
    planes_out, planes_in = _ycbcr_planes(out), _ycbcr_planes(inp)
    for c in range(3):
        q = steps[c]
        kept = np.round(_rows_of_blocks(planes_in[c]) @ _DCT2.T / q)
        coef = _rows_of_blocks(planes_out[c]) @ _DCT2.T
        coef = np.clip(coef, (kept - 0.5) * q, (kept + 0.5) * q)
        planes_out[c] = (_plane_of_blocks(coef @ _DCT2, h, w) + np.float32(128.0)) / np.float32(255.0)
    result = np.empty_like(out)
    rgb_band(planes_out[0], np.stack(planes_out[1:], axis=-1), result)  # clipped to [0, 1]
    return result


def consistent(image: np.ndarray, loaded: Any) -> np.ndarray:
    """``image`` (an exit of ``loaded``: (H, W, 3) float in [0, 1]) made consistent with
    ``loaded``'s JPEG where that applies (``loaded.jpeg_444_tables``); else ``image`` itself.

    Blocks cut by the right or bottom edge are left as they are. The result is float32.
    """
    tables = getattr(loaded, "jpeg_444_tables", None)
    if tables is None or image.ndim != 3 or image.shape[2] != 3:
        return image
    h8 = image.shape[0] // BLOCK * BLOCK
    w8 = image.shape[1] // BLOCK * BLOCK
    if not h8 or not w8:
        return image
    steps = np.array(tables, np.float32).reshape(3, BLOCK * BLOCK)
    out = np.array(image, np.float32)  # a copy: exits are shared with their callers
    src = np.asarray(loaded.pixels)
    for y0 in range(0, h8, BAND_ROWS):
        y1 = min(h8, y0 + BAND_ROWS)
        out[y0:y1, :w8] = _project_band(out[y0:y1, :w8],
                                        np.asarray(src[y0:y1, :w8], np.float32), steps)
    return out
