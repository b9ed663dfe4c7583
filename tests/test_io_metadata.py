"""XMP, comment and resolution: read from the source, written by save_like where the
output format can hold them, and dropped as --strip-metadata and --strip-gps ask."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from rbqe.io import load_image, save_image, save_like
from rbqe.io.diagnostics import said_while

RIGHTS = b"<dc:rights>(c) 2024 Town Archive, all rights reserved</dc:rights>"
XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
       b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
       b'xmlns:dc="http://purl.org/dc/elements/1.1/">' + RIGHTS +
       b"</rdf:Description></rdf:RDF></x:xmpmeta>")
XMP_GPS = XMP.replace(b"<rdf:Description ", b'<rdf:Description exif:GPSLatitude="48,51.4N" ')
COMMENT = b"scanned from glass plate 17"


def _source(tmp_path: Path, xmp: bytes = XMP, name: str = "scan.jpg") -> Path:
    path = tmp_path / name
    pixels = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=90, xmp=xmp, comment=COMMENT, dpi=(600, 600))
    return path


def _as_bytes(value: str | bytes | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value  # PNG text comes as str


def _metadata(path: Path) -> tuple[bytes | None, bytes | None, tuple[float, float] | None]:
    """(XMP, comment, dpi) as Pillow reads them back from an output."""
    with Image.open(path) as im:
        xmp = im.info.get("xmp")
        comment = im.info.get("comment") or im.info.get("Comment")
        dpi = im.info.get("dpi")
    return _as_bytes(xmp), _as_bytes(comment), tuple(round(d) for d in dpi) if dpi else None


def test_xmp_comment_and_dpi_are_read(tmp_path: Path) -> None:
    src = load_image(_source(tmp_path))
    assert src.xmp == XMP and src.comment == COMMENT and src.dpi == (600, 600)


def test_a_tiff_without_resolution_gets_none_made_up(tmp_path: Path) -> None:
    # Pillow reports (1, 1) dpi for a TIFF without resolution tags (as OpenCV and Pillow
    # write them): carried over, a print program would size a 160 px scan at 160 inches.
    pixels = np.zeros((20, 30, 3), np.uint8)
    Image.fromarray(pixels).save(tmp_path / "bare.tif")
    Image.fromarray(pixels).save(tmp_path / "dpi.tif", dpi=(300, 300))
    bare = load_image(tmp_path / "bare.tif")
    assert bare.dpi is None
    assert load_image(tmp_path / "dpi.tif").dpi == (300, 300)
    out = save_like(tmp_path / "out.jpg", bare.pixels, bare)
    with Image.open(out) as im:
        assert im.info.get("jfif_density") in (None, (1, 1)) and \
            im.info.get("jfif_unit", 0) == 0  # no unit: an aspect ratio, not a resolution


# WebP has no comment or resolution; JPEG, PNG and TIFF (at 8 bit) hold all three.
@pytest.mark.parametrize(("suffix", "expected"), [
    ("jpg", (XMP, COMMENT, (600, 600))),
    ("png", (XMP, COMMENT, (600, 600))),
    ("webp", (XMP, None, None)),
    ("tif", (XMP, None, (600, 600))),
])
def test_save_like_carries_xmp_comment_and_dpi(tmp_path: Path, suffix: str, expected) -> None:
    src = load_image(_source(tmp_path))
    out = save_like(tmp_path / f"out.{suffix}", src.pixels, src)
    assert _metadata(out) == expected
    assert load_image(out).xmp == XMP  # and reads back as it was


@pytest.mark.parametrize("suffix", ["jpg", "png", "webp"])
def test_strip_metadata_drops_xmp_and_comment_keeps_dpi(tmp_path: Path, suffix: str) -> None:
    src = load_image(_source(tmp_path))
    out = save_like(tmp_path / f"out.{suffix}", src.pixels, src, keep_metadata=False)
    xmp, comment, dpi = _metadata(out)
    assert xmp is None and comment is None
    assert dpi == (None if suffix == "webp" else (600, 600))


def test_strip_gps_drops_xmp_holding_a_location_only(tmp_path: Path) -> None:
    with_gps = load_image(_source(tmp_path, XMP_GPS))
    out = save_like(tmp_path / "gps.jpg", with_gps.pixels, with_gps, strip_gps=True)
    assert _metadata(out) == (None, COMMENT, (600, 600))
    out = save_like(tmp_path / "kept.jpg", with_gps.pixels, with_gps)  # not asked: kept
    assert _metadata(out)[0] == XMP_GPS
    plain = load_image(_source(tmp_path, name="plain_scan.jpg"))  # no location to strip
    out = save_like(tmp_path / "plain.jpg", plain.pixels, plain, strip_gps=True)
    assert _metadata(out)[0] == XMP


@pytest.mark.parametrize("mode", ["RGB", "LA"])
def test_16bit_png_carries_xmp_comment_and_dpi(tmp_path: Path, mode: str) -> None:
    # 16-bit colour PNGs are encoded without Pillow: their chunks are written by hand.
    channels = 3 if mode == "RGB" else 1
    pixels = np.linspace(0, 1, 8 * 8 * channels, dtype=np.float32).reshape(8, 8, channels)
    out = save_image(tmp_path / "deep.png", pixels, mode=mode, bit_depth=16,
                     alpha=np.full((8, 8), 65535, np.uint16) if mode == "LA" else None,
                     xmp=XMP, comment=COMMENT, dpi=(300.0, 300.0))
    assert _metadata(out) == (XMP, COMMENT, (300, 300))


def test_jpeg_without_a_resolution_gets_none_made_up(tmp_path: Path) -> None:
    # Pillow reports 72 dpi for a JPEG whose EXIF has no resolution; that is not the file's.
    path = tmp_path / "no_dpi.jpg"
    Image.new("RGB", (8, 8)).save(path, exif=Image.Exif().tobytes())
    assert load_image(path).dpi is None


def _jpeg_with_exif_resolution(path: Path, unit: int | None, res: float, *, jfif: bool = True,
                               dpi: tuple[int, int] | None = None) -> Path:
    """A Pillow JPEG (JFIF unit 0, density 1:1 unless ``dpi``) whose EXIF holds ``res`` as
    X/YResolution with ResolutionUnit ``unit`` (None: left out); without ``jfif`` its
    JFIF segment is cut out, as in a camera's JPEG."""
    exif = Image.Exif()
    exif[0x010F] = "X"  # Make: what exiftool was asked to add
    exif[0x011A] = exif[0x011B] = res
    if unit is not None:
        exif[0x0128] = unit
    buf = io.BytesIO()
    Image.fromarray(np.full((12, 16, 3), 120, np.uint8)).save(
        buf, "JPEG", exif=exif.tobytes(), **({"dpi": dpi} if dpi else {}))
    data = buf.getvalue()
    if not jfif:
        assert data[2:4] == b"\xff\xe0" and data[6:11] == b"JFIF\0"
        data = data[:2] + data[4 + int.from_bytes(data[4:6], "big"):]
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(("unit", "res", "jfif", "dpi", "expected"), [
    (1, 1.0, True, None, None),  # exiftool's 1:1 aspect ratio: became 1 dpi
    (None, 1.0, True, None, None),  # no unit beside JFIF's unit 0: became 72 dpi
    (1, 300.0, True, None, None),  # unit 1 is no unit, whatever the numbers
    (2, 300.0, True, None, (300, 300)),  # inches
    (3, 100.0, True, None, (254, 254)),  # centimetres
    (1, 1.0, True, (600, 600), (600, 600)),  # JFIF's own density in inches wins
    (None, 300.0, False, None, (300, 300)),  # no JFIF: EXIF's default unit, inches
    (1, 1.0, False, None, None),
])
def test_a_jpeg_resolution_without_a_unit_is_no_dpi(tmp_path: Path, unit, res, jfif, dpi,
                                                    expected) -> None:
    # exiftool, adding any tag to a Pillow JPEG (JFIF density 1:1, unit 0), writes EXIF
    # XResolution 1 with ResolutionUnit 1 (none); Pillow read that as 1 dpi, which went
    # into the output (a PNG's pHYs of 39 px/m): a photo to be printed inches per pixel.
    src = load_image(_jpeg_with_exif_resolution(tmp_path / "in.jpg", unit, res, jfif=jfif,
                                                dpi=dpi))
    assert (tuple(round(d) for d in src.dpi) if src.dpi else None) == expected
    assert _metadata(save_like(tmp_path / "out.png", src.pixels, src))[2] == expected  # pHYs
    with Image.open(save_like(tmp_path / "out.jpg", src.pixels, src)) as im:
        written = im.info["jfif_density"] if im.info.get("jfif_unit") == 1 else None
    assert written == expected


