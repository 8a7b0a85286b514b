"""Is a received object whole? A strict walk of its encoding, and the Type 1 attributes of its IOD.

:func:`check_object` walks every data element of a Part 10 file (or of the dataset bytes at an
offset) in the declared transfer syntax, reading element headers only (values are skipped by
offset through a memory map, so a 1 GB object costs its headers, not its size), and reports:

* **unreadable** problems, after which the object cannot be trusted to open anywhere: an element or
  value running past the end of its item, sequence or file; a sequence or item not terminated;
  no valid VR in an Explicit VR transfer syntax (transfer syntax mislabelled); undefined length
  where only a sequence may have it; Pixel Data shorter than Rows × Columns × frames × samples ×
  bits allocated (native), or encapsulated fragments that are malformed, unterminated or fewer than
  the frames; Pixel Data whose Image Pixel description (Rows, Columns, Samples per Pixel,
  Photometric Interpretation, Bits Allocated/Stored, Pixel Representation, Planar Configuration) is
  missing or impossible, so that no viewer can draw it;
* **non-conformant** findings, with which the object still reads: Type 1 attributes of the IOD's
  mandatory modules missing or empty (PS3.3; the module tables are highdicom's, built from the
  standard), elements out of ascending order, odd value lengths, extra bytes after the pixels.

pydicom's own reader is lenient on purpose (a short value is returned short, an invalid VR switches
the rest of the file to Implicit VR), so it cannot tell a truncated or mislabelled object from a
good one; hence this walk. Finding messages name the attribute (tag and keyword) and the rule.
"""

from __future__ import annotations

import mmap
import os
import struct
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from perfnode.dicom.findings import Finding, Severity, tag_str

UNDEFINED = 0xFFFFFFFF
ITEM, ITEM_END, SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
PIXEL_DATA, FLOAT_PIXEL_DATA, DOUBLE_PIXEL_DATA = 0x7FE00010, 0x7FE00008, 0x7FE00009
ROWS, COLUMNS, SAMPLES, BITS_ALLOCATED, FRAMES = 0x00280010, 0x00280011, 0x00280002, 0x00280100, 0x00280008
BITS_STORED, HIGH_BIT, PIXEL_REPRESENTATION = 0x00280101, 0x00280102, 0x00280103
PHOTOMETRIC, PLANAR_CONFIGURATION = 0x00280004, 0x00280006
#: PS3.3 C.7.6.3.1.2 Photometric Interpretation defined terms.
PHOTOMETRIC_TERMS = frozenset({
    "MONOCHROME1", "MONOCHROME2", "PALETTE COLOR", "RGB", "YBR_FULL", "YBR_FULL_422", "YBR_PARTIAL_422",
    "YBR_PARTIAL_420", "YBR_ICT", "YBR_RCT", "XYB", "HSV", "ARGB", "CMYK"})
VALID_VRS = frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT "
    b"UV".split())
LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ UC UN UR UT UV".split())
#: Deeper nesting than this is refused (no real object comes close; a hostile one could try).
MAX_DEPTH = 32
#: A deflated dataset may inflate to at most this many bytes.
MAX_INFLATED = 512 << 20
RULE_ENCODING = "PS3.5 7"
RULE_PIXELS = "PS3.5 8, PS3.3 C.7.6.3"


class Unreadable(Exception):
    """The object's encoding is broken (the message names the element and the rule)."""

    def __init__(self, message: str, tag: int | None = None, rule: str = RULE_ENCODING) -> None:
        where = f"{tag_str(tag)} {keyword_for_tag(tag) or ''}".strip() + ": " if tag is not None else ""
        super().__init__(where + message)
        self.tag = tag
        self.rule = rule

    @property
    def finding(self) -> Finding:
        return Finding.make(Severity.ERROR, self.tag, str(self), "readable encoding", self.rule)


@dataclass(frozen=True)
class _Top:
    vr: bytes | None
    offset: int
    length: int
    items: int = 0


