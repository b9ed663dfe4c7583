"""What an output shows and holds is what the input did: a transparent picture written as
JPEG is laid over white, a grey ICC profile never describes RGB pixels, a JPEG's extended
XMP (over 64 KB) is carried or said lost, and the thumbnail of a photo turned upright is
gone from its EXIF, not only unlinked."""

from __future__ import annotations

import hashlib
import io
import itertools
import re
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from rbqe.io import load_image, save_image, save_like
from rbqe.io.diagnostics import said_while
from rbqe.io.metadata import _normalise_exif
from tests.helpers import photo

# --- JPEG of a transparent picture -----------------------------------------------------

WHITE = "JPEG cannot store transparency; the transparent parts are filled with white"


@pytest.mark.parametrize(("mode", "depth"), [("RGBA", 8), ("RGBA", 16), ("LA", 8), ("LA", 16)])
def test_a_transparent_picture_as_jpeg_is_laid_over_white(tmp_path: Path, mode: str,
                                                          depth: int) -> None:
    # Dropped, the alpha showed what it hid: an invisible red rectangle became a red block.
    top = 255 if depth == 8 else 65535
    dtype = np.uint8 if depth == 8 else np.uint16
    channels = 3 if mode == "RGBA" else 1
    pixels = np.zeros((32, 48, channels), dtype)  # black, red where transparent
    pixels[:, :16, 0] = top
    alpha = np.full((32, 48), top, dtype)
    alpha[:, :16] = 0  # invisible
    alpha[:, 16:32] = top // 2 + 1  # half seen: black over white is mid grey
    with said_while() as said:
        out = save_image(tmp_path / "flat.jpg", pixels, alpha=alpha, mode=mode,
                         bit_depth=depth, quality=100)
    assert f"{out}: {WHITE}" in said  # (and, at 16 bit, that JPEG is 8-bit only)
    with Image.open(out) as im:
        assert im.mode == mode[:-1]
        shown = np.asarray(im.convert("RGB")).astype(int)
    assert np.abs(shown[4:-4, 2:14] - 255).max() <= 2  # white, no red
    assert np.abs(shown[4:-4, 18:30] - 127).max() <= 2
    assert shown[4:-4, 34:46].max() <= 2  # opaque black stays black


def test_save_like_lays_a_transparent_png_over_white(tmp_path: Path) -> None:
    rgba = np.dstack([photo(32, 48), np.full((32, 48), 255, np.uint8)])
    rgba[8:24, 8:24] = (255, 0, 0, 0)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    src = load_image(tmp_path / "t.png")
    out = save_like(tmp_path / "t.jpg", src.pixels, src, quality=100)
    with Image.open(out) as im:
        shown = np.asarray(im).astype(int)
    assert np.abs(shown[10:22, 10:22] - 255).max() <= 2
    assert np.abs(shown[26:, 26:] - rgba[26:, 26:, :3]).mean() < 2  # the rest as it was


# --- a grey ICC profile on RGB pixels ------------------------------------------------


def grey_profile(gamma: float = 1.8) -> bytes:
    """A grey ICC profile (colour space GRAY) of a plain gamma curve and D50 white."""
    def s15(*v: float) -> bytes:
        return b"".join(struct.pack(">i", round(x * 65536)) for x in v)

    tags = [(b"wtpt", b"XYZ \0\0\0\0" + s15(0.9642, 1.0, 0.8249)),
            (b"kTRC", b"curv\0\0\0\0" + struct.pack(">IH", 1, round(gamma * 256)) + b"\0\0")]
    at, table, data = 128 + 4 + 12 * len(tags), b"", b""
    for sig, body in tags:
        table += sig + struct.pack(">II", at + len(data), len(body))
        data += body
    size = at + len(data)
    head = (struct.pack(">I", size) + b"lcms" + struct.pack(">I", 0x02100000) + b"mntrGRAYXYZ "
            + struct.pack(">6H", 2026, 1, 1, 0, 0, 0) + b"acspAPPL" + bytes(20)
            + struct.pack(">I", 0) + s15(0.9642, 1.0, 0.8249) + b"lcms" + bytes(44))
    return head + struct.pack(">I", len(tags)) + table + data


