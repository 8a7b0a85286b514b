"""The fast paths give what the reference paths give: functional groups decoded by layout (vs the element
walker and pydicom), columns (vs value by value), the frame table (vs frame by frame), PERF findings (raw
bytes vs parsed sequences), DT parsing (vs strptime) and the pixel rescale (vs one frame at a time)."""

from __future__ import annotations

import re
from copy import deepcopy
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from perfnode.dicom.assembly import _rescale
from perfnode.dicom.concatenation import check_parts
from perfnode.dicom.frame_table import _rows, frame_table
from perfnode.dicom.frame_table import table as _table
from perfnode.dicom.groups import PER_FRAME, FunctionalGroups, fast_columns, walk_columns
from perfnode.dicom.perf import check_dataset, check_series
from perfnode.dicom.timing import parse_dt as _parse_dt
from perfnode.dicom.timing import strptime_dt as _strptime_dt
from perfnode.phantoms import RULES, Size, make
from perfnode.phantoms.enhanced import item
from tests.dicom import sample

SIZE = Size(nx=6, ny=6, nz=3, nt=4)
#: (technique, shape, break rule): every Enhanced shape of every technique, and every defect
CASES = [(t, s, None) for t in ("dsc", "ctp", "dce", "asl", "ivim") for s in ("single", "concat", "per-time")]
CASES += [("dsc", r.shape or "single", name) for name, r in sorted(RULES.items()) if r.shape != "classic"]
CASES += [("ctp", "concat", "shuffled"), ("ivim", "single", "shuffled")]


def per_frame(columns: dict, n: int) -> dict:
    """Raw columns as {path: [(VR, bytes) or None per frame]}, independent of the order of values."""
    return {p: [c.values[k] if k >= 0 else None for k in c.codes.tolist()] for p, c in columns.items()}


def raw_bytes(path: Path) -> bytes | None:
    ds = pydicom.dcmread(path, defer_size=1 << 20)
    elem = ds._dict.get(PER_FRAME)
    return None if elem is None else bytes(elem.value)


def keyword_paths(fg: FunctionalGroups) -> list[tuple[str, ...]]:
    """Every leaf path of ``fg`` (and of its shared item) as keywords."""
    from pydicom.datadict import keyword_for_tag

    paths = set(fg.raw or {})
    return sorted(tuple(keyword_for_tag(t) for t in p) for p in paths if all(keyword_for_tag(t) for t in p))


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> dict[tuple, list[Path]]:
    out = {}
    for technique, shape, rule in CASES:
        folder = tmp_path_factory.mktemp(f"{technique}-{shape}-{rule}")
        _, files = make(technique, shape, folder, break_rule=rule, size=SIZE, seed=3)
        out[(technique, shape, rule)] = [f for f in files if f.parent.name == "series01"]
    return out


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
def test_layout_decoding_equals_the_walker(phantoms, case):
    for path in phantoms[case]:
        buf = raw_bytes(path)
        fast = fast_columns(buf)
        assert fast is not None  # these files are regular: the fast path must take them
        slow = walk_columns(buf)
        assert fast[1] == slow[1]
        assert per_frame(fast[0], fast[1]) == per_frame(slow[0], slow[1])


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
def test_columns_equal_values_and_pydicom(phantoms, case):
    for path in phantoms[case]:
        fast = FunctionalGroups(pydicom.dcmread(path, defer_size=1 << 20))
        parsed = pydicom.dcmread(path)
        _ = parsed.PerFrameFunctionalGroupsSequence[0]
        slow = FunctionalGroups(parsed)
        assert fast.raw is not None and slow.raw is None
        paths = keyword_paths(fast) + [("PixelMeasuresSequence", "PixelSpacing"), ("MRDiffusionSequence",)]
        for kws in paths:
            if len(kws) == 1:
                assert fast.has_column(kws[0]).tolist() == slow.has_column(kws[0]).tolist()
                assert [fast.has(i, kws[0]) for i in range(len(fast))] == fast.has_column(kws[0]).tolist()
                continue
            values = [fast.value(i, *kws) for i in range(len(fast))]
            assert fast.column(*kws).tolist() == values, kws
            assert [_plain(slow.value(i, *kws)) for i in range(len(slow))] == [_plain(v) for v in values], kws


