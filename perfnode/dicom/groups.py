"""Fast access to functional group macros: per-frame item first, then the shared item (PS3.3 C.7.6.16).

pydicom parses a sequence into nested Datasets on first access, which over thousands of frames costs
far more than reading the pixels. For a file read with the Per-frame Functional Groups Sequence still
raw (explicit VR little endian, the usual case), :class:`FunctionalGroups` reads its bytes once and
keeps only the leaf values, keyed by the path of tags (first item of each nested sequence), as
columns: per path, the distinct raw values and, per frame, the index of its value.

Items that share a byte layout (same tags, VRs and lengths: the usual case, as a writer emits the
same macros for every frame) are parsed once in Python; the values of all frames of that layout are
then cut out of a 2-D byte array at fixed offsets. Anything irregular (undefined lengths, items that
overrun) goes through the element walker, which is also the reference the tests compare against.
Datasets built in memory and other encodings fall back to pydicom's attribute access; all paths give
the same values.

This is perfnode's one reader of a frame's attributes (assembly, PERF checks, QC facts, the Parametric Map
writer): a path is macro keyword(s) then attribute keyword, e.g. ``("PixelMeasuresSequence",
"PixelSpacing")``; private attributes are named through their private creator with :class:`Private`
(``Private("Philips MR Imaging DD 005", 0x2005, 0x0F)`` is (2005,xx0F) in the block that creator
reserved, found item by item). A classic single-frame image is read as one frame whose "functional
groups" are its top-level attributes (:data:`CLASSIC`: the classic keyword of a macro attribute).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeGuard

import numpy as np
from numpy.typing import NDArray
from pydicom.datadict import keyword_for_tag, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag

PER_FRAME = 0x52009230
SHARED = 0x52009229
ITEM, ITEM_END, SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
UNDEFINED = 0xFFFFFFFF
LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
TEXT_VRS = {b"AE", b"AS", b"CS", b"DA", b"DT", b"LO", b"LT", b"PN", b"SH", b"ST", b"TM", b"UC", b"UI", b"UT"}
INTEGERS = {b"UL": "<u4", b"US": "<u2", b"SL": "<i4", b"SS": "<i2"}
BINARY = {b"UL": "I", b"US": "H", b"SL": "i", b"SS": "h", b"FD": "d", b"FL": "f", b"AT": "I"}
#: dataset attribute: tag → (element decoded by :class:`FunctionalGroups`, its value, the raw element)
DECODED = "_perfnode_decoded_from"
MAX_LAYOUTS = 64  # more distinct item layouts than this: walk every item instead

#: path of tags → (VR, start, end) of the value in the sequence's bytes
Flat = dict[tuple[int, ...], tuple[bytes, int, int]]
TagPath = tuple[int, ...]
Raw = tuple[bytes, bytes]  # (VR, value bytes)
Heads = list[tuple[int, int]]  # (position, size) of each header read
Leaves = list[tuple[bytes, int, int]]  # (VR, start, end) of each value


def _items(
    buf: bytes, pos: int, end: int, heads: Heads | None = None, leaves: Leaves | None = None
) -> tuple[list[Flat], int]:
    """Parse sequence items from ``pos`` up to ``end`` (or a sequence delimiter).

    ``heads`` collects ``(position, size)`` of every header read (the item's byte skeleton), ``leaves``
    ``(VR, start, end)`` of every value in every item (not only the first item of nested sequences)."""
    items: list[Flat] = []
    while pos < end:
        group, elem, length = struct.unpack_from("<HHI", buf, pos)
        tag = group << 16 | elem
        if heads is not None:
            heads.append((pos, 8))
        pos += 8
        if tag == SEQ_END:
            break
        if tag != ITEM:
            raise ValueError(f"expected an item tag at byte {pos - 8}, found {tag:08X}")
        flat: Flat = {}
        if length == UNDEFINED:
            pos = _elements(buf, pos, len(buf), flat, heads, leaves)
        else:
            _elements(buf, pos, pos + length, flat, heads, leaves)
            pos += length
        items.append(flat)
    return items, pos


def _elements(
    buf: bytes, pos: int, end: int, flat: Flat, heads: Heads | None = None, leaves: Leaves | None = None
) -> int:
    """Parse elements of one item into ``flat``; returns the position after the item."""
    while pos < end:
        group, elem = struct.unpack_from("<HH", buf, pos)
        tag = group << 16 | elem
        if tag == ITEM_END:
            if heads is not None:
                heads.append((pos, 8))
            return pos + 8
        vr = buf[pos + 4 : pos + 6]
        if vr in LONG_VRS:
            (length,) = struct.unpack_from("<I", buf, pos + 8)
            size = 12
        else:
            (length,) = struct.unpack_from("<H", buf, pos + 6)
            size = 8
        if heads is not None:
            heads.append((pos, size))
        pos += size
        if vr == b"SQ":
            sub, after = _items(buf, pos, len(buf) if length == UNDEFINED else pos + length, heads, leaves)
            if sub:
                for k, v in sub[0].items():
                    flat[(tag, *k)] = v
            pos = after if length == UNDEFINED else pos + length
        else:
            flat[(tag,)] = (vr, pos, pos + length)
            if leaves is not None:
                leaves.append((vr, pos, pos + length))
            pos += length
    return pos


def all_values(buf: bytes) -> Leaves:
    """``(VR, start, end)`` of every value in the raw items of a sequence, nested ones included."""
    leaves: Leaves = []
    _items(buf, 0, len(buf), leaves=leaves)
    return leaves


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


@dataclass
class RawColumn:
    """One leaf path over all frames: distinct ``(VR, bytes)`` values and each frame's index (−1: absent).

    VRs and bytes are kept in two lists (not a tuple per value: fewer objects for the garbage collector)."""

    vrs: list[bytes]
    raws: list[bytes]
    codes: np.ndarray

    @property
    def values(self) -> list[Raw]:
        return list(zip(self.vrs, self.raws, strict=True))


@dataclass
class Column:
    """Values of one attribute for every frame: ``values[codes[i]]`` is frame ``i``'s value."""

    values: list[Any]
    codes: np.ndarray

    def __getitem__(self, i: int) -> Any:
        return self.values[self.codes[i]]

    def tolist(self) -> list[Any]:
        """One value per frame."""
        v = self.values
        return [v[c] for c in self.codes.tolist()]


class _Builder:
    """Collects raw columns over frames, deduplicating ``(VR, bytes)`` values per path."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.columns: dict[TagPath, RawColumn] = {}
        self._lookup: dict[TagPath, dict[bytes, dict[bytes, int]]] = {}  # path → VR → bytes → index

    def column(self, path: TagPath, vr: bytes) -> tuple[RawColumn, dict[bytes, int]]:
        col = self.columns.get(path)
        if col is None:
            col = self.columns[path] = RawColumn([], [], np.full(self.n, -1, np.int64))
            self._lookup[path] = {}
        return col, self._lookup[path].setdefault(vr, {})

    def code(self, path: TagPath, vr: bytes, raw: bytes) -> int:
        col, lookup = self.column(path, vr)
        k = lookup.get(raw)
        if k is None:
            k = lookup[raw] = len(col.raws)
            col.vrs.append(vr)
            col.raws.append(raw)
        return k

    def set(self, path: TagPath, rows: np.ndarray | int, codes: np.ndarray | int) -> None:
        self.columns[path].codes[rows] = codes


def walk_columns(buf: bytes) -> tuple[dict[TagPath, RawColumn], int]:
    """Raw columns of every item, by the element walker (the reference); also the number of items."""
    flats = _items(buf, 0, len(buf))[0]
    b = _Builder(len(flats))
    for i, flat in enumerate(flats):
        for path, (vr, start, end) in flat.items():
            b.set(path, i, b.code(path, vr, buf[start:end]))
    return b.columns, len(flats)


def _spans(buf: bytes) -> list[tuple[int, int]] | None:
    """``(start, length)`` of each item's content; None unless every item has a defined length inside."""
    spans = []
    pos, n = 0, len(buf)
    while pos < n:
        if pos + 8 > n:
            return None
        group, elem, length = struct.unpack_from("<HHI", buf, pos)
        tag = group << 16 | elem
        if tag == SEQ_END:
            break
        if tag != ITEM or length == UNDEFINED or pos + 8 + length > n:
            return None
        spans.append((pos + 8, length))
        pos += 8 + length
    return spans


def _layout(buf: bytes, start: int, length: int) -> tuple[Flat, np.ndarray] | None:
    """One item's leaves (offsets relative to the item) and header byte offsets; None if irregular."""
    flat: Flat = {}
    heads: list[tuple[int, int]] = []
    end = _elements(buf, start, start + length, flat, heads)
    if end != start + length or any(p + s > start + length for p, s in heads):
        return None
    if any(e > start + length for _, _, e in flat.values()):
        return None
    rel = {path: (vr, s - start, e - start) for path, (vr, s, e) in flat.items()}
    skeleton = np.concatenate([np.arange(p, p + s) - start for p, s in heads] or [np.zeros(0, np.int64)])
    return rel, skeleton


def _unique(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the first occurrence of each distinct value, and each value's distinct index.

    (``np.unique`` does the same but imports ``numpy.ma`` on first use, which costs more than this.)"""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    new = np.ones(len(values), bool)
    new[1:] = ordered[1:] != ordered[:-1]
    group = np.cumsum(new) - 1
    inverse = np.empty(len(values), np.int64)
    inverse[order] = group
    return order[new], inverse


def _leaf(b: _Builder, path: TagPath, vr: bytes, block: np.ndarray, rows: np.ndarray) -> None:
    """Codes of one leaf for the frames ``rows`` of one layout, from their value bytes ``block`` (m, w)."""
    w = block.shape[1]
    if w == 0:
        b.set(path, rows, b.code(path, vr, b""))
        return
    # as fixed-width strings: numpy ignores trailing NULs, which cannot make two equal-width values equal
    as_str = np.ascontiguousarray(block).view(f"S{w}").ravel()
    first, inverse = _unique(as_str)
    col, lookup = b.column(path, vr)
    ids = []
    for k in first.tolist():
        raw = block[k].tobytes()
        c = lookup.get(raw)
        if c is None:
            c = lookup[raw] = len(col.raws)
            col.vrs.append(vr)
            col.raws.append(raw)
        ids.append(c)
    col.codes[rows] = np.array(ids, np.int64)[inverse]


def fast_columns(buf: bytes) -> tuple[dict[TagPath, RawColumn], int] | None:
    """Raw columns by layout (see the module doc); None when the walker must do it."""
    spans = _spans(buf)
    if spans is None:
        return None
    b = _Builder(len(spans))
    if not spans:
        return b.columns, 0
    arr = np.frombuffer(buf, np.uint8)
    starts = np.array([s for s, _ in spans], np.int64)
    lengths = np.array([n for _, n in spans], np.int64)
    layouts = 0
    for length in sorted(set(lengths.tolist())):
        rows = np.flatnonzero(lengths == length)
        block = arr[starts[rows, None] + np.arange(length)]
        todo = np.arange(len(rows))
        while len(todo):
            layouts += 1
            first = int(rows[todo[0]])
            found = _layout(buf, spans[first][0], length) if layouts <= MAX_LAYOUTS else None
            if found is None:
                return None
            leaves, skeleton = found
            same = (block[todo][:, skeleton] == block[todo[0], skeleton]).all(axis=1)
            mine = todo[same]
            for path, (vr, s, e) in leaves.items():
                _leaf(b, path, vr, block[mine, s:e], rows[mine])
            todo = todo[~same]
    return b.columns, len(spans)


@dataclass(frozen=True)
class Private:
    """A private attribute named by its creator: ``(group, xxEE)`` in the block ``creator`` reserved."""

    creator: str
    group: int
    element: int  # the low byte (0x00–0xFF) of the element number

    def __str__(self) -> str:
        return f"({self.group:04X},xx{self.element:02X}) of {self.creator!r}"

    def tag_in(self, item: Dataset | None) -> int | None:
        """The tag this attribute has in ``item`` (its creator's block there); None when not reserved."""
        if item is None:
            return None
        for block in range(0x10, 0x100):
            creator = item.get((self.group, block))
            if creator is None:
                continue
            if str(creator.value).strip() == self.creator:
                return self.group << 16 | block << 8 | self.element
        return None


Step = str | int | Private
#: a path step after :func:`_path`: a tag, or a :class:`Private` resolved item by item
Tag_ = int | Private

#: classic (single-frame) keyword of a functional-group attribute, where it is not the same keyword
CLASSIC: dict[str, str] = {
    "TemporalPositionIndex": "TemporalPositionIdentifier",
    "FrameAcquisitionDateTime": "AcquisitionDateTime",
    "EffectiveEchoTime": "EchoTime",
    "NominalCardiacTriggerDelayTime": "TriggerTime",
    "InversionTimes": "InversionTime",
}


@lru_cache(maxsize=512)
def _path(keywords: tuple[Step, ...]) -> tuple[Tag_, ...]:
    tags: list[Tag_] = []
    for kw in keywords:
        if isinstance(kw, (int, Private)):
            tags.append(kw)
            continue
        t = tag_for_keyword(kw)
        if t is None:
            raise KeyError(kw)
        tags.append(int(t))
    return tuple(tags)


def _tags_only(tags: tuple[Tag_, ...]) -> TypeGuard[TagPath]:
    """Is every step of ``tags`` a plain tag (no :class:`Private` to resolve)?"""
    return not any(isinstance(t, Private) for t in tags)


def _tag_of(keyword: str) -> int:
    """The tag of a public ``keyword`` (KeyError when there is none)."""
    t = _path((keyword,))[0]
    assert isinstance(t, int)
    return t


def _concrete(item: Dataset | None, t: Tag_) -> int | None:
    return t.tag_in(item) if isinstance(t, Private) else t


def _navigate(item: Dataset | None, tags: tuple[Tag_, ...]) -> Any:
    """Value at ``tags`` under ``item`` (first item of each sequence) with pydicom; None when absent."""
    for step in tags[:-1]:
        t = _concrete(item, step)
        if item is None or t is None or t not in item:
            return None
        seq = item[t].value
        item = seq[0] if seq else None
    last = _concrete(item, tags[-1])
    if item is None or last is None or last not in item:
        return None
    value = item[last].value
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
        raw_shared = ds._dict.get(BaseTag(SHARED))
        shared = ds.get("SharedFunctionalGroupsSequence")
        if isinstance(raw_shared, RawDataElement):  # decoded here: keep the bytes it was decoded from
            decoded = ds._dict[BaseTag(SHARED)]
            ds.__dict__.setdefault(DECODED, {})[SHARED] = (decoded, decoded.value, raw_shared)
        self.shared: Dataset | None = shared[0] if shared else None
        self._shared_values: dict[TagPath, Any] = {}
        self._columns: dict[tuple[Tag_, ...], Column] = {}
        self._macros: dict[int, np.ndarray] = {}
        #: leaf columns read from the raw bytes (None: pydicom's parsed items in :attr:`frames`)
        self.raw: dict[TagPath, RawColumn] | None = None
        self.frames: list[Dataset] = []
        #: a classic single-frame image: its top-level attributes are its one frame's groups
        self.classic: Dataset | None = None
        elem = ds._dict.get(BaseTag(PER_FRAME))
        if elem is None and int(ds.get("NumberOfFrames") or 1) == 1 and shared is None:
            self.classic, self.count = ds, 1
        elif (
            isinstance(elem, RawDataElement)
            and elem.value is not None
            and elem.is_little_endian
            and not elem.is_implicit_VR
        ):
            buf = bytes(elem.value)
            try:
                fast = fast_columns(buf)
            except Exception:  # noqa: BLE001 - malformed: the walker, reading in order, names the first defect
                fast = None
            self.raw, self.count = fast or walk_columns(buf)
        else:
            self.frames = list(ds.get("PerFrameFunctionalGroupsSequence") or [])
            self.count = len(self.frames)

    def _shared(self, tags: TagPath) -> Any:
        if tags not in self._shared_values:
            self._shared_values[tags] = _navigate(self.shared, tags)
        return self._shared_values[tags]

    def _macro(self, tag: int) -> np.ndarray:
        """Per frame: is macro ``tag`` in the frame's per-frame item (raw path)?"""
        mask = self._macros.get(tag)
        if mask is None:
            mask = np.zeros(self.count, bool)
            for path, col in (self.raw or {}).items():
                if path[0] == tag:
                    mask |= col.codes >= 0
            self._macros[tag] = mask
        return mask

    def value(self, index: int, *keywords: Step) -> Any:
        """Value at ``keywords`` (macro, …, attribute) for frame ``index``: per-frame, else shared."""
        tags = _path(tuple(keywords))
        if self.classic is not None:
            return self._classic(tags)
        if not 0 <= index < self.count:  # no such per-frame item (e.g. none at all): the shared value
            return _navigate(self.shared, tags)
        if not _tags_only(tags):
            return self._private_value(index, tags)
        if self.raw is not None:
            col = self.raw.get(tags)
            code = int(col.codes[index]) if col is not None else -1
            if col is not None and code >= 0:
                v = _decode(col.vrs[code], col.raws[code])
                if v is not None:
                    return v
            elif self._macro(tags[0])[index]:
                return None  # the macro is per-frame in this frame: no fallback to shared
        else:
            pf = self.frames[index]
            if tags[0] in pf and pf[tags[0]].value:
                return _navigate(pf, tags)
        return self._shared(tags)

    def _classic(self, tags: tuple[Tag_, ...]) -> Any:
        """A classic image: the attribute at the top level (by its classic keyword, :data:`CLASSIC`)."""
        last = tags[-1]
        if isinstance(last, int):
            kw = keyword_for_tag(last)
            if kw in CLASSIC:
                last = int(tag_for_keyword(CLASSIC[kw]))  # type: ignore[arg-type]
        return _navigate(self.classic, (last,))

    def _resolve_raw(self, index: int, tags: tuple[Tag_, ...]) -> TagPath | None:
        """The concrete tag path of ``tags`` in frame ``index``'s per-frame item (raw columns)."""
        assert self.raw is not None
        out: list[int] = []
        for step in tags:
            if isinstance(step, int):
                out.append(step)
                continue
            found = None
            for block in range(0x10, 0x100):
                col = self.raw.get((*out, step.group << 16 | block))
                code = int(col.codes[index]) if col is not None else -1
                if col is not None and code >= 0 and str(
                    _decode(col.vrs[code], col.raws[code]) or ""
                ).strip() == step.creator:
                    found = step.group << 16 | block << 8 | step.element
                    break
            if found is None:
                return None
            out.append(found)
        return tuple(out)

    def _private_value(self, index: int, tags: tuple[Tag_, ...]) -> Any:
        """:meth:`value` of a path with private steps, resolved through their creators item by item."""
        if self.raw is not None:
            path = self._resolve_raw(index, tags)
            col = self.raw.get(path) if path is not None else None
            code = int(col.codes[index]) if col is not None else -1
            if col is not None and code >= 0:
                v = _decode(col.vrs[code], col.raws[code])
                if v is not None:
                    return v
            first = self._resolve_raw(index, tags[:1])
            if first is not None and self._macro(first[0])[index]:
                return None
        else:
            pf = self.frames[index]
            macro = _concrete(pf, tags[0])
            if macro is not None and macro in pf and pf[macro].value:
                return _navigate(pf, tags)
        return _navigate(self.shared, tags)

    def column(self, *keywords: Step) -> Column:
        """:meth:`value` of every frame, as a :class:`Column` (decoded once per distinct value)."""
        tags = _path(tuple(keywords))
        col = self._columns.get(tags)
        if col is None:
            col = self._columns[tags] = self._build_column(tags, keywords)
        return col

    def _build_column(self, tags: tuple[Tag_, ...], keywords: tuple[Step, ...]) -> Column:
        if self.raw is None or not _tags_only(tags):
            values = [self.value(i, *keywords) for i in range(self.count)]
            return _column_of(values)
        raw = self.raw.get(tags)
        decoded = [_decode(v, r) for v, r in zip(raw.vrs, raw.raws, strict=True)] if raw is not None else []
        absent, shared = len(decoded), len(decoded) + 1
        codes = np.where(self._macro(tags[0]), absent, shared)
        if raw is not None:
            ok = np.array([v is not None for v in decoded] + [False], bool)  # −1 → the False at the end
            here = raw.codes >= 0
            codes[here] = shared  # present but empty: the shared value, as in :meth:`value`
            codes[ok[raw.codes]] = raw.codes[ok[raw.codes]]
        return Column([*decoded, None, self._shared(tags)], codes)

    def ints(self, *keywords: Step) -> np.ndarray | None:
        """Every frame's integer values at ``keywords`` as a (frames × values) array, when each frame has
        its own (per-frame, non-empty, binary integer, same number of values); else None."""
        tags = _path(tuple(keywords))
        col = self.raw.get(tags) if self.raw is not None and _tags_only(tags) else None
        if col is None or not self.count or (col.codes < 0).any() or len(set(col.vrs)) != 1:
            return None
        dtype = INTEGERS.get(col.vrs[0])
        size = len(col.raws[0])
        if dtype is None or not size or size % int(dtype[-1]) or any(len(r) != size for r in col.raws):
            return None
        table = np.frombuffer(b"".join(col.raws), dtype).reshape(len(col.raws), -1)
        per_frame: NDArray[np.int64] = table.astype(np.int64)[col.codes]
        return per_frame

    def has(self, index: int, keyword: str) -> bool:
        """Is macro ``keyword`` present for frame ``index`` (per-frame or shared)?"""
        t = _tag_of(keyword)
        if self.classic is not None:
            return False
        if self.raw is not None:
            if self._macro(t)[index]:
                return True
        elif t in self.frames[index] and self.frames[index][t].value:
            return True
        return self.shared is not None and t in self.shared and bool(self.shared[t].value)

    def has_column(self, keyword: str) -> np.ndarray:
        """Per frame: is macro ``keyword`` present (per-frame or shared)?"""
        t = _tag_of(keyword)
        if self.classic is not None:
            return np.zeros(1, bool)
        if self.shared is not None and t in self.shared and bool(self.shared[t].value):
            return np.ones(self.count, bool)
        if self.raw is not None:
            return self._macro(t).copy()
        return np.array([t in pf and bool(pf[t].value) for pf in self.frames], bool)

    def __len__(self) -> int:
        return self.count


def _column_of(values: list[Any]) -> Column:
    """A :class:`Column` of per-frame values (equal values share one entry, compared by ``repr``)."""
    index: dict[str, int] = {}
    distinct: list[Any] = []
    codes = np.empty(len(values), np.int64)
    for i, v in enumerate(values):
        k = index.get(key := repr(v))
        if k is None:
            k = index[key] = len(distinct)
            distinct.append(v)
        codes[i] = k
    return Column(distinct, codes)


def frame_value(ds: Dataset, frame: int, *path: Step) -> Any:
    """One frame's attribute (0-based ``frame``), per-frame before shared; classic images as frame 0."""
    return functional_groups(ds).value(frame, *path)


def raw_element(ds: Dataset, tag: int) -> RawDataElement | None:
    """The element ``tag`` of ``ds`` as read from the file: still raw, or decoded by
    :class:`FunctionalGroups` (the Shared Functional Groups Sequence) and not replaced since."""
    elem = ds._dict.get(BaseTag(tag))
    if isinstance(elem, RawDataElement):
        return elem
    decoded = ds.__dict__.get(DECODED, {}).get(tag)
    if decoded is None or decoded[0] is not elem or elem.value is not decoded[1]:  # replaced, or set anew
        return None
    raw: RawDataElement = decoded[2]
    return raw


def functional_groups(ds: Dataset) -> FunctionalGroups:
    """The (cached) :class:`FunctionalGroups` of ``ds``, so the checks and the assembly parse it once.

    The cache lives on the dataset object; build a new dataset (or read the file again) after changing
    its functional groups (the comparison of concatenation parts, too, takes the Shared Functional Groups
    Sequence decoded here by the bytes it was read from).
    """
    fg = ds.__dict__.get("_perfnode_functional_groups")
    if fg is None:
        fg = FunctionalGroups(ds)
        ds.__dict__["_perfnode_functional_groups"] = fg
    return fg