@pytest.mark.parametrize("xmp", [
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description xmlns:e="http://ns.adobe.com/'
    b'exif/1.0/" e:GPSLatitude="48,51.5N"/></x:xmpmeta>',  # EXIF's namespace, another prefix
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description xmlns:drone-dji="http://www.dji'
    b'.com/drone-dji/1.0/" drone-dji:GpsLatitude="48.858"/></x:xmpmeta>',  # a maker's own
])
def test_strip_gps_drops_any_xmp_location(tmp_path: Path, xmp: bytes) -> None:
    from rbqe.io.metadata import xmp_has_gps

    assert xmp_has_gps(xmp) and not xmp_has_gps(XMP)


def test_strip_gps_says_it_drops_the_xmp_whole(tmp_path: Path) -> None:
    # The rights and captions in that XMP go with the location: said, not an INFO line.
    gps_xmp = XMP.replace(b"</rdf:Description>", b'<exif:GPSLatitude>48,51.5N'
                          b'</exif:GPSLatitude></rdf:Description>')
    assert gps_xmp != XMP
    path = tmp_path / "in.jpg"
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(path, xmp=gps_xmp)
    src = load_image(path)
    with said_while() as said:
        out = save_like(tmp_path / "out.jpg", src.pixels, src, strip_gps=True)
    with Image.open(out) as im:
        assert "xmp" not in im.info
    assert said == [f"{out}: the input's XMP (rights, captions, keywords...) is left out "
                    "whole: it holds a GPS location, which --strip-gps removes"]
    with said_while() as said:
        save_like(tmp_path / "kept.jpg", src.pixels, src)
    assert said == []


