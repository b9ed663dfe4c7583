"""A PNG's gAMA, cHRM and sRGB chunks (how viewers show its values) go into PNG outputs
by every PNG encoder; elsewhere their loss is said where it changes what a viewer shows.
They were dropped: a linear-gamma PNG's output looked darker than its input."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms, PngImagePlugin

from rbqe.io import load_image, save_like
from rbqe.io.diagnostics import said_while
from rbqe.io.png import read_png_colour, shown_as_srgb

PIXELS = np.random.default_rng(7).integers(0, 256, (30, 44, 3), dtype=np.uint8)
LINEAR = struct.pack(">I", 100000)  # gamma 1.0
WIDE = struct.pack(">8I", 31270, 32900, 64000, 33000, 21000, 71000, 15000, 6000)


def png_with(path: Path, pixels: np.ndarray, chunks: list[tuple[bytes, bytes]],
             **save) -> Path:
    info = PngImagePlugin.PngInfo()
    for ctype, data in chunks:
        info.add(ctype, data)
    Image.fromarray(pixels).save(path, pnginfo=info, **save)
    return path


def chunks_of(path: Path) -> dict[bytes, bytes]:
    """The colour chunks of a PNG file, read from its bytes, and where they stand."""
    data, found, at = path.read_bytes(), {}, 8
    while at < len(data):
        size, ctype = struct.unpack(">I4s", data[at:at + 8])
        if ctype in (b"gAMA", b"cHRM", b"sRGB"):
            found[ctype] = data[at + 8:at + 8 + size]
        if ctype == b"IDAT":
            break  # what follows the image data does not count
        at += 12 + size
    return found


@pytest.mark.parametrize("encoder", ["pillow", "streamed", "16-bit"])
def test_gamma_and_primaries_go_into_png_outputs(tmp_path: Path, encoder: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    pixels = PIXELS.astype(np.uint16) * 257 if encoder == "16-bit" else PIXELS
    if encoder == "16-bit":  # Pillow cannot write 16-bit colour: OpenCV can
        src_path = tmp_path / "in.png"
        cv2.imwrite(str(src_path), pixels[..., ::-1])
        data = src_path.read_bytes()
        end = 8 + 8 + 13 + 4  # after IHDR
        extra = b"".join(struct.pack(">I", len(d)) + t + d
                         + struct.pack(">I", zlib.crc32(t + d))
                         for t, d in ((b"gAMA", LINEAR), (b"cHRM", WIDE)))
        src_path.write_bytes(data[:end] + extra + data[end:])
    else:
        src_path = png_with(tmp_path / "in.png", pixels, [(b"gAMA", LINEAR), (b"cHRM", WIDE)])
    if encoder == "streamed":
        monkeypatch.setattr("rbqe.io.write._STREAM_PNG_PIXELS", 1)
    src = load_image(src_path)
    assert src.png_colour == ((b"gAMA", LINEAR), (b"cHRM", WIDE))
    out = tmp_path / "out.png"
    with said_while() as said:
        save_like(out, src.pixels, src)
    assert not said
    assert chunks_of(out) == {b"gAMA": LINEAR, b"cHRM": WIDE}
    again = load_image(out)
    assert again.png_colour == src.png_colour and again.bit_depth == src.bit_depth


def test_the_srgb_chunk_is_kept_too(tmp_path: Path) -> None:
    src = load_image(png_with(tmp_path / "in.png", PIXELS, [(b"sRGB", b"\x00"),
                                                          (b"gAMA", struct.pack(">I", 45455))]))
    save_like(tmp_path / "out.png", src.pixels, src, keep_metadata=False)  # it describes
    assert chunks_of(tmp_path / "out.png") == {b"sRGB": b"\x00",  # the pixels: kept
                                               b"gAMA": struct.pack(">I", 45455)}


@pytest.mark.parametrize("ext", ["jpg", "webp"])
def test_a_gamma_other_outputs_cannot_hold_is_said(tmp_path: Path, ext: str) -> None:
    src = load_image(png_with(tmp_path / "in.png", PIXELS, [(b"gAMA", LINEAR)]))
    out = tmp_path / f"out.{ext}"
    with said_while() as said:
        save_like(out, src.pixels, src)
    assert said == [f"{out}: the input's PNG colour encoding (its gAMA and cHRM chunks: how "
                    f"its colours are shown) is not carried into this "
                    f"{'JPEG' if ext == 'jpg' else 'WebP'} output; copy it over if you need it"]


def test_srgb_like_chunks_or_a_kept_profile_need_no_word(tmp_path: Path) -> None:
    plain = load_image(png_with(tmp_path / "a.png", PIXELS, [(b"gAMA", struct.pack(">I", 45455))]))
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    profiled = load_image(png_with(tmp_path / "b.png", PIXELS, [(b"gAMA", LINEAR)],
                                   icc_profile=icc))  # viewers follow the profile
    for n, src in enumerate((plain, profiled)):
        with said_while() as said:
            save_like(tmp_path / f"out{n}.jpg", src.pixels, src)
        assert not said


def test_what_counts_as_srgb() -> None:
    assert shown_as_srgb(()) and shown_as_srgb(((b"sRGB", b"\x01"), (b"gAMA", LINEAR)))
    assert shown_as_srgb(((b"gAMA", struct.pack(">I", 45000)),))  # within 1 %
    assert not shown_as_srgb(((b"gAMA", LINEAR),))
    assert not shown_as_srgb(((b"cHRM", WIDE),))


def test_odd_values_are_not_carried() -> None:
    assert read_png_colour({"gamma": 0.0, "chromaticity": (1.0,), "srgb": 9}) == ()
    assert read_png_colour({"gamma": 0.45455}) == ((b"gAMA", struct.pack(">I", 45455)),)


@pytest.mark.parametrize("big", [False, True])
def test_srgb_is_left_out_beside_a_kept_profile(tmp_path: Path, big: bool,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # The hand-made encoders wrote sRGB and iCCP both, which the specification forbids.
    if big:
        monkeypatch.setattr("rbqe.io.write._STREAM_PNG_PIXELS", 1)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    src = load_image(png_with(tmp_path / "in.png", PIXELS, [(b"sRGB", b"\x00"),
                                                          (b"gAMA", LINEAR)], icc_profile=icc))
    save_like(tmp_path / "out.png", src.pixels, src)
    assert chunks_of(tmp_path / "out.png") == {b"gAMA": LINEAR}
    assert load_image(tmp_path / "out.png").icc_profile == icc
