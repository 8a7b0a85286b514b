"""Small synthetic acquisitions for the QC tests: headers (pydicom) and arrays made here, in code.

Every maker takes the protocol parameters as keywords so that a test can break exactly one of them.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

STUDY = generate_uid()
T0 = datetime(2026, 11, 23, 9, 0, 0)


def gamma(t: np.ndarray, t0: float, peak: float, alpha: float = 3.0, beta: float = 1.5) -> np.ndarray:
    """Gamma-variate bolus starting at ``t0`` with maximum ``peak``."""
    x = np.clip(t - t0, 0, None)
    g = x**alpha * np.exp(-x / beta)
    return peak * g / (alpha * beta) ** alpha / np.exp(-alpha)


def _mr(series_uid: str, study_uid: str, **kw) -> Dataset:
    ds = Dataset()
    ds.Modality = "MR"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.SOPInstanceUID = generate_uid()
    ds.FrameOfReferenceUID = kw.pop("for_uid", "1.2.3.4")
    for k, v in kw.items():
        if v is not None:
            setattr(ds, k, v)
    return ds


def dsc(
    *,
    te_ms: float = 30.0,
    field_t: float = 3.0,
    flip: float = 65.0,
    dt_s: float = 1.25,
    n_base: int = 30,
    n_t: int = 100,
    dose_ml: float = 7.5,
    weight_kg: float = 75.0,
    noise: float = 5.0,
    seed: int = 0,
    drop: tuple[int, ...] = (),
    shape: tuple[int, int, int] = (2, 24, 24),
):
    """A DSC acquisition: (headers, times_s, data (t, z, y, x), aif concentration, aif signal).

    ``drop``: time points left out (missing frames).
    """
    rng = np.random.default_rng(seed)
    t = np.arange(n_t) * dt_s
    t0 = n_base * dt_s  # bolus starts right after the last baseline dynamic
    aif = gamma(t, t0 - 0.01, peak=8.0)  # mM
    tissue = gamma(t, t0 + 1.0, peak=1.2, beta=2.5)  # mM
    nz, ny, nx = shape
    zz, yy, xx = np.mgrid[:nz, :ny, :nx]
    brain = (yy - ny / 2 + 0.5) ** 2 + (xx - nx / 2 + 0.5) ** 2 < (0.4 * ny) ** 2
    s0 = np.where(brain, 900.0, 10.0)
    conc = tissue[:, None, None, None] * brain[None]
    artery = (zz == 0) & (yy == ny // 2) & (xx == nx // 2)
    conc = np.where(artery[None], aif[:, None, None, None], conc)
    data = s0[None] * np.exp(-0.030 * 4.0 * conc) + rng.normal(0, noise, (n_t, nz, ny, nx))
    aif_signal = 900.0 * np.exp(-0.030 * 4.0 * aif)
    keep = np.array([i for i in range(n_t) if i not in drop])
    series, study = generate_uid(), generate_uid()
    headers = []
    for i in keep:
        when = T0 + timedelta(seconds=float(t[i]))
        headers.append(
            _mr(
                series,
                study,
                MagneticFieldStrength=field_t,
                EchoTime=te_ms,
                RepetitionTime=dt_s * 1000,
                FlipAngle=flip,
                ScanningSequence=["GR", "EP"],
                SequenceVariant=["SK"],
                MRAcquisitionType="2D",
                ContrastBolusAgent="Gadovist 1.0 mmol/mL",
                ContrastBolusTotalDose=dose_ml,
                PatientWeight=weight_kg,
                PatientAge="055Y",
                SeriesDescription="ep2d_perf DSC",
                AcquisitionDate=when.strftime("%Y%m%d"),
                AcquisitionTime=when.strftime("%H%M%S.%f"),
                TemporalPositionIdentifier=int(i) + 1,
                InstanceNumber=int(i) + 1,
            )
        )
    return headers, t[keep], data[keep], aif[keep], aif_signal[keep]


def dce(*, field_t: float = 3.0, dt_s: float = 3.5, n_t: int = 60, spoiled: bool = True):
    """DCE headers (one per time point) and their times."""
    series, study = generate_uid(), generate_uid()
    t = np.arange(n_t) * dt_s
    headers = [
        _mr(
            series,
            study,
            MagneticFieldStrength=field_t,
            EchoTime=1.5,
            RepetitionTime=4.0,
            FlipAngle=15.0,
            ScanningSequence=["GR"],
            SequenceVariant=["SP" if spoiled else "SK"],
            MRAcquisitionType="3D",
            SeriesDescription="t1_vibe_dyn DCE",
            AcquisitionDate="20261123",
            AcquisitionTime=(T0 + timedelta(seconds=float(s))).strftime("%H%M%S.%f"),
            TemporalPositionIdentifier=i + 1,
        )
        for i, s in enumerate(t)
    ]
    return headers, t


def study_series(*, t1_vfa: bool = True, b1: bool = True, m0: bool = False) -> list[Dataset]:
    """Headers of the study's other series: a VFA pair, a B1 map, an M0 scan, and a plain T2."""
    out = [
        _mr(
            generate_uid(),
            STUDY,
            SeriesNumber=2,
            SeriesDescription="t2_tse_tra",
            ScanningSequence=["SE"],
            FlipAngle=150.0,
            RepetitionTime=5000.0,
        )
    ]
    if t1_vfa:
        for n, fa in ((3, 2.0), (4, 15.0)):
            out.append(
                _mr(
                    generate_uid(),
                    STUDY,
                    SeriesNumber=n,
                    SeriesDescription=f"t1_vibe_fa{fa:g}",
                    ScanningSequence=["GR"],
                    SequenceVariant=["SP"],
                    FlipAngle=fa,
                    RepetitionTime=4.0,
                )
            )
    if b1:
        out.append(
            _mr(
                generate_uid(),
                STUDY,
                SeriesNumber=5,
                SeriesDescription="tfl_b1map",
                ScanningSequence=["GR"],
                FlipAngle=8.0,
                RepetitionTime=5000.0,
            )
        )
    if m0:
        out.append(
            _mr(
                generate_uid(),
                STUDY,
                SeriesNumber=6,
                SeriesDescription="pcasl M0",
                ScanningSequence=["GR"],
                FlipAngle=90.0,
                RepetitionTime=6000.0,
            )
        )
    return out


