"""Tags added to a TIFF after its encoder wrote it: :func:`add_tiff_tags`.

Neither of the TIFF encoders used keeps all of a photo's metadata: Pillow's (libtiff, for
LZW) refuses the Exif and GPS directories (camera, exposure, capture date, location), and
OpenCV's (16-bit colour) writes no metadata at all. So the file is written first and its
first directory (IFD0) is then written again at the end of the file with the tags added,
the header pointed at it: the pixel data stays where the encoder put it. The old IFD0
stays behind as a few hundred unused bytes, as when ExifTool edits a TIFF.
"""

from __future__ import annotations

import logging
import struct
from typing import IO, Any

from PIL import Image, TiffImagePlugin, TiffTags

logger = logging.getLogger("rbqe.io")

_EXIF_IFD, _GPS_IFD, _INTEROP_IFD = 0x8769, 0x8825, 0xA005
# IFD0 tags of an EXIF block that describe the photo (description, camera, orientation,
# software, date, artist, copyright); the rest describe the old file's pixel layout.
DESCRIPTIVE_TAGS = (270, 271, 272, 274, 305, 306, 315, 33432)
_XMP, _ICC, _IPTC = 700, 34675, 33723
_X_RES, _Y_RES, _RES_UNIT = 282, 283, 296
_STRIP_OFFSETS = 273


def exif_tags(exif: bytes) -> dict[int, Any]:
    """The tags to add to a TIFF's IFD0 from ``exif`` (``Exif\\0\\0`` + TIFF bytes): its
    descriptive IFD0 tags, and its Exif and GPS directories as dicts (Pillow writes a dict
    under a pointer tag as a sub-directory)."""
    obj = Image.Exif()
    obj.load(exif)
    tags: dict[int, Any] = {t: obj[t] for t in DESCRIPTIVE_TAGS if t in obj}
    for pointer in (_EXIF_IFD, _GPS_IFD):
        sub = {t: v for t, v in obj.get_ifd(pointer).items()
               if t != _INTEROP_IFD and not isinstance(v, dict)}  # no third level
        if sub:
            tags[pointer] = sub
    return tags


def metadata_tags(icc: bytes | None, xmp: bytes | None, iptc: bytes | None,
                  dpi: tuple[float, float] | None) -> dict[int, Any]:
    """IFD0 tags for an ICC profile, XMP, IPTC-IIM and a resolution, where given."""
    tags: dict[int, Any] = {}
    for tag, value in ((_ICC, icc), (_XMP, xmp), (_IPTC, iptc)):
        if value:
            tags[tag] = bytes(value)
    if dpi:
        tags[_X_RES], tags[_Y_RES], tags[_RES_UNIT] = float(dpi[0]), float(dpi[1]), 2
    return tags


# Types the tags must have where Pillow would guess another from the value (bytes: BYTE).
_TYPES = {_ICC: TiffTags.UNDEFINED, _IPTC: TiffTags.UNDEFINED, _XMP: TiffTags.BYTE,
          _X_RES: TiffTags.RATIONAL, _Y_RES: TiffTags.RATIONAL, _RES_UNIT: TiffTags.SHORT}


def add_tiff_tags(fh: IO[bytes], tags: dict[int, Any]) -> None:
    """Adds ``tags`` to the first directory of the classic TIFF in ``fh`` (readable,
    seekable, the file starting at offset 0), replacing those it has.

    Raises ValueError where the file is not a classic TIFF (a BigTIFF); the caller says
    what was not carried. Nothing is written to ``fh`` until the new directory is made.
    """
    fh.seek(0)
    header = fh.read(8)
    if len(header) < 8 or header[:2] not in (b"II", b"MM"):
        raise ValueError("not a TIFF")
    order = "<" if header[:2] == b"II" else ">"
    if struct.unpack(order + "H", header[2:4])[0] != 42:
        raise ValueError("not a classic TIFF")
    ifd = TiffImagePlugin.ImageFileDirectory_v2(ifh=header)
    fh.seek(struct.unpack(order + "L", header[4:8])[0])
    ifd.load(fh)
    for tag in list(ifd):
        ifd[tag] = ifd[tag]  # load() keeps the values raw; tobytes() writes decoded ones
    for tag, value in tags.items():
        if tag in _TYPES:
            ifd.tagtype[tag] = _TYPES[tag]
        ifd[tag] = value
    end = fh.seek(0, 2)
    end += end % 2  # a directory starts on a word boundary
    directory = _strips_kept(ifd.tobytes(end), end, ifd, order)
    fh.seek(end)
    fh.write(directory)
    fh.seek(4)
    fh.write(struct.pack(order + "L", end))
    fh.seek(0, 2)


def _strips_kept(directory: bytes, at: int, ifd: TiffImagePlugin.ImageFileDirectory_v2,
                 order: str) -> bytes:
    """``directory`` (made by ``ifd.tobytes(at)``) with the strip offsets that ``ifd``
    holds: Pillow's ``tobytes`` moves them past the directory, where its own writer puts
    the pixel data; here the pixel data stays where it is."""
    offsets = ifd.get(_STRIP_OFFSETS)
    if offsets is None:
        return directory
    offsets = offsets if isinstance(offsets, tuple) else (offsets,)
    out = bytearray(directory)
    (count,) = struct.unpack_from(order + "H", out, 0)
    for n in range(count):
        tag, typ, values, inline = struct.unpack_from(order + "HHL4s", out, 2 + 12 * n)
        if tag != _STRIP_OFFSETS:
            continue
        item = order + ("H" if typ == TiffTags.SHORT else "L")
        data = struct.pack(order + f"{values}" + item[1:], *offsets)
        if len(data) <= 4:
            out[2 + 12 * n + 8 : 2 + 12 * n + 12] = data.ljust(4, b"\0")
        else:
            start = struct.unpack(order + "L", inline)[0] - at
            out[start : start + len(data)] = data
    return bytes(out)
