"""Captions and credits: IPTC-IIM (a JPEG's APP13, a TIFF's tag 33723, a PNG's "Raw
profile type iptc" text) carried into JPEG, TIFF and PNG outputs, PNG text fields into
PNG outputs, and what an output cannot hold said
in one line naming it; --strip-metadata drops both."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms, IptcImagePlugin, PngImagePlugin

from rbqe.batch import BatchOptions, run_batch
from rbqe.io import load_image, save_image, save_like
from rbqe.io.captions import MAX_TEXT_FIELDS, jpeg_app13, tiff_value_bytes
from rbqe.io.diagnostics import said_while
from tests.helpers import tiny_enhancer

CAPTION = "Hafen in Kiel, Möwe über dem Kai".encode()


def _dataset(record: int, number: int, data: bytes) -> bytes:
    return b"\x1c" + bytes([record, number]) + struct.pack(">H", len(data)) + data


IIM = b"".join([
    _dataset(1, 90, b"\x1b%G"),  # coded character set: UTF-8
    _dataset(2, 120, CAPTION),  # caption
    _dataset(2, 116, b"(c) 1931 Town Archive"),  # copyright notice
    _dataset(2, 25, b"harbour"),  # keywords, repeated
    _dataset(2, 25, "Möwe".encode()),
])
RECORDS = {(1, 90): b"\x1b%G", (2, 120): CAPTION, (2, 116): b"(c) 1931 Town Archive",
           (2, 25): [b"harbour", "Möwe".encode()]}
PIXELS = np.random.default_rng(0).integers(0, 256, (16, 24, 3), dtype=np.uint8)


def _jpeg_with_iim(path: Path, iim: bytes = IIM, **save: object) -> Path:
    """A JPEG whose APP13 Photoshop segment, spliced in by hand, holds ``iim``."""
    buf = io.BytesIO()
    Image.fromarray(PIXELS).save(buf, "JPEG", **save)
    block = b"8BIM\x04\x04\x00\x00" + struct.pack(">I", len(iim)) + iim + b"\x00" * (len(iim) % 2)
    body = b"Photoshop 3.0\x00" + block
    data = buf.getvalue()
    path.write_bytes(data[:2] + b"\xff\xed" + struct.pack(">H", len(body) + 2) + body + data[2:])
    return path


def _tiff_with_iim(path: Path, iim: bytes = IIM) -> Path:
    Image.fromarray(PIXELS).save(path, "TIFF", tiffinfo={33723: iim})
    return path


def _iptc(path: Path) -> dict | None:
    with Image.open(path) as im:
        return IptcImagePlugin.getiptcinfo(im)


_MAKERS = {"jpg": _jpeg_with_iim, "tif": _tiff_with_iim}


@pytest.mark.parametrize("src_ext", ["jpg", "tif"])
@pytest.mark.parametrize("out_ext", ["jpg", "tif"])
def test_iim_is_carried_between_jpeg_and_tiff(tmp_path: Path, src_ext: str,
                                              out_ext: str) -> None:
    path = _MAKERS[src_ext](tmp_path / f"in.{src_ext}")
    assert _iptc(path) == RECORDS
    src = load_image(path)
    with said_while() as said:
        save_like(tmp_path / f"out.{out_ext}", src.pixels, src)
    assert _iptc(tmp_path / f"out.{out_ext}") == RECORDS
    assert not [w for w in said if "IPTC" in w]
    with said_while() as said:
        save_like(tmp_path / f"bare.{out_ext}", src.pixels, src, keep_metadata=False)
    assert _iptc(tmp_path / f"bare.{out_ext}") is None
    assert not said  # dropped as asked: nothing to warn of


def test_iim_goes_with_exif_icc_xmp_and_the_comment(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x010F] = "Plate camera"  # Make
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    xmp = b"<x:xmpmeta xmlns:x='adobe:ns:meta/'/>"
    path = _jpeg_with_iim(tmp_path / "in.jpg", exif=exif.tobytes(), icc_profile=icc, xmp=xmp,
                          comment=b"glass plate 17")
    src = load_image(path)
    save_like(tmp_path / "out.jpg", src.pixels, src)
    with Image.open(tmp_path / "out.jpg") as im:
        assert IptcImagePlugin.getiptcinfo(im) == RECORDS
        assert im.info["icc_profile"] == icc
        assert im.info["xmp"] == xmp
        assert im.info["comment"] == b"glass plate 17"
        assert im.getexif()[0x010F] == "Plate camera"


def test_a_tiff_tag_photoshop_declares_long_is_read_whole(tmp_path: Path) -> None:
    iim = IIM + b"\x00" * (-len(IIM) % 4)  # Photoshop pads it to whole LONGs
    path = _tiff_with_iim(tmp_path / "long.tif", iim)
    data = bytearray(path.read_bytes())
    ifd = struct.unpack_from("<I", data, 4)[0]
    for i in range(struct.unpack_from("<H", data, ifd)[0]):
        entry = ifd + 2 + 12 * i
        if struct.unpack_from("<H", data, entry)[0] == 33723:
            struct.pack_into("<HI", data, entry + 2, 4, len(iim) // 4)  # LONG, count
    path.write_bytes(bytes(data))
    src = load_image(path)
    assert src.iptc == iim
    save_like(tmp_path / "out.jpg", src.pixels, src)
    assert _iptc(tmp_path / "out.jpg") == RECORDS


def test_tiff_tag_values_become_the_bytes_the_file_held() -> None:
    data = b"\x1c\x02\x74\x00\x03abc"
    assert tiff_value_bytes(data, 7, b"II") == data
    padded = data + b"d\x00\x00\x00"  # 12 bytes: three LONGs
    longs_le = struct.unpack("<3L", padded)
    assert tiff_value_bytes(longs_le, 4, b"II") == padded
    assert tiff_value_bytes(struct.unpack(">3L", padded), 4, b"MM") == padded
    assert tiff_value_bytes(struct.unpack(">6H", padded), 3, b"MM") == padded
    assert tiff_value_bytes(tuple(padded), 1, b"MM") == padded
    assert tiff_value_bytes(longs_le[0], 4, b"II") is None  # Pillow kept the first only


def test_jpeg_app13_block_layout() -> None:
    odd = IIM + b"x" if len(IIM) % 2 == 0 else IIM
    segment = jpeg_app13(odd)
    assert segment is not None
    assert segment[:2] == b"\xff\xed"
    assert struct.unpack(">H", segment[2:4])[0] == len(segment) - 2
    body = segment[4:]
    assert body.startswith(b"Photoshop 3.0\x00" + b"8BIM\x04\x04\x00\x00")
    assert struct.unpack(">I", body[22:26])[0] == len(odd)  # the size leaves the pad out
    assert body[26:] == odd + b"\x00"
    assert jpeg_app13(b"\x1c" * 65534) is None


def test_iim_too_large_for_a_jpeg_segment_is_dropped_and_said(tmp_path: Path) -> None:
    big = _dataset(2, 120, b"x" * 30000) * 3
    with said_while() as said:
        save_image(tmp_path / "big.jpg", PIXELS, iptc=big)
        save_image(tmp_path / "big.tif", PIXELS, iptc=big)
    assert _iptc(tmp_path / "big.jpg") is None
    (line,) = [w for w in said if "IPTC" in w]
    assert line.startswith(f"{tmp_path / 'big.jpg'}: ") and "too large" in line
    assert _iptc(tmp_path / "big.tif") == {(2, 120): [b"x" * 30000] * 3}


def test_absurd_iim_is_refused_on_read(tmp_path: Path) -> None:
    path = _tiff_with_iim(tmp_path / "huge.tif", _dataset(2, 120, b"x" * 30000) * 40)
    src = load_image(path)
    assert src.iptc is None
    assert any("IPTC-IIM" in w and "too large" in w for w in src.warnings)


def _png_iptc_as_exiftool_writes_it(path: Path, iim: bytes) -> Path:
    """A PNG with IIM where ExifTool 12 puts it (``exiftool -IPTC:Caption-Abstract=...
    x.png``): a zTXt "Raw profile type iptc" whose text names the profile "IPTC profile"
    (ImageMagick: "iptc"), gives its length, then the 8BIM resource in hex, 36 bytes a
    line."""
    block = b"8BIM\x04\x04\x00\x00" + struct.pack(">I", len(iim)) + iim + b"\x00" * (len(iim) % 2)
    hexed = "\n".join(block[i : i + 36].hex() for i in range(0, len(block), 36))
    info = PngImagePlugin.PngInfo()
    info.add_text("Raw profile type iptc", f"\nIPTC profile\n{len(block):8d}\n{hexed}\n",
                  zip=True)
    Image.fromarray(PIXELS).save(path, pnginfo=info)
    return path


def test_iim_is_carried_into_png_and_back(tmp_path: Path) -> None:
    # PNG has no IPTC chunk; a batch's default output is PNG, so JPEG -> PNG is the common
    # case. The IIM goes where ImageMagick and ExifTool keep it, and comes back from there.
    src = load_image(_jpeg_with_iim(tmp_path / "in.jpg"))
    with said_while() as said:
        save_like(tmp_path / "out.png", src.pixels, src)
    assert not [w for w in said if "IPTC" in w]
    with Image.open(tmp_path / "out.png") as im:
        text = im.info["Raw profile type iptc"]
    assert text.startswith("\niptc\n")
    png = load_image(tmp_path / "out.png")
    assert png.iptc == IIM and png.png_text == ()  # not also carried as a plain text field
    save_like(tmp_path / "back.jpg", png.pixels, png)
    assert _iptc(tmp_path / "back.jpg") == RECORDS
    save_like(tmp_path / "again.png", png.pixels, png)  # PNG -> PNG: one field, not two
    with Image.open(tmp_path / "again.png") as im:
        assert im.info["Raw profile type iptc"] == text
    save_like(tmp_path / "bare.png", src.pixels, src, keep_metadata=False)
    with Image.open(tmp_path / "bare.png") as im:
        assert "Raw profile type iptc" not in im.info


def test_iim_of_a_png_exiftool_wrote_is_read(tmp_path: Path) -> None:
    src = load_image(_png_iptc_as_exiftool_writes_it(tmp_path / "in.png", IIM))
    assert src.iptc == IIM
    save_like(tmp_path / "out.tif", src.pixels, src)
    assert _iptc(tmp_path / "out.tif") == RECORDS


@pytest.mark.parametrize("ext", ["webp", "bmp"])
def test_iim_lost_by_the_output_format_is_said(tmp_path: Path, ext: str) -> None:
    src = load_image(_jpeg_with_iim(tmp_path / "in.jpg"))
    assert not [w for w in src.warnings if "IPTC" in w]  # reading cannot know the output
    with said_while() as said:
        save_like(tmp_path / f"out.{ext}", src.pixels, src)
    (line,) = [w for w in said if "IPTC" in w]
    assert line.startswith(f"{tmp_path / f'out.{ext}'}: ")
    assert "IPTC-IIM data (captions, copyright, keywords) is not carried" in line
    with said_while() as said:
        save_like(tmp_path / f"bare.{ext}", src.pixels, src, keep_metadata=False)
    assert not [w for w in said if "IPTC" in w]


def test_iim_and_all_else_are_kept_in_a_16_bit_colour_tiff(tmp_path: Path) -> None:
    # OpenCV writes 16-bit colour TIFFs without metadata: IIM, the ICC profile (what the
    # colours mean), XMP and the resolution were dropped (tests/test_tiff_tags.py: EXIF).
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    with said_while() as said:
        save_image(tmp_path / "deep.tif", PIXELS.astype(np.uint16) * 257, bit_depth=16,
                   icc_profile=icc, xmp=b"<x/>", dpi=(300, 300), iptc=IIM)
    assert not said
    src = load_image(tmp_path / "deep.tif")
    assert (src.iptc, src.icc_profile, src.xmp, src.dpi) == (IIM, icc, b"<x/>", (300, 300))


def _png_text_info() -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text("Title", "Harbour at dawn")
    info.add_text("Author", "Jörg Brandt")  # Latin-1: tEXt
    info.add_text("Copyright", "(c) Town Archive. " * 100, zip=True)  # zTXt
    info.add_itxt("Description", "Гавань на рассвете", lang="ru", tkey="Описание")
    info.add_text("Source", "Стеклянная пластинка")  # not Latin-1: Pillow makes it iTXt
    info.add_text("Software", "ScanTool 2.1")  # named the input's writer: dropped
    info.add_text("Comment", "plate 17")  # carried as the comment
    return info


def _texts(path: Path) -> dict[str, tuple[str, str | None, str | None]]:
    """A PNG's text fields as Pillow reads them: keyword -> (text, language, tkey)."""
    with Image.open(path) as im:
        im.load()  # text after the image data too
        return {k: (str(v), getattr(v, "lang", None) or None, getattr(v, "tkey", None) or None)
                for k, v in im.info.items() if isinstance(v, str)}


