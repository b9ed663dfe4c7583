"""rbqe.io saving in bands of rows (bounded memory for huge images).

Saving quantises a band of rows at a time, builds Pillow images band by band, and writes
large PNGs with a streaming encoder. The tests shrink the band size and the streaming
threshold so that small images take those paths, and check that the files decode to
exactly what the one-shot paths write.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from corpus import MAKE, exif_bytes, same_icc, srgb_icc
from PIL import Image

from rbqe import io as rio
from rbqe.io import load_image, save_image

MODES = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}


def float_pixels(height: int, width: int, channels: int, seed: int = 0) -> np.ndarray:
    """Noise over a smooth ramp (so every PNG filter type wins some rows)."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
    pix = np.repeat(ramp, height, axis=0) * np.ones(channels, np.float32)
    noisy = rng.random((height // 2, width, channels), dtype=np.float32)
    pix[: height // 2] = noisy
    return pix


def alpha_for(height: int, width: int, depth: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    top = 255 if depth == 8 else 65535
    return rng.integers(0, top + 1, (height, width)).astype(np.uint8 if depth == 8 else np.uint16)


def reference_quantize(x: np.ndarray, bit_depth: int) -> np.ndarray:
    """The one-shot quantiser the banded one replaced."""
    scale = 255.0 if bit_depth == 8 else 65535.0
    y = np.nan_to_num(np.asarray(x).astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    y *= np.float32(scale)
    y += np.float32(0.5)
    np.clip(y, 0.0, scale, out=y)
    np.floor(y, out=y)
    return y.astype(np.uint8 if bit_depth == 8 else np.uint16)


@pytest.fixture
def small_bands(monkeypatch):
    monkeypatch.setattr(rio.pixels, "_SAVE_BAND_PIXELS", 700)  # a few rows per band


def save_both(tmp_path: Path, monkeypatch, name: str, pixels, **kw) -> tuple[Path, Path]:
    """Saves with one band and no streaming, then in small bands with streaming PNG."""
    with monkeypatch.context() as m:
        m.setattr(rio.write, "_STREAM_PNG_PIXELS", 1 << 62)
        m.setattr(rio.pixels, "_SAVE_BAND_PIXELS", 1 << 40)
        whole = save_image(tmp_path / f"whole_{name}", pixels, **kw)
    with monkeypatch.context() as m:
        m.setattr(rio.write, "_STREAM_PNG_PIXELS", 0)
        m.setattr(rio.pixels, "_SAVE_BAND_PIXELS", 700)
        banded = save_image(tmp_path / f"banded_{name}", pixels, **kw)
    return whole, banded


def test_quantize_in_bands_matches_one_shot(small_bands) -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(0.5, 0.4, (53, 41, 3)).astype(np.float32)
    x[0, 0] = [np.nan, np.inf, -np.inf]
    x[1, 1, 0] = 0.5 / 255  # exactly half a step: rounds up
    for depth in (8, 16):
        got = rio.pixels._quantize(x, depth)
        np.testing.assert_array_equal(got, reference_quantize(x, depth))
        assert got.dtype == (np.uint8 if depth == 8 else np.uint16)
    assert rio.pixels._quantize(x[..., 0].astype(np.float64), 8).shape == (53, 41)
    ints = (rng.random((30, 20)) * 255).astype(np.uint8)
    np.testing.assert_array_equal(rio.pixels._quantize(ints, 8), ints)  # exact round trip


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("depth", [8, 16])
def test_streamed_png_decodes_like_the_one_shot_png(tmp_path, monkeypatch, mode, depth) -> None:
    colour = 1 if mode in ("L", "LA") else 3
    pix = float_pixels(37, 29, colour)
    alpha = alpha_for(37, 29, depth) if mode in ("LA", "RGBA") else None
    whole, banded = save_both(tmp_path, monkeypatch, f"{mode}{depth}.png", pix, alpha=alpha,
                              mode=mode, bit_depth=depth, icc_profile=srgb_icc(),
                              exif=exif_bytes())
    with Image.open(banded) as im:
        im.verify()  # every chunk and CRC in place
    a, b = load_image(whole), load_image(banded)
    assert (b.mode, b.bit_depth, b.size) == (a.mode, a.bit_depth, a.size) == (mode, depth, (29, 37))
    np.testing.assert_array_equal(b.pixels, a.pixels)
    if alpha is not None:
        np.testing.assert_array_equal(b.alpha, alpha)
    assert same_icc(b.icc_profile, srgb_icc())
    assert b.exif is not None and MAKE.encode() in b.exif


@pytest.mark.parametrize("fmt", ["jpeg", "webp", "tiff", "bmp"])
def test_pillow_image_built_in_bands_is_the_same(tmp_path, monkeypatch, fmt) -> None:
    pix = float_pixels(41, 23, 3)
    whole, banded = save_both(tmp_path, monkeypatch, f"x.{fmt}", pix, fmt=fmt)
    assert whole.read_bytes() == banded.read_bytes()  # the same image, the same encoder


def test_integer_and_grey_inputs_in_bands(tmp_path, small_bands) -> None:
    rng = np.random.default_rng(3)
    ints = (rng.random((33, 17, 3)) * 255).astype(np.uint8)
    out = save_image(tmp_path / "ints.png", ints)
    np.testing.assert_array_equal(np.asarray(Image.open(out)), ints)
    grey = rng.random((33, 17, 1)).astype(np.float32)
    rgb = save_image(tmp_path / "rgb_from_grey.png", grey, mode="RGB")
    expected = reference_quantize(np.repeat(grey, 3, axis=2), 8)
    np.testing.assert_array_equal(np.asarray(Image.open(rgb)), expected)
    # RGB pixels written as grey: folded with the 601 weights, band by band.
    colour = rng.random((33, 17, 3)).astype(np.float32)
    folded = save_image(tmp_path / "grey.png", colour, mode="L")
    weights = np.array([0.299, 0.587, 0.114], np.float32)
    np.testing.assert_array_equal(np.asarray(Image.open(folded)),
                                  reference_quantize(colour @ weights, 8))


def test_bad_channel_count_fails_before_writing(tmp_path) -> None:
    with pytest.raises(ValueError, match="2 channels"):
        save_image(tmp_path / "x.png", np.zeros((4, 4, 2), np.float32))
    assert list(tmp_path.iterdir()) == []


def test_png_filter_picks_per_row(monkeypatch) -> None:
    # Rows that repeat the row above are cheapest with Up (2), a horizontal ramp with Sub
    # (1); noise keeps None (0) or another type. Decoding is checked by the tests above.
    ramp = np.tile(np.arange(0, 240, 8, dtype=np.uint8), (4, 1))
    raw = np.concatenate([ramp, ramp[:1]])
    out = rio.png._png_filter(raw, np.zeros(raw.shape[1], np.uint8), 1)
    assert out.shape == (5, raw.shape[1] + 1)
    assert out[0, 0] == 1 and list(out[1:, 0]) == [2, 2, 2, 2]
    np.testing.assert_array_equal(out[1, 1:], 0)
