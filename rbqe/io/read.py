"""Reading image files: :func:`load_image` and :class:`LoadedImage`, format sniffing,
the decompression-bomb limit, Pillow's strict mode, 16-bit decoding with OpenCV and
CMYK conversion. See the package docstring (:mod:`rbqe.io`) for the rules."""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import stat
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from rbqe.errors import ImageReadError, show_path
from rbqe.io.captions import TextField, photoshop_extras, read_iptc, read_png_text
from rbqe.io.diagnostics import _logged_warnings, _native_messages, _os_reason, said_while
from rbqe.io.extended_xmp import with_extended_xmp
from rbqe.io.formats import (
    _AVIF_MISSING,
    _AVIF_SUFFIXES,
    _HEIF_MISSING,
    _HEIF_SUFFIXES,
    AVIF_AVAILABLE,
    HEIF_AVAILABLE,
)
from rbqe.io.headers import implausible_header
from rbqe.io.jpeg_data import jpeg_data_check, jpeg_lacks_only_eoi, open_with_eoi
from rbqe.io.metadata import (
    _orient,
    _orientation_and_exif,
    estimate_jpeg_quality,
    exif_has_orientation,
    file_orientation,
    full_chroma_warning,
    jpeg_444_tables,
    read_comment,
    read_dpi,
    read_xmp,
    xmp_pair_turned,
    xmp_turned,
)
from rbqe.io.pixels import MODES, _to_float
from rbqe.io.png import _PNG_SIGNATURE, _png_ihdr, read_png_colour

if TYPE_CHECKING:
    from PIL.JpegImagePlugin import JpegImageFile

logger = logging.getLogger("rbqe.io")  # the package's one logger (see diagnostics)

DEFAULT_MAX_PIXELS = 200_000_000
"""Default decompression-bomb limit in pixels (width x height); ``None`` disables it."""


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
        quant_tables: A JPEG's quantisation tables (Pillow's ``quantization``: table
            number -> 64 steps in natural order), else None; the exit policy reads them.
        xmp: The XMP packet (UTF-8 XML bytes: rights, captions, keywords...), or None.
        comment: A JPEG COM / GIF comment or PNG ``Comment`` text, as bytes, or None.
        dpi: Resolution ``(x, y)`` in dots per inch, or None when the file gives none.
        iptc: The raw IPTC-IIM stream (captions, copyright, keywords) of a JPEG's APP13
            or a TIFF's tag 33723, or None (:mod:`rbqe.io.captions`).
        png_text: A PNG's text fields (Title, Author, Copyright...) other than the
            comment and XMP, in file order; empty for other formats.
        png_colour: A PNG's gAMA, cHRM and sRGB chunks as ``(type, data)``, in that
            order (:func:`rbqe.io.png.read_png_colour`); empty for other formats.
        xmp_main: Where ``xmp`` has a JPEG's extended XMP merged in (XMP over 64 KB:
            :mod:`rbqe.io.extended_xmp`), the main packet as the file had it, which
            names ``xmp_extended`` (a JPEG output holds the two so; the GUID it names is
            set anew when written); else None.
        xmp_extended: The extended packet merged into ``xmp``, as the file had it; else
            None. Where the orientation was applied, both packets are reset as ``xmp``.
        converted_from: The file's colour model where it was read as another
            (``"CMYK"``, read as RGB); None otherwise.
        warnings: Things the user should know about this input, one sentence each
            (e.g. that only the first page of a multi-page TIFF is read); also logged.
        jpeg_444_tables: The Y, Cb and Cr quantisation tables of a YCbCr JPEG saved
            without chroma subsampling whose pixels keep its block grid (not rotated),
            to which outputs are made consistent (:mod:`rbqe.jpeg_constraint`); else None.
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
    quant_tables: dict[int, tuple[int, ...]] | None = None
    xmp: bytes | None = None
    comment: bytes | None = None
    dpi: tuple[float, float] | None = None
    warnings: list[str] = field(default_factory=list)
    jpeg_444_tables: tuple[tuple[int, ...], ...] | None = None
    iptc: bytes | None = None
    png_text: tuple[TextField, ...] = ()
    converted_from: str | None = None
    png_colour: tuple[tuple[bytes, bytes], ...] = ()
    xmp_main: bytes | None = None
    xmp_extended: bytes | None = None

    @property
    def size(self) -> tuple[int, int]:
        """Image size as ``(width, height)``."""
        return int(self.pixels.shape[1]), int(self.pixels.shape[0])

    @property
    def has_alpha(self) -> bool:
        """Whether the image carries an alpha channel."""
        return self.alpha is not None


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


