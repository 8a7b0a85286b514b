"""Arterial spin labelling: label/control pairs (+ M0) → CBF (single PLD), CBF and arrival time (multi-PLD).

Recognised by (stated): ASL Context (0018,9257) LABEL/CONTROL in any frame; Image / Frame Type value 3
``ASL``; Arterial Spin Labeling Contrast (0018,9250); Philips' private label type (2005,xx29 of creator
"Philips MR Imaging DD 005") as a dimension; a Siemens protocol (CSA series header) running an ASL
sequence (``*pcasl*``, ``*pasl*``). Inferred: "ASL", "pCASL", "PASL" in the series description. A series
of M0 images only is the companion of ASL, not an ASL analysis.

The model takes the label/control design as the scanner sent it (context per frame, or alternating
images with the order checked against the data), M0 from the series itself or from an M0 series of the
study, the post-labelling delay(s) and labelling duration from the header (defaults said in the
provenance), and, without an M0 anywhere, sends the perfusion-weighted ΔM map and says CBF needs an M0.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from perfnode.dicom import frames
from perfnode.perfusion.base import FitResult
from perfnode.techniques.base import (
    AnalysisError,
    Companion,
    Detection,
    Technique,
    TechniqueModel,
    foreground,
)
from perfnode.techniques.headers import SeriesHeaders

#: Used when the header does not say (each use is named in the provenance and the notes).
DEFAULT_LABELLING_DURATION_S = 1.8  # white paper (Alsop 2015) recommendation for pCASL
DEFAULT_PLD_S = 1.8  # white paper, adults < 70 years
PHILIPS_DD_005 = "Philips MR Imaging DD 005"
_ASL_WORDS = re.compile(r"(?<![A-Za-z0-9])(P?C?ASL|PCASL|PASL|FAIR|SPIN[ _-]?LABEL\w*)(?![A-Za-z0-9])", re.I)
_M0_WORDS = re.compile(
    r"(?<![A-Za-z0-9])M0(?![A-Za-z0-9])|M0[ _-]?SCAN|PROTON[ _-]?DENSITY[ _-]?(REF|CAL)", re.I
)


def contexts(s: SeriesHeaders) -> set[str]:
    """ASL Context (0018,9257) values of every frame: LABEL, CONTROL, M_ZERO_SCAN."""
    return {str(v).upper() for v in s.frames("MRArterialSpinLabelingSequence", "ASLContext")}


def siemens_protocol(ds: Dataset) -> dict[str, str]:
    """``key = value`` lines of the Siemens protocol (MrPhoenixProtocol in the CSA series header,
    (0029,xx20) of creator "SIEMENS CSA HEADER"), read with nibabel's CSA reader; {} when absent."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nibabel warns its DICOM readers are experimental on import
        from nibabel.nicom import csareader
    try:
        header = csareader.get_csa_header(ds, "series")
        text = header["tags"]["MrPhoenixProtocol"]["items"][0] if header else ""
    except Exception:  # noqa: BLE001 - not Siemens, or a CSA header nibabel cannot read
        return {}
    out: dict[str, str] = {}
    for line in str(text).splitlines():
        m = re.match(r"\s*([A-Za-z_][\w.\[\]]*)\s*=\s*(.*?)\s*$", line)
        if m:
            out[m.group(1)] = m.group(2).strip('"').strip()
    return out


def _siemens_sequence(s: SeriesHeaders) -> str | None:
    if "SIEMENS" not in str(s.first.get("Manufacturer", "")).upper():
        return None
    seq = siemens_protocol(s.first).get("tSequenceFileName", "")
    return seq if re.search(r"pcasl|pasl|asl", seq, re.I) else None


def is_m0_series(s: SeriesHeaders) -> bool:
    """An M0 (calibration) series: ASL Context M_ZERO_SCAN only, or MR described as "M0"."""
    ctx = contexts(s)
    if ctx:
        return ctx == {"M_ZERO_SCAN"}
    return s.modality == "MR" and bool(_M0_WORDS.search(s.text)) and s.time_points <= 2


