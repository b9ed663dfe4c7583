"""IPTC-IIM and PNG text fields: the captions, credits and copyright an archive keeps.

Read here: the raw IIM stream of a JPEG's APP13 Photoshop resource 0x0404, a TIFF's tag
33723 or a PNG's "Raw profile type iptc" text (the ImageMagick and ExifTool convention),
and a PNG's text fields (tEXt, zTXt, iTXt) that nothing else carries. They go back where
the output can hold them (IIM: JPEG, TIFF and PNG; text: PNG), by :mod:`rbqe.io.write`;
:func:`not_carried` words what an output loses.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

logger = logging.getLogger("rbqe.io")  # the package's one logger (see diagnostics)

PHOTOSHOP_IPTC, TIFF_IPTC = 0x0404, 33723  # IPTC-IIM in a JPEG's APP13, as a TIFF tag

# IIM fills a few 64 KB APP13 segments at most; more is a broken or hostile file, not
# captions, and would be copied into every output.
MAX_IPTC_BYTES = 1 << 20
# PNG text carried, all fields together (UTF-8), and how many fields.
MAX_TEXT_BYTES = 1 << 20
MAX_TEXT_FIELDS = 256

# PNG text carried otherwise (the comment, XMP), ImageMagick's copies of the EXIF and
# XMP, or the program that wrote the input (no longer true of the output).
# PNG has no IPTC chunk; ImageMagick and ExifTool keep IIM as this text field, whose text
# holds the Photoshop resources (8BIM blocks) in hex (:func:`png_iptc_text`).
PNG_IPTC_KEY = "Raw profile type iptc"
_KEPT_TEXT = {"Comment", "comment", "XML:com.adobe.xmp", "xmp", "Raw profile type exif",
              "Raw profile type xmp", "Software", PNG_IPTC_KEY}


@dataclass(frozen=True)
class TextField:
    """A PNG text field to write back. ``lang`` and ``tkey``: an iTXt chunk's language
    tag and translated keyword ("" where it had none, or was tEXt or zTXt)."""

    key: str
    text: str
    lang: str = ""
    tkey: str = ""


def read_iptc(im: Image.Image, path: Path) -> bytes | None:
    """The raw IPTC-IIM stream of an opened JPEG (APP13 resource 0x0404), TIFF (tag
    33723) or PNG (:data:`PNG_IPTC_KEY`), or None; one over :data:`MAX_IPTC_BYTES` is not
    carried, and that is said."""
    photoshop = im.info.get("photoshop")  # a JPEG's resources; a TIFF's are raw bytes
    if isinstance(photoshop, dict):
        data = photoshop.get(PHOTOSHOP_IPTC)
    elif im.format == "PNG":
        data = _png_iptc(im.info.get(PNG_IPTC_KEY))
    else:
        data = _tiff_iptc(im)
    if not isinstance(data, (bytes, bytearray)) or not data:
        return None
    if len(data) > MAX_IPTC_BYTES:
        logger.warning("%s: its IPTC-IIM data (captions, copyright, keywords) is %d bytes, "
                       "too large to be captions; it is not carried into the output",
                       path, len(data))
        return None
    return bytes(data)


_TIFF_UNITS = {1: "B", 3: "H", 4: "L", 7: "B"}  # BYTE, SHORT, LONG, UNDEFINED


def _tiff_iptc(im: Image.Image) -> bytes | None:
    tags: Any = getattr(im, "tag_v2", None)
    if tags is None or TIFF_IPTC not in tags:
        return None
    # The raw bytes, as Pillow's own getiptcinfo reads them: Photoshop declares the tag
    # LONG, and tag_v2 (which expects one value) would give its first four bytes only.
    raw = getattr(tags, "_tagdata", {}).get(TIFF_IPTC)
    if isinstance(raw, (bytes, bytearray)):
        return bytes(raw)
    return tiff_value_bytes(tags[TIFF_IPTC], tags.tagtype.get(TIFF_IPTC), tags.prefix)


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


def read_png_text(im: Image.Image, path: Path) -> tuple[TextField, ...]:
    """A PNG's text fields that nothing else carries, in file order (those after the
    image data only once it is decoded). Past :data:`MAX_TEXT_FIELDS` fields or
    :data:`MAX_TEXT_BYTES` in all, or with a keyword PNG forbids, a field is not
    carried, and that is said."""
    if im.format != "PNG":
        return ()
    fields: list[TextField] = []
    refused, size = [], 0
    for key, value in im.info.items():
        if not isinstance(key, str) or not isinstance(value, str) or key in _KEPT_TEXT:
            continue
        cost = len(key) + len(value.encode("utf-8"))
        if len(fields) >= MAX_TEXT_FIELDS or size + cost > MAX_TEXT_BYTES \
                or not 0 < len(key) <= 79:  # PNG's keyword length
            refused.append(key)
            continue
        size += cost
        # Pillow gives an iTXt's language and translated keyword as attributes of the text.
        fields.append(TextField(key, str(value), getattr(value, "lang", None) or "",
                                getattr(value, "tkey", None) or ""))
    if refused:
        logger.warning("%s: its PNG text fields %s are not carried into the output (more "
                       "than %d fields or 1 MB in all, or an invalid keyword)",
                       path, ", ".join(sorted(refused)), MAX_TEXT_FIELDS)
    return tuple(fields)


def text_has_gps(field: TextField) -> bool:
    """Whether a text field may hold a location: "gps", in any case, in its keyword or
    text; as wide as :func:`rbqe.io.metadata.xmp_has_gps`, for the same reason."""
    return "gps" in field.key.lower() or "gps" in field.text.lower()


def _irb_iptc(resources: bytes) -> bytes | None:
    """Resource 0x0404 of a run of Photoshop image resource blocks, or None."""
    at = 0
    while at + 12 <= len(resources) and resources[at : at + 4] == b"8BIM":
        rid = struct.unpack(">H", resources[at + 4 : at + 6])[0]
        name = resources[at + 6]
        at += 6 + name + 1 + (name + 1) % 2  # a Pascal name, padded to an even length
        if at + 4 > len(resources):
            return None
        size = struct.unpack(">I", resources[at : at + 4])[0]
        at += 4
        if rid == PHOTOSHOP_IPTC:
            return resources[at : at + size] if at + size <= len(resources) else None
        at += size + size % 2
    return None


def _png_iptc(text: object) -> bytes | None:
    """The IIM stream of a PNG's :data:`PNG_IPTC_KEY` text: a newline, the profile's
    name, its length, then its bytes in hex; those bytes are Photoshop resources (as
    ImageMagick writes them) or, from some writers, the IIM stream itself."""
    if not isinstance(text, str):
        return None
    # The name line ("iptc"; ExifTool: "IPTC profile"), then the length, then the hex.
    parts = text.lstrip("\n").partition("\n")[2].split(None, 1)
    if len(parts) < 2 or not parts[0].isdigit():
        return None
    try:
        raw = bytes.fromhex("".join(parts[1].split()))
    except ValueError:
        return None
    if len(raw) != int(parts[0]):
        return None
    return _irb_iptc(raw) if raw.startswith(b"8BIM") else raw if raw[:1] == b"\x1c" else None


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


def not_carried(output: str, iptc: bool, text: Sequence[TextField]) -> str | None:
    """The warning for an ``output`` (``"PNG"``, ``"16-bit colour TIFF"``...) that
    cannot hold the input's IPTC-IIM data (``iptc``) or its PNG ``text`` fields; None
    when it loses neither. An archive's captions and credits are what its owner would
    least like to lose unawares."""
    lost = []
    if iptc:
        lost.append("IPTC-IIM data (captions, copyright, keywords)")
    if text:
        lost.append("PNG text fields " + ", ".join(sorted(f.key for f in text)))
    if not lost:
        return None
    return (f"the input's {' and '.join(lost)} are not carried into this {output} "
            "output; copy them over if you need them")