def _plain(v):
    """pydicom's MultiValue / DSfloat / IS as plain lists and numbers, for comparison."""
    if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue":
        return [_plain(x) for x in v]
    if isinstance(v, float):
        return float(v)
    if isinstance(v, int):
        return int(v)
    return v


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
def test_frame_table_equals_the_frame_by_frame_reading(phantoms, case):
    from perfnode.dicom.groups import functional_groups

    for source, path in enumerate(phantoms[case]):
        ds = pydicom.dcmread(path, defer_size=1 << 20)
        assert frame_table(ds, source) == _rows(ds, functional_groups(ds), source)


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
def test_findings_from_raw_bytes_equal_findings_from_parsed_sequences(phantoms, case):
    fast = [pydicom.dcmread(p, defer_size=1 << 20) for p in phantoms[case]]
    slow = [pydicom.dcmread(p) for p in phantoms[case]]
    for ds in slow:
        _ = ds.PerFrameFunctionalGroupsSequence[0]
    assert check_series(fast) == check_series(slow)
    assert [check_dataset(d) for d in fast] == [check_dataset(d) for d in slow]


def _enhanced(items: list[Dataset]) -> Dataset:
    ds = Dataset()
    ds.PerFrameFunctionalGroupsSequence = Sequence(items)
    ds.SharedFunctionalGroupsSequence = Sequence(
        [item(PlanePositionSequence=Sequence([item(ImagePositionPatient=[0, 0, 0])]))]
    )
    return ds


def _reread(ds: Dataset, path: Path, **write) -> Dataset:
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4.1"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3"
    ds.save_as(path, enforce_file_format=True, **write)
    return pydicom.dcmread(path, defer_size=1 << 20)


def _content(**kw) -> Dataset:
    return item(FrameContentSequence=Sequence([item(**kw)]))


def test_items_of_equal_length_but_different_layouts_are_told_apart(tmp_path):
    # same item length, different tags (and one item with a per-frame position among shared ones)
    items = [
        _content(TemporalPositionIndex=i + 1) if i % 2 else _content(InStackPositionNumber=i)
        for i in range(6)
    ]
    items[3].PlanePositionSequence = Sequence([item(ImagePositionPatient=[1, 2, 3])])
    ds = _reread(_enhanced(items), tmp_path / "x.dcm")
    buf = bytes(ds._dict[PER_FRAME].value)
    fast, n = fast_columns(buf)
    assert n == 6 and per_frame(fast, n) == per_frame(*walk_columns(buf))
    fg = FunctionalGroups(ds)
    assert fg.column("FrameContentSequence", "TemporalPositionIndex").tolist() == [None, 2, None, 4, None, 6]
    assert fg.column("FrameContentSequence", "InStackPositionNumber").tolist() == [0, None, 2, None, 4, None]
    positions = fg.column("PlanePositionSequence", "ImagePositionPatient").tolist()
    assert positions[3] == [1.0, 2.0, 3.0] and positions[0] == [0.0, 0.0, 0.0]  # per-frame, else shared


def test_undefined_length_items_go_through_the_walker():
    buf = bytes.fromhex("feff00e0ffffffff") + _element(0x0020, 0x9128, b"UL", (7).to_bytes(4, "little"))
    buf += bytes.fromhex("feff0de000000000")
    assert fast_columns(buf) is None
    columns, n = walk_columns(buf)
    assert n == 1 and per_frame(columns, n) == {(0x00209128,): [(b"UL", b"\x07\x00\x00\x00")]}


def _element(group: int, elem: int, vr: bytes, value: bytes) -> bytes:
    head = group.to_bytes(2, "little") + elem.to_bytes(2, "little") + vr
    return head + len(value).to_bytes(2, "little") + value


