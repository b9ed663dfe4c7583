"""Tests for rbqe.io: reading awkward files, safe writing, naming and scanning."""

from __future__ import annotations

import errno
import fcntl
import io
import logging
import os
import pickle
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import cv2
import numpy as np
import pytest
from corpus import (
    EXPECTED_ERROR,
    MAKE,
    MODEL,
    build_corpus,
    exif_bytes,
    png_with_fake_size,
    same_icc,
    sha256,
    srgb_icc,
)
from PIL import Image, ImageCms, ImageFile, ImageOps, PngImagePlugin

from rbqe import io as rio
from rbqe.errors import (
    Cancelled,
    ImageReadError,
    ImageWriteError,
    RBQEError,
    WeightsError,
)
from rbqe.io import (
    DEFAULT_MAX_PIXELS,
    OUTPUT_LOG,
    STALE_TEMP_AGE_S,
    SUPPORTED_SUFFIXES,
    LoadedImage,
    estimate_jpeg_quality,
    is_image_file,
    is_temp_file,
    list_images,
    lists_folder,
    load_image,
    output_path_for,
    path_key,
    plan_outputs,
    record_output,
    remove_stale_temps,
    retract_output,
    save_image,
    save_like,
)
from tests.helpers import little_tiff

READABLE = [
    "jpeg_exif_rot6",
    "jpeg_icc",
    "jpeg_cmyk",
    "png_rgba",
    "png_la",
    "png_gray",
    "gif_palette",
    "png_palette_trns",
    "png_palette",
    "png_gray16",
    "tiff_gray16",
    "png_rgb16",
    "tiff_rgb16",
    "png_rgba16",
    "png_la16",
    "png_1x1",
    "jpeg_1x1",
    "png_7x9",
    "jpeg_8x8",
    "png_1bit",
    "webp",
    "bmp",
    "tiff",
]


@pytest.fixture
def corpus(tmp_path: Path):
    """Builds the corpus and checks, after the test, that no input byte changed."""
    files = build_corpus(tmp_path / "in")
    before = {name: sha256(p) for name, p in files.items()}
    yield files
    after = {name: sha256(p) for name, p in files.items()}
    assert after == before, "an input file was modified"


def as_uint8(x: np.ndarray) -> np.ndarray:
    return np.floor(np.clip(x * 255 + 0.5, 0, 255)).astype(np.uint8)


def as_uint16(x: np.ndarray) -> np.ndarray:
    return np.floor(np.clip(x * 65535 + 0.5, 0, 65535)).astype(np.uint16)


def listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


# --------------------------------------------------------------------------------------
# errors.py
# --------------------------------------------------------------------------------------


def test_error_types_are_one_line_and_picklable(tmp_path: Path) -> None:
    err = ImageReadError(tmp_path / "a.jpg", "truncated or\ncorrupt image data")
    assert isinstance(err, RBQEError)
    assert str(err) == f"{tmp_path / 'a.jpg'}: truncated or corrupt image data"
    assert err.path == tmp_path / "a.jpg"
    assert err.reason == "truncated or corrupt image data"
    clone = pickle.loads(pickle.dumps(err))
    assert str(clone) == str(err) and clone.reason == err.reason
    werr = ImageWriteError("out.png", "disk full")
    assert str(werr) == "out.png: disk full"
    assert issubclass(WeightsError, RBQEError) and issubclass(Cancelled, RBQEError)


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", READABLE)
def test_every_readable_case_loads_and_round_trips(corpus, tmp_path: Path, name: str) -> None:
    src = load_image(corpus[name])
    assert isinstance(src, LoadedImage)
    assert src.pixels.dtype == np.float32 and src.pixels.ndim == 3
    assert src.pixels.shape[2] in (1, 3)
    assert 0.0 <= float(src.pixels.min()) and float(src.pixels.max()) <= 1.0
    assert src.mode in ("L", "LA", "RGB", "RGBA")
    assert (src.alpha is not None) == src.mode.endswith("A")
    if src.alpha is not None:
        assert src.alpha.shape == src.pixels.shape[:2]
    out = save_like(tmp_path / "out" / f"{name}.png", src.pixels, src)
    back = load_image(out)
    assert back.mode == src.mode and back.bit_depth == src.bit_depth
    assert back.size == src.size
    # PNG is lossless and quantisation of our own float values is exact.
    np.testing.assert_array_equal(back.pixels, src.pixels)
    if src.alpha is not None:
        assert back.alpha.dtype == src.alpha.dtype
        np.testing.assert_array_equal(back.alpha, src.alpha)


@pytest.mark.parametrize("name", sorted(EXPECTED_ERROR))
def test_bad_files_give_one_clear_line(corpus, name: str) -> None:
    with pytest.raises(ImageReadError) as info:
        load_image(corpus[name])
    err = info.value
    assert err.reason == EXPECTED_ERROR[name]
    assert str(err) == f"{corpus[name]}: {EXPECTED_ERROR[name]}"
    assert "\n" not in str(err)


def test_missing_file_directory_and_special_files(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="file not found"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageReadError, match="is a directory"):
        load_image(tmp_path)
    link = tmp_path / "dangling.jpg"
    link.symlink_to(tmp_path / "gone.jpg")
    with pytest.raises(ImageReadError, match="a link to .*gone.jpg, which does not exist"):
        load_image(link)
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    with pytest.raises(ImageReadError, match="not a regular file"):
        load_image(fifo)  # must not block


def test_content_wins_over_suffix_and_odd_names(corpus, tmp_path: Path) -> None:
    disguised = tmp_path / "really_a_jpeg.png"
    disguised.write_bytes(corpus["jpeg_8x8"].read_bytes())
    assert load_image(disguised).format == "JPEG"
    with pytest.raises(ImageReadError, match="invalid file name"):
        load_image("bad\x00name.jpg")


def test_permission_denied_is_reported(corpus, monkeypatch) -> None:
    def deny(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    # Tests may run as root (which can read anything), so simulate the OS refusal.
    monkeypatch.setattr(rio.read, "open", deny, raising=False)
    with pytest.raises(ImageReadError) as info:
        load_image(corpus["png_gray"])
    assert info.value.reason == "permission denied"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads anything")
def test_permission_denied_real(corpus) -> None:
    path = corpus["png_gray"]
    path.chmod(0)
    try:
        with pytest.raises(ImageReadError, match="permission denied"):
            load_image(path)
    finally:
        path.chmod(0o644)


def test_exif_orientation_is_applied_and_reset(corpus, tmp_path: Path) -> None:
    path = corpus["jpeg_exif_rot6"]
    with Image.open(path) as raw:
        stored = np.asarray(raw.convert("RGB"))
        assert raw.getexif()[0x0112] == 6
        expected = np.asarray(ImageOps.exif_transpose(raw))
    src = load_image(path)
    assert stored.shape == (8, 12, 3)
    assert src.size == (8, 12)  # portrait after applying orientation 6
    np.testing.assert_array_equal(as_uint8(src.pixels), expected)
    np.testing.assert_array_equal(as_uint8(src.pixels), np.rot90(stored, -1))
    exif = Image.Exif()
    exif.load(src.exif)
    assert exif[0x0112] == 1
    assert exif[0x010F] == MAKE and exif[0x0110] == MODEL

    for fmt in ("png", "jpeg", "webp"):
        out = save_like(tmp_path / f"rot.{fmt}", src.pixels, src, fmt=fmt)
        with Image.open(out) as im:
            written = im.getexif()
            assert written[0x0112] == 1, fmt
            assert written[0x010F] == MAKE and written[0x0110] == MODEL, fmt
            assert im.size == (8, 12)
        # Reloading must not rotate a second time.
        assert load_image(out).size == (8, 12)


def _camera_exif(orientation: int, width: int, height: int) -> Image.Exif:
    """EXIF as a camera writes it: Orientation, and the stored size in the Exif directory."""
    exif = Image.Exif()
    exif[0x010F] = MAKE
    exif[0x0112] = orientation
    camera = exif.get_ifd(0x8769)
    camera[0xA002], camera[0xA003] = width, height
    return exif


def _pixel_size(exif_bytes: bytes | None) -> tuple[int, int]:
    exif = Image.Exif()
    exif.load(exif_bytes)
    camera = exif.get_ifd(0x8769)
    return camera[0xA002], camera[0xA003]


@pytest.mark.parametrize("ext", ["jpg", "tif"])
@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_a_turned_photo_keeps_its_exif_size_true(tmp_path: Path, orientation: int,
                                                 ext: str) -> None:
    # A camera's portrait JPEG is stored 12 x 8 with Orientation 6. Once its pixels are
    # turned and the Orientation reset to 1, the Exif directory's PixelXDimension and
    # PixelYDimension must say 8 x 12 too, or viewers that read them see the old shape.
    # (Pillow turns an 8-bit TIFF as it loads it and drops its Orientation tag: the reset
    # never saw the quarter turn there.)
    path = tmp_path / f"cam.{ext}"
    stored = np.random.default_rng(0).integers(0, 256, (8, 12, 3), dtype=np.uint8)
    Image.fromarray(stored).save(path, exif=_camera_exif(orientation, 12, 8).tobytes())
    src = load_image(path)
    want = src.size  # (width, height) after the turn
    assert want == ((8, 12) if orientation in (6, 8) else (12, 8))
    assert _pixel_size(src.exif) == want
    for fmt in ("png", "jpeg"):
        out = save_like(tmp_path / f"out.{fmt}", src.pixels, src, fmt=fmt)
        with Image.open(out) as im:
            assert im.size == want
            assert _pixel_size(im.info.get("exif")) == want, fmt


XMP_TURNED = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/'
              b'1999/02/22-rdf-syntax-ns#"><rdf:Description xmlns:tiff="http://ns.adobe.com/'
              b'tiff/1.0/" xmlns:exif="http://ns.adobe.com/exif/1.0/" tiff:Orientation="6" '
              b'exif:PixelXDimension="12" exif:PixelYDimension="8"><tiff:ImageWidth>12'
              b'</tiff:ImageWidth><tiff:ImageLength>8</tiff:ImageLength></rdf:Description>'
              b'</rdf:RDF></x:xmpmeta>')


