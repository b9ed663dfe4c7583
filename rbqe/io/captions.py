"""IPTC-IIM and PNG text fields: the captions, credits and copyright an archive keeps.

Read here: the raw IIM stream of a JPEG's Photoshop APP13 resource 0x0404 (its segments
joined, as ExifTool does), a TIFF's tag 33723 (or its Photoshop resources, tag 34377) or
a PNG's "Raw profile type iptc" text (the ImageMagick and ExifTool convention), and a
PNG's text fields (tEXt, zTXt, iTXt) that nothing else carries. They go back where the
output can hold them (IIM: JPEG, TIFF and PNG; text: PNG), by :mod:`rbqe.io.write`, which
says what an output cannot hold; what cannot be read is said when read.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

logger = logging.getLogger("rbqe.io")  # the package's one logger (see diagnostics)

PHOTOSHOP_IPTC, TIFF_IPTC = 0x0404, 33723  # IPTC-IIM as a Photoshop resource, as a TIFF tag
_TIFF_PHOTOSHOP = 34377  # a TIFF's Photoshop image resources
_IIM_MARK = b"\x1c"  # every IIM dataset starts with it

# IIM fills a few 64 KB APP13 segments at most; more is a broken or hostile file, not
# captions, and would be copied into every output.
MAX_IPTC_BYTES = 1 << 20
# PNG text carried, all fields together (UTF-8), and how many fields.
MAX_TEXT_BYTES = 1 << 20
MAX_TEXT_FIELDS = 256
_NAMED = 8  # keys a warning names before "and N more"

# PNG has no IPTC chunk; ImageMagick and ExifTool keep IIM as this text field, whose text
# holds the Photoshop resources (8BIM blocks) in hex (:func:`png_iptc_text`).
PNG_IPTC_KEY = "Raw profile type iptc"
# ImageMagick keeps binary profiles as PNG text with this prefix: EXIF (read by Pillow),
# XMP (:func:`rbqe.io.metadata.read_xmp`), IIM (here); others (APP1, icc, 8bim...) hold
# binary data that is no text to copy (an APP1's EXIF may hold a GPS location).
RAW_PROFILE = "Raw profile type "
# PNG text carried otherwise: the comment and XMP; or the program that wrote the input
# (no longer true of the output).
_KEPT_TEXT = {"Comment", "comment", "XML:com.adobe.xmp", "xmp", "Software"}
_READ_PROFILES = {"exif", "xmp", "iptc"}


@dataclass(frozen=True)
class TextField:
    """A PNG text field to write back. ``lang`` and ``tkey``: an iTXt chunk's language
    tag and translated keyword ("" where it had none, or was tEXt or zTXt)."""

    key: str
    text: str
    lang: str = ""
    tkey: str = ""


def read_iptc(im: Image.Image, path: Path) -> bytes | None:
    """The raw IPTC-IIM stream of an opened JPEG, TIFF or PNG, or None. Data that is not
    IIM, cut short, unreadable or over :data:`MAX_IPTC_BYTES` is not carried, and that
    is said."""
    try:
        data = _iptc_of(im)
    except ValueError as exc:
        logger.warning("%s: its IPTC-IIM data (captions, copyright, keywords) %s; it is "
                       "not carried into the output", path, exc)
        return None
    if not data:
        return None
    if len(data) > MAX_IPTC_BYTES:
        logger.warning("%s: its IPTC-IIM data (captions, copyright, keywords) is %d bytes, "
                       "too large to be captions; it is not carried into the output",
                       path, len(data))
        return None
    if not data.startswith(_IIM_MARK):
        logger.warning("%s: its IPTC resource holds no IPTC-IIM data; it is not carried "
                       "into the output", path)
        return None
    return data


def _iptc_of(im: Image.Image) -> bytes | None:
    """The IIM bytes where ``im``'s format keeps them; ValueError when they are there but
    cannot be read whole."""
    if im.format in ("JPEG", "MPO"):
        segments = [s[len(_APP13_HEADER):] for m, s in getattr(im, "applist", [])
                    if m == "APP13" and s.startswith(_APP13_HEADER)]
        # Photoshop cuts resources over 64 KB across segments: joined, they are whole.
        return _irb_iptc(b"".join(segments)) if segments else None
    if im.format == "TIFF":
        iim = _tiff_bytes(im, TIFF_IPTC)
        photoshop = _tiff_bytes(im, _TIFF_PHOTOSHOP) if iim is None else None
        return _irb_iptc(photoshop) if photoshop else iim
    if im.format == "PNG":
        raw = raw_profile(im.info.get(PNG_IPTC_KEY))
        if raw is None and PNG_IPTC_KEY in im.info:
            raise ValueError(f"(PNG text {PNG_IPTC_KEY!r}) is unreadable")
        return _irb_iptc(raw) if raw is not None and raw.startswith(b"8BIM") else raw
    return None


def _irb_iptc(resources: bytes) -> bytes | None:
    """Resource 0x0404 of a run of Photoshop image resource blocks, or None; ValueError
    when it is cut short."""
    for rid, at, size in _irb_blocks(resources):
        if rid == PHOTOSHOP_IPTC:
            if at + size > len(resources):
                raise ValueError(f"is cut short ({len(resources) - at:,} of its "
                                 f"{size:,} bytes)")
            return resources[at : at + size]
    return None


def _irb_blocks(resources: bytes) -> Iterator[tuple[int, int, int]]:
    """``(id, start, size)`` of each Photoshop image resource block (8BIM) in a run of
    them, until one does not start as a block does (its size may run past the end)."""
    at = 0
    while at + 12 <= len(resources) and resources[at : at + 4] == b"8BIM":
        rid = struct.unpack(">H", resources[at + 4 : at + 6])[0]
        name = resources[at + 6]
        at += 6 + name + 1 + (name + 1) % 2  # a Pascal name, padded to an even length
        if at + 4 > len(resources):
            return
        size = struct.unpack(">I", resources[at : at + 4])[0]
        yield rid, at + 4, size
        at += 4 + size + size % 2


_COPYRIGHT_FLAG, _URL = 0x040A, 0x040B  # Photoshop's "copyrighted" flag and its URL


def photoshop_extras(im: Image.Image) -> str | None:
    """What a JPEG's Photoshop resources hold that no output carries: the copyright flag
    (set) and the URL, said in one warning (they were dropped without a word); None where
    it has neither."""
    if im.format not in ("JPEG", "MPO"):
        return None
    resources = b"".join(s[len(_APP13_HEADER):] for m, s in getattr(im, "applist", [])
                         if m == "APP13" and s.startswith(_APP13_HEADER))
    lost = []
    for rid, at, size in _irb_blocks(resources):
        data = resources[at : at + size]
        if rid == _COPYRIGHT_FLAG and data[:1] == b"\x01":
            lost.append("copyright flag (marked copyrighted)")
        elif rid == _URL and data.strip(b"\x00 "):
            url = data.strip(b"\x00 ").decode("latin-1")
            lost.append(f"URL ({url[:80]}{'…' if len(url) > 80 else ''})")
    if not lost:
        return None
    them = len(lost) > 1
    return (f"its Photoshop {' and '.join(lost)} {'are' if them else 'is'} not carried "
            f"into the output (its IPTC captions are); copy {'them' if them else 'it'} "
            f"over if you need {'them' if them else 'it'}")


_TIFF_UNITS = {1: "B", 3: "H", 4: "L", 7: "B"}  # BYTE, SHORT, LONG, UNDEFINED


def _tiff_bytes(im: Image.Image, tag: int) -> bytes | None:
    """The bytes a TIFF's ``tag`` holds, or None."""
    tags: Any = getattr(im, "tag_v2", None)
    if tags is None or tag not in tags:
        return None
    # The raw bytes, as Pillow's own getiptcinfo reads them: Photoshop declares the IPTC
    # tag LONG, and tag_v2 (which expects one value) would give its first four bytes only.
    raw = getattr(tags, "_tagdata", {}).get(tag)
    if isinstance(raw, (bytes, bytearray)):
        return bytes(raw)
    return tiff_value_bytes(tags[tag], tags.tagtype.get(tag), tags.prefix)


