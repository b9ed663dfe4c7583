"""XMP too large for a JPEG's XMP segment, held whole by a PNG (a Lightroom export with
a long history, a keyword list), goes into a JPEG output as extended XMP (XMP
Specification Part 3, 1.1.3.1): it was dropped, with a warning."""

from __future__ import annotations

import hashlib
import re
import shutil
import struct
import subprocess
from pathlib import Path
from xml.etree import ElementTree

import pytest
from PIL import Image

from rbqe.io import load_image, save_image, save_like
from rbqe.io.diagnostics import said_while
from rbqe.io.extended_xmp import split_xmp
from tests.helpers import photo

NS_MAIN = b"http://ns.adobe.com/xap/1.0/\0"
NS_EXT = b"http://ns.adobe.com/xmp/extension/\0"
NOTE = "{http://ns.adobe.com/xmp/note/}HasExtendedXMP"
KEYWORDS = [f"keyword {i:05d} & <{'é' if i % 2 else '日本'}>" for i in range(2200)]
NOTES = "A long custom property, line after line.\n" * 1000  # 41 KB, one property


def _packet(keywords: list[str] = KEYWORDS, notes: str = NOTES) -> bytes:
    """A whole XMP packet of about 150 KB in several namespaces, as Lightroom writes
    them: small properties as attributes and elements, a long keyword bag, a long
    property of a custom namespace."""
    bag = "".join(f"<rdf:li>{_escaped(k)}</rdf:li>" for k in keywords)
    return f"""<?xpacket begin='\ufeff' id='W5M0MpCehiHzreSzNTczkc9d'?>
<x:xmpmeta xmlns:x='adobe:ns:meta/' x:xmptk='Adobe XMP Core 7.0'>
 <rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'>
  <rdf:Description rdf:about=''
    xmlns:xmp='http://ns.adobe.com/xap/1.0/'
    xmlns:photoshop='http://ns.adobe.com/photoshop/1.0/'
    xmlns:tiff='http://ns.adobe.com/tiff/1.0/'
    xmlns:crs='http://ns.adobe.com/camera-raw-settings/1.0/'
    xmp:CreateDate='2024-05-01T18:30:00' photoshop:City='Saint-Malo' tiff:Make='Fujifilm'
    crs:Exposure2012='+0.35' crs:Contrast2012='-12'>
   <xmp:Rating>4</xmp:Rating>
  </rdf:Description>
  <rdf:Description rdf:about='' xmlns:dc='http://purl.org/dc/elements/1.1/'>
   <dc:title><rdf:Alt><rdf:li xml:lang='x-default'>Harbour at dusk</rdf:li></rdf:Alt></dc:title>
   <dc:rights><rdf:Alt><rdf:li xml:lang='x-default'>© A. Photographer "AP"</rdf:li>
   </rdf:Alt></dc:rights>
   <dc:subject><rdf:Bag>{bag}</rdf:Bag></dc:subject>
  </rdf:Description>
  <rdf:Description rdf:about='' xmlns:notes='http://example.com/ns/notes/1.0/'>
   <notes:Notes>{_escaped(notes)}</notes:Notes>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end='w'?>""".encode()