def test_a_turned_photo_resets_its_xmp_orientation_too(tmp_path: Path) -> None:
    # Lightroom and Bridge write the orientation in XMP beside EXIF's: left at 6 once the
    # pixels were turned, XMP readers turned the photo a second time.
    path = tmp_path / "cam.jpg"
    stored = np.random.default_rng(0).integers(0, 256, (8, 12, 3), dtype=np.uint8)
    Image.fromarray(stored).save(path, exif=_camera_exif(6, 12, 8).tobytes(), xmp=XMP_TURNED)
    src = load_image(path)
    assert src.size == (8, 12)
    assert src.xmp is not None and b'tiff:Orientation="1"' in src.xmp
    assert b'exif:PixelXDimension="8" exif:PixelYDimension="12"' in src.xmp
    assert b"<tiff:ImageWidth>8</tiff:ImageWidth><tiff:ImageLength>12<" in src.xmp
    out = save_like(tmp_path / "out.jpg", src.pixels, src)
    with Image.open(out) as im:
        assert im.info["xmp"] == src.xmp
    flipped = rio.metadata.xmp_turned(XMP_TURNED, 3)  # a half turn: no size swap
    assert b'tiff:Orientation="1"' in flipped and b'PixelXDimension="12"' in flipped


def test_xmp_orientation_is_reset_whatever_exif_said(tmp_path: Path) -> None:
    # EXIF said 1 (the pixels were not turned) and XMP 6: a TIFF output keeps the XMP
    # only, so its 6 turned the photo in every reader that honours XMP.
    path = tmp_path / "e1x6.jpg"
    stored = np.random.default_rng(0).integers(0, 256, (8, 12, 3), dtype=np.uint8)
    Image.fromarray(stored).save(path, exif=_camera_exif(1, 12, 8).tobytes(), xmp=XMP_TURNED)
    src = load_image(path)
    assert src.size == (12, 8) and src.xmp is not None
    assert b'tiff:Orientation="1"' in src.xmp and b'PixelXDimension="12"' in src.xmp
    save_like(tmp_path / "out.tif", src.pixels, src)
    assert load_image(tmp_path / "out.tif").size == (12, 8)


def test_xmp_turned_leaves_other_documents_and_namespaces_alone() -> None:
    xmp = (b'<d tiff:Orientation="6" drone-dji:Orientation="6"><xmpMM:Pantry><rdf:li '
           b'tiff:ImageWidth="800" tiff:ImageLength="600" tiff:Orientation="6"/></xmpMM:Pantry>'
           b'<tiff:ImageWidth>480</tiff:ImageWidth><tiff:ImageLength>320</tiff:ImageLength>'
           b'<tiff:Orientation rdf:datatype="Integer">6</tiff:Orientation></d>')
    assert rio.metadata.xmp_turned(xmp, 6) == (
        b'<d tiff:Orientation="1" drone-dji:Orientation="6"><xmpMM:Pantry><rdf:li '
        b'tiff:ImageWidth="800" tiff:ImageLength="600" tiff:Orientation="6"/></xmpMM:Pantry>'
        b'<tiff:ImageWidth>320</tiff:ImageWidth><tiff:ImageLength>480</tiff:ImageLength>'
        b'<tiff:Orientation rdf:datatype="Integer">1</tiff:Orientation></d>')


def test_an_xmp_orientation_pillow_does_not_read_is_left_as_it_is(tmp_path: Path) -> None:
    # No EXIF, and an element form with attributes Pillow's reader misses: the pixels are
    # not turned, so the XMP keeps its 6 for the viewers that do read it.
    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description xmlns:tiff="http://ns.'
           b'adobe.com/tiff/1.0/"><tiff:Orientation rdf:datatype="Integer">6'
           b'</tiff:Orientation></rdf:Description></x:xmpmeta>')
    path = tmp_path / "odd.jpg"
    Image.fromarray(np.zeros((8, 12, 3), np.uint8)).save(path, xmp=xmp)
    src = load_image(path)
    assert src.size == (12, 8) and src.xmp == xmp


@pytest.mark.parametrize("ext", ["png", "jpg", "webp"])
def test_an_xmp_only_orientation_is_left_to_the_viewers(tmp_path: Path, ext: str) -> None:
    # Pillow fills in the XMP's orientation as EXIF: rbqe wrote an EXIF block the file
    # never had, and said "EXIF not carried" of TIFF outputs. And it turned the pixels by
    # it, which browsers and the systems' viewers ignore: there the output showed turned
    # against its input. Now stored as the input, its XMP kept: shown as the input is.
    path = tmp_path / f"x6.{ext}"
    stored = np.random.default_rng(0).integers(0, 256, (8, 12, 3), dtype=np.uint8)
    if ext == "png":
        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", XMP_TURNED.decode())
        Image.fromarray(stored).save(path, pnginfo=info)
    else:
        Image.fromarray(stored).save(path, xmp=XMP_TURNED, **({"lossless": True}
                                                              if ext == "webp" else {}))
    src = load_image(path)
    assert src.size == (12, 8) and src.exif is None
    assert src.xmp is not None and b'tiff:Orientation="6"' in src.xmp
    if ext != "jpg":
        assert np.array_equal(src.pixels * 255, stored.astype(np.float32))


def _exif_with_thumbnail(orientation: int, copies: int = 1) -> bytes:
    """Raw EXIF (little-endian) with IFD0 (Orientation, ``copies`` times) linked to IFD1,
    a thumbnail's directory (JPEGInterchangeFormat and its length) and 16 bytes of it."""
    ifd0 = struct.pack("<H", copies) + struct.pack("<HHII", 0x0112, 3, 1, orientation) * copies
    ifd1_at = 8 + len(ifd0) + 4
    ifd1 = struct.pack("<H", 2) + struct.pack("<HHII", 0x0201, 4, 1, ifd1_at + 30) \
        + struct.pack("<HHII", 0x0202, 4, 1, 16)
    tiff = b"II*\x00" + struct.pack("<I", 8) + ifd0 + struct.pack("<I", ifd1_at) + ifd1 \
        + struct.pack("<I", 0) + b"\xff\xd8" + b"\x00" * 12 + b"\xff\xd9"
    return b"Exif\x00\x00" + tiff


