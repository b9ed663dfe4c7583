"""Writing image files: :func:`save_image` and :func:`save_like`, format capabilities
(mode, depth, metadata) and the choice of encoder (Pillow, OpenCV, or the PNG encoders
of :mod:`rbqe.io.png`); files are written via :mod:`rbqe.io.atomic`."""

from __future__ import annotations

import errno
import functools
import io
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

import numpy as np
from PIL import Image, PngImagePlugin, features

from rbqe.errors import ImageWriteError
from rbqe.io.atomic import atomic_write
from rbqe.io.captions import (
    TIFF_IPTC,
    TextField,
    jpeg_app13,
    named,
    png_iptc_text,
    text_has_gps,
)
from rbqe.io.diagnostics import _logged_warnings, _os_reason
from rbqe.io.extended_xmp import jpeg_xmp_segments, split_xmp
from rbqe.io.formats import _format_name
from rbqe.io.metadata import _normalise_exif, exif_says_resolution, without_gps, xmp_has_gps
from rbqe.io.pixels import (
    MODES,
    _alpha_at_depth,
    _alpha_plane,
    _fit_channels,
    _OutputPixels,
    _pillow_image,
)
from rbqe.io.png import (
    PNG_COMPRESS_LEVEL,
    PNG_XMP_KEY,
    _png_metadata_chunks,
    _write_png_stream,
    png_text_chunk,
    shown_as_srgb,
)
from rbqe.io.read import LoadedImage, srgb_profile
from rbqe.io.tiff_tags import add_tiff_tags, exif_tags, metadata_tags

logger = logging.getLogger("rbqe.io")  # the package's one logger (see diagnostics)

_JPEG_MAX_EXIF = 65533  # an APP1 segment cannot hold more; Pillow raises beyond it
_JPEG_MAX_XMP = 65533 - 29  # the same, less the XMP namespace header
_JPEG_MAX_COMMENT = 65533  # a COM segment likewise
_TIFF_XMP = 700  # the TIFF tag that holds XMP


@dataclass(frozen=True)
class _Extra:
    """XMP, comment, resolution, IPTC-IIM and PNG text to write, already filtered by the
    user's options."""

    xmp: bytes | None = None
    comment: bytes | None = None
    dpi: tuple[float, float] | None = None
    iptc: bytes | None = None
    text: tuple[TextField, ...] = ()
    colour: tuple[tuple[bytes, bytes], ...] = ()  # a PNG's gAMA, cHRM, sRGB chunks
    # A JPEG's XMP over one segment: its APP1 segments, main and extended packets
    # (rbqe.io.extended_xmp), written instead of ``xmp``.
    xmp_segments: bytes | None = None

    def xmp_text(self) -> str | None:
        """The XMP as text for PNG's iTXt chunk (XMP is UTF-8 by its specification)."""
        try:
            return self.xmp.decode("utf-8") if self.xmp else None
        except UnicodeDecodeError:
            return None

    def comment_text(self) -> str | None:
        """The comment as text; old JPEG comments are often Latin-1, not UTF-8."""
        if not self.comment:
            return None
        try:
            return self.comment.decode("utf-8")
        except UnicodeDecodeError:
            return self.comment.decode("latin-1")


