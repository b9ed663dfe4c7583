"""Tags added to a TIFF after its encoder wrote it: :func:`add_tiff_tags`.

Neither of the TIFF encoders used keeps all of a photo's metadata: Pillow's (libtiff, for
LZW) refuses the Exif and GPS directories (camera, exposure, capture date, location), and
OpenCV's (16-bit colour) writes no metadata at all. So the file is written first and its
first directory (IFD0) is then written again at the end of the file with the tags added,
the header pointed at it: the pixel data stays where the encoder put it. The old IFD0
stays behind as a few hundred unused bytes, as when ExifTool edits a TIFF.
"""

from __future__ import annotations

import io
import struct
from typing import IO, Any

from PIL import TiffImagePlugin, TiffTags

# A directory to add: tag -> (TIFF type, value), or under a pointer tag (Exif, GPS,
# Interoperability) the directory it points at. The types are the source's own: Pillow,
# left to guess from the values, wrote UNDEFINED tags (UserComment, MakerNote) as BYTE
# and signed rationals (exposure compensation) as unsigned.
Directory = dict[int, Any]

_EXIF_IFD, _GPS_IFD, _INTEROP_IFD = 0x8769, 0x8825, 0xA005
_POINTERS = {0: (_EXIF_IFD, _GPS_IFD), _EXIF_IFD: (_INTEROP_IFD,)}
# IFD0 tags of an EXIF block that describe the photo (description, camera, orientation,
# software, date, artist, copyright): what a TIFF input's EXIF is made of
# (rbqe.io.metadata).
DESCRIPTIVE_TAGS = (270, 271, 272, 274, 305, 306, 315, 33432)
_XMP, _ICC, _IPTC = 700, 34675, 33723
_X_RES, _Y_RES, _RES_UNIT = 282, 283, 296
_STRIP_OFFSETS = 273
# IFD0 tags not carried from an EXIF block: the old file's pixel layout (size, samples,
# compression, strips and tiles, old-style JPEG, YCbCr), its resolution (the output's
# comes from the dpi), sub-file pointers, and what is written apart (XMP, ICC, IPTC).
_NOT_CARRIED = frozenset({254, 255, 256, 257, 258, 259, 262, 263, 264, 265, 266, 273, 277,
                          278, 279, 280, 281, 282, 283, 284, 290, 291, 292, 293, 296, 297,
                          317, 318, 319, 320, 321, 322, 323, 324, 325, 330, 338, 339, 340,
                          341, 347, *range(512, 522), 529, 530, 531, 532, _XMP, _ICC,
                          _IPTC, _EXIF_IFD, _GPS_IFD, _INTEROP_IFD})


def exif_tags(exif: bytes) -> Directory:
    """What to add to a TIFF's IFD0 from ``exif`` (``Exif\\0\\0`` + TIFF bytes): its IFD0
    tags but the pixel layout's, and its Exif (with Interoperability) and GPS
    directories, each tag with its own type and its text as the bytes it was."""
    data = exif[6:] if exif.startswith(b"Exif\x00\x00") else exif
    header = data[:8]
    fp = io.BytesIO(data)
    order = "<" if header[:2] == b"II" else ">"

    def directory(at: int, level: int) -> Directory:
        ifd = TiffImagePlugin.ImageFileDirectory_v2(ifh=header)
        fp.seek(at)
        ifd.load(fp)
        out: Directory = {}
        for tag in ifd:
            if tag in _POINTERS.get(level, ()):
                try:
                    sub = directory(int(ifd[tag]), tag)
                except (OSError, SyntaxError, ValueError, TypeError, struct.error):
                    continue  # a pointer past the block: that directory is left out
                if sub:
                    out[tag] = sub
            elif level or tag not in _NOT_CARRIED:
                out[tag] = (ifd.tagtype[tag], _as_stored(ifd, tag))
        return out

    return directory(struct.unpack(order + "L", header[4:8])[0], 0)


def _as_stored(ifd: TiffImagePlugin.ImageFileDirectory_v2, tag: int) -> Any:
    """``ifd[tag]`` as Pillow writes it back unchanged: text as its bytes (Pillow reads
    them as Latin-1 and writes ASCII: "Zoë" came out "Zo??")."""
    value = ifd[tag]
    if ifd.tagtype[tag] == TiffTags.ASCII and isinstance(value, str):
        return value.encode("latin-1", "replace")
    return value


