"""Does a JPEG's coded data cover the whole frame its header declares?

libjpeg treats data that ends early as a warning: it fills the missing blocks with a
flat colour, and Pillow silences its warnings, so a file whose frame header was enlarged
(or whose scan was cut before an intact EOI marker) decodes as its real rows plus grey.
OpenCV's libjpeg prints the warning to stderr, so a cheap 1/8-scale decode with fd 2
captured tells us (the IDCT is skipped; the Huffman data is still read to the end).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rbqe.io.diagnostics import _native_text

# libjpeg's JWRN_HIT_MARKER and JWRN_JPEG_EOF: the coded data ran out before the frame.
_SHORT_DATA = ("premature end of data segment", "premature end of jpeg file")


def jpeg_data_ends_early(path: Path) -> bool:
    """True if libjpeg runs out of coded data before it has decoded every block.

    False also when OpenCV cannot decode the file at all: Pillow's decode, which follows,
    then reports the file in its own words.
    """
    import cv2

    buf = np.fromfile(path, dtype=np.uint8)
    flags = cv2.IMREAD_REDUCED_GRAYSCALE_8 | cv2.IMREAD_IGNORE_ORIENTATION
    with _native_text(path) as said:
        cv2.imdecode(buf, flags)
    return any(s in line.lower() for line in said for s in _SHORT_DATA)
