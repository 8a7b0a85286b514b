"""The strict encoding walk (perfnode.dicom.wellformed): what pydicom reads leniently, it refuses by name."""

from __future__ import annotations

import random
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import DeflatedExplicitVRLittleEndian

from perfnode.dicom.wellformed import MAX_DEPTH, Unreadable, check_object, type1_attributes
from tests.reliability.mutate import (
    MR,
    TARGETED,
    conformant_mr,
    oracle,
    part10,
    random_mutation,
    split,
    with_sequence,
)
from tests.serve_helpers import SAMPLES, sample


def _check(tmp_path: Path, data: bytes, sop_class: str = MR):
    path = tmp_path / "o.dcm"
    path.write_bytes(data)
    return check_object(path, split(data)[2], sop_class=sop_class)


@pytest.mark.parametrize("name", sorted(TARGETED))
def test_each_corruption_issue_17_found_is_refused_naming_the_element(tmp_path, name):
    make, mutate, expected = TARGETED[name]
    good = make()
    assert _check(tmp_path, good).findings == []  # conformant before…
    with pytest.raises(Unreadable) as err:
        _check(tmp_path, mutate(good))  # …unreadable after, and the message names the element
    assert f"unreadable: {err.value}".startswith(expected), str(err.value)
    assert oracle(tmp_path / "o.dcm") is not None  # DCMTK or pydicom agree it is broken


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_pydicom_samples_in_every_transfer_syntax_are_readable(name):
    ds = dcmread(sample(name), stop_before_pixels=True)
    report = check_object(sample(name), SAMPLES[name], sop_class=str(ds.SOPClassUID))
    assert report.elements > 10
    if SAMPLES[name] in ("1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.90"):
        assert report.fragments >= int(ds.get("NumberOfFrames", 1))