def test_webp_says_nothing_of_a_resolution_its_exif_holds(tmp_path: Path) -> None:
    # WebP has no density field, but the EXIF it carries has XResolution: not lost.
    exif = Image.Exif()
    exif[0x011A], exif[0x011B], exif[0x0128] = 240.0, 240.0, 2
    with said_while() as said:
        save_image(tmp_path / "a.webp", np.zeros((8, 8, 3)), exif=exif.tobytes(), dpi=(240, 240))
    assert said == []
    with said_while() as said:
        save_image(tmp_path / "b.webp", np.zeros((8, 8, 3)), dpi=(240, 240))
    assert len(said) == 1 and "resolution (dpi) is not carried into this WebP" in said[0]
    with said_while() as said:  # the JPEG's JFIF said 300, its EXIF 240: 300 is lost
        save_image(tmp_path / "c.webp", np.zeros((8, 8, 3)), exif=exif.tobytes(), dpi=(300, 300))
    assert len(said) == 1 and "resolution (dpi) is not carried into this WebP" in said[0]


def test_an_exif_resolution_without_a_unit_is_no_dpi() -> None:
    from rbqe.io.metadata import exif_says_resolution

    exif = Image.Exif()
    exif[0x011A], exif[0x0128] = 240.0, 1  # ResolutionUnit 1: none
    assert not exif_says_resolution(exif.tobytes(), (240.0, 240.0))
    exif[0x0128] = 2
    assert exif_says_resolution(exif.tobytes(), (240.0, 240.0))


def test_one_png_text_field_is_named_in_the_singular(tmp_path: Path) -> None:
    from rbqe.io.captions import TextField

    with said_while() as said:
        save_image(tmp_path / "a.jpg", np.zeros((8, 8, 3)), text=[TextField("Make", "x")])
    assert said == [f"{tmp_path / 'a.jpg'}: the input's PNG text field Make is not carried "
                    "into this JPEG output; copy it over if you need it"]


@pytest.mark.parametrize(("quality", "subsampling", "tables"), [
    (90, 0, True), (80, 0, True), (60, 0, True), (90, 2, False), (95, 1, False)])
def test_a_4_4_4_jpeg_carries_its_tables_to_make_outputs_consistent(
        tmp_path: Path, quality: int, subsampling: int, tables: bool) -> None:
    # The network, trained on 4:2:0 JPEGs, softens a 4:4:4 one's colour (measured: -0.3
    # to -2.8 dB at quality >= 80); its outputs are made consistent with the file
    # (rbqe.jpeg_constraint), which needs the Y, Cb and Cr tables. No warning then.
    path = tmp_path / "export.jpg"
    pixels = np.random.default_rng(1).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=quality, subsampling=subsampling)
    src = load_image(path)
    assert (src.jpeg_444_tables is not None) == tables
    if tables:
        with Image.open(path) as im:
            assert src.jpeg_444_tables[0] == tuple(im.quantization[0])
            assert src.jpeg_444_tables[1] == tuple(im.quantization[1])
    assert src.warnings == []


def _with_iptc(jpeg: bytes) -> bytes:
    """``jpeg`` with an APP13 Photoshop segment holding an IPTC-IIM copyright notice."""
    iptc = b"\x1c\x02\x74\x00\x09(c) Anna."  # record 2, dataset 116: copyright notice
    resource = b"8BIM\x04\x04\x00\x00" + len(iptc).to_bytes(4, "big") + iptc
    resource += b"\x00" * (len(resource) % 2)
    body = b"Photoshop 3.0\x00" + resource
    return jpeg[:2] + b"\xff\xed" + (len(body) + 2).to_bytes(2, "big") + body + jpeg[2:]