def in_srgb(grey: np.ndarray, icc: bytes) -> np.ndarray:
    """8-bit grey through the grey profile ``icc`` to sRGB, as LittleCMS makes it."""
    rgb = ImageCms.profileToProfile(Image.fromarray(grey), ImageCms.ImageCmsProfile(
        io.BytesIO(icc)), ImageCms.createProfile("sRGB"), outputMode="RGB")
    assert rgb is not None
    return np.asarray(rgb).astype(int)


def ramp(height: int = 16, width: int = 256) -> np.ndarray:
    return np.tile(np.arange(width, dtype=np.uint8), (height, 1))


@pytest.mark.parametrize("mode", ["L", "LA"])
def test_grey_with_a_grey_profile_as_webp_goes_to_srgb(tmp_path: Path, mode: str) -> None:
    # WebP has no grey mode: the pixels became RGB beside the GRAY profile, a file
    # LittleCMS refuses and viewers showed darker.
    icc, grey = grey_profile(), ramp()
    alpha = np.full(grey.shape, 200, np.uint8) if mode == "LA" else None
    with said_while() as said:
        out = save_image(tmp_path / "g.webp", grey, alpha=alpha, mode=mode, quality=100,
                         icc_profile=icc)
    assert said == []  # nothing is lost
    with Image.open(out) as im:
        assert im.mode == ("RGBA" if alpha is not None else "RGB")
        kept = im.info["icc_profile"]
        assert kept[16:20] == b"RGB "
        # A profile LittleCMS takes for these pixels (it refused the GRAY one).
        ImageCms.profileToProfile(im.convert("RGB"), ImageCms.ImageCmsProfile(
            io.BytesIO(kept)), ImageCms.createProfile("sRGB"))
        shown = np.asarray(im.convert("RGB")).astype(int)
        if alpha is not None:
            assert np.array_equal(np.asarray(im)[..., 3], alpha)
    expected = in_srgb(grey, icc)
    assert np.abs(expected - grey[..., None]).max() > 10  # the profile is no sRGB
    assert np.abs(shown - expected).mean() < 1.5 and np.abs(shown - expected).max() <= 6


def test_16bit_grey_alpha_tiff_with_a_grey_profile_goes_to_srgb(tmp_path: Path) -> None:
    # Neither TIFF writer holds 16-bit grey+alpha: it is written as RGBA, with the profile.
    icc, grey = grey_profile(), ramp()
    deep = grey.astype(np.uint16) * 257
    alpha = np.full(grey.shape, 40000, np.uint16)
    out = save_image(tmp_path / "g.tif", deep, alpha=alpha, mode="LA", bit_depth=16,
                     icc_profile=icc)
    back = load_image(out)
    assert back.mode == "RGBA" and back.bit_depth == 16
    assert back.icc_profile is not None and back.icc_profile[16:20] == b"RGB "
    assert back.alpha is not None and np.array_equal(back.alpha, alpha)
    shown = back.pixels * 255
    assert np.abs(shown - in_srgb(grey, icc)).max() < 0.6  # the 8-bit levels exactly


def test_grey_stays_grey_with_its_profile_where_the_format_has_grey(tmp_path: Path) -> None:
    icc, grey = grey_profile(), ramp()
    out = save_image(tmp_path / "g.png", grey, mode="L", icc_profile=icc)
    with Image.open(out) as im:
        assert im.mode == "L" and im.info["icc_profile"] == icc
        assert np.array_equal(np.asarray(im), grey)


# --- a JPEG's extended XMP --------------------------------------------------------------

NS_MAIN = b"http://ns.adobe.com/xap/1.0/\0"
NS_EXT = b"http://ns.adobe.com/xmp/extension/\0"
HISTORY = b"history " * 12000  # 96 KB: over one APP1 segment


