"""Fast access to functional group macros: per-frame item first, then the shared item (PS3.3 C.7.6.16).

pydicom parses a sequence into nested Datasets on first access, which over thousands of frames costs
far more than reading the pixels. For a file read with the Per-frame Functional Groups Sequence still
raw (explicit VR little endian, the usual case), :class:`FunctionalGroups` walks its bytes once and
keeps only the leaf values, keyed by the path of tags (first item of each nested sequence). For
anything else (datasets built in memory, other encodings) it falls back to pydicom's attribute access;
both give the same values (tests compare them).
"""

from __future__ import annotations

import struct
from functools import lru_cache
from typing import Any

from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

PER_FRAME = 0x52009230
SHARED = 0x52009229
ITEM, ITEM_END, SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
UNDEFINED = 0xFFFFFFFF
LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
TEXT_VRS = {b"AE", b"AS", b"CS", b"DA", b"DT", b"LO", b"LT", b"PN", b"SH", b"ST", b"TM", b"UC", b"UI", b"UT"}
BINARY = {b"UL": "I", b"US": "H", b"SL": "i", b"SS": "h", b"FD": "d", b"FL": "f", b"AT": "I"}

Flat = dict[tuple[int, ...], tuple[bytes, bytes]]


def _items(buf: bytes, pos: int, end: int) -> tuple[list[Flat], int]:
    """Parse sequence items from ``pos`` up to ``end`` (or a sequence delimiter)."""
    items: list[Flat] = []
    while pos < end:
        group, elem, length = struct.unpack_from("<HHI", buf, pos)
        tag = group << 16 | elem
        pos += 8
        if tag == SEQ_END:
            break
        if tag != ITEM:
            raise ValueError(f"expected an item tag at byte {pos - 8}, found {tag:08X}")
        flat: Flat = {}
        if length == UNDEFINED:
            pos = _elements(buf, pos, len(buf), flat)
        else:
            _elements(buf, pos, pos + length, flat)
            pos += length
        items.append(flat)
    return items, pos


def _elements(buf: bytes, pos: int, end: int, flat: Flat) -> int:
    """Parse elements of one item into ``flat``; returns the position after the item."""
    while pos < end:
        group, elem = struct.unpack_from("<HH", buf, pos)
        tag = group << 16 | elem
        if tag == ITEM_END:
            return pos + 8
        vr = buf[pos + 4 : pos + 6]
        if vr in LONG_VRS:
            (length,) = struct.unpack_from("<I", buf, pos + 8)
            pos += 12
        else:
            (length,) = struct.unpack_from("<H", buf, pos + 6)
            pos += 8
        if vr == b"SQ":
            sub, after = _items(buf, pos, len(buf) if length == UNDEFINED else pos + length)
            if sub:
                for k, v in sub[0].items():
                    flat[(tag, *k)] = v
            pos = after if length == UNDEFINED else pos + length
        else:
            flat[(tag,)] = (vr, buf[pos : pos + length])
            pos += length
    return pos


def _decode(vr: bytes, raw: bytes) -> Any:
    if vr in (b"DS", b"IS"):
        parts = [p.strip() for p in raw.decode("ascii").strip("\x00 ").split("\\")]
        conv = float if vr == b"DS" else int
        values = [conv(p) for p in parts if p]
        return values[0] if len(values) == 1 else (values or None)
    if vr in BINARY:
        fmt = BINARY[vr]
        n = len(raw) // struct.calcsize(fmt)
        values = list(struct.unpack(f"<{n}{fmt}", raw))
        return values[0] if n == 1 else (values or None)
    if vr in TEXT_VRS:
        text = raw.decode("latin-1").rstrip("\x00 ")
        if not text:
            return None
        return text.split("\\") if "\\" in text and vr not in (b"LT", b"ST", b"UT") else text
    return raw


@lru_cache(maxsize=512)
def _path(keywords: tuple[str, ...]) -> tuple[int, ...]:
    tags = []
    for kw in keywords:
        t = tag_for_keyword(kw)
        if t is None:
            raise KeyError(kw)
        tags.append(int(t))
    return tuple(tags)


def _navigate(item: Dataset | None, tags: tuple[int, ...]) -> Any:
    """Value at ``tags`` under ``item`` (first item of each sequence) with pydicom; None when absent."""
    for t in tags[:-1]:
        if item is None or t not in item:
            return None
        seq = item[t].value
        item = seq[0] if seq else None
    if item is None or tags[-1] not in item:
        return None
    value = item[tags[-1]].value
    if (
        value is None
        or value == ""
        or (hasattr(value, "__len__") and not isinstance(value, str) and len(value) == 0)
    ):
        return None
    return value


class FunctionalGroups:
    """The functional groups of one multi-frame instance, read by frame and path of keywords."""

    def __init__(self, ds: Dataset) -> None:
        shared = ds.get("SharedFunctionalGroupsSequence")
        self.shared: Dataset | None = shared[0] if shared else None
        self._shared_values: dict[tuple[int, ...], Any] = {}
        self.raw: list[Flat] | None = None
        elem = ds._dict.get(PER_FRAME)  # type: ignore[attr-defined]
        if (
            isinstance(elem, RawDataElement)
            and elem.value is not None
            and elem.is_little_endian
            and not elem.is_implicit_VR
        ):
            buf = bytes(elem.value)
            self.raw = _items(buf, 0, len(buf))[0]
            self.macros = [{k[0] for k in flat} for flat in self.raw]
            self.frames: list[Dataset] = []
            self.count = len(self.raw)
        else:
            self.frames = list(ds.get("PerFrameFunctionalGroupsSequence") or [])
            self.count = len(self.frames)

    def value(self, index: int, *keywords: str) -> Any:
        """Value at ``keywords`` (macro, …, attribute) for frame ``index``: per-frame, else shared."""
        tags = _path(tuple(keywords))
        if self.raw is not None:
            hit = self.raw[index].get(tags)
            if hit is not None:
                v = _decode(*hit)
                if v is not None:
                    return v
            elif tags[0] in self.macros[index]:
                return None  # the macro is per-frame in this frame: no fallback to shared
        else:
            pf = self.frames[index]
            if tags[0] in pf and pf[tags[0]].value:
                return _navigate(pf, tags)
        if tags not in self._shared_values:
            self._shared_values[tags] = _navigate(self.shared, tags)
        return self._shared_values[tags]

    def has(self, index: int, keyword: str) -> bool:
        """Is macro ``keyword`` present for frame ``index`` (per-frame or shared)?"""
        t = _path((keyword,))[0]
        if self.raw is not None:
            if t in self.macros[index]:
                return True
        elif t in self.frames[index] and self.frames[index][t].value:
            return True
        return self.shared is not None and t in self.shared and bool(self.shared[t].value)

    def __len__(self) -> int:
        return self.count


def functional_groups(ds: Dataset) -> FunctionalGroups:
    """The (cached) :class:`FunctionalGroups` of ``ds``, so the checks and the assembly parse it once.

    The cache lives on the dataset object; build a new dataset (or read the file again) after changing
    its functional groups.
    """
    fg = ds.__dict__.get("_perfnode_functional_groups")
    if fg is None:
        fg = FunctionalGroups(ds)
        ds.__dict__["_perfnode_functional_groups"] = fg
    return fg
