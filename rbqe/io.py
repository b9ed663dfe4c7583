"""Reading and writing user images safely.

This module is the only place where RBQE touches image files. Its promises:

* **Inputs are never modified.** Files are only opened for reading, and
  :func:`save_image` refuses to write onto a protected (input) path.
* **Outputs are written atomically.** Data goes to a hidden ``.part`` file in the
  target folder, is flushed and fsync'ed, then renamed over the final name, so a crash
  or a full disk never leaves a half-written file under the final name. The temp file
  a kill leaves behind is removed by a later batch (:func:`remove_stale_temps`).
* **Bad input gives one clear line.** Every problem with a user's file is raised as
  :class:`~rbqe.errors.ImageReadError` / :class:`~rbqe.errors.ImageWriteError` whose
  ``str()`` is ``"<path>: <reason>"``; no other exception type escapes for a bad file.

Pixel convention: :class:`LoadedImage.pixels` is ``(H, W, C)`` float32 in ``[0, 1]``
with ``C == 1`` (grey) or ``C == 3`` (RGB). Alpha is kept apart, untouched, in its
original integer dtype so it can be re-attached bit-exactly on save.

Decisions worth knowing:

* **EXIF orientation** is applied to the pixels on load; the kept EXIF has its
  Orientation tag reset to 1, and every other tag is preserved byte-for-byte when
  possible.
* **CMYK** input is converted to RGB. With an embedded ICC profile the conversion goes
  through LittleCMS (``PIL.ImageCms``) to sRGB and the image then carries an sRGB
  profile; without one a plain (naive) conversion is used and the image carries no
  profile (viewers assume sRGB).
* **16-bit** grey images (``I;16*``) are read with Pillow and written back as 16-bit.
  Pillow cannot hold 16-bit RGB(A) or grey+alpha, so those PNG/TIFF files are decoded
  with OpenCV instead and written back at 16 bit (OpenCV for RGB/RGBA, a small built-in
  PNG encoder for grey+alpha). JPEG, WebP and BMP are 8-bit only: 16-bit data is rounded
  to 8 bit for them.
* **JPEG has no alpha**: saving an image with alpha as JPEG drops the alpha channel and
  logs a warning. WebP has no grey mode, so grey is written as RGB there.
* ``keep_metadata=False`` drops EXIF (camera data, GPS...) but keeps the ICC profile,
  because the profile defines what the pixel values mean: dropping it would shift the
  colours of e.g. Display-P3 phone photos.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import io
import json
import logging
import os
import re
import stat
import struct
import tempfile
import threading
import time
import warnings
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError, features

from rbqe.errors import ImageReadError, ImageWriteError

try:
    import fcntl
except ImportError:  # Windows: stale temp files are judged by age only
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "AVIF_AVAILABLE",
    "DEFAULT_MAX_PIXELS",
    "HEIF_AVAILABLE",
    "OUTPUT_LOG",
    "STALE_TEMP_AGE_S",
    "SUPPORTED_SUFFIXES",
    "LoadedImage",
    "estimate_jpeg_quality",
    "is_image_file",
    "is_temp_file",
    "list_images",
    "lists_folder",
    "load_image",
    "output_path_for",
    "plan_outputs",
    "record_output",
    "remove_stale_temps",
    "save_image",
    "save_like",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = 200_000_000
"""Default decompression-bomb limit in pixels (width x height); ``None`` disables it."""

MODES = ("L", "LA", "RGB", "RGBA")

_BASE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"})
_HEIF_SUFFIXES = frozenset({".heic", ".heif"})
_AVIF_SUFFIXES = frozenset({".avif"})
_HEIF_MISSING = "HEIC support is not installed (pip install 'rbqe-studio[heif]')"
_AVIF_MISSING = "AVIF support is not installed (upgrade Pillow or pip install 'rbqe-studio[heif]')"

_EXIF_PREFIX = b"Exif\x00\x00"
_ORIENTATION = 0x0112
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_MAX_EXIF = 65533  # an APP1 segment cannot hold more; Pillow raises beyond it


# --------------------------------------------------------------------------------------
# Optional codecs
# --------------------------------------------------------------------------------------


def _pillow_has_avif() -> bool:
    # features.check() warns on names unknown to older Pillow, and the test suite turns
    # warnings into errors, so ask check_module() quietly.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return bool(features.check_module("avif"))
    except (ValueError, ImportError):
        return False


def _register_optional_codecs() -> tuple[bool, bool]:
    """Registers HEIF/AVIF openers that are installed; returns (heif, avif) availability."""
    heif = False
    avif = _pillow_has_avif()
    try:
        import pillow_heif  # type: ignore[import-not-found]
    except ImportError:
        return heif, avif
    except Exception as exc:  # noqa: BLE001 - a broken native install must not break rbqe
        logger.warning("pillow-heif is installed but failed to import: %s", exc)
        return heif, avif
    try:
        pillow_heif.register_heif_opener()
        heif = True
    except Exception as exc:  # noqa: BLE001 - optional codec: degrade, don't fail
        logger.warning("could not enable HEIC support from pillow-heif: %s", exc)
    if not avif and hasattr(pillow_heif, "register_avif_opener"):
        try:
            pillow_heif.register_avif_opener()
            avif = True
        except Exception as exc:  # noqa: BLE001 - optional codec: degrade, don't fail
            logger.warning("could not enable AVIF support from pillow-heif: %s", exc)
    return heif, avif


HEIF_AVAILABLE, AVIF_AVAILABLE = _register_optional_codecs()

SUPPORTED_SUFFIXES: frozenset[str] = (
    _BASE_SUFFIXES
    | (_HEIF_SUFFIXES if HEIF_AVAILABLE else frozenset())
    | (_AVIF_SUFFIXES if AVIF_AVAILABLE else frozenset())
)
"""Lower-case suffixes picked up when scanning folders (HEIC/AVIF only when readable)."""


# --------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------


@dataclass
class LoadedImage:
    """A decoded image plus everything needed to write it back faithfully.

    Attributes:
        path: The file it was read from.
        pixels: ``(H, W, C)`` float32 in ``[0, 1]``; ``C`` is 1 (grey) or 3 (RGB).
            Alpha is not included.
        alpha: ``(H, W)`` alpha channel in its original dtype (uint8 or uint16), or None.
        mode: Mode to write back: ``'L'``, ``'LA'``, ``'RGB'`` or ``'RGBA'``.
        bit_depth: 8 or 16 (bits per channel of the source).
        format: Pillow format name of the source (``'JPEG'``, ``'PNG'``...). Multi-picture
            JPEGs from phones (Pillow's ``'MPO'``) are reported as ``'JPEG'``.
        icc_profile: Embedded ICC profile bytes, or None.
        exif: EXIF bytes (``b"Exif\\0\\0"`` + TIFF data) with Orientation reset to 1
            because the orientation has been applied to ``pixels``; None if absent.
        jpeg_quality: Estimated JPEG quality (1-100) for JPEG sources, else None.
    """

    path: Path
    pixels: np.ndarray
    alpha: np.ndarray | None
    mode: str
    bit_depth: int
    format: str
    icc_profile: bytes | None
    exif: bytes | None
    jpeg_quality: int | None

    @property
    def size(self) -> tuple[int, int]:
        """Image size as ``(width, height)``."""
        return int(self.pixels.shape[1]), int(self.pixels.shape[0])

    @property
    def has_alpha(self) -> bool:
        """Whether the image carries an alpha channel."""
        return self.alpha is not None


# --------------------------------------------------------------------------------------
# Pillow global state
# --------------------------------------------------------------------------------------

_pillow_lock = threading.Lock()
_pillow_depth = 0
_pillow_saved: tuple[int | None, bool] = (Image.MAX_IMAGE_PIXELS, False)


@contextlib.contextmanager
def _strict_pillow() -> Iterator[None]:
    """Makes Pillow strict about truncation and defers bomb checks to us while loading.

    Pillow's own bomb limit (about 179 MP) is a process-wide setting that would override
    the user's ``max_pixels``; we check the header size ourselves before decoding, so
    Pillow's check is switched off meanwhile. ``LOAD_TRUNCATED_IMAGES`` is forced False
    so a truncated download is reported instead of silently grey-filled, even if some
    other code enabled it. Both globals are restored when the last concurrent load ends.
    """
    global _pillow_depth, _pillow_saved
    with _pillow_lock:
        if _pillow_depth == 0:
            _pillow_saved = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
            Image.MAX_IMAGE_PIXELS = None
            ImageFile.LOAD_TRUNCATED_IMAGES = False
        _pillow_depth += 1
    try:
        yield
    finally:
        with _pillow_lock:
            _pillow_depth -= 1
            if _pillow_depth == 0:
                Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = _pillow_saved


@contextlib.contextmanager
def _logged_warnings(path: Path) -> Iterator[None]:
    """Turns library warnings (corrupt EXIF, odd chunks...) into log records.

    Warnings must not escape: callers (and the test suite, which runs with
    ``filterwarnings = error``) would otherwise see them as exceptions or noise.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for item in caught:
                if issubclass(item.category, Image.DecompressionBombWarning):
                    continue  # our own size check already covers this
                logger.warning("%s: %s", path, item.message)


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------


def _fmt_mp(pixels: int) -> str:
    # One decimal is plenty for real photos; tiny limits (tests, thumbnails) keep their
    # significant digits without switching to scientific notation.
    if pixels >= 1_000_000:
        return f"{pixels / 1e6:.1f}".removesuffix(".0")
    return f"{pixels / 1e6:.6f}".rstrip("0").rstrip(".")


def _bomb_reason(width: int, height: int, max_pixels: int) -> str:
    return (
        f"image is {width} x {height} = {_fmt_mp(width * height)} megapixels, over the "
        f"limit of {_fmt_mp(max_pixels)} megapixels (raise with --max-pixels)"
    )


def _os_reason(exc: OSError) -> str:
    """A short reason for an OS error, without the path (the caller adds it)."""
    reasons = {
        errno.ENOENT: "file not found",
        errno.ENOTDIR: "file not found",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.EISDIR: "is a directory, not a file",
        errno.ENOSPC: "disk full",
        errno.EROFS: "read-only file system",
        errno.ENAMETOOLONG: "file name too long",
    }
    if hasattr(errno, "EDQUOT"):
        reasons[errno.EDQUOT] = "disk quota exceeded"
    if exc.errno in reasons:
        return reasons[exc.errno]
    return f"I/O error: {exc.strerror or exc}"


def _read_head(path: Path) -> bytes:
    """Validates that ``path`` is a readable, non-empty regular file; returns its first bytes."""
    try:
        st = path.stat()
    except ValueError:  # e.g. an embedded NUL byte from a mangled file list
        raise ImageReadError(path, "invalid file name") from None
    except OSError as exc:
        if path.is_symlink():
            raise ImageReadError(path, "broken symbolic link") from None
        raise ImageReadError(path, _os_reason(exc)) from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageReadError(path, "is a directory, not an image file")
    if not stat.S_ISREG(st.st_mode):
        # Opening a FIFO or device would block or read forever.
        raise ImageReadError(path, "not a regular file")
    if st.st_size == 0:
        raise ImageReadError(path, "empty file (0 bytes)")
    try:
        with open(path, "rb") as fh:
            return fh.read(64)
    except OSError as exc:
        raise ImageReadError(path, _os_reason(exc)) from None


def _sniff(head: bytes) -> str | None:
    """Recognises the container from its magic bytes (used to word error messages)."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(_PNG_SIGNATURE):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return "AVIF"
        if brand in (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"):
            return "HEIF"
    # "BM" alone is too weak (a text file may start with it): also require a known
    # DIB header size.
    dib_sizes = (12, 40, 52, 56, 64, 108, 124)
    if head[:2] == b"BM" and len(head) >= 18 and struct.unpack_from("<I", head, 14)[0] in dib_sizes:
        return "BMP"
    return None


def _unidentified_reason(path: Path, kind: str | None) -> str:
    suffix = path.suffix.lower()
    # "mif1" files may be HEIC or AVIF; the suffix breaks the tie. Without recognisable
    # magic bytes the suffix is all we have, and a missing codec is the likely cause.
    is_avif = kind == "AVIF" or (kind in (None, "HEIF") and suffix in _AVIF_SUFFIXES)
    is_heif = not is_avif and (kind == "HEIF" or (kind is None and suffix in _HEIF_SUFFIXES))
    if is_avif and not AVIF_AVAILABLE:
        return _AVIF_MISSING
    if is_heif and not HEIF_AVAILABLE:
        return _HEIF_MISSING
    if kind is not None:
        # The magic bytes say it is an image, yet no decoder accepted the header.
        return "truncated or corrupt image data"
    return "not an image file (unrecognised format)"


def _png_ihdr(head: bytes) -> tuple[int, int] | None:
    """Returns (bit depth, colour type) from a PNG header, or None."""
    if head.startswith(_PNG_SIGNATURE) and head[12:16] == b"IHDR" and len(head) >= 26:
        return head[24], head[25]
    return None


def _needs_opencv(im: Image.Image, head: bytes) -> bool:
    """True for 16-bit multi-channel images, which Pillow would truncate to 8 bit."""
    if im.format == "PNG":
        ihdr = _png_ihdr(head)
        # colour types 2 = RGB, 4 = grey+alpha, 6 = RGBA
        return ihdr is not None and ihdr[0] == 16 and ihdr[1] in (2, 4, 6)
    if im.format == "TIFF":
        tags = getattr(im, "tag_v2", {})

        def values(tag: int, default: int) -> tuple[Any, ...]:
            value = tags.get(tag, default)
            return tuple(value) if isinstance(value, (tuple, list)) else (value,)

        # 16-bit unsigned-integer RGB(A) only (SampleFormat 1); CMYK, float and
        # grey TIFFs stay with Pillow.
        return (
            16 in values(258, 1)
            and values(277, 1)[0] in (3, 4)
            and values(262, -1)[0] == 2
            and set(values(339, 1)) == {1}
        )
    return False


def _decode_opencv(
    path: Path, im: Image.Image, head: bytes
) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Decodes a 16-bit RGB(A)/grey+alpha PNG or TIFF with OpenCV.

    Pillow has no 16-bit RGB mode, so ``cv2.imdecode(..., IMREAD_UNCHANGED)`` is used;
    it returns BGR(A) order, which is flipped to RGB(A) here. ``imdecode`` on bytes read
    with numpy (rather than ``cv2.imread``) also copes with non-ASCII paths on Windows.
    IMREAD_UNCHANGED ignores EXIF orientation, which the caller applies.
    """
    import cv2

    try:
        buf = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise ImageReadError(path, _os_reason(exc)) from None
    arr = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if arr is None or arr.dtype != np.uint16 or arr.shape[1::-1] != im.size:
        raise ImageReadError(path, "truncated or corrupt image data")
    if arr.ndim == 2:
        arr = arr[..., None]
    channels = arr.shape[2]
    ihdr = _png_ihdr(head)
    grey_alpha = im.format == "PNG" and ihdr is not None and ihdr[1] == 4
    if channels == 4:
        alpha = np.ascontiguousarray(arr[..., 3])
        rgb = arr[..., 2::-1]
        if grey_alpha:
            # libpng expands grey+alpha to BGRA with B == G == R; keep one channel.
            return np.ascontiguousarray(rgb[..., :1]), alpha, "LA"
        return np.ascontiguousarray(rgb), alpha, "RGBA"
    if channels == 3:
        return np.ascontiguousarray(arr[..., ::-1]), None, "RGB"
    if channels == 1:
        return arr, None, "L"
    raise ImageReadError(path, f"unsupported 16-bit layout with {channels} channels")


@functools.lru_cache(maxsize=1)
def _srgb_profile() -> bytes:
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _cmyk_to_rgb(
    im: Image.Image, icc: bytes | None, path: Path
) -> tuple[Image.Image, bytes | None]:
    """Converts CMYK to RGB, colour-managed when the file embeds its CMYK profile.

    Returns:
        The RGB image and the profile it now carries: sRGB after a managed conversion,
        None after the plain fallback (untagged data is treated as sRGB by viewers).
    """
    if icc:
        try:
            from PIL import ImageCms

            rgb = ImageCms.profileToProfile(
                im,
                ImageCms.ImageCmsProfile(io.BytesIO(icc)),
                ImageCms.createProfile("sRGB"),
                renderingIntent=ImageCms.Intent.PERCEPTUAL,
                outputMode="RGB",
            )
            if rgb is not None:
                return rgb, _srgb_profile()
        except Exception as exc:  # noqa: BLE001 - ImportError, PyCMSError, OSError...: fall back
            logger.warning(
                "%s: could not use the embedded CMYK profile (%s); using a plain conversion",
                path,
                exc,
            )
    return im.convert("RGB"), None


def _pil_arrays(
    im: Image.Image, path: Path, icc: bytes | None
) -> tuple[np.ndarray, np.ndarray | None, str, bytes | None]:
    """Converts a loaded Pillow image to (H, W, C) integers, alpha, output mode and ICC."""
    mode = im.mode
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(im)
        if mode == "I" and (arr.min() < 0 or arr.max() > 65535):
            logger.warning("%s: 32-bit integer samples clipped to 16 bit", path)
        # astype() also turns big-endian 'I;16B' data into native uint16.
        arr = np.clip(arr, 0, 65535).astype(np.uint16) if mode == "I" else arr.astype(np.uint16)
        return arr[..., None], None, "L", icc
    if mode == "F":
        raise ImageReadError(path, "32-bit floating-point images are not supported")
    if mode == "CMYK":
        im, icc = _cmyk_to_rgb(im, icc, path)
    elif mode == "1":
        im = im.convert("L")
    elif mode in ("P", "PA"):
        has_alpha = mode == "PA" or im.info.get("transparency") is not None
        im = im.convert("RGBA" if has_alpha else "RGB")
    elif mode in ("L", "RGB") and im.info.get("transparency") is not None:
        # A tRNS colour key is transparency too: make it a real alpha channel.
        im = im.convert(mode + "A")
    elif mode == "La":
        im = im.convert("LA")
    elif mode not in MODES:
        has_alpha = "A" in mode or "a" in mode
        try:
            im = im.convert("RGBA" if has_alpha else "RGB")
        except ValueError:
            raise ImageReadError(path, f"unsupported pixel mode {mode!r}") from None
    arr = np.asarray(im)
    if arr.ndim == 2:
        arr = arr[..., None]
    out_mode = im.mode
    alpha = None
    if out_mode in ("LA", "RGBA"):
        alpha = np.ascontiguousarray(arr[..., -1])
        arr = arr[..., :-1]
    return arr, alpha, out_mode, icc


def _orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """Applies an EXIF orientation (1-8) to an (H, W, ...) array, like exif_transpose."""
    if orientation == 2:
        a = a[:, ::-1]
    elif orientation == 3:
        a = a[::-1, ::-1]
    elif orientation == 4:
        a = a[::-1]
    elif orientation == 5:
        a = a.swapaxes(0, 1)
    elif orientation == 6:
        a = np.rot90(a, -1)
    elif orientation == 7:
        a = a.swapaxes(0, 1)[::-1, ::-1]
    elif orientation == 8:
        a = np.rot90(a, 1)
    return np.ascontiguousarray(a)


def _reset_orientation_raw(data: bytes) -> bytes | None:
    """Sets Orientation to 1 in place inside raw EXIF bytes (``Exif\\0\\0`` + TIFF).

    Patching the two bytes keeps every other tag, maker notes included, byte-identical;
    re-serialising through Pillow can break maker notes that use absolute offsets.

    Returns:
        The patched bytes, or None when the layout is unusual (the caller falls back).
    """
    base = len(_EXIF_PREFIX)
    buf = bytearray(data)
    try:
        order = {b"II": "<", b"MM": ">"}[bytes(buf[base : base + 2])]
        ifd0 = base + struct.unpack_from(order + "I", buf, base + 4)[0]
        count = struct.unpack_from(order + "H", buf, ifd0)[0]
        for i in range(count):
            entry = ifd0 + 2 + 12 * i
            tag, typ, n = struct.unpack_from(order + "HHI", buf, entry)
            if tag == _ORIENTATION:
                if typ != 3 or n != 1:  # not a single SHORT: let Pillow rewrite it
                    return None
                struct.pack_into(order + "H", buf, entry + 8, 1)
                break
    except (KeyError, struct.error):
        return None
    return bytes(buf)


def _normalise_exif(exif: bytes | Image.Exif | None, path: Path | None = None) -> bytes | None:
    """Returns EXIF as ``Exif\\0\\0`` + TIFF bytes with Orientation 1, or None."""
    if exif is None:
        return None
    if isinstance(exif, Image.Exif):
        obj = exif
    else:
        data = bytes(exif)
        if not data:
            return None
        if not data.startswith(_EXIF_PREFIX):
            data = _EXIF_PREFIX + data
        patched = _reset_orientation_raw(data)
        if patched is not None:
            return patched
        obj = Image.Exif()
        try:
            obj.load(data)
        except Exception as exc:  # noqa: BLE001 - Pillow raises many types on bad EXIF
            logger.warning("%s: dropping unreadable EXIF data (%s)", path or "image", exc)
            return None
    try:
        if _ORIENTATION in obj:
            obj[_ORIENTATION] = 1
        return obj.tobytes()
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types on bad EXIF
        logger.warning("%s: dropping unreadable EXIF data (%s)", path or "image", exc)
        return None


# IFD0 tags worth carrying over from a TIFF; the rest describe the TIFF's own pixel
# layout (strip offsets, bit depths...) and would be nonsense in another file.
_TIFF_DESCRIPTIVE_TAGS = (270, 271, 272, 274, 305, 306, 315, 33432)


def _tiff_exif(exif: Image.Exif, path: Path) -> bytes | None:
    out = Image.Exif()
    for tag in _TIFF_DESCRIPTIVE_TAGS:
        if tag in exif:
            out[tag] = exif[tag]
    for ifd_tag in (0x8769, 0x8825):  # Exif and GPS sub-IFDs
        try:
            sub = exif.get_ifd(ifd_tag)
        except Exception:  # noqa: BLE001 - a broken sub-IFD is just left out
            sub = {}
        if sub:
            out[ifd_tag] = dict(sub)
    if not len(out):
        return None
    return _normalise_exif(out, path)


def _orientation_and_exif(im: Image.Image, path: Path) -> tuple[int, bytes | None]:
    """Reads the EXIF orientation and the EXIF bytes to keep (Orientation reset to 1)."""
    try:
        exif = im.getexif()
    except Exception as exc:  # noqa: BLE001 - bad EXIF must not make the image unreadable
        logger.warning("%s: ignoring unreadable EXIF data (%s)", path, exc)
        return 1, None
    orientation = exif.get(_ORIENTATION, 1)
    if not isinstance(orientation, int) or not 1 <= orientation <= 8:
        orientation = 1
    if im.format == "TIFF":
        return orientation, _tiff_exif(exif, path)
    raw = im.info.get("exif")
    if isinstance(raw, (bytes, bytearray)) and raw:
        return orientation, _normalise_exif(bytes(raw), path)
    if len(exif):
        return orientation, _normalise_exif(exif, path)
    return orientation, None


def _to_float(arr: np.ndarray) -> np.ndarray:
    scale = 65535.0 if arr.dtype == np.uint16 else 255.0
    out = arr.astype(np.float32)
    # Divide (not multiply by the reciprocal) so that quantising back is exact.
    out /= np.float32(scale)
    return out


def load_image(
    path: str | os.PathLike[str], *, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> LoadedImage:
    """Reads an image file into float pixels plus the metadata needed to write it back.

    EXIF orientation is applied, ICC/EXIF are kept, alpha is split off untouched, and
    16-bit sources stay 16-bit (see the module docstring). The file is only read.

    Args:
        path: Image file to read.
        max_pixels: Refuse images with more than this many pixels, checked from the
            header before decoding (decompression-bomb guard). None disables the check.

    Returns:
        The decoded image.

    Raises:
        ImageReadError: For any problem with the file (missing, empty, not an image,
            truncated, too large, unsupported...); ``str()`` is one line naming the file.
    """
    p = Path(path)
    head = _read_head(p)
    kind = _sniff(head)
    try:
        with _strict_pillow(), _logged_warnings(p):
            return _load(p, head, kind, max_pixels)
    except ImageReadError:
        raise
    except MemoryError:
        raise ImageReadError(p, "not enough memory to decode this image") from None
    except Exception as exc:  # last line of defence: a bad file must never crash callers
        logger.debug("unexpected error while reading %s", p, exc_info=True)
        raise ImageReadError(p, f"could not read image: {exc}") from None


def _load(p: Path, head: bytes, kind: str | None, max_pixels: int | None) -> LoadedImage:
    try:
        im = Image.open(p)
    except UnidentifiedImageError:
        raise ImageReadError(p, _unidentified_reason(p, kind)) from None
    except Image.DecompressionBombError:
        raise ImageReadError(p, "image dimensions are too large (decompression bomb)") from None
    except OSError as exc:
        if exc.errno is not None:
            raise ImageReadError(p, _os_reason(exc)) from None
        raise ImageReadError(p, "truncated or corrupt image data") from None
    except Exception:  # noqa: BLE001
        # A decoder accepted the magic bytes but choked on the header.
        raise ImageReadError(p, "truncated or corrupt image data") from None

    with im:
        width, height = im.size
        if width <= 0 or height <= 0:
            raise ImageReadError(p, "truncated or corrupt image data")
        if max_pixels is not None and width * height > max_pixels:
            raise ImageReadError(p, _bomb_reason(width, height, max_pixels))
        fmt = "JPEG" if im.format == "MPO" else str(im.format)
        icc = im.info.get("icc_profile") or None
        quality = estimate_jpeg_quality(im)
        try:
            if _needs_opencv(im, head):
                ints, alpha, mode = _decode_opencv(p, im, head)
            else:
                im.load()  # force the full decode now so truncation surfaces here
                ints, alpha, mode, icc = _pil_arrays(im, p, icc)
            orientation, exif = _orientation_and_exif(im, p)
        except ImageReadError:
            raise
        except Image.DecompressionBombError:  # only if a plugin checks frames itself
            raise ImageReadError(p, "image dimensions are too large (decompression bomb)") from None
        except MemoryError:
            raise ImageReadError(
                p, f"not enough memory to decode {width} x {height} image"
            ) from None
        except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError):
            logger.debug("decode failure for %s", p, exc_info=True)
            raise ImageReadError(p, "truncated or corrupt image data") from None

    bit_depth = 16 if ints.dtype == np.uint16 else 8
    if orientation != 1:
        ints = _orient(ints, orientation)
        alpha = _orient(alpha, orientation) if alpha is not None else None
    return LoadedImage(
        path=p,
        pixels=_to_float(ints),
        alpha=alpha,
        mode=mode,
        bit_depth=bit_depth,
        format=fmt,
        icc_profile=bytes(icc) if icc else None,
        exif=exif,
        jpeg_quality=quality,
    )


# Standard IJG (libjpeg) luminance table, natural (row-major) order, which is also the
# order Pillow >= 8.3 reports in ``Image.quantization``.
_IJG_LUMA = np.array(
    [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
     14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
     18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
     49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99],
    dtype=np.int64,
)  # fmt: skip


@functools.lru_cache(maxsize=1)
def _ijg_tables() -> np.ndarray:
    """(100, 64) luma tables libjpeg writes for quality 1..100 (baseline-clamped)."""
    q = np.arange(1, 101, dtype=np.int64)
    scale = np.where(q < 50, 5000 // q, 200 - 2 * q)
    return np.clip((_IJG_LUMA[None, :] * scale[:, None] + 50) // 100, 1, 255)


def estimate_jpeg_quality(pil_image: Image.Image) -> int | None:
    """Estimates the IJG quality setting that produced a JPEG's luma quantisation table.

    The table is compared with the tables libjpeg (and so Pillow, most cameras' software
    and web tools) writes for each quality 1-100; the closest one wins. Non-IJG encoders
    get the nearest equivalent, which is still a good indicator of compression strength.

    Args:
        pil_image: An opened (not necessarily loaded) Pillow image.

    Returns:
        Quality 1-100, or None if the image is not a JPEG.
    """
    tables = getattr(pil_image, "quantization", None)
    if not tables or 0 not in tables:
        return None
    try:
        luma = np.asarray(list(tables[0]), dtype=np.int64)
    except (TypeError, ValueError):
        return None
    if luma.size != 64:
        return None
    errors = np.abs(_ijg_tables() - luma[None, :]).sum(axis=1)
    # On ties prefer the highest quality (flip so argmin's first hit is the highest q).
    return int(100 - np.argmin(errors[::-1]))


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------

_FORMAT_ALIASES = {
    "png": "PNG",
    "jpg": "JPEG",
    "jpeg": "JPEG",
    "jpe": "JPEG",
    "webp": "WEBP",
    "tif": "TIFF",
    "tiff": "TIFF",
    "bmp": "BMP",
}
_FORMAT_EXT = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "TIFF": ".tif", "BMP": ".bmp"}


def _format_name(fmt: str | None, path: Path) -> str:
    key = (fmt if fmt is not None else path.suffix).lower().lstrip(".")
    try:
        return _FORMAT_ALIASES[key]
    except KeyError:
        shown = fmt if fmt is not None else (path.suffix or "(no extension)")
        raise ImageWriteError(
            path, f"unsupported output format {shown!r} (use png, jpeg, webp, tiff or bmp)"
        ) from None


# Saving quantises (and PNG-filters) this many pixels at a time, so that the float
# temporaries stay small: a 100 MP float32 frame quantised at once made 2.4 GB of copies.
_SAVE_BAND_PIXELS = 1 << 18
# PNGs of at least this many pixels are encoded band by band (_write_png_stream): Pillow
# needs the whole image as integers plus its own 4-byte-per-pixel copy of it.
_STREAM_PNG_PIXELS = 16_000_000


def _row_bands(height: int, row_size: int) -> list[tuple[int, int]]:
    """``[r0, r1)`` ranges of about ``_SAVE_BAND_PIXELS`` values covering ``height`` rows."""
    rows = max(1, _SAVE_BAND_PIXELS // max(1, row_size))
    return [(r0, min(height, r0 + rows)) for r0 in range(0, height, rows)]


def _quantize(x: np.ndarray, bit_depth: int) -> np.ndarray:
    """Float [0, 1] to uint8/uint16 by clip(x * max + 0.5) then floor (round half up),
    band by band into a new array."""
    x = np.asarray(x)
    if x.ndim < 2:
        return _quantize_band(x, bit_depth)
    out = np.empty(x.shape, np.uint8 if bit_depth == 8 else np.uint16)
    for r0, r1 in _row_bands(len(x), x[0].size):
        out[r0:r1] = _quantize_band(x[r0:r1], bit_depth)
    return out


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


def _alpha_at_depth(alpha: np.ndarray, bit_depth: int) -> np.ndarray:
    """Returns alpha as uint8/uint16, bit-exact when the depth already matches."""
    a = np.asarray(alpha)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
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
        # weights Pillow uses for 'L', which is exact when the three channels are equal.
        weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
        return (pix.astype(np.float32) @ weights)[..., None]
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
    """

    pix: np.ndarray
    channels: int
    depth: int
    alpha: np.ndarray | None

    @property
    def shape(self) -> tuple[int, int, int]:
        return (*self.pix.shape[:2], self.channels + (self.alpha is not None))

    @property
    def dtype(self) -> type:
        return np.uint8 if self.depth == 8 else np.uint16

    def bands(self) -> list[tuple[int, int]]:
        height, width, channels = self.shape
        return _row_bands(height, width * max(channels, self.pix.shape[2]))

    def rows(self, r0: int, r1: int) -> np.ndarray:
        """Rows ``r0:r1`` as ``(rows, W, channels [+ 1])`` integers."""
        band = self.pix[r0:r1]
        if band.dtype == np.uint8 or band.dtype == np.uint16:
            band = _to_float(band)
        ints = _quantize_band(_fit_channels(band, self.channels), self.depth)
        if self.alpha is not None:
            ints = np.concatenate([ints, self.alpha[r0:r1, :, None]], axis=2)
        return ints

    def whole(self) -> np.ndarray:
        out = np.empty(self.shape, self.dtype)
        for r0, r1 in self.bands():
            out[r0:r1] = self.rows(r0, r1)
        return out


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


def _png_chunk(ctype: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(ctype + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + ctype + data + struct.pack(">I", crc)


def _png_metadata_chunks(icc: bytes | None, exif: bytes | None) -> list[bytes]:
    chunks = []
    if icc:
        chunks.append(_png_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc)))
    if exif:
        chunks.append(_png_chunk(b"eXIf", exif.removeprefix(_EXIF_PREFIX)))
    return chunks


def _png_insert_after_ihdr(png: bytes, chunks: list[bytes]) -> bytes:
    # IHDR is always the first chunk: signature (8) + length (4) + type (4) + data + CRC (4).
    end = 8 + 8 + struct.unpack(">I", png[8:12])[0] + 4
    return png[:end] + b"".join(chunks) + png[end:]


def _encode_png16(arr: np.ndarray, color_type: int, chunks: list[bytes]) -> bytes:
    """Minimal 16-bit PNG encoder (used for grey+alpha, which OpenCV cannot write)."""
    h, w, c = arr.shape
    raw = np.ascontiguousarray(arr.astype(">u2")).view(np.uint8).reshape(h, w * c * 2)
    # "Up" filter (type 2): byte-wise difference to the previous row helps zlib a lot
    # on photographic data and is trivial to vectorise.
    filtered = raw.copy()
    filtered[1:] -= raw[:-1]
    rows = np.empty((h, 1 + raw.shape[1]), dtype=np.uint8)
    rows[:, 0] = 2
    rows[:, 1:] = filtered
    ihdr = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    return b"".join(
        [
            _PNG_SIGNATURE,
            _png_chunk(b"IHDR", ihdr),
            *chunks,
            _png_chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)),
            _png_chunk(b"IEND", b""),
        ]
    )


_PNG_COLOR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> grey, grey+alpha, RGB, RGBA


def _write_png_stream(fh: IO[bytes], pixels: _OutputPixels, chunks: list[bytes]) -> None:
    """Encodes a PNG band by band (filtered, then deflated as the bands come), so that
    no full-size copy of the image is made."""
    height, width, channels = pixels.shape
    ihdr = struct.pack(">IIBBBBB", width, height, pixels.depth, _PNG_COLOR_TYPES[channels],
                       0, 0, 0)
    fh.write(_PNG_SIGNATURE + _png_chunk(b"IHDR", ihdr) + b"".join(chunks))
    deflate = zlib.compressobj(6)
    bpp = channels * pixels.depth // 8  # bytes per pixel
    prior = np.zeros(width * bpp, np.uint8)  # the row above the first: zeros
    for r0, r1 in pixels.bands():
        ints = pixels.rows(r0, r1)
        if pixels.depth == 16:
            ints = ints.astype(">u2")  # PNG stores 16-bit samples big-endian
        raw = np.ascontiguousarray(ints).view(np.uint8).reshape(r1 - r0, width * bpp)
        data = deflate.compress(_png_filter(raw, prior, bpp))
        if data:
            fh.write(_png_chunk(b"IDAT", data))
        prior = raw[-1]
    fh.write(_png_chunk(b"IDAT", deflate.flush()) + _png_chunk(b"IEND", b""))


def _png_filter(raw: np.ndarray, prior: np.ndarray, bpp: int) -> np.ndarray:
    """PNG-filters rows of bytes ``raw`` ``(rows, n)`` whose row above is ``prior``.

    Each row gets the filter type (None, Sub, Up, Average, Paeth) whose output has the
    least sum of absolute values as signed bytes, libpng's (and Pillow's) heuristic.
    Returns ``(rows, 1 + n)`` bytes: the filter type, then the filtered row.
    """
    x = raw.astype(np.int16)
    b = np.concatenate([prior[None], raw[:-1]]).astype(np.int16)  # up
    a = np.zeros_like(x)
    a[:, bpp:] = x[:, :-bpp]  # left
    c = np.zeros_like(x)
    c[:, bpp:] = b[:, :-bpp]  # up-left
    pa, pb, pc = np.abs(b - c), np.abs(a - c), np.abs(a + b - 2 * c)
    paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
    # uint8 wraps modulo 256, as the filters are defined.
    filtered = np.stack([x, x - a, x - b, x - ((a + b) >> 1), x - paeth]).astype(np.uint8)
    cost = np.abs(filtered.view(np.int8).astype(np.int16)).sum(axis=2)
    best = cost.argmin(axis=0)
    out = np.empty((len(raw), raw.shape[1] + 1), np.uint8)
    out[:, 0] = best
    out[:, 1:] = filtered[best, np.arange(len(raw))]
    return out


def _opencv_encode(ext: str, arr: np.ndarray) -> bytes:
    import cv2

    # OpenCV expects BGR(A) channel order.
    if arr.shape[2] == 3:
        arr = arr[..., ::-1]
    elif arr.shape[2] == 4:
        arr = arr[..., [2, 1, 0, 3]]
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(arr))
    if not ok:
        raise OSError(f"OpenCV could not encode {ext} data")
    return buf.tobytes()


@functools.lru_cache(maxsize=1)
def _new_file_mode() -> int:
    # NamedTemporaryFile creates 0600 files; new outputs should get the usual
    # 0666 & ~umask like any other program's output. os.umask() would change the umask
    # for all threads for a moment, so read it from /proc where that exists.
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o644


_TEMP_PREFIX, _TEMP_SUFFIX = ".rbqe-", ".part"  # see is_temp_file() and remove_stale_temps()


def _lock_temp(fd: int) -> None:
    """Marks a temp file as being written, so that another run's cleanup leaves it alone.

    The lock lasts until the file is closed, and dies with the process, even on SIGKILL.
    """
    if fcntl is not None:
        with contextlib.suppress(OSError):  # no locks here: cleanup then goes by age
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _atomic_write(target: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Writes via ``write(fh)`` to a temp file beside ``target``, then renames it into place.

    The temp file lives in the target folder so the final ``os.replace`` is an atomic
    rename on the same file system; an existing ``target`` is either fully replaced or
    left as it was. On any failure (including KeyboardInterrupt) the temp file is removed.
    """
    tmp_name = None
    try:
        with tempfile.NamedTemporaryFile(
            dir=target.parent, delete=False, prefix=_TEMP_PREFIX, suffix=_TEMP_SUFFIX
        ) as tmp:
            tmp_name = tmp.name
            _lock_temp(tmp.fileno())
            write(tmp)
            tmp.flush()
            os.fsync(tmp.fileno())
        try:
            mode = stat.S_IMODE(target.stat().st_mode)
        except OSError:
            mode = _new_file_mode()
        with contextlib.suppress(OSError):
            os.chmod(tmp_name, mode)
        os.replace(tmp_name, target)
    except BaseException:
        if tmp_name is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
        raise
    if os.name == "posix":
        # Persist the rename itself; best effort (some file systems refuse this).
        with contextlib.suppress(OSError):
            fd = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.resolve() == b.resolve():
            return True
    except (OSError, RuntimeError):
        pass
    try:
        return os.path.samefile(a, b)  # catches hard links and case-insensitive names
    except OSError:
        return False


def save_image(
    path: str | os.PathLike[str],
    pixels: np.ndarray,
    *,
    alpha: np.ndarray | None = None,
    mode: str = "RGB",
    bit_depth: int = 8,
    fmt: str | None = None,
    quality: int = 95,
    icc_profile: bytes | None = None,
    exif: bytes | None = None,
    keep_metadata: bool = True,
    protect: Iterable[str | os.PathLike[str]] = (),
) -> Path:
    """Writes an image atomically, never over a protected (input) file.

    Args:
        path: Destination file. Missing parent folders are created.
        pixels: ``(H, W, C)`` or ``(H, W)`` float array in ``[0, 1]`` (uint8/uint16 are
            accepted too). ``C`` may be 1 or 3 whatever ``mode`` says: grey is repeated
            for RGB, RGB is folded to luma for grey.
        alpha: ``(H, W)`` alpha for ``LA``/``RGBA`` (uint8/uint16 kept bit-exact when
            the output depth matches; converted with rounding otherwise).
        mode: ``'L'``, ``'LA'``, ``'RGB'`` or ``'RGBA'``.
        bit_depth: 8 or 16. PNG and TIFF keep 16 bit; JPEG, WebP and BMP are written at 8.
        fmt: ``'png'``, ``'jpeg'``/``'jpg'``, ``'webp'``, ``'tiff'``/``'tif'`` or ``'bmp'``;
            None picks it from the file suffix.
        quality: JPEG/WebP quality 1-100.
        icc_profile: ICC profile to embed (PNG, JPEG, WebP, 8-bit/grey TIFF).
        exif: EXIF bytes to embed (PNG, JPEG, WebP); Orientation is forced to 1.
        keep_metadata: False drops EXIF; the ICC profile is still written because it
            defines the colours.
        protect: Paths that must not be overwritten (the batch's inputs).

    Returns:
        The path written.

    Raises:
        ImageWriteError: If writing fails or is refused; no partial file is left behind.
        ValueError: For invalid arguments (mode, bit depth, quality, array shapes).
    """
    p = Path(path)
    fmt_name = _format_name(fmt, p)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, not {bit_depth!r}")
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"quality must be in 1..100, not {quality!r}")
    for other in protect:
        if _same_file(p, Path(other)):
            raise ImageWriteError(p, "refusing to overwrite an input file")

    pix = np.asarray(pixels)  # uint8/uint16 are scaled to [0, 1] band by band
    if pix.ndim == 2:
        pix = pix[..., None]
    if pix.ndim != 3:
        raise ValueError(f"pixels must be (H, W, C) or (H, W), got shape {pix.shape}")
    height, width = pix.shape[:2]

    # Format capabilities decide the effective mode and depth.
    depth = bit_depth if fmt_name in ("PNG", "TIFF") else 8
    if depth != bit_depth:
        logger.info("%s: %s is 8-bit only; rounding 16-bit data to 8 bit", p, fmt_name)
    out_mode = mode
    if fmt_name == "JPEG" and mode in ("LA", "RGBA"):
        out_mode = mode[:-1]
        logger.warning("%s: JPEG cannot store transparency; the alpha channel is dropped", p)
    elif fmt_name == "WEBP" and mode in ("L", "LA"):
        out_mode = "RGB" + mode[1:]  # WebP has no grey mode
    elif fmt_name == "BMP" and mode == "LA":
        out_mode = "RGBA"  # BMP has no grey+alpha mode
    elif fmt_name == "TIFF" and mode == "LA" and depth == 16:
        out_mode = "RGBA"  # neither Pillow nor OpenCV writes 16-bit grey+alpha TIFF
        logger.info("%s: writing 16-bit grey+alpha as 16-bit RGBA TIFF", p)

    channels = 1 if out_mode in ("L", "LA") else 3
    _fit_channels(pix[:0], channels)  # a bad channel count fails here, not in the encoder
    alpha_ints = None
    if out_mode in ("LA", "RGBA"):
        if alpha is None:
            raise ImageWriteError(p, f"mode {mode} needs an alpha channel, none was given")
        alpha_ints = _alpha_at_depth(alpha, depth)
        if alpha_ints.shape != (height, width):
            raise ImageWriteError(
                p,
                f"alpha is {alpha_ints.shape[1]} x {alpha_ints.shape[0]} but the image is "
                f"{width} x {height}",
            )
    out_pixels = _OutputPixels(pix, channels, depth, alpha_ints)

    icc = bytes(icc_profile) if icc_profile else None
    exif_bytes = _normalise_exif(exif, p) if (keep_metadata and exif) else None
    if fmt_name == "JPEG" and exif_bytes and len(exif_bytes) > _JPEG_MAX_EXIF:
        logger.warning("%s: EXIF block too large for JPEG (%d bytes); dropped", p, len(exif_bytes))
        exif_bytes = None

    write = _make_writer(p, fmt_name, out_pixels, int(quality), icc, exif_bytes)

    try:
        if p.is_dir():
            raise ImageWriteError(p, "is a directory")
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImageWriteError(p, f"cannot create output folder: {_os_reason(exc)}") from None
    try:
        with _logged_warnings(p):
            _atomic_write(p, write)
    except ImageWriteError:
        raise
    except OSError as exc:
        raise ImageWriteError(
            p, _os_reason(exc) if exc.errno else f"could not write: {exc}"
        ) from None
    except MemoryError:
        raise ImageWriteError(p, "not enough memory to encode this image") from None
    except Exception as exc:  # encoder errors must not reach the user as tracebacks
        logger.debug("encoder failure for %s", p, exc_info=True)
        raise ImageWriteError(p, f"could not encode {fmt_name}: {exc}") from None
    return p


def _make_writer(
    p: Path,
    fmt_name: str,
    pixels: _OutputPixels,
    quality: int,
    icc: bytes | None,
    exif: bytes | None,
) -> Callable[[IO[bytes]], None]:
    """Returns a function that encodes ``pixels`` into a file object."""
    height, width, channels = pixels.shape
    depth = pixels.depth
    if fmt_name == "PNG" and height * width >= _STREAM_PNG_PIXELS:
        chunks = _png_metadata_chunks(icc, exif)
        return lambda fh: _write_png_stream(fh, pixels, chunks)
    if depth == 16 and channels > 1:
        # Pillow cannot hold 16-bit colour: OpenCV encodes RGB(A); grey+alpha PNG uses
        # the small encoder above. Metadata chunks are spliced into PNGs by hand.
        if fmt_name == "TIFF" and (icc or exif):
            logger.info("%s: metadata is not written to 16-bit colour TIFF", p)

        def write16(fh: IO[bytes]) -> None:
            ints = pixels.whole()
            if fmt_name == "PNG":
                chunks = _png_metadata_chunks(icc, exif)
                if channels == 2:
                    data = _encode_png16(ints, 4, chunks)
                else:
                    data = _png_insert_after_ihdr(_opencv_encode(".png", ints), chunks)
            else:
                data = _opencv_encode(".tif", ints)
            fh.write(data)

        return write16

    # Pillow path: 8-bit anything, or 16-bit grey as 'I;16'.
    kwargs: dict[str, Any] = {}
    if fmt_name in ("PNG", "JPEG", "WEBP", "TIFF") and icc:
        kwargs["icc_profile"] = icc
    if fmt_name in ("PNG", "JPEG", "WEBP") and exif:
        kwargs["exif"] = exif
    if fmt_name in ("JPEG", "WEBP"):
        kwargs["quality"] = quality
    if fmt_name == "WEBP" and channels == 4:
        kwargs["exact"] = True  # keep colour under transparent pixels
    if fmt_name == "TIFF" and features.check("libtiff"):
        kwargs["compression"] = "tiff_lzw"  # lossless and widely readable

    def write(fh: IO[bytes]) -> None:
        _pillow_image(pixels).save(fh, format=fmt_name, **kwargs)

    return write


def save_like(
    path: str | os.PathLike[str],
    pixels: np.ndarray,
    src: LoadedImage,
    *,
    fmt: str | None = None,
    quality: int = 95,
    keep_metadata: bool = True,
    protect: Iterable[str | os.PathLike[str]] = (),
) -> Path:
    """Saves ``pixels`` with the mode, depth, alpha and metadata of ``src``.

    ``src.path`` is always protected, so an output can never replace its own input.

    Args:
        path: Destination file.
        pixels: Processed pixels, same size as ``src``.
        src: The image the pixels came from.
        fmt: Output format, None for the suffix of ``path``.
        quality: JPEG/WebP quality.
        keep_metadata: Whether to write EXIF (ICC is always kept).
        protect: Further paths that must not be overwritten.

    Returns:
        The path written.

    Raises:
        ImageWriteError: If writing fails or is refused.
    """
    return save_image(
        path,
        pixels,
        alpha=src.alpha,
        mode=src.mode,
        bit_depth=src.bit_depth,
        fmt=fmt,
        quality=quality,
        icc_profile=src.icc_profile,
        exif=src.exif,
        keep_metadata=keep_metadata,
        protect=[src.path, *protect],
    )


# --------------------------------------------------------------------------------------
# Naming and scanning
# --------------------------------------------------------------------------------------


def _check_name_part(value: str, what: str) -> None:
    if any(sep and sep in value for sep in (os.sep, os.altsep, "/")) or value in (".", ".."):
        raise ValueError(f"{what} must not contain path separators: {value!r}")


def _output_ext(fmt: str | None, input_path: Path) -> str:
    if fmt is None:
        return input_path.suffix.lower() or ".png"
    name = _FORMAT_ALIASES.get(fmt.lower().lstrip("."))
    if name is None:
        raise ValueError(f"unsupported output format {fmt!r} (use png, jpeg, webp, tiff or bmp)")
    return _FORMAT_EXT[name]


def _relative_folder(input_path: Path, input_root: Path | None) -> Path:
    if input_root is None:
        return Path()
    for a, b in (
        (input_path, Path(input_root)),
        (input_path.absolute(), Path(input_root).absolute()),
    ):
        try:
            return a.relative_to(b).parent
        except ValueError:
            continue
    logger.debug("%s is not under %s; writing it flat", input_path, input_root)
    return Path()


def _output_name(stem: str, suffix: str, exit_tag: str | None, ext: str) -> str:
    return f"{stem}{suffix}" + (f".{exit_tag}" if exit_tag else "") + ext


def output_path_for(
    input_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    suffix: str = "",
    exit_tag: str | None = None,
    fmt: str | None = "png",
    input_root: str | os.PathLike[str] | None = None,
) -> Path:
    """Returns ``OUTDIR[/REL]/<stem><suffix>[.<exit_tag>].<ext>`` for one input.

    This is the plain rule; :func:`plan_outputs` applies it to a whole batch and resolves
    collisions.

    Args:
        input_path: The input file.
        out_dir: Output folder.
        suffix: Appended to the stem (e.g. ``'_rbqe'``).
        exit_tag: Optional tag such as ``'exit3'`` inserted before the extension.
        fmt: Output format (``'png'``, ``'jpeg'``...); None keeps the input's extension.
        input_root: Folder the input was found in during a recursive scan; its relative
            sub-folders are recreated under ``out_dir``.

    Returns:
        The output path.
    """
    inp = Path(input_path)
    if suffix:
        _check_name_part(suffix, "suffix")
    if exit_tag:
        _check_name_part(exit_tag, "exit_tag")
    root = Path(input_root) if input_root is not None else None
    name = _output_name(inp.stem, suffix, exit_tag, _output_ext(fmt, inp))
    return Path(out_dir) / _relative_folder(inp, root) / name


def _path_key(path: Path) -> str:
    # Case-folded so that names differing only in case count as the same file, as they
    # do on macOS and Windows file systems.
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError):
        resolved = path.absolute()
    return os.path.normcase(str(resolved)).casefold()