def detect(s: SeriesHeaders) -> Detection | None:
    if s.modality != "MR":
        return None
    ctx = contexts(s)
    if ctx and not ctx & {"LABEL", "CONTROL"}:
        return None  # an M0 series: a companion
    if ctx & {"LABEL", "CONTROL"}:
        return Detection("asl", True, f"(0018,9257) ASLContext {'/'.join(sorted(ctx))}")
    if "ASL" in s.type_values(2):
        return Detection("asl", True, "(0008,0008) ImageType value 3 ASL")
    if kind := s.frames("MRArterialSpinLabelingSequence", "ArterialSpinLabelingContrast"):
        return Detection("asl", True, f"(0018,9250) ArterialSpinLabelingContrast {sorted(map(str, kind))}")
    if any(ptr == 0x20051429 and creator == PHILIPS_DD_005 for ptr, creator in s.dimension_pointers()):
        return Detection(
            "asl",
            True,
            f"Philips private label type (2005,1429) ({PHILIPS_DD_005}) is a dimension of the frames",
        )
    if is_m0_series(s):
        return None
    if seq := _siemens_sequence(s):
        return Detection("asl", True, f"Siemens protocol (CSA series header) sequence {seq}")
    if m := _ASL_WORDS.search(s.text):
        return Detection("asl", False, f"series description / protocol name says {m.group(0)!r}")
    return None


M0 = Companion("M0", is_m0_series)


@dataclass
class AslImages:
    """The label/control design of one series as sent, in a fixed shape."""

    control: np.ndarray  # (n_pld, n_repeats, z, y, x)
    label: np.ndarray  # same shape
    plds_s: np.ndarray | None  # (n_pld,), from the frames; None: one PLD, read from the header facts
    m0: np.ndarray | None  # (z, y, x) mean of the M0 images inside the series
    how: str  # how label and control were told apart
    notes: list[str] = field(default_factory=list)
    #: the scanner sent control − label differences (``control`` holds them, ``label`` is zero)
    difference: bool = False


def _pld_axis(vol: frames.Volume4D) -> str | None:
    for name in ("pld_ms", "post_labelling_delay_ms", "inflow_time_ms", "inversion_time_ms",
                 "trigger_delay_ms"):
        if name in vol.extra_dims:
            return name
    return None


def asl_images(vol: frames.Volume4D) -> AslImages:
    """Split an assembled ASL series into control, label (per PLD) and M0 images."""
    names = list(vol.extra_dims)
    data = vol.data
    pld_name = _pld_axis(vol)
    if "asl_context" in names:
        order = [names.index("asl_context")]
        plds = None
        if pld_name is not None:
            order.insert(0, names.index(pld_name))
            plds = np.asarray(vol.extra_dims[pld_name], dtype=float) / 1000.0
        rest = [i for i in range(len(names)) if i not in order]
        arr = np.transpose(data, [*order, *rest, *range(len(names), data.ndim)])
        while arr.ndim > 4 + len(order):  # further extra axes (e.g. echoes): averaged
            arr = arr.mean(axis=len(order))
        if pld_name is None:
            arr = arr[None]  # (1, ctx, t, z, y, x)
        ctx = [str(c).upper() for c in vol.extra_dims["asl_context"]]
        if "CONTROL" not in ctx or "LABEL" not in ctx:
            raise AnalysisError(f"(0018,9257) ASLContext: need CONTROL and LABEL frames, found {ctx}")
        m0 = None
        if "M_ZERO_SCAN" in ctx:
            m0 = arr[:, ctx.index("M_ZERO_SCAN")].reshape(-1, *arr.shape[-3:]).mean(axis=0)
        elif getattr(vol, "m0", None) is not None:  # M0 volumes inside the series (assembly puts them apart)
            m0 = vol.m0.mean(axis=0)
        return AslImages(
            arr[:, ctx.index("CONTROL")],
            arr[:, ctx.index("LABEL")],
            plds,
            m0,
            "(0018,9257) ASLContext of each frame",
        )
    if names == [pld_name] and pld_name is not None:
        # one image per inflow time and no label/control: the scanner's perfusion-weighted (control − label)
        # images (Philips multiphase ASL times its readouts with the trigger delay)
        diff = data.reshape(data.shape[0], -1, *data.shape[-3:])  # (inflow, t, z, y, x)
        plds = np.asarray(vol.extra_dims[pld_name], dtype=float) / 1000.0
        attribute = _INFLOW_ATTRIBUTES.get(pld_name, pld_name)
        how = (f"no label/control axis: scanner-made perfusion-weighted (control − label) images at "
               f"{plds.size} inflow times {1000 * plds.min():g}–{1000 * plds.max():g} ms ({attribute})")
        return AslImages(diff, np.zeros_like(diff), plds, None, how, [how], difference=True)
    if names:
        raise AnalysisError(
            f"ASL series with axes {names} but no label/control axis: (0018,9257) ASLContext or a vendor "
            "label marker is needed to tell label from control")
    n = data.shape[0]
    if n < 2 or n % 2:
        raise AnalysisError(
            f"{n} image(s) and no label/control marker in the header: alternating label/control "
            "needs an even number"
        )
    first, second = data[0::2], data[1::2]
    mask = foreground(data)
    diff = float(np.nanmean((first - second)[:, mask])) if mask.any() else 0.0
    # control − label > 0 in tissue (the labelled blood lowers the signal): the order follows from the sign
    control, label = (first, second) if diff > 0 else (second, first)
    which = "control first" if diff > 0 else "label first"
    how = (
        f"no label/control marker in the header: alternating images, {which} (the order whose "
        "control − label is positive in tissue)"
    )
    return AslImages(control[None], label[None], None, None, how, [how])