def test_metadata_not_carried_is_said_where_the_output_cannot_hold_it(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(buf, "JPEG")
    iptc = tmp_path / "iptc.jpg"
    iptc.write_bytes(_with_iptc(buf.getvalue()))
    src = load_image(iptc)
    assert not [w for w in src.warnings if "not carried" in w]  # the output decides
    with said_while() as said:
        save_like(tmp_path / "out.webp", src.pixels, src)
    assert any("IPTC-IIM data (captions, copyright, keywords) is not carried into this WebP"
               in w for w in said)
    info = PngImagePlugin.PngInfo()
    info.add_text("Copyright", "Anna")
    info.add_text("Title", "Harbour")
    info.add_text("Comment", "carried")
    png = tmp_path / "text.png"
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(png, pnginfo=info)
    src = load_image(png)
    with said_while() as said:
        save_like(tmp_path / "out.jpg", src.pixels, src)
    (warning,) = [w for w in said if "not carried" in w]
    assert "PNG text fields Copyright, Title are not carried into this JPEG" in warning
    assert warning.startswith(f"{tmp_path / 'out.jpg'}: ")
    plain = tmp_path / "plain.png"
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(plain)
    src = load_image(plain)
    with said_while() as said:
        save_like(tmp_path / "plain.jpg", src.pixels, src)
    assert not [w for w in said if "not carried" in w]


def test_an_unreadable_icc_profile_is_not_carried_and_is_said(tmp_path: Path) -> None:
    rgb = np.full((16, 16, 3), 120, np.uint8)
    bad = tmp_path / "bad_icc.jpg"
    Image.fromarray(rgb).save(bad, "JPEG", icc_profile=bytes(range(256)) * 4)
    src = load_image(bad)
    assert src.icc_profile is None
    assert any("ICC colour profile is unreadable" in w for w in src.warnings)
    out = tmp_path / "out.png"
    save_like(out, src.pixels, src)
    with Image.open(out) as im:
        assert "icc_profile" not in im.info


def test_a_jpegs_several_comments_are_all_kept(tmp_path: Path) -> None:
    # Pillow keeps only the last COM segment: "first comment" reached no output.
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buf, "JPEG", comment=b"second")
    data = buf.getvalue()
    first = b"first comment"
    com = b"\xff\xfe" + (len(first) + 2).to_bytes(2, "big") + first
    path = tmp_path / "two.jpg"
    path.write_bytes(data[:2] + com + data[2:])
    src = load_image(path)
    assert src.comment == b"first comment\nsecond"
    save_like(tmp_path / "out.png", src.pixels, src)
    assert load_image(tmp_path / "out.png").comment == b"first comment\nsecond"


def test_a_one_bit_image_is_said_to_become_grey(tmp_path: Path) -> None:
    # A bilevel scan came out 8-bit grey, its dithering greyed, without a word.
    path = tmp_path / "fax.png"
    Image.fromarray(np.random.default_rng(0).random((16, 24)) > 0.5).save(path)
    with Image.open(path) as im:
        assert im.mode == "1"
    (said,) = load_image(path).warnings
    assert said.startswith("a 1-bit (black and white) image: the output has 8-bit levels")
    assert not load_image(save_image(tmp_path / "grey.png", np.zeros((4, 4)))).warnings


def test_strip_gps_adds_no_empty_camera_directory() -> None:
    """EXIF with a location and no camera (Exif) directory: the EXIF written without the
    location had an empty one, which ExifTool's -validate flags as six required tags
    missing (ExifVersion, ColorSpace...). One that is there is kept."""
    from rbqe.io.metadata import without_gps

    exif_ifd, gps_ifd = 0x8769, 0x8825
    bare = Image.Exif()
    bare[0x0112] = 6
    bare[gps_ifd] = {1: "N", 2: (48.0, 51.0, 0.0)}
    out = Image.Exif()
    out.load(without_gps(bare.tobytes()))
    assert gps_ifd not in out and exif_ifd not in out and out[0x0112] == 6
    camera = Image.Exif()
    camera[gps_ifd] = {1: "N"}
    camera[exif_ifd] = {0x9003: "2020:01:01 00:00:00"}
    out = Image.Exif()
    out.load(without_gps(camera.tobytes()))
    assert gps_ifd not in out and out.get_ifd(exif_ifd) == {0x9003: "2020:01:01 00:00:00"}
