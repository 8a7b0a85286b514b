"""DICOM writers for the digital reference objects: Enhanced MR / Enhanced CT (IHE PERF) and classic series.

An :class:`ImageSet` holds stored integer pixels ``(e, t, z, y, x)`` (``e`` = an extra acquisition axis:
diffusion weighting, ASL context/PLD, flip angle…), their rescale, the time of every time point and the
acquisition settings. :func:`enhanced` builds one multi-frame instance of chosen frames; the shapes
(single, concatenation, one instance per time point, classic) are built in :mod:`perfnode.phantoms.shapes`.
"""

from __future__ import annotations

from copy import deepcopy
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    CTImageStorage,
    EnhancedCTImageStorage,
    EnhancedMRImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)

from perfnode import __version__

UID_PREFIX = "1.2.826.0.1.3680043.10.1234."  # perfnode phantoms (documentation prefix)
START = datetime(2024, 1, 15, 10, 0, 0)


def item(**kw: Any) -> Dataset:
    ds = Dataset()
    for k, v in kw.items():
        setattr(ds, k, v)
    return ds


def code(value: str, scheme: str, meaning: str) -> Dataset:
    return item(CodeValue=value, CodingSchemeDesignator=scheme, CodeMeaning=meaning)


def dt_str(t: datetime) -> str:
    return t.strftime("%Y%m%d%H%M%S.%f")


@dataclass
class Study:
    """Patient and study shared by every series of one phantom."""

    seed: int = 0
    patient_name: str = "PHANTOM^PERF"
    patient_id: str = "PERF-DRO"
    study_uid: str = field(default="")
    frame_of_reference_uid: str = field(default="")
    #: Mixed into every UID (series and instance UIDs derive from the study's): "" = UIDs from the seed
    #: alone (reproducible); ``perfnode phantom`` without ``--seed`` uses a random one.
    uid_salt: str = ""

    def __post_init__(self) -> None:
        salt = self.uid_salt
        self.study_uid = self.study_uid or generate_uid(
            UID_PREFIX, [f"study{self.seed}{self.patient_id}{salt}"]
        )
        self.frame_of_reference_uid = self.frame_of_reference_uid or generate_uid(
            UID_PREFIX, [f"for{self.seed}{self.patient_id}{salt}"]
        )


@dataclass
class ImageSet:
    """One series' pixels and acquisition: ``stored (e, t, z, y, x)`` uint16; value = stored·slope + icpt."""

    modality: str  # "MR" | "CT"
    stored: np.ndarray
    slope: float
    intercept: float
    times_s: np.ndarray
    protocol: dict[str, Any]
    series_number: int
    description: str
    image_type3: str = "PERFUSION"
    #: Per ``e`` index: the frame attributes that vary (``b_value``, ``direction``, ``asl_context``,
    #: ``pld_ms``, ``flip_deg``, ``te_ms``); ``[{}]`` when there is no extra axis.
    extra: list[dict[str, Any]] = field(default_factory=lambda: [{}])
    pixel_spacing: tuple[float, float] = (2.0, 2.0)
    slice_spacing: float = 5.0
    orientation: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    origin: tuple[float, float, float] = (-16.0, -16.0, -10.0)
    series_uid: str = ""

    def __post_init__(self) -> None:
        self.series_uid = self.series_uid or generate_uid(
            UID_PREFIX, [f"series{self.series_number}{self.description}{self.stored.shape}"]
        )

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        return self.stored.shape  # type: ignore[return-value]

    @property
    def normal(self) -> np.ndarray:
        o = np.array(self.orientation)
        return np.cross(o[:3], o[3:])

    def position(self, z: int) -> list[float]:
        return [round(float(v), 4) for v in np.array(self.origin) + z * self.slice_spacing * self.normal]

    def values(self) -> np.ndarray:
        """The real values (float32) the stored pixels encode: the expected assembled volume."""
        return self.stored.astype(np.float32) * np.float32(self.slope) + np.float32(self.intercept)

    def frame_time(self, t: int) -> datetime:
        return START + timedelta(seconds=float(self.times_s[t]))

    def dimension_keys(self) -> list[str]:
        """Extra-axis attributes that vary over ``e`` (in a fixed order)."""
        keys = []
        for k in ("te_ms", "flip_deg", "b_value", "direction", "pld_ms", "asl_context"):
            if len({repr(x.get(k)) for x in self.extra}) > 1:
                keys.append(k)
        return keys

    @property
    def is_perfusion(self) -> bool:
        return self.image_type3 == "PERFUSION"


