"""Pixel samples: float ``[0, 1]`` to and from uint8/uint16, alpha depth, channel
fitting, and the output pixels quantised a band of rows at a time (bounded memory)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from rbqe.bands import row_bands
from rbqe.color import luma_of

MODES = ("L", "LA", "RGB", "RGBA")


def _to_float(arr: np.ndarray) -> np.ndarray:
    scale = 65535.0 if arr.dtype == np.uint16 else 255.0
    out = arr.astype(np.float32)
    # Divide (not multiply by the reciprocal) so that quantising back is exact.
    out /= np.float32(scale)
    return out


# Saving quantises (and PNG-filters) this many pixels at a time, so that the float
# temporaries stay small: a 100 MP float32 frame quantised at once made 2.4 GB of copies.
_SAVE_BAND_PIXELS = 1 << 18


def _quantize(x: np.ndarray, bit_depth: int) -> np.ndarray:
    """Float [0, 1] to uint8/uint16 by clip(x * max + 0.5) then floor (round half up),
    band by band into a new array."""
    x = np.asarray(x)
    if x.ndim < 2:
        return _quantize_band(x, bit_depth)
    out = np.empty(x.shape, np.uint8 if bit_depth == 8 else np.uint16)
    for r0, r1 in row_bands(len(x), x[0].size, _SAVE_BAND_PIXELS):
        out[r0:r1] = _quantize_band(x[r0:r1], bit_depth)
    return out


def quantize(pixels: np.ndarray, bit_depth: int) -> np.ndarray:
    """``(H, W[, C])`` float in ``[0, 1]`` as uint8 (``bit_depth`` 8) or uint16 (16), rounded
    as saving rounds them: :func:`rbqe.io.save_image` writes the same file from either.
    A quarter (or half) of float32's memory, for results kept to be saved later."""
    return _quantize(pixels, bit_depth)