def _extra_for(p: Path, fmt_name: str, extra: _Extra,
               jpeg_xmp: tuple[bytes, bytes] | None = None) -> _Extra:
    """Leaves out what is too large for ``fmt_name``, saying so; a JPEG's XMP over one
    segment goes as ``jpeg_xmp`` splits it (:func:`save_image`), where it can."""
    xmp, comment, dpi, iptc, text = extra.xmp, extra.comment, extra.dpi, extra.iptc, extra.text
    segments = None
    if fmt_name == "JPEG":
        if xmp and len(xmp) > _JPEG_MAX_XMP:
            segments = _extended_xmp_segments(xmp, jpeg_xmp)
            if segments is None:  # (not well-formed, or its main packet over a segment)
                logger.warning("%s: XMP too large for JPEG (%d bytes); dropped", p, len(xmp))
                xmp = None
        if comment and len(comment) > _JPEG_MAX_COMMENT:
            logger.warning("%s: comment too large for JPEG (%d bytes); dropped", p, len(comment))
            comment = None
        if dpi and not all(1 <= round(d) <= 65535 for d in dpi):  # JFIF's 16-bit density
            dpi = None
        if iptc and jpeg_app13(iptc) is None:
            logger.warning("%s: IPTC-IIM data too large for one JPEG APP13 segment (%d "
                           "bytes); dropped", p, len(iptc))
            iptc = None
    # In hex (PNG's raw profile) it is twice its size: over what Pillow (and so rbqe)
    # reads back.
    if fmt_name == "PNG" and iptc and \
            len(png_iptc_text(iptc).text) > PngImagePlugin.MAX_TEXT_CHUNK:
        logger.warning("%s: IPTC-IIM data too large for a PNG text field (%d bytes); "
                       "dropped", p, len(iptc))
        iptc = None
    # PNG and BMP store pixels per metre in 32 bits; a file's absurd resolution must not
    # cost its image (it failed to encode).
    if dpi and not all(0 < d < 1e7 for d in dpi):
        logger.info("%s: resolution %s dpi out of range; not written", p, dpi)
        dpi = None
    return _Extra(xmp, comment, dpi, iptc, text, extra.colour, segments)


def _extended_xmp_segments(xmp: bytes, jpeg_xmp: tuple[bytes, bytes] | None) -> bytes | None:
    """The APP1 segments that hold ``xmp``, over one segment: split as a JPEG input had it
    (``jpeg_xmp``), else split here (a PNG, TIFF or WebP holds it whole); None where it
    cannot be split."""
    segments = jpeg_xmp_segments(*jpeg_xmp) if jpeg_xmp else None
    if segments is None:
        split = split_xmp(xmp)
        segments = jpeg_xmp_segments(*split) if split else None
    return segments


# JPEG outputs at this quality or more keep full-resolution colour (4:4:4), below it 4:2:0.
JPEG_444_QUALITY = 90

# What each output format keeps of an input's metadata, as the writers below write it
# (checked with ExifTool). A TIFF's EXIF, and all of a 16-bit colour TIFF's metadata, are
# added after its encoder wrote it (rbqe.io.tiff_tags).
_ALL = frozenset({"ICC", "EXIF", "XMP", "comment", "dpi", "IPTC", "text", "gamma"})
_KEEPS = {"PNG": _ALL, "JPEG": _ALL - {"text", "gamma"}, "WEBP": frozenset({"ICC", "EXIF", "XMP"}),
          "TIFF": frozenset({"ICC", "EXIF", "XMP", "dpi", "IPTC"}), "BMP": frozenset({"dpi"})}
_T = TypeVar("_T")
_SHOWN = {"WEBP": "WebP"}  # a format's name in messages, where not its Pillow name


def shown_format(fmt_name: str) -> str:
    """A format's name in messages: "WebP", not Pillow's "WEBP"."""
    return _SHOWN.get(fmt_name, fmt_name)