def _sort_key(item: tuple[Path, Path | None]) -> tuple[str, str]:
    text = str(item[0])
    return text.casefold(), text


def plan_outputs(
    inputs: Iterable[tuple[str | os.PathLike[str], str | os.PathLike[str] | None]],
    out_dir: str | os.PathLike[str],
    *,
    suffix: str = "",
    fmt: str | None = "png",
    exit_tags: Iterable[str | None] = (None,),
) -> dict[Path, dict[str | None, Path]]:
    """Assigns every input a unique output path per exit tag, deterministically.

    Rules, applied in sorted input order:

    1. The plain name from :func:`output_path_for`.
    2. Inputs whose plain names collide (``a.jpg`` and ``a.png`` -> ``a.png``; compared
       case-insensitively) all get their source extension added: ``a_jpg.png``,
       ``a_png.png``.
    3. A name that would be an input file of the batch gets ``_rbqe`` added, with a
       logged warning (outputs must never replace inputs).
    4. Anything still taken gets ``_2``, ``_3``... added.

    Args:
        inputs: ``(file, root)`` pairs as returned by :func:`list_images`.
        out_dir: Output folder.
        suffix: Appended to every stem.
        fmt: Output format, or None to keep each input's extension.
        exit_tags: Tags to plan names for (None = the untagged final output).

    Returns:
        ``{input file: {exit tag: output path}}``.
    """
    tags = list(dict.fromkeys(exit_tags))
    for tag in tags:
        if tag:
            _check_name_part(tag, "exit_tag")
    if suffix:
        _check_name_part(suffix, "suffix")
    unique: dict[Path, Path | None] = {}
    for file, root in inputs:
        unique.setdefault(Path(file), Path(root) if root is not None else None)
    items = sorted(unique.items(), key=_sort_key)
    input_keys = {_path_key(f) for f, _ in items}
    out = Path(out_dir)

    folders = {f: out / _relative_folder(f, root) for f, root in items}
    clash = Counter((_path_key(folders[f]), f.stem.casefold()) for f, _ in items)

    taken: set[str] = set()
    plan: dict[Path, dict[str | None, Path]] = {}
    for f, _ in items:
        folder = folders[f]
        ext = _output_ext(fmt, f)
        stem = f.stem
        if clash[(_path_key(folder), stem.casefold())] > 1 and f.suffix:
            stem = f"{stem}_{f.suffix.lstrip('.').lower()}"
        base, n, guarded = stem, 1, False
        while True:
            paths = {t: folder / _output_name(stem, suffix, t, ext) for t in tags}
            keys = {t: _path_key(q) for t, q in paths.items()}
            if not guarded and any(k in input_keys for k in keys.values()):
                logger.warning("%s: output name equals an input file; adding '_rbqe'", f)
                base = stem = f"{base}_rbqe"
                guarded = True
                continue
            if any(k in taken or k in input_keys for k in keys.values()):
                n += 1
                stem = f"{base}_{n}"
                continue
            break
        taken.update(keys.values())
        plan[f] = paths
    return plan


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """True if the file name has a supported image suffix (case-insensitive)."""
    return Path(path).suffix.lower() in SUPPORTED_SUFFIXES