def _quantize_band(x: np.ndarray, bit_depth: int) -> np.ndarray:
    if x.dtype == np.uint8 or x.dtype == np.uint16:
        x = _to_float(x)
    scale = 255.0 if bit_depth == 8 else 65535.0
    # NaN/inf would become arbitrary integers; map them to the nearest valid value.
    y = np.nan_to_num(x.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    y *= np.float32(scale)
    y += np.float32(0.5)
    np.clip(y, 0.0, scale, out=y)
    np.floor(y, out=y)
    return y.astype(np.uint8 if bit_depth == 8 else np.uint16)


def _alpha_plane(alpha: np.ndarray) -> np.ndarray:
    """``alpha`` as ``(H, W)``, in its own dtype (an ``(H, W, 1)`` one loses its axis)."""
    a = np.asarray(alpha)
    return a[..., 0] if a.ndim == 3 and a.shape[2] == 1 else a


def _opacity(alpha: np.ndarray) -> np.ndarray:
    """Alpha as float opacity in ``[0, 1]``, read at its own depth: uint8 over 255, uint16
    over 65535, a float one as it is (clipped; NaN transparent, as saving makes it)."""
    a = np.asarray(alpha)
    if a.dtype == np.uint8 or a.dtype == np.uint16:
        return _to_float(a)
    return np.clip(np.nan_to_num(a.astype(np.float32), nan=0.0), 0.0, 1.0)


def _alpha_at_depth(alpha: np.ndarray, bit_depth: int) -> np.ndarray:
    """Returns alpha as uint8/uint16, bit-exact when the depth already matches."""
    a = _alpha_plane(alpha)
    if a.dtype == np.uint8:
        return a if bit_depth == 8 else a.astype(np.uint16) * np.uint16(257)
    if a.dtype == np.uint16:
        if bit_depth == 16:
            return a
        wide = a.astype(np.uint32)
        return ((2 * 255 * wide + 65535) // (2 * 65535)).astype(np.uint8)  # round half up
    return _quantize(a, bit_depth)


def _fit_channels(pix: np.ndarray, want: int) -> np.ndarray:
    channels = pix.shape[2]
    if channels == want:
        return pix
    if want == 1 and channels == 3:
        # Models may run in RGB on grey input; fold back with the same ITU-R 601 luma
        # weights Pillow uses for 'L'.
        return luma_of(pix, np.float32)[..., None]
    if want == 3 and channels == 1:
        return np.repeat(pix, 3, axis=2)
    raise ValueError(f"pixels have {channels} channels; expected {want}")


@dataclass
class _OutputPixels:
    """The integer pixels to write, quantised from ``pix`` a band of rows at a time, so
    that encoders that can take bands never need a full-size copy.

    Attributes:
        pix: ``(H, W, C)`` float in ``[0, 1]``, or uint8/uint16.
        channels: Colour channels to write (1 or 3), alpha excluded.
        depth: 8 or 16.
        alpha: ``(H, W)`` alpha already at ``depth``, appended as the last channel; or None.
        over_white: ``(H, W)`` alpha (any dtype, :func:`_opacity`) by which the pixels
            are laid over white, as a viewer shows a transparent picture on a white page:
            for an output without alpha (JPEG); or None.
        grey_curve: ``(N, 3)`` RGB in ``[0, 1]`` of N grey levels evenly spaced over
            ``[0, 1]``, through which grey pixels become the 3 channels written (a grey
            ICC profile's colours in sRGB, interpolated between levels); or None.
    """

    pix: np.ndarray
    channels: int
    depth: int
    alpha: np.ndarray | None
    over_white: np.ndarray | None = None
    grey_curve: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return (*self.pix.shape[:2], self.channels + (self.alpha is not None))

    @property
    def dtype(self) -> type:
        return np.uint8 if self.depth == 8 else np.uint16

    def bands(self) -> list[tuple[int, int]]:
        height, width, channels = self.shape
        return row_bands(height, width * max(channels, self.pix.shape[2]), _SAVE_BAND_PIXELS)

    def rows(self, r0: int, r1: int) -> np.ndarray:
        """Rows ``r0:r1`` as ``(rows, W, channels [+ 1])`` integers."""
        band = self.pix[r0:r1]
        if band.dtype == np.uint8 or band.dtype == np.uint16:
            band = _to_float(band)
        if self.grey_curve is not None:
            band = _through_curve(_fit_channels(band, 1)[..., 0], self.grey_curve)
        else:
            band = _fit_channels(band, self.channels)
        if self.over_white is not None:
            opacity = _opacity(self.over_white[r0:r1])[..., None]
            band = band * opacity + (1 - opacity)
        ints = _quantize_band(band, self.depth)
        if self.alpha is not None:
            ints = np.concatenate([ints, self.alpha[r0:r1, :, None]], axis=2)
        return ints

    def whole(self) -> np.ndarray:
        out: np.ndarray = np.empty(self.shape, self.dtype)
        for r0, r1 in self.bands():
            out[r0:r1] = self.rows(r0, r1)
        return out


def _through_curve(grey: np.ndarray, curve: np.ndarray) -> np.ndarray:
    """``(rows, W)`` grey in ``[0, 1]`` as ``(rows, W, 3)`` float32 through ``curve``
    (:attr:`_OutputPixels.grey_curve`), linearly between its levels."""
    levels = np.linspace(0.0, 1.0, len(curve))
    return np.stack([np.interp(grey, levels, curve[:, c]) for c in range(3)],
                    axis=-1).astype(np.float32)


def _pillow_image(pixels: _OutputPixels) -> Image.Image:
    """The Pillow image of ``pixels``, pasted together band by band: Pillow keeps its own
    copy of the pixels, so a full-size integer array beside it would double the memory."""
    height, width, channels = pixels.shape
    image = None
    for r0, r1 in pixels.bands():
        ints = pixels.rows(r0, r1)
        part = Image.fromarray(ints[..., 0] if channels == 1 else ints)
        if (r0, r1) == (0, height):
            return part
        if image is None:
            image = Image.new(part.mode, (width, height))
        image.paste(part, (0, r0))
    assert image is not None
    return image
