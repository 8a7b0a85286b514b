"""The technique is decided from every instance of a series: for each technique, a series whose first file
alone would say something else (or nothing) — the M0 image first, the b = 0 image first, one image per
time point without Number of Temporal Positions — is recognised from the whole series."""

from __future__ import annotations

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from perfnode.techniques import detect_series
from tests.real_data import series_files

MR, CT, ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4.1"


def classic(n: int, modality: str = "MR", slices: int = 2, **common) -> list[Dataset]:
    """``n`` classic images of one series: ``slices`` positions repeated over time, no temporal attributes."""
    series = generate_uid()
    out = []
    for i in range(n):
        ds = Dataset()
        ds.SOPClassUID = MR if modality == "MR" else CT
        ds.SOPInstanceUID, ds.SeriesInstanceUID = generate_uid(), series
        ds.Modality, ds.InstanceNumber = modality, i + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "PERFUSION"]
        ds.ImagePositionPatient = [0.0, 0.0, float(4 * (i % slices))]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        for k, v in common.items():
            setattr(ds, k, v)
        out.append(ds)
    return out


def first_alone_misleads(headers: list[Dataset], technique: str) -> None:
    assert detect_series(headers[:1]).technique != technique
    d = detect_series(headers)
    assert d.technique == technique, d
    assert d.stated, d


@pytest.mark.parametrize("technique, te_ms", [("dsc", 30.0), ("dce", 1.8)])
def test_mr_contrast_time_series_from_the_whole_series(technique, te_ms):
    """One image per slice per time point, no Number of Temporal Positions: one file is one time point."""
    headers = classic(40, EchoTime=te_ms, ContrastBolusAgent="Gadobutrol")
    first_alone_misleads(headers, technique)


def test_ct_perfusion_from_the_whole_series():
    headers = classic(30, "CT", ContrastBolusAgent="Iomeprol")
    first_alone_misleads(headers, "ctp")


def _enhanced_asl(contexts: list[str]) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = ENHANCED_MR, generate_uid()
    ds.Modality, ds.ImageType = "MR", ["ORIGINAL", "PRIMARY", "PERFUSION", "NONE"]
    frames = []
    for c in contexts:
        asl = Dataset()
        asl.ASLContext = c
        frame = Dataset()
        frame.MRArterialSpinLabelingSequence = Sequence([asl])
        frames.append(frame)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.NumberOfFrames = len(frames)
    return ds


def test_asl_whose_first_instance_is_its_m0():
    """Siemens XA ASL: one Enhanced instance per temporal position, the M0 first, then label/control. The
    first instance alone is an M0 (a companion); the series is ASL. (Analysed from the first file, such a
    series was taken for DCE.)"""
    series = generate_uid()
    pairs = [_enhanced_asl([c] * 3) for c in ["LABEL", "CONTROL"] * 3]
    headers = [_enhanced_asl(["M_ZERO_SCAN"] * 3), *pairs]
    for ds in headers:
        ds.SeriesInstanceUID, ds.EchoTime = series, 2.0
    first = detect_series(headers[:1])
    assert first.technique is None and first.companion_of == "asl"
    first_alone_misleads(headers, "asl")


def test_dwi_whose_first_image_is_b0_without_a_b_value():
    """GE classic DWI (real files): the b = 0 images carry no DiffusionBValue; the series is DWI."""
    files = series_files("ge_dwi_classic")
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    headers.sort(key=lambda ds: int(ds.InstanceNumber))
    assert "DiffusionBValue" not in headers[0]
    first_alone_misleads(headers, "dwi")


def test_ivim_whose_first_image_is_b0():
    b_values = [0, 10, 20, 50, 100, 200, 400, 800]
    headers = classic(len(b_values), slices=1, EchoTime=70.0)
    for ds, b in zip(headers, b_values, strict=True):
        ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
        if b:
            ds.DiffusionBValue = float(b)
    first_alone_misleads(headers, "ivim")


def test_ambiguous_header_is_said_not_hidden():
    """A dynamic MR series whose description says ASL but whose headers look like DSC (no marker): the
    decision says which techniques were in question."""
    headers = classic(40, EchoTime=30.0, SeriesDescription="pCASL perfusion")
    d = detect_series(headers)
    assert not d.stated and d.ambiguous and d.note and "dsc" in d.reason and "asl" in d.reason