def list_images(
    paths: Iterable[str | os.PathLike[str]],
    *,
    recursive: bool = False,
    exclude: Iterable[str | os.PathLike[str]] = (),
    skip_outputs: bool = False,
) -> list[tuple[Path, Path | None]]:
    """Expands files and folders into a sorted, de-duplicated list of images to process.

    Folders are scanned for files with a supported suffix (see :data:`SUPPORTED_SUFFIXES`);
    hidden files and folders (``.name``, e.g. macOS ``._IMG.JPG`` resource forks, rbqe's
    temp files) are skipped, and symlinked folders are not followed (no loops). Files
    named directly are included whatever their suffix, so that a bad one is reported by
    :func:`load_image` instead of being silently ignored; only rbqe's own temp files
    (:func:`is_temp_file`) are left out even then.

    Args:
        paths: Files and/or folders.
        recursive: Also scan sub-folders.
        exclude: Folders to skip while scanning (e.g. an output folder inside the input).
        skip_outputs: Leave out earlier outputs of rbqe whose source is also listed
            (as noted by :func:`record_output`), so that a batch whose output folder is
            its input folder does not enhance its own results on a re-run.

    Returns:
        ``(file, root)`` pairs sorted by path; ``root`` is the scanned folder the file
        was found in, or None for files named directly.
    """
    excluded = {_path_key(Path(e)) for e in exclude}
    found: dict[str, tuple[Path, Path | None]] = {}
    unavailable = 0
    for raw in paths:
        p = Path(raw)
        if not p.is_dir():
            if is_temp_file(p):
                logger.warning("skipping %s: an unfinished rbqe output, not an input", p)
                continue
            found.setdefault(_path_key(p), (p, None))
            continue
        for folder, dirnames, filenames in os.walk(
            p, onerror=lambda e: logger.warning("cannot scan %s: %s", e.filename, _os_reason(e))
        ):
            here = Path(folder)
            dirnames[:] = sorted(
                d
                for d in dirnames
                if recursive and not d.startswith(".") and _path_key(here / d) not in excluded
            )
            for name in sorted(filenames):
                f = here / name
                if name.startswith("."):
                    continue
                if not is_image_file(f):
                    if Path(name).suffix.lower() in (_HEIF_SUFFIXES | _AVIF_SUFFIXES):
                        unavailable += 1
                    continue
                if not f.is_file():
                    logger.debug("skipping %s: not a regular file", f)
                    continue
                found.setdefault(_path_key(f), (f, p))
    if unavailable:
        logger.warning(
            "skipped %d HEIC/AVIF file(s): support is not installed "
            "(pip install 'rbqe-studio[heif]')",
            unavailable,
        )
    if skip_outputs:
        found = _drop_earlier_outputs(found)
    return sorted(found.values(), key=_sort_key)