def _escaped(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _triples(packet: bytes) -> set[tuple[str, str, str]]:
    """What ``packet`` says, whatever its prefixes and layout: (namespace URI, local
    name, text) of each element and (URI, name, value) of each attribute; the extended
    XMP note left out."""
    def split(name: str) -> tuple[str, str]:
        uri, _, local = name[1:].rpartition("}") if name.startswith("{") else ("", "", name)
        return uri, local

    root = ElementTree.fromstring(packet)
    elements = {(*split(e.tag), (e.text or "").strip()) for e in root.iter() if e.tag != NOTE}
    attributes = {(*split(k), v) for e in root.iter() for k, v in e.attrib.items()}
    return elements | attributes


def _app1(path: Path) -> list[bytes]:
    """The APP1 segments' data of the JPEG at ``path`` (as Pillow lists them: less the
    2-byte length field)."""
    with Image.open(path) as im:
        return [s for m, s in im.applist if m == "APP1"]


def _packets(path: Path) -> tuple[bytes, bytes]:
    """The main and extended XMP packets of the JPEG at ``path``, checked against the XMP
    Specification: every APP1 segment at most 65535 bytes (its length field), the
    extended packet's chunks at rising offsets that cover it, headed by its length and
    GUID, the MD5 digest of the packet, which the main packet names."""
    app1 = _app1(path)
    assert all(len(s) + 2 <= 65535 for s in app1)
    mains = [s[len(NS_MAIN):] for s in app1 if s.startswith(NS_MAIN)]
    exts = [s[len(NS_EXT):] for s in app1 if s.startswith(NS_EXT)]
    assert len(mains) == 1 and len(exts) >= 2
    heads = [struct.unpack_from(">32sII", s) for s in exts]
    extended = b"".join(s[40:] for s in exts)
    guid = hashlib.md5(extended).hexdigest().upper().encode()
    assert {h[0] for h in heads} == {guid} and {h[1] for h in heads} == {len(extended)}
    assert [h[2] for h in heads] == [sum(len(s) - 40 for s in exts[:i]) for i in range(len(exts))]
    assert re.search(rb"<xmpNote:HasExtendedXMP>" + guid + rb"</xmpNote:HasExtendedXMP>",
                     mains[0])
    return mains[0], extended


def test_a_pngs_xmp_over_one_segment_goes_into_a_jpeg_output_whole(tmp_path: Path) -> None:
    # A PNG's 150 KB of XMP (keywords, a long note) was dropped from every JPEG output.
    packet = _packet()
    assert 140_000 < len(packet) < 200_000
    src = load_image(save_image(tmp_path / "in.png", photo(24, 32), fmt="png", xmp=packet))
    assert src.xmp is not None and _triples(src.xmp) == _triples(packet)
    with said_while() as said:
        out = save_like(tmp_path / "out.jpg", src.pixels, src)
    assert said == []
    back = load_image(out)
    assert back.warnings == [] and back.xmp is not None
    assert _triples(back.xmp) == _triples(packet)  # every property, its value too
    main, extended = _packets(out)
    # The small properties readers show stay in the main packet, the long ones go.
    assert b"Harbour at dusk" in main and b"photoshop:City=\"Saint-Malo\"" in main
    assert b"keyword 00000" in extended and b"keyword 00000" not in main
    assert b"<notes:Notes>" in extended and b"notes" not in main
    # The extended packet is a full serialization, its descriptions standing alone.
    assert extended.startswith(b"<x:xmpmeta ") and b"<rdf:RDF " in extended
    assert ElementTree.fromstring(extended) is not None


def test_exiftool_reads_the_properties_only_the_extended_packet_holds(tmp_path: Path) -> None:
    exiftool = shutil.which("exiftool")
    if exiftool is None:
        pytest.skip("exiftool is not installed")
    src = load_image(save_image(tmp_path / "in.png", photo(24, 32), fmt="png", xmp=_packet()))
    out = save_like(tmp_path / "out.jpg", src.pixels, src)

    def tag(name: str) -> str:  # (-m: all of a list, not its first 1000 items)
        return subprocess.run([exiftool, "-m", "-b", "-sep", "|", f"-XMP-{name}", str(out)],
                              check=True, capture_output=True, timeout=60).stdout.decode()

    assert tag("notes:Notes") == NOTES and tag("dc:Subject").split("|") == KEYWORDS
    assert tag("dc:Title") == "Harbour at dusk" and tag("photoshop:City") == "Saint-Malo"
    # No warning but that it lists the first 1000 keywords only unless told (-m).
    warnings = subprocess.run([exiftool, "-s3", "-a", "-Warning", str(out)], check=True,
                              capture_output=True, timeout=60).stdout.decode().splitlines()
    assert warnings == ["[Minor] Extracted only 1000 dc:subject items. Ignore minor errors "
                        "to extract all"]


def test_xmp_over_one_segment_that_is_not_well_formed_is_dropped_and_said(
        tmp_path: Path) -> None:
    packet = _packet().replace(b"</dc:subject>", b"")  # not closed: cannot be split
    src = load_image(save_image(tmp_path / "in.png", photo(24, 32), fmt="png", xmp=packet))
    assert src.xmp == packet
    with said_while() as said:
        out = save_like(tmp_path / "out.jpg", src.pixels, src)
    assert said == [f"{out}: XMP too large for JPEG ({len(packet)} bytes); dropped"]
    assert not any(s.startswith((NS_MAIN, NS_EXT)) for s in _app1(out))
    assert load_image(out).xmp is None


def test_a_split_keeps_the_packets_prefixes_and_names_only_its_own_extended_packet() -> None:
    # A note left from an earlier split names nothing now; ElementTree would write the
    # prefixes as ns0, ns1... unless told them globally.
    stale = b"<rdf:Description rdf:about='' xmlns:xmpNote='http://ns.adobe.com/xmp/note/' " \
        b"xmpNote:HasExtendedXMP='00000000000000000000000000000000'/>"
    packet = _packet().replace(b"</rdf:RDF>", stale + b"</rdf:RDF>")
    split = split_xmp(packet)
    assert split is not None
    main, extended = split
    guid = hashlib.md5(extended).hexdigest().upper().encode()
    assert re.findall(rb"HasExtendedXMP(?:>|=['\"])(\w+)", main) == [guid]
    assert b"0000000000" not in extended
    assert b"ns0:" not in main + extended and b"<dc:subject>" in extended
    assert b"<crs:" not in main + extended and b" crs:Exposure2012=\"+0.35\"" in main
