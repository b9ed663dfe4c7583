"""Declared sizes checked against the file before any decoder allocates for them.

A flipped byte in a header can make a decoder reserve gigabytes (a PNG chunk length of
0xFFFFFFF0; a JPEG frame header claiming 14000 x 14000 in a 1.3 KB file). These checks
read only the container's framing and refuse a file that cannot possibly hold what it
declares, so the caller raises one clear error instead. They are deliberately lenient:
a real file, however well compressed, always passes.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from rbqe.io.png import _PNG_SIGNATURE

# deflate cannot expand more than about 1032:1 (RFC 1951: a 258-byte match in 2 bits at
# best); PNG pixel data is a zlib stream, so IDAT bytes x this bound its size.
_DEFLATE_MAX_RATIO = 1032
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
# JPEG frame types coded with Huffman tables (baseline, extended, progressive); every
# MCU then costs at least one bit. Arithmetic and lossless frames are not bounded here.
_JPEG_HUFFMAN_DCT = {0xC0, 0xC1, 0xC2}
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def implausible_header(path: Path, kind: str | None,
                       tiff_tags: Mapping[int, Any] | None = None) -> str | None:
    """Why the file cannot hold what its header declares (or, for a JPEG, declares a
    sample precision other than 8 bits, which the decoder cannot read), or None if it may.

    Args:
        path: The image file.
        kind: Its container as sniffed from the magic bytes (``"PNG"``, ``"JPEG"``...).
        tiff_tags: For a TIFF, the first image's tags as Pillow parsed them (``tag_v2``).
    """
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, 2)
            fh.seek(0)
            if kind == "PNG":
                return _check_png(fh, size)
            if kind == "JPEG":
                return _check_jpeg(fh, size)
            if kind == "GIF":
                return _check_gif(fh, size)
            if kind == "TIFF" and tiff_tags is not None:
                return _check_tiff(tiff_tags, size)
    except (OSError, struct.error, IndexError, TypeError, ValueError):
        return None  # the decoder reports unreadable files in its own words
    return None


def _check_png(fh: IO[bytes], size: int) -> str | None:
    fh.seek(len(_PNG_SIGNATURE))
    pos, raw, dims = len(_PNG_SIGNATURE), 0, (0, 0)
    idat: list[tuple[int, int]] = []  # (offset, length) of each IDAT chunk's data
    while True:
        head = fh.read(8)
        if len(head) < 8:
            break  # a missing IEND is the decoder's to judge
        length, ctype = struct.unpack(">I4s", head)
        end = pos + 8 + length + 4
        if length > 0x7FFFFFFF or end > size:
            return "truncated or corrupt image data"  # a chunk runs past the end of the file
        if ctype == b"IHDR" and length >= 13:
            w, h, depth, colour, _c, _f, interlace = struct.unpack(">IIBBBBB", fh.read(13))
            dims = (w, h)
            raw = _png_raw_size(w, h, depth * _PNG_CHANNELS.get(colour, 4), interlace == 1)
        elif ctype == b"IDAT":
            idat.append((pos + 8, length))
        elif ctype == b"IEND":
            break
        pos = end
        fh.seek(pos)
    declared = f"{dims[0]} x {dims[1]}"
    stored = sum(n for _, n in idat)
    if raw > _DEFLATE_MAX_RATIO * stored + 1024:
        return (f"truncated or corrupt image data (header declares {declared} but the file "
                f"holds only {stored} bytes of pixel data)")
    # Pillow fills rows that the pixel data does not reach with grey and calls the image
    # complete; count what the zlib stream really holds (one pass, bounded memory).
    if raw and _inflated_size(fh, idat, raw) < raw:
        return f"truncated or corrupt image data (pixel data ends before the declared {declared})"
    return None


def _png_raw_size(width: int, height: int, bits_per_pixel: int, interlaced: bool) -> int:
    """Bytes of filtered scanlines (one filter byte per row) a PNG of this size holds."""
    def rows(w: int, h: int) -> int:
        return h * (1 + (w * bits_per_pixel + 7) // 8) if w and h else 0

    if not interlaced:
        return rows(width, height)
    # Adam7: (x start, y start, x step, y step) of the seven passes.
    passes = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4),
              (1, 0, 2, 2), (0, 1, 1, 2))
    return sum(rows(-(-(width - x0) // dx), -(-(height - y0) // dy))
               for x0, y0, dx, dy in passes)


def _inflated_size(fh: IO[bytes], idat: list[tuple[int, int]], limit: int) -> int:
    """How many bytes the IDAT zlib stream inflates to, up to ``limit``."""
    inflate = zlib.decompressobj()
    total = 0
    try:
        for offset, length in idat:
            fh.seek(offset)
            data = fh.read(length)
            while data and total < limit:
                total += len(inflate.decompress(data, 1 << 20))
                data = inflate.unconsumed_tail
            if total >= limit or inflate.eof:
                break
    except zlib.error:
        return limit  # a corrupt stream: the decoder reports it in its own words
    return total


def _check_jpeg(fh: IO[bytes], size: int) -> str | None:
    pos = 2  # after SOI
    while pos + 4 <= size:
        fh.seek(pos)
        marker = fh.read(2)
        if marker[0] != 0xFF:
            return None  # not where a marker should be: leave it to the decoder
        code = marker[1]
        if code == 0xFF:  # fill byte
            pos += 1
            continue
        if code == 0x01 or 0xD0 <= code <= 0xD8:  # markers without a length
            pos += 2
            continue
        if code in (0xD9, 0xDA):
            return None  # image data reached before a frame header: decoder's to judge
        (length,) = struct.unpack(">H", fh.read(2))
        if code in _JPEG_SOF:
            precision, h, w, n = struct.unpack(">BHHB", fh.read(6))
            if precision != 8:  # the decoder's own word for it was "truncated or corrupt"
                return (f"{precision}-bit JPEG (sample precision {precision}) is not "
                        "supported: only 8-bit JPEGs are read")
            if code not in _JPEG_HUFFMAN_DCT:
                return None
            factors = [fh.read(3)[1] for _ in range(n)]
            hmax = max((f >> 4 for f in factors), default=1) or 1
            vmax = max((f & 15 for f in factors), default=1) or 1
            mcus = -(-w // (8 * hmax)) * -(-h // (8 * vmax))
            if mcus > 8 * size:
                return (f"truncated or corrupt image data (header declares {w} x {h}, "
                        f"more than a {size}-byte JPEG file can hold)")
            return None
        pos += 2 + length
    return None


def _check_gif(fh: IO[bytes], size: int) -> str | None:
    """The first frame against the most pixels its LZW data could code."""
    head = fh.read(13)
    screen_w, screen_h, flags = struct.unpack_from("<HHB", head, 6)
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)  # global colour table
    while pos < size:
        fh.seek(pos)
        block = fh.read(1)
        if block == b"!":  # extension: label, then sub-blocks
            pos = _skip_sub_blocks(fh, pos + 2)[0]
        elif block == b",":  # image descriptor
            _x, _y, w, h, flags = struct.unpack("<HHHHB", fh.read(9))
            pos += 10 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
            fh.seek(pos)
            code_size = fh.read(1)[0] + 1  # LZW codes start this wide
            data = _skip_sub_blocks(fh, pos + 1)[1]
            # Every code adds at most one pixel to the longest string in the table, and
            # strings are never longer than the table's 4096 entries.
            codes = 8 * data // max(code_size, 2)
            most = codes * (codes + 1) // 2 if codes <= 4096 else 4096 * codes
            # Pillow decodes onto the whole logical screen: a tiny frame on a huge screen
            # costs as much as a huge frame, and is refused alike.
            for dw, dh in ((w, h), (screen_w, screen_h)):
                if dw * dh > most:
                    return (f"truncated or corrupt image data (header declares {dw} x {dh}, "
                            f"more than a {size}-byte GIF file can hold)")
            return None
        else:
            return None  # the trailer, or not a block: the decoder's to judge
    return None


def _skip_sub_blocks(fh: IO[bytes], pos: int) -> tuple[int, int]:
    """Skips a chain of GIF data sub-blocks; returns the position after it and its bytes."""
    total = 0
    while True:
        fh.seek(pos)
        n = fh.read(1)
        if not n or n[0] == 0:
            return pos + 1, total
        total += n[0]
        pos += 1 + n[0]


def _tag(tags: Mapping[int, Any], tag: int, default: Any) -> tuple[int, ...]:
    value = tags.get(tag, default)
    return tuple(int(v) for v in value) if isinstance(value, (tuple, list)) else (int(value),)


def _check_tiff(tags: Mapping[int, Any], size: int) -> str | None:
    """Strips (or tiles) present against those the declared size needs.

    Pillow decodes an uncompressed TIFF strip by strip from the offsets it finds and
    leaves rows that no strip covers black, so a taller header would decode "fine".
    """
    width, height = _tag(tags, 256, 0)[0], _tag(tags, 257, 0)[0]
    samples = _tag(tags, 277, 1)[0]
    depths = _tag(tags, 258, 1)
    separate = _tag(tags, 284, 1)[0] == 2  # PlanarConfiguration: one plane per sample
    bits = depths[0] if separate else sum(depths) if len(depths) > 1 else depths[0] * samples
    planes = samples if separate else 1
    if 322 in tags and 323 in tags:  # TileWidth, TileLength
        tw, th = _tag(tags, 322, 0)[0], _tag(tags, 323, 0)[0]
        offsets, counts = _tag(tags, 324, ()), _tag(tags, 325, ())
        blocks = math.ceil(width / tw) * math.ceil(height / th) * planes
        raw = blocks * th * math.ceil(tw * bits / 8)
    else:
        rows = min(_tag(tags, 278, height)[0] or height, height)  # RowsPerStrip
        offsets, counts = _tag(tags, 273, ()), _tag(tags, 279, ())
        blocks = math.ceil(height / rows) * planes if rows else 0
        raw = planes * height * math.ceil(width * bits / 8)
    if not offsets:
        return None  # no strip table (old-style JPEG...): the decoder's to judge
    declared = f"{width} x {height}"
    if len(offsets) < blocks:
        return f"truncated or corrupt image data (pixel data ends before the declared {declared})"
    uncompressed = _tag(tags, 259, 1)[0] == 1
    if uncompressed and counts and sum(counts) < raw:
        return (f"truncated or corrupt image data (header declares {declared} but the file "
                f"holds only {sum(counts)} bytes of pixel data)")
    # strict=False: a corrupt file's two tables may differ in length; judge the pairs.
    if any(o + c > size for o, c in zip(offsets, counts, strict=False)):
        return "truncated or corrupt image data"  # a strip runs past the end of the file
    return None
