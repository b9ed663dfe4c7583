"""Does a JPEG's coded data cover the whole frame its header declares? And reading a
JPEG that lacks only its end marker as if the marker were there.

libjpeg treats data that ends early as a warning: it fills the missing blocks with a
flat colour, and Pillow silences its warnings, so a file whose frame header was enlarged
(or whose scan was cut before an intact EOI marker) decodes as its real rows plus grey.
OpenCV's libjpeg prints the warning to stderr, so a cheap 1/8-scale decode with fd 2
captured tells us (the IDCT is skipped; the Huffman data is still read to the end).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from rbqe.io.diagnostics import _native_text

# libjpeg's JWRN_HIT_MARKER and JWRN_JPEG_EOF: the coded data ran out before the frame.
_SHORT_DATA = ("premature end of data segment", "premature end of jpeg file")
# libjpeg's other "Corrupt JPEG data: ..." warnings: a bad Huffman code, a marker where
# coded data should be, a restart marker missing, a scan or restart interval cut short
# (the rest of its data then skipped as "extraneous bytes before marker"). Bytes before
# the end marker (0xd9) are left out: many cameras pad their files so, and the picture is
# whole. Before any other marker they are counted as damage, however few: a byte flipped
# near a restart marker skipped 1-10 bytes and garbled its interval (max error 78 of
# 255), which a "few bytes are padding" rule called harmless; a writer's padding between
# segments is rarer than that.
_DAMAGE = "corrupt jpeg data"
_HARMLESS = "before marker 0xd9"


def jpeg_data_check(path: Path) -> tuple[bool, str | None]:
    """(whether the coded data ends before the declared frame, libjpeg's first warning
    of damage elsewhere in it or None), from one 1/8-scale decode."""
    said = _quick_decode(path)[1]
    return _ran_short(said), next(
        (line.strip() for line in said
         if _DAMAGE in line.lower() and _HARMLESS not in line.lower()), None)


def _ran_short(said: list[str]) -> bool:
    return any(s in line.lower() for line in said for s in _SHORT_DATA)


def _quick_decode(path: Path, tail: bytes = b"") -> tuple[bool, list[str]]:
    """Decodes the file (plus ``tail``) at 1/8 scale; returns (decoded, what libjpeg
    said)."""
    import cv2

    size = path.stat().st_size
    buf = np.empty(size + len(tail), dtype=np.uint8)  # one copy of the file, no more
    with open(path, "rb") as fh:
        got = fh.readinto(buf.data[:size])
    buf[got : got + len(tail)] = np.frombuffer(tail, dtype=np.uint8)
    flags = cv2.IMREAD_REDUCED_GRAYSCALE_8 | cv2.IMREAD_IGNORE_ORIENTATION
    with _native_text(path) as said:
        decoded = cv2.imdecode(buf[: got + len(tail)], flags) is not None
    return decoded, said


def jpeg_data_complete(path: Path, tail: bytes = b"") -> bool:
    """True if the file followed by ``tail`` decodes, and its coded data covers the frame.

    Stricter than ``jpeg_data_check``'s first answer: a file OpenCV cannot decode is not known
    to be complete. With ``tail`` the JPEG end marker, this tells a file that lacks only
    that marker (complete) from one cut inside its scan data (libjpeg then meets the
    marker before the last block and warns).
    """
    decoded, said = _quick_decode(path, tail)
    return decoded and not _ran_short(said)


_JPEG_EOI = b"\xff\xd9"
_SOS = 0xDA


def jpeg_lacks_only_eoi(path: Path, progressive: bool = False) -> bool:
    """True if the file does not end with the end marker (FF D9), yet with the marker
    appended its coded data covers the whole frame: nothing but the marker is lost.

    A progressive JPEG cut between two scans decodes without a warning (a blurrier
    picture), so for one (``progressive``) its scan headers must also show every scan
    there (:func:`progressive_scans_complete`).
    """
    with open(path, "rb") as fh:
        fh.seek(-2, os.SEEK_END)
        if fh.read(2) == _JPEG_EOI:
            return False
    # libjpeg's arithmetic decoder fills a scan cut short with zeros and says nothing, so
    # for such a file a lost end marker cannot be told from lost data.
    if _frame_marker(path) in _SOF_ARITHMETIC:
        return False
    if progressive and not progressive_scans_complete(path):
        return False
    return jpeg_data_complete(path, _JPEG_EOI)


_SOF_ARITHMETIC = (0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF)


def _frame_marker(path: Path) -> int | None:
    """The JPEG's frame (SOF) marker, found by walking its header segments; None if the
    walk fails or meets the first scan first."""
    with open(path, "rb") as fh:
        if fh.read(2) != b"\xff\xd8":
            return None
        while True:
            head = fh.read(4)
            if len(head) < 4 or head[0] != 0xFF:
                return None
            marker = head[1]
            if marker == 0xFF:  # a fill byte before the marker
                fh.seek(-3, os.SEEK_CUR)
                continue
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                return marker
            if marker == _SOS:
                return None
            fh.seek(int.from_bytes(head[2:4], "big") - 2, os.SEEK_CUR)


_SOF_PROGRESSIVE = (0xC2, 0xC6, 0xCA, 0xCE)  # progressive DCT frames (Huffman, arithmetic)


def progressive_scans_complete(path: Path) -> bool:
    """True if a progressive JPEG's scan headers code every coefficient (0-63) of every
    component of its frame down to the last bit (a scan with successive approximation
    Al = 0 covers it): no scan is missing. Whether each scan's own data is whole is
    :func:`jpeg_data_complete`'s to say. False for anything it cannot follow.
    """
    data = path.read_bytes()  # as _quick_decode does; the headers are spread through it
    components: list[int] = []
    coded: set[tuple[int, int]] = set()
    i, n = 2, len(data)
    try:
        while i + 1 < n:
            if data[i] != 0xFF:
                return False
            marker = data[i + 1]
            if marker == 0xFF:  # a fill byte before the marker
                i += 1
                continue
            if marker == 0xD9:
                break
            end = i + 2 + int.from_bytes(data[i + 2 : i + 4], "big")
            if end > n or end < i + 4:
                return False  # a segment cut short
            seg = data[i + 4 : end]
            if marker in _SOF_PROGRESSIVE:
                components = [seg[6 + 3 * k] for k in range(seg[5])]
            elif marker == _SOS:
                ns = seg[0]
                ids = [seg[1 + 2 * k] for k in range(ns)]
                ss, se, al = seg[1 + 2 * ns], seg[2 + 2 * ns], seg[3 + 2 * ns] & 0x0F
                if al == 0:
                    coded.update((c, k) for c in ids for k in range(ss, se + 1))
                end = _end_of_scan_data(data, end)
            i = end
    except IndexError:
        return False
    return bool(components) and all((c, k) in coded for c in components for k in range(64))


def _end_of_scan_data(data: bytes, i: int) -> int:
    """Where the entropy-coded data from ``i`` ends: at the next marker that is not a
    stuffed FF 00 or a restart marker (or at the end of the file)."""
    while True:
        j = data.find(b"\xff", i)
        if j < 0 or j + 1 >= len(data):
            return len(data)
        nxt = data[j + 1]
        if nxt == 0x00 or 0xD0 <= nxt <= 0xD7:
            i = j + 2
        elif nxt == 0xFF:
            i = j + 1  # fill bytes: the marker follows
        else:
            return j


class _WithEoi(io.RawIOBase):
    """A file read as if the JPEG end marker (FF D9) followed its last byte."""

    def __init__(self, fh: io.BufferedReader, size: int) -> None:
        self._fh, self._size, self._pos = fh, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._size + 2}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buf: Any) -> int:
        view = memoryview(buf).cast("B")
        if self._pos < self._size:
            self._fh.seek(self._pos)
            n = self._fh.readinto(view[: self._size - self._pos]) or 0
        else:
            tail = _JPEG_EOI[self._pos - self._size :][: len(view)]
            n = len(tail)
            view[:n] = tail
        self._pos += n
        return n

    def close(self) -> None:
        self._fh.close()
        super().close()


def open_with_eoi(path: Path) -> io.BufferedReader:
    """Opens ``path`` for reading with the JPEG end marker appended.

    The data streams from the file (no copy of it is held), so a decode from this costs
    no more memory than one from the file itself.
    """
    fh = open(path, "rb")  # closed when the returned reader is
    return io.BufferedReader(_WithEoi(fh, os.fstat(fh.fileno()).st_size))