def test_real_vendor_objects_are_readable():
    from tests.real_data import REAL_DATA

    files = sorted(p for p in REAL_DATA.rglob("*")
                   if p.is_file() and p.suffix.lower() in ("", ".dcm", ".ima"))
    checked = 0
    for path in files:
        try:
            ds = dcmread(path, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - README files, licences
            continue
        check_object(path, str(ds.file_meta.TransferSyntaxUID), sop_class=str(ds.SOPClassUID))
        checked += 1
    assert checked >= 10


def test_type1_attributes_missing_are_findings_naming_tag_module_and_rule(tmp_path):
    ds = conformant_mr()
    del ds.ScanningSequence
    ds.ImageType = ""
    report = _check(tmp_path, part10(ds))
    got = {(f.tag, f.keyword, f.found, f.rule) for f in report.findings}
    assert got == {("(0018,0020)", "ScanningSequence", "missing", "PS3.3"),
                   ("(0008,0008)", "ImageType", "empty", "PS3.3")}
    assert all("mr-image module" in f.expected for f in report.findings)
    assert ("(0018,0020)", "mr-image") in {(f"({t >> 16:04X},{t & 0xFFFF:04X})", m)
                                          for t, m in type1_attributes(MR)}


def test_extra_pixel_bytes_and_odd_lengths_are_findings_not_refusals(tmp_path):
    ds = conformant_mr()
    ds.PixelData = ds.PixelData + bytes(64)
    report = _check(tmp_path, part10(ds))
    assert [(f.keyword, f.found) for f in report.findings] == [("PixelData", "2112 bytes")]


def test_pixel_description_that_no_viewer_can_use_is_unreadable(tmp_path):
    for change, message in [
            ({"BitsStored": 20}, "(0028,0101) BitsStored: 20, not 1 to Bits Allocated 16"),
            ({"PhotometricInterpretation": "MONOCHROLE2"}, "(0028,0004) PhotometricInterpretation"),
            ({"PixelRepresentation": None}, "(0028,0103) PixelRepresentation: missing")]:
        ds = conformant_mr()
        for kw, value in change.items():
            if value is None:
                delattr(ds, kw)
            else:
                setattr(ds, kw, value)
        with pytest.raises(Unreadable, match=r"^" + message.replace("(", r"\(").replace(")", r"\)")):
            _check(tmp_path, part10(ds))


def test_multiframe_native_length_uses_number_of_frames(tmp_path):
    ds = conformant_mr(frames=3)
    ds.NumberOfFrames = 4
    with pytest.raises(Unreadable, match=r"32 × 32 × 4 × 1 × 16 bits = 8192 bytes"):
        _check(tmp_path, part10(ds))


def test_nesting_deeper_than_the_limit_is_refused_not_a_crash(tmp_path):
    good = part10(conformant_mr())
    head, body, _ = split(good)
    nested = b""
    for _ in range(MAX_DEPTH + 5):  # (0040,0275) SQ, undefined length, one undefined-length item
        nested = (struct.pack("<HH2sHI", 0x0040, 0x0275, b"SQ", 0, 0xFFFFFFFF)
                  + b"\xfe\xff\x00\xe0\xff\xff\xff\xff" + nested + b"\xfe\xff\x0d\xe0\0\0\0\0"
                  + b"\xfe\xff\xdd\xe0\0\0\0\0")
    with pytest.raises(Unreadable, match="nested deeper than"):
        _check(tmp_path, head + nested + body)


def test_deflate_bomb_is_refused_within_bounded_memory(tmp_path, monkeypatch):
    import perfnode.dicom.wellformed as wf

    monkeypatch.setattr(wf, "MAX_INFLATED", 1 << 20)
    head, body, _ = split(part10(conformant_mr(), DeflatedExplicitVRLittleEndian))
    c = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    bomb = c.compress(bytes(8 << 20)) + c.flush()
    with pytest.raises(Unreadable, match="inflates past 1048576 bytes"):
        _check(tmp_path, head + bomb)
    assert _check(tmp_path, head + body).findings == []  # a real deflated one reads


def test_random_mutations_never_pass_when_an_outside_reader_fails(tmp_path):
    """No object the walk accepts (even with findings) is one that DCMTK or pydicom cannot read."""
    rng = random.Random(17)
    base = part10(with_sequence(conformant_mr()))
    accepted = refused = 0
    for _ in range(150):
        _, data = random_mutation(base, rng)
        try:
            _check(tmp_path, data)
        except Unreadable:
            refused += 1
            continue
        accepted += 1
        assert oracle(tmp_path / "o.dcm") is None, data
    assert accepted > 10 and refused > 30


_PEAK = """
import sys, resource
from perfnode.dicom.wellformed import check_object
report = check_object(sys.argv[1], "1.2.840.10008.1.2.1", sop_class="1.2.840.10008.5.1.4.1.1.4")
print(len(report.findings), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def test_a_big_object_costs_its_headers_not_its_size(tmp_path):
    """A 256 MB object (sparse file) is walked in a fresh process whose peak RSS grows < 32 MB."""
    ds = conformant_mr(rows=256, columns=256)
    frames = 2048
    ds.NumberOfFrames = frames
    head, body, _ = split(part10(ds))
    start = body.rfind(b"\xe0\x7f\x10\x00")
    pixels = 256 * 256 * frames * 2
    big, small = tmp_path / "big.dcm", tmp_path / "small.dcm"
    small.write_bytes(part10(conformant_mr()))
    with open(big, "wb") as f:
        f.write(head + body[:start] + struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, pixels))
        f.truncate(len(head) + start + 12 + pixels)
    peaks = {}
    for name, path in (("small", small), ("big", big)):
        out = subprocess.run([sys.executable, "-c", _PEAK, str(path)], capture_output=True, text=True,
                             check=True, cwd=Path(__file__).resolve().parents[2]).stdout.split()
        assert out[0] == "0"  # no findings
        peaks[name] = int(out[1])
    assert peaks["big"] - peaks["small"] < 32, peaks


def test_type1_table_is_highdicoms_tables_of_the_standard():
    """The shipped table is what ``python -m perfnode.dicom.wellformed`` derives from highdicom now."""
    import json

    from perfnode.dicom.wellformed import TYPE1_TABLE, build_type1_table

    assert json.loads(TYPE1_TABLE.read_text()) == build_type1_table()