def _packets(description: bytes = HISTORY, *, main_more: bytes = b"", ext_more: bytes = b"",
             outside: bytes = b"") -> tuple[bytes, bytes]:
    """The main and extended XMP packets, as ExifTool splits them; ``main_more`` and
    ``ext_more``: further descriptions in each, ``outside``: what the extended packet holds
    after its ``rdf:RDF``."""
    ext = (b"<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF "
           b"xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'><rdf:Description "
           b"rdf:about='' xmlns:dc='http://purl.org/dc/elements/1.1/'><dc:description>"
           b"<rdf:Alt><rdf:li xml:lang='x-default'>" + description +
           b"</rdf:li></rdf:Alt></dc:description></rdf:Description>" + ext_more +
           b"</rdf:RDF>" + outside + b"</x:xmpmeta>")
    guid = hashlib.md5(ext).hexdigest().upper().encode()
    main = (b"<?xpacket begin='\xef\xbb\xbf' id='W5M0MpCehiHzreSzNTczkc9d'?>"
            b"<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF "
            b"xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'>"
            b"<rdf:Description rdf:about='' xmlns:xmpNote='http://ns.adobe.com/xmp/note/'>"
            b"<xmpNote:HasExtendedXMP>" + guid + b"</xmpNote:HasExtendedXMP>"
            b"</rdf:Description><rdf:Description rdf:about='' "
            b"xmlns:dc='http://purl.org/dc/elements/1.1/'><dc:title><rdf:Alt>"
            b"<rdf:li xml:lang='x-default'>Harbour at dusk</rdf:li></rdf:Alt></dc:title>"
            b"</rdf:Description>" + main_more + b"</rdf:RDF></x:xmpmeta><?xpacket end='w'?>")
    return main, ext


def _segment(payload: bytes) -> bytes:
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def _jpeg_with_extended_xmp(path: Path, *, skip_chunk: int | None = None,
                            packets: tuple[bytes, bytes] | None = None,
                            orientation: int = 1) -> Path:
    main, ext = packets or _packets()
    guid = hashlib.md5(ext).hexdigest().upper().encode()
    step = 65000
    chunks = [_segment(NS_EXT + guid + struct.pack(">II", len(ext), at) + ext[at:at + step])
              for at in range(0, len(ext), step)]
    if skip_chunk is not None:
        del chunks[skip_chunk]
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(photo(24, 32)).save(buf, "JPEG", quality=90,
                                        exif=exif.tobytes() if orientation != 1 else b"")
    data = buf.getvalue()
    path.write_bytes(data[:2] + _segment(NS_MAIN + main) + b"".join(chunks) + data[2:])
    return path


def _extended_packet(path: Path) -> bytes:
    """The extended XMP packet of the JPEG at ``path``, checked against the XMP
    Specification (Part 3, 1.1.3.1): its APP1 segments after the main packet's, each at
    most 65535 bytes long (its length field) with a chunk of at most 65400, at rising
    offsets that cover it end to end, headed by its full length and its GUID, the MD5
    digest of the packet, which the main packet names."""
    with Image.open(path) as im:
        app1 = [s for m, s in im.applist if m == "APP1"]
    mains = [i for i, s in enumerate(app1) if s.startswith(NS_MAIN)]
    exts = [s for s in app1 if s.startswith(NS_EXT)]
    assert len(mains) == 1 and len(exts) >= 2
    assert all(not s.startswith(NS_EXT) for s in app1[: mains[0]])  # the main one first
    assert all(len(s) + 2 <= 65535 for s in exts)  # (Pillow's applist: the length less 2)
    heads = [struct.unpack_from(">32sII", s, len(NS_EXT)) for s in exts]
    chunks = [s[len(NS_EXT) + 40 :] for s in exts]
    assert all(len(c) <= 65400 for c in chunks)
    packet = b"".join(chunks)
    guid = hashlib.md5(packet).hexdigest().upper().encode()
    assert {h[0] for h in heads} == {guid} and {h[1] for h in heads} == {len(packet)}
    assert [h[2] for h in heads] == list(itertools.accumulate(
        (len(c) for c in chunks[:-1]), initial=0))
    assert re.search(rb"""xmpNote:HasExtendedXMP(>|=['"])""" + guid, app1[mains[0]])
    return packet