def _next_ifd(exif: bytes) -> int:
    tiff = exif.removeprefix(b"Exif\x00\x00")
    count = struct.unpack_from("<H", tiff, 8)[0]
    return struct.unpack_from("<I", tiff, 10 + 12 * count)[0]


def test_a_thumbnail_behind_a_duplicated_tag_is_unlinked() -> None:
    # The IFD's own count, not its distinct tags, says where its next-IFD link is: with a
    # tag twice the zero went into the second entry.
    raw = _exif_with_thumbnail(6, copies=2)
    assert _next_ifd(raw) != 0
    fixed = rio.metadata._normalise_exif(raw)
    assert fixed is not None and _next_ifd(fixed) == 0
    assert fixed[:-30] != raw[:-30] and len(fixed) == len(raw)  # patched in place


@pytest.mark.parametrize("orientation", [1, 3, 6])
def test_a_turned_photos_thumbnail_is_unlinked(orientation: int) -> None:
    # The thumbnail shows the picture as stored: kept after the turn, file browsers
    # showed a portrait photo's thumbnail sideways.
    raw = _exif_with_thumbnail(orientation)
    assert _next_ifd(raw) != 0
    fixed = rio.metadata._normalise_exif(raw)
    assert fixed is not None and (_next_ifd(fixed) == 0) == (orientation != 1)


def test_exif_rewritten_by_pillow_swaps_the_size_too() -> None:
    # The fallback for EXIF whose layout the in-place patch does not handle.
    fixed = rio.metadata._normalise_exif(_camera_exif(6, 12, 8))
    exif = Image.Exif()
    exif.load(fixed)
    assert exif[0x0112] == 1 and _pixel_size(fixed) == (8, 12)


def test_a_tiffs_exif_keeps_its_camera_data_when_turned() -> None:
    # A TIFF's EXIF is rebuilt with its Exif directory as a plain dict (metadata.
    # _tiff_exif); asking Pillow for that directory failed and dropped the whole EXIF.
    built = Image.Exif()
    built[0x010F] = MAKE
    built[0x0112] = 6
    built[0x8769] = {0xA002: 12, 0xA003: 8, 0x9003: "2026:12:07 10:00:00"}
    fixed = rio.metadata._normalise_exif(built)
    assert fixed is not None
    exif = Image.Exif()
    exif.load(fixed)
    assert exif[0x010F] == MAKE and exif[0x0112] == 1
    assert _pixel_size(fixed) == (8, 12)
    assert exif.get_ifd(0x8769)[0x9003] == "2026:12:07 10:00:00"


def test_an_unreadable_exif_directory_does_not_undo_the_in_place_patch() -> None:
    # An Exif-directory pointer past the end: the size is left, and the Orientation is
    # still patched in place (a rewrite by Pillow could break maker notes).
    import struct

    raw = bytearray(_camera_exif(6, 12, 8).tobytes())  # "Exif\0\0" + TIFF
    base = len(b"Exif\x00\x00")
    order = {b"II": "<", b"MM": ">"}[bytes(raw[base:base + 2])]
    ifd0 = base + struct.unpack_from(order + "I", raw, base + 4)[0]
    for i in range(struct.unpack_from(order + "H", raw, ifd0)[0]):
        entry = ifd0 + 2 + 12 * i
        if struct.unpack_from(order + "H", raw, entry)[0] == 0x8769:
            struct.pack_into(order + "I", raw, entry + 8, 0xFFFFF0)
    patched = rio.metadata._reset_orientation_raw(bytes(raw))
    assert patched is not None and len(patched) == len(raw)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_matches_pillow(tmp_path: Path, orientation: int) -> None:
    arr = np.random.default_rng(orientation).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    path = tmp_path / "o.png"
    Image.fromarray(arr).save(path, exif=exif_bytes(orientation))
    with Image.open(path) as im:
        expected = np.asarray(ImageOps.exif_transpose(im))
    np.testing.assert_array_equal(as_uint8(load_image(path).pixels), expected)


def _rgb16_tiff(rgb: np.ndarray, orientation: int) -> bytes:
    """An uncompressed 16-bit RGB TIFF in one strip with an Orientation tag (Pillow cannot
    write 16-bit RGB, OpenCV writes no orientation)."""
    h, w, _ = rgb.shape
    data = rgb.astype("<u2").tobytes()
    return little_tiff([(256, 3, [w]), (257, 3, [h]), (258, 3, [16, 16, 16]), (259, 3, [1]),
                        (262, 3, [2]), (273, 4, [0]), (274, 3, [orientation]), (277, 3, [3]),
                        (278, 3, [h]), (279, 4, [len(data)]), (284, 3, [1])], data, 273)


@pytest.mark.parametrize("orientation, turn", [
    (1, lambda a: a), (2, lambda a: a[:, ::-1]), (3, lambda a: a[::-1, ::-1]),
    (6, lambda a: np.rot90(a, -1)), (8, lambda a: np.rot90(a, 1)),
])
def test_a_16bit_rgb_tiff_is_turned_once(tmp_path: Path, orientation, turn) -> None:
    # OpenCV 5.1 turns a TIFF by its tag itself: turned again here, orientation 6 came
    # out upside down and 2, 3 not turned at all.
    rgb16 = np.random.default_rng(orientation).integers(0, 65536, (4, 6, 3), dtype=np.uint16)
    path = tmp_path / f"o{orientation}.tif"
    path.write_bytes(_rgb16_tiff(rgb16, orientation))
    src = load_image(path)
    assert src.bit_depth == 16
    np.testing.assert_array_equal(as_uint16(src.pixels), turn(rgb16))


def test_orientation_applies_to_16bit_and_alpha(tmp_path: Path) -> None:
    rgba16 = np.random.default_rng(0).integers(0, 65536, (3, 5, 4), dtype=np.uint16)
    ok, buf = cv2.imencode(".png", rgba16[..., [2, 1, 0, 3]])
    assert ok
    plain = tmp_path / "plain.png"
    plain.write_bytes(buf.tobytes())
    rotated = tmp_path / "rotated.png"
    # Splice an eXIf chunk with Orientation 8 into the OpenCV-written file.
    chunk = rio.png._png_metadata_chunks(None, exif_bytes(8))
    png = buf.tobytes()
    end = 8 + 8 + struct.unpack(">I", png[8:12])[0] + 4  # after IHDR (the first chunk)
    rotated.write_bytes(png[:end] + b"".join(chunk) + png[end:])
    src = load_image(rotated)
    assert src.bit_depth == 16 and src.size == (3, 5)
    np.testing.assert_array_equal(as_uint16(src.pixels), np.rot90(rgba16[..., :3], 1))
    np.testing.assert_array_equal(src.alpha, np.rot90(rgba16[..., 3], 1))


def test_icc_profile_kept(corpus, tmp_path: Path) -> None:
    icc = srgb_icc()
    src = load_image(corpus["jpeg_icc"])
    assert src.icc_profile == icc
    for fmt in ("png", "jpeg", "webp", "tiff"):
        out = save_like(tmp_path / f"icc.{fmt}", src.pixels, src, fmt=fmt)
        with Image.open(out) as im:
            assert im.info.get("icc_profile") == icc, fmt


def test_cmyk_plain_conversion(corpus) -> None:
    src = load_image(corpus["jpeg_cmyk"])
    assert src.mode == "RGB" and src.icc_profile is None
    assert src.converted_from == "CMYK"  # the app's Info said only "Colour: RGB"
    assert load_image(corpus["jpeg_icc"]).converted_from is None
    r, g, b = as_uint8(src.pixels)[4, 4].astype(int)
    assert r < 10 and g > 245 and b > 245  # cyan
    # Said, for the app's Info panel and the report: the output is RGB, not CMYK.
    assert src.warnings == ["a CMYK image, enhanced and written as RGB (a plain conversion: "
                            "it embeds no usable CMYK profile)"]


