"""The quantity table against PS3.16 (pydicom's concept dictionary is generated from it)."""

from __future__ import annotations

import pytest
from pydicom.sr._concepts_dict import concepts

from perfnode.dicom import codes
from perfnode.dicom.codes import PRIVATE_SCHEME, QUANTITIES, check_units, find, quantity, ucum

# The issue's list, value by value (all confirmed in PS3.16; meanings as PS3.16 states them).
ISSUE_CODES = {
    "ktrans": ("126312", "Ktrans"),
    "kep": ("126313", "kep"),
    "ve": ("126314", "ve"),
    "vp": ("126331", "vp"),
    "cbf": ("126390", "Absolute Regional Blood Flow"),
    "rcbf": ("126397", "Relative Regional Blood Flow"),
    "cbv": ("126391", "Absolute Regional Blood Volume"),
    "rcbv": ("126398", "Relative Regional Blood Volume"),
    "mtt": ("113052", "Mean Transit Time"),
    "ttp": ("113069", "Time To Peak"),
    "tmax": ("113084", "Tmax"),
    "adc": ("113041", "Apparent Diffusion Coefficient"),
    "ivim_d": ("113291", "Slow Diffusion Coefficient"),
    "ivim_dstar": ("113292", "Fast Diffusion Coefficient"),
    "ivim_f": ("113293", "Fast Diffusion Coefficient Fraction"),
}


def _ps316_dcm() -> dict[str, set[str]]:
    """DCM code value → meanings, from PS3.16 as pydicom ships it."""
    out: dict[str, set[str]] = {}
    for entry in concepts["DCM"].values():
        for value, (meaning, _cids) in entry.items():
            out.setdefault(value, set()).add(meaning)
    return out


PS316 = _ps316_dcm()


@pytest.mark.parametrize("key", sorted(ISSUE_CODES))
def test_issue_codes(key):
    q = QUANTITIES[key]
    assert (q.code.value, q.code.meaning) == ISSUE_CODES[key]
    assert q.code.scheme_designator == "DCM"


def _all_codes():
    yield from ((f"quantity {q.key}", q.code) for q in QUANTITIES.values())
    for table in ("TECHNIQUES", "MODELS", "DECONVOLUTION", "AIF_METHODS", "T1_METHODS"):
        yield from ((f"{table} {k}", c) for k, c in getattr(codes, table).items())


@pytest.mark.parametrize(("what", "code"), list(_all_codes()), ids=lambda v: v if isinstance(v, str) else "")
def test_every_dcm_code_is_in_ps316_with_its_meaning(what, code):
    if code.scheme_designator == PRIVATE_SCHEME:
        assert code.value not in PS316 or code.meaning not in PS316[code.value]
        return
    assert code.scheme_designator == "DCM"
    assert code.value in PS316, f"{what}: DCM {code.value} not in PS3.16"
    assert code.meaning in PS316[code.value], f"{what}: {code.meaning!r} vs {PS316[code.value]}"


def test_private_codes_only_where_ps316_has_none():
    private = {q.key for q in QUANTITIES.values() if q.is_private}
    assert private == {"fp", "ps", "e", "k2", "delay", "quality"}
    meanings = {m.lower() for ms in PS316.values() for m in ms}
    for name in ("plasma flow", "permeability surface area product", "extraction fraction"):
        assert name not in meanings


def test_units_are_ucum_and_tables_complete():
    for q in QUANTITIES.values():
        assert q.unit.scheme_designator == "UCUM"
        assert q.display and len(q.display) <= 16  # LUT Label is SH
        assert len(q.code.value) <= 16  # Code Value is SH
    assert QUANTITIES["cbf"].unit.value == "ml/(100.g)/min"
    assert QUANTITIES["ktrans"].unit.value == "/min"
    assert QUANTITIES["mtt"].unit.value == "s"
    assert QUANTITIES["ktrans"].osipi.endswith("(Q.PH1.008)")
    assert QUANTITIES["fp"].osipi == "Blood plasma flow (Q.PH1.002)"


def test_lookup_by_alias_and_unit_spellings():
    assert quantity("CBF_ml_100g_min") is QUANTITIES["cbf"]
    assert quantity("D*".replace("*", "star")) is QUANTITIES["ivim_dstar"]
    assert ucum("mL/100g/min") == "ml/(100.g)/min"
    assert ucum("1/min") == "/min"
    assert ucum("furlongs") is None
    check_units({"cbf": "mL/100g/min", "ktrans": "1/min", "ve": "", "mtt": "s"})
    # the names and units perfnode's perfusion models and phantoms use
    check_units(
        {
            "ktrans_per_min": "min-1",
            "ps_per_min": "min-1",
            "fp_ml_per_100ml_per_min": "ml/100ml/min",
            "iauc60_mM_s": "mM.s",
            "k2_per_s": "1/s",
            "rcbv": "1",
            "d_mm2_per_s": "mm2/s",
            "r1_per_s": "s-1",
            "t1_s": "s",
            "cbf_ml_per_100g_per_min": "ml/100g/min",
            "delay_s": "s",
        }
    )
    assert find("s0") is None and find("osvd_threshold") is None and find("MTT_s") is QUANTITIES["mtt"]
    with pytest.raises(ValueError, match="'cbv': unit 'ml/100ml'"):
        check_units({"cbv": "ml/100ml"})
    with pytest.raises(KeyError, match="unknown perfusion quantity"):
        quantity("nope")
