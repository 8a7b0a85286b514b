"""Test helpers for the store tests: sample objects with fresh UIDs, a pynetdicom SCU, index reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, _config
from pynetdicom.dsutils import split_dataset
from sqlalchemy import func, select
from sqlalchemy.orm import joinedload

from perfnode.archive.db import Database
from perfnode.archive.models import Instance, Series, Study

#: pydicom samples covering the usual transfer syntaxes (name → transfer syntax UID).
SAMPLES = {
    "CT_small.dcm": "1.2.840.10008.1.2.1",
    "MR_small.dcm": "1.2.840.10008.1.2.1",
    "emri_small.dcm": "1.2.840.10008.1.2.1",  # Enhanced MR, 10 frames
    "emri_small_RLE.dcm": "1.2.840.10008.1.2.5",
    "MR_small_bigendian.dcm": "1.2.840.10008.1.2.2",
    "image_dfl.dcm": "1.2.840.10008.1.2.1.99",
    "SC_rgb_small_odd_jpeg.dcm": "1.2.840.10008.1.2.4.50",
    "JPEG-lossy.dcm": "1.2.840.10008.1.2.4.51",
    "SC_rgb_jpeg_gdcm.dcm": "1.2.840.10008.1.2.4.70",
    "MR_small_jpeg_ls_lossless.dcm": "1.2.840.10008.1.2.4.80",
    "JPEGLSNearLossless_16.dcm": "1.2.840.10008.1.2.4.81",
    "MR2_J2KR.dcm": "1.2.840.10008.1.2.4.90",
    "JPEG2000.dcm": "1.2.840.10008.1.2.4.91",
}


def sample(name: str) -> Path:
    return Path(get_testdata_file(name))


def copy_with(src: Path, dest: Path, **changes) -> Path:
    """Save ``src`` to ``dest`` with attributes changed (``None`` deletes); the meta follows the SOP UIDs."""
    ds = dcmread(src)
    for kw, value in changes.items():
        if value is None:
            if kw in ds:
                delattr(ds, kw)
        else:
            setattr(ds, kw, value)
    if "SOPInstanceUID" in ds:
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if "SOPClassUID" in ds and "SOPClassUID" in changes:
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    dest.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(dest)
    return dest


def fresh_copy(name: str, dest_dir: Path, **changes) -> Path:
    """A copy of a pydicom sample with a new SOP Instance UID (and Study/Series UIDs when missing)."""
    src = sample(name)
    ds = dcmread(src, stop_before_pixels=True)
    changes.setdefault("SOPInstanceUID", generate_uid())
    if "StudyInstanceUID" not in ds:
        changes.setdefault("StudyInstanceUID", generate_uid())
    if "SeriesInstanceUID" not in ds:
        changes.setdefault("SeriesInstanceUID", generate_uid())
    return copy_with(src, dest_dir / f"{Path(name).stem}-{changes['SOPInstanceUID'][-12:]}.dcm", **changes)


def mr_object(dest: Path, study: str | None = None, series: str | None = None, sop: str | None = None,
              sop_class: str = "1.2.840.10008.5.1.4.1.1.4", rows: int = 64, cols: int = 64,
              frames: int = 1, seed: int = 0) -> Path:
    """A small generated image object (uint16 noise, Explicit VR LE) with the given UIDs; as an MR Image
    (the default class) it has every Type 1 attribute of its IOD, so the node stores it without findings."""
    rng = np.random.default_rng(seed)
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop or generate_uid()
    ds.StudyInstanceUID = study or generate_uid()
    ds.SeriesInstanceUID = series or generate_uid()
    ds.PatientName = "Test^Perf"
    ds.PatientID = "PN-001"
    ds.StudyDate, ds.StudyTime = "20260101", "120000"
    ds.Modality = "MR"
    ds.SeriesNumber, ds.InstanceNumber = 1, 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
    ds.ScanningSequence, ds.SequenceVariant = "GR", "NONE"
    ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.9.7433.3.1"
    ds.ImagePositionPatient, ds.ImageOrientationPatient = [0, 0, 0], [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [1, 1]
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = rng.integers(0, 4096, (frames, rows, cols), dtype=np.uint16).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dest.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(dest, enforce_file_format=True)
    return dest


def dataset_bytes(path: Path) -> bytes:
    """The encoded dataset of a Part 10 file (everything after the File Meta Information)."""
    _meta, offset = split_dataset(path)
    return path.read_bytes()[offset:]


class Scu:
    """A pynetdicom Storage SCU that sends files as they are (to read exact statuses and comments)."""

    def __init__(self, port: int, files: list[Path], ae_title: str = "TESTSCU", called: str = "PERFNODE"):
        _config.STORE_SEND_CHUNKED_DATASET = True
        ae = AE(ae_title=ae_title)
        seen = set()
        for f in files:
            meta, _ = split_dataset(f)
            key = (str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID))
            if key not in seen:
                seen.add(key)
                ae.add_requested_context(*key)
        self.assoc = ae.associate("127.0.0.1", port, ae_title=called)
        assert self.assoc.is_established, "association refused"

    def store(self, path: Path) -> tuple[int, str]:
        rsp = self.assoc.send_c_store(path)
        assert "Status" in rsp, "no C-STORE response"
        return int(rsp.Status), str(rsp.get("ErrorComment", ""))

    def close(self) -> None:
        if self.assoc.is_established:
            self.assoc.release()

    def __enter__(self) -> Scu:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def instances(url: str) -> dict[str, Instance]:
    """All indexed instances by SOP Instance UID (read through a fresh engine)."""
    db = Database(url, migrate=False)
    try:
        with db.session() as s:
            q = select(Instance).options(
                joinedload(Instance.series).joinedload(Series.study).joinedload(Study.patient))
            return {i.sop_instance_uid: i for i in s.execute(q).unique().scalars()}
    finally:
        db.dispose()


def count_instances(url: str) -> int:
    db = Database(url, migrate=False)
    try:
        with db.session() as s:
            return s.execute(select(func.count(Instance.id))).scalar_one()
    finally:
        db.dispose()


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []
