"""A JPEG's extended XMP (XMP Specification Part 3, 1.1.3.1): XMP over one APP1 segment,
which Adobe and ExifTool split into the main packet, in the standard XMP APP1 segment,
and an extended packet, in further APP1 segments (chunks of it, each headed by the
extension namespace, the packet's GUID, its full length and the chunk's offset). The
main packet names the extended one by that GUID, the MD5 digest of the extended packet,
in ``xmpNote:HasExtendedXMP``.

Read: :func:`with_extended_xmp` merges the extended packet into the main one (what PNG,
TIFF and WebP outputs hold whole) and keeps both packets as the file had them; written:
:func:`jpeg_xmp_segments` lays them out again for a JPEG output, and :func:`split_xmp`
splits one whole packet (from a PNG, TIFF or WebP) into the two."""

from __future__ import annotations

import hashlib
import io
import itertools
import re
import struct
from typing import NamedTuple
from xml.etree import ElementTree

from PIL import Image

_XMP_NAMESPACE = b"http://ns.adobe.com/xap/1.0/\x00"  # heads the standard XMP APP1 segment
_XMP_EXTENSION = b"http://ns.adobe.com/xmp/extension/\x00"  # then GUID, length, offset
_JPEG_MAX_SEGMENT = 65533  # a marker segment's data, its 2-byte length field aside
# The most of the extended packet one segment holds, as the specification gives it:
# 65533 less the length field's 2 bytes again and the 35 + 32 + 4 + 4 of the header.
_EXTENDED_CHUNK = 65400
# The main packet's note of it, as an element or an attribute (the GUID: 32 hex digits).
_HAS_EXTENDED = re.compile(rb"""\s*<(\w+:HasExtendedXMP)>\s*([0-9A-Fa-f]{32})\s*</\1>"""
                           rb"""|\s\w+:HasExtendedXMP\s*=\s*["']([0-9A-Fa-f]{32})["']""")
_RDF_BODY = re.compile(rb"<rdf:RDF\b[^>]*>(.*)</rdf:RDF>", re.S)

_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_META = "adobe:ns:meta/"  # x:xmpmeta
_XML = "http://www.w3.org/XML/1998/namespace"  # xml:lang, bound without a declaration
_NOTE = "http://ns.adobe.com/xmp/note/"
_RDF_TAG, _DESCRIPTION = f"{{{_RDF}}}RDF", f"{{{_RDF}}}Description"
_ABOUT, _NOTE_TAG = f"{{{_RDF}}}about", f"{{{_NOTE}}}HasExtendedXMP"
# Kept in the main packet first, where small: what readers that know no extended XMP
# show and search (captions, keywords, rights, dates, camera data).
_MAIN_FIRST = frozenset({
    "http://purl.org/dc/elements/1.1/", "http://ns.adobe.com/xap/1.0/",
    "http://ns.adobe.com/xap/1.0/rights/", "http://ns.adobe.com/photoshop/1.0/",
    "http://ns.adobe.com/exif/1.0/", "http://ns.adobe.com/tiff/1.0/"})
_MAIN_BUDGET = 32768  # the main packet's properties: well under its 65,504 bytes
_MAIN_PROPERTY = 4096  # the largest property kept there
_WRAPPER = (b"<?xpacket begin='\xef\xbb\xbf' id='W5M0MpCehiHzreSzNTczkc9d'?>\n",
            b"\n<?xpacket end='w'?>")


class JpegXmp(NamedTuple):
    """A JPEG's XMP as :func:`with_extended_xmp` reads it.

    Attributes:
        xmp: The XMP packet, its extended part merged in where there is one; or None.
        main: Where an extended packet was merged in, the main packet as the file had it
            (naming the extended packet); else None.
        extended: The extended packet as the file had it, where merged in; else None.
        lost: The bytes of extended XMP that could not be merged (incomplete, not named
            by the main packet, not well-formed); 0 where none.
    """

    xmp: bytes | None
    main: bytes | None = None
    extended: bytes | None = None
    lost: int = 0


