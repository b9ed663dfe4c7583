"""Full-reference metrics on 8-bit images: PSNR, SSIM and PSNR-B.

All functions take ``(H, W)`` or ``(H, W, C)`` arrays holding 8-bit values (uint8, or
float already rounded to integers in ``[0, 255]``) and use no border crop, the standard
protocol for JPEG artifact removal.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from rbqe.color import luma_of


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB over all pixels and channels (peak 255)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * math.log10(255.0**2 / mse) if mse > 0 else float("inf")


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM (Wang et al. 2004): 11x11 Gaussian window, sigma 1.5, mean over channels."""
    if a.ndim == 3:
        return float(np.mean([ssim(a[..., c], b[..., c]) for c in range(a.shape[2])]))
    x, y = a.astype(np.float64), b.astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(z: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(z, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    num = (2 * mx * my + c1) * (2 * sxy + c2)
    den = (mx * mx + my * my + c1) * (sxx + syy + c2)
    return float(np.mean(num / den))


def _blocking_effect_factor(im: np.ndarray, block: int = 8) -> float:
    """BEF of Yim & Bovik (2011): squared differences across block edges vs elsewhere."""
    h, w = im.shape
    dh = np.diff(im, axis=1) ** 2  # (h, w-1): between columns j and j+1
    dv = np.diff(im, axis=0) ** 2
    hb = np.arange(block - 1, w - 1, block)  # boundary pairs (j, j+1) with j+1 % 8 == 0
    vb = np.arange(block - 1, h - 1, block)
    hbc = np.setdiff1d(np.arange(w - 1), hb)
    vbc = np.setdiff1d(np.arange(h - 1), vb)
    n_hb, n_hbc = h * len(hb), h * len(hbc)
    n_vb, n_vbc = w * len(vb), w * len(vbc)
    d_b = (dh[:, hb].sum() + dv[vb, :].sum()) / max(n_hb + n_vb, 1)
    d_bc = (dh[:, hbc].sum() + dv[vbc, :].sum()) / max(n_hbc + n_vbc, 1)
    t = math.log2(block) / math.log2(min(h, w)) if min(h, w) > 1 else 0.0
    return max(0.0, t * (d_b - d_bc))


def psnr_b(reference: np.ndarray, test: np.ndarray) -> float:
    """PSNR-B: PSNR with the MSE raised by the test image's blocking effect factor."""
    if reference.ndim == 3:
        return float(np.mean([psnr_b(reference[..., c], test[..., c])
                              for c in range(reference.shape[2])]))
    x, y = reference.astype(np.float64), test.astype(np.float64)
    mse = float(np.mean((x - y) ** 2)) + _blocking_effect_factor(y)
    return 10 * math.log10(255.0**2 / mse) if mse > 0 else float("inf")


def y_channel(rgb: np.ndarray) -> np.ndarray:
    """BT.601 full-range luma of 8-bit RGB, rounded to 8-bit values."""
    return np.round(luma_of(rgb, np.float64))


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Float ``[0, 1]`` -> uint8 with rounding, as saving a PNG does."""
    return np.clip(np.floor(img * 255.0 + 0.5), 0, 255).astype(np.uint8)
