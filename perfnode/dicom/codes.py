"""One table: perfusion quantity → DICOM quantity code, UCUM unit, display name, OSIPI lexicon name.

Every ``DCM`` code below was checked against PS3.16 as shipped in pydicom's concept dictionary
(``pydicom.sr._concepts_dict``, generated from PS3.16; ``tests/dicom/test_codes.py`` re-checks
each code value and meaning there). Quantities PS3.16 has no code for (plasma flow, PS,
extraction fraction, DSC leakage K2, fit quality) use the private coding scheme
``99PERFNODE`` (PS3.16 §8: designators starting with "99" are private).

OSIPI names and codes are from the OSIPI CAPLEX lexicon (DCE/DSC); "" where it has no entry.
Units are UCUM codes (CID 7181 style, as dcmqi's CP-1391 perfusion context uses them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pydicom.sr.coding import Code

#: Private coding scheme for quantities without a PS3.16 code.
PRIVATE_SCHEME = "99PERFNODE"


@dataclass(frozen=True)
class Quantity:
    """A mapped quantity: what the pixel values mean and in which unit."""

    key: str  # perfnode's name, as used in FitResult.maps
    code: Code  # DICOM quantity definition (Real World Value Mapping → Quantity Definition)
    unit: Code  # UCUM
    display: str  # short label for viewers (Content Label, LUT Label, colour bar)
    osipi: str = ""  # OSIPI CAPLEX name and code
    aliases: tuple[str, ...] = ()

    @property
    def is_private(self) -> bool:
        return self.code.scheme_designator == PRIVATE_SCHEME

    @property
    def label(self) -> str:
        """Display name with unit, e.g. ``CBF [ml/(100.g)/min]``."""
        u = self.unit.value
        return self.display if u in ("1", "{ratio}") else f"{self.display} [{u}]"


def _dcm(value: str, meaning: str) -> Code:
    return Code(value, "DCM", meaning)


def _private(value: str, meaning: str) -> Code:
    return Code(value, PRIVATE_SCHEME, meaning)


def _ucum(value: str, meaning: str | None = None) -> Code:
    return Code(value, "UCUM", meaning or value)


PER_MIN = _ucum("/min", "per minute")
PER_S = _ucum("/s", "per second")
SECOND = _ucum("s", "second")
RATIO = _ucum("{ratio}", "ratio")
FLOW_G = _ucum("ml/(100.g)/min", "milliliter per 100 gram per minute")
FLOW_ML = _ucum("ml/(100.ml)/min", "milliliter per 100 milliliter per minute")
VOLUME_G = _ucum("ml/(100.g)", "milliliter per 100 gram")
DIFFUSIVITY = _ucum("mm2/s", "square millimeter per second")
IAUC_UNIT = _ucum("mmol/l.s", "millimole per liter times second")
ARBITRARY = _ucum("[arb'U]", "arbitrary unit")

_TABLE: tuple[Quantity, ...] = (
    # DCE (CID 4107 Tracer Kinetic Model Parameters)
    Quantity("ktrans", _dcm("126312", "Ktrans"), PER_MIN, "Ktrans",
             "Volume transfer constant (Q.PH1.008)", ("ktrans_per_min",)),
    Quantity("kep", _dcm("126313", "kep"), PER_MIN, "kep",
             "Indicator exchange rate, EES to plasma (Q.PH1.009.[e,p])", ("kep_per_min",)),
    Quantity("ve", _dcm("126314", "ve"), RATIO, "ve", "Relative volume fraction, EES (Q.PH1.001.[e])"),
    Quantity("vp", _dcm("126331", "vp"), RATIO, "vp", "Relative volume fraction, plasma (Q.PH1.001.[p])"),
    Quantity("fp", _private("FP", "Plasma Flow"), FLOW_ML, "Fp", "Blood plasma flow (Q.PH1.002)",
             ("fp_ml_100ml_min", "fp_ml_per_100ml_per_min")),
    # PS as perfnode's DCE models give it: ml/ml/min, i.e. per minute
    Quantity("ps", _private("PS", "Permeability Surface Area Product"), PER_MIN, "PS",
             "Permeability surface area product (Q.PH1.004)", ("ps_per_min",)),
    Quantity("e", _private("E", "Extraction Fraction"), RATIO, "E", "Extraction fraction (Q.PH1.005)",
             ("extraction_fraction",)),
    Quantity("iauc60", _dcm("126321", "IAUC60"), IAUC_UNIT, "IAUC60", "Area under curve (Q.CD1.013)",
             ("iauc60_mm_s",)),
    Quantity("iauc90", _dcm("126322", "IAUC90"), IAUC_UNIT, "IAUC90", "Area under curve (Q.CD1.013)"),
    # DSC / CT perfusion / ASL (CID 4108 Tracer Kinetic Model Parameters, 4109 time-based)
    Quantity("cbf", _dcm("126390", "Absolute Regional Blood Flow"), FLOW_G, "CBF",
             "Blood flow (Q.PH1.003)", ("cbf_ml_100g_min", "cbf_ml_per_100g_per_min", "blood_flow", "rbf")),
    Quantity("cbv", _dcm("126391", "Absolute Regional Blood Volume"), VOLUME_G, "CBV",
             "Relative volume fraction, blood (Q.PH1.001.[b])",
             ("cbv_ml_100g", "cbv_ml_per_100g", "blood_volume", "rbv")),
    # DSC CBV before leakage correction: same quantity, its own label
    Quantity("cbv_uncorrected", _dcm("126391", "Absolute Regional Blood Volume"), VOLUME_G, "CBV uncorr.",
             "Relative volume fraction, blood (Q.PH1.001.[b])"),
    Quantity("rcbf", _dcm("126397", "Relative Regional Blood Flow"), RATIO, "rCBF", "",
             ("relative_cbf",)),
    Quantity("rcbv", _dcm("126398", "Relative Regional Blood Volume"), RATIO, "rCBV", "",
             ("relative_cbv",)),
    Quantity("mtt", _dcm("113052", "Mean Transit Time"), SECOND, "MTT", "Mean transit time (Q.PH1.006)",
             ("mtt_s",)),
    Quantity("ttp", _dcm("113069", "Time To Peak"), SECOND, "TTP", "Time to peak (Q.CD1.010)", ("ttp_s",)),
    Quantity("tmax", _dcm("113084", "Tmax"), SECOND, "Tmax", "", ("tmax_s",)),
    Quantity("bat", _dcm("126371", "Bolus Arrival Time"), SECOND, "BAT", "Bolus arrival time (Q.BA1.001)",
             ("bat_s", "onset_s")),
    Quantity("delay", _private("TA", "Arterial Delay Time"), SECOND, "Delay",
             "Arterial delay time (Q.PH1.007)", ("delay_s", "ta_s")),
    # ASL arterial transit time: PS3.16 has no own code; the labelled bolus arriving in the voxel is
    # what DCM 126371 "Bolus Arrival Time" defines, so ATT maps carry that code with label "ATT".
    Quantity("att", _dcm("126371", "Bolus Arrival Time"), SECOND, "ATT", "", ("att_s", "arrival")),
    Quantity("k2", _private("K2", "Leakage Rate Constant K2"), PER_S, "K2", "", ("k2_per_s", "leakage")),
    # ASL without M0: the perfusion-weighted control − label difference, in the scanner's units
    Quantity("delta_m", _dcm("110800", "Spin Tagging Perfusion MR Signal Intensity"), ARBITRARY, "dM", "",
             ("delta_m_au", "pwi", "perfusion_weighted")),
    # Relaxometry
    Quantity("t1", _dcm("113063", "T1"), SECOND, "T1", "", ("t1_s",)),
    Quantity("r1", _dcm("126393", "R1"), PER_S, "R1", "Longitudinal relaxation rate (Q.EL1.001)",
             ("r1_per_s",)),
    # Diffusion / IVIM (CID 7272)
    Quantity("adc", _dcm("113041", "Apparent Diffusion Coefficient"), DIFFUSIVITY, "ADC", "",
             ("adc_mm2_s", "adc_mm2_per_s")),
    Quantity("ivim_d", _dcm("113291", "Slow Diffusion Coefficient"), DIFFUSIVITY, "D", "",
             ("d", "dt", "d_mm2_per_s")),
    Quantity("ivim_dstar", _dcm("113292", "Fast Diffusion Coefficient"), DIFFUSIVITY, "D*", "",
             ("dstar", "d_star", "dp", "dstar_mm2_per_s")),
    Quantity("ivim_f", _dcm("113293", "Fast Diffusion Coefficient Fraction"), RATIO, "f", "",
             ("f", "perfusion_fraction")),
    # Fit quality (no PS3.16 code for a coefficient of determination)
    Quantity("quality", _private("R2FIT", "Coefficient of Determination of Fit"), RATIO, "Fit R2", "",
             ("r2", "fit_quality", "rsquared")),
)

#: key → Quantity
QUANTITIES: dict[str, Quantity] = {q.key: q for q in _TABLE}
_LOOKUP: dict[str, Quantity] = {}
for _q in _TABLE:
    for _name in (_q.key, *_q.aliases):
        _LOOKUP[_name.lower()] = _q


def find(name: str) -> Quantity | None:
    """The quantity called ``name``, or None for maps that are not quantities to send (s0, m0 ...)."""
    return _LOOKUP.get(name.lower())


def quantity(name: str) -> Quantity:
    """The quantity called ``name`` (its key or an alias, case-insensitive)."""
    try:
        return _LOOKUP[name.lower()]
    except KeyError:
        known = ", ".join(sorted(QUANTITIES))
        raise KeyError(f"unknown perfusion quantity {name!r}; known: {known}") from None


# Spellings perfusion code uses for units → the UCUM code in the table.
_UNIT_SPELLINGS: dict[str, str] = {
    "1/min": "/min", "min-1": "/min", "/min": "/min", "per min": "/min",
    "1/s": "/s", "s-1": "/s", "/s": "/s",
    "s": "s", "sec": "s", "seconds": "s", "ms": "ms",
    "": "{ratio}", "1": "{ratio}", "{ratio}": "{ratio}", "ratio": "{ratio}", "fraction": "{ratio}",
    "ml/100g/min": "ml/(100.g)/min", "ml/(100.g)/min": "ml/(100.g)/min", "ml/100 g/min": "ml/(100.g)/min",
    "ml/100ml/min": "ml/(100.ml)/min", "ml/(100.ml)/min": "ml/(100.ml)/min",
    "ml/min/100ml": "ml/(100.ml)/min",
    "ml/100g": "ml/(100.g)", "ml/(100.g)": "ml/(100.g)", "ml/100 g": "ml/(100.g)",
    "mm2/s": "mm2/s", "mm^2/s": "mm2/s", "mm²/s": "mm2/s",
    "a.u.": "[arb'U]", "au": "[arb'U]", "[arb'u]": "[arb'U]", "arbitrary": "[arb'U]",
    "mmol/l.s": "mmol/l.s", "mm*s": "mmol/l.s", "mmol/l*s": "mmol/l.s", "mm.s": "mmol/l.s",
}


def ucum(unit: str) -> str | None:
    """The UCUM code for a unit as perfusion code spells it, or None when unknown."""
    return _UNIT_SPELLINGS.get(unit.strip().lower().replace("·", ".").replace(" ", ""),
                               _UNIT_SPELLINGS.get(unit.strip().lower()))


def check_units(units: Mapping[str, str]) -> None:
    """Refuse maps whose stated unit differs from the table's (units are never guessed)."""
    for name, unit in units.items():
        q = quantity(name)
        code = ucum(unit)
        if code != q.unit.value:
            raise ValueError(f"map {name!r}: unit {unit!r} is not {q.unit.value!r}, the UCUM unit "
                             f"perfnode encodes for {q.code.meaning} ({q.code.scheme_designator} "
                             f"{q.code.value}); convert the map first")


