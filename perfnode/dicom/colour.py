"""Colour renderings of parametric maps for viewers that cannot show float maps.

``render_colour(pm, uid_seed=...)`` turns one Parametric Map into a Multi-frame True Color Secondary
Capture (one RGB frame per slice, its own series) with a colour bar, the quantity, its unit and
"NOT FOR QUANTITATIVE USE" burned into the pixels. It is labelled as such everywhere a reader looks:
Image Type DERIVED\\SECONDARY, Burned In Annotation YES, the Series Description, Image Comments and
Derivation Description. Slice locations (mm along the slice normal) go in Slice Location Vector,
which Frame Increment Pointer names; the Frame of Reference and per-frame plane positions put the map
part of each frame exactly over its slice. The float map stays the reference for values.

The colouring is vectorised over the whole volume; matplotlib (Agg) draws only the colour bar and
the caption, once per map.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable

import matplotlib as mpl
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

import perfnode
from perfnode.dicom.codes import Quantity
from perfnode.dicom.parametric_map import derive_uid, frame_order, map_values

MULTIFRAME_TRUE_COLOR_SC = "1.2.840.10008.5.1.4.1.1.7.4"
NOT_FOR_QUANTITATIVE_USE = "NOT FOR QUANTITATIVE USE"
_MIN_SIDE = 256  # upscale small maps so that the burned-in text stays legible
_PANEL_W = 110
_FOOTER_H = 34

_COPIED = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
    "StudyDescription",
    "SpecificCharacterSet",
    "Laterality",
)


def _text_panel(width: int, height: int, draw: Callable[[Figure], None]) -> np.ndarray:
    """An RGB array of ``height`` × ``width`` pixels drawn by ``draw(fig)`` on black."""
    fig = Figure(figsize=(width / 100, height / 100), dpi=100, facecolor="black")
    canvas = FigureCanvasAgg(fig)
    draw(fig)
    # matplotlib's backend_agg has no annotations (no stub either)
    canvas.draw()  # type: ignore[no-untyped-call]
    rgba = np.asarray(canvas.buffer_rgba())  # type: ignore[no-untyped-call]
    return np.ascontiguousarray(rgba[:height, :width, :3])


def _colour_bar(height: int, cmap: str, vmin: float, vmax: float, label: str) -> np.ndarray:
    def draw(fig: Figure) -> None:
        ax = fig.add_axes((0.12, 0.06, 0.22, 0.80))
        ax.imshow(
            np.linspace(vmax, vmin, 256)[:, None], aspect="auto", cmap=cmap, extent=(0.0, 1.0, vmin, vmax)
        )
        ax.set_xticks([])
        ax.yaxis.tick_right()
        ax.tick_params(colors="white", labelsize=7)
        for spine in ax.spines.values():
            spine.set_color("white")
        fig.text(0.5, 0.97, label, color="white", ha="center", va="top", fontsize=7, wrap=True)

    return _text_panel(_PANEL_W, height, draw)


def _footer(width: int, text: str) -> np.ndarray:
    def draw(fig: Figure) -> None:
        fig.text(
            0.01,
            0.5,
            text,
            color="yellow",
            ha="left",
            va="center",
            fontsize=8,
            fontweight="bold",
            linespacing=1.3,
        )

    return _text_panel(width, _FOOTER_H, draw)


def colourise(values: np.ndarray, vmin: float, vmax: float, cmap: str = "turbo") -> np.ndarray:
    """(z, y, x) values → (z, y, x, 3) uint8 RGB; NaN → black, values clipped to [vmin, vmax]."""
    span = vmax - vmin if vmax > vmin else 1.0
    norm = np.clip((values - vmin) / span, 0.0, 1.0)
    rgb = (mpl.colormaps[cmap](np.nan_to_num(norm, nan=0.0))[..., :3] * 255 + 0.5).astype(np.uint8)
    rgb[~np.isfinite(values)] = 0
    return rgb


def render_frames(
    values: np.ndarray, q: Quantity | None, vmin: float, vmax: float, cmap: str = "turbo"
) -> tuple[np.ndarray, int]:
    """The burned-in RGB frames (z, rows, columns, 3) for a map (image | colour bar, caption below)
    and the integer factor the map was enlarged by (the map fills the top-left corner)."""
    z, h, w = values.shape
    factor = max(1, int(np.ceil(_MIN_SIDE / max(h, w))))
    img = colourise(values, vmin, vmax, cmap)
    img = np.repeat(np.repeat(img, factor, axis=1), factor, axis=2)
    label = q.label if q is not None else "value"
    bar = _colour_bar(h * factor, cmap, vmin, vmax, label)
    footer = _footer(w * factor + _PANEL_W, f"{NOT_FOR_QUANTITATIVE_USE}\n{label} ({perfnode.SOFTWARE_NAME})")
    top = np.concatenate([img, np.broadcast_to(bar, (z, *bar.shape))], axis=2)
    return np.concatenate([top, np.broadcast_to(footer, (z, *footer.shape))], axis=1), factor


def _add_geometry(ds: Dataset, pm: Dataset, factor: int) -> None:
    """Frame of reference and per-frame plane positions: the map part of each frame lies exactly over
    its source slice (pixels ``factor`` times smaller; colour bar and caption extend the plane)."""
    shared = pm.SharedFunctionalGroupsSequence[0]
    ori = [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient]
    meas = shared.PixelMeasuresSequence[0]
    row_sp, col_sp = (float(v) for v in meas.PixelSpacing)
    row_dir, col_dir = np.asarray(ori[:3]), np.asarray(ori[3:])
    # centre of enlarged pixel 0 = original centre moved back by (1 - 1/factor) / 2 of a pixel
    shift = (0.5 / factor - 0.5) * (col_sp * row_dir + row_sp * col_dir)
    ds.FrameOfReferenceUID = pm.FrameOfReferenceUID
    ds.PositionReferenceIndicator = pm.get("PositionReferenceIndicator", "")
    orientation = Dataset()
    orientation.ImageOrientationPatient = ori
    measures = Dataset()
    measures.PixelSpacing = [round(row_sp / factor, 6), round(col_sp / factor, 6)]
    if meas.get("SliceThickness") is not None:
        measures.SliceThickness = meas.SliceThickness
    sfg = Dataset()
    sfg.PlaneOrientationSequence = [orientation]
    sfg.PixelMeasuresSequence = [measures]
    ds.SharedFunctionalGroupsSequence = [sfg]
    per_frame = []
    for j in frame_order(pm)[0]:
        pos = np.asarray(
            pm.PerFrameFunctionalGroupsSequence[j].PlanePositionSequence[0].ImagePositionPatient, dtype=float
        )
        item, plane = Dataset(), Dataset()
        plane.ImagePositionPatient = [round(float(v), 6) for v in pos + shift]
        item.PlanePositionSequence = [plane]
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = per_frame


def render_colour(
    pm: Dataset,
    *,
    uid_seed: str,
    cmap: str = "turbo",
    vmin: float | None = None,
    vmax: float | None = None,
    series_number: int | None = None,
) -> Dataset:
    """A Multi-frame True Color Secondary Capture of Parametric Map ``pm`` (its own series).

    The display range defaults to the map's window (2nd–98th percentile of its values).
    """
    q, values = map_values(pm)
    if vmin is None or vmax is None:
        voi = pm.SharedFunctionalGroupsSequence[0].FrameVOILUTSequence[0]
        c, w = float(voi.WindowCenter), float(voi.WindowWidth)
        vmin = c - w / 2 if vmin is None else vmin
        vmax = c + w / 2 if vmax is None else vmax
    frames, factor = render_frames(values, q, float(vmin), float(vmax), cmap)
    key = q.key if q is not None else str(pm.SOPInstanceUID)
    label = q.label if q is not None else "map"

    ds = Dataset()
    for kw in _COPIED:
        if kw in pm:
            ds[kw] = pm[kw]
    now = datetime.datetime.now()
    ds.SOPClassUID = MULTIFRAME_TRUE_COLOR_SC
    ds.SOPInstanceUID = derive_uid(uid_seed, "colour", key)
    ds.SeriesInstanceUID = derive_uid(uid_seed, "colour-series", key)
    ds.SeriesNumber = series_number if series_number is not None else int(pm.SeriesNumber) + 100
    ds.InstanceNumber = 1
    ds.Modality = "OT"
    ds.SeriesDescription = f"{label} colour - {NOT_FOR_QUANTITATIVE_USE}"[:64]
    ds.ConversionType = "WSD"
    ds.Manufacturer = perfnode.SOFTWARE_NAME
    ds.SecondaryCaptureDeviceManufacturer = perfnode.SOFTWARE_NAME
    ds.SecondaryCaptureDeviceManufacturerModelName = perfnode.SOFTWARE_NAME
    ds.SecondaryCaptureDeviceSoftwareVersions = perfnode.__version__
    ds.SoftwareVersions = perfnode.__version__
    ds.ContentDate = now.strftime("%Y%m%d")
    ds.ContentTime = now.strftime("%H%M%S")
    ds.InstanceCreationDate, ds.InstanceCreationTime = ds.ContentDate, ds.ContentTime
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.PatientOrientation = ""
    ds.BurnedInAnnotation = "YES"
    ds.RecognizableVisualFeatures = "NO"
    ds.ImageComments = (
        f"Colour rendering of {label} from Parametric Map {pm.SOPInstanceUID}; colour bar "
        f"{vmin:.4g} to {vmax:.4g}; {NOT_FOR_QUANTITATIVE_USE}: read values from the "
        f"Parametric Map"
    )
    ds.DerivationDescription = (
        f"{cmap} colour map of {label}, range [{vmin:.4g}, {vmax:.4g}]; {NOT_FOR_QUANTITATIVE_USE}"
    )
    ref = Dataset()
    ref.ReferencedSOPClassUID = pm.SOPClassUID
    ref.ReferencedSOPInstanceUID = pm.SOPInstanceUID
    ds.SourceImageSequence = [ref]
    z, rows, cols, _ = frames.shape
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.NumberOfFrames = z
    ds.FrameIncrementPointer = 0x00182005  # Slice Location Vector
    ds.SliceLocationVector = [round(float(d), 4) for d in frame_order(pm)[1]]
    ds.LossyImageCompression = "00"
    _add_geometry(ds, pm, factor)
    ds.PixelData = np.ascontiguousarray(frames).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationVersionName = perfnode.IMPLEMENTATION_VERSION_NAME
    return ds
