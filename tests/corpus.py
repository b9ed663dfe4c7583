"""Generates a corpus of awkward image files for the ``rbqe.io`` tests.

Everything is synthesised into a caller-given folder (normally pytest's ``tmp_path``),
so the tests never depend on files outside the repository. Images are tiny to keep
the suite fast on a busy machine; "huge" images are faked by crafting PNG headers.
"""

from __future__ import annotations

import functools
import hashlib
import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageCms

MAKE = "RBQE Test Camera"
MODEL = "Corpus-1"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The corpus cases no reader can take -> the cause rbqe.io gives after "<file>: " (one
# table for the io tests, which load them, and the robustness tests, which batch them).
EXPECTED_ERROR = {
    "jpeg_truncated": "truncated or corrupt image data",
    "png_truncated": "truncated or corrupt image data",
    "png16_truncated": "truncated or corrupt image data",
    "empty": "empty file (0 bytes)",
    "text_as_jpg": "not an image file (unrecognised format)",
    "stray_text": "not an image file (unrecognised format)",
    "bomb": (
        "image is 30000 x 30000 = 900 megapixels, over the limit of 200 megapixels "
        "(raise with --max-pixels)"
    ),
    "header_100mp": ("truncated or corrupt image data (header declares 10000 x 10000 but the "
                     "file holds only 16 bytes of pixel data)"),  # refused before decoding
}


@functools.cache
def srgb_icc() -> bytes:
    """Bytes of an sRGB ICC profile built by LittleCMS, built once: LittleCMS stamps the
    creation time into the header, so two builds a second apart differ (a flaky compare)."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def same_icc(a: bytes | None, b: bytes | None) -> bool:
    """Equal ICC profiles, but for the header's creation time (bytes 24-35) and the
    profile ID (84-99, an MD5 over a header that includes that time)."""
    if a is None or b is None or len(a) != len(b):
        return a == b
    return a[:24] + a[36:84] + a[100:] == b[:24] + b[36:84] + b[100:]


def pattern(height: int, width: int, channels: int, *, seed: int = 0) -> np.ndarray:
    """Smooth gradient plus a little noise: JPEG-friendly yet not symmetric."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
    c = np.arange(channels, dtype=np.float32)[None, None, :] / max(channels, 1)
    base = (
        0.15 + 0.6 * (0.5 * x + 0.3 * y + 0.2 * c) + rng.normal(0, 0.02, (height, width, channels))
    )
    return np.clip(base * 255, 0, 255).astype(np.uint8)


def png_chunk(ctype: bytes, data: bytes) -> bytes:
    """One PNG chunk with its CRC."""
    return struct.pack(">I", len(data)) + ctype + data + struct.pack(">I", zlib.crc32(ctype + data))


def png16(arr: np.ndarray, color_type: int) -> bytes:
    """Minimal 16-bit PNG encoder (filter 0), independent of the code under test."""
    h, w, c = arr.shape
    raw = np.ascontiguousarray(arr.astype(">u2")).view(np.uint8).reshape(h, w * c * 2)
    rows = np.concatenate([np.zeros((h, 1), np.uint8), raw], axis=1)
    ihdr = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(rows.tobytes()))
        + png_chunk(b"IEND", b"")
    )