EXPECTED_TEXT = {
    "Title": ("Harbour at dawn", None, None),
    "Author": ("Jörg Brandt", None, None),
    "Copyright": ("(c) Town Archive. " * 100, None, None),
    "Description": ("Гавань на рассвете", "ru", "Описание"),
    "Source": ("Стеклянная пластинка", None, None),
    "Comment": ("plate 17", None, None),
}


def _chunk(ctype: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + ctype + data + struct.pack(">I", zlib.crc32(ctype + data))


def _png16_rgb_with_text(path: Path) -> Path:
    """A 16-bit RGB PNG (which Pillow cannot write) with the text chunks of
    :func:`_png_text_info`, spliced in after IHDR."""
    deep = (PIXELS.astype(np.uint16) * 257)[..., ::-1]  # OpenCV writes BGR
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(deep))
    assert ok
    png = buf.tobytes()
    end = 8 + 8 + struct.unpack(">I", png[8:12])[0] + 4
    chunks = b"".join(_chunk(c, d) for c, d, *_ in _png_text_info().chunks)
    path.write_bytes(png[:end] + chunks + png[end:])
    return path


@pytest.mark.parametrize("kind", ["pillow", "streamed", "16-bit grey", "16-bit rgb"])
def test_png_text_fields_are_carried_into_png(tmp_path: Path, monkeypatch,
                                              kind: str) -> None:
    path = tmp_path / "in.png"
    if kind == "16-bit rgb":
        _png16_rgb_with_text(path)
    elif kind == "16-bit grey":
        Image.fromarray(PIXELS[..., 0].astype(np.uint16) * 257).save(path,
                                                                     pnginfo=_png_text_info())
    else:
        Image.fromarray(PIXELS).save(path, pnginfo=_png_text_info())
    if kind == "streamed":  # the band-wise encoder of big PNGs, forced for a small one
        monkeypatch.setattr("rbqe.io.write._STREAM_PNG_PIXELS", 1)
    src = load_image(path)
    assert src.bit_depth == (16 if kind.startswith("16") else 8)
    with said_while() as said:
        save_like(tmp_path / "out.png", src.pixels, src)
    assert _texts(tmp_path / "out.png") == EXPECTED_TEXT
    assert not [w for w in said if "not carried" in w]
    save_like(tmp_path / "bare.png", src.pixels, src, keep_metadata=False)
    assert _texts(tmp_path / "bare.png") == {}