@pytest.mark.parametrize(
    "buf",
    [
        _element(0x0020, 0x9128, b"UL", b"\x01\x00\x00\x00"),  # an element where an item belongs
        bytes.fromhex("feff00e010000000") + _element(0x0020, 0x9128, b"UL", b"\x01\x00\x00\x00"),  # overrun
        bytes.fromhex("feff00e00c000000") + _element(0x0020, 0x9128, b"UL", b"\x01\x00\x00\x00") + b"\x01",
    ],
)
def test_malformed_sequences_give_the_walkers_error(buf):
    try:
        expected = walk_columns(buf)
    except Exception as e:  # noqa: BLE001
        with pytest.raises(type(e), match=re.escape(str(e))):
            fast_columns(buf) or walk_columns(buf)
    else:
        got = fast_columns(buf) or walk_columns(buf)
        assert per_frame(*got) == per_frame(*expected)


def _sq(content: bytes) -> bytes:
    """A Frame Content Sequence with a defined length holding ``content`` (not an item: malformed)."""
    return b"\x20\x00\x11\x91SQ\x00\x00" + len(content).to_bytes(4, "little") + content


def test_the_first_malformed_item_is_named_as_the_walker_names_it():
    good = _element(0x0020, 0x9128, b"UL", b"\x01\x00\x00\x00")
    # item 2 (20 bytes) is malformed before item 4 (16 bytes), which the layouts would look at first
    items = [good, _sq(b"\x20\x00\x28\x91UL\x04\x00"), good, _sq(b"\x20\x00\x57\x91")]
    buf = b"".join(bytes.fromhex("feff00e0") + len(i).to_bytes(4, "little") + i for i in items)
    with pytest.raises(ValueError, match="at byte 40,") as walker:
        walk_columns(buf)
    ds = Dataset()
    ds._dict[PER_FRAME] = pydicom.dataelem.RawDataElement(PER_FRAME, "SQ", len(buf), buf, 0, False, True)
    with pytest.raises(ValueError, match=re.escape(str(walker.value))):
        FunctionalGroups(ds)


def _defined_lengths(ds: Dataset) -> None:
    """Have pydicom write every sequence and item of ``ds`` with a defined length."""
    for elem in ds:
        if elem.VR == "SQ":
            elem.is_undefined_length = False
            for it in elem.value:
                it.is_undefined_length_sequence_item = False
                _defined_lengths(it)



def test_real_samples_rewritten_with_defined_lengths(tmp_path):
    ect = pydicom.dcmread(sample("eCT_Supplemental.dcm"))
    _defined_lengths(ect)
    ds = _reread(ect, tmp_path / "ect.dcm")
    buf = bytes(ds._dict[PER_FRAME].value)
    fast = fast_columns(buf)
    assert fast is not None and per_frame(*fast) == per_frame(*walk_columns(buf))
    assert frame_table(ds) == frame_table(pydicom.dcmread(sample("eCT_Supplemental.dcm")))
    assert check_series([ds]) == check_series([pydicom.dcmread(sample("eCT_Supplemental.dcm"))])
    emr = pydicom.dcmread(sample("emri_small.dcm"))  # no functional groups: refused, checked as before
    deferred = pydicom.dcmread(sample("emri_small.dcm"), defer_size=1 << 20)
    assert check_series([emr]) == check_series([deferred])


def _strptime_only(value):
    """The reference: every value through ``strptime``, never the slicing shortcut."""
    return _strptime_dt(str(value).strip().split("+")[0].split("-")[0]) if value else None


@pytest.mark.parametrize(
    "value",
    [
        "20240115100000.000000", "20240115100000.5", "20240115235959.123456 ", "20240115100000",
        "20240115100000.", "202401151234", "20240115", "20240230100000", "20241315100000",
        "20240115246000", "20240115100060", "20240115100061.1", "20240115100000.1234567",
        "20240115100000+0100", "20240115100000.25-0500", "2024011510", "", None, "x", "٢٠٢٤0115100000",
    ],
)
def test_dt_parsing_equals_strptime(value):
    assert _parse_dt(value) == _strptime_only(value)