def with_extended_xmp(im: Image.Image, xmp: bytes | None) -> JpegXmp:
    """A JPEG's XMP with its extended part merged in: its descriptions go into the main
    packet's ``rdf:RDF``, which no longer names it. ``xmp``: the main packet (Pillow's
    ``info["xmp"]``)."""
    chunks = [s[len(_XMP_EXTENSION):] for m, s in getattr(im, "applist", [])
              if m == "APP1" and s.startswith(_XMP_EXTENSION)]
    named = _HAS_EXTENDED.search(xmp or b"")
    lost = sum(max(len(c) - 40, 0) for c in chunks)
    if not chunks or not xmp or not named:
        return JpegXmp(xmp, lost=lost)
    guid = (named.group(2) or named.group(3)).upper()
    parts, total = {}, -1
    for chunk in chunks:
        if len(chunk) >= 40 and chunk[:32].upper() == guid:
            total, offset = struct.unpack_from(">II", chunk, 32)
            parts[offset] = chunk[40:]
    at = 0
    for offset in sorted(parts):  # the chunks must cover the packet, end to end
        at = at + len(parts[offset]) if offset == at else -1
    extended = b"".join(parts[k] for k in sorted(parts))
    body = _RDF_BODY.search(extended)
    main = xmp[: named.start()] + xmp[named.end() :]
    end = main.rfind(b"</rdf:RDF>")
    if at != total or body is None or end < 0 or b"<!DOCTYPE" in xmp + body.group(1):
        return JpegXmp(xmp, lost=lost)
    merged = main[:end] + body.group(1) + main[end:]
    try:  # a prefix bound only outside the extended packet's descriptions fails here
        ElementTree.fromstring(merged)
    except ElementTree.ParseError:
        return JpegXmp(xmp, lost=lost)
    return JpegXmp(merged, xmp, extended)


def jpeg_xmp_segments(main: bytes, extended: bytes) -> bytes | None:
    """The APP1 segments (markers included) that hold XMP split as :func:`with_extended_xmp`
    read it: ``main`` in the standard XMP segment, then ``extended`` in chunks at rising
    offsets. The GUID is the MD5 digest of ``extended`` as written, set in ``main``'s note
    too: a packet changed since it was read (its orientation reset) is named anew.

    Returns None where ``main`` does not fit one segment or names no extended packet."""
    guid = hashlib.md5(extended, usedforsecurity=False).hexdigest().upper().encode("ascii")
    named = _naming(main, guid)
    if named is None or len(_XMP_NAMESPACE) + len(named) > _JPEG_MAX_SEGMENT:
        return None
    segments = [_app1(_XMP_NAMESPACE + named)]
    head = _XMP_EXTENSION + guid + struct.pack(">I", len(extended))
    for at in range(0, len(extended), _EXTENDED_CHUNK):
        chunk = extended[at : at + _EXTENDED_CHUNK]
        segments.append(_app1(head + struct.pack(">I", at) + chunk))
    return b"".join(segments)