# Method codes used in the provenance (PS3.16 CID 4100-4106), by perfnode's method names.
TECHNIQUES: dict[str, Code] = {
    "ct": _dcm("126301", "Perfusion analysis by IV Iodinated Contrast CT technique"),
    "asl": _dcm("126302", "Perfusion analysis by Arterial Spin Labeling MR technique"),
    "dsc": _dcm("126303", "Perfusion analysis by Susceptibility MR technique"),
}
MODELS: dict[str, Code] = {
    "tofts": _dcm("126340", "Standard Tofts Model"),
    "extended_tofts": _dcm("126341", "Extended Tofts Model"),
    "model_free": _dcm("126342", "Model-free concentration-time quantitification"),
    "fplp": _dcm("126343", "First Pass Leakage Profile (FPLP) Model"),
    "ssm": _dcm("126344", "Shutter-Speed Model (SSM)"),
    "gctt": _dcm("126345", "Gamma Capillary Transit Time (GCTT) Model"),
    "ath": _dcm("126346", "Adiabatic Tissue Homogeneity (ATH) Model"),
    "2cx": _dcm("126347", "Two Compartment Exchange (2CX) Model"),
}
DECONVOLUTION: dict[str, Code] = {
    "lms": _dcm("126310", "Least Mean Square (LMS) deconvolution"),
    "svd": _dcm("126311", "Singular Value Decomposition (SVD) deconvolution"),
}
AIF_METHODS: dict[str, Code] = {
    "ignored": _dcm("126360", "AIF Ignored"),
    "population": _dcm("126361", "Population Averaged AIF"),
    "user_roi": _dcm("126362", "User-defined AIF ROI"),
    "auto": _dcm("126363", "Automatically Detected AIF ROI"),
    "blind": _dcm("126364", "Blind Estimation of AIF"),
}
T1_METHODS: dict[str, Code] = {
    "vfa": _dcm("126350", "T1 by Multiple Flip Angles"),
    "ir": _dcm("126351", "T1 by Inversion Recovery"),
    "fixed": _dcm("126352", "T1 by Fixed Value"),
}