def test_png_text_into_another_format_is_said(tmp_path: Path) -> None:
    Image.fromarray(PIXELS).save(tmp_path / "in.png", pnginfo=_png_text_info())
    src = load_image(tmp_path / "in.png")
    with said_while() as said:
        save_like(tmp_path / "out.tif", src.pixels, src)
    (line,) = [w for w in said if "not carried" in w]
    assert line == (f"{tmp_path / 'out.tif'}: the input's comment and PNG text fields "
                    "Author, Copyright, Description, Source, Title are not carried into this "
                    "TIFF output; copy them over if you need them")


def test_strip_gps_leaves_out_text_that_may_hold_a_location(tmp_path: Path) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("Title", "Harbour")
    info.add_text("GPS Position", "54.32 N, 10.14 E")
    Image.fromarray(PIXELS).save(tmp_path / "in.png", pnginfo=info)
    src = load_image(tmp_path / "in.png")
    save_like(tmp_path / "out.png", src.pixels, src, strip_gps=True)
    assert _texts(tmp_path / "out.png") == {"Title": ("Harbour", None, None)}


def test_png_text_past_the_bound_is_refused_and_said(tmp_path: Path) -> None:
    info = PngImagePlugin.PngInfo()
    for i in range(MAX_TEXT_FIELDS + 2):
        info.add_text(f"Note {i:03d}", "x")
    Image.fromarray(PIXELS).save(tmp_path / "in.png", pnginfo=info)
    src = load_image(tmp_path / "in.png")
    assert len(src.png_text) == MAX_TEXT_FIELDS
    assert any(f"Note {MAX_TEXT_FIELDS:03d}" in w and "not carried" in w for w in src.warnings)