# --------------------------------------------------------------------------------------
# Earlier outputs and stale temp files
# --------------------------------------------------------------------------------------

OUTPUT_LOG = ".rbqe-outputs.jsonl"
"""Hidden file listing the outputs rbqe wrote into a folder that is also an input folder.

Names alone cannot tell rbqe's ``photo.png`` (made from ``photo.jpg``) from a user's own
``photo.png`` beside ``photo.jpg``, so when outputs go where inputs are scanned (``-o``
the input folder), each output is noted here before it is written, one JSON line
``{"output": NAME, "source": PATH}`` with the source relative to the folder.
:func:`list_images` with ``skip_outputs`` then leaves these files out.
"""


def record_output(output: str | os.PathLike[str], source: str | os.PathLike[str]) -> None:
    """Notes in ``output``'s folder that it is rbqe's enhancement of ``source``.

    Call it before writing the output, so that a kill between the write and the note
    cannot leave an unrecorded output behind. Best effort: a failure is logged, not
    raised, as it only costs the recognition of this output on a re-run. Entries are
    only appended (the last one for a name counts), so each call costs the same however
    big the folder is.
    """
    out, src = Path(output), Path(source)
    folder = out.parent
    line = json.dumps({"output": out.name, "source": _relative_to(src, folder)},
                      ensure_ascii=False) + "\n"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # One small O_APPEND write per entry, so that concurrent runs do not mix lines.
        fd = os.open(folder / OUTPUT_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            os.write(fd, line.encode("utf-8"))
        finally:
            os.close(fd)
    except OSError as exc:
        logger.warning("%s: cannot note this output in %s (%s); a re-run may take it for "
                       "an input", out, OUTPUT_LOG, _os_reason(exc))


def _relative_to(path: Path, folder: Path) -> str:
    try:
        return Path(os.path.relpath(path.absolute(), folder.absolute())).as_posix()
    except ValueError:  # another drive on Windows
        return str(path.absolute())


def _read_output_log(folder: Path) -> dict[str, Path]:
    """``{output name: source path}`` from ``folder``'s :data:`OUTPUT_LOG` ({} if none)."""
    try:
        text = (folder / OUTPUT_LOG).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    entries: dict[str, Path] = {}
    for line in text.splitlines():
        try:
            entry = json.loads(line)
            name, source = entry["output"], entry["source"]
        except (ValueError, TypeError, KeyError):
            continue  # a torn or foreign line
        if isinstance(name, str) and isinstance(source, str):
            entries[name] = folder / source
    return entries


def _drop_earlier_outputs(
    found: dict[str, tuple[Path, Path | None]],
) -> dict[str, tuple[Path, Path | None]]:
    """Leaves out files that rbqe made from another file of ``found`` (see :data:`OUTPUT_LOG`)."""
    logs: dict[Path, dict[str, Path]] = {}
    source_of: dict[str, str] = {}
    for key, (f, _) in found.items():
        if f.parent not in logs:
            logs[f.parent] = _read_output_log(f.parent)
        source = logs[f.parent].get(f.name)
        if source is not None:
            source_of[key] = _path_key(source)
    earlier = {k for k in source_of if _traces_to_input(k, source_of, found)}
    if earlier:
        logger.info("leaving out %d earlier output(s) of rbqe (noted in %s)",
                    len(earlier), OUTPUT_LOG)
    return {k: v for k, v in found.items() if k not in earlier}


def _traces_to_input(key: str, source_of: dict[str, str], found: dict[str, Any]) -> bool:
    """True if following the noted sources from ``key`` ends at a file that is an input.

    If the source is gone (or the notes loop), the file now stands for itself: it is
    processed like any photo of the user's.
    """
    seen = {key}
    while key in source_of:
        key = source_of[key]
        if key not in found or key in seen:
            return False
        seen.add(key)
    return True


def lists_folder(
    folder: str | os.PathLike[str],
    paths: Iterable[str | os.PathLike[str]],
    *,
    recursive: bool = False,
    exclude: Iterable[str | os.PathLike[str]] = (),
) -> bool:
    """True if :func:`list_images` with these arguments would pick up images in ``folder``.

    The folder of a file named directly counts too: a re-run with a shell wildcard
    (``rbqe enhance photos/* -o photos``) names the outputs there as well.
    """
    target = _path_key(Path(folder))
    excluded = {_path_key(Path(e)) for e in exclude}
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            if _walks_into(_path_key(p), target, recursive, excluded):
                return True
        elif _path_key(p.parent) == target:
            return True
    return False


def _walks_into(root: str, target: str, recursive: bool, excluded: set[str]) -> bool:
    """Whether scanning folder ``root`` reaches ``target`` (both :func:`_path_key` values)."""
    if target == root:
        return True
    prefix = root if root.endswith(os.sep) else root + os.sep
    if not recursive or not target.startswith(prefix):
        return False
    # Like list_images: hidden and excluded sub-folders are not entered.
    here = root
    for part in target[len(prefix):].split(os.sep):
        here = os.path.join(here, part)
        if part.startswith(".") or here in excluded:
            return False
    return True


_TEMP_NAME = re.compile(r"\.rbqe-[a-z0-9_]+\.part")  # tempfile's random part is [a-z0-9_]

STALE_TEMP_AGE_S = 120.0
"""A temp file is left alone until this long after its last change (see remove_stale_temps)."""

_STALE_TEMP_AGE_NO_LOCKS_S = 600.0


def is_temp_file(path: str | os.PathLike[str]) -> bool:
    """True for the name of a temp file of rbqe's atomic writes (``.rbqe-*.part``)."""
    return _TEMP_NAME.fullmatch(Path(path).name) is not None


def remove_stale_temps(
    folder: str | os.PathLike[str], *, min_age_s: float = STALE_TEMP_AGE_S
) -> list[Path]:
    """Deletes the temp files that rbqe processes killed mid-write left in ``folder``.

    Only rbqe's own temp names are touched, and only ones no live writer holds: a writer
    keeps an exclusive ``flock`` on its temp file while writing it. A temp also stays
    until ``min_age_s`` after its last change, which covers the instants before a writer
    takes its lock and between closing and renaming the file. Where locks cannot tell
    (no ``fcntl``, some network file systems), only age counts, with a longer wait.

    Returns:
        The files removed.
    """
    folder = Path(folder)
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    now = time.time()
    removed = [folder / n for n in names
               if _TEMP_NAME.fullmatch(n) and _remove_if_stale(folder / n, now, min_age_s)]
    if removed:
        logger.info("%s: removed %d stale temp file(s) of an interrupted run",
                    folder, len(removed))
    return removed


def _remove_if_stale(path: Path, now: float, min_age_s: float) -> bool:
    try:
        st = os.lstat(path)
    except OSError:
        return False
    age = now - st.st_mtime
    if not stat.S_ISREG(st.st_mode) or age < min_age_s:
        return False
    held = _writer_holds(path)
    if held or (held is None and age < max(min_age_s, _STALE_TEMP_AGE_NO_LOCKS_S)):
        return False
    try:
        os.unlink(path)
    except OSError:
        return False
    return True


def _writer_holds(path: Path) -> bool | None:
    """Whether a live process holds ``path``'s write lock; None when locks cannot tell."""
    if fcntl is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(fd)  # also releases our lock: the file is unlinked by name just after
    return False
