"""Metadata of a source image: EXIF orientation (applied to the pixels, then reset to 1
in the kept EXIF), the EXIF bytes to carry over, XMP, comment and resolution, and the
JPEG quality estimate."""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import re
import struct
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from rbqe.io.captions import RAW_PROFILE, raw_profile
from rbqe.io.tiff_tags import DESCRIPTIVE_TAGS

logger = logging.getLogger("rbqe.io")  # the package's one logger (see diagnostics)


_EXIF_PREFIX = b"Exif\x00\x00"
_ORIENTATION = 0x0112


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
    """Sets Orientation to 1 in place inside raw EXIF bytes (``Exif\\0\\0`` + TIFF), and
    swaps the Exif directory's pixel width and height when that orientation turned the
    picture a quarter (5-8): the pixels it describes are now turned. A thumbnail (IFD1)
    of a picture that was turned or flipped would show it as it was stored: file browsers
    showed it sideways; its directory is unlinked, and its JPEG's bytes zeroed: left in the
    block, carving tools still found the old picture (unturned, perhaps uncropped).

    Patching the value fields keeps every other tag, maker notes included, byte-identical;
    re-serialising through Pillow can break maker notes that use absolute offsets.

    Returns:
        The patched bytes, or None when the layout is unusual (the caller falls back).
    """
    base = len(_EXIF_PREFIX)
    buf = bytearray(data)
    try:
        order = {b"II": "<", b"MM": ">"}[bytes(buf[base : base + 2])]
        ifd0 = base + struct.unpack_from(order + "I", buf, base + 4)[0]
        entries = _ifd_entries(buf, order, ifd0)
        if _ORIENTATION in entries:
            entry, typ, n = entries[_ORIENTATION]
            if typ != 3 or n != 1:  # not a single SHORT: let Pillow rewrite it
                return None
            was = struct.unpack_from(order + "H", buf, entry + 8)[0]
            turned = was in _QUARTER_TURNS
            struct.pack_into(order + "H", buf, entry + 8, 1)
            if 2 <= was <= 8:  # the thumbnail (IFD1) shows the picture unturned: unlinked
                count = struct.unpack_from(order + "H", buf, ifd0)[0]  # duplicates counted
                link = ifd0 + 2 + 12 * count
                ifd1 = struct.unpack_from(order + "I", buf, link)[0]
                struct.pack_into(order + "I", buf, link, 0)
                if ifd1:
                    with contextlib.suppress(struct.error):  # a bad IFD1: only unlinked
                        _zero_thumbnail(buf, order, base, base + ifd1)
            if turned and _EXIF_IFD in entries:
                # A size that cannot be swapped is left: the orientation is reset anyway.
                with contextlib.suppress(struct.error):
                    entry, _, _ = entries[_EXIF_IFD]
                    exif_ifd = base + struct.unpack_from(order + "I", buf, entry + 8)[0]
                    _swap_pixel_dimensions(buf, order, _ifd_entries(buf, order, exif_ifd))
    except (KeyError, struct.error):
        return None
    return bytes(buf)


_THUMB_AT, _THUMB_LENGTH = 0x0201, 0x0202  # IFD1's JPEGInterchangeFormat and its length


def _zero_thumbnail(buf: bytearray, order: str, base: int, ifd1: int) -> None:
    """Zeroes in place the JPEG thumbnail that IFD1 (at ``ifd1``; offsets count from the
    TIFF header at ``base``) points at, where it lies inside ``buf`` and starts as a JPEG
    does; anything else (a bogus offset) is left as it is."""
    entries = _ifd_entries(buf, order, ifd1)
    if _THUMB_AT not in entries or _THUMB_LENGTH not in entries:
        return
    (ea, ta, na), (el, tl, nl) = entries[_THUMB_AT], entries[_THUMB_LENGTH]
    if na != 1 or nl != 1 or ta not in _INLINE or tl not in _INLINE:
        return
    start = base + struct.unpack_from(order + _INLINE[ta], buf, ea + 8)[0]
    end = start + struct.unpack_from(order + _INLINE[tl], buf, el + 8)[0]
    if base + 8 <= start < end <= len(buf) and buf[start : start + 2] == b"\xff\xd8":
        buf[start:end] = bytes(end - start)