def quantize(values: np.ndarray, modality: str) -> tuple[np.ndarray, float, float]:
    """Stored uint16 pixels and (slope, intercept): HU with intercept −1024 for CT, 12-bit scaled for MR."""
    if modality == "CT":
        stored = np.clip(np.rint(values + 1024.0), 0, 4095).astype(np.uint16)
        return stored, 1.0, -1024.0
    top = float(np.max(values)) or 1.0
    slope = float(f"{top / 4000.0:.6g}")
    return np.clip(np.rint(values / slope), 0, 65535).astype(np.uint16), slope, 0.0


# --- attribute blocks ---------------------------------------------------------------------------------


def _common(ds: Dataset, study: Study, s: ImageSet) -> None:
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.InstanceCreationDate = START.strftime("%Y%m%d")
    ds.InstanceCreationTime = START.strftime("%H%M%S")
    ds.PatientName = study.patient_name
    ds.PatientID = study.patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = study.study_uid
    ds.StudyDate = START.strftime("%Y%m%d")
    ds.StudyTime = START.strftime("%H%M%S")
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.AccessionNumber = f"DRO{study.seed}"
    ds.StudyDescription = "perfnode digital reference object"
    ds.Modality = s.modality
    ds.SeriesInstanceUID = s.series_uid
    ds.SeriesNumber = s.series_number
    ds.SeriesDescription = s.description
    ds.SeriesDate = ds.StudyDate
    ds.SeriesTime = ds.StudyTime
    ds.BodyPartExamined = "HEAD"
    ds.PatientPosition = "HFS"
    ds.FrameOfReferenceUID = study.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer = "perfnode"
    ds.ManufacturerModelName = "digital reference object"
    ds.DeviceSerialNumber = "0"
    ds.SoftwareVersions = __version__
    ds.InstitutionName = "perfnode"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(s.shape[3]), int(s.shape[4])
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"


def _contrast_agent(protocol: dict[str, Any], modality: str) -> Dataset | None:
    agent = protocol.get("contrast")
    if not agent:
        return None
    if modality == "CT":
        a = code("C-B0322", "SRT", "Iohexol")
        ingredient = code("C-11400", "SRT", "Iodine")
        a.ContrastBolusIngredientConcentration = 350.0
        a.ContrastBolusVolume = 40.0
        a.ContrastBolusIngredientOpaque = "YES"
    else:
        a = code("C-17800", "SRT", "Gadolinium")
        ingredient = code("C-17800", "SRT", "Gadolinium")
        a.ContrastBolusIngredientConcentration = 1.0 if agent == "gadobutrol" else 0.5
        a.ContrastBolusVolume = 7.5 if agent == "gadobutrol" else 15.0
    a.ContrastBolusAgentNumber = 1
    a.ContrastBolusAdministrationRouteSequence = Sequence([code("47625008", "SCT", "Intravenous route")])
    a.ContrastBolusIngredientCodeSequence = Sequence([ingredient])
    return a


