"""Colour: BT.601 full-range luma and YCbCr, as JPEG uses.

:func:`luma` is the one luma formula of the package (engine, IQA, saving, training data
and metrics). The whole-frame conversions work in bands of rows (see ``BAND_PIXELS``),
on preallocated float32 frames, with the same operations in the same order as the plain
formulas (so the same values): on a 24 MP photo the plain numpy expressions made ~5
full-frame temporaries plus stack/clip/astype copies, more than the tiled network itself.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rbqe.bands import row_bands

LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # Y = 0.299 R + 0.587 G + 0.114 B
# Colour conversions work in bands of rows of about this many pixels, so that their float32
# temporaries stay small whatever the image size.
BAND_PIXELS = 1 << 20

def luma(r: Any, g: Any, b: Any) -> Any:
    """``(0.299 r + 0.587 g) + 0.114 b`` of three planes of one kind (numpy arrays or torch
    tensors), computed in their own dtype: a Python-float weight takes the planes' float
    dtype (NumPy and torch alike), so float32 planes give float32 arithmetic, float64
    planes float64."""
    kr, kg, kb = LUMA_WEIGHTS
    return kr * r + kg * g + kb * b


def luma_of(pixels: np.ndarray, dtype: type = np.float32) -> np.ndarray:
    """``(..., C)`` pixels, ``C`` 1 or 3 -> ``(...)`` luma as ``dtype``: the one channel
    of a gray image, else :func:`luma` of the RGB channels computed in ``dtype``."""
    if pixels.shape[-1] == 1:
        return np.ascontiguousarray(pixels[..., 0], dtype=dtype)
    rgb: np.ndarray = np.asarray(pixels, dtype=dtype)
    return luma(rgb[..., 0], rgb[..., 1], rgb[..., 2])


def split_ycbcr(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(H, W, 3)`` RGB -> luma ``(H, W)`` and chroma ``(H, W, 2)``, float32."""
    rgb = np.asarray(rgb, dtype=np.float32)
    h, w = rgb.shape[:2]
    y = np.empty((h, w), np.float32)
    cbcr = np.empty((h, w, 2), np.float32)
    for r0, r1 in row_bands(h, w, BAND_PIXELS):
        split_band(rgb[r0:r1], y[r0:r1], cbcr[r0:r1])
    return y, cbcr


def ycbcr_to_rgb(y: np.ndarray, cbcr: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Luma ``(H, W)`` and chroma ``(H, W, 2)`` -> RGB ``(H, W, 3)`` float32 clipped to
    ``[0, 1]``, into ``out`` when given (which must not overlap ``y`` or ``cbcr``)."""
    y = np.asarray(y, dtype=np.float32)
    if out is None:
        out = np.empty((*y.shape, 3), np.float32)
    for r0, r1 in row_bands(y.shape[0], y.shape[1], BAND_PIXELS):
        rgb_band(y[r0:r1], cbcr[r0:r1], out[r0:r1])
    return out


def split_band(rgb: np.ndarray, y: np.ndarray, cbcr: np.ndarray) -> None:
    """One band of :func:`split_ycbcr`: float32 ``rgb`` into ``y`` and ``cbcr``."""
    np.copyto(y, luma_of(rgb))
    t = np.empty_like(y)
    for c, (src, k) in enumerate(((rgb[..., 2], 0.564), (rgb[..., 0], 0.713))):
        np.subtract(src, y, out=t)
        t *= np.float32(k)
        np.add(t, np.float32(0.5), out=cbcr[..., c])


def rgb_band(y: np.ndarray, cbcr: np.ndarray, out: np.ndarray) -> None:
    """One band of :func:`ycbcr_to_rgb`, into ``out``."""
    cb = np.subtract(cbcr[..., 0], np.float32(0.5), dtype=np.float32)
    cr = np.subtract(cbcr[..., 1], np.float32(0.5), dtype=np.float32)
    t = np.multiply(cr, np.float32(1.403))
    np.add(y, t, out=out[..., 0])  # r = y + 1.403 cr
    np.multiply(cb, np.float32(0.344), out=t)
    np.subtract(y, t, out=out[..., 1])
    np.multiply(cr, np.float32(0.714), out=t)
    out[..., 1] -= t  # g = y - 0.344 cb - 0.714 cr
    np.multiply(cb, np.float32(1.773), out=t)
    np.add(y, t, out=out[..., 2])  # b = y + 1.773 cb
    np.clip(out, 0, 1, out=out)