_QUARTER_TURNS = (5, 6, 7, 8)  # the orientations that swap width and height
_EXIF_IFD = 0x8769  # the pointer to the Exif (camera) directory
_PIXEL_X, _PIXEL_Y = 0xA002, 0xA003  # its PixelXDimension and PixelYDimension
_INLINE = {3: "H", 4: "I"}  # SHORT and LONG, stored in the entry's 4-byte value field


def _ifd_entries(buf: bytearray, order: str, ifd: int) -> dict[int, tuple[int, int, int]]:
    """A TIFF directory's entries: tag -> (entry offset, type, count)."""
    count = struct.unpack_from(order + "H", buf, ifd)[0]
    out = {}
    for i in range(count):
        entry = ifd + 2 + 12 * i
        tag, typ, n = struct.unpack_from(order + "HHI", buf, entry)
        out[tag] = (entry, typ, n)
    return out


def _swap_pixel_dimensions(buf: bytearray, order: str,
                           entries: dict[int, tuple[int, int, int]]) -> None:
    """Swaps PixelXDimension and PixelYDimension in place, when both are single SHORTs or
    LONGs and each value fits the other's type; else leaves them."""
    if _PIXEL_X not in entries or _PIXEL_Y not in entries:
        return
    (ex, tx, nx), (ey, ty, ny) = entries[_PIXEL_X], entries[_PIXEL_Y]
    if nx != 1 or ny != 1 or tx not in _INLINE or ty not in _INLINE:
        return
    x = struct.unpack_from(order + _INLINE[tx], buf, ex + 8)[0]
    y = struct.unpack_from(order + _INLINE[ty], buf, ey + 8)[0]
    if (tx == 3 and y > 0xFFFF) or (ty == 3 and x > 0xFFFF):
        return
    struct.pack_into(order + _INLINE[tx], buf, ex + 8, y)
    struct.pack_into(order + _INLINE[ty], buf, ey + 8, x)


_GPS_IFD = 0x8825  # the EXIF pointer to the GPS (location) directory


def _exif_tags(exif: bytes | None) -> Image.Exif | None:
    """EXIF bytes loaded, or None for none or unreadable."""
    if not exif:
        return None
    obj = Image.Exif()
    try:
        obj.load(exif if exif.startswith(_EXIF_PREFIX) else _EXIF_PREFIX + exif)
    except Exception:  # noqa: BLE001 - Pillow raises many types on bad EXIF
        return None
    return obj


def exif_says_resolution(exif: bytes | None, dpi: tuple[float, float]) -> bool:
    """Whether EXIF's first directory holds the resolution ``dpi`` (within 1 %)."""
    obj = _exif_tags(exif)
    if obj is None or _X_RESOLUTION not in obj:
        return False
    unit = obj.get(_RESOLUTION_UNIT, 2)  # TIFF's default: inches
    if unit not in (2, 3):
        return False
    try:
        x = float(obj[_X_RESOLUTION]) * (2.54 if unit == 3 else 1)
    except (TypeError, ValueError, ZeroDivisionError):
        return False
    return abs(x - dpi[0]) <= 0.01 * dpi[0]


def exif_has_orientation(exif: bytes | None) -> bool:
    """Whether EXIF's first directory holds an Orientation (after the reset: 1)."""
    obj = _exif_tags(exif)
    return obj is not None and _ORIENTATION in obj


def exif_has_gps(exif: bytes | None) -> bool:
    """Whether EXIF holds a GPS (location) directory."""
    obj = _exif_tags(exif)
    return obj is not None and _GPS_IFD in obj


