"""TIFF outputs keep a photo's EXIF (camera, date, location), and 16-bit colour TIFFs all of
its metadata (rbqe.io.tiff_tags): both were dropped, with a "not carried" warning."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms, TiffImagePlugin

import rbqe.io.write as rio_write
from rbqe.io import load_image, save_image, save_like
from rbqe.io.diagnostics import said_while
from rbqe.io.tiff_tags import add_tiff_tags

PIXELS = np.random.default_rng(3).integers(0, 256, (40, 56, 3), dtype=np.uint8)
IIM = b"\x1c\x02\x00\x00\x02\x00\x04" + b"\x1c\x02\x78\x00\x0bA harbour."


def camera_exif(orientation: int = 1) -> bytes:
    """EXIF as a camera writes it: IFD0 camera and credits, the Exif directory (exposure,
    capture date, a maker note) and the GPS directory."""
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Canon", "Canon EOS R5"
    exif[0x013B], exif[0x8298] = "Ann Archivist", "(c) 2024 Ann Archivist"
    exif[0x0112] = orientation
    exif[0x8769] = {0x9000: b"0231", 0x9003: "2024:05:01 10:11:12",
                    0x829A: TiffImagePlugin.IFDRational(1, 250), 0x8827: 400,
                    0x927C: b"\x01\x02maker-note\x00\xff"}
    exif[0x8825] = {0x0000: b"\x02\x03\x00\x00", 0x0001: "N",
                    0x0002: tuple(TiffImagePlugin.IFDRational(v) for v in (52, 22, 1))}
    return exif.tobytes()


def read_exif(path: Path) -> tuple[Image.Exif, dict, dict]:
    with Image.open(path) as im:
        exif = im.getexif()
        return exif, dict(exif.get_ifd(0x8769)), dict(exif.get_ifd(0x8825))


def assert_camera_data(path: Path) -> None:
    exif, sub, gps = read_exif(path)
    assert exif[0x010F] == "Canon" and exif[0x0110] == "Canon EOS R5"
    assert exif[0x013B] == "Ann Archivist" and exif[0x8298] == "(c) 2024 Ann Archivist"
    assert sub[0x9003] == "2024:05:01 10:11:12" and sub[0x829A] == 1 / 250
    assert sub[0x8827] == 400 and sub[0x927C] == b"\x01\x02maker-note\x00\xff"
    assert gps[0x0001] == "N" and [float(v) for v in gps[0x0002]] == [52, 22, 1]


def test_a_jpegs_camera_data_is_kept_in_a_tiff_output(tmp_path: Path) -> None:
    jpeg = tmp_path / "photo.jpg"
    Image.fromarray(PIXELS).save(jpeg, quality=92, exif=camera_exif())
    src = load_image(jpeg)
    out = tmp_path / "photo.tif"
    with said_while() as said:
        save_like(out, src.pixels, src)
    assert not said  # it said "EXIF (camera, date, location) ... not carried"
    assert_camera_data(out)
    with Image.open(out) as im:
        assert im.info["compression"] == "tiff_lzw"  # still compressed
        assert np.array_equal(np.asarray(im), np.asarray(Image.open(jpeg).convert("RGB")))
    again = load_image(out)  # and rbqe reads it back, pixels and EXIF
    assert np.array_equal(again.pixels, src.pixels) and again.exif is not None


def test_a_turned_photos_tiff_output_says_upright(tmp_path: Path) -> None:
    jpeg = tmp_path / "portrait.jpg"
    Image.fromarray(PIXELS).save(jpeg, quality=92, exif=camera_exif(orientation=6))
    src = load_image(jpeg)  # turned upright on reading
    save_like(tmp_path / "portrait.tif", src.pixels, src)
    exif, sub, _ = read_exif(tmp_path / "portrait.tif")
    assert exif.get(0x0112, 1) == 1 and sub[0x9003] == "2024:05:01 10:11:12"
    with Image.open(tmp_path / "portrait.tif") as im:
        assert im.size == (40, 56)


def test_a_16_bit_colour_tiff_keeps_all_its_metadata(tmp_path: Path) -> None:
    # OpenCV writes 16-bit colour TIFFs without metadata: the ICC profile (what the
    # colours mean), the credits and the resolution were dropped.
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    deep = PIXELS.astype(np.uint16) * 257
    out = tmp_path / "deep.tif"
    with said_while() as said:
        save_image(out, deep, bit_depth=16, icc_profile=icc, exif=camera_exif(),
                   xmp=b"<x:xmpmeta/>", dpi=(600, 600), iptc=IIM)
    assert not said
    assert_camera_data(out)
    src = load_image(out)
    assert src.bit_depth == 16 and np.array_equal(src.pixels * 65535, deep.astype(np.float32))
    assert src.icc_profile == icc and src.dpi == (600, 600)
    assert src.xmp == b"<x:xmpmeta/>" and src.iptc == IIM


def test_metadata_that_cannot_be_written_is_said_and_the_image_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(fh, tags) -> None:
        raise ValueError("not a classic TIFF")

    monkeypatch.setattr(rio_write, "add_tiff_tags", refuse)
    out = tmp_path / "out.tif"
    with said_while() as said:
        save_image(out, PIXELS, exif=camera_exif())
    assert said == [f"{out}: the input's metadata could not be written into this TIFF (not "
                    "a classic TIFF); copy it over if you need it"]
    assert np.array_equal(load_image(out).pixels * 255, PIXELS.astype(np.float32))


def test_tags_are_added_without_moving_the_pixels() -> None:
    # Many strips (their offsets in a table outside the directory): each still points at
    # its own data once the directory is written again at the end.
    tall = np.random.default_rng(5).integers(0, 256, (600, 128, 3), dtype=np.uint8)
    fh = io.BytesIO()
    Image.fromarray(tall).save(fh, "TIFF", compression="tiff_lzw")
    before = len(fh.getvalue())
    add_tiff_tags(fh, {0x013B: (2, "Ann")})
    fh.seek(0)
    with Image.open(fh) as im:
        assert len(im.tag_v2[273]) > 1 and im.tag_v2[0x013B] == "Ann"
        assert np.array_equal(np.asarray(im), tall)
    assert len(fh.getvalue()) - before < 1024


def test_a_big_tiff_is_refused() -> None:
    with pytest.raises(ValueError, match="classic"):
        add_tiff_tags(io.BytesIO(b"II+\x00\x08\x00\x00\x00" + bytes(16)), {0x013B: (2, "Ann")})


def test_text_types_and_the_other_tags_come_through_as_they_were(tmp_path: Path) -> None:
    """Rebuilt from values, non-ASCII credits came out "Zo?? ??ngstr??m", UNDEFINED tags
    (UserComment) became BYTE, a signed exposure compensation unsigned, and IFD0 tags
    beyond a short list (Windows' XPKeywords, HostComputer) and the Interoperability
    directory were dropped."""
    block = exif_block(
        {0x013B: (2, "Zoë Ångström".encode()), 0x8298: (2, "© 2024".encode()),
         0x013C: (2, b"darkroom"), 0x9C9E: (1, "harbour".encode("utf-16-le"))},
        {0x9286: (7, b"ASCII\x00\x00\x00a note"), 0x9204: (10, TiffImagePlugin.IFDRational(-1, 3))},
        {0x0001: (2, b"R98")})
    jpeg = tmp_path / "credits.jpg"
    Image.fromarray(PIXELS).save(jpeg, exif=block)
    src = load_image(jpeg)
    out = tmp_path / "credits.tif"
    save_like(out, src.pixels, src)
    with Image.open(out) as im:
        tags = im.tag_v2
        assert tags[0x013B].encode("latin-1").decode() == "Zoë Ångström"
        assert tags[0x8298].encode("latin-1").decode() == "© 2024"
        assert tags[0x013C] == "darkroom" and tags[0x9C9E] == "harbour".encode("utf-16-le")
        e = im.getexif()
        sub = e.get_ifd(0x8769)
        interop = e.get_ifd(0xA005)  # followed from the Exif directory's pointer
    assert sub[0x9286] == b"ASCII\x00\x00\x00a note" and float(sub[0x9204]) == pytest.approx(-1 / 3)
    assert interop == {0x0001: "R98"}


def exif_block(ifd0: dict, exif: dict, interop: dict) -> bytes:
    """Raw EXIF (``Exif\\0\\0`` + little-endian TIFF) with these typed tags: IFD0, the
    Exif directory, and its Interoperability directory (what cameras write)."""
    head = b"II*\x00" + struct.pack("<L", 8)

    def made(entries: dict, group: int | None = None) -> TiffImagePlugin.ImageFileDirectory_v2:
        d = TiffImagePlugin.ImageFileDirectory_v2(ifh=head, group=group)
        for tag, (typ, value) in entries.items():
            d.tagtype[tag] = typ
            d[tag] = value
        return d

    size0 = len(made({**ifd0, 0x8769: (4, 0)}).tobytes(8))
    exif_at = 8 + size0
    sizes = len(made({**exif, 0xA005: (4, 0)}, 0x8769).tobytes(exif_at))
    interop_at = exif_at + sizes
    return (b"Exif\x00\x00" + head + made({**ifd0, 0x8769: (4, exif_at)}).tobytes(8)
            + made({**exif, 0xA005: (4, interop_at)}, 0x8769).tobytes(exif_at)
            + made(interop, 0xA005).tobytes(interop_at))


def test_a_second_page_stays_linked() -> None:
    fh = io.BytesIO()
    pages = [Image.fromarray(PIXELS), Image.fromarray(PIXELS[::-1].copy())]
    pages[0].save(fh, "TIFF", save_all=True, append_images=pages[1:])
    add_tiff_tags(fh, {0x013B: (2, "Ann")})
    fh.seek(0)
    with Image.open(fh) as im:
        assert im.n_frames == 2 and im.tag_v2[0x013B] == "Ann"
        im.seek(1)
        assert np.array_equal(np.asarray(im), PIXELS[::-1])