def test_extended_xmp_is_merged_into_the_main_packet(tmp_path: Path) -> None:
    # Only the main packet was read: a 96 KB description (Photoshop's history, say) was
    # lost from every output, with nothing said.
    src = load_image(_jpeg_with_extended_xmp(tmp_path / "x.jpg"))
    assert src.warnings == []
    assert src.xmp is not None and HISTORY in src.xmp and b"Harbour at dusk" in src.xmp
    assert b"HasExtendedXMP" not in src.xmp  # it names nothing in the outputs
    for suffix in ("png", "webp", "tif"):
        out = save_like(tmp_path / f"out.{suffix}", src.pixels, src)
        assert load_image(out).xmp == src.xmp


def _as_attribute(packets: tuple[bytes, bytes]) -> tuple[bytes, bytes]:
    """``packets`` whose main packet names the extended one in an attribute, as
    Photoshop writes it."""
    main, ext = packets
    guid = hashlib.md5(ext).hexdigest().upper().encode()
    note = b"<xmpNote:HasExtendedXMP>" + guid + b"</xmpNote:HasExtendedXMP></rdf:Description>"
    assert note in main
    return main.replace(b">" + note, b" xmpNote:HasExtendedXMP='" + guid + b"'/>"), ext


@pytest.mark.parametrize("packets", [_packets(), _as_attribute(_packets())],
                         ids=["element", "attribute"])
def test_a_jpeg_output_carries_the_extended_xmp(tmp_path: Path,
                                                packets: tuple[bytes, bytes]) -> None:
    # It kept the main packet only: a 96 KB description (Photoshop's history) was lost.
    src = load_image(_jpeg_with_extended_xmp(tmp_path / "x.jpg", packets=packets))
    with said_while() as said:
        out = save_like(tmp_path / "out.jpg", src.pixels, src)
    assert said == []
    back = load_image(out)
    assert back.warnings == [] and back.xmp == src.xmp
    assert back.xmp is not None and HISTORY in back.xmp and b"Harbour at dusk" in back.xmp
    assert _extended_packet(out) == packets[1]  # as the input had it, GUID and all


def test_exiftool_reads_a_jpeg_outputs_extended_xmp(tmp_path: Path) -> None:
    exiftool = shutil.which("exiftool")
    if exiftool is None:
        pytest.skip("exiftool is not installed")
    src = load_image(_jpeg_with_extended_xmp(tmp_path / "x.jpg"))
    out = save_like(tmp_path / "out.jpg", src.pixels, src)

    def tag(name: str) -> bytes:
        return subprocess.run([exiftool, "-b", f"-XMP-{name}", str(out)], check=True,
                              capture_output=True, timeout=60).stdout

    assert tag("dc:Description") == HISTORY and tag("dc:Title") == b"Harbour at dusk"
    assert subprocess.run([exiftool, "-s3", "-Warning", str(out)], check=True,
                          capture_output=True, timeout=60).stdout == b""


GPS = b"<exif:GPSLatitude>48,51.5N</exif:GPSLatitude>"
EXIF_NS = b"<rdf:Description rdf:about='' xmlns:exif='http://ns.adobe.com/exif/1.0/'>"