def _mr_shared(s: ImageSet, varying: set[str]) -> dict[str, Dataset]:
    p = s.protocol
    epi = "EPI" in p.get("pulse", "")
    spin = p.get("pulse", "").startswith("SE") or p.get("pulse") == "PCASL"
    g: dict[str, Dataset] = {}
    g["MRImageFrameTypeSequence"] = item(
        FrameType=["ORIGINAL", "PRIMARY", s.image_type3, "NONE"],
        PixelPresentation="MONOCHROME",
        VolumetricProperties="VOLUME",
        VolumeBasedCalculationTechnique="NONE",
        ComplexImageComponent="MAGNITUDE",
        AcquisitionContrast=_acquisition_contrast(s),
    )
    timing = item(
        RepetitionTime=p["tr_ms"],
        FlipAngle=p["flip_deg"],
        EchoTrainLength=1,
        RFEchoTrainLength=1 if spin else 0,
        GradientEchoTrainLength=0 if spin else 1,
        SpecificAbsorptionRateSequence=Sequence(
            [item(SpecificAbsorptionRateDefinition="IEC_WHOLE_BODY", SpecificAbsorptionRateValue=0.5)]
        ),
        GradientOutputType="DB_DT",
        GradientOutput=10.0,
        OperatingModeSequence=Sequence(
            [
                item(OperatingModeType="STATIC FIELD", OperatingMode="IEC_NORMAL"),
                item(OperatingModeType="RF", OperatingMode="IEC_NORMAL"),
                item(OperatingModeType="GRADIENT", OperatingMode="IEC_NORMAL"),
            ]
        ),
    )
    g["MRTimingAndRelatedParametersSequence"] = timing
    g["MRFOVGeometrySequence"] = item(
        InPlanePhaseEncodingDirection="COLUMN",
        MRAcquisitionFrequencyEncodingSteps=int(s.shape[4]),
        MRAcquisitionPhaseEncodingStepsInPlane=int(s.shape[3]),
        PercentSampling=100.0,
        PercentPhaseFieldOfView=100.0,
    )
    g["MREchoSequence"] = item(EffectiveEchoTime=p["te_ms"])
    modifier = item(
        InversionRecovery="NO",
        FlowCompensation="NONE",
        T2Preparation="NO",
        SpectrallySelectedExcitation="NONE",
        SpatialPresaturation="NONE",
        PartialFourier="NO",
        ParallelAcquisition="NO",
    )
    plds = {x.get("pld_ms") for x in s.extra}
    if len(plds) == 1 and None not in plds:  # one post-label delay for every frame
        modifier.InversionRecovery = "YES"
        modifier.InversionTimes = [float(plds.pop())]
    g["MRModifierSequence"] = modifier
    g["MRImagingModifierSequence"] = item(
        MagnetizationTransfer="NONE",
        BloodSignalNulling="NO",
        Tagging="NONE",
        TransmitterFrequency=42.577 * p["field_t"],
        PixelBandwidth=2000.0,
    )
    g["MRReceiveCoilSequence"] = item(
        ReceiveCoilName="HEAD",
        ReceiveCoilManufacturerName="",
        ReceiveCoilType="VOLUME",
        QuadratureReceiveCoil="YES",
    )
    g["MRTransmitCoilSequence"] = item(
        TransmitCoilName="BODY", TransmitCoilManufacturerName="", TransmitCoilType="BODY"
    )
    g["MRAveragesSequence"] = item(NumberOfAverages=1.0)
    if p.get("technique") in ("ivim", "dwi"):
        g["MRDiffusionSequence"] = item(DiffusionBValue=0.0, DiffusionDirectionality="NONE")
    if p.get("technique") == "asl":
        g["MRArterialSpinLabelingSequence"] = item(
            ASLTechniqueDescription="pCASL",
            ASLContext=s.extra[0].get("asl_context", "CONTROL"),
            ASLCrusherFlag="NO",
            ASLBolusCutoffFlag="NO",
            ASLSlabSequence=Sequence(
                [
                    item(
                        ASLSlabNumber=1,
                        ASLSlabThickness=20.0,
                        ASLSlabOrientation=[0.0, 0.0, 1.0],
                        ASLMidSlabPosition=[0.0, 0.0, -90.0],
                        ASLPulseTrainDuration=int(p["label_duration_ms"] * 1000),
                    )
                ]
            ),
        )
    _ = epi, varying
    return g


def _acquisition_contrast(s: ImageSet) -> str:
    t = s.protocol.get("technique")
    if s.image_type3 == "T1":
        return "T1"
    if s.image_type3 == "PROTON_DENSITY":
        return "PROTON_DENSITY"
    return {"dsc": "T2_STAR", "dce": "T1", "asl": "PERFUSION", "ivim": "DIFFUSION", "dwi": "DIFFUSION"}.get(
        t, "UNKNOWN"
    )


def _mr_frame_overrides(s: ImageSet, groups: dict[str, Dataset], attrs: dict[str, Any]) -> dict[str, Dataset]:
    """Copies of the shared groups changed for one ``e`` index (only the groups that vary)."""
    out: dict[str, Dataset] = {}
    if "te_ms" in attrs:
        out["MREchoSequence"] = item(EffectiveEchoTime=float(attrs["te_ms"]))
    if "flip_deg" in attrs:
        timing = deepcopy(groups["MRTimingAndRelatedParametersSequence"])
        timing.FlipAngle = float(attrs["flip_deg"])
        out["MRTimingAndRelatedParametersSequence"] = timing
    if "b_value" in attrs:
        b = float(attrs["b_value"])
        d = item(DiffusionBValue=b, DiffusionDirectionality="DIRECTIONAL" if b > 0 else "NONE")
        if b > 0:
            d.DiffusionGradientDirectionSequence = Sequence(
                [item(DiffusionGradientOrientation=[float(v) for v in attrs["direction"]])]
            )
        out["MRDiffusionSequence"] = d
    if "asl_context" in attrs:
        a = deepcopy(groups["MRArterialSpinLabelingSequence"])
        a.ASLContext = attrs["asl_context"]
        out["MRArterialSpinLabelingSequence"] = a
    if "pld_ms" in attrs:
        m = deepcopy(groups["MRModifierSequence"])
        m.InversionRecovery = "YES"
        m.InversionTimes = [float(attrs["pld_ms"])]
        out["MRModifierSequence"] = m
    return out


def _ct_shared(s: ImageSet) -> dict[str, Dataset]:
    p = s.protocol
    g: dict[str, Dataset] = {}
    g["CTImageFrameTypeSequence"] = item(
        FrameType=["ORIGINAL", "PRIMARY", s.image_type3, "NONE"],
        PixelPresentation="MONOCHROME",
        VolumetricProperties="VOLUME",
        VolumeBasedCalculationTechnique="NONE",
    )
    g["CTAcquisitionTypeSequence"] = item(
        AcquisitionType="CONSTANT_ANGLE", TubeAngle=0.0, ConstantVolumeFlag="NO", FluoroscopyFlag="NO"
    )
    g["CTAcquisitionDetailsSequence"] = item(
        DataCollectionDiameter=500.0,
        RevolutionTime=0.5,
        SingleCollimationWidth=0.625,
        TotalCollimationWidth=40.0,
        TableHeight=150.0,
        GantryDetectorTilt=0.0,
    )
    g["CTGeometrySequence"] = item(
        DistanceSourceToDetector=1040.0, DistanceSourceToDataCollectionCenter=570.0
    )
    g["CTReconstructionSequence"] = item(
        ReconstructionAlgorithm="FILTER_BACK_PROJ",
        ConvolutionKernel="STANDARD",
        ConvolutionKernelGroup="BRAIN",
        ReconstructionDiameter=250.0,
        ReconstructionPixelSpacing=list(s.pixel_spacing),
        ReconstructionAngle=360.0,
        ImageFilter="NONE",
    )
    g["CTExposureSequence"] = item(
        ExposureTimeInms=float(p["exposure_time_ms"]),
        XRayTubeCurrentInmA=float(p["tube_current_ma"]),
        ExposureInmAs=p["tube_current_ma"] * p["exposure_time_ms"] / 1000.0,
        ExposureModulationType="NONE",
        CTDIvol=5.0,
        CTDIPhantomTypeCodeSequence=Sequence([code("113691", "DCM", "IEC Head Dosimetry Phantom")]),
    )
    g["CTTableDynamicsSequence"] = item(TableSpeed=0.0, TableFeedPerRotation=0.0, SpiralPitchFactor=0.0)
    centre = [
        float(v)
        for v in np.array(s.origin)
        + np.array([s.shape[4] * s.pixel_spacing[1] / 2, s.shape[3] * s.pixel_spacing[0] / 2, 0.0])
    ]
    g["CTPositionSequence"] = item(
        TablePosition=-float(s.origin[2]),
        ReconstructionTargetCenterPatient=centre,
        DataCollectionCenterPatient=centre,
    )
    g["IrradiationEventIdentificationSequence"] = item(
        IrradiationEventUID=generate_uid(UID_PREFIX, [s.series_uid, "irradiation"])
    )
    g["CTXRayDetailsSequence"] = item(
        KVP=p["kvp"], FocalSpots=[0.7], FilterType="BODY", FilterMaterial=["ALUMINUM"]
    )
    g["FrameVOILUTSequence"] = item(WindowCenter=40.0, WindowWidth=80.0)
    return g