def test_cmyk_with_profile_is_colour_managed(corpus, tmp_path: Path, monkeypatch) -> None:
    # No CMYK profile ships with Pillow, so check the wiring with a stand-in transform.
    calls = []

    def fake_profile_to_profile(im, src, dst, **kwargs):
        calls.append(kwargs)
        return Image.new("RGB", im.size, (1, 2, 3))

    monkeypatch.setattr(ImageCms, "profileToProfile", fake_profile_to_profile)
    path = tmp_path / "cmyk_icc.jpg"
    with Image.open(corpus["jpeg_cmyk"]) as im:
        im.save(path, "JPEG", icc_profile=srgb_icc())
    src = load_image(path)
    assert calls and calls[0]["outputMode"] == "RGB"
    assert src.mode == "RGB"
    assert same_icc(src.icc_profile, srgb_icc())  # output carries sRGB after a managed conversion
    np.testing.assert_array_equal(as_uint8(src.pixels)[0, 0], [1, 2, 3])
    assert src.warnings == ["a CMYK image, enhanced and written as RGB (converted to sRGB "
                            "through its embedded CMYK profile)"]


def test_cmyk_with_unusable_profile_falls_back(corpus, tmp_path: Path, caplog) -> None:
    path = tmp_path / "cmyk_bad_icc.jpg"
    with Image.open(corpus["jpeg_cmyk"]) as im:
        im.save(path, "JPEG", icc_profile=srgb_icc())  # an RGB profile on CMYK data
    with caplog.at_level(logging.WARNING, logger="rbqe.io"):
        src = load_image(path)
    assert "plain conversion" in caplog.text
    assert src.mode == "RGB" and src.icc_profile is None
    # ... and with the image, for a batch's report (it was on stderr only).
    warning, note = src.warnings
    assert warning.startswith("could not use the embedded CMYK profile")
    assert note.startswith("a CMYK image, enhanced and written as RGB (a plain conversion")


def test_rgba_alpha_bit_exact(corpus, tmp_path: Path) -> None:
    with Image.open(corpus["png_rgba"]) as im:
        original = np.asarray(im)
    src = load_image(corpus["png_rgba"])
    assert src.mode == "RGBA" and src.alpha.dtype == np.uint8
    np.testing.assert_array_equal(src.alpha, original[..., 3])
    # Even with processed colours the alpha must come back untouched.
    processed = np.clip(src.pixels * 0.9 + 0.05, 0, 1)
    out = save_like(tmp_path / "rgba.png", processed, src)
    with Image.open(out) as im:
        assert im.mode == "RGBA"
        np.testing.assert_array_equal(np.asarray(im)[..., 3], original[..., 3])
    out = save_like(tmp_path / "rgba.webp", processed, src)
    with Image.open(out) as im:
        assert im.mode == "RGBA"


def test_la_and_gray_keep_their_mode(corpus, tmp_path: Path) -> None:
    with Image.open(corpus["png_la"]) as im:
        original = np.asarray(im)
    src = load_image(corpus["png_la"])
    assert src.mode == "LA" and src.pixels.shape[2] == 1
    out = save_like(tmp_path / "la.png", src.pixels, src)
    with Image.open(out) as im:
        assert im.mode == "LA"
        np.testing.assert_array_equal(np.asarray(im), original)
    gray = load_image(corpus["png_gray"])
    # A model working in RGB hands back 3 channels; the output must still be grey.
    out = save_like(tmp_path / "gray.png", np.repeat(gray.pixels, 3, axis=2), gray)
    with Image.open(out) as im:
        assert im.mode == "L"
    np.testing.assert_array_equal(load_image(out).pixels, gray.pixels)


def test_palette_images(corpus) -> None:
    for name in ("gif_palette", "png_palette_trns"):
        src = load_image(corpus[name])
        assert src.mode == "RGBA", name
        # Index 1 (red) is the transparent one; pixels cycle 0,1,2,3 row-major.
        flat_alpha = src.alpha.reshape(-1)
        assert flat_alpha[1] == 0 and flat_alpha[0] == 255 and flat_alpha[2] == 255, name
        np.testing.assert_array_equal(as_uint8(src.pixels).reshape(-1, 3)[2], [0, 255, 0])
    assert load_image(corpus["png_palette"]).mode == "RGB"
    bw = load_image(corpus["png_1bit"])
    assert bw.mode == "L" and set(np.unique(as_uint8(bw.pixels))) <= {0, 255}


def test_16bit_gray_survives(corpus, tmp_path: Path) -> None:
    for name in ("png_gray16", "tiff_gray16"):
        with Image.open(corpus[name]) as im:
            original = np.asarray(im).astype(np.uint16)
        assert np.any(original % 257)  # values that 8 bit cannot represent
        src = load_image(corpus[name])
        assert src.mode == "L" and src.bit_depth == 16
        np.testing.assert_array_equal(as_uint16(src.pixels)[..., 0], original)
        for fmt in ("png", "tiff"):
            out = save_like(tmp_path / f"{name}.{fmt}", src.pixels, src, fmt=fmt)
            with Image.open(out) as im:
                assert im.mode.startswith("I;16"), (name, fmt)
                np.testing.assert_array_equal(np.asarray(im).astype(np.uint16), original)


@pytest.mark.parametrize("name", ["png_rgb16", "tiff_rgb16", "png_rgba16"])
def test_16bit_colour_survives(corpus, tmp_path: Path, name: str) -> None:
    raw = cv2.imread(str(corpus[name]), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16
    rgb = raw[..., 2::-1]
    src = load_image(corpus[name])
    assert src.bit_depth == 16
    np.testing.assert_array_equal(as_uint16(src.pixels), rgb)
    if raw.shape[2] == 4:
        assert src.mode == "RGBA" and src.alpha.dtype == np.uint16
        np.testing.assert_array_equal(src.alpha, raw[..., 3])
    for fmt in ("png", "tiff"):
        out = save_like(tmp_path / f"{name}.{fmt}", src.pixels, src, fmt=fmt)
        back = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
        assert back.dtype == np.uint16, fmt
        np.testing.assert_array_equal(back, raw)


def test_16bit_gray_alpha_png(corpus, tmp_path: Path) -> None:
    src = load_image(corpus["png_la16"])
    assert src.mode == "LA" and src.bit_depth == 16 and src.alpha.dtype == np.uint16
    out = save_like(tmp_path / "la16.png", src.pixels, src)
    data = out.read_bytes()
    assert data[24] == 16 and data[25] == 4  # IHDR: 16-bit grey+alpha
    back = load_image(out)
    np.testing.assert_array_equal(back.pixels, src.pixels)
    np.testing.assert_array_equal(back.alpha, src.alpha)


def test_16bit_png_keeps_metadata(tmp_path: Path) -> None:
    pixels = np.random.default_rng(1).random((4, 6, 3), dtype=np.float32)
    out = save_image(
        tmp_path / "meta16.png",
        pixels,
        bit_depth=16,
        icc_profile=srgb_icc(),
        exif=exif_bytes(6),
    )
    with Image.open(out) as im:
        assert im.info.get("icc_profile") == srgb_icc()
        exif = im.getexif()
        assert exif[0x0112] == 1 and exif[0x010F] == MAKE
    back = load_image(out)
    assert back.bit_depth == 16 and back.size == (6, 4)  # not rotated: orientation is 1
    np.testing.assert_array_equal(as_uint16(back.pixels), as_uint16(pixels))


def test_16bit_to_8bit_formats_round(corpus, tmp_path: Path) -> None:
    src = load_image(corpus["png_rgb16"])
    out = save_like(tmp_path / "rgb16.bmp", src.pixels, src)
    with Image.open(out) as im:
        np.testing.assert_array_equal(np.asarray(im), as_uint8(src.pixels))


@pytest.mark.parametrize("name", ["png_1x1", "png_7x9", "jpeg_8x8", "jpeg_1x1"])
def test_tiny_sizes(corpus, name: str) -> None:
    with Image.open(corpus[name]) as im:
        expected = np.asarray(im.convert("RGB"))
    src = load_image(corpus[name])
    assert src.size == (expected.shape[1], expected.shape[0])
    np.testing.assert_array_equal(as_uint8(src.pixels), expected)


@pytest.mark.parametrize("fmt", ["webp", "bmp", "tiff"])
def test_other_formats_round_trip(corpus, tmp_path: Path, fmt: str) -> None:
    src = load_image(corpus[fmt])
    assert src.format == {"webp": "WEBP", "bmp": "BMP", "tiff": "TIFF"}[fmt]
    out = save_like(tmp_path / f"out.{fmt}", src.pixels, src, quality=95)
    back = load_image(out)
    assert back.format == src.format and back.mode == "RGB"
    diff = np.abs(back.pixels - src.pixels)
    if fmt == "webp":
        assert float(diff.mean()) < 0.03  # lossy
    else:
        assert float(diff.max()) == 0.0


def test_decompression_bomb_checked_from_header(corpus, tmp_path: Path) -> None:
    # 100 MP is under the default limit: the bomb check passes, and the size check refuses
    # a header that 16 bytes of pixel data cannot fill, before anything is allocated.
    with pytest.raises(ImageReadError) as info:
        load_image(corpus["header_100mp"])
    assert info.value.reason == ("truncated or corrupt image data (header declares "
                                 "10000 x 10000 but the file holds only 16 bytes of pixel data)")
    # A limit lower than a real image.
    with pytest.raises(ImageReadError) as info:
        load_image(corpus["png_7x9"], max_pixels=50)
    assert info.value.reason == (
        "image is 7 x 9 = 0.000063 megapixels, over the limit of 0.00005 megapixels "
        "(raise with --max-pixels)"
    )
    # The limit is configurable both ways.
    with pytest.raises(ImageReadError, match="truncated or corrupt"):
        load_image(corpus["bomb"], max_pixels=None)
    assert load_image(corpus["png_7x9"], max_pixels=63).size == (7, 9)
    assert DEFAULT_MAX_PIXELS == 200_000_000


def test_pillow_globals_cannot_weaken_checks(corpus, monkeypatch) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)
    with pytest.raises(ImageReadError, match="truncated or corrupt"):
        load_image(corpus["jpeg_truncated"])
    # Pillow's own (tiny) bomb limit would raise/warn; our limit is the one that counts.
    assert load_image(corpus["png_7x9"]).size == (7, 9)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored afterwards
    assert Image.MAX_IMAGE_PIXELS == 10