def _read_head(path: Path) -> bytes:
    """Validates that ``path`` is a readable, non-empty regular file; returns its first bytes."""
    try:
        st = path.stat()
    except ValueError:  # e.g. an embedded NUL byte from a mangled file list
        raise ImageReadError(path, "invalid file name") from None
    except OSError as exc:
        with contextlib.suppress(OSError):  # EACCES again, in a folder we may not enter
            if path.is_symlink():
                raise ImageReadError(path, f"a link to {show_path(os.readlink(path))}, "
                                           "which does not exist") from None
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
    with _native_messages(path):  # libpng/libtiff print to fd 2 without the file name
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
def opencv_orients_tiff() -> bool:
    """Whether OpenCV's TIFF decoder turns the pixels by the file's Orientation tag itself.

    OpenCV 5.1 does, even under IMREAD_UNCHANGED (and IMREAD_IGNORE_ORIENTATION), so a
    16-bit TIFF turned once more here came out rotated 180 degrees (orientation 6 or 8)
    or not turned at all (2, 3, 5, 7 undone). Asked of the installed OpenCV, on a 2x3
    16-bit TIFF tagged upside down, rather than assumed of a version."""
    import cv2

    grid = np.arange(1, 7, dtype=np.uint16).reshape(2, 3)
    buf = io.BytesIO()
    Image.fromarray(grid).save(buf, "TIFF", tiffinfo={0x0112: 3})
    out = cv2.imdecode(np.frombuffer(buf.getvalue(), np.uint8), cv2.IMREAD_UNCHANGED)
    return out is not None and np.array_equal(out, grid[::-1, ::-1])


def _readable_profile(icc: bytes | None) -> tuple[bytes | None, str | None]:
    """The embedded ICC profile if a colour-management library can read it; an unreadable
    one is not carried (every output used to get a copy, which colour-managed viewers
    then fail on or ignore) and is said."""
    if not icc:
        return None, None
    from PIL import ImageCms

    try:
        ImageCms.ImageCmsProfile(io.BytesIO(icc))
    except Exception:  # noqa: BLE001 - PyCMSError, OSError...: LittleCMS cannot read it
        return None, ("its embedded ICC colour profile is unreadable and is not carried "
                      "into the output; its colours are read as sRGB")
    return icc, None


@functools.lru_cache(maxsize=1)
def srgb_profile() -> bytes:
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
                logger.warning("%s: a CMYK image, enhanced and written as RGB (converted to "
                               "sRGB through its embedded CMYK profile)", path)
                return rgb, srgb_profile()
        except Exception as exc:  # noqa: BLE001 - ImportError, PyCMSError, OSError...: fall back
            logger.warning(
                "%s: could not use the embedded CMYK profile (%s); using a plain conversion",
                path,
                exc,
            )
    logger.warning("%s: a CMYK image, enhanced and written as RGB (a plain conversion: it "
                   "embeds no usable CMYK profile)", path)
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
        # LAB's "A" is a colour axis, not alpha (it got an opaque alpha channel), and its
        # profile describes Lab, not the RGB made here (it was kept on the RGB output).
        has_alpha = mode != "LAB" and ("A" in mode or "a" in mode)
        if mode == "LAB":
            icc = None
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


# How each format calls its further pictures, for the warning that only the first is read.
_MULTI_KINDS = {
    "TIFF": ("pages", "page", "multi-page TIFF"),
    "GIF": ("frames", "frame", "animated GIF"),
    "WEBP": ("frames", "frame", "animated WebP"),
    "PNG": ("frames", "frame", "animated PNG"),
}


def _frames_warning(im: Image.Image) -> str | None:
    """A user-facing warning when ``im`` holds several pages or frames, else None.

    Phones' multi-picture JPEGs (Pillow's ``'MPO'``) are exempt: the further pictures are
    depth maps or previews of the first, not content of their own.
    """
    if im.format == "MPO":
        return None
    try:
        count = int(getattr(im, "n_frames", 1))
    except Exception:  # noqa: BLE001 - a broken later frame: the first decides, below
        with contextlib.suppress(Exception):
            im.seek(0)  # n_frames leaves the image on the frame that failed
        return None
    if count <= 1:
        return None
    many, one, kind = _MULTI_KINDS.get(
        str(im.format), ("frames", "frame", f"multi-frame {im.format}")
    )
    return f"only the first of {count} {many} is enhanced ({kind}); the output has that {one} only"