def test_rescale_in_runs_equals_one_frame_at_a_time():
    rng = np.random.default_rng(1)
    px = rng.integers(0, 4096, (40, 5, 4)).astype(np.uint16)
    index = np.arange(40)
    cells = np.concatenate([np.arange(20), rng.permutation(np.arange(20, 40))])  # runs, then scattered
    slope = np.where(np.arange(40) < 10, 1.0, 0.5)
    slope[30] = 2.25
    icpt = np.where(np.arange(40) % 7 == 0, -1024.0, 0.0)
    got = np.zeros((40, 5, 4), np.float32)
    _rescale(px, got, index, cells, slope, icpt)
    want = np.zeros_like(got)
    for i in range(40):
        np.multiply(px[index[i]], np.float32(slope[i]), out=want[cells[i]], casting="unsafe")
        if icpt[i]:
            want[cells[i]] += np.float32(icpt[i])
    np.testing.assert_array_equal(got, want)
    # frames given out of source order come out the same
    order = rng.permutation(40)
    again = np.zeros_like(got)
    _rescale(px, again, index[order], cells[order], slope[order], icpt[order])
    np.testing.assert_array_equal(again, want)


def test_table_of_a_classic_image(tmp_path):
    _, files = make("dsc", "classic", tmp_path, size=SIZE)
    ds = pydicom.dcmread(files[0])
    assert _table(ds).rows() == frame_table(ds) and len(frame_table(ds)) == 1


def _parsed(path: Path) -> Dataset:
    """Read with every element decoded (what the comparison of parts did before it compared bytes)."""
    ds = pydicom.dcmread(path, defer_size=1 << 20)
    for elem in ds:
        _ = elem.value
    return ds


@pytest.mark.parametrize("rule", [None, "concat-attribute", "concat-uid", "concat-offset"])
def test_parts_compared_by_bytes_give_the_same_findings(tmp_path, rule):
    _, files = make("ctp", "concat", tmp_path, break_rule=rule, size=SIZE, seed=5)
    series = [f for f in files if f.parent.name == "series01"]
    raw = [pydicom.dcmread(p, defer_size=1 << 20) for p in series]
    assert check_parts(raw) == check_parts([_parsed(p) for p in series])


def test_nan_in_identical_bytes_still_differs_as_before(tmp_path):
    _, files = make("dsc", "concat", tmp_path, size=SIZE)
    series = [f for f in files if f.parent.name == "series01"]
    for p in series:  # the same NaN in every part: NaN != NaN, so pydicom's comparison reports it
        ds = pydicom.dcmread(p)
        ds.AcquisitionDuration = float("nan")  # FD
        with pytest.warns(UserWarning, match="Invalid value for VR DS"):
            ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].SpacingBetweenSlices = "NaN"
        ds.save_as(p)
    raw = [pydicom.dcmread(p, defer_size=1 << 20) for p in series]
    found = check_parts(raw)
    assert found == check_parts([_parsed(p) for p in series])
    assert {f.keyword for f in found} == {"AcquisitionDuration", "SharedFunctionalGroupsSequence"}


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
def test_frame_rules_by_column_equal_frame_by_frame(phantoms, case, monkeypatch):
    from perfnode.dicom import perf

    by_column = perf._frame_rules([pydicom.dcmread(p, defer_size=1 << 20) for p in phantoms[case]])
    monkeypatch.setattr(FunctionalGroups, "ints", lambda self, *kw: None)
    by_frame = perf._frame_rules([pydicom.dcmread(p, defer_size=1 << 20) for p in phantoms[case]])
    assert by_column == by_frame
    assert list(by_column[1]) == list(by_frame[1])  # cells in the same order


