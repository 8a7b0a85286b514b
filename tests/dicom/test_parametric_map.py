"""Parametric Maps: values, geometry, references, codes, provenance, UIDs — checked by reading back
with highdicom and validating with dciodvfy and dcmdump (real tools, no mocks)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from perfnode.dicom.codes import quantity
from perfnode.dicom.findings import Finding
from perfnode.dicom.parametric_map import (
    MapGeometry,
    build_parametric_maps,
    derive_uid,
    frame_order,
    map_values,
)
from perfnode.dicom.provenance import PRIVATE_CREATOR, read_provenance
from tests.nodes import need, run

ORIENTATION = (1.0, 0.0, 0.0, 0.0, 0.984808, -0.173648)  # 10° oblique
ORIGIN = np.array([-50.0, -40.0, 10.0])
SLICE_GAP = 4.0


def classic_series(
    nz: int = 3, nt: int = 4, rows: int = 16, cols: int = 12, *, shuffle: bool = True, seed: int = 0
) -> list[Dataset]:
    """A dynamic classic MR series: nt time points × nz slices, oblique, in scrambled arrival order."""
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    o = np.asarray(ORIENTATION)
    normal = np.cross(o[:3], o[3:])
    out = []
    for t in range(nt):
        for z in range(nz):
            ds = Dataset()
            ds.file_meta = FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
            ds.SOPClassUID = MRImageStorage
            ds.SOPInstanceUID = generate_uid()
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
            ds.PatientName, ds.PatientID = "Test^Perf", "P1"
            ds.PatientBirthDate, ds.PatientSex = "19700101", "O"
            ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.StudyID = "20260101", "120000", "A1", "1"
            ds.ReferringPhysicianName = ""
            ds.Modality, ds.SeriesNumber, ds.InstanceNumber, ds.Manufacturer = "MR", 5, t * nz + z + 1, "X"
            ds.ImageType = ["ORIGINAL", "PRIMARY", "PERFUSION"]
            # slices deliberately stored top-down: the map grid must sort them along the normal
            ds.ImagePositionPatient = [float(v) for v in ORIGIN + (nz - 1 - z) * SLICE_GAP * normal]
            ds.ImageOrientationPatient = list(ORIENTATION)
            ds.PixelSpacing = [1.5, 1.25]
            ds.SliceThickness = SLICE_GAP
            ds.PositionReferenceIndicator = ""
            ds.ScanningSequence, ds.SequenceVariant = "EP", "NONE"
            ds.ScanOptions, ds.MRAcquisitionType = "", "2D"
            ds.EchoTime, ds.RepetitionTime, ds.EchoTrainLength = 30, 1500, 1
            ds.AcquisitionTime = f"1200{t:02d}"
            ds.AcquisitionNumber = t + 1
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.Rows, ds.Columns = rows, cols
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
            ds.PixelData = (np.arange(rows * cols, dtype=np.uint16) + 100 * t + z).tobytes()
            out.append(ds)
    if shuffle:
        order = np.random.default_rng(seed).permutation(len(out))
        out = [out[i] for i in order]
    return out


def dciodvfy_errors(path: Path) -> list[str]:
    res = run([need("dciodvfy"), str(path)])
    return [line for line in (res.stdout + res.stderr).splitlines() if line.startswith("Error")]


def save_all(objs, folder: Path) -> list[Path]:
    paths = []
    for i, ds in enumerate(objs):
        p = folder / f"obj{i}.dcm"
        ds.save_as(p, enforce_file_format=True)
        paths.append(p)
    return paths


PROVENANCE = {
    "technique": "dsc",
    "model": "model-free",
    "method": "oSVD",
    "parameters": {"oscillation_index": 0.095, "truncation": 0.2},
    "aif": {
        "method": "auto",
        "times_s": [0.0, 1.5, 3.0, 4.5],
        "curve": [0.0, 2.5, 7.25, 3.125],
        "voxels": [[1, 4, 5], [1, 4, 6]],
    },
    "baseline_frames": [0, 1],
    "constants": {"hematocrit_large": 0.45, "hematocrit_small": 0.25, "density_g_ml": 1.04},
}
FINDINGS = [
    Finding.make("warning", "RepetitionTime", "1500", "<= 1500 ms", "ESR 2024 Table 1"),
    Finding.make("info", None, "3 slices", "whole-brain coverage", "ESR 2024 Table 1"),
]


@pytest.fixture(scope="module")
def classic_maps(tmp_path_factory):
    src = classic_series()
    geom = MapGeometry.from_datasets(src)
    rng = np.random.default_rng(1)
    cbf = rng.uniform(5, 90, geom.shape).astype(np.float32)
    cbf[0, 0, 0] = np.nan
    cbf[1, 2, 3] = np.inf
    mtt = rng.uniform(1, 9, geom.shape)  # float64 in, float32 out
    quality = rng.uniform(0, 1, geom.shape).astype(np.float32)
    maps = {"cbf": cbf, "mtt": mtt, "quality": quality}
    pms = build_parametric_maps(
        src,
        maps,
        uid_seed="job-1/1.2.3",
        provenance=PROVENANCE,
        findings=FINDINGS,
        units={"cbf": "mL/100g/min", "mtt": "s", "quality": ""},
    )
    folder = tmp_path_factory.mktemp("pm")
    return src, geom, maps, pms, save_all(pms, folder)


def test_geometry_sorted_along_normal_and_unique():
    src = classic_series(nz=4, nt=3)
    geom = MapGeometry.from_datasets(src)
    assert geom.shape == (4, 16, 12)
    dist = np.asarray(geom.positions) @ geom.normal
    assert np.all(np.diff(dist) > 0)
    assert np.allclose(np.diff(dist), SLICE_GAP, atol=1e-4)
    assert geom.spacing_between_slices == pytest.approx(SLICE_GAP, abs=1e-4)
    assert geom.pixel_spacing == (1.5, 1.25)
    assert geom.frame_of_reference_uid == src[0].FrameOfReferenceUID
    assert np.allclose(geom.positions[0], ORIGIN)


def test_every_output_passes_dciodvfy(classic_maps):
    *_, paths = classic_maps
    for p in paths:
        assert dciodvfy_errors(p) == [], p


def test_one_series_one_instance_per_quantity(classic_maps):
    src, _, maps, pms, paths = classic_maps
    read = [pydicom.dcmread(p) for p in paths]
    assert len(read) == len(maps)
    assert len({ds.SeriesInstanceUID for ds in read}) == 1
    assert len({ds.SOPInstanceUID for ds in read}) == len(maps)
    assert read[0].SeriesInstanceUID != src[0].SeriesInstanceUID
    assert all(ds.StudyInstanceUID == src[0].StudyInstanceUID for ds in read)
    assert all(ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.30" for ds in read)
    assert [int(ds.InstanceNumber) for ds in read] == [1, 2, 3]
    assert all(ds.BitsAllocated == 32 and "FloatPixelData" in ds for ds in read)


def test_values_read_back_exactly_with_nan_kept(classic_maps):
    _, _, maps, _, paths = classic_maps
    for (name, want), p in zip(maps.items(), paths, strict=True):
        pm = hd.pm.ParametricMap.from_dataset(pydicom.dcmread(p))
        q, got = map_values(pm)
        assert q is quantity(name)
        expected = np.asarray(want, dtype=np.float32).copy()
        expected[~np.isfinite(expected)] = np.nan
        assert got.shape == expected.shape
        assert np.array_equal(np.isnan(got), np.isnan(expected))
        assert np.array_equal(got[~np.isnan(got)], expected[~np.isnan(expected)])
    cbf = map_values(pydicom.dcmread(paths[0]))[1]
    assert np.isnan(cbf[0, 0, 0]) and np.isnan(cbf[1, 2, 3])  # failed fit and +inf → no value


def test_geometry_identical_to_source(classic_maps):
    src, geom, _, _, paths = classic_maps
    by_pos: dict[tuple, set] = {}
    for ds in src:
        by_pos.setdefault(tuple(np.round(ds.ImagePositionPatient, 3)), set()).add(ds.SOPInstanceUID)
    for p in paths:
        ds = pydicom.dcmread(p)
        assert ds.FrameOfReferenceUID == src[0].FrameOfReferenceUID
        shared = ds.SharedFunctionalGroupsSequence[0]
        assert np.allclose(shared.PlaneOrientationSequence[0].ImageOrientationPatient, ORIENTATION)
        assert [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing] == [1.5, 1.25]
        assert float(shared.PixelMeasuresSequence[0].SliceThickness) == SLICE_GAP
        assert (ds.Rows, ds.Columns, int(ds.NumberOfFrames)) == (16, 12, 3)
        for i, j in enumerate(frame_order(ds)[0]):  # highdicom may store frames in another order
            frame = ds.PerFrameFunctionalGroupsSequence[j]
            pos = frame.PlanePositionSequence[0].ImagePositionPatient
            assert np.allclose(pos, geom.positions[i], atol=1e-4)
            # every frame references all source images (all time points) at its position
            refs = {
                item.ReferencedSOPInstanceUID for item in frame.DerivationImageSequence[0].SourceImageSequence
            }
            assert refs == by_pos[tuple(np.round(pos, 3))]
            assert len(refs) == 4
        series_refs = ds.ReferencedSeriesSequence[0]
        assert series_refs.SeriesInstanceUID == src[0].SeriesInstanceUID
        assert len(series_refs.ReferencedInstanceSequence) == len(src)


def test_real_world_value_mapping_has_code_unit_and_finite_range(classic_maps):
    _, _, maps, _, paths = classic_maps
    for (name, values), p in zip(maps.items(), paths, strict=True):
        q = quantity(name)
        ds = pydicom.dcmread(p)
        rwvm = ds.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
        concept = rwvm.QuantityDefinitionSequence[0].ConceptCodeSequence[0]
        assert (concept.CodeValue, concept.CodingSchemeDesignator, concept.CodeMeaning) == (
            q.code.value,
            q.code.scheme_designator,
            q.code.meaning,
        )
        unit = rwvm.MeasurementUnitsCodeSequence[0]
        assert (unit.CodeValue, unit.CodingSchemeDesignator) == (q.unit.value, "UCUM")
        v = np.asarray(values, dtype=np.float32)
        finite = v[np.isfinite(v)]
        lo, hi = rwvm.DoubleFloatRealWorldValueFirstValueMapped, rwvm.DoubleFloatRealWorldValueLastValueMapped
        assert np.isfinite(lo) and np.isfinite(hi)
        assert (lo, hi) == (pytest.approx(float(finite.min())), pytest.approx(float(finite.max())))
        assert rwvm.LUTLabel == q.display
    assert (
        pydicom.dcmread(paths[0])
        .SharedFunctionalGroupsSequence[0]
        .RealWorldValueMappingSequence[0]
        .QuantityDefinitionSequence[0]
        .ConceptCodeSequence[0]
        .CodeValue
        == "126390"
    )
    private = pydicom.dcmread(paths[2])  # quality: a private code, its scheme declared
    assert private.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == "99PERFNODE"


def test_provenance_parsable_and_readable(classic_maps):
    _, _, _, _, paths = classic_maps
    ds = pydicom.dcmread(paths[0])
    rec = read_provenance(ds)
    assert rec["schema"] == "perfnode-provenance/1"
    assert rec["software"]["name"] == "perfnode" and rec["software"]["version"]
    for key, value in PROVENANCE.items():
        assert rec[key] == value, key
    assert [f["keyword"] for f in rec["qc_findings"]] == ["RepetitionTime", ""]
    assert rec["qc_findings"][0]["tag"] == "(0018,0080)"
    assert rec["map"]["key"] == "cbf" and rec["map"]["unit"] == "ml/(100.g)/min"
    assert rec["map"]["nan_voxels"] == 2
    assert rec["source"]["series_instance_uid"]
    # for a person: dcmdump shows the summary, the constants, the AIF and the QC finding
    dump = run([need("dcmdump"), "+L", "+U8", str(paths[0])], check=True).stdout
    assert "PERFNODE 1.0" in dump
    assert "technique dsc" in dump and "oSVD" in dump
    assert "constants.hematocrit_large: 0.45" in dump
    assert "aif.curve: [0, 2.5, 7.25, 3.125]" in dump
    assert "QC WARNING: (0018,0080) RepetitionTime" in dump
    assert ds.DerivationDescription.startswith("perfnode ")
    equipment = [e for e in ds.ContributingEquipmentSequence if e.Manufacturer == "perfnode"]
    assert equipment and equipment[0].PurposeOfReferenceCodeSequence[0].CodeValue == "109102"
    assert ds.Manufacturer == "perfnode"


def test_read_provenance_refuses_foreign_object():
    with pytest.raises(KeyError, match=PRIVATE_CREATOR):
        read_provenance(classic_series(nz=1, nt=1)[0])


def test_uids_deterministic_per_seed():
    src = classic_series(nz=2, nt=2)
    shape = MapGeometry.from_datasets(src).shape
    maps = {"ktrans": np.full(shape, 0.1), "ve": np.full(shape, 0.3)}
    a = build_parametric_maps(src, maps, uid_seed="job-7")
    b = build_parametric_maps(src, maps, uid_seed="job-7")
    c = build_parametric_maps(src, maps, uid_seed="job-8")
    assert [x.SOPInstanceUID for x in a] == [x.SOPInstanceUID for x in b]
    assert a[0].SeriesInstanceUID == b[0].SeriesInstanceUID
    assert a[0].SeriesInstanceUID != c[0].SeriesInstanceUID
    assert not {x.SOPInstanceUID for x in a} & {x.SOPInstanceUID for x in c}
    assert a[0].SOPInstanceUID.startswith("1.2.826.0.1.3680043.8.498.")
    assert derive_uid("s", "a") == derive_uid("s", "a") != derive_uid("s", "b")
    # a re-run makes the same object: only creation times differ
    clock = {"InstanceCreationDate", "InstanceCreationTime", "ContentDate", "ContentTime",
             "ContributingEquipmentSequence"}
    for x, y in zip(a, b, strict=True):
        assert {e.keyword for e in x if e.keyword not in clock and e.value != y[e.tag].value} == set()
        assert [e for e in x.ContributingEquipmentSequence if e.Manufacturer == "perfnode"] == \
            [e for e in y.ContributingEquipmentSequence if e.Manufacturer == "perfnode"]
    with pytest.raises(ValueError, match="uid_seed"):
        derive_uid("", "x")


def test_enhanced_source_frames_referenced(tmp_path):
    classic = classic_series(nz=3, nt=2, shuffle=False)
    enhanced = hd.legacy.LegacyConvertedEnhancedMRImage(
        classic,
        series_instance_uid=generate_uid(),
        series_number=6,
        sop_instance_uid=generate_uid(),
        instance_number=1,
    )
    enhanced = pydicom.dcmread(save_all([enhanced], tmp_path)[0])
    geom = MapGeometry.from_datasets([enhanced])
    assert geom.shape == (3, 16, 12)
    values = np.linspace(0, 1, int(np.prod(geom.shape)), dtype=np.float32).reshape(geom.shape)
    pms = build_parametric_maps([enhanced], {"vp": values}, uid_seed="enh")
    (tmp_path / "out").mkdir()
    path = save_all(pms, tmp_path / "out")[0]
    assert dciodvfy_errors(path) == []
    ds = pydicom.dcmread(path)
    frame_pos = [
        f.PlanePositionSequence[0].ImagePositionPatient for f in enhanced.PerFrameFunctionalGroupsSequence
    ]
    for i, j in enumerate(frame_order(ds)[0]):
        items = ds.PerFrameFunctionalGroupsSequence[j].DerivationImageSequence[0].SourceImageSequence
        assert {it.ReferencedSOPInstanceUID for it in items} == {enhanced.SOPInstanceUID}
        numbers = sorted(int(it.ReferencedFrameNumber) for it in items)
        assert len(numbers) == 2  # both time points at this slice
        for n in numbers:
            assert np.allclose(frame_pos[n - 1], geom.positions[i], atol=1e-3)
    assert np.array_equal(map_values(ds)[1], values)


def test_all_nan_map_is_still_valid(tmp_path):
    src = classic_series(nz=2, nt=1)
    shape = MapGeometry.from_datasets(src).shape
    pms = build_parametric_maps(src, {"tmax": np.full(shape, np.nan)}, uid_seed="nan")
    path = save_all(pms, tmp_path)[0]
    assert dciodvfy_errors(path) == []
    rwvm = pydicom.dcmread(path).SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
    assert rwvm.DoubleFloatRealWorldValueFirstValueMapped == 0.0
    assert np.isnan(map_values(pydicom.dcmread(path))[1]).all()


def test_bad_input_refused_with_attribute_named():
    src = classic_series(nz=2, nt=1)
    shape = MapGeometry.from_datasets(src).shape
    with pytest.raises(ValueError, match=r"\(0028,0010\) Rows"):
        build_parametric_maps(src, {"cbf": np.zeros((shape[0], shape[1] + 1, shape[2]))}, uid_seed="x")
    with pytest.raises(KeyError, match="unknown perfusion quantity 'flux'"):
        build_parametric_maps(src, {"flux": np.zeros(shape)}, uid_seed="x")
    with pytest.raises(ValueError, match=r"unit '1/s' is not '/min'"):
        build_parametric_maps(src, {"ktrans": np.zeros(shape)}, uid_seed="x", units={"ktrans": "1/s"})
    with pytest.raises(ValueError, match="given twice"):
        build_parametric_maps(src, {"cbf": np.zeros(shape), "cbf_ml_100g_min": np.zeros(shape)}, uid_seed="x")
    for ds in src:
        del ds.FrameOfReferenceUID
    with pytest.raises(ValueError, match=r"\(0020,0052\) FrameOfReferenceUID"):
        MapGeometry.from_datasets(src)
    tilted = classic_series(nz=2, nt=1)
    tilted[0].ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    with pytest.raises(ValueError, match=r"\(0020,0037\) ImageOrientationPatient"):
        MapGeometry.from_datasets(tilted)


def test_many_maps_count_by_code(classic_maps):
    _, _, _, pms, _ = classic_maps
    codes = Counter(
        pm.SharedFunctionalGroupsSequence[0]
        .RealWorldValueMappingSequence[0]
        .QuantityDefinitionSequence[0]
        .ConceptCodeSequence[0]
        .CodeValue
        for pm in pms
    )
    assert codes == Counter({"126390": 1, "113052": 1, "R2FIT": 1})


def test_one_reference_per_frame_when_asked(tmp_path):
    src = classic_series(nz=3, nt=5, shuffle=False)
    shape = MapGeometry.from_datasets(src).shape
    pm = build_parametric_maps(
        src, {"cbv": np.ones(shape)}, uid_seed="lean", reference_all_time_points=False
    )[0]
    path = save_all([pm], tmp_path)[0]
    assert dciodvfy_errors(path) == []
    ds = pydicom.dcmread(path)
    first_time = {s.SOPInstanceUID for s in src[:3]}  # shuffle=False: the first nz images are t = 0
    refs = [
        it.ReferencedSOPInstanceUID
        for f in ds.PerFrameFunctionalGroupsSequence
        for it in f.DerivationImageSequence[0].SourceImageSequence
    ]
    assert len(refs) == 3 and set(refs) == first_time
    assert len(ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence) == 15  # the whole series


def test_every_quantity_in_the_table_encodes_cleanly(tmp_path):
    from perfnode.dicom.codes import QUANTITIES

    src = classic_series(nz=2, nt=1, rows=6, cols=5)
    shape = MapGeometry.from_datasets(src).shape
    rng = np.random.default_rng(3)
    maps = {key: rng.uniform(0.01, 2.0, shape) for key in QUANTITIES}
    pms = build_parametric_maps(src, maps, uid_seed="all")
    assert len({pm.SOPInstanceUID for pm in pms}) == len(QUANTITIES)
    for key, path in zip(maps, save_all(pms, tmp_path), strict=True):
        assert dciodvfy_errors(path) == [], key
        q, values = map_values(pydicom.dcmread(path))
        assert np.array_equal(values, maps[key].astype(np.float32)), key
        assert q.code == QUANTITIES[key].code


def test_provenance_survives_implicit_vr(tmp_path):
    """A peer may store the map in Implicit VR: the private UT then reads back as UN bytes."""
    src = classic_series(nz=2, nt=1)
    shape = MapGeometry.from_datasets(src).shape
    pm = build_parametric_maps(src, {"cbf": np.ones(shape)}, uid_seed="ivr", provenance=PROVENANCE)[0]
    path = tmp_path / "implicit.dcm"
    pm.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    pm.save_as(path, implicit_vr=True, little_endian=True, enforce_file_format=True)
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ImplicitVRLittleEndian
    assert read_provenance(ds)["aif"] == PROVENANCE["aif"]
    # the per-frame references (encoded once per analysis) are re-encoded for the other syntax
    assert dciodvfy_errors(path) == []
    by_pos = {tuple(np.round(s.ImagePositionPatient, 3)): s.SOPInstanceUID for s in src}
    for frame in ds.PerFrameFunctionalGroupsSequence:
        pos = tuple(np.round(frame.PlanePositionSequence[0].ImagePositionPatient, 3))
        items = frame.DerivationImageSequence[0].SourceImageSequence
        assert [it.ReferencedSOPInstanceUID for it in items] == [by_pos[pos]]
        assert items[0].PurposeOfReferenceCodeSequence[0].CodeValue == "121322"


def test_in_memory_objects_read_like_files():
    src = classic_series(nz=2, nt=3)
    shape = MapGeometry.from_datasets(src).shape
    pm = build_parametric_maps(src, {"cbf": np.ones(shape)}, uid_seed="mem")[0]
    for frame in pm.PerFrameFunctionalGroupsSequence:
        items = frame.DerivationImageSequence[0].SourceImageSequence
        assert len(items) == 3 and all(it.SpatialLocationsPreserved == "YES" for it in items)
        assert frame.DerivationImageSequence[0].DerivationCodeSequence[0].CodeValue == "112187"


def test_summary_reads_flat_provenance_keys():
    """The perfusion models write flat keys (aif_source, aif_voxels, kh, ...): the summary lists them."""
    from perfnode.dicom.provenance import make_provenance, summary

    rec = make_provenance({"technique": "DSC-MRI", "method": "osvd", "aif_source": "automatic",
                           "aif_voxels": [[0, 1, 2], [0, 1, 3], [1, 2, 2]], "aif_curve": np.arange(3.0),
                           "baseline_frames": (0, 5), "kh": 0.733, "rho_g_per_ml": 1.04, "te_s": 0.03},
                          findings=FINDINGS)
    line = summary(rec)
    assert "technique DSC-MRI" in line and "method osvd" in line
    assert "AIF automatic (3 voxels)" in line and "baseline frames [0, 5]" in line
    assert "kh=0.733" in line and "rho_g_per_ml=1.04" in line and "te_s=0.03" in line
    assert line.endswith("QC 2 findings (0 errors)")
    assert rec["aif_curve"] == [0.0, 1.0, 2.0]  # numpy → JSON-able