def asl(
    *,
    kind: str = "PSEUDOCONTINUOUS",
    duration_ms: int = 1800,
    pld_ms: float = 1800.0,
    m0_frames: bool = True,
    bgs: bool = True,
    age: str = "045Y",
    n_pairs: int = 4,
) -> list[Dataset]:
    """One enhanced-MR-like ASL object: ASL parameters in the shared functional groups, context per frame."""
    ds = _mr(
        generate_uid(),
        generate_uid(),
        MagneticFieldStrength=3.0,
        PatientAge=age,
        MRAcquisitionType="3D",
        SeriesDescription="pcasl 3D",
        EchoPulseSequence="GRADIENT",
    )
    asl_item = Dataset()
    asl_item.ArterialSpinLabelingContrast = kind
    asl_item.ASLPulseTrainDuration = duration_ms
    asl_item.ASLTechniqueDescription = "3D GRASE, background suppression" if bgs else "3D GRASE"
    modifier = Dataset()
    modifier.InversionTimes = [pld_ms]
    shared = Dataset()
    shared.MRArterialSpinLabelingSequence = Sequence([asl_item])
    shared.MRModifierSequence = Sequence([modifier])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    contexts = ["M_ZERO_SCAN"] if m0_frames else []
    contexts += ["CONTROL", "LABEL"] * n_pairs
    frames = []
    for c in contexts:
        item, inner = Dataset(), Dataset()
        inner.ASLContext = c
        item.MRArterialSpinLabelingSequence = Sequence([inner])
        frames.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.NumberOfFrames = len(frames)
    return [ds]


def ivim(
    *,
    b_values=(0, 10, 20, 50, 100, 200, 400, 800),
    directions=((1, 0, 0), (0, 1, 0), (0, 0, 1)),
    tr_ms: float = 4000.0,
) -> list[Dataset]:
    """Classic DWI headers: one instance per (b, direction); b = 0 has no direction."""
    series, study = generate_uid(), generate_uid()
    out = []
    for b in b_values:
        for d in directions if b > 0 else [None]:
            ds = _mr(
                series,
                study,
                MagneticFieldStrength=3.0,
                EchoTime=60.0,
                RepetitionTime=tr_ms,
                ScanningSequence=["SE", "EP"],
                MRAcquisitionType="2D",
                SeriesDescription="ep2d_diff ivim",
            )
            ds.DiffusionBValue = float(b)
            if d is not None:
                ds.DiffusionGradientOrientation = [float(x) for x in d]
                ds.DiffusionDirectionality = "DIRECTIONAL"
            else:
                ds.DiffusionDirectionality = "NONE"
            out.append(ds)
    return out


def write_series(folder, headers: list[Dataset], data: np.ndarray, spacing=(5.0, 2.0, 2.0)) -> list:
    """Write a classic single-frame MR series: one file per (time point, slice); returns the paths."""
    from pathlib import Path

    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    nt, nz, ny, nx = data.shape
    pixels = np.clip(np.rint(data), 0, 65535).astype(np.uint16)
    for ti, h in enumerate(headers):
        for z in range(nz):
            ds = Dataset()
            ds.update(h)
            ds.SOPClassUID = MRImageStorage
            ds.SOPInstanceUID = generate_uid()
            ds.InstanceNumber = ti * nz + z + 1
            ds.SeriesNumber = 7
            ds.PatientName, ds.PatientID = "QC^Synthetic", "QC1"
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            ds.ImagePositionPatient = [0.0, 0.0, z * spacing[0]]
            ds.PixelSpacing = [spacing[1], spacing[2]]
            ds.SliceThickness = spacing[0]
            ds.Rows, ds.Columns = ny, nx
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
            ds.PixelData = pixels[ti, z].tobytes()
            ds.file_meta = FileMetaDataset()
            ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            p = folder / f"{ti:03d}_{z:02d}.dcm"
            ds.save_as(p, enforce_file_format=True)
            paths.append(p)
    return paths