def _pictures(count: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
            for _ in range(count)]


@pytest.mark.parametrize(("name", "expected"), [
    ("pages.tif", "only the first of 3 pages is enhanced (multi-page TIFF); "
                  "the output has that page only"),
    ("anim.gif", "only the first of 3 frames is enhanced (animated GIF); "
                 "the output has that frame only"),
    ("anim.webp", "only the first of 3 frames is enhanced (animated WebP); "
                  "the output has that frame only"),
])
def test_multi_frame_input_warns_that_only_the_first_is_read(
        tmp_path: Path, caplog, name: str, expected: str) -> None:
    first, *rest = _pictures(3)
    path = tmp_path / name
    first.save(path, save_all=True, append_images=rest)
    with caplog.at_level(logging.WARNING, logger="rbqe.io"):
        src = load_image(path)
    assert src.warnings == [expected]
    assert [r.getMessage() for r in caplog.records] == [f"{path}: {expected}"]
    assert src.size == (32, 24)


def test_phone_mpo_and_single_frames_do_not_warn(tmp_path: Path, caplog) -> None:
    first, depth_map = _pictures(2)
    first.save(tmp_path / "phone.jpg", "MPO", save_all=True, append_images=[depth_map])
    first.save(tmp_path / "plain.jpg")
    first.save(tmp_path / "still.gif")
    with Image.open(tmp_path / "phone.jpg") as im:
        assert im.format == "MPO" and im.n_frames == 2
    with caplog.at_level(logging.WARNING, logger="rbqe.io"):
        for name in ("phone.jpg", "plain.jpg", "still.gif"):
            assert load_image(tmp_path / name).warnings == []
    assert not caplog.records


def _jpeg_bytes(**options) -> bytes:
    buf = io.BytesIO()
    _pictures(1)[0].resize((64, 48)).save(buf, "JPEG", quality=85, **options)
    assert buf.getvalue().endswith(b"\xff\xd9")
    return buf.getvalue()


@pytest.mark.parametrize("options", [{}, {"progressive": True}])
def test_jpeg_missing_only_its_end_marker_loads(tmp_path: Path, options) -> None:
    data = _jpeg_bytes(**options)
    (tmp_path / "full.jpg").write_bytes(data)
    (tmp_path / "no_eoi.jpg").write_bytes(data[:-2])
    full, recovered = load_image(tmp_path / "full.jpg"), load_image(tmp_path / "no_eoi.jpg")
    np.testing.assert_array_equal(recovered.pixels, full.pixels)
    assert recovered.jpeg_quality == full.jpeg_quality == 85


def _last_scan(data: bytes) -> int:
    """Where a progressive JPEG's last scan header (FF DA) begins."""
    return data.rindex(b"\xff\xda")


@pytest.mark.parametrize(("cut", "options"), [
    (lambda d: len(d) // 2, {}),  # half the scan data gone
    (lambda d: len(d) - 3, {}),  # the end marker and the last byte of scan data
    # Progressive: a file cut between two scans decodes without a warning (a blurrier
    # picture), so the scan headers must show every scan there.
    (lambda d: _last_scan(d), {"progressive": True}),  # the last scan gone, header and all
    (lambda d: _last_scan(d) + 20, {"progressive": True}),  # cut early in its data
    (lambda d: len(d) - 3, {"progressive": True}),  # cut inside the last scan's data
    (lambda d: len(d) // 2, {"progressive": True}),
])
def test_jpeg_cut_inside_its_scan_data_is_still_refused(tmp_path: Path, cut, options) -> None:
    data = _jpeg_bytes(**options)
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: cut(data)])
    with pytest.raises(ImageReadError) as info:
        load_image(path)
    assert info.value.reason == "truncated or corrupt image data"


def test_an_arithmetic_coded_jpeg_is_not_given_an_end_marker(tmp_path: Path) -> None:
    # libjpeg's arithmetic decoder fills a cut scan with zeros without a warning, so a
    # missing end marker cannot be told from lost data there: such a file is refused.
    data = bytearray(_jpeg_bytes()[:-2])
    sof = data.index(b"\xff\xc0")
    data[sof + 1] = 0xC9  # the same frame, marked as arithmetic-coded
    path = tmp_path / "arith.jpg"
    path.write_bytes(bytes(data))
    assert rio.jpeg_data._frame_marker(path) == 0xC9
    assert not rio.jpeg_data.jpeg_lacks_only_eoi(path)


@pytest.mark.skipif(shutil.which("cjpeg") is None, reason="needs libjpeg's cjpeg")
@pytest.mark.parametrize("progressive", [False, True])
def test_a_cut_arithmetic_coded_jpeg_is_refused(tmp_path: Path, progressive: bool) -> None:
    ppm = tmp_path / "in.ppm"
    _pictures(1)[0].resize((64, 48)).save(ppm)
    args = ["cjpeg", "-arithmetic", *(["-progressive"] if progressive else []), str(ppm)]
    data = subprocess.run(args, check=True, capture_output=True).stdout
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) * 4 // 5])
    with pytest.raises(ImageReadError):
        load_image(path)


def test_heic_without_plugin_gives_install_hint(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(rio.read, "HEIF_AVAILABLE", False)
    path = tmp_path / "phone.heic"
    path.write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64)
    with pytest.raises(ImageReadError) as info:
        load_image(path)
    assert info.value.reason == "HEIC support is not installed (pip install 'rbqe-studio[heif]')"


def test_corrupt_exif_does_not_block_loading(tmp_path: Path) -> None:
    path = tmp_path / "bad_exif.jpg"
    Image.new("RGB", (4, 4), (10, 20, 30)).save(path, exif=b"Exif\x00\x00MM\x00*garbage")
    src = load_image(path)
    assert src.size == (4, 4)