def without_gps(exif: bytes | None, path: Path | None = None) -> bytes | None:
    """EXIF without its GPS directory; camera, date and the rest are kept."""
    if not exif:
        return exif
    data = exif if exif.startswith(_EXIF_PREFIX) else _EXIF_PREFIX + exif
    obj = Image.Exif()
    try:
        obj.load(data)
        if _GPS_IFD not in obj:
            return exif
        if _EXIF_IFD in obj:  # (asked for where it is not, an empty one would be written)
            obj.get_ifd(_EXIF_IFD)  # load the camera directory so tobytes() writes it back
        del obj[_GPS_IFD]
        return obj.tobytes()
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types on bad EXIF
        # Location must not leak when the user asked it gone: drop all EXIF instead.
        logger.warning("%s: dropping unreadable EXIF data (%s)", path or "image", exc)
        return None


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
            if obj[_ORIENTATION] in _QUARTER_TURNS:
                _swap_pixel_size(obj)
            obj[_ORIENTATION] = 1
        return obj.tobytes()
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types on bad EXIF
        logger.warning("%s: dropping unreadable EXIF data (%s)", path or "image", exc)
        return None


def _swap_pixel_size(obj: Image.Exif) -> None:
    """Swaps the Exif directory's PixelXDimension and PixelYDimension; where that fails
    they are left as they are, and the rest of the EXIF is kept."""
    try:
        sub = obj.get(_EXIF_IFD)  # a dict where built here (a TIFF's), else a pointer
        camera = sub if isinstance(sub, dict) else obj.get_ifd(_EXIF_IFD)  # loaded: written back
        if _PIXEL_X in camera and _PIXEL_Y in camera:
            camera[_PIXEL_X], camera[_PIXEL_Y] = camera[_PIXEL_Y], camera[_PIXEL_X]
    except Exception:  # noqa: BLE001 - Pillow raises many types on bad EXIF
        logger.debug("could not swap the EXIF pixel size", exc_info=True)


def _tiff_exif(exif: Image.Exif, path: Path, orientation: int = 1) -> bytes | None:
    """A TIFF's EXIF to carry: its descriptive tags and sub-IFDs, Orientation reset (a
    quarter turn swaps the pixel size); ``orientation``: the file's, where the tags no
    longer hold it (Pillow dropped it when it turned the pixels)."""
    out = Image.Exif()
    # IFD0's other tags describe the TIFF's own pixel layout (strip offsets, bit depths...)
    # and would be nonsense in another file.
    for tag in DESCRIPTIVE_TAGS:
        if tag in exif:
            out[tag] = exif[tag]
    if _ORIENTATION not in out and orientation != 1:
        out[_ORIENTATION] = orientation
    for ifd_tag in (_EXIF_IFD, _GPS_IFD):  # Exif and GPS sub-IFDs
        try:
            sub = exif.get_ifd(ifd_tag)
        except Exception:  # noqa: BLE001 - a broken sub-IFD is just left out
            sub = {}
        if sub:
            out[ifd_tag] = dict(sub)
    if not len(out):
        return None
    return _normalise_exif(out, path)


def file_orientation(im: Image.Image) -> int:
    """The EXIF orientation (1-8) of an opened image; 1 when absent or unreadable.

    Only the file's own EXIF (a TIFF's tag) counts, not the XMP's tiff:Orientation that
    Pillow fills in where EXIF has none: browsers and the systems' viewers ignore an
    XMP-only orientation, so the photo turned by it showed there turned against its
    input. Left as stored, with its XMP as it is, the output shows as the input does in
    every viewer, whichever it follows.
    """
    try:
        if im.format == "TIFF":
            orientation = getattr(im, "tag_v2", {}).get(_ORIENTATION, 1)
        else:
            raw = im.info.get("exif")
            if not isinstance(raw, (bytes, bytearray)) or not raw:
                return 1
            own = Image.Exif()
            own.load(bytes(raw))
            orientation = own.get(_ORIENTATION, 1)
    except Exception:  # noqa: BLE001 - _orientation_and_exif says it is unreadable
        return 1
    return orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else 1


