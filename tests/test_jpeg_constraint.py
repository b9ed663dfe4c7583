"""Outputs of a 4:4:4 JPEG made consistent with its quantisation (rbqe.jpeg_constraint):
what the network blurs of its full-resolution colour comes back within the file's steps;
other inputs are left alone."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from rbqe.io import load_image
from rbqe.jpeg_constraint import consistent
from tests.helpers import psnr, save_tiny_weights


def colourful(h: int = 64, w: int = 80, seed: int = 0) -> np.ndarray:
    """Saturated colour edges and fine colour texture: what 4:4:4 keeps and 4:2:0 loses."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (h // 8, w // 8, 3)).astype(np.uint8)
    img = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_NEAREST).astype(np.int16)
    return np.clip(img + rng.integers(-20, 21, img.shape), 0, 255).astype(np.uint8)


def save(path: Path, pixels: np.ndarray, **kw) -> Path:
    Image.fromarray(pixels).save(path, "JPEG", **kw)
    return path


def blur_colour(x: np.ndarray) -> np.ndarray:
    """What the network does to a 4:4:4 JPEG's colour: as if it were 4:2:0."""
    ycc = cv2.cvtColor(x.astype(np.float32), cv2.COLOR_RGB2YCrCb)
    for c in (1, 2):
        ycc[..., c] = cv2.GaussianBlur(ycc[..., c], (0, 0), 1.5)
    return np.clip(cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB), 0, 1)


@pytest.mark.parametrize("quality", [95, 80, 30])
def test_a_blurred_colour_comes_back_within_the_files_steps(tmp_path, quality):
    clean = colourful()
    src = load_image(save(tmp_path / "x.jpg", clean, quality=quality, subsampling=0))
    assert src.jpeg_444_tables is not None
    blurred = blur_colour(src.pixels)
    fixed = consistent(blurred, src)
    truth = clean / 255.0
    assert psnr(fixed, truth) > psnr(blurred, truth) + 0.5
    # Consistent: projecting again moves it little (clipping out-of-gamut colours to
    # [0, 1] puts some coefficients back outside by a level or so).
    again = np.abs(consistent(fixed, src) - fixed).mean()
    assert again < 0.05 * np.abs(fixed - blurred).mean()
    assert fixed.dtype == np.float32

def test_other_inputs_are_left_as_they_are(tmp_path):
    clean = colourful()
    for name, kw in (("s420.jpg", {"quality": 90}), ("s422.jpg", {"quality": 90,
                                                                    "subsampling": 1})):
        src = load_image(save(tmp_path / name, clean, **kw))
        assert src.jpeg_444_tables is None
        out = blur_colour(src.pixels)
        assert consistent(out, src) is out
    gray = load_image(save(tmp_path / "g.jpg", clean[..., 0], quality=90))
    assert gray.jpeg_444_tables is None
    Image.fromarray(clean).save(tmp_path / "p.png")
    assert load_image(tmp_path / "p.png").jpeg_444_tables is None


def test_a_rotated_4_4_4_jpeg_is_not_projected_and_says_so(tmp_path):
    # EXIF orientation 6 turns the pixels: they no longer keep the file's block grid.
    exif = Image.Exif()
    exif[0x0112] = 6
    path = save(tmp_path / "r.jpg", colourful(), quality=95, subsampling=0, exif=exif)
    src = load_image(path)
    assert src.jpeg_444_tables is None
    assert any("without chroma subsampling (4:4:4)" in w for w in src.warnings)
    unrotated = load_image(save(tmp_path / "u.jpg", colourful(), quality=95, subsampling=0))
    assert unrotated.warnings == []  # projected instead: nothing to warn of


def test_a_batch_writes_the_consistent_output(tmp_path):
    # The tiny random model's output is far from its input; made consistent, a q95 4:4:4
    # JPEG's output comes back to within the file's quantisation steps of it.
    from rbqe.cli import main
    from rbqe.engine import Enhancer

    weights = save_tiny_weights(tmp_path / "tiny_rgb.safetensors", channels=3)
    path = save(tmp_path / "export.jpg", colourful(96, 96), quality=95, subsampling=0)
    out = tmp_path / "out"
    assert main(["enhance", str(path), "-o", str(out), "--weights", str(weights),
                 "--exit", "1", "--backend", "torch"]) == 0
    written = np.asarray(Image.open(out / "export.png"), np.float64) / 255.0
    src = load_image(path)
    raw = Enhancer(weights, device="cpu", tile=0, backend="torch").enhance(
        src.pixels, 1).exit_result(1).image
    assert psnr(written, src.pixels) > max(30.0, psnr(raw, src.pixels) + 6)