def test_a_batch_carries_iim_into_jpeg_and_png_and_says_webp_loses_it(
        tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    _jpeg_with_iim(tmp_path / "in" / "scan.jpg")
    enhancer = tiny_enhancer()
    summary = run_batch(enhancer, [tmp_path / "in"],
                        BatchOptions(out_dir=tmp_path / "jpg", fmt="jpeg"))
    (item,) = summary.items
    assert item.status == "ok"
    assert _iptc(tmp_path / "jpg" / "scan.jpg") == RECORDS
    assert not [w for w in item.warnings if "IPTC" in w]
    summary = run_batch(enhancer, [tmp_path / "in"], BatchOptions(out_dir=tmp_path / "png"))
    (item,) = summary.items
    assert item.status == "ok" and not [w for w in item.warnings if "IPTC" in w]
    assert load_image(tmp_path / "png" / "scan.png").iptc == IIM
    summary = run_batch(enhancer, [tmp_path / "in"],
                        BatchOptions(out_dir=tmp_path / "webp", fmt="webp", mode="all"))
    (item,) = summary.items
    assert item.status == "ok" and len(item.outputs) == 5
    # Once, not once per exit's file: the row names the input and lists its outputs.
    assert item.warnings == ["the input's IPTC-IIM data (captions, copyright, keywords) is "
                             "not carried into this WebP output; copy it over if you need it"]


def _app13_segments(jpeg: bytes, *payloads: bytes) -> bytes:
    """``jpeg`` with one Photoshop APP13 segment per payload, right after SOI."""
    segs = b"".join(b"\xff\xed" + struct.pack(">H", len(b"Photoshop 3.0\x00" + p) + 2)
                    + b"Photoshop 3.0\x00" + p for p in payloads)
    return jpeg[:2] + segs + jpeg[2:]


def _plain_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(PIXELS).save(buf, "JPEG")
    return buf.getvalue()


def test_iim_over_two_app13_segments_is_joined(tmp_path: Path) -> None:
    # Photoshop cuts resources over 64 KB across APP13 segments; Pillow parses each on
    # its own and kept a cut-off block: 60 of 68 KB, the last dataset halved.
    keywords = b"".join(_dataset(2, 25, f"keyword {n:05d}".encode()) for n in range(4000))
    iim = IIM + keywords
    block = b"8BIM\x04\x04\x00\x00" + struct.pack(">I", len(iim)) + iim
    path = tmp_path / "split.jpg"
    path.write_bytes(_app13_segments(_plain_jpeg(), block[:60000], block[60000:]))
    src = load_image(path)
    assert src.iptc == iim
    save_like(tmp_path / "out.png", src.pixels, src)
    assert load_image(tmp_path / "out.png").iptc == iim


def test_iim_cut_short_or_not_iim_is_said_not_carried(tmp_path: Path) -> None:
    block = b"8BIM\x04\x04\x00\x00" + struct.pack(">I", len(IIM) + 40) + IIM  # 40 missing
    (tmp_path / "cut.jpg").write_bytes(_app13_segments(_plain_jpeg(), block))
    src = load_image(tmp_path / "cut.jpg")
    assert src.iptc is None
    assert any("IPTC-IIM" in w and "cut short" in w and "not carried" in w
               for w in src.warnings)
    junk = b"8BIM\x04\x04\x00\x00" + struct.pack(">I", 6) + b"hello!"
    (tmp_path / "junk.jpg").write_bytes(_app13_segments(_plain_jpeg(), junk))
    src = load_image(tmp_path / "junk.jpg")
    assert src.iptc is None and any("holds no IPTC-IIM" in w for w in src.warnings)


def test_iim_in_a_tiffs_photoshop_resources_is_read(tmp_path: Path) -> None:
    block = b"8BIM\x04\x04\x00\x00" + struct.pack(">I", len(IIM)) + IIM + b"\x00" * (len(IIM) % 2)
    Image.fromarray(PIXELS).save(tmp_path / "ps.tif", tiffinfo={34377: block})
    src = load_image(tmp_path / "ps.tif")
    assert src.iptc == IIM
    save_like(tmp_path / "out.jpg", src.pixels, src)
    assert _iptc(tmp_path / "out.jpg") == RECORDS


def test_an_unreadable_png_iim_is_said(tmp_path: Path) -> None:
    path = _png_iptc_as_exiftool_writes_it(tmp_path / "in.png", IIM)
    with Image.open(path) as im:
        text = im.info["Raw profile type iptc"]
    info = PngImagePlugin.PngInfo()
    info.add_text("Raw profile type iptc", text.replace("\n3842", "\n38zz", 1), zip=True)
    Image.fromarray(PIXELS).save(tmp_path / "bad.png", pnginfo=info)
    src = load_image(tmp_path / "bad.png")
    assert src.iptc is None and src.png_text == ()
    assert any("IPTC-IIM" in w and "unreadable" in w for w in src.warnings)


def test_iim_too_large_for_a_png_text_field_is_dropped_and_said(tmp_path: Path,
                                                                 monkeypatch) -> None:
    # In hex the IIM is twice its size; over Pillow's limit for one text chunk (1 MB)
    # the PNG would not open again.
    monkeypatch.setattr(PngImagePlugin, "MAX_TEXT_CHUNK", 200)
    with said_while() as said:
        save_image(tmp_path / "out.png", PIXELS, iptc=IIM)
    assert any("IPTC-IIM data too large for a PNG text field" in w for w in said)
    with Image.open(tmp_path / "out.png") as im:
        assert "Raw profile type iptc" not in im.info


def test_imagemagick_raw_profiles_are_not_copied_as_text(tmp_path: Path) -> None:
    # ImageMagick 6 kept EXIF as "Raw profile type APP1": copied as text it carried a
    # GPS location past --strip-gps ("gps" is nowhere in hex).
    exif = Image.Exif()
    exif.get_ifd(0x8825)[2] = (52.0, 31.0, 12.0)  # GPSLatitude
    app1 = exif.tobytes()
    info = PngImagePlugin.PngInfo()
    info.add_text("Raw profile type APP1", f"\nAPP1\n{len(app1):8d}\n{app1.hex()}\n", zip=True)
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><dc:title>Hafen</dc:title></x:xmpmeta>'
    info.add_text("Raw profile type xmp", f"\nxmp\n{len(xmp):8d}\n{xmp.hex()}\n", zip=True)
    Image.fromarray(PIXELS).save(tmp_path / "im.png", pnginfo=info)
    src = load_image(tmp_path / "im.png")
    assert src.png_text == ()
    assert src.xmp == xmp  # ImageMagick's XMP is read as XMP
    assert any("raw profiles APP1" in w and "not carried" in w for w in src.warnings)
    save_like(tmp_path / "out.png", src.pixels, src, strip_gps=True)
    assert "Raw profile type APP1" not in _texts(tmp_path / "out.png")


def test_png_text_png_does_not_allow_is_refused_and_named_readably(tmp_path: Path) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("Title", "kept")
    info.add_text(" Spaced  key", "x")  # leading and doubled spaces
    info.add_text("Bell\x07", "x")  # a control character
    info.add_text("Note", "a\0b")  # NUL in the text
    Image.fromarray(PIXELS).save(tmp_path / "in.png", pnginfo=info)
    src = load_image(tmp_path / "in.png")
    assert [f.key for f in src.png_text] == ["Title"]
    (line,) = [w for w in src.warnings if "not carried" in w]
    assert "'Bell\\x07'" in line and "\x07" not in line
    assert " Spaced  key" in line and "Note" in line


def test_warnings_name_at_most_eight_fields(tmp_path: Path) -> None:
    from rbqe.io.captions import TextField
    with said_while() as said:
        save_image(tmp_path / "out.jpg", PIXELS,
                   text=[TextField(f"Field {n:02d}", "x") for n in range(20)])
    (line,) = said
    assert "PNG text fields Field 00" in line and "Field 07 and 12 more are not carried" in line
    assert "Field 08" not in line


@pytest.mark.parametrize(("ext", "lost"), [
    ("png", None),
    ("jpg", None),
    ("webp", "comment, resolution (dpi) and IPTC-IIM data (captions, copyright, keywords) are"),
    ("tif", "comment is"),
    ("bmp", "ICC colour profile, EXIF (camera, date, location), XMP, comment and IPTC-IIM "
            "data (captions, copyright, keywords) are"),
])
def test_each_format_says_what_it_cannot_keep(tmp_path: Path, ext: str, lost: str | None) -> None:
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "Camera"
    with said_while() as said:
        save_image(tmp_path / f"out.{ext}", PIXELS, icc_profile=icc, exif=exif.tobytes(),
                   xmp=b"<x/>", comment=b"plate 17", dpi=(300, 300), iptc=IIM)
    if lost is None:
        assert not said
    else:
        assert said == [f"{tmp_path / f'out.{ext}'}: the input's {lost} not carried into this "
                        f"{'WebP' if ext == 'webp' else ext.upper().replace('TIF', 'TIFF')} "
                        f"output; copy {'it' if ' is' in lost else 'them'} over if you need "
                        f"{'it' if ' is' in lost else 'them'}"]


def _block(rid: int, data: bytes) -> bytes:
    """A Photoshop image resource block (8BIM, empty name)."""
    return (b"8BIM" + struct.pack(">H", rid) + b"\x00\x00" + struct.pack(">I", len(data))
            + data + b"\x00" * (len(data) % 2))


def test_the_photoshop_copyright_flag_and_url_are_said_lost(tmp_path: Path) -> None:
    # Carried nowhere (only the IPTC captions are), and dropped without a word.
    body = b"Photoshop 3.0\x00" + _block(0x0404, IIM) + _block(0x040A, b"\x01") \
        + _block(0x040B, b"https://example.org/rights")
    path = _jpeg_with_iim(tmp_path / "ps.jpg")
    data = path.read_bytes()
    segment = b"\xff\xed" + struct.pack(">H", len(body) + 2) + body
    at = data.index(b"\xff\xed")
    size = struct.unpack(">H", data[at + 2 : at + 4])[0]
    path.write_bytes(data[:at] + segment + data[at + 2 + size :])
    src = load_image(path)
    assert src.iptc == IIM
    (said,) = [w for w in src.warnings if "Photoshop" in w]
    assert said == ("its Photoshop copyright flag (marked copyrighted) and URL "
                    "(https://example.org/rights) are not carried into the output (its IPTC "
                    "captions are); copy them over if you need them")
    assert not [w for w in load_image(_jpeg_with_iim(tmp_path / "plain.jpg")).warnings
                if "Photoshop" in w]