def png_with_fake_size(width: int, height: int) -> bytes:
    """A valid tiny PNG whose IHDR claims ``width`` x ``height`` (CRC fixed up).

    The IDAT holds far too little data for that size, so a decoder that gets past the
    size check fails with a corrupt-data error instead of allocating gigabytes.
    """
    buf = io.BytesIO()
    Image.new("L", (4, 4), 128).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    assert data[12:16] == b"IHDR"
    struct.pack_into(">II", data, 16, width, height)
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def exif_bytes(orientation: int | None = None) -> bytes:
    """EXIF with Make/Model (and an Orientation if given)."""
    exif = Image.Exif()
    exif[0x010F] = MAKE
    exif[0x0110] = MODEL
    if orientation is not None:
        exif[0x0112] = orientation
    return exif.tobytes()


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_corpus(root: Path) -> dict[str, Path]:
    """Writes every corpus file into ``root`` and returns ``{case name: path}``.

    Args:
        root: Existing (or creatable) folder.

    Returns:
        Mapping of case names to the generated files.
    """
    root.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}

    def add(name: str, filename: str) -> Path:
        files[name] = root / filename
        return files[name]

    # Phone photo stored sideways: 12 wide x 8 high on disk, Orientation 6 (90 deg CW).
    Image.fromarray(pattern(8, 12, 3, seed=1)).save(
        add("jpeg_exif_rot6", "rotated.jpg"), "JPEG", quality=92, exif=exif_bytes(6)
    )
    Image.fromarray(pattern(16, 16, 3, seed=2)).save(
        add("jpeg_icc", "with_icc.jpg"), "JPEG", quality=80, icc_profile=srgb_icc()
    )
    cmyk = Image.new("CMYK", (8, 8), (255, 0, 0, 0))  # pure cyan
    cmyk.save(add("jpeg_cmyk", "cmyk.jpg"), "JPEG", quality=95)

    rgba = np.dstack([pattern(10, 11, 3, seed=3), pattern(10, 11, 1, seed=4)[..., 0]])
    rgba[0, 0, 3], rgba[0, 1, 3], rgba[1, 0, 3] = 0, 255, 1
    Image.fromarray(rgba).save(add("png_rgba", "rgba.png"), "PNG")
    la = np.dstack([pattern(9, 6, 1, seed=5)[..., 0], pattern(9, 6, 1, seed=6)[..., 0]])
    Image.fromarray(la).save(add("png_la", "gray_alpha.png"), "PNG")
    Image.fromarray(pattern(9, 7, 1, seed=7)[..., 0]).save(add("png_gray", "gray.png"), "PNG")

    pal = Image.new("P", (6, 5), 0)
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 12))
    pal.putdata([(i % 4) for i in range(30)])
    pal.save(add("gif_palette", "palette.gif"), "GIF", transparency=1)
    pal.save(add("png_palette_trns", "palette_trns.png"), "PNG", transparency=1)
    pal.save(add("png_palette", "palette.png"), "PNG")

    gray16 = (np.arange(7 * 5, dtype=np.uint32).reshape(7, 5) * 1871 + 3).astype(np.uint16)
    Image.fromarray(gray16).save(add("png_gray16", "gray16.png"), "PNG")
    Image.fromarray(gray16).save(add("tiff_gray16", "gray16.tif"), "TIFF")
    rgb16 = (np.arange(6 * 4 * 3, dtype=np.uint32).reshape(6, 4, 3) * 911 + 7).astype(np.uint16)
    cv2.imwrite(str(add("png_rgb16", "rgb16.png")), rgb16[..., ::-1])  # OpenCV wants BGR
    cv2.imwrite(str(add("tiff_rgb16", "rgb16.tif")), rgb16[..., ::-1])
    rgba16 = np.dstack([rgb16, (np.arange(24).reshape(6, 4) * 2731 + 1).astype(np.uint16)])
    cv2.imwrite(str(add("png_rgba16", "rgba16.png")), rgba16[..., [2, 1, 0, 3]])
    la16 = np.dstack([gray16, gray16[::-1, ::-1] ^ np.uint16(0x5A5A)])
    add("png_la16", "gray_alpha16.png").write_bytes(png16(la16, 4))

    Image.fromarray(pattern(1, 1, 3, seed=8)).save(add("png_1x1", "one.png"), "PNG")
    Image.fromarray(pattern(1, 1, 3, seed=8)).save(add("jpeg_1x1", "one.jpg"), "JPEG")
    Image.fromarray(pattern(9, 7, 3, seed=9)).save(add("png_7x9", "seven_by_nine.png"), "PNG")
    Image.fromarray(pattern(8, 8, 3, seed=10)).save(add("jpeg_8x8", "eight.jpg"), "JPEG")
    Image.fromarray(pattern(8, 8, 1, seed=11)[..., 0] > 128).save(add("png_1bit", "bw.png"), "PNG")

    Image.fromarray(pattern(12, 10, 3, seed=12)).save(add("webp", "photo.webp"), "WEBP", quality=90)
    Image.fromarray(pattern(12, 10, 3, seed=13)).save(add("bmp", "photo.bmp"), "BMP")
    Image.fromarray(pattern(12, 10, 3, seed=14)).save(add("tiff", "photo.tif"), "TIFF")

    # Broken and hostile files.
    buf = io.BytesIO()
    Image.fromarray(pattern(64, 64, 3, seed=15)).save(buf, "JPEG", quality=90)
    add("jpeg_truncated", "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    buf = io.BytesIO()
    Image.fromarray(pattern(64, 64, 3, seed=16)).save(buf, "PNG")
    add("png_truncated", "truncated.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    buf = io.BytesIO()
    cv2_ok, enc = cv2.imencode(".png", pattern(32, 32, 3, seed=17).astype(np.uint16) * 257)
    assert cv2_ok
    add("png16_truncated", "truncated16.png").write_bytes(enc.tobytes()[: enc.size // 2])
    add("empty", "empty.jpg").write_bytes(b"")
    add("text_as_jpg", "notes.jpg").write_text("this is not a picture\n", encoding="utf-8")
    add("bomb", "bomb.png").write_bytes(png_with_fake_size(30000, 30000))
    add("header_100mp", "huge_header.png").write_bytes(png_with_fake_size(10000, 10000))
    add("stray_text", "readme.txt").write_text("stray text file\n", encoding="utf-8")
    return files
