"""PNGs of a megapixel or more are deflated band by band on several threads (rbqe.io.png
_write_png_stream): the pieces must make one valid zlib stream, with its Adler-32, in
every mode and depth, whatever the number of threads and bands."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

import rbqe.io.pixels as rio_pixels
from rbqe.io.pixels import _OutputPixels
from rbqe.io.png import _write_png_stream, in_order


def idat_stream(png: bytes) -> bytes:
    """The concatenated IDAT data of a PNG file."""
    at, out = 8, []
    while at < len(png):
        size, ctype = struct.unpack(">I4s", png[at:at + 8])
        if ctype == b"IDAT":
            out.append(png[at + 8:at + 8 + size])
        at += 12 + size
    return b"".join(out)


@pytest.mark.parametrize("workers", [1, 3])
@pytest.mark.parametrize(("channels", "depth", "alpha"), [
    (1, 8, False), (1, 8, True), (3, 8, False), (3, 8, True), (3, 16, False), (1, 16, True)])
def test_the_bands_make_one_valid_png(monkeypatch, workers, channels, depth, alpha) -> None:
    monkeypatch.setattr(rio_pixels, "_SAVE_BAND_PIXELS", 200)  # many bands of a few rows
    rng = np.random.default_rng(channels * depth)
    h, w = 61, 37
    pix = rng.random((h, w, channels)).astype(np.float32)
    top = 65535 if depth == 16 else 255
    a = rng.integers(0, top + 1, (h, w)).astype(np.uint16 if depth == 16 else np.uint8) \
        if alpha else None
    out = _OutputPixels(pix, channels, depth, a)
    assert len(out.bands()) > 5
    buf = io.BytesIO()
    _write_png_stream(buf, out, [], workers=workers)
    png = buf.getvalue()
    raw = zlib.decompress(idat_stream(png))  # checks the Adler-32 too
    stride = 1 + w * (channels + alpha) * depth // 8
    assert len(raw) == h * stride
    assert np.array_equal(decoded(png, channels + alpha, depth), out.rows(0, h))


def decoded(png: bytes, samples: int, depth: int) -> np.ndarray:
    """The PNG's samples ``(H, W, samples)``: Pillow at 8 bit, OpenCV at 16 (which reads
    grey+alpha as BGRA)."""
    if depth == 8:
        with Image.open(io.BytesIO(png)) as im:
            return np.asarray(im).reshape(im.height, im.width, samples)
    import cv2

    got = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    if samples == 2:
        return got[..., [0, 3]]
    return got[..., [2, 1, 0, 3][:samples]]


def test_a_photo_sized_png_reads_back_as_written(tmp_path) -> None:
    from rbqe.io import load_image, save_image

    pix = np.random.default_rng(1).random((1000, 1100, 3)).astype(np.float32)  # 1.1 MP
    save_image(tmp_path / "big.png", pix)
    back = load_image(tmp_path / "big.png")
    written = np.round(back.pixels * 255).astype(np.uint8)
    assert np.array_equal(written, rio_pixels._quantize_band(pix, 8))
    with Image.open(tmp_path / "big.png") as im:
        im.verify()


def test_in_order_keeps_the_order_and_bounds_the_work_ahead() -> None:
    import threading
    import time

    started = [0]
    lock = threading.Lock()

    def work(i: int) -> int:
        with lock:
            started[0] += 1
        time.sleep(0.002 * (i % 3))
        return i * i

    seen = []
    for n, v in enumerate(in_order(work, 40, 3)):
        seen.append(v)
        with lock:
            assert started[0] - (n + 1) <= 2 * 3  # memory: a few bands ahead, not all
    assert seen == [i * i for i in range(40)]