def tiff_value_bytes(value: Any, tag_type: int | None, prefix: bytes) -> bytes | None:
    """A TIFF tag's value (bytes, or a tuple of BYTEs, SHORTs or LONGs) as the bytes the
    file holds; ``prefix``: the file's byte order, ``b"II"`` or ``b"MM"``. None when it
    is neither (a lone number: Pillow kept only the first of several)."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    unit = _TIFF_UNITS.get(tag_type or 0)
    if not isinstance(value, tuple) or unit is None:
        return None
    try:
        return struct.pack(f"{'>' if prefix == b'MM' else '<'}{len(value)}{unit}", *value)
    except struct.error:  # a value out of its type's range: not what the file held
        return None


def raw_profile(text: object) -> bytes | None:
    """The bytes of an ImageMagick raw profile text: a newline, the profile's name
    (ImageMagick "iptc", ExifTool "IPTC profile"), its length, then its bytes in hex over
    lines; None when the text is not one or does not add up."""
    if not isinstance(text, str):
        return None
    parts = text.lstrip("\n").partition("\n")[2].split(None, 1)
    if len(parts) < 2 or not parts[0].isdigit():
        return None
    try:
        raw = bytes.fromhex("".join(parts[1].split()))
    except ValueError:
        return None
    return raw if len(raw) == int(parts[0]) else None


def read_png_text(im: Image.Image, path: Path) -> tuple[TextField, ...]:
    """A PNG's text fields that nothing else carries, in file order (those after the
    image data only once it is decoded). Past :data:`MAX_TEXT_FIELDS` fields or
    :data:`MAX_TEXT_BYTES` in all, with a keyword or text PNG forbids, or a raw profile
    nothing reads, a field is not carried, and that is said."""
    if im.format != "PNG":
        return ()
    fields: list[TextField] = []
    refused, profiles, size = [], [], 0
    for key, value in im.info.items():
        if not isinstance(key, str) or not isinstance(value, str) or key in _KEPT_TEXT:
            continue
        if key.startswith(RAW_PROFILE):
            if key[len(RAW_PROFILE):] not in _READ_PROFILES:
                profiles.append(key[len(RAW_PROFILE):])
            continue
        cost = len(key) + len(value.encode("utf-8"))
        if len(fields) >= MAX_TEXT_FIELDS or size + cost > MAX_TEXT_BYTES \
                or not _keyword_ok(key) or "\0" in value:
            refused.append(key)
            continue
        size += cost
        # Pillow gives an iTXt's language and translated keyword as attributes of the text.
        fields.append(TextField(key, str(value), getattr(value, "lang", None) or "",
                                getattr(value, "tkey", None) or ""))
    if refused:
        logger.warning("%s: its PNG text fields %s are not carried into the output (more "
                       "than %d fields or %d KB in all, or a keyword or text PNG does not "
                       "allow)", path, named(refused), MAX_TEXT_FIELDS, MAX_TEXT_BYTES >> 10)
    if profiles:
        logger.warning("%s: its ImageMagick raw profiles %s (binary data kept as PNG text) "
                       "are not carried into the output", path, named(profiles))
    return tuple(fields)


def _keyword_ok(key: str) -> bool:
    """PNG's rule for a keyword: 1-79 printable Latin-1 characters, no leading, trailing
    or doubled space."""
    return (0 < len(key) <= 79 and key == key.strip() and "  " not in key
            and all(" " <= c <= "~" or "\xa1" <= c <= "\xff" for c in key))


def named(keys: Sequence[str]) -> str:
    """``keys`` for a warning: sorted, each as Python writes it where it holds control
    characters, at most :data:`_NAMED` of them and how many more."""
    shown = [k if k.isprintable() else repr(k) for k in sorted(keys)]
    more = f" and {len(shown) - _NAMED} more" if len(shown) > _NAMED else ""
    return ", ".join(shown[:_NAMED]) + more


def text_has_gps(field: TextField) -> bool:
    """Whether a text field may hold a location: "gps", in any case, in its keyword or
    text; as wide as :func:`rbqe.io.metadata.xmp_has_gps`, for the same reason."""
    return "gps" in field.key.lower() or "gps" in field.text.lower()


def png_iptc_text(iim: bytes) -> TextField:
    """The :data:`PNG_IPTC_KEY` field holding ``iim``, as ImageMagick writes it (its
    length in 8 columns, then 36 bytes of hex a line), which ExifTool reads."""
    raw = _irb_block(iim)
    lines = "\n".join(raw[i : i + 36].hex() for i in range(0, len(raw), 36))
    return TextField(PNG_IPTC_KEY, f"\niptc\n{len(raw):8d}\n{lines}\n")


def _irb_block(iim: bytes) -> bytes:
    """``iim`` as Photoshop image resource 0x0404 (an 8BIM block with an empty name)."""
    return (b"8BIM" + struct.pack(">H", PHOTOSHOP_IPTC)
            + b"\x00\x00"  # an empty Pascal name, padded to an even length
            + struct.pack(">I", len(iim)) + iim + b"\x00" * (len(iim) % 2))


_APP13_HEADER = b"Photoshop 3.0\x00"
_JPEG_MAX_SEGMENT = 65533  # a marker segment's data, its 2-byte length field aside


def jpeg_app13(iim: bytes) -> bytes | None:
    """The JPEG APP13 segment (marker included) holding ``iim`` as Photoshop image
    resource 0x0404; None when it does not fit one segment."""
    body = _APP13_HEADER + _irb_block(iim)
    if len(body) > _JPEG_MAX_SEGMENT:
        return None
    return b"\xff\xed" + struct.pack(">H", len(body) + 2) + body