@dataclass
class Report:
    """The outcome of :func:`check_object`: empty ``findings`` means conformant as far as checked."""

    findings: list[Finding] = field(default_factory=list)
    elements: int = 0
    fragments: int | None = None
    #: Top-level elements seen (tag → VR, offset, length, items), for :meth:`check_type1`.
    top: dict[int, _Top] = field(default_factory=dict, repr=False)

    def nonconformant(self, tag: int | None, found: str, expected: str, rule: str) -> None:
        self.findings.append(Finding.make(Severity.WARNING, tag, found, expected, rule))

    def check_type1(self, sop_class: str) -> Report:
        """Add a finding for each Type 1 attribute of the SOP class's IOD that is missing or empty."""
        for tag, module in type1_attributes(sop_class):
            top = self.top.get(tag)
            if top is None:
                self.nonconformant(tag, "missing", f"present (Type 1 in the {module} module)", "PS3.3")
            elif top.length == 0 or (top.vr == b"SQ" and top.length == UNDEFINED and top.items == 0):
                self.nonconformant(tag, "empty", f"a value (Type 1 in the {module} module)", "PS3.3")
        return self

    @property
    def summary(self) -> str:
        """One line for a status comment: the first finding, and how many more."""
        if not self.findings:
            return ""
        f = self.findings[0]
        more = f" (+{len(self.findings) - 1} more)" if len(self.findings) > 1 else ""
        return f"{f.attribute} {f.found}{more}".strip()


def check_object(path: str | Path, transfer_syntax: str, offset: int | None = None,
                 sop_class: str | None = None) -> Report:
    """Walk the dataset of ``path`` (starting after its File Meta Information, or at ``offset``).

    Raises :class:`Unreadable` at the first encoding problem; returns a :class:`Report` of the
    non-conformant findings otherwise (Type 1 checked when ``sop_class`` is given).
    """
    ts = UID(transfer_syntax)
    with open(path, "rb") as fp:
        size = os.fstat(fp.fileno()).st_size
        start = _dataset_start(fp, size) if offset is None else offset
        if start >= size:
            raise Unreadable("no dataset after the File Meta Information")
        if ts == DeflatedExplicitVRLittleEndian:
            fp.seek(start)
            buf: bytes | mmap.mmap = _inflate(fp)
            start, end = 0, len(buf)
        else:
            buf = mmap.mmap(fp.fileno(), 0, access=mmap.ACCESS_READ)
            end = size
        try:
            walker = _Walker(buf, implicit=ts.is_implicit_VR, little=ts.is_little_endian,
                             encapsulated=ts.is_encapsulated)
            walker.dataset(start, end, depth=0, until_item_end=False)
            report = walker.report
            report.top = walker.top
            walker.check_pixels()
            if sop_class:
                report.check_type1(sop_class)
            return report
        finally:
            if isinstance(buf, mmap.mmap):
                buf.close()


def _dataset_start(fp: BinaryIO, size: int) -> int:
    """Offset of the dataset after the 128-byte preamble, "DICM" and the group 2 elements."""
    head = fp.read(144)
    if len(head) < 144 or head[128:132] != b"DICM":
        raise Unreadable("no Part 10 preamble and 'DICM' prefix (PS3.10 7.1)")
    if head[132:136] == b"\x02\x00\x00\x00" and head[136:138] == b"UL":
        meta_length: int = struct.unpack_from("<I", head, 140)[0]
        return 144 + meta_length
    pos = 132  # no group length: walk the group 2 elements (always Explicit VR Little Endian)
    fp.seek(pos)
    while pos + 8 <= size:
        fp.seek(pos)
        h = fp.read(12)
        group = struct.unpack_from("<H", h)[0]
        if group != 2:
            return pos
        vr = h[4:6]
        length = struct.unpack_from("<I", h, 8)[0] if vr in LONG_VRS else struct.unpack_from("<H", h, 6)[0]
        pos += (12 if vr in LONG_VRS else 8) + length
    return pos


def _inflate(fp: BinaryIO) -> bytes:
    d = zlib.decompressobj(-zlib.MAX_WBITS)
    out = bytearray()
    while chunk := fp.read(1 << 20):
        out += d.decompress(chunk, MAX_INFLATED + 1 - len(out))
        if len(out) > MAX_INFLATED:
            raise Unreadable(f"the deflated dataset inflates past {MAX_INFLATED} bytes")
    try:
        out += d.flush()
    except zlib.error as exc:
        raise Unreadable(f"deflated dataset broken: {exc}") from exc
    if not d.eof:
        raise Unreadable("deflated dataset cut short (no end of the deflate stream)")
    return bytes(out)


@lru_cache(maxsize=4096)
def _dict_vr(tag: int) -> bytes | None:
    try:
        return dictionary_VR(tag).split(" ")[0].encode()
    except KeyError:
        return None


class _Walker:
    def __init__(self, buf: bytes | mmap.mmap, implicit: bool, little: bool, encapsulated: bool) -> None:
        self.buf = buf
        self.implicit = implicit
        self.encapsulated = encapsulated
        e = "<" if little else ">"
        self.tag_len = struct.Struct(e + "HHL").unpack_from  # implicit element / item header
        self.explicit = struct.Struct(e + "HH2sH").unpack_from
        self.u32 = struct.Struct(e + "L").unpack_from
        self.u16 = struct.Struct(e + "H").unpack_from
        self.report = Report()
        self.top: dict[int, _Top] = {}
        self._odd_reported = False
        self._order_reported = False

    # -- datasets, sequences, items ---------------------------------------------------------------
    def dataset(self, pos: int, end: int, depth: int, until_item_end: bool) -> int:
        if depth > MAX_DEPTH:
            raise Unreadable(f"sequences nested deeper than {MAX_DEPTH}")
        buf, last = self.buf, -1
        while True:
            if pos >= end:
                if until_item_end:
                    raise Unreadable(f"item of undefined length not terminated: no Item Delimitation "
                                     f"Item (FFFE,E00D) before the end at byte {end}")
                if pos > end:
                    raise Unreadable(f"element runs past the end of its container (byte {end})")
                return pos
            if pos + 8 > end:
                raise Unreadable(f"element header cut short at byte {pos} ({end - pos} bytes left)")
            if self.implicit:
                group, elem, length = self.tag_len(buf, pos)
                tag = group << 16 | elem
                vr = _dict_vr(tag)
                hdr = 8
            else:
                group, elem, vr, length = self.explicit(buf, pos)
                tag = group << 16 | elem
                hdr = 8
                if group == 0xFFFE:
                    vr = None
                    length = self.u32(buf, pos + 4)[0]
                elif vr not in VALID_VRS:
                    raise Unreadable(f"no valid VR ({bytes(vr)!r}) at byte {pos} in an Explicit VR transfer "
                                     f"syntax (transfer syntax mislabelled, or the data corrupt)", tag)
                elif vr in LONG_VRS:
                    if pos + 12 > end:
                        raise Unreadable(f"element header cut short at byte {pos}", tag)
                    length = self.u32(buf, pos + 8)[0]
                    hdr = 12
            if tag == ITEM_END:
                if until_item_end:
                    return pos + 8
                raise Unreadable(f"Item Delimitation Item at byte {pos} outside an item")
            if tag in (ITEM, SEQ_END):
                raise Unreadable(f"{tag_str(tag)} item tag at byte {pos} where a data element was expected")
            if tag <= last and not self._order_reported:
                self._order_reported = True
                self.report.nonconformant(tag, f"after {tag_str(last)}", "ascending tag order", "PS3.5 7.1")
            last = tag
            self.report.elements += 1
            vpos = pos + hdr
            items = 0
            if length == UNDEFINED:
                if vr == b"SQ" or vr == b"UN" or (vr is None and self._items_follow(vpos, end)):
                    pos, items = self.sequence(vpos, end, depth + 1, undefined=True, tag=tag)
                elif depth == 0 and tag == PIXEL_DATA and vr in (b"OB", b"OW", None):
                    pos = self.fragments(vpos, end)
                else:
                    raise Unreadable(f"undefined length for VR {(vr or b'?').decode(errors='replace')} "
                                     f"(only sequences and encapsulated Pixel Data)", tag)
            else:
                if vpos + length > end:
                    container = "dataset" if depth == 0 else "item"
                    raise Unreadable(f"value of {length} bytes runs past the end of its {container} "
                                     f"({max(0, end - vpos)} bytes left)", tag)
                if length & 1 and not self._odd_reported:
                    self._odd_reported = True
                    self.report.nonconformant(tag, f"value length {length} (odd)", "even value length",
                                              "PS3.5 7.1.1")
                if vr == b"SQ":
                    _, items = self.sequence(vpos, vpos + length, depth + 1, undefined=False, tag=tag)
                pos = vpos + length
            if depth == 0:
                self.top[tag] = _Top(vr, vpos, length, items)

    def _items_follow(self, pos: int, end: int) -> bool:
        return pos + 8 <= end and self.tag_len(self.buf, pos)[:2] == (0xFFFE, 0xE000)

    def sequence(self, pos: int, end: int, depth: int, undefined: bool, tag: int) -> tuple[int, int]:
        items = 0
        while True:
            if not undefined and pos == end:
                return pos, items
            if pos + 8 > end:
                raise Unreadable("sequence not terminated: no Sequence Delimitation Item (FFFE,E0DD) "
                                 "before the end" if undefined else
                                 f"sequence item header cut short at byte {pos}", tag)
            group, elem, length = self.tag_len(self.buf, pos)
            item = group << 16 | elem
            if item == SEQ_END:
                if undefined:
                    return pos + 8, items
                raise Unreadable(f"Sequence Delimitation Item in a sequence of defined length at byte {pos}",
                                 tag)
            if item != ITEM:
                raise Unreadable(f"{tag_str(item)} at byte {pos} where a sequence Item (FFFE,E000) was "
                                 f"expected", tag)
            items += 1
            if length == UNDEFINED:
                pos = self.dataset(pos + 8, end, depth, until_item_end=True)
            else:
                if pos + 8 + length > end:
                    raise Unreadable(f"item {items} of {length} bytes runs past the end of its sequence", tag)
                self.dataset(pos + 8, pos + 8 + length, depth, until_item_end=False)
                pos = pos + 8 + length

    def fragments(self, pos: int, end: int) -> int:
        """Encapsulated Pixel Data (PS3.5 A.4): Basic Offset Table item, fragment items, delimiter."""
        count = 0
        while True:
            if pos + 8 > end:
                raise Unreadable("encapsulated Pixel Data not terminated: no Sequence Delimitation Item "
                                 f"after {max(0, count - 1)} fragment(s)", PIXEL_DATA, "PS3.5 A.4")
            group, elem, length = self.tag_len(self.buf, pos)
            item = group << 16 | elem
            if item == SEQ_END:
                self.report.fragments = max(0, count - 1)
                return pos + 8
            if item != ITEM or length == UNDEFINED:
                raise Unreadable(f"encapsulated Pixel Data: {tag_str(item)} at byte {pos} where a fragment "
                                 f"Item of defined length was expected", PIXEL_DATA, "PS3.5 A.4")
            if pos + 8 + length > end:
                raise Unreadable(f"encapsulated Pixel Data: fragment {count} of {length} bytes runs past the "
                                 f"end of the file ({max(0, end - pos - 8)} bytes left)", PIXEL_DATA,
                                 "PS3.5 A.4")
            count += 1
            pos += 8 + length

    # -- Pixel Data --------------------------------------------------------------------------------
    def _int(self, tag: int) -> int | None:
        """The value of a top-level US or IS element (Rows, Number of Frames …), if present."""
        top = self.top.get(tag)
        if top is None or top.length == 0:
            return None
        vr = top.vr or _dict_vr(tag)
        raw = self.buf[top.offset:top.offset + min(top.length, 16)]
        if vr == b"US" and top.length >= 2:
            return int(self.u16(raw)[0])
        try:
            return int(bytes(raw).strip(b"\0 ").split(b"\\")[0])
        except ValueError:
            raise Unreadable(f"not an integer: {bytes(raw)[:16]!r}", tag, "PS3.5 6.2") from None

    def _text(self, tag: int) -> str | None:
        top = self.top.get(tag)
        if top is None:
            return None
        return bytes(self.buf[top.offset:top.offset + min(top.length, 64)]).strip(b"\0 ").decode("ascii",
                                                                                                 "replace")

    def _check_pixel_description(self, bits: int, samples: int) -> None:
        """The Image Pixel module attributes a reader needs to draw the pixels (PS3.3 C.7.6.3)."""
        def refuse(tag: int, what: str) -> None:
            raise Unreadable(f"{what}: the pixels cannot be interpreted", tag, "PS3.3 C.7.6.3")

        if bits != 1 and (bits % 8 or bits > 64):
            refuse(BITS_ALLOCATED, f"{bits} (1 or a multiple of 8 up to 64)")
        stored = self._int(BITS_STORED)
        if stored is None:
            refuse(BITS_STORED, "missing")
        elif not 1 <= stored <= bits:
            refuse(BITS_STORED, f"{stored}, not 1 to Bits Allocated {bits}")
        if self._int(SAMPLES) is None:
            refuse(SAMPLES, "missing")
        elif samples not in (1, 3, 4):
            refuse(SAMPLES, f"{samples} (1, 3 or 4)")
        representation = self._int(PIXEL_REPRESENTATION)
        if representation not in (0, 1):
            refuse(PIXEL_REPRESENTATION,
                   "missing" if representation is None else f"{representation} (0 or 1)")
        photometric = self._text(PHOTOMETRIC)
        if not photometric:
            refuse(PHOTOMETRIC, "missing")
        elif photometric not in PHOTOMETRIC_TERMS:
            refuse(PHOTOMETRIC, f"{photometric[:20]!r}, not a defined term")
        if samples > 1 and self._int(PLANAR_CONFIGURATION) not in (0, 1):
            refuse(PLANAR_CONFIGURATION, "missing or not 0/1 with Samples per Pixel > 1")
        high = self._int(HIGH_BIT)
        if stored is not None and high != stored - 1:
            self.report.nonconformant(HIGH_BIT, f"{high}", f"Bits Stored - 1 = {stored - 1}",
                                      "PS3.3 C.7.6.3.1")

    def check_pixels(self) -> None:
        pixel_tags = [t for t in (PIXEL_DATA, FLOAT_PIXEL_DATA, DOUBLE_PIXEL_DATA) if t in self.top]
        if not pixel_tags:
            return
        tag = pixel_tags[0]
        pixels = self.top[tag]
        rows, columns = self._int(ROWS), self._int(COLUMNS)
        frames = self._int(FRAMES) or 1
        samples = self._int(SAMPLES) or 1
        bits = {FLOAT_PIXEL_DATA: 32, DOUBLE_PIXEL_DATA: 64}.get(tag) or self._int(BITS_ALLOCATED)
        missing = [kw for kw, v in (("Rows", rows), ("Columns", columns), ("BitsAllocated", bits)) if not v]
        if missing:
            first = tag_for_keyword(missing[0])
            raise Unreadable(f"missing or zero with {keyword_for_tag(tag)} present: the pixels cannot be "
                             f"read", first, RULE_PIXELS)
        assert rows and columns and bits
        if tag == PIXEL_DATA:
            self._check_pixel_description(bits, samples)
        if pixels.length == UNDEFINED:
            if tag != PIXEL_DATA or not self.encapsulated:
                raise Unreadable("undefined length (encapsulated) in a native transfer syntax", tag,
                                 "PS3.5 A.4")
            if not self.report.fragments:
                raise Unreadable("encapsulated Pixel Data without any fragment", tag, "PS3.5 A.4")
            if self.report.fragments < frames:
                raise Unreadable(f"{self.report.fragments} fragment(s) for {frames} frames (each frame is at "
                                 f"least one fragment)", tag, "PS3.5 A.4")
            return
        if self.encapsulated and tag == PIXEL_DATA:
            raise Unreadable("defined length (native) in an encapsulated transfer syntax", tag, "PS3.5 A.4")
        expected = (rows * columns * frames * samples * bits + 7) // 8
        if pixels.length < expected:
            raise Unreadable(f"{pixels.length} bytes, but Rows × Columns × frames × samples × bits = "
                             f"{rows} × {columns} × {frames} × {samples} × {bits} bits = {expected} bytes",
                             tag, RULE_PIXELS)
        if pixels.length > expected + (expected & 1):
            self.report.nonconformant(tag, f"{pixels.length} bytes", f"{expected} bytes "
                                      f"(Rows × Columns × frames × samples × bits)", RULE_PIXELS)