@pytest.mark.parametrize("packets", [
    _packets(ext_more=EXIF_NS + GPS + b"</rdf:Description>"),  # merged, and so seen, too
    _packets(outside=b"<!-- " + GPS + b" -->"),  # beyond its rdf:RDF: never merged
], ids=["in-a-description", "outside-the-descriptions"])
def test_strip_gps_leaves_out_xmp_whose_extended_packet_holds_a_location(
        tmp_path: Path, packets: tuple[bytes, bytes]) -> None:
    for name, given in (("plain", _packets()), ("gps", packets)):
        src = load_image(_jpeg_with_extended_xmp(tmp_path / f"{name}.jpg", packets=given))
        with said_while() as said:
            out = save_like(tmp_path / f"{name}-out.jpg", src.pixels, src, strip_gps=True)
        with Image.open(out) as im:
            app1 = [s for m, s in im.applist if m == "APP1"]
        if name == "plain":  # the same without a location is carried whole
            assert said == [] and HISTORY in (load_image(out).xmp or b"")
            assert _extended_packet(out) == given[1]
        else:
            assert said == [f"{out}: the input's XMP (rights, captions, keywords...) is left "
                            "out whole: it holds a GPS location, which --strip-gps removes"]
            assert not any(s.startswith((NS_MAIN, NS_EXT)) for s in app1)


TURNED = b"<rdf:Description rdf:about='' xmlns:tiff='http://ns.adobe.com/tiff/1.0/'>" \
    b"<tiff:Orientation>6</tiff:Orientation></rdf:Description>"
SIZE = b"<rdf:Description rdf:about='' xmlns:exif='http://ns.adobe.com/exif/1.0/' " \
    b"exif:PixelXDimension='32' exif:PixelYDimension='24'/>"


@pytest.mark.parametrize(("packets", "changed"), [
    (_packets(main_more=TURNED), False),  # the main packet is reset, the GUID stays
    (_packets(main_more=TURNED, ext_more=SIZE), True),  # its size swapped: a new GUID
    (_as_attribute(_packets(main_more=TURNED, ext_more=SIZE)), True),
], ids=["extended-unchanged", "extended-turned", "extended-turned-attribute"])
def test_a_turned_photos_extended_xmp_is_named_by_its_new_guid(
        tmp_path: Path, packets: tuple[bytes, bytes], changed: bool) -> None:
    src = load_image(_jpeg_with_extended_xmp(tmp_path / "x.jpg", packets=packets,
                                             orientation=6))
    assert src.size == (24, 32) and src.xmp is not None
    assert b"<tiff:Orientation>1</tiff:Orientation>" in src.xmp
    out = save_like(tmp_path / "out.jpg", src.pixels, src)
    extended = _extended_packet(out)
    assert (extended != packets[1]) is changed
    if changed:
        assert b"exif:PixelXDimension='24' exif:PixelYDimension='32'" in extended
    back = load_image(out)
    assert back.warnings == [] and back.xmp == src.xmp and HISTORY in back.xmp


WIDE = b"<rdf:Description rdf:about='' xmlns:exif='http://ns.adobe.com/exif/1.0/'>" \
    b"<exif:PixelXDimension>32</exif:PixelXDimension></rdf:Description>"
HIGH = b"<rdf:Description rdf:about='' xmlns:exif='http://ns.adobe.com/exif/1.0/'>" \
    b"<exif:PixelYDimension>24</exif:PixelYDimension></rdf:Description>"


def test_a_turned_photos_size_split_over_its_two_packets_is_swapped(tmp_path: Path) -> None:
    """The width in the main packet, the height in the extended one: neither packet has a
    pair to swap alone, so a JPEG output kept the sizes from before the turn while a PNG
    output (the merged XMP) had them swapped."""
    packets = _packets(main_more=TURNED + WIDE, ext_more=HIGH)
    src = load_image(_jpeg_with_extended_xmp(tmp_path / "x.jpg", packets=packets,
                                             orientation=6))
    assert src.xmp is not None and b"<exif:PixelXDimension>24<" in src.xmp
    out = save_like(tmp_path / "out.jpg", src.pixels, src)
    assert b"<exif:PixelYDimension>32</exif:PixelYDimension>" in _extended_packet(out)
    back = load_image(out)
    assert back.warnings == [] and back.xmp == src.xmp