def test_jpeg_quality_estimate(tmp_path: Path) -> None:
    for q in (10, 35, 50, 75, 90, 97, 100):
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), (100, 50, 25)).save(buf, "JPEG", quality=q)
        buf.seek(0)
        with Image.open(buf) as im:
            assert estimate_jpeg_quality(im) == q
    png = tmp_path / "x.png"
    Image.new("RGB", (2, 2)).save(png)
    with Image.open(png) as im:
        assert estimate_jpeg_quality(im) is None
    assert load_image(png).jpeg_quality is None


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------


def test_quantisation_rounds_half_up_and_clips(tmp_path: Path) -> None:
    values = np.array([[0.0, 0.5 / 255, 0.499 / 255, 1.0, 1.7, -0.3, np.nan, 128.5 / 255]])
    out = save_image(tmp_path / "q.png", values.astype(np.float32), mode="L")
    with Image.open(out) as im:
        assert np.asarray(im).tolist() == [[0, 1, 0, 255, 255, 0, 0, 129]]
    out = save_image(tmp_path / "q16.png", np.array([[0.5 / 65535, 1.0]]), mode="L", bit_depth=16)
    with Image.open(out) as im:
        assert np.asarray(im).astype(int).tolist() == [[1, 65535]]


def test_jpeg_fills_transparency_with_white_with_warning(corpus, tmp_path: Path, caplog) -> None:
    src = load_image(corpus["png_rgba"])
    with caplog.at_level(logging.WARNING, logger="rbqe.io"):
        out = save_like(tmp_path / "flat.jpg", src.pixels, src)
    assert "the transparent parts are filled with white" in caplog.text
    with Image.open(out) as im:
        assert im.format == "JPEG" and im.mode == "RGB"


def test_keep_metadata_false_drops_exif_keeps_icc(corpus, tmp_path: Path) -> None:
    src = load_image(corpus["jpeg_exif_rot6"])
    src.icc_profile = srgb_icc()
    out = save_like(tmp_path / "private.jpg", src.pixels, src, keep_metadata=False)
    with Image.open(out) as im:
        assert "exif" not in im.info
        assert im.info.get("icc_profile") == srgb_icc()


def test_atomic_write_failure_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    def broken_encoder(im, fp, filename):
        fp.write(b"\x89PNG half of it")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setitem(Image.SAVE, "PNG", broken_encoder)
    out_dir = tmp_path / "out"
    target = out_dir / "x.png"
    with pytest.raises(ImageWriteError) as info:
        save_image(target, np.zeros((4, 4, 3), np.float32))
    assert info.value.reason == "disk full"
    assert listing(out_dir) == []  # neither the final file nor a .part leftover

    # An existing output is left intact when its replacement fails.
    target.write_bytes(b"previous result")
    with pytest.raises(ImageWriteError):
        save_image(target, np.zeros((4, 4, 3), np.float32))
    assert target.read_bytes() == b"previous result"
    assert listing(out_dir) == ["x.png"]


def test_atomic_write_failure_other_exceptions(tmp_path: Path, monkeypatch) -> None:
    def boom(*args):
        raise RuntimeError("encoder exploded")

    monkeypatch.setattr(rio.write, "_write_png_stream", boom)  # 16-bit colour's encoder
    with pytest.raises(ImageWriteError, match="could not encode PNG: encoder exploded"):
        save_image(tmp_path / "x16.png", np.zeros((2, 2, 3)), bit_depth=16)
    assert listing(tmp_path) == []

    def interrupted(im, fp, filename):
        fp.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setitem(Image.SAVE, "PNG", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_image(tmp_path / "x.png", np.zeros((2, 2, 3)))
    assert listing(tmp_path) == []


def test_successful_write_has_normal_permissions(tmp_path: Path) -> None:
    out = save_image(tmp_path / "sub" / "dir" / "ok.png", np.zeros((2, 2, 3)))
    assert out.is_file() and listing(out.parent) == ["ok.png"]
    if os.name == "posix":
        assert out.stat().st_mode & 0o777 != 0o600  # not the temp file's private mode


def test_refuses_to_overwrite_inputs(corpus, tmp_path: Path) -> None:
    path = corpus["png_gray"]
    src = load_image(path)
    with pytest.raises(ImageWriteError) as info:
        save_like(path, src.pixels, src)
    assert info.value.reason == "refusing to overwrite an input file"
    with pytest.raises(ImageWriteError):
        save_image(path, src.pixels, mode="L", protect=[path])
    link = tmp_path / "link.png"
    link.symlink_to(path)
    with pytest.raises(ImageWriteError):
        save_image(link, src.pixels, mode="L", protect=[path])
    hard = tmp_path / "hard.png"
    os.link(path, hard)
    with pytest.raises(ImageWriteError):
        save_image(hard, src.pixels, mode="L", protect=[path])
    # (the corpus fixture verifies the input bytes are unchanged)


def test_write_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ImageWriteError, match="unsupported output format"):
        save_image(tmp_path / "x.gif", np.zeros((2, 2, 3)))
    (tmp_path / "d.png").mkdir()
    with pytest.raises(ImageWriteError, match="is a directory"):
        save_image(tmp_path / "d.png", np.zeros((2, 2, 3)))
    with pytest.raises(ImageWriteError, match="needs an alpha channel"):
        save_image(tmp_path / "a.png", np.zeros((2, 2, 3)), mode="RGBA")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ImageWriteError, match="cannot create output folder"):
        save_image(blocker / "x.png", np.zeros((2, 2, 3)))
    with pytest.raises(ValueError):
        save_image(tmp_path / "x.png", np.zeros((2, 2, 3)), mode="CMYK")


# --------------------------------------------------------------------------------------
# Naming and scanning
# --------------------------------------------------------------------------------------