def enhanced(
    study: Study,
    s: ImageSet,
    frames: list[tuple[int, int, int]],
    instance_number: int,
    sop_uid: str | None = None,
) -> Dataset:
    """One Enhanced MR/CT instance holding ``frames`` (list of ``(e, t, z)``) in the given order."""
    mr = s.modality == "MR"
    ds = Dataset()
    ds.SOPClassUID = EnhancedMRImageStorage if mr else EnhancedCTImageStorage
    ds.SOPInstanceUID = sop_uid or generate_uid(
        UID_PREFIX, [s.series_uid, str(instance_number), str(frames[:2])]
    )
    _common(ds, study, s)
    first = s.frame_time(min(t for _, t, _ in frames))
    ds.ImageType = ["ORIGINAL", "PRIMARY", s.image_type3, "NONE"]
    ds.InstanceNumber = instance_number
    ds.ContentDate = first.strftime("%Y%m%d")
    ds.ContentTime = first.strftime("%H%M%S.%f")
    ds.AcquisitionNumber = 1
    ds.AcquisitionDateTime = dt_str(s.frame_time(0))
    ds.AcquisitionDuration = float(s.times_s[-1] - s.times_s[0]) + 1.0
    ds.ContentQualification = "RESEARCH"
    ds.PresentationLUTShape = "IDENTITY"
    ds.VolumetricProperties = "VOLUME"
    ds.PixelPresentation = "MONOCHROME"
    ds.VolumeBasedCalculationTechnique = "NONE"
    ds.RecognizableVisualFeatures = "NO"
    ds.AcquisitionContextSequence = Sequence([])
    p = s.protocol
    if mr:
        ds.ComplexImageComponent = "MAGNITUDE"
        ds.AcquisitionContrast = _acquisition_contrast(s)
        ds.ResonantNucleus = "1H"
        ds.KSpaceFiltering = "NONE"
        ds.MagneticFieldStrength = p["field_t"]
        ds.ApplicableSafetyStandardAgency = "IEC"
        ds.ImagingFrequency = 42.577 * p["field_t"]
        _pulse_sequence(ds, p)
    agent = _contrast_agent(p, s.modality)
    if agent is not None:
        ds.ContrastBolusAgentSequence = Sequence([agent])

    # Functional groups: everything shared except frame content and position (and the extra axis).
    shared = item(
        PixelMeasuresSequence=Sequence(
            [
                item(
                    PixelSpacing=list(s.pixel_spacing),
                    SliceThickness=s.slice_spacing,
                    SpacingBetweenSlices=s.slice_spacing,
                )
            ]
        ),
        PlaneOrientationSequence=Sequence([item(ImageOrientationPatient=list(s.orientation))]),
        FrameAnatomySequence=Sequence(
            [item(AnatomicRegionSequence=Sequence([code("12738006", "SCT", "Brain")]), FrameLaterality="U")]
        ),
        PixelValueTransformationSequence=Sequence(
            [item(RescaleIntercept=s.intercept, RescaleSlope=s.slope, RescaleType="HU" if not mr else "US")]
        ),
    )
    if agent is not None:
        shared.ContrastBolusUsageSequence = Sequence(
            [
                item(
                    ContrastBolusAgentNumber=1,
                    ContrastBolusAgentAdministered="YES",
                    ContrastBolusAgentDetected="YES",
                )
            ]
        )
    keys = s.dimension_keys()
    groups = _mr_shared(s, set(keys)) if mr else _ct_shared(s)
    overrides = [
        (_mr_frame_overrides(s, groups, {k: x[k] for k in keys if k in x}) if mr else {}) for x in s.extra
    ]
    varying = set().union(*[o.keys() for o in overrides]) if overrides else set()
    for name, g in groups.items():
        if name not in varying:
            setattr(shared, name, Sequence([g]))
    ds.SharedFunctionalGroupsSequence = Sequence([shared])

    dim_uid = generate_uid(UID_PREFIX, [s.series_uid, "dimensions"])
    ds.DimensionOrganizationSequence = Sequence([item(DimensionOrganizationUID=dim_uid)])
    pointers = [
        ("StackID", "FrameContentSequence", "Stack ID"),
        ("InStackPositionNumber", "FrameContentSequence", "In-Stack Position Number"),
    ]
    if s.is_perfusion:
        pointers.append(("TemporalPositionIndex", "FrameContentSequence", "Temporal Position Index"))
    extra_pointers = {
        "b_value": ("DiffusionBValue", "MRDiffusionSequence", "Diffusion b-value"),
        "flip_deg": ("FlipAngle", "MRTimingAndRelatedParametersSequence", "Flip Angle"),
        "te_ms": ("EffectiveEchoTime", "MREchoSequence", "Effective Echo Time"),
        "asl_context": ("ASLContext", "MRArterialSpinLabelingSequence", "ASL Context"),
        "pld_ms": ("InversionTimes", "MRModifierSequence", "Post-label delay"),
        "direction": ("DiffusionGradientOrientation", "MRDiffusionSequence", "Diffusion direction"),
    }
    extra_keys = [k for k in keys if k in extra_pointers]
    pointers += [extra_pointers[k] for k in extra_keys]
    ds.DimensionIndexSequence = Sequence(
        [
            item(
                DimensionIndexPointer=_tag(p_),
                FunctionalGroupPointer=_tag(g_),
                DimensionOrganizationUID=dim_uid,
                DimensionDescriptionLabel=label,
            )
            for p_, g_, label in pointers
        ]
    )
    # index of each extra value along its own dimension (1-based, in sorted order)
    extra_index = {
        k: {v: i + 1 for i, v in enumerate(sorted({repr(x[k]) for x in s.extra}, key=_sort_key))}
        for k in extra_keys
    }
    per_frame = []
    for e, t, z in frames:
        when = s.frame_time(t)
        index = [1, z + 1] + ([t + 1] if s.is_perfusion else [])
        index += [extra_index[k][repr(s.extra[e][k])] for k in extra_keys]
        fc = item(
            FrameAcquisitionNumber=t + 1,
            FrameReferenceDateTime=dt_str(when),
            FrameAcquisitionDateTime=dt_str(when),
            FrameAcquisitionDuration=100.0,
            StackID="1",
            InStackPositionNumber=z + 1,
            DimensionIndexValues=index,
        )
        if s.is_perfusion:
            fc.TemporalPositionIndex = t + 1
        f = item(
            FrameContentSequence=Sequence([fc]),
            PlanePositionSequence=Sequence([item(ImagePositionPatient=s.position(z))]),
        )
        for name, g in overrides[e].items():
            setattr(f, name, Sequence([g]))
        for name in varying - overrides[e].keys():
            setattr(f, name, Sequence([groups[name]]))
        per_frame.append(f)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    ds.NumberOfFrames = len(frames)
    e_idx, t_idx, z_idx = (np.array(v) for v in zip(*frames, strict=True))
    ds.PixelData = np.ascontiguousarray(s.stored[e_idx, t_idx, z_idx]).tobytes()
    return _with_meta(ds)