def _decode(im: Image.Image, p: Path, fmt: str) -> Image.Image:
    """Decodes ``im`` fully now, so that truncation surfaces here; returns the image.

    A JPEG that lacks only its end marker (common for files recovered from memory cards
    and from old scanners) is decoded again with the marker supplied: Pillow would call it
    truncated, though every block is there. The header checks have run by then.
    """
    try:
        with _native_messages(p):  # libtiff prints to fd 2 without the file name
            im.load()
        return im
    except OSError:
        if fmt != "JPEG" or not jpeg_lacks_only_eoi(p, bool(im.info.get("progressive"))):
            raise
    logger.info("%s: JPEG end marker (FF D9) missing; decoding with it supplied", p)
    with open_with_eoi(p) as stream, _native_messages(p):
        fixed = Image.open(stream, formats=["JPEG"])
        fixed.load()
    return fixed


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
        with said_while() as said:
            with _strict_pillow(), _logged_warnings(p):
                loaded = _load(p, head, kind, max_pixels)
        # What reading warned of, on stderr, goes with the image too (a CMYK profile
        # that could not be used, corrupt EXIF): the report's warnings had only some.
        prefix = f"{p}: "
        for line in said:
            text = line.removeprefix(prefix)
            if text not in loaded.warnings:
                loaded.warnings.append(text)
        return loaded
    except ImageReadError:
        raise
    except MemoryError:
        raise ImageReadError(p, "not enough memory to decode this image") from None
    except Exception as exc:  # last line of defence: a bad file must never crash callers
        logger.debug("unexpected error while reading %s", p, exc_info=True)
        raise ImageReadError(p, f"could not read image: {exc}") from None


def _bad_header_reason(p: Path, kind: str | None,
                       otherwise: str = "truncated or corrupt image data") -> str:
    """Why Pillow could not open a file: the header checks' word where they have one (a
    12-bit JPEG, which Pillow does not identify), else ``otherwise``."""
    return implausible_header(p, kind) or otherwise