def _kept(p: Path, fmt_name: str, icc: bytes | None, exif: bytes | None,
          extra: _Extra) -> tuple[bytes | None, bytes | None, _Extra]:
    """``icc``, ``exif`` and ``extra`` less what ``fmt_name`` cannot hold, said in one
    line: a photographer's camera data, an archive's captions and credits must not be lost
    unawares."""
    keeps = _KEEPS[fmt_name]
    # A PNG's gamma and primaries matter where they are not sRGB's and no ICC profile
    # (which a viewer follows instead) is kept.
    gamma = not shown_as_srgb(extra.colour) and not (icc and "ICC" in keeps)
    present = {"ICC": icc, "EXIF": exif, "XMP": extra.xmp, "comment": extra.comment,
               "dpi": extra.dpi, "IPTC": extra.iptc, "text": extra.text, "gamma": gamma}
    lost = [k for k, v in present.items() if v and k not in keeps]
    if "dpi" in lost and "EXIF" in keeps and extra.dpi and exif_says_resolution(exif, extra.dpi):
        lost.remove("dpi")  # WebP has no density field, but the EXIF carried says it
    if lost:
        logger.warning("%s: %s", p, _not_carried(lost, shown_format(fmt_name), extra.text))

    def keep(kind: str, value: _T) -> _T | None:
        return value if kind in keeps else None

    text = tuple(extra.text) if "text" in keeps else ()
    iptc = keep("IPTC", extra.iptc)
    if iptc and fmt_name == "PNG":  # a text field there, for every PNG writer alike
        text, iptc = (*text, png_iptc_text(iptc)), None
    icc = keep("ICC", icc)
    # The PNG specification: sRGB and iCCP not both (the profile is kept); Pillow's own
    # writer left sRGB out, the hand-made encoders wrote both.
    colour = tuple(c for c in extra.colour if not (icc and c[0] == b"sRGB")) \
        if "gamma" in keeps else ()
    return icc, keep("EXIF", exif), _Extra(
        keep("XMP", extra.xmp), keep("comment", extra.comment), keep("dpi", extra.dpi), iptc,
        text, colour, keep("XMP", extra.xmp_segments))


_WORDS = {"ICC": "ICC colour profile", "EXIF": "EXIF (camera, date, location)",
          "XMP": "XMP", "comment": "comment", "dpi": "resolution (dpi)",
          "IPTC": "IPTC-IIM data (captions, copyright, keywords)",
          "gamma": "PNG colour encoding (its gAMA and cHRM chunks: how its colours are shown)"}


def _not_carried(lost: list[str], output: str, text: Sequence[TextField]) -> str:
    """The warning naming the kinds of metadata in ``lost`` (``text``: the PNG text
    fields, named) that an ``output`` cannot hold."""
    fields = "PNG text fields" if len(text) > 1 else "PNG text field"
    words = [_WORDS[k] if k != "text" else f"{fields} {named([f.key for f in text])}"
             for k in lost]
    many = len(lost) > 1 or (lost == ["text"] and len(text) > 1)
    it = "them" if many else "it"
    return (f"the input's {_listed(words)} {'are' if many else 'is'} not carried into this "
            f"{output} output; copy {it} over if you need {it}")