_INFLOW_ATTRIBUTES = {"trigger_delay_ms": "(0020,9153) NominalCardiacTriggerDelayTime",
                      "inversion_time_ms": "(0018,9079) InversionTimes"}


def _seconds(value_ms: Any) -> float | None:
    return None if value_ms is None else float(value_ms) / 1000.0


class AslAnalysis(TechniqueModel):
    """CBF by the white paper (one PLD) or the Buxton model (several PLDs, with arrival time); ΔM without
    an M0."""

    def fit(self, volume: frames.Volume4D) -> FitResult:
        from perfnode.perfusion.asl import AslModel, MultiPldAslModel
        from perfnode.perfusion.base import FitResult as Fit

        acq = self.acq
        imgs = asl_images(volume)
        self.notes += imgs.notes
        provenance: dict[str, Any] = {"label_control": imgs.how, "defaults_used": {}}
        siemens = siemens_protocol(acq.headers[0]) if _siemens_sequence(acq.series) else {}
        # labelling type, PLD(s), labelling duration: header first, defaults said
        kind = str(acq.fact("asl_labelling_type") or "").upper()
        if not kind and siemens:
            seq = siemens.get("tSequenceFileName", "")
            kind = "PASL" if re.search(r"pasl", seq, re.I) else "PCASL"
            provenance["labelling_type_source"] = f"Siemens protocol sequence {seq}"
        if not kind:
            kind = "PCASL"
            provenance["defaults_used"]["labelling_type"] = "PCASL (white-paper recommendation)"
        labeling = "pasl" if kind == "PASL" else "pcasl"
        plds = imgs.plds_s
        if plds is None:
            pld = _seconds(acq.fact("post_labelling_delay_ms"))
            if pld is None and siemens.get("sWipMemBlock.adFree[2]"):
                pld = (
                    float(siemens["sWipMemBlock.adFree[2]"]) / 1e6
                )  # µs (LOFT ep2d_pcasl, as dcm2niix reads it)
                provenance["pld_source"] = "Siemens protocol sWipMemBlock.adFree[2] (µs)"
            if pld is None or pld <= 0:
                pld = DEFAULT_PLD_S
                provenance["defaults_used"]["pld_s"] = DEFAULT_PLD_S
            plds = np.array([pld])
        tau = _seconds(acq.fact("labelling_duration_ms"))
        if tau is None and siemens.get("sWipMemBlock.adFree[3]"):
            tau = float(siemens["sWipMemBlock.adFree[3]"]) * 0.0184  # RF blocks × 18.4 ms (LOFT pCASL)
            provenance["labelling_duration_source"] = (
                "Siemens protocol: sWipMemBlock.adFree[3] RF blocks × 18.4 ms"
            )
        if tau is None or tau <= 0:
            tau = DEFAULT_LABELLING_DURATION_S
            provenance["defaults_used"]["labelling_duration_s"] = DEFAULT_LABELLING_DURATION_S
        field_t = float(acq.fact("field_strength_t", 3.0))
        if acq.fact("field_strength_t") is None:
            provenance["defaults_used"]["field_strength_t"] = 3.0
        provenance["background_suppression"] = (
            "labelling efficiency not reduced for background suppression: its efficiency is not in the header"
            if acq.fact("background_suppression")
            else "none stated in the header"
        )
        # M0: inside the series, else an M0 series of the study
        m0, m0_source = imgs.m0, "M_ZERO_SCAN frames of the series" if imgs.m0 is not None else None
        if m0 is None and (found := acq.companions.find(M0)) is not None:
            m0_vol, m0_headers = found
            m0 = m0_vol.data.reshape(-1, *m0_vol.data.shape[-3:]).mean(axis=0)
            m0_source = f"M0 series {m0_headers.uid}"
        control, label = imgs.control.mean(axis=1), imgs.label.mean(axis=1)  # (n_pld, z, y, x)
        if plds.size > 1:  # one (mean) pair per PLD
            pairs = np.stack([control, label], axis=1).reshape(-1, *control.shape[1:])
        else:  # every pair: their consistency is the fit quality
            pairs = np.stack([imgs.control[0], imgs.label[0]], axis=1).reshape(-1, *control.shape[1:])
        self.curves = np.stack([imgs.control, imgs.label], axis=2).reshape(-1, *control.shape[1:])
        mask = foreground(self.curves)
        if m0 is None or imgs.difference:
            dm = control - label
            if m0 is None:
                where = "; ".join(acq.companions.rejected) or "no M0 series in the study"
                self.notes.append(
                    f"CBF needs an M0 image: none in the series and none usable in the study ({where}); "
                    "the perfusion-weighted ΔM (control − label) map is sent instead"
                )
            else:
                self.notes.append(
                    "CBF not computed from scanner-made difference images at several inflow times (their "
                    "multi-phase readout is not modelled); the perfusion-weighted ΔM map is sent instead")
            if imgs.difference and plds.size > 1:
                self.notes.append(f"the ΔM map is the mean over the {plds.size} inflow times")
            maps = {"delta_m": np.where(mask, dm.mean(axis=0), np.nan).astype(np.float32)}
            provenance.update(
                {
                    "technique": "ASL",
                    "method": "perfusion-weighted difference, no quantification",
                    "n_pairs": int(imgs.control.shape[1]),
                    "plds_s": plds.tolist(),
                }
            )
            return Fit(maps=maps, units={"delta_m": "a.u."}, provenance=provenance)
        provenance["m0_source"] = m0_source
        if plds.size > 1:
            model = MultiPldAslModel(labeling, plds_s=plds, labeling_duration_s=tau, field_strength_t=field_t)
        else:
            model = AslModel(
                labeling,
                pld_s=float(plds[0]),
                labeling_duration_s=tau,
                bolus_duration_s=tau if labeling == "pasl" else None,
                field_strength_t=field_t,
            )
        fit = model.fit(pairs, m0, mask=mask, time_axis=0)
        fit.maps.pop("delta_m", None)
        fit.provenance.update(provenance)
        return fit


TECHNIQUE = Technique(
    name="asl",
    title="arterial spin labelling",
    detect=detect,
    model=AslAnalysis,
    maps=("cbf", "att", "delta_m", "quality"),
    qc_protocol="asl",
    phantom="asl",
    companions=(M0,),
    method="asl",
)
