"""The only numpy <-> QImage code of the app.

Pixels arrive from :mod:`rbqe` as ``(H, W, C)`` float32 in ``[0, 1]``. They are converted
once per image into a :class:`Picture`: a ``Format_RGB32`` QImage (the raster engine's
native format, so drawing never converts) plus a pyramid of halved copies for zoomed-out
views. Everything here is safe to call from a worker thread (QImage, unlike QPixmap, is
not tied to the GUI thread), so a 24-megapixel image is converted off the GUI thread and
the view only draws the visible part of the right pyramid level.

On the way, a :class:`Display` makes the pixels ready for the screen: converted to sRGB
from the image's embedded ICC profile, and shown over a checkerboard where the image is
transparent. The same for an image's input and every exit, so that A/B comparisons stay
fair; saved files never go through it.
"""

from __future__ import annotations

import copy
import io
import logging
import math
import sys
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image, ImageCms
from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QImage, QPainter

log = logging.getLogger(__name__)

MIN_LEVEL_SIDE = 256  # stop halving once the longer side is this small
CHECKER = (150, 110)  # light and dark grey squares behind transparent pixels
CHECKER_SQUARES = 64  # about this many squares along the longer side (8 px at least)


@cache
def _srgb() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


@dataclass(frozen=True)
class Display:
    """How one image's pixels are made ready for the screen (display only).

    Attributes:
        transform: LittleCMS transform from the embedded profile to sRGB, or None: the
            pixels are shown as they are (no profile, an sRGB one, a grey image, or a
            profile that could not be read).
        profile: The description of the profile converted from ("" when none is).
        unreadable: The image has a profile that could not be read.
        alpha: ``(H, W)`` alpha (uint8 or uint16) to show the image over a checkerboard
            with, or None (opaque).
        square: Side of the checkerboard's squares, in image pixels.
    """

    transform: ImageCms.ImageCmsTransform | None = None
    profile: str = ""
    unreadable: bool = False
    alpha: np.ndarray | None = None
    square: int = 8

    @classmethod
    def of(cls, icc: bytes | None, channels: int, alpha: np.ndarray | None,
           name: str = "image") -> Display:
        """The display of an image with ``channels`` colour channels, its embedded ICC
        profile and its alpha; the transform is built here, once per image, on the
        worker thread that loads it. A profile that cannot be read is logged once and
        the pixels are shown as they are."""
        square = max(8, max(alpha.shape) // CHECKER_SQUARES) if alpha is not None else 8
        if not icc or channels != 3:
            return cls(alpha=alpha, square=square)
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            profile = ImageCms.getProfileDescription(source).strip() or "unnamed"
            if "srgb" in profile.lower():  # already what the screen is taken to be
                return cls(alpha=alpha, square=square)
            transform = ImageCms.buildTransform(
                source, _srgb(), "RGB", "RGB",
                renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC)
        except (ImageCms.PyCMSError, OSError, ValueError) as exc:
            log.warning("%s: its ICC profile could not be read (%s); shown without colour "
                        "conversion", name, exc)
            return cls(unreadable=True, alpha=alpha, square=square)
        return cls(transform, profile, alpha=alpha, square=square)

    def apply(self, rows: np.ndarray, y0: int, x0: int = 0) -> np.ndarray:
        """``rows`` of the image from row ``y0`` and column ``x0`` on, ``(h, w, C)`` uint8,
        for the screen (a part of the image, a tile, is shown as it is in the whole)."""
        if self.transform is not None:
            converted = self.transform.apply(Image.fromarray(np.ascontiguousarray(rows), "RGB"))
            rows = np.asarray(converted)
        if self.alpha is None:
            return rows
        h, w = rows.shape[:2]
        alpha = self.alpha[y0 : y0 + h, x0 : x0 + w]
        a = (alpha.astype(np.float32) / np.iinfo(alpha.dtype).max)[..., None]
        ys = np.arange(y0, y0 + h)[:, None] // self.square
        xs = np.arange(x0, x0 + w)[None, :] // self.square
        board = np.where((ys + xs) % 2 == 0, *CHECKER).astype(np.float32)[..., None]
        return (rows * a + board * (1.0 - a) + 0.5).astype(np.uint8)


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """``(H, W[, C])`` float in ``[0, 1]`` -> uint8 with the same shape (rounded)."""
    arr = np.asarray(pixels, dtype=np.float32)
    return (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def to_qimage(pixels: np.ndarray, display: Display | None = None,
              origin: tuple[int, int] = (0, 0)) -> QImage:
    """``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)`` float in ``[0, 1]`` -> RGB32 QImage,
    made ready for the screen by ``display`` (None: as they are); ``origin``: the
    ``(row, column)`` of the image ``pixels`` start at, when they are a part of it.

    The returned image owns its memory. Conversion runs in bands of rows so a
    24-megapixel image needs no full-size float temporaries.
    """
    arr = np.asarray(pixels)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3):
        raise ValueError(f"expected (H, W, 1|3) pixels, got {arr.shape}")
    h, w, c = arr.shape
    image = QImage(w, h, QImage.Format.Format_RGB32)
    stride = image.bytesPerLine()
    # RGB32 is the 32-bit word 0xffRRGGBB: bytes B, G, R, 0xff on little-endian hosts.
    bgra = np.frombuffer(image.bits(), np.uint8, count=stride * h).reshape(h, stride)
    bgra = bgra[:, : 4 * w].reshape(h, w, 4)
    order = [2, 1, 0] if c == 3 else [0, 0, 0]
    if sys.byteorder == "big":  # pragma: no cover - ARGB byte order
        order = order[::-1]
    alpha_at = 3 if sys.byteorder == "little" else 0
    color_at = [0, 1, 2] if sys.byteorder == "little" else [1, 2, 3]
    band = max(1, (1 << 22) // max(1, w * c))
    for y0 in range(0, h, band):
        u8 = to_uint8(arr[y0 : y0 + band]) if arr.dtype != np.uint8 else arr[y0 : y0 + band]
        if display is not None:
            u8 = display.apply(u8, origin[0] + y0, origin[1])
        for dst, src in zip(color_at, order, strict=True):
            bgra[y0 : y0 + band, :, dst] = u8[..., src]
    bgra[..., alpha_at] = 255
    return image


def qimage_to_array(image: QImage) -> np.ndarray:
    """QImage -> ``(H, W, 3)`` uint8 RGB (tests and thumbnails)."""
    img = image.convertToFormat(QImage.Format.Format_RGB888)
    w, h, stride = img.width(), img.height(), img.bytesPerLine()
    buf = np.frombuffer(img.constBits(), np.uint8, count=stride * h).reshape(h, stride)
    return buf[:, : 3 * w].reshape(h, w, 3).copy()


def pyramid(image: QImage, count: int | None = None) -> list[QImage]:
    """``image`` and its halved copies: until the longer side is at most twice
    ``MIN_LEVEL_SIDE`` (a :class:`Picture`'s levels), or ``count`` levels in all (a part
    of a picture, halved as often as the picture is)."""
    levels = [image]
    level = image
    while (len(levels) < count if count is not None
           else max(level.width(), level.height()) > 2 * MIN_LEVEL_SIDE):
        level = level.scaled(
            max(1, level.width() // 2),
            max(1, level.height() // 2),
            Qt.AspectRatioMode.IgnoreAspectRatio,
            Qt.TransformationMode.SmoothTransformation,
        )
        levels.append(level)
    return levels


class Picture:
    """A displayable image: full-resolution QImage plus a pyramid of halved copies.

    ``levels[0]`` is full size; ``levels[k]`` is about ``1 / 2**k`` of it.
    """

    def __init__(self, image: QImage) -> None:
        self.levels: list[QImage] = pyramid(image)

    def copy(self) -> Picture:
        """A copy of its own pixels, to :meth:`paste` over."""
        twin = copy.copy(self)
        twin.levels = [level.copy() for level in self.levels]
        return twin

    def paste(self, patch: list[QImage], x: int, y: int) -> None:
        """Paints ``patch`` (a part of the picture as :func:`pyramid` halves it, as many
        levels as this picture has) over it, in place, with its corner at the
        full-resolution pixel ``(x, y)``. Each level of the patch goes where that level
        of the picture maps the part; only that region is painted."""
        full = self.levels[0]
        w, h = patch[0].width(), patch[0].height()
        for level, part in zip(self.levels, patch, strict=True):
            sx, sy = level.width() / full.width(), level.height() / full.height()
            painter = QPainter(level)
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            painter.drawImage(QRectF(x * sx, y * sy, w * sx, h * sy), part)
            painter.end()

    @classmethod
    def from_array(cls, pixels: np.ndarray, display: Display | None = None) -> Picture:
        return cls(to_qimage(pixels, display))

    @property
    def width(self) -> int:
        return self.levels[0].width()

    @property
    def height(self) -> int:
        return self.levels[0].height()

    @property
    def size(self) -> QSize:
        return self.levels[0].size()

    @property
    def nbytes(self) -> int:
        return sum(level.sizeInBytes() for level in self.levels)

    def level_for(self, scale: float) -> tuple[QImage, float]:
        """The pyramid level to draw at ``scale`` screen pixels per image pixel.

        Returns the level and its size relative to full resolution. The level keeps at
        least one of its pixels per screen pixel, so nothing is lost to the pyramid.
        """
        if scale >= 1.0:
            return self.levels[0], 1.0
        k = min(len(self.levels) - 1, max(0, math.floor(math.log2(1.0 / scale))))
        level = self.levels[k]
        return level, level.width() / self.width

    def source_rect(self, visible: QRectF, level_scale: float) -> QRectF:
        """Map a full-resolution rectangle into the coordinates of a level."""
        return QRectF(visible.x() * level_scale, visible.y() * level_scale,
                      visible.width() * level_scale, visible.height() * level_scale)

    def thumbnail(self, size: QSize) -> QImage:
        """A smooth thumbnail fitting ``size``, taken from the smallest adequate level."""
        src = self.levels[0]
        for level in self.levels:
            if level.width() >= size.width() and level.height() >= size.height():
                src = level
        return src.scaled(size, Qt.AspectRatioMode.KeepAspectRatio,
                          Qt.TransformationMode.SmoothTransformation)


DIFF_GAIN = 8  # |A − B| is multiplied by this: restoration changes are a few levels
# Heat map anchors (value in [0, 1] -> RGB): black, deep blue, magenta, orange, pale yellow.
_HEAT = np.array([[0, 0, 0], [40, 20, 120], [180, 40, 140], [245, 130, 40], [255, 245, 170]],
                 np.float32)


def heat_lut() -> np.ndarray:
    """256 x 3 uint8 colours of the difference heat map, dark (no change) to bright."""
    x = np.linspace(0, len(_HEAT) - 1, 256)
    return np.stack([np.interp(x, np.arange(len(_HEAT)), _HEAT[:, c]) for c in range(3)],
                    -1).round().astype(np.uint8)


def _rgb_bytes(image: QImage) -> np.ndarray:
    """``(H, W, 4)`` uint8 view of an RGB32 image's bytes (no copy)."""
    h, stride = image.height(), image.bytesPerLine()
    buf = np.frombuffer(image.constBits(), np.uint8, count=stride * h).reshape(h, stride)
    return buf[:, : 4 * image.width()].reshape(h, image.width(), 4)


def mismatch(a: Picture, b: Picture) -> str:
    """Why ``a`` and ``b`` cannot be compared pixel by pixel ("" when they can)."""
    return "" if a.size == b.size else \
        f"cannot compare {a.width}x{a.height} with {b.width}x{b.height}"


def difference(a: Picture, b: Picture, gain: int = DIFF_GAIN) -> tuple[Picture, int]:
    """The heat map of ``|a − b| * gain`` (the larger channel difference of each pixel)
    and the largest difference found, in 8-bit levels. Works in bands of rows, so a
    24-megapixel pair needs no full-size temporaries besides the result."""
    if why := mismatch(a, b):
        raise ValueError(why)
    qa, qb = (p.levels[0].convertToFormat(QImage.Format.Format_RGB32) for p in (a, b))
    pa, pb = _rgb_bytes(qa), _rgb_bytes(qb)
    h, w = pa.shape[:2]
    out = np.empty((h, w, 3), np.uint8)
    lut = heat_lut()
    band = max(1, (1 << 20) // max(1, w))
    largest = 0
    rgb = slice(0, 3) if sys.byteorder == "little" else slice(1, 4)  # not the 0xff byte
    for y0 in range(0, h, band):
        d = np.abs(pa[y0 : y0 + band, :, rgb].astype(np.int16) - pb[y0 : y0 + band, :, rgb])
        m = d.max(axis=2)
        largest = max(largest, int(m.max()))
        out[y0 : y0 + band] = lut[np.minimum(m * gain, 255)]
    return Picture.from_array(out), largest