def test_output_path_for(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert output_path_for("in/photo.jpg", out) == out / "photo.png"
    assert output_path_for("in/photo.jpg", out, suffix="_rbqe") == out / "photo_rbqe.png"
    assert output_path_for("photo.jpg", out, exit_tag="exit3") == out / "photo.exit3.png"
    assert output_path_for("photo.jpg", out, fmt="jpeg") == out / "photo.jpg"
    assert output_path_for("photo.JPG", out, fmt=None) == out / "photo.jpg"
    nested = Path("in/2024/trip/photo.jpg")
    assert output_path_for(nested, out, input_root="in") == out / "2024" / "trip" / "photo.png"
    with pytest.raises(ValueError):
        output_path_for("photo.jpg", out, exit_tag="../x")


def test_plan_outputs_resolves_collisions(tmp_path: Path) -> None:
    out = tmp_path / "out"
    inputs = [(Path("in/b.jpg"), None), (Path("in/a.png"), None), (Path("in/a.jpg"), None)]
    plan = plan_outputs(inputs, out)
    assert plan[Path("in/a.jpg")][None] == out / "a_jpg.png"
    assert plan[Path("in/a.png")][None] == out / "a_png.png"
    assert plan[Path("in/b.jpg")][None] == out / "b.png"
    # Deterministic whatever the input order.
    assert plan_outputs(list(reversed(inputs)), out) == plan
    tagged = plan_outputs(inputs, out, exit_tags=(None, "exit1", "exit3"), suffix="_x")
    assert tagged[Path("in/a.jpg")]["exit3"] == out / "a_jpg_x.exit3.png"
    assert tagged[Path("in/b.jpg")]["exit1"] == out / "b_x.exit1.png"
    # Names differing only in case collide on macOS/Windows.
    plan = plan_outputs([(Path("A.JPG"), None), (Path("a.png"), None)], out)
    assert {p[None].name for p in plan.values()} == {"A_jpg.png", "a_png.png"}
    # Same stem and extension from two folders: a counter keeps them apart.
    plan = plan_outputs([(Path("x/p.jpg"), Path("x")), (Path("y/p.jpg"), Path("y"))], out)
    assert sorted(p[None].name for p in plan.values()) == ["p_jpg.png", "p_jpg_2.png"]
    all_paths = [q for per in plan.values() for q in per.values()]
    assert len(set(all_paths)) == len(all_paths)


def test_plan_outputs_never_targets_an_input(tmp_path: Path, caplog) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    photo = folder / "c.png"
    Image.new("RGB", (2, 2)).save(photo)
    with caplog.at_level(logging.WARNING, logger="rbqe.io"):
        plan = plan_outputs([(photo, folder)], folder)
    assert plan[photo][None] == folder / "c_rbqe.png"
    assert "_rbqe" in caplog.text
    # Recursive layout is kept.
    sub = folder / "sub"
    sub.mkdir()
    nested = sub / "d.jpg"
    plan = plan_outputs([(nested, folder)], tmp_path / "out")
    assert plan[nested][None] == tmp_path / "out" / "sub" / "d.png"


# -- path identity ----------------------------------------------------------------------------
def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_a_file_and_a_link_to_it_are_listed_once_under_the_files_name(tmp_path: Path) -> None:
    # The link used to win when it sorted first: photo.jpg vanished from the batch, and
    # its output was named after a link the user may delete.
    photo = _touch(tmp_path / "photo.jpg")
    (tmp_path / "a_link.jpg").symlink_to(photo.name)
    assert [f for f, _ in list_images([tmp_path])] == [photo]
    assert [f for f, _ in list_images([tmp_path / "a_link.jpg", photo])] == [photo]
    # A link alone stands for its file.
    assert [f for f, _ in list_images([tmp_path / "a_link.jpg"])] == [tmp_path / "a_link.jpg"]


def test_path_key_follows_symlinks(tmp_path: Path, monkeypatch) -> None:
    photo = _touch(tmp_path / "real" / "Photo.jpg")
    (tmp_path / "link.jpg").symlink_to(photo)
    (tmp_path / "linked").symlink_to(tmp_path / "real", target_is_directory=True)
    same = [photo, tmp_path / "link.jpg", tmp_path / "linked" / "Photo.jpg",
            tmp_path / "real" / ".." / "real" / "Photo.jpg"]
    assert len({path_key(p) for p in same}) == 1
    monkeypatch.chdir(tmp_path)
    assert path_key("real/Photo.jpg") == path_key(photo)
    assert path_key(tmp_path / "linked") == path_key(tmp_path / "real")
    assert path_key(tmp_path / "real" / "missing.jpg") != path_key(photo)


def test_path_key_keeps_case_apart_where_the_file_system_does(tmp_path: Path) -> None:
    from rbqe.io.identity import folds_case

    lower = _touch(tmp_path / "sensitive" / "photo.jpg")
    upper = tmp_path / "sensitive" / "PHOTO.jpg"
    if folds_case(lower.parent):  # a case-insensitive temp folder (macOS, Windows)
        assert path_key(upper) == path_key(lower)
        return
    _touch(upper)
    assert lower.stat().st_ino != upper.stat().st_ino  # two files, as the test expects
    assert path_key(upper) != path_key(lower)
    assert {f.name for f, _ in list_images([lower.parent])} == {"photo.jpg", "PHOTO.jpg"}


def test_path_key_folds_case_where_the_file_system_does(tmp_path: Path) -> None:
    # A folder answers like a case-insensitive file system when the swapped-case name
    # finds the same file; here a symlink plays that part (no such mount in a test).
    from rbqe.io.identity import folds_case

    folder = tmp_path / "Insensitive"
    photo = _touch(folder / "photo.jpg")
    (folder / "PHOTO.JPG").symlink_to(photo)
    assert folds_case(folder)
    assert path_key(folder / "Photo.JPG") == path_key(photo)  # any case, one key
    assert path_key(folder / "new" / "A.png") == path_key(folder / "new" / "a.png")
    plain = _touch(tmp_path / "plain" / "photo.jpg").parent
    assert not folds_case(plain) or sys.platform in ("win32", "darwin")


def test_excluded_folder_differing_in_case_is_still_listed(tmp_path: Path) -> None:
    # Exclusion is identity: on a case-sensitive file system "Out" is not "out".
    from rbqe.io.identity import folds_case

    root = tmp_path / "in"
    Image.new("RGB", (8, 8)).save(_touch(root / "out" / "a.png"))
    Image.new("RGB", (8, 8)).save(_touch(root / "Out" / "b.png"))
    if folds_case(root):
        pytest.skip("a case-insensitive temp folder")
    listed = [f.name for f, _ in list_images([root], recursive=True, exclude=[root / "Out"])]
    assert listed == ["a.png"]
    assert lists_folder(root / "out", [root], recursive=True, exclude=[root / "Out"])
    assert not lists_folder(root / "Out", [root], recursive=True, exclude=[root / "Out"])


def test_list_images(corpus, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    sub = folder / "sub"
    sub.mkdir()
    Image.new("RGB", (2, 2)).save(sub / "nested.PNG")
    (folder / "._IMG_0001.JPG").write_bytes(b"\x00\x05\x16\x07 AppleDouble")  # macOS junk
    hidden = folder / ".cache"
    hidden.mkdir()
    Image.new("RGB", (2, 2)).save(hidden / "thumb.png")

    flat = list_images([folder])
    names = [f.name for f, _ in flat]
    assert "readme.txt" not in names and "._IMG_0001.JPG" not in names
    assert "nested.PNG" not in names and "thumb.png" not in names
    assert "rgba.png" in names and "notes.jpg" in names  # suffix says image: loader decides
    assert all(root == folder for _, root in flat)
    assert [f for f, _ in flat] == sorted((f for f, _ in flat), key=lambda p: str(p).casefold())

    deep = list_images([folder], recursive=True)
    assert (sub / "nested.PNG", folder) in deep
    assert len(deep) == len(flat) + 1
    assert list_images([folder], recursive=True) == deep  # deterministic
    assert list_images([folder], recursive=True, exclude=[sub]) == flat

    # Files named directly are always kept (with root None) so errors get reported.
    stray = corpus["stray_text"]
    mixed = list_images([stray, folder, corpus["png_gray"]])
    assert (stray, None) in mixed
    assert sum(1 for f, _ in mixed if f.name == "gray.png") == 1  # de-duplicated
    missing = tmp_path / "typo"
    assert list_images([missing]) == [(missing, None)]  # load_image says "file not found"


def test_noted_outputs_are_left_out_while_their_source_is_listed(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a.jpg", "a.png", "b.png", "loop1.png", "loop2.png", "orphan.png"):
        Image.new("RGB", (2, 2)).save(folder / name)
    record_output(folder / "a.png", folder / "a.jpg")
    record_output(folder / "b.png", folder / "a.png")  # an output of an output
    record_output(folder / "loop1.png", folder / "loop2.png")
    record_output(folder / "loop2.png", folder / "loop1.png")
    record_output(folder / "orphan.png", folder / "gone.jpg")
    record_output(folder / "a.png", folder / "a.jpg")  # again (--overwrite): harmless
    with open(folder / OUTPUT_LOG, "a", encoding="utf-8") as fh:
        fh.write('[1, 2]\n{"output": "a.jpg", "so')  # foreign and torn lines are ignored

    def names(*paths, **kw) -> list[str]:
        return [f.name for f, _ in list_images(paths, skip_outputs=True, **kw)]

    everything = ["a.jpg", "a.png", "b.png", "loop1.png", "loop2.png", "orphan.png"]
    assert [f.name for f, _ in list_images([folder])] == everything  # only when asked
    # a.png and b.png come from a.jpg; a loop or a lost source leaves files as inputs.
    assert names(folder) == ["a.jpg", "loop1.png", "loop2.png", "orphan.png"]
    # Also for files named directly (a shell wildcard), but only with their source.
    assert names(*(folder / n for n in everything)) == names(folder)
    assert names(folder / "a.png") == ["a.png"]
    # The note is relative: it still holds when the folder moves.
    moved = folder.rename(tmp_path / "moved")
    assert names(moved) == ["a.jpg", "loop1.png", "loop2.png", "orphan.png"]


def test_an_output_that_cannot_be_noted_is_an_error_its_retraction_best_effort(
        tmp_path: Path, caplog) -> None:
    # Unnoted, an output could not be told from a user's file on a re-run: the batch
    # must not write it (rbqe.batch turns the OSError into that image's failure).
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    with pytest.raises(OSError):
        record_output(blocked / "x.png", tmp_path / "x.jpg")
    with caplog.at_level(logging.WARNING, logger="rbqe.io"):
        retract_output(blocked / "x.png", tmp_path / "x.jpg", "a1b2")
    assert "cannot take back its note" in caplog.text


def test_lists_folder_follows_list_images(tmp_path: Path) -> None:
    src = tmp_path / "in"
    (src / "a" / "b").mkdir(parents=True)
    (src / ".hidden").mkdir()
    photo = src / "p.jpg"
    Image.new("RGB", (2, 2)).save(photo)
    assert lists_folder(src, [src])
    assert not lists_folder(src / "a", [src])
    assert lists_folder(src / "a" / "b", [src], recursive=True)
    assert lists_folder(src / "a" / "new", [src], recursive=True)  # not made yet
    assert not lists_folder(src / "a" / "b", [src], recursive=True, exclude=[src / "a"])
    assert not lists_folder(src / ".hidden", [src], recursive=True)
    assert not lists_folder(tmp_path, [src], recursive=True)
    assert not lists_folder(tmp_path / "in2", [src], recursive=True)
    assert lists_folder(src, [photo]) and not lists_folder(src / "a", [photo])


def test_rbqe_temp_files_are_never_inputs(tmp_path: Path, caplog) -> None:
    temp = tmp_path / ".rbqe-k2j_x9ab.part"
    Image.new("RGB", (2, 2)).save(temp, format="PNG")  # complete, yet unfinished business
    assert is_temp_file(temp) and is_temp_file(".rbqe-abc.part")
    for name in (OUTPUT_LOG, ".rbqe-.part", ".rbqe-x.part.bak", "rbqe-abc.part", ".abc.part",
                 ".rbqe-a b.part", ".rbqe-ABC.part"):
        assert not is_temp_file(name), name
    with caplog.at_level(logging.WARNING, logger="rbqe.io"):
        assert list_images([temp]) == []
    assert "unfinished rbqe output" in caplog.text
    assert list_images([tmp_path]) == []


def _age(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


def test_remove_stale_temps(tmp_path: Path) -> None:
    names = {"dead": ".rbqe-dead0001.part", "young": ".rbqe-young001.part",
             "live": ".rbqe-live0001.part", "report": ".rbqe-0report1.part",
             "other": ".other001.part", "dir": ".rbqe-folder01.part"}
    for key, name in names.items():
        if key == "dir":
            (tmp_path / name).mkdir()
        else:
            (tmp_path / name).write_bytes(b"partial")
        if key != "young":
            _age(tmp_path / name, STALE_TEMP_AGE_S + 60)
    link = tmp_path / ".rbqe-link0001.part"
    link.symlink_to(tmp_path / names["other"])
    _age(link, STALE_TEMP_AGE_S + 60)
    with open(tmp_path / names["live"], "rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        removed = remove_stale_temps(tmp_path)
    assert sorted(p.name for p in removed) == [names["report"], names["dead"]]
    assert listing(tmp_path) == sorted([names["young"], names["live"], names["other"],
                                        names["dir"], link.name])
    assert remove_stale_temps(tmp_path / "missing") == []
    # Without locks (Windows), age alone decides, with a longer wait.
    (tmp_path / names["dead"]).write_bytes(b"partial")
    _age(tmp_path / names["dead"], STALE_TEMP_AGE_S + 60)
    with mock.patch.object(rio.atomic, "fcntl", None):
        assert remove_stale_temps(tmp_path) == []
        _age(tmp_path / names["dead"], 3600)
        assert remove_stale_temps(tmp_path) == [tmp_path / names["dead"]]


def test_atomic_write_locks_its_temp_file(tmp_path: Path, monkeypatch) -> None:
    seen = []

    def encoder(im, fp, filename):
        seen.append(rio.atomic._writer_holds(Path(fp.name)))
        fp.write(b"\x89PNG not really")

    Image.init()  # else Pillow registers its own PNG encoder over ours on first use
    monkeypatch.setitem(Image.SAVE, "PNG", encoder)
    save_image(tmp_path / "x.png", np.zeros((2, 2, 3), np.float32))
    assert seen == [True]  # another run's cleanup would leave it alone
    assert listing(tmp_path) == ["x.png"]


def test_suffixes() -> None:
    for suffix in (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"):
        assert suffix in SUPPORTED_SUFFIXES
    assert is_image_file("a/B.JPEG") and is_image_file(Path("x.TiF"))
    assert not is_image_file("notes.txt") and not is_image_file("noext")
    assert (".heic" in SUPPORTED_SUFFIXES) == rio.HEIF_AVAILABLE


def test_fake_header_helper_is_consistent() -> None:
    data = png_with_fake_size(123, 456)
    with Image.open(io.BytesIO(data)) as im:
        assert im.size == (123, 456)


def test_a_lab_tiff_is_rgb_without_alpha_or_its_lab_profile(tmp_path: Path) -> None:
    rgb = np.random.default_rng(3).integers(0, 256, (8, 10, 3), dtype=np.uint8)
    to_lab = ImageCms.buildTransform(ImageCms.createProfile("sRGB"),
                                     ImageCms.createProfile("LAB"), "RGB", "LAB")
    lab = ImageCms.applyTransform(Image.fromarray(rgb), to_lab)
    path = tmp_path / "lab.tif"
    lab.save(path)
    src = load_image(path)
    assert src.mode == "RGB" and src.alpha is None and src.icc_profile is None
    assert np.abs(as_uint8(src.pixels).astype(int) - rgb).mean() < 4  # the colours kept


def test_a_12_bit_jpeg_is_said_to_be_12_bit(tmp_path: Path) -> None:
    # It was "truncated or corrupt image data", which sends a user looking for damage.
    buf = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 4] = 12  # the frame header's sample precision
    path = tmp_path / "twelve.jpg"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageReadError, match="12-bit JPEG .* is not supported"):
        load_image(path)


def test_jpeg_outputs_keep_full_colour_resolution_at_high_quality(tmp_path: Path) -> None:
    """Pillow's default 4:2:0 halved the colour of every JPEG output: a 4:4:4 photo's
    enhanced output came out worse than the file itself, even at quality 100."""
    from PIL.JpegImagePlugin import get_sampling

    rng = np.random.default_rng(4)
    pixels = rng.random((48, 64, 3))
    for quality, sampling in ((100, 0), (rio.write.JPEG_444_QUALITY, 0), (80, 2), (20, 2)):
        out = rio.save_image(tmp_path / f"q{quality}.jpg", pixels, quality=quality)
        with Image.open(out) as im:
            assert get_sampling(im) == sampling, quality  # 0: 4:4:4, 2: 4:2:0
    grey = rio.save_image(tmp_path / "grey.jpg", pixels[..., 0], mode="L", quality=95)
    with Image.open(grey) as im:
        assert im.mode == "L"


def test_a_16_bit_image_of_12_bits_or_fewer_is_said_to_be_nearly_black(tmp_path: Path
                                                                       ) -> None:
    """8- or 12-bit data in a 16-bit file (or a 32-bit TIFF of 0-255) was enhanced as a
    nearly black picture, its output damaged, with status ok and nothing said."""
    rng = np.random.default_rng(5)
    base = rng.random((40, 56, 3))
    for bits, warned in ((8, True), (12, True), (16, False)):
        path = tmp_path / f"rgb{bits}.png"
        cv2.imwrite(str(path), np.round(base * (2**bits - 1)).astype(np.uint16))
        loaded = rio.load_image(path)
        said = [w for w in loaded.warnings if "16-bit samples use only" in w]
        assert loaded.bit_depth == 16 and bool(said) == warned, bits
        if warned:
            assert said[0].startswith(f"its 16-bit samples use only {bits} bits")
    tif = tmp_path / "int32.tif"
    Image.fromarray(np.round(base[..., 0] * 255).astype(np.int32)).save(tif)
    assert any("use only 8 bits" in w for w in rio.load_image(tif).warnings)
    black = tmp_path / "black.png"  # all zeros: "1 bits" it said
    cv2.imwrite(str(black), np.zeros((8, 8, 3), np.uint16))
    assert any(w.startswith("its 16-bit samples use only 1 bit (the largest is 0 of")
               for w in rio.load_image(black).warnings)