def _orientation_and_exif(im: Image.Image, path: Path, before: int = 1
                          ) -> tuple[int, bytes | None]:
    """Reads the EXIF orientation and the EXIF bytes to keep (Orientation reset to 1).
    ``before``: a TIFF's orientation read before Pillow loaded (and turned) it."""
    try:
        exif = im.getexif()
    except Exception as exc:  # noqa: BLE001 - bad EXIF must not make the image unreadable
        logger.warning("%s: ignoring unreadable EXIF data (%s)", path, exc)
        return 1, None
    orientation = file_orientation(im)
    if im.format == "TIFF":
        return orientation, _tiff_exif(exif, path, before)
    raw = im.info.get("exif")
    if isinstance(raw, (bytes, bytearray)) and raw:
        return orientation, _normalise_exif(bytes(raw), path)
    # Pillow fills in an orientation from the XMP where the file has no EXIF one: that
    # alone is no EXIF of the file's (it made up a block, and "EXIF not carried" lines).
    if len(exif) and set(exif) != {_ORIENTATION}:
        return orientation, _normalise_exif(exif, path)
    return orientation, None


def _as_bytes(value: Any) -> bytes | None:
    if isinstance(value, str):
        value = value.encode("utf-8")
    if isinstance(value, (bytes, bytearray)) and value:
        return bytes(value)
    return None


def read_xmp(im: Image.Image) -> bytes | None:
    """The XMP packet of an opened image (JPEG APP1, PNG iTXt or ImageMagick's raw
    profile, WebP, TIFF tag 700), or None."""
    # Pillow puts it under "xmp" for every format; PNG's iTXt also keeps its own keyword;
    # ImageMagick writes it as a raw profile.
    return (_as_bytes(im.info.get("xmp") or im.info.get("XML:com.adobe.xmp"))
            or raw_profile(im.info.get(RAW_PROFILE + "xmp")))


def read_comment(im: Image.Image) -> bytes | None:
    """A JPEG COM or GIF comment, or a PNG "Comment" text, as bytes; None if absent. A
    JPEG's several COM segments are joined, one per line (Pillow keeps only the last)."""
    coms = [bytes(data) for marker, data in getattr(im, "applist", []) if marker == "COM"]
    if len(coms) > 1:
        return _as_bytes(b"\n".join(c.rstrip(b"\0") for c in coms))
    return _as_bytes(im.info.get("comment") or im.info.get("Comment"))


_X_RESOLUTION = 0x011A
_RESOLUTION_UNIT = 0x0128  # 2 inch, 3 centimetre, 1 none (an aspect ratio, no dpi)


def read_dpi(im: Image.Image) -> tuple[float, float] | None:
    """The resolution in dots per inch (JFIF, pHYs, TIFF/EXIF resolution tags), or None."""
    dpi = im.info.get("dpi")
    if not isinstance(dpi, (tuple, list)) or len(dpi) != 2:
        return None
    try:
        x, y = float(dpi[0]), float(dpi[1])
    except (TypeError, ValueError):
        return None
    if not (math.isfinite(x) and math.isfinite(y) and x > 0 and y > 0):
        return None
    if im.format == "TIFF" and _X_RESOLUTION not in getattr(im, "tag_v2", {}):
        return None  # Pillow reports (1, 1) for a TIFF without resolution tags
    if im.format in ("JPEG", "MPO") and im.info.get("jfif_unit") not in (1, 2):
        # Without a JFIF density Pillow reads EXIF's resolution whatever its unit, and
        # makes up 72 dpi when EXIF has none: neither guess is the file's.
        return _exif_dpi(im, x, y)
    return x, y