def _sort_key(r: str) -> Any:
    try:
        return (0, float(r))
    except ValueError:
        return (1, r)


def _tag(keyword: str) -> int:
    from pydicom.datadict import tag_for_keyword

    t = tag_for_keyword(keyword)
    assert t is not None, keyword
    return t


def _pulse_sequence(ds: Dataset, p: dict[str, Any]) -> None:
    pulse = p.get("pulse", "GE_EPI")
    spin = pulse.startswith("SE") or pulse == "PCASL"
    ds.PulseSequenceName = pulse
    ds.MRAcquisitionType = "2D"
    ds.EchoPulseSequence = "SPIN" if spin else "GRADIENT"
    if spin:
        ds.MultipleSpinEcho = "NO"
    ds.MultiPlanarExcitation = "NO"
    ds.PhaseContrast = "NO"
    ds.TimeOfFlightContrast = "NO"
    ds.Spoiling = "RF" if pulse == "SPGR" else "NONE"
    ds.SteadyStatePulseSequence = "NONE"
    ds.EchoPlanarPulseSequence = "YES" if "EPI" in pulse or pulse == "PCASL" else "NO"
    ds.SaturationRecovery = "NO"
    ds.SpectrallySelectedSuppression = "NONE"
    ds.OversamplingPhase = "NONE"
    ds.GeometryOfKSpaceTraversal = "RECTILINEAR"
    ds.RectilinearPhaseEncodeReordering = "LINEAR"
    ds.SegmentedKSpaceTraversal = "SINGLE"
    ds.NumberOfKSpaceTrajectories = 1