def test_ints_only_when_every_frame_has_its_own_integers(phantoms):
    path = phantoms[("dsc", "single", None)][0]
    fg = FunctionalGroups(pydicom.dcmread(path, defer_size=1 << 20))
    div = fg.ints("FrameContentSequence", "DimensionIndexValues")
    assert div.shape == (len(fg), 3)
    assert div.tolist() == fg.column("FrameContentSequence", "DimensionIndexValues").tolist()
    assert fg.ints("FrameContentSequence", "StackID") is None  # text
    assert fg.ints("PixelMeasuresSequence", "PixelSpacing") is None  # shared
    parsed = pydicom.dcmread(path)
    _ = parsed.PerFrameFunctionalGroupsSequence[0]
    assert FunctionalGroups(parsed).ints("FrameContentSequence", "DimensionIndexValues") is None


@pytest.mark.parametrize("chunk_frames", [1, 3, 7, 40])
def test_frames_read_from_the_file_in_chunks_equal_the_array(tmp_path, monkeypatch, chunk_frames):
    from perfnode.dicom import assembly as frames

    rng = np.random.default_rng(2)
    px = rng.integers(-2000, 2000, (40, 5, 4)).astype("<i2")
    path = tmp_path / "px.bin"
    path.write_bytes(b"head" + px.tobytes())
    monkeypatch.setattr(frames, "CHUNK_BYTES", chunk_frames * 5 * 4 * 2)
    reader = frames._FileFrames(path, np.dtype("<i2"), 4, px.shape)
    assert reader.chunk == chunk_frames
    index = np.arange(40)
    cells = np.concatenate([np.arange(25), rng.permutation(np.arange(25, 40))])
    slope, icpt = np.full(40, 0.5), np.where(np.arange(40) % 5 == 0, -1024.0, 0.0)
    order = rng.permutation(40)
    got, want = np.zeros((40, 5, 4), np.float32), np.zeros((40, 5, 4), np.float32)
    _rescale(reader, got, index[order], cells[order], slope[order], icpt[order])
    _rescale(px, want, index, cells, slope, icpt)
    np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="mmap length is greater than file size"):
        frames._FileFrames(path, np.dtype("<i2"), 6, px.shape)  # a truncated file, as numpy's memmap said


def test_a_frame_without_position_is_named_as_before(tmp_path):
    from perfnode.dicom.frames import AssemblyError, assemble

    _, files = make("dsc", "single", tmp_path, size=SIZE)
    ds = pydicom.dcmread(files[0])
    del ds.PerFrameFunctionalGroupsSequence[4].PlanePositionSequence[0].ImagePositionPatient
    ds.save_as(files[0])
    missing = r"frame 5: \(0020,0032\) ImagePositionPatient missing in \(0020,9113\)"
    with pytest.raises(AssemblyError, match=missing):
        assemble([files[0]])


def test_shared_groups_decoded_for_the_frames_are_compared_by_their_bytes(tmp_path):
    from perfnode.dicom.groups import SHARED, functional_groups, raw_element

    _, files = make("dsc", "concat", tmp_path, size=SIZE)
    series = [f for f in files if f.parent.name == "series01"]
    parts = [pydicom.dcmread(p, defer_size=1 << 20) for p in series]
    for part in parts:
        functional_groups(part)  # decodes the shared groups
        assert raw_element(part, SHARED) is not None
    assert check_parts(parts) == [] == check_parts([_parsed(p) for p in series])
    # replaced after decoding: no longer the bytes read, so compared decoded
    changed = deepcopy(parts[0].SharedFunctionalGroupsSequence)
    changed[0].PixelMeasuresSequence[0].SliceThickness = 9.5
    parts[1].SharedFunctionalGroupsSequence = changed
    assert raw_element(parts[1], SHARED) is None
    assert [f.keyword for f in check_parts(parts)] == ["SharedFunctionalGroupsSequence"]
    # different bytes in the file: found whether or not the groups were decoded first
    ds = pydicom.dcmread(series[1])
    ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].SliceThickness = 9.5
    ds.save_as(series[1])
    parts = [pydicom.dcmread(p, defer_size=1 << 20) for p in series]
    for part in parts:
        functional_groups(part)
    assert check_parts(parts) == check_parts([_parsed(p) for p in series])
    assert [f.keyword for f in check_parts(parts)] == ["SharedFunctionalGroupsSequence"]