def _load(p: Path, head: bytes, kind: str | None, max_pixels: int | None) -> LoadedImage:
    try:
        im = Image.open(p)
    except UnidentifiedImageError:
        raise ImageReadError(p, _bad_header_reason(p, kind, _unidentified_reason(p, kind))
                             ) from None
    except Image.DecompressionBombError:
        raise ImageReadError(p, "image dimensions are too large (decompression bomb)") from None
    except OSError as exc:
        if exc.errno is not None:
            raise ImageReadError(p, _os_reason(exc)) from None
        raise ImageReadError(p, _bad_header_reason(p, kind)) from None
    except Exception:  # noqa: BLE001
        # A decoder accepted the magic bytes but choked on the header.
        raise ImageReadError(p, _bad_header_reason(p, kind)) from None

    with im:
        width, height = im.size
        if width <= 0 or height <= 0:
            raise ImageReadError(p, "truncated or corrupt image data")
        if max_pixels is not None and width * height > max_pixels:
            raise ImageReadError(p, _bomb_reason(width, height, max_pixels))
        # Before any pixel memory is reserved: a header can lie about the size.
        implausible = implausible_header(p, kind, getattr(im, "tag_v2", None))
        if implausible:
            raise ImageReadError(p, implausible)
        frames_warning = _frames_warning(im)
        fmt = "JPEG" if im.format == "MPO" else str(im.format)
        short, damage = jpeg_data_check(p) if fmt == "JPEG" else (False, None)
        if short:
            # Pillow would decode the real rows and fill the rest with grey, silently.
            raise ImageReadError(p, "truncated or corrupt image data (pixel data ends "
                                 f"before the declared {width} x {height})")
        # Damage elsewhere Pillow decodes silently too (garbled or blurred blocks): the
        # picture is enhanced as decoded, and the user told.
        damage_warning = (f"its JPEG data is damaged (libjpeg: {damage.rstrip('.')}): parts "
                          "of the picture may be garbled or lack detail, in the output "
                          "too") if damage else None
        icc, icc_warning = _readable_profile(im.info.get("icc_profile") or None)
        quality = estimate_jpeg_quality(im)
        tables = _quant_tables(im) if quality is not None else None
        tables_444 = jpeg_444_tables(im) if fmt == "JPEG" else None
        source_mode = im.mode
        try:
            turned = False  # the decoder applied the orientation itself
            # Pillow turns a TIFF as it loads it, and drops the tag: read it first.
            before = file_orientation(im) if fmt == "TIFF" else 1
            if _needs_opencv(im, head):
                ints, alpha, mode = _decode_opencv(p, im, head)
                turned = fmt == "TIFF" and opencv_orients_tiff()
            else:
                ints, alpha, mode, icc = _pil_arrays(_decode(im, p, fmt), p, icc)
            # exif: Orientation 1, its pixel size turned with the pixels
            orientation, exif = _orientation_and_exif(im, p, before)
            applied = orientation if orientation != 1 else before  # by us or the decoder
            if turned:
                orientation = 1
            if orientation != 1:  # the pixels no longer keep the file's block grid
                tables_444 = None
            chroma_warning = full_chroma_warning(im, quality) \
                if fmt == "JPEG" and tables_444 is None else None
            xmp, xmp_main, xmp_extended, xmp_lost = with_extended_xmp(im, read_xmp(im))
            comment, dpi = read_comment(im), read_dpi(im)
            # What the pixels follow, as Pillow reads it: EXIF's orientation where the file
            # has one (then an XMP 6 beside EXIF's 1 is reset too), else the XMP's, which
            # rbqe applied; an XMP form Pillow does not read was not applied: left as it is.
            if applied != 1 or exif_has_orientation(exif):
                xmp = xmp_turned(xmp, applied)
                # (the extended packet is named anew by its digest when written)
                xmp_main, xmp_extended = xmp_pair_turned(xmp_main, xmp_extended, applied)
            iptc, png_text = read_iptc(im, p), read_png_text(im, p)
            photoshop_warning = photoshop_extras(im)
            png_colour = read_png_colour(im.info) if fmt == "PNG" else ()
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
    xmp_warning = (f"its extended XMP ({xmp_lost} bytes: the part of its XMP beyond the main "
                   "packet) could not be read whole and is not carried") if xmp_lost else None
    # Black and white only (a fax, a line-art scan): the network makes grey of its edges,
    # and the output is an 8-bit grey image (it was written without a word).
    bilevel = ("a 1-bit (black and white) image: the output has 8-bit levels (grey; RGB "
               "in WebP), its edges smoothed; JPEG artefact removal is not meant for it") \
        if source_mode == "1" else None
    warnings = [w for w in (damage_warning, bilevel, frames_warning, chroma_warning, icc_warning,
                            xmp_warning, photoshop_warning,
                            _low_range_warning(ints) if bit_depth == 16 else None) if w]
    for text in warnings:
        logger.warning("%s: %s", p, text)
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
        quant_tables=tables,
        xmp=xmp,
        comment=comment,
        dpi=dpi,
        warnings=warnings,
        jpeg_444_tables=tables_444,
        iptc=iptc,
        png_text=png_text,
        converted_from="CMYK" if source_mode == "CMYK" else None,
        png_colour=png_colour,
        xmp_main=xmp_main,
        xmp_extended=xmp_extended,
    )


def _low_range_warning(ints: np.ndarray) -> str | None:
    """Said of a 16-bit image whose samples use 12 bits or fewer (8- or 12-bit data in a
    16-bit file, a 32-bit TIFF of 0-255): the network, as any viewer, sees a nearly black
    picture, and its output of one came out damaged with nothing said."""
    top = int(ints.max()) if ints.size else 0
    if top >= 1 << 12:
        return None
    bits = max(1, top.bit_length())
    used = "1 bit" if bits == 1 else f"{bits} bits"  # an all-black image: 1 bit
    return (f"its 16-bit samples use only {used} (the largest is {top} of 65535), "
            f"so it is nearly black as read; if it holds {bits}-bit data, scale it to "
            f"the full 16-bit range first")


def _quant_tables(im: Image.Image) -> dict[int, tuple[int, ...]] | None:
    try:
        tables = cast("JpegImageFile", im).quantization  # other formats: AttributeError
        return {int(k): tuple(int(v) for v in t) for k, t in tables.items()}
    except (AttributeError, TypeError, ValueError):
        return None