#: Top-level Type 1 attributes of each IOD's mandatory modules, derived from highdicom's tables of
#: the standard by :func:`build_type1_table` (``python -m perfnode.dicom.wellformed``); a test checks
#: it against highdicom. Loading highdicom's full tables costs ≈ 90 MB and 0.4 s; this file, 60 KB.
TYPE1_TABLE = Path(__file__).with_name("type1_table.json")


def build_type1_table() -> dict[str, Any]:
    """{"sop_class_iod": {uid: iod}, "iod_type1": {iod: [[tag, module], …]}} from highdicom's tables."""
    import json
    import pkgutil

    def load(name: str) -> dict[str, Any]:
        data = pkgutil.get_data("highdicom", f"_standard/{name}.json")
        assert data is not None, name
        table: dict[str, Any] = json.loads(data)
        return table

    sop_iod, iod_modules, module_attrs = load("sop_class_iod_map"), load("iod_module_map"), load(
        "module_attribute_map")
    table: dict[str, list[list[str]]] = {}
    for iod in sorted(set(sop_iod.values())):
        out, seen = [], set()
        for module in iod_modules.get(iod, []):
            if module["usage"] != "M":
                continue
            for attr in module_attrs.get(module["key"], []):
                tag = tag_for_keyword(attr["keyword"]) if attr["type"] == "1" and not attr["path"] else None
                if tag is not None and tag not in seen:
                    seen.add(tag)
                    out.append([f"{tag:08X}", module["key"]])
        table[iod] = out
    return {"source": "highdicom _standard tables (PS3.3 IOD module and attribute tables)",
            "sop_class_iod": dict(sorted(sop_iod.items())), "iod_type1": table}


@lru_cache(maxsize=1)
def _type1_table() -> dict[str, Any]:
    import json

    table: dict[str, Any] = json.loads(TYPE1_TABLE.read_text())
    return table


@lru_cache(maxsize=256)
def type1_attributes(sop_class: str) -> tuple[tuple[int, str], ...]:
    """(tag, module) of the top-level Type 1 attributes of the IOD's mandatory modules (PS3.3);
    empty for SOP classes the table does not list."""
    table = _type1_table()
    iod = table["sop_class_iod"].get(sop_class)
    return tuple((int(t, 16), m) for t, m in table["iod_type1"].get(iod, [])) if iod else ()


if __name__ == "__main__":  # regenerate the Type 1 table after a highdicom upgrade
    import json

    TYPE1_TABLE.write_text(json.dumps(build_type1_table(), indent=0, separators=(",", ":")) + "\n")
    print(f"wrote {TYPE1_TABLE}")