def split_xmp(packet: bytes) -> tuple[bytes, bytes] | None:
    """``packet``, one whole XMP packet too large for a JPEG's XMP segment, split as the
    XMP Specification lays out extended XMP (:func:`jpeg_xmp_segments` writes the two).

    The main packet keeps the small top-level properties, those of dc:, xmp:, xmpRights:,
    photoshop:, exif: and tiff: first (what readers that know no extended XMP show and
    search), up to a budget well under one segment, and names the extended packet in
    ``xmpNote:HasExtendedXMP``; the extended packet, a full serialization without the
    packet wrapper, holds every other property. Each description there declares the
    namespaces it uses, as it must to be merged into the main packet when read; prefixes
    are the packet's own (``rdf`` and ``x`` always, as readers look for them).

    Returns (main, extended); None where ``packet`` is not well-formed XMP, which cannot
    be split safely."""
    if b"<!DOCTYPE" in packet:  # (entities: refused, as where the two are merged)
        return None
    try:
        root, names = _parsed(packet)
        rdf = root if root.tag == _RDF_TAG else root.find(_RDF_TAG)
        if rdf is None:
            return None
        main_nodes, ext_nodes = _split_descriptions(rdf, names)
        extended = (f"<x:xmpmeta xmlns:x={_quoted(_META)}><rdf:RDF xmlns:rdf={_quoted(_RDF)}>"
                    + "".join(_xml(node, names) for node in ext_nodes)
                    + "</rdf:RDF></x:xmpmeta>").encode("utf-8")
        about = next((d.get(_ABOUT) for d in rdf if d.tag == _DESCRIPTION), None) or ""
        note = ElementTree.Element(_DESCRIPTION, {_ABOUT: about})
        guid = hashlib.md5(extended, usedforsecurity=False).hexdigest().upper()
        ElementTree.SubElement(note, _NOTE_TAG).text = guid
        main_rdf = ElementTree.Element(rdf.tag, rdf.attrib)
        main_rdf.extend([note, *main_nodes])
        if rdf is root:
            main_root = ElementTree.Element(f"{{{_META}}}xmpmeta")
            main_root.append(main_rdf)
        else:  # (the root's attributes, x:xmptk, and whatever it holds beside rdf:RDF)
            main_root = ElementTree.Element(root.tag, root.attrib)
            main_root.extend(main_rdf if child is rdf else child for child in root)
        main = _WRAPPER[0] + _xml(main_root, names).encode("utf-8") + _WRAPPER[1]
    # (an encoding Python does not know; nesting beyond any real XMP)
    except (ElementTree.ParseError, LookupError, RecursionError):
        return None
    return main, extended


def _parsed(packet: bytes) -> tuple[ElementTree.Element, dict[str, str]]:
    """``packet``'s root element, and the prefix to write for each namespace URI: the
    first one ``packet`` binds to it, where no other URI took it first."""
    names = {_RDF: "rdf", _META: "x", _XML: "xml"}
    root = None
    for event, item in ElementTree.iterparse(io.BytesIO(packet), ("start", "start-ns")):
        if event == "start-ns":
            _bind(names, *item)
        elif root is None:
            root = item
    _bind(names, "xmpNote", _NOTE)
    assert root is not None  # (a well-formed document has one)
    return root, names


def _bind(names: dict[str, str], prefix: str, uri: str) -> None:
    if uri in names:
        return
    taken = set(names.values())
    names[uri] = prefix if prefix and prefix not in taken else \
        next(f"ns{i}" for i in itertools.count(1) if f"ns{i}" not in taken)


def _split_descriptions(rdf: ElementTree.Element, names: dict[str, str]
                        ) -> tuple[list[ElementTree.Element], list[ElementTree.Element]]:
    """The descriptions of the main packet and of the extended one: each of ``rdf``'s
    top-level properties goes into one of the two (:func:`_chosen`), in a description
    with the ``rdf:about`` of the one it was in. A typed node goes whole into the
    extended packet; a note naming an earlier extended packet is left out."""
    properties = [(node, key) for node in rdf if node.tag == _DESCRIPTION
                  for key in [*node.attrib, *node] if _is_property(key)]
    chosen = _chosen(properties, names)
    ext_nodes = [node for node in rdf if node.tag != _DESCRIPTION]
    main_nodes: list[ElementTree.Element] = []
    split: dict[int, tuple[ElementTree.Element, ElementTree.Element]] = {}
    for i, (node, key) in enumerate(properties):
        if id(node) not in split:
            shape = {k: v for k, v in node.attrib.items() if _uri(k) in ("", _RDF, _XML)}
            split[id(node)] = ElementTree.Element(node.tag, shape), \
                ElementTree.Element(node.tag, shape)
            main_nodes.append(split[id(node)][0])
            ext_nodes.append(split[id(node)][1])
        into = split[id(node)][0 if i in chosen else 1]
        if isinstance(key, str):
            into.set(key, node.attrib[key])
        else:
            into.append(key)
    return [d for d in main_nodes if _has_properties(d)], \
        [d for d in ext_nodes if d.tag != _DESCRIPTION or _has_properties(d)]


