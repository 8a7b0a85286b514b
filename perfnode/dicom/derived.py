"""Rules for derived objects (parametric maps, derived perfusion images, perfnode's own outputs) → findings.

A derived object is judged as a result, not as an acquisition: the IHE PERF acquisition rules (value 1
ORIGINAL, Temporal Position Index dimensions, contrast agent for display) do not apply. What matters is
that its values mean something and that it overlays and traces back to its source:

- it says it is derived: Image Type value 1 DERIVED (PS3.3 C.7.6.1.1.2; Parametric Map: C.8.32.1);
- it shares a frame of reference with its source: (0020,0052) FrameOfReferenceUID (PS3.3 C.7.4.1);
- its stored values map to a quantity in a unit: Real World Value Mapping (0040,9096) with Measurement
  Units Code (0040,08EA) (PS3.3 C.7.6.16.2.11; Mandatory in a Parametric Map);
- it names what it was derived from: Referenced Series (0008,1115), Source Image (0008,2112) or per-frame
  Derivation Image (0008,9124) (PS3.3 C.12.2, C.7.6.16.2.6).

perfnode's own maps also carry their provenance, which is summarised.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydicom.dataset import Dataset

from perfnode.dicom.codes import QUANTITIES
from perfnode.dicom.findings import Finding, Severity

PARAMETRIC_MAP = "1.2.840.10008.5.1.4.1.1.30"
DERIVED_CLASSES = {
    PARAMETRIC_MAP: "Parametric Map",
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture",
    "1.2.840.10008.5.1.4.1.1.7.4": "Multi-frame True Color Secondary Capture",
    "1.2.840.10008.5.1.4.1.1.66.4": "Segmentation",
}
R_TYPE = "PS3.3 C.7.6.1.1.2 (Image Type value 1)"
R_FOR = (
    "PS3.3 C.7.4.1 (Frame of Reference): a map overlays its source only in the source's frame of reference"
)
R_RWVM = "PS3.3 C.7.6.16.2.11 (Real World Value Mapping)"
R_REF = "PS3.3 C.7.6.16.2.6 (Derivation Image) / C.12.2 (Common Instance Reference)"


def is_derived(ds: Dataset) -> bool:
    """A result rather than an acquisition: a derived SOP class, or Image Type value 1 DERIVED."""
    if str(ds.get("SOPClassUID", "")) in DERIVED_CLASSES:
        return True
    it = list(ds.get("ImageType") or [])
    return bool(it) and str(it[0]).upper() == "DERIVED"


def _groups(ds: Dataset, keyword: str) -> list[Dataset]:
    """Items of functional-group macro ``keyword`` (shared first, then per-frame) and at the top level."""
    out = list(ds.get(keyword) or [])
    for fg in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        for item in ds.get(fg) or []:
            out += list(item.get(keyword) or [])
            if out and fg == "PerFrameFunctionalGroupsSequence":
                break  # the first frame that has it is enough to know it is there
    return out


def _quantity(mapping: Dataset) -> str:
    units = mapping.get("MeasurementUnitsCodeSequence") or []
    unit = str(units[0].get("CodeValue", "")) if units else ""
    defs = mapping.get("QuantityDefinitionSequence") or []
    for d in defs:
        for c in d.get("ConceptCodeSequence") or []:
            code = (str(c.get("CodeValue", "")), str(c.get("CodingSchemeDesignator", "")))
            known = next(
                (q.display for q in QUANTITIES.values() if (q.code.value, q.code.scheme_designator) == code),
                None,
            )
            return f"{known or c.get('CodeMeaning', '?')} ({code[1]} {code[0]}) in {unit or 'no unit'}"
    label = str(mapping.get("LUTLabel", "") or mapping.get("LUTExplanation", "") or "values")
    return f"{label} in {unit or 'no unit'}"


def check_instance(ds: Dataset) -> list[Finding]:
    """The derived-object rules on one instance."""
    where = f"instance {ds.get('SOPInstanceUID', '?')}"
    kind = DERIVED_CLASSES.get(
        str(ds.get("SOPClassUID", "")), str(getattr(ds.get("SOPClassUID"), "name", ""))
    )
    out: list[Finding] = [
        Finding.make(
            Severity.INFO,
            "SOPClassUID",
            f"a derived object: {kind}",
            "derived-object rules (not the acquisition rules)",
            "perfnode check",
            where,
        )
    ]
    it = [str(v).upper() for v in ds.get("ImageType") or []]
    if "ImageType" in ds and (not it or it[0] != "DERIVED"):
        out.append(
            Finding.make(
                Severity.WARNING,
                "ImageType",
                f"value 1 {it[0] if it else 'absent'}",
                "value 1 DERIVED",
                R_TYPE,
                where,
            )
        )
    if not ds.get("FrameOfReferenceUID"):
        out.append(
            Finding.make(
                Severity.ERROR,
                "FrameOfReferenceUID",
                "absent",
                "the frame of reference of the source it was derived from",
                R_FOR,
                where,
            )
        )
    mappings = _groups(ds, "RealWorldValueMappingSequence")
    if not mappings:
        severity = Severity.ERROR if str(ds.get("SOPClassUID", "")) == PARAMETRIC_MAP else Severity.WARNING
        out.append(
            Finding.make(
                severity,
                "RealWorldValueMappingSequence",
                "absent",
                "a mapping of the stored values to a quantity and its unit",
                R_RWVM,
                where,
            )
        )
    else:
        for m in mappings[:1]:
            if not m.get("MeasurementUnitsCodeSequence"):
                out.append(
                    Finding.make(
                        Severity.ERROR,
                        "MeasurementUnitsCodeSequence",
                        "absent",
                        "the unit of the mapped values",
                        R_RWVM,
                        where,
                    )
                )
            else:
                out.append(
                    Finding.make(
                        Severity.INFO,
                        "RealWorldValueMappingSequence",
                        _quantity(m),
                        "a quantity with its unit",
                        R_RWVM,
                        where,
                    )
                )
    refs = bool(
        ds.get("ReferencedSeriesSequence")
        or ds.get("SourceImageSequence")
        or _groups(ds, "DerivationImageSequence")
    )
    if not refs:
        out.append(
            Finding.make(
                Severity.WARNING,
                "ReferencedSeriesSequence",
                "no reference to a source",
                "the source series / images it was derived from",
                R_REF,
                where,
            )
        )
    try:
        from perfnode.dicom.provenance import read_provenance, summary

        record = read_provenance(ds)
    except (ValueError, KeyError):
        record = None
    if record:
        out.append(
            Finding.make(
                Severity.INFO,
                "",
                f"perfnode provenance: {summary(record)[:300]}",
                "how the map was made",
                "perfnode provenance",
                where,
            )
        )
    return out


def check_series(headers: Iterable[Dataset]) -> list[Finding]:
    """The derived-object rules on every instance of a series."""
    return [f for ds in headers for f in check_instance(ds)]