def _exif_dpi(im: Image.Image, x: float, y: float) -> tuple[float, float] | None:
    """A JPEG's resolution from its EXIF, where that gives one with a unit; ``(x, y)`` is
    what Pillow made of it (right for an inch or centimetre unit)."""
    try:
        exif = im.getexif()
        if _X_RESOLUTION not in exif:
            return None
        unit = exif.get(_RESOLUTION_UNIT)
        if unit in (2, 3):
            return x, y
        if unit is not None or im.info.get("jfif_unit") is not None:
            # Unit 1, or none beside JFIF's unit 0: a pixel aspect ratio, not dots per
            # inch (exiftool writes 1:1 so when it adds a tag to a Pillow JPEG; read as
            # dpi, a 4000 px photo was set to print 4000 inches wide).
            return None
        # No JFIF segment and no unit: EXIF's default, inches (Pillow made up 72).
        x = float(exif[_X_RESOLUTION])
        y = float(exif.get(0x011B, x))
    except Exception:  # noqa: BLE001 - unreadable EXIF: no trustworthy resolution
        return None
    return (x, y) if all(math.isfinite(v) and v > 0 for v in (x, y)) else None


# XMP's orientation and pixel size, as an attribute (tiff:Orientation="6") or an element
# (<tiff:Orientation rdf:datatype="...">6</tiff:Orientation>), under the prefixes Adobe
# and ExifTool write (a drone maker's own "Orientation" is not the picture's).
def _xmp_value(name: bytes) -> re.Pattern[bytes]:
    return re.compile(rb'(\b' + name + rb'\s*=\s*["\']|<' + name + rb'(?:\s[^>]*)?>\s*)(\d+)')


_XMP_ORIENTATION = _xmp_value(b"tiff:Orientation")
_XMP_SIZES = ((_xmp_value(b"exif:PixelXDimension"), _xmp_value(b"exif:PixelYDimension")),
              (_xmp_value(b"tiff:ImageWidth"), _xmp_value(b"tiff:ImageLength")))
# Earlier documents a file embeds (Photoshop's history): their sizes are not this one's.
_XMP_PANTRY = re.compile(rb"<xmpMM:Pantry\b.*?</xmpMM:Pantry>", re.S)


def xmp_turned(xmp: bytes | None, orientation: int) -> bytes | None:
    """``xmp`` for pixels written upright, ``orientation`` (1-8) applied to them: its
    Orientation set to 1 (Lightroom and Bridge write it beside EXIF's: left at 6, XMP
    readers turned the photo again; where EXIF said 1 and XMP 6 the pixels were not
    turned, and a TIFF output, which keeps the XMP only, came out sideways), and on a
    quarter turn its width and height swapped, as in EXIF."""
    if not xmp:
        return xmp
    xmp, pantries = _pantries_aside(xmp)
    xmp = _XMP_ORIENTATION.sub(lambda m: m.group(1) + b"1", xmp)
    if orientation in _QUARTER_TURNS:
        for wide, high in _XMP_SIZES:
            w, h = wide.search(xmp), high.search(xmp)
            if w and h:
                xmp = _set_first(wide, h.group(2), _set_first(high, w.group(2), xmp))
    return _pantries_back(xmp, pantries)


def xmp_pair_turned(main: bytes | None, extended: bytes | None, orientation: int
                    ) -> tuple[bytes | None, bytes | None]:
    """A JPEG's XMP split in two (its main and extended packets, :mod:`rbqe.io.extended_xmp`)
    as :func:`xmp_turned` leaves each, and on a quarter turn a width and a height that sit
    one in each packet swapped too (each packet alone has only one of them)."""
    main, extended = xmp_turned(main, orientation), xmp_turned(extended, orientation)
    if not main or not extended or orientation not in _QUARTER_TURNS:
        return main, extended
    (m, m_aside), (e, e_aside) = _pantries_aside(main), _pantries_aside(extended)
    for wide, high in _XMP_SIZES:
        for one, other in ((wide, high), (high, wide)):
            in_main, in_ext = one.search(m), other.search(e)
            if in_main and in_ext and not other.search(m) and not one.search(e):
                m = _set_first(one, in_ext.group(2), m)
                e = _set_first(other, in_main.group(2), e)
    return _pantries_back(m, m_aside), _pantries_back(e, e_aside)