def test_xmp_whose_main_packet_is_over_one_segment_is_dropped_and_said(tmp_path: Path) -> None:
    # No input can hold such a main packet; a caller of save_image can give one.
    title = b"<rdf:Description rdf:about='' xmlns:dc='http://purl.org/dc/elements/1.1/'>" \
        b"<dc:subject>" + b"long " * 14000 + b"</dc:subject></rdf:Description>"
    main, ext = _packets(main_more=title)
    with said_while() as said:
        out = save_image(tmp_path / "out.jpg", photo(24, 32), xmp=main + ext,
                         jpeg_xmp=(main, ext))
    assert said == [f"{out}: XMP too large for JPEG ({len(main + ext)} bytes); dropped"]
    with Image.open(out) as im:
        assert not any(m == "APP1" for m, _ in im.applist)


def test_extended_xmp_that_cannot_be_read_whole_is_said_lost(tmp_path: Path) -> None:
    src = load_image(_jpeg_with_extended_xmp(tmp_path / "x.jpg", skip_chunk=1))
    lost = [w for w in src.warnings if "extended XMP" in w]
    assert len(lost) == 1 and lost[0].startswith("its extended XMP (") and \
        "the part of its XMP beyond the main packet" in lost[0] and "not carried" in lost[0]
    assert src.xmp is not None and b"Harbour at dusk" in src.xmp  # the main packet stays


# --- the EXIF thumbnail of a photo turned upright ---------------------------------------

THUMB = b"\xff\xd8" + b"OLD-UNTURNED-THUMBNAIL" * 4 + b"\xff\xd9"


def _exif_with_thumbnail(orientation: int, thumb_at: int | None = None) -> bytes:
    """Raw EXIF (big-endian) whose IFD0 holds Orientation and links IFD1, which points at
    a JPEG thumbnail (``thumb_at``: a made-up offset instead of its own)."""
    ifd0 = struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0)
    ifd1_at = 8 + len(ifd0) + 4
    at = ifd1_at + 2 + 24 + 4 if thumb_at is None else thumb_at
    ifd1 = struct.pack(">H", 2) + struct.pack(">HHII", 0x0201, 4, 1, at) \
        + struct.pack(">HHII", 0x0202, 4, 1, len(THUMB))
    return (b"Exif\0\0MM\0*" + struct.pack(">I", 8) + ifd0 + struct.pack(">I", ifd1_at)
            + ifd1 + struct.pack(">I", 0) + THUMB)


def test_a_turned_photos_thumbnail_is_zeroed_not_only_unlinked() -> None:
    # Unlinked, its bytes stayed: carving tools still found the old, unturned picture.
    raw = _exif_with_thumbnail(6)
    fixed = _normalise_exif(raw)
    assert fixed is not None and len(fixed) == len(raw)
    assert THUMB not in fixed and fixed.endswith(bytes(len(THUMB)))
    assert fixed[:-len(THUMB) - 4] != raw[:-len(THUMB) - 4]  # the link is 0, orientation 1


def test_an_upright_photos_thumbnail_is_kept() -> None:
    raw = _exif_with_thumbnail(1)
    assert _normalise_exif(raw) == raw


@pytest.mark.parametrize("thumb_at", [5, 10_000, 2**32 - 4])
def test_a_thumbnail_offset_that_points_elsewhere_zeroes_nothing(thumb_at: int) -> None:
    raw = _exif_with_thumbnail(6, thumb_at)
    fixed = _normalise_exif(raw)
    assert fixed is not None and fixed.endswith(THUMB)  # unlinked, nothing else touched


def test_the_output_of_a_turned_photo_holds_no_thumbnail(tmp_path: Path) -> None:
    path = tmp_path / "turned.jpg"
    Image.fromarray(photo(24, 32)).save(path, quality=90, exif=_exif_with_thumbnail(6))
    src = load_image(path)
    assert src.size == (24, 32)
    for suffix in ("png", "jpg", "webp"):
        out = save_like(tmp_path / f"out.{suffix}", src.pixels, src)
        assert b"OLD-UNTURNED-THUMBNAIL" not in out.read_bytes()
