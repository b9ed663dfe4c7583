"""A JPEG's extended XMP (XMP Specification Part 3, 1.1.3.1): XMP over one APP1 segment,
which Adobe and ExifTool split into the main packet, in the standard XMP APP1 segment,
and an extended packet, in further APP1 segments (chunks of it, each headed by the
extension namespace, the packet's GUID, its full length and the chunk's offset). The
main packet names the extended one by that GUID, the MD5 digest of the extended packet,
in ``xmpNote:HasExtendedXMP``.

Read: :func:`with_extended_xmp` merges the extended packet into the main one (what PNG,
TIFF and WebP outputs hold whole) and keeps both packets as the file had them; written:
:func:`jpeg_xmp_segments` lays them out again for a JPEG output."""

from __future__ import annotations

import hashlib
import re
import struct
from typing import NamedTuple
from xml.etree import ElementTree

from PIL import Image

_XMP_NAMESPACE = b"http://ns.adobe.com/xap/1.0/\x00"  # heads the standard XMP APP1 segment
_XMP_EXTENSION = b"http://ns.adobe.com/xmp/extension/\x00"  # then GUID, length, offset
_JPEG_MAX_SEGMENT = 65533  # a marker segment's data, its 2-byte length field aside
# The most of the extended packet one segment holds, as the specification gives it:
# 65533 less the length field's 2 bytes again and the 35 + 32 + 4 + 4 of the header.
_EXTENDED_CHUNK = 65400
# The main packet's note of it, as an element or an attribute (the GUID: 32 hex digits).
_HAS_EXTENDED = re.compile(rb"""\s*<(\w+:HasExtendedXMP)>\s*([0-9A-Fa-f]{32})\s*</\1>"""
                           rb"""|\s\w+:HasExtendedXMP\s*=\s*["']([0-9A-Fa-f]{32})["']""")
_RDF_BODY = re.compile(rb"<rdf:RDF\b[^>]*>(.*)</rdf:RDF>", re.S)


class JpegXmp(NamedTuple):
    """A JPEG's XMP as :func:`with_extended_xmp` reads it.

    Attributes:
        xmp: The XMP packet, its extended part merged in where there is one; or None.
        main: Where an extended packet was merged in, the main packet as the file had it
            (naming the extended packet); else None.
        extended: The extended packet as the file had it, where merged in; else None.
        lost: The bytes of extended XMP that could not be merged (incomplete, not named
            by the main packet, not well-formed); 0 where none.
    """

    xmp: bytes | None
    main: bytes | None = None
    extended: bytes | None = None
    lost: int = 0


def with_extended_xmp(im: Image.Image, xmp: bytes | None) -> JpegXmp:
    """A JPEG's XMP with its extended part merged in: its descriptions go into the main
    packet's ``rdf:RDF``, which no longer names it. ``xmp``: the main packet (Pillow's
    ``info["xmp"]``)."""
    chunks = [s[len(_XMP_EXTENSION):] for m, s in getattr(im, "applist", [])
              if m == "APP1" and s.startswith(_XMP_EXTENSION)]
    named = _HAS_EXTENDED.search(xmp or b"")
    lost = sum(max(len(c) - 40, 0) for c in chunks)
    if not chunks or not xmp or not named:
        return JpegXmp(xmp, lost=lost)
    guid = (named.group(2) or named.group(3)).upper()
    parts, total = {}, -1
    for chunk in chunks:
        if len(chunk) >= 40 and chunk[:32].upper() == guid:
            total, offset = struct.unpack_from(">II", chunk, 32)
            parts[offset] = chunk[40:]
    at = 0
    for offset in sorted(parts):  # the chunks must cover the packet, end to end
        at = at + len(parts[offset]) if offset == at else -1
    extended = b"".join(parts[k] for k in sorted(parts))
    body = _RDF_BODY.search(extended)
    main = xmp[: named.start()] + xmp[named.end() :]
    end = main.rfind(b"</rdf:RDF>")
    if at != total or body is None or end < 0 or b"<!DOCTYPE" in xmp + body.group(1):
        return JpegXmp(xmp, lost=lost)
    merged = main[:end] + body.group(1) + main[end:]
    try:  # a prefix bound only outside the extended packet's descriptions fails here
        ElementTree.fromstring(merged)
    except ElementTree.ParseError:
        return JpegXmp(xmp, lost=lost)
    return JpegXmp(merged, xmp, extended)


def jpeg_xmp_segments(main: bytes, extended: bytes) -> bytes | None:
    """The APP1 segments (markers included) that hold XMP split as :func:`with_extended_xmp`
    read it: ``main`` in the standard XMP segment, then ``extended`` in chunks at rising
    offsets. The GUID is the MD5 digest of ``extended`` as written, set in ``main``'s note
    too: a packet changed since it was read (its orientation reset) is named anew.

    Returns None where ``main`` does not fit one segment or names no extended packet."""
    guid = hashlib.md5(extended, usedforsecurity=False).hexdigest().upper().encode("ascii")
    named = _naming(main, guid)
    if named is None or len(_XMP_NAMESPACE) + len(named) > _JPEG_MAX_SEGMENT:
        return None
    segments = [_app1(_XMP_NAMESPACE + named)]
    head = _XMP_EXTENSION + guid + struct.pack(">I", len(extended))
    for at in range(0, len(extended), _EXTENDED_CHUNK):
        chunk = extended[at : at + _EXTENDED_CHUNK]
        segments.append(_app1(head + struct.pack(">I", at) + chunk))
    return b"".join(segments)


def _naming(main: bytes, guid: bytes) -> bytes | None:
    """``main`` with its ``HasExtendedXMP`` note set to ``guid``; None where it has none."""
    note = _HAS_EXTENDED.search(main)
    if note is None:
        return None
    value = 2 if note.group(2) else 3
    return main[: note.start(value)] + guid + main[note.end(value) :]


def _app1(payload: bytes) -> bytes:
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