def _pantries_aside(xmp: bytes) -> tuple[bytes, list[bytes]]:
    """``xmp`` with the Pantry's blocks (earlier documents' metadata) set aside, NUL, which
    XML cannot hold, marking their places; and the blocks, for :func:`_pantries_back`."""
    pantries = _XMP_PANTRY.findall(xmp)
    for n, block in enumerate(pantries):
        xmp = xmp.replace(block, b"\0%d\0" % n, 1)
    return xmp, pantries


def _pantries_back(xmp: bytes, pantries: list[bytes]) -> bytes:
    for n, block in enumerate(pantries):
        xmp = xmp.replace(b"\0%d\0" % n, block, 1)
    return xmp


def _set_first(pattern: re.Pattern[bytes], value: bytes, xmp: bytes) -> bytes:
    """``xmp`` with the first value ``pattern`` finds set to ``value``."""
    return pattern.sub(lambda m: m.group(1) + value, xmp, count=1)


def xmp_has_gps(xmp: bytes | None) -> bool:
    """Whether an XMP packet may hold a location: any "gps", in any case, anywhere in it.

    Wide on purpose: EXIF's ``exif:GPSLatitude`` may be bound to any prefix
    (``e:GPSLatitude``), and makers add their own (DJI's ``drone-dji:GpsLatitude``).
    A caption that merely says "GPS" costs its XMP; a location that stays is a leak.
    """
    return xmp is not None and b"gps" in xmp.lower()


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


# Measured 2026-12-06 on McMaster colour photos saved by Pillow without chroma
# subsampling: exit 5 and auto lost 0.3-2.8 dB against the JPEG at quality 80, 90 and 95
# (the colour blurred as if it were 4:2:0, which is all the network was trained on) and
# gained at quality 20. Such an input is enhanced, with this said.
FULL_CHROMA_HARM_QUALITY = 80


def _is_444(pil_image: Image.Image) -> bool:
    """Whether ``pil_image`` is a colour JPEG saved without chroma subsampling (4:4:4)."""
    from PIL import JpegImagePlugin

    if pil_image.mode != "RGB":
        return False
    try:
        return bool(JpegImagePlugin.get_sampling(pil_image) == 0)
    except (AttributeError, TypeError, IndexError):  # not what Pillow's JPEG plugin made
        return False


def full_chroma_warning(pil_image: Image.Image, quality: int | None) -> str | None:
    """A warning for a colour JPEG saved at high quality without chroma subsampling
    (4:4:4), whose colour the network softens, where the output cannot be made consistent
    with the file (:mod:`rbqe.jpeg_constraint`: a rotated one); None otherwise."""
    if quality is None or quality < FULL_CHROMA_HARM_QUALITY or not _is_444(pil_image):
        return None
    return (f"a JPEG of quality ≈ {quality} without chroma subsampling (4:4:4): the network "
            "was trained on 4:2:0 JPEGs and softens its colour, so the result may be "
            "worse than the input; compare before keeping it")


def jpeg_444_tables(pil_image: Image.Image) -> tuple[tuple[int, ...], ...] | None:
    """The Y, Cb and Cr quantisation tables (natural order) of a YCbCr JPEG saved without
    chroma subsampling, for :mod:`rbqe.jpeg_constraint`; None for any other image."""
    if not _is_444(pil_image) or pil_image.info.get("adobe_transform") == 0:
        return None  # (Adobe transform 0: the file stores RGB, not YCbCr)
    try:
        layers = pil_image.layer  # (component id, h, v, table number) per component
        tables = pil_image.quantization
        found = tuple(tuple(int(v) for v in tables[layer[3]]) for layer in layers)
    except (AttributeError, TypeError, IndexError, KeyError):
        return None
    return found if len(found) == 3 and all(len(t) == 64 for t in found) else None


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