def _listed(items: list[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _extra_kwargs(fmt_name: str, extra: _Extra) -> dict[str, Any]:
    """Pillow ``save`` arguments that write ``extra`` in ``fmt_name``."""
    kwargs: dict[str, Any] = {}
    if extra.dpi and fmt_name in ("PNG", "JPEG", "TIFF", "BMP"):
        kwargs["dpi"] = extra.dpi
    if extra.xmp and fmt_name in ("JPEG", "WEBP") and not extra.xmp_segments:
        kwargs["xmp"] = extra.xmp
    if extra.comment and fmt_name == "JPEG":
        kwargs["comment"] = extra.comment
    if fmt_name == "JPEG":
        # Raw marker segments, which Pillow writes as they are before its own XMP and ICC
        # segments: the main XMP packet goes here too, to come before the extended one.
        app13 = jpeg_app13(extra.iptc) if extra.iptc else None
        segments = (app13 or b"") + (extra.xmp_segments or b"")
        if segments:
            kwargs["extra"] = segments
    if fmt_name == "TIFF":
        tiffinfo = {_TIFF_XMP: extra.xmp, TIFF_IPTC: extra.iptc}  # UNDEFINED: bytes kept
        if any(tiffinfo.values()):
            kwargs["tiffinfo"] = {tag: v for tag, v in tiffinfo.items() if v}
    if fmt_name == "PNG" and (extra.xmp or extra.comment or extra.text or extra.colour):
        info = PngImagePlugin.PngInfo()
        for ctype, data in extra.colour:  # before the image data, as the specification asks
            info.add(ctype, data)
        xmp, comment = extra.xmp_text(), extra.comment_text()
        if xmp:
            info.add_itxt(PNG_XMP_KEY, xmp)
        if comment:
            info.add_itxt("Comment", comment)  # a keyword the PNG specification defines
        for field in extra.text:
            info.add(*png_text_chunk(field))  # the chunks the hand-made PNGs get
        kwargs["pnginfo"] = info
    return kwargs


# PNGs of at least this many pixels are encoded band by band, bands on several threads
# (_write_png_stream): Pillow needs the whole image as integers plus its own 4-byte-per-
# pixel copy of it, and deflates on one thread (a 12 MP photo: 1.1 s against 0.6 s on 2
# cores). Smaller ones go to Pillow (16-bit colour, which Pillow cannot hold, to the
# band-wise encoder too): a few milliseconds either way.
_STREAM_PNG_PIXELS = 1_000_000


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


def same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file: one path once resolved (links), or one file
    to the file system (a hard link, a name in another case where case is ignored). What
    ``protect=`` refuses to write over; the app asks the same before its Save question."""
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
    xmp: bytes | None = None,
    comment: bytes | None = None,
    dpi: tuple[float, float] | None = None,
    iptc: bytes | None = None,
    text: Sequence[TextField] = (),
    png_colour: Sequence[tuple[bytes, bytes]] = (),
    jpeg_xmp: tuple[bytes, bytes] | None = None,
    keep_metadata: bool = True,
    protect: Iterable[str | os.PathLike[str]] = (),
    replace: bool = True,
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
        xmp: XMP packet to embed (PNG, JPEG, WebP, 8-bit/grey TIFF).
        comment: Comment to embed (JPEG COM segment, PNG ``Comment`` text).
        dpi: Resolution in dots per inch (PNG, JPEG, 8-bit/grey TIFF, BMP).
        iptc: Raw IPTC-IIM stream to embed (JPEG APP13, 8-bit/grey TIFF tag 33723, PNG
            "Raw profile type iptc" text as ImageMagick and ExifTool keep it).
        text: PNG text fields to embed (PNG only).
        png_colour: A PNG's gAMA, cHRM and sRGB chunks, ``(type, data)``
            (:func:`rbqe.io.png.read_png_colour`; PNG only: elsewhere, unless they say
            sRGB or an ICC profile is written, their loss is said).
        jpeg_xmp: ``xmp`` as a JPEG holds XMP over one segment: its main packet (which
            names the other in ``xmpNote:HasExtendedXMP``) and its extended packet
            (:attr:`LoadedImage.xmp_main` and :attr:`LoadedImage.xmp_extended`). A JPEG
            output whose ``xmp`` does not fit one segment is given these instead, or
            without them ``xmp`` split so (:func:`rbqe.io.extended_xmp.split_xmp`); other
            formats hold ``xmp`` whole.
        keep_metadata: False drops EXIF, XMP, the comment, IPTC-IIM and PNG text (they
            can hold a location, names and other personal data); the ICC profile and the
            resolution (and a PNG's gamma) are still written because they describe the
            pixels.
        protect: Paths that must not be overwritten (the batch's inputs).
        replace: False: fail rather than replace a file that is at ``path`` when the
            image is written (a batch without ``--overwrite``: a file may appear there
            while the image is enhanced).

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
        if same_file(p, Path(other)):
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
        logger.warning("%s: %s is 8-bit only; the 16-bit image is written at 8 bits", p,
                       shown_format(fmt_name))
    out_mode = mode
    if fmt_name == "JPEG" and mode in ("LA", "RGBA"):
        out_mode = mode[:-1]
        # Dropped, the alpha showed what it hid: colour under fully transparent pixels.
        logger.warning("%s: JPEG cannot store transparency; the transparent parts are "
                       "filled with white", p)
    elif fmt_name == "WEBP" and mode in ("L", "LA"):
        out_mode = "RGB" + mode[1:]  # WebP has no grey mode
    elif fmt_name == "BMP" and mode == "LA":
        out_mode = "RGBA"  # BMP has no grey+alpha mode
    elif fmt_name == "TIFF" and mode == "LA" and depth == 16:
        out_mode = "RGBA"  # neither Pillow nor OpenCV writes 16-bit grey+alpha TIFF
        logger.info("%s: writing 16-bit grey+alpha as 16-bit RGBA TIFF", p)

    channels = 1 if out_mode in ("L", "LA") else 3
    _fit_channels(pix[:0], channels)  # a bad channel count fails here, not in the encoder
    alpha_ints = over_white = None
    if out_mode in ("LA", "RGBA"):
        if alpha is None:
            raise ImageWriteError(p, f"mode {mode} needs an alpha channel, none was given")
        alpha_ints = _alpha_at_depth(alpha, depth)
    elif mode in ("LA", "RGBA") and alpha is not None:
        over_white = _alpha_plane(alpha)  # laid over white band by band (_OutputPixels)
    for plane in (alpha_ints, over_white):
        if plane is not None and plane.shape != (height, width):
            raise ImageWriteError(
                p,
                f"alpha is {plane.shape[1]} x {plane.shape[0]} but the image is "
                f"{width} x {height}",
            )

    icc = bytes(icc_profile) if icc_profile else None
    exif_bytes = _normalise_exif(exif, p) if (keep_metadata and exif) else None
    if fmt_name == "JPEG" and exif_bytes and len(exif_bytes) > _JPEG_MAX_EXIF:
        logger.warning("%s: EXIF block too large for JPEG (%d bytes); dropped", p, len(exif_bytes))
        exif_bytes = None

    colour = tuple(png_colour)
    extra = _Extra(xmp, comment, dpi, iptc, tuple(text), colour) if keep_metadata \
        else _Extra(dpi=dpi, colour=colour)
    extra = _extra_for(p, fmt_name, extra, jpeg_xmp)
    icc, exif_bytes, extra = _kept(p, fmt_name, icc, exif_bytes, extra)
    grey_curve = None
    if icc and channels == 3 and mode in ("L", "LA") and icc[16:20] == b"GRAY":
        grey_curve, icc = _grey_in_srgb(p, icc)
    out_pixels = _OutputPixels(pix, channels, depth, alpha_ints, over_white, grey_curve)

    write = _make_writer(p, fmt_name, out_pixels, int(quality), icc, exif_bytes, extra)

    try:
        if os.path.isdir(p):  # Path.is_dir raises on a name too long: _os_reason says so below
            raise ImageWriteError(p, "is a directory")
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImageWriteError(p, f"cannot create output folder: {_os_reason(exc)}") from None
    try:
        with _logged_warnings(p):
            atomic_write(p, write, replace=replace)
    except ImageWriteError:
        raise
    except FileExistsError:
        error = ImageWriteError(p, "a file of that name appeared while the image was made; it "
                                   "is left as it is")
        error.errno = errno.EEXIST  # the batch says what would replace it
        raise error from None
    except OSError as exc:
        error = ImageWriteError(p, _os_reason(exc) if exc.errno else f"could not write: {exc}")
        error.errno = exc.errno
        raise error from None
    except MemoryError:
        raise ImageWriteError(p, "not enough memory to encode this image") from None
    except Exception as exc:  # encoder errors must not reach the user as tracebacks
        logger.debug("encoder failure for %s", p, exc_info=True)
        raise ImageWriteError(p, f"could not encode {fmt_name}: {exc}") from None
    return p


def _grey_in_srgb(p: Path, icc: bytes) -> tuple[np.ndarray | None, bytes | None]:
    """Grey pixels written as RGB (WebP has no grey mode, nor do the 16-bit TIFF writers
    grey+alpha) cannot carry their grey ICC profile: an RGB file with a GRAY profile is
    invalid (LittleCMS refuses it; viewers showed it darker). Returns the grey levels'
    colours through that profile in sRGB (:attr:`_OutputPixels.grey_curve`) and the sRGB
    profile to embed instead; where the profile cannot be used, no curve and no profile."""
    from PIL import ImageCms

    levels = Image.fromarray(np.arange(256, dtype=np.uint8)[None, :])  # every 8-bit grey
    try:
        rgb = ImageCms.profileToProfile(levels, ImageCms.ImageCmsProfile(io.BytesIO(icc)),
                                        ImageCms.createProfile("sRGB"), outputMode="RGB")
    except Exception as exc:  # noqa: BLE001 - PyCMSError, OSError...: LittleCMS refused it
        logger.warning("%s: the grey image is written as RGB, and its grey ICC colour "
                       "profile could not convert it to sRGB (%s); the output carries no "
                       "colour profile", p, exc)
        return None, None
    assert rgb is not None  # (None only when converting in place)
    logger.info("%s: the grey image is written as RGB: converted through its grey ICC "
                "colour profile to sRGB, whose profile it carries", p)
    return np.asarray(rgb, np.float32)[0] / np.float32(255), srgb_profile()


def _make_writer(
    p: Path,
    fmt_name: str,
    pixels: _OutputPixels,
    quality: int,
    icc: bytes | None,
    exif: bytes | None,
    extra: _Extra = _Extra(),
) -> Callable[[IO[bytes]], None]:
    """Returns a function that encodes ``pixels`` into a file object."""
    height, width, channels = pixels.shape
    depth = pixels.depth
    png_chunks = functools.partial(_png_metadata_chunks, icc, exif, extra.xmp_text(),
                                   extra.comment_text(), extra.dpi, extra.text, extra.colour)
    # Pillow cannot hold 16-bit colour: such PNGs go to rbqe's own encoder too.
    if fmt_name == "PNG" and (height * width >= _STREAM_PNG_PIXELS or
                              (depth == 16 and channels > 1)):
        chunks = png_chunks()
        return lambda fh: _write_png_stream(fh, pixels, chunks)
    if depth == 16 and channels > 1:
        # A 16-bit colour TIFF: OpenCV encodes it, without any metadata, so all of it is
        # added after (_add_tags).
        def write16(fh: IO[bytes]) -> None:
            fh.write(_opencv_encode(".tif", pixels.whole()))
            _add_tags(p, fh, exif, metadata_tags(icc, extra.xmp, extra.iptc, extra.dpi))

        return write16

    # Pillow path: 8-bit anything, or 16-bit grey as 'I;16'.
    kwargs = _extra_kwargs(fmt_name, extra)
    if fmt_name in ("PNG", "JPEG", "WEBP", "TIFF") and icc:
        kwargs["icc_profile"] = icc
    if fmt_name in ("PNG", "JPEG", "WEBP") and exif:
        kwargs["exif"] = exif
    if fmt_name in ("JPEG", "WEBP"):
        kwargs["quality"] = quality
    if fmt_name == "JPEG":
        # Full-resolution colour at the qualities meant to keep detail (as GIMP and
        # Photoshop do): Pillow's 4:2:0 made a 4:4:4 JPEG's output worse than the file
        # itself even at quality 100 (34.07 dB in, 33.16 out; 4:4:4 at 100: 34.6).
        kwargs["subsampling"] = "4:4:4" if quality >= JPEG_444_QUALITY else "4:2:0"
    if fmt_name == "WEBP" and channels == 4:
        kwargs["exact"] = True  # keep colour under transparent pixels
    if fmt_name == "PNG":
        kwargs["compress_level"] = PNG_COMPRESS_LEVEL
    if fmt_name == "TIFF" and features.check("libtiff"):
        kwargs["compression"] = "tiff_lzw"  # lossless and widely readable

    def write(fh: IO[bytes]) -> None:
        _pillow_image(pixels).save(fh, format=fmt_name, **kwargs)
        if fmt_name == "TIFF":
            _add_tags(p, fh, exif, {})  # Pillow's TIFF writers drop the Exif directory

    return write


def _add_tags(p: Path, fh: IO[bytes], exif: bytes | None, tags: dict[int, Any]) -> None:
    """Adds ``exif`` and ``tags`` to the TIFF just written to ``fh``; where they cannot be
    written, says so and leaves the image as written."""
    try:
        tags = {**tags, **exif_tags(exif)} if exif else tags
        if tags:
            add_tiff_tags(fh, tags)
    except OSError:
        raise  # the disk's answer (full, gone): the save fails, it is no metadata problem
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types on odd values
        logger.warning("%s: the input's metadata could not be written into this TIFF (%s); "
                       "copy it over if you need it", p, exc)


def save_like(
    path: str | os.PathLike[str],
    pixels: np.ndarray,
    src: LoadedImage,
    *,
    fmt: str | None = None,
    quality: int = 95,
    keep_metadata: bool = True,
    strip_gps: bool = False,
    protect: Iterable[str | os.PathLike[str]] = (),
    replace: bool = True,
) -> Path:
    """Saves ``pixels`` with the mode, depth, alpha and metadata of ``src``.

    ``src.path`` is always protected, so an output can never replace its own input.

    Args:
        path: Destination file.
        pixels: Processed pixels, same size as ``src``.
        src: The image the pixels came from.
        fmt: Output format, None for the suffix of ``path``.
        quality: JPEG/WebP quality.
        keep_metadata: Whether to write EXIF, XMP, the comment, IPTC-IIM and PNG text
            (ICC and the resolution are always kept).
        strip_gps: Leave the GPS location out of the EXIF written. XMP that may hold one
            (any "gps" in it, or in a JPEG's extended packet: :func:`xmp_has_gps`) is
            left out whole: picking the location out of the XML is not worth the risk of
            leaving a copy behind; so is a PNG text field that names GPS.
        protect: Further paths that must not be overwritten.
        replace: False: never replace a file at ``path`` (see :func:`save_image`).

    Returns:
        The path written.

    Raises:
        ImageWriteError: If writing fails or is refused.
    """
    exif = without_gps(src.exif, src.path) if strip_gps and keep_metadata else src.exif
    xmp = src.xmp
    # A warning, not INFO: the XMP goes whole, with the rights and captions in it. The
    # extended packet is asked too: a JPEG output writes it as it is, and what lies
    # outside its descriptions was never merged into ``xmp``.
    if strip_gps and keep_metadata and (xmp_has_gps(xmp) or xmp_has_gps(src.xmp_extended)):
        logger.warning("%s: the input's XMP (rights, captions, keywords...) is left out "
                       "whole: it holds a GPS location, which --strip-gps removes", path)
        xmp = None
    text = src.png_text
    gps_text = [f.key for f in text if text_has_gps(f)] if strip_gps and keep_metadata else []
    if gps_text:
        logger.warning("%s: the input's PNG text fields %s are left out: they may hold a GPS "
                       "location, which --strip-gps removes", path, named(gps_text))
        text = tuple(f for f in text if f.key not in gps_text)
    jpeg_xmp = (src.xmp_main, src.xmp_extended) \
        if xmp and src.xmp_main and src.xmp_extended else None
    return save_image(
        path,
        pixels,
        alpha=src.alpha,
        mode=src.mode,
        bit_depth=src.bit_depth,
        fmt=fmt,
        quality=quality,
        icc_profile=src.icc_profile,
        exif=exif,
        xmp=xmp,
        comment=src.comment,
        dpi=src.dpi,
        iptc=src.iptc,
        text=text,
        png_colour=src.png_colour,
        jpeg_xmp=jpeg_xmp,
        keep_metadata=keep_metadata,
        protect=[src.path, *protect],
        replace=replace,
    )