def metadata_tags(icc: bytes | None, xmp: bytes | None, iptc: bytes | None,
                  dpi: tuple[float, float] | None) -> Directory:
    """IFD0 tags for an ICC profile, XMP, IPTC-IIM and a resolution, where given."""
    tags: Directory = {}
    for tag, typ, value in ((_ICC, TiffTags.UNDEFINED, icc), (_XMP, TiffTags.BYTE, xmp),
                            (_IPTC, TiffTags.UNDEFINED, iptc)):
        if value:
            tags[tag] = (typ, bytes(value))
    if dpi:
        tags[_X_RES] = (TiffTags.RATIONAL, float(dpi[0]))
        tags[_Y_RES] = (TiffTags.RATIONAL, float(dpi[1]))
        tags[_RES_UNIT] = (TiffTags.SHORT, 2)
    return tags


def add_tiff_tags(fh: IO[bytes], tags: Directory) -> None:
    """Adds ``tags`` (:data:`Directory`) to the first directory of the classic TIFF in
    ``fh`` (readable, seekable, the file starting at offset 0), replacing those it has;
    sub-directories are written first, at the end of the file.

    Raises ValueError where the file is not a classic TIFF (a BigTIFF); the caller says
    what was not carried. The header is pointed at the new IFD0 last.
    """
    fh.seek(0)
    header = fh.read(8)
    if len(header) < 8 or header[:2] not in (b"II", b"MM"):
        raise ValueError("not a TIFF")
    order = "<" if header[:2] == b"II" else ">"
    if struct.unpack(order + "H", header[2:4])[0] != 42:
        raise ValueError("not a classic TIFF")
    ifd = TiffImagePlugin.ImageFileDirectory_v2(ifh=header)
    first = struct.unpack(order + "L", header[4:8])[0]
    fh.seek(first)
    ifd.load(fh)
    fh.seek(first)
    (count,) = struct.unpack(order + "H", fh.read(2))
    fh.seek(first + 2 + 12 * count)
    (following,) = struct.unpack(order + "L", fh.read(4))  # a second page, if any
    for tag in list(ifd):
        ifd[tag] = _as_stored(ifd, tag)  # load() keeps the values raw; tobytes() writes set ones
    _set(fh, header, ifd, tags)
    end = _end(fh)
    directory = _strips_kept(ifd.tobytes(end), end, ifd, order, following)
    fh.seek(end)
    fh.write(directory)
    fh.seek(4)
    fh.write(struct.pack(order + "L", end))
    fh.seek(0, 2)


def _set(fh: IO[bytes], header: bytes, ifd: TiffImagePlugin.ImageFileDirectory_v2,
         tags: Directory) -> None:
    """Puts ``tags`` into ``ifd``, each sub-directory written at the end of ``fh`` first
    and pointed at."""
    for tag, value in tags.items():
        if isinstance(value, dict):
            sub = TiffImagePlugin.ImageFileDirectory_v2(ifh=header, group=tag)
            _set(fh, header, sub, value)
            at = _end(fh)
            fh.seek(at)
            fh.write(sub.tobytes(at))
            typ, value = TiffTags.LONG, at
        else:
            typ, value = value
        ifd.tagtype[tag] = typ
        ifd[tag] = value


def _end(fh: IO[bytes]) -> int:
    """The end of ``fh``, rounded up to a word boundary (where a directory may start)."""
    end = fh.seek(0, 2)
    return end + end % 2


def _strips_kept(directory: bytes, at: int, ifd: TiffImagePlugin.ImageFileDirectory_v2,
                 order: str, following: int = 0) -> bytes:
    """``directory`` (made by ``ifd.tobytes(at)``) with the strip offsets that ``ifd``
    holds (Pillow's ``tobytes`` moves them past the directory, where its own writer puts
    the pixel data; here the pixel data stays where it is) and the link to the
    ``following`` directory (Pillow writes 0: a second page was lost)."""
    out = bytearray(directory)
    (count,) = struct.unpack_from(order + "H", out, 0)
    struct.pack_into(order + "L", out, 2 + 12 * count, following)
    offsets = ifd.get(_STRIP_OFFSETS)
    if offsets is None:
        return bytes(out)
    offsets = offsets if isinstance(offsets, tuple) else (offsets,)
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
