"""Helpers (no tests) for the Q/R and storage-commitment tests: small generated objects, loaded nodes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, CTImageStorage, ExplicitVRLittleEndian, RLELossless

from perfnode.config import Peer
from perfnode.net.client import send
from tests.nodes import Node

ROOT = "1.2.826.0.1.3680043.10.1234"


def ct(
    patient_id: str,
    patient_name: str,
    study: str,
    series: str,
    number: int,
    *,
    charset: str | None = None,
    modality: str = "CT",
    study_date: str = "20240105",
    compressed: bool = False,
    **extra,
) -> Dataset:
    """A tiny (8×8) CT image with known UIDs; pixel values encode ``number``."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = f"{series}.{number}"
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    if charset:
        ds.SpecificCharacterSet = charset
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = f"{series}.{number}"
    ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = (
        patient_id,
        patient_name,
        "19700101",
        "O",
    )
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.StudyID = study_date, "101500", "ACC1", "1"
    ds.ReferringPhysicianName = ""
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = modality, 1, number
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.FrameOfReferenceUID = f"{study}.9"
    ds.ImagePositionPatient, ds.ImageOrientationPatient = [0, 0, number], [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing, ds.SliceThickness = [1, 1], 1
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleIntercept, ds.RescaleSlope, ds.KVP = -1024, 1, 120
    ds.AcquisitionNumber = 1
    for k, v in extra.items():
        setattr(ds, k, v)
    ds.PixelData = (np.arange(64, dtype=np.uint16).reshape(8, 8) + 100 * number).tobytes()
    if compressed:
        ds.compress(RLELossless, generate_instance_uid=False)
    return ds


def write(datasets: list[Dataset], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for ds in datasets:
        p = folder / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(p, enforce_file_format=True)
        paths.append(p)
    return paths


def load(node: Node, datasets: list[Dataset], folder: Path) -> list[Path]:
    """Store datasets into a running node over the network (perfnode's own C-STORE SCU)."""
    paths = write(datasets, folder)
    result = send(paths, Peer(node.ae_title, "127.0.0.1", node.port), progress=False)
    failed = getattr(result, "failed", None)
    assert not failed, f"storing test data failed: {result}"
    return paths


def series_of(patient_id: str, name: str, study: str, series: str, n: int, **kw) -> list[Dataset]:
    return [ct(patient_id, name, study, series, i, **kw) for i in range(1, n + 1)]
