"""Training data: random crops of clean photos, compressed on the fly with libjpeg.

Every batch is a pure function of ``(seed, step)``, so a resumed run sees exactly the
batches an uninterrupted one would have seen.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from rbqe.arch import MULTIPLE, NUM_EXITS
from rbqe.color import luma_of
from rbqe.errors import UsageError
from rbqe.exit_policy import JpegPrior

# QF 10-50 is the paper's range; 55-95 is what real photos mostly carry. The mix keeps
# most of the capacity on heavy compression while teaching the net not to over-smooth
# light compression.
_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
HEAVY_QF = (10, 50)
LIGHT_QF = (51, 95)
LIGHT_SHARE = 0.25
GRAY_SHARE = 0.2  # RGB model: patches made gray (gray photos exist; they must stay gray)
# Most training photos are JPEGs themselves (quality 95-97). A photo re-saved as it is keeps
# its 8x8 grid (16x16 for 4:2:0 chroma), so its second compression requantises the first
# one's coefficients; a random crop misses that grid 63 times in 64. Crops on the grid
# (with half turns and flips only: a quarter turn would transpose the first JPEG's
# quantisation table) teach that case too.
SOURCE_GRID = 16


def to_luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 full-range luma of an 8-bit RGB image, as float32 in [0, 255]."""
    return luma_of(rgb, np.float32)


def jpeg_roundtrip(img: np.ndarray, quality: int) -> np.ndarray:
    """Encode and decode with libjpeg (OpenCV) at ``quality``.

    Args:
        img: ``(H, W)`` gray or ``(H, W, 3)`` RGB uint8. Colour uses 4:2:0 chroma.
    """
    return _jpeg_decode(_jpeg_encode(img, quality), img.ndim == 3)


def jpeg_roundtrip_with_tables(img: np.ndarray, quality: int) -> tuple[np.ndarray, JpegPrior]:
    """:func:`jpeg_roundtrip`, with the file's quantisation tables as Pillow reads them
    (what :func:`rbqe.io.load_image` gives the exit policy for a user's JPEG)."""
    buf = _jpeg_encode(img, quality)
    with Image.open(io.BytesIO(buf.tobytes())) as im:
        prior = JpegPrior.from_tables(im.quantization, quality)
    assert prior is not None
    return _jpeg_decode(buf, img.ndim == 3), prior


def _jpeg_encode(img: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img[..., ::-1] if img.ndim == 3 else img,
                           [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"libjpeg could not encode a {img.shape} image at quality {quality}")
    return buf


def _jpeg_decode(buf: np.ndarray, colour: bool) -> np.ndarray:
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR if colour else cv2.IMREAD_GRAYSCALE)
    assert img is not None  # buf is what libjpeg just encoded
    return img[..., ::-1] if colour else img


def load_folder_images(folders: Sequence[str | Path], min_side: int = 64,
                       what: str = "training") -> list[np.ndarray]:
    """Read every image directly inside (or below) ``folders`` as RGB uint8; ``what``
    names them in the error (``--val``'s said "no training images")."""
    images = []
    for folder in folders:
        for path in sorted(Path(folder).rglob("*")):
            if path.suffix.lower() not in _SUFFIXES:
                continue
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None or min(bgr.shape[:2]) < min_side:
                continue
            images.append(np.ascontiguousarray(bgr[..., ::-1]))
    if not images:
        where = ", ".join(map(str, folders))
        missing = [str(f) for f in folders if not Path(f).is_dir()]
        # A resumed run's folders are stored as given: relative to where it started.
        hint = (f" ({', '.join(missing)}: no such folder here, in {Path.cwd()})"
                if missing else "")
        raise UsageError(f"no {what} images found in {where}{hint}")
    return images


def quick_val_pick(count: int, size: int) -> list[int]:
    """Indices (sorted) of the ``size`` photos of ``count`` that quick validation uses: a
    fixed draw, so that runs on other machines can carry the same few photos."""
    pick = np.random.default_rng(1234).choice(count, size=min(size, count), replace=False)
    return sorted(int(i) for i in pick)


def sample_quality(rng: np.random.Generator, light_share: float = LIGHT_SHARE) -> int:
    lo, hi = LIGHT_QF if rng.random() < light_share else HEAVY_QF
    return int(rng.integers(lo, hi + 1))


@dataclass
class PatchSampler:
    """Makes (compressed, clean, quality) batches.

    Attributes:
        images: RGB uint8 photos.
        channels: 1 trains on luma (half the patches compressed as gray, half as
            4:2:0 colour whose decoded luma is used); 3 trains on RGB (gray photos are
            replicated to three channels).
        patch: Crop size, a multiple of 32.
        batch: Patches per batch.
        seed: Base seed.
        light_share: Fraction of patches compressed at QF 51-95 (the rest at 10-50);
            0 trains on the paper's range only.
        gray_share: RGB model only: fraction of patches turned gray before compression.
        aligned_share: Fraction of crops on the photo's own JPEG grid (``SOURCE_GRID``);
            0 (no draw at all) keeps the batches of runs from before it existed.
    """

    images: list[np.ndarray]
    channels: int = 1
    patch: int = 96
    batch: int = 16
    seed: int = 0
    light_share: float = LIGHT_SHARE
    gray_share: float = GRAY_SHARE
    aligned_share: float = 0.0

    def batch_at(self, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return ``(inputs, targets, qualities)``: ``(B, C, P, P)`` float32 in [0,1] and ``(B,)``."""
        rng = np.random.default_rng((self.seed, step))
        xs, ys, qs = [], [], []
        for _ in range(self.batch):
            img = self.images[int(rng.integers(len(self.images)))]
            h, w = img.shape[:2]
            p = min(self.patch, h, w) // MULTIPLE * MULTIPLE
            if self.aligned_share > 0 and rng.random() < self.aligned_share:
                g = SOURCE_GRID
                top = int(rng.integers((h - p) // g + 1)) * g
                left = int(rng.integers((w - p) // g + 1)) * g
                turns = 2 * int(rng.integers(2))
            else:
                top, left = int(rng.integers(h - p + 1)), int(rng.integers(w - p + 1))
                turns = int(rng.integers(4))
            crop = img[top : top + p, left : left + p]
            crop = np.rot90(crop, turns)
            if rng.random() < 0.5:
                crop = crop[:, ::-1]
            crop = np.ascontiguousarray(crop)
            q = sample_quality(rng, self.light_share)
            x, y = self._degrade(crop, q, rng)
            xs.append(x)
            ys.append(y)
            qs.append(q)
        return np.stack(xs), np.stack(ys), np.asarray(qs, dtype=np.int64)

    def _degrade(
        self, crop: np.ndarray, q: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        if self.channels == 1:
            if rng.random() < 0.5:
                clean = np.round(to_luma(crop)).astype(np.uint8)
                comp = jpeg_roundtrip(clean, q).astype(np.float32)
                target = clean.astype(np.float32)
            else:
                comp = to_luma(jpeg_roundtrip(crop, q))
                target = to_luma(crop)
            return comp[None] / 255.0, target[None] / 255.0
        if rng.random() < self.gray_share:
            gray = np.round(to_luma(crop)).astype(np.uint8)
            crop = np.repeat(gray[..., None], 3, axis=2)
        comp = jpeg_roundtrip(crop, q)
        return (comp.transpose(2, 0, 1).astype(np.float32) / 255.0,
                crop.transpose(2, 0, 1).astype(np.float32) / 255.0)


# Per-exit loss weights by quality. "paper": the paper's table (light compression favours
# early exits; above QF 50 the QF 50 row holds). It gives exit 5 a weight of 0.5 at QF
# 30-50, and on val exit 5 then ends up below exit 4 there. "balanced" keeps every exit at
# weight >= 1 where it is the natural exit (exit 5 everywhere up to QF 50, so later exits
# stay at least as good as earlier ones) and moves the early-exit emphasis to QF 70-90,
# the range phones and the web produce. Qualities in between are interpolated. One row per
# quality, one column per exit.
EXIT_WEIGHTINGS: dict[str, tuple[np.ndarray, np.ndarray]] = {
    "paper": (
        np.array([10, 20, 30, 40, 50], dtype=np.float32),
        np.array(
            [
                [0.5, 0.5, 1, 1, 2],
                [0.5, 0.5, 1, 2, 1],
                [0.5, 1, 2, 1, 0.5],
                [1, 2, 1, 0.5, 0.5],
                [2, 1, 1, 0.5, 0.5],
            ],
            dtype=np.float32,
        ),
    ),
    "balanced": (
        np.array([10, 30, 50, 70, 90], dtype=np.float32),
        np.array(
            [
                [0.5, 0.5, 1, 1, 2],
                [0.5, 1, 1, 1, 1.5],
                [1, 1, 1, 1, 1],
                [1.5, 1.5, 1, 1, 1],
                [2, 1.5, 1, 1, 1],
            ],
            dtype=np.float32,
        ),
    ),
}


def _balanced_scaled(scale: dict[int, tuple[slice, float]]) -> tuple[np.ndarray, np.ndarray]:
    """"balanced" with the cells of row QF ``q`` and exits ``scale[q][0]`` multiplied by
    ``scale[q][1]``."""
    qf, rows = EXIT_WEIGHTINGS["balanced"]
    rows = rows.copy()
    for q, (exits, factor) in scale.items():
        rows[qf == q, exits] *= factor
    return qf, rows


# "late": exit 5 weighed 1.5x at QF 10 and 30: the net is at its capacity (its gain on
# training photos equals val's), so this moves shared capacity to the exit that heavy JPEGs
# leave from (an A/B of the nineteenth session; not adopted).
EXIT_WEIGHTINGS["late"] = _balanced_scaled({10: (slice(NUM_EXITS - 1, None), 1.5),
                                            30: (slice(NUM_EXITS - 1, None), 1.5)})
# "light": exits 3-5 weighed 2x at QF 70 and 4x at QF 90 (and above). Under plain MSE a QF 90
# patch's error is ~1/16 of a QF 10 one's (13 against 207 on 128 px train crops), so exits
# 3-5 spent under 1 % of their loss on QF 80-95 and drifted there; this raises that share
# to a few per cent. An A/B of the twenty-seventh session (1,745 steps from 181,125): every
# exit lower at QF 80-90 on the gray val, QF 10 level; not adopted.
EXIT_WEIGHTINGS["light"] = _balanced_scaled({70: (slice(2, None), 2.0),
                                             90: (slice(2, None), 4.0)})


def exit_weights(qualities: np.ndarray, weighting: str = "paper") -> np.ndarray:
    """``(B,)`` qualities -> ``(B, NUM_EXITS)`` per-exit loss weights under ``weighting``."""
    if weighting not in EXIT_WEIGHTINGS:
        raise UsageError(f"exit weighting must be one of {sorted(EXIT_WEIGHTINGS)}, "
                         f"got {weighting!r}")
    qf, rows = EXIT_WEIGHTINGS[weighting]
    q = np.clip(qualities.astype(np.float32), qf[0], qf[-1])
    return np.stack([np.interp(q, qf, rows[:, e]) for e in range(NUM_EXITS)], axis=1)