def _chosen(properties: list[tuple[ElementTree.Element, str | ElementTree.Element]],
            names: dict[str, str]) -> set[int]:
    """Which of ``properties`` (a description, and an attribute's name or an element of
    it) the main packet keeps: those of :data:`_MAIN_FIRST` first, then the rest, in
    packet order, each at most :data:`_MAIN_PROPERTY` long, while they fit its budget."""
    def size(node: ElementTree.Element, key: str | ElementTree.Element) -> int:
        text = f" {_name(key, names)}={_quoted(node.attrib[key])}" \
            if isinstance(key, str) else _xml(key, names)
        return len(text.encode("utf-8"))

    def tag(key: str | ElementTree.Element) -> str:
        return key if isinstance(key, str) else key.tag

    chosen, total = set(), 0
    order = sorted(range(len(properties)),
                   key=lambda i: (_uri(tag(properties[i][1])) not in _MAIN_FIRST, i))
    for i in order:
        n = size(*properties[i])
        if n <= _MAIN_PROPERTY and total + n <= _MAIN_BUDGET:
            chosen.add(i)
            total += n
    return chosen


def _is_property(key: str | ElementTree.Element) -> bool:
    """Whether ``key``, an attribute's name or an element in a description, is a property
    to carry: not its ``rdf:about``, ``xml:lang`` and such, nor a stale extended XMP note."""
    name = key if isinstance(key, str) else key.tag
    return _uri(name) not in ("", _RDF, _XML) and name != _NOTE_TAG


def _has_properties(description: ElementTree.Element) -> bool:
    return len(description) > 0 or any(_is_property(k) for k in description.attrib)


def _xml(elem: ElementTree.Element, names: dict[str, str]) -> str:
    """``elem`` as XML that stands alone: its start tag declares the namespaces used in
    it (ElementTree's writer declares them at the root only, and writes ns0 for a
    prefix it was not told globally)."""
    uris = dict.fromkeys(_uri(n) for e in elem.iter() for n in (e.tag, *e.attrib))
    return _element(elem, names, "".join(f" xmlns:{names[u]}={_quoted(u)}"
                                         for u in uris if u not in ("", _XML)))


def _element(elem: ElementTree.Element, names: dict[str, str], declared: str = "") -> str:
    tag = _name(elem.tag, names)
    attributes = "".join(f" {_name(k, names)}={_quoted(v)}" for k, v in elem.attrib.items())
    inner = "".join(_element(child, names) + _escaped(child.tail or "") for child in elem)
    return f"<{tag}{declared}{attributes}>{_escaped(elem.text or '')}{inner}</{tag}>"


def _name(name: str, names: dict[str, str]) -> str:
    """ElementTree's ``{uri}local`` as ``prefix:local``."""
    uri = _uri(name)
    return f"{names[uri]}:{name.rpartition('}')[2]}" if uri else name


def _uri(name: str) -> str:
    return name[1:].rpartition("}")[0] if name.startswith("{") else ""


def _escaped(text: str) -> str:
    # A carriage return as a reference: a parser reads a bare one as a line feed.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") \
        .replace("\r", "&#13;")


def _quoted(value: str) -> str:
    # Line feeds and tabs too: a parser reads them as spaces in an attribute.
    escaped = _escaped(value).replace('"', "&quot;").replace("\n", "&#10;") \
        .replace("\t", "&#9;")
    return f'"{escaped}"'


def _naming(main: bytes, guid: bytes) -> bytes | None:
    """``main`` with its ``HasExtendedXMP`` note set to ``guid``; None where it has none."""
    note = _HAS_EXTENDED.search(main)
    if note is None:
        return None
    value = 2 if note.group(2) else 3
    return main[: note.start(value)] + guid + main[note.end(value) :]


def _app1(payload: bytes) -> bytes:
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