def _with_meta(ds: Dataset) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    return ds


def classic(study: Study, s: ImageSet, e: int, t: int, z: int, instance_number: int) -> Dataset:
    """One classic single-frame MR/CT image (MR Image / CT Image Storage) of frame ``(e, t, z)``."""
    mr = s.modality == "MR"
    ds = Dataset()
    ds.SOPClassUID = MRImageStorage if mr else CTImageStorage
    ds.SOPInstanceUID = generate_uid(UID_PREFIX, [s.series_uid, "classic", str((e, t, z))])
    _common(ds, study, s)
    when = s.frame_time(t)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "PERFUSION" if s.is_perfusion else "OTHER"]
    ds.InstanceNumber = instance_number
    ds.AcquisitionNumber = 1
    ds.ContentDate = ds.AcquisitionDate = when.strftime("%Y%m%d")
    ds.ContentTime = ds.AcquisitionTime = when.strftime("%H%M%S.%f")
    ds.AcquisitionDateTime = dt_str(when)
    if s.is_perfusion:
        ds.TemporalPositionIdentifier = t + 1
        ds.NumberOfTemporalPositions = int(s.shape[1])
    ds.ImageOrientationPatient = list(s.orientation)
    ds.ImagePositionPatient = s.position(z)
    ds.SliceLocation = round(float(np.dot(s.position(z), s.normal)), 4)
    ds.PixelSpacing = list(s.pixel_spacing)
    ds.SliceThickness = s.slice_spacing
    ds.SpacingBetweenSlices = s.slice_spacing
    ds.RescaleIntercept = s.intercept
    ds.RescaleSlope = s.slope
    p = s.protocol
    attrs = s.extra[e]
    if mr:
        ds.RescaleType = "US"
        ds.ScanningSequence = "EP" if "EPI" in p.get("pulse", "") else "GR"
        ds.SequenceVariant = "NONE"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "2D"
        ds.RepetitionTime = p["tr_ms"]
        ds.EchoTime = float(attrs.get("te_ms", p["te_ms"]))
        ds.EchoTrainLength = 1
        ds.FlipAngle = float(attrs.get("flip_deg", p["flip_deg"]))
        ds.MagneticFieldStrength = p["field_t"]
        ds.ImagingFrequency = 42.577 * p["field_t"]
        if "pld_ms" in attrs:
            ds.InversionTime = float(attrs["pld_ms"])
        if "b_value" in attrs:
            ds.DiffusionBValue = float(attrs["b_value"])
            if float(attrs["b_value"]) > 0:
                ds.DiffusionGradientOrientation = [float(v) for v in attrs["direction"]]
        if "asl_context" in attrs:
            ds.ImageComments = f"ASL {attrs['asl_context']}"
    else:
        ds.RescaleType = "HU"
        ds.KVP = p["kvp"]
        ds.XRayTubeCurrent = int(p["tube_current_ma"])
        ds.ExposureTime = int(p["exposure_time_ms"])
        ds.ConvolutionKernel = "STANDARD"
        ds.WindowCenter = 40
        ds.WindowWidth = 80
    if p.get("contrast"):
        ds.ContrastBolusAgent = p["contrast"]
        ds.ContrastBolusRoute = "IV"
    ds.PixelData = np.ascontiguousarray(s.stored[e, t, z]).tobytes()
    return _with_meta(ds)
