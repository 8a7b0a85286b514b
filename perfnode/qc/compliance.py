"""Facts + rules → findings: protocol compliance and data quality of one series.

:func:`check_series` is the one entry point (``perfnode check``, ``perfnode report`` and the
pipeline call it); :func:`compliance_findings` is the header-only variant for ``perfnode check``.
Findings have the same shape as the IHE PERF checks (``perfnode/dicom/findings.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from perfnode import techniques
from perfnode.dicom.findings import Finding, Severity
from perfnode.qc import quality
from perfnode.qc.facts import (
    Fact,
    Facts,
    default_facts,
    frame_times,
    given_facts,
    header_facts,
    label,
    provenance_facts,
    study_facts,
    timing_facts,
)
from perfnode.qc.rules import Protocol, Rule, load_protocols
from perfnode.techniques import detect_series

STUDY_FACTS = {"t1_mapping_present", "b1_map_present"}
_ORDER = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}


def _finding(rule: Rule, fact: Fact | None, severity: Severity) -> Finding:
    attribute = rule.attribute or (fact.attribute if fact else None)
    if fact is not None and fact.value is None:
        found = fact.source  # the reason the value is unknown
    elif fact is not None:
        found = fact.text()
    elif rule.fact in STUDY_FACTS:
        found = "not determined: the study's other series were not given"
    else:
        found = "not in the header and not measurable from the data"
    if not attribute:  # a measured or study-level quantity: say which one
        found = f"{label(rule.fact)}: {found}"
    return Finding.make(severity, attribute, found, rule.expected_text(), f"{rule.source} [{rule.id}]")


def evaluate(protocol: Protocol, facts: Mapping[str, Fact], group: str | None = None) -> list[Finding]:
    """Findings of the protocol's rules (of one ``group``, or all) on the facts, worst first."""
    out: list[tuple[int, int, Finding]] = []
    for i, rule in enumerate(protocol.rules.values()):
        if group and rule.group != group:
            continue
        if not rule.applies(facts):
            continue
        fact = facts.get(rule.fact)
        if fact is None or fact.value is None:
            if rule.missing is not None:
                out.append((_ORDER[rule.missing], i, _finding(rule, fact, rule.missing)))
            continue
        value = fact.value
        if isinstance(value, float) and np.isnan(value):
            continue
        if not rule.check.test(value):
            out.append((_ORDER[rule.severity], i, _finding(rule, fact, rule.severity)))
    return [f for _, _, f in sorted(out, key=lambda x: (x[0], x[1]))]


@dataclass
class QCResult:
    """What ``check_series`` found: the technique, the facts used, and the two lists of findings."""

    technique: str | None
    facts: Facts
    protocol: list[Finding] = field(default_factory=list)
    quality: list[Finding] = field(default_factory=list)
    title: str = ""
    reference: str = ""
    #: how the technique was decided (:func:`perfnode.techniques.detect_series`), one line
    decision: str = ""

    @property
    def findings(self) -> list[Finding]:
        return self.protocol + self.quality


def check_series(
    datasets: Sequence[Dataset] = (),
    *,
    study: Sequence[Dataset] | None = None,
    technique: str | None = None,
    protocols: Mapping[str, Protocol] | Path | str | Sequence[Path | str] | None = None,
    given: Mapping[str, Any] | Sequence[str] | None = None,
    times_s: np.ndarray | None = None,
    data: np.ndarray | None = None,
    spacing_mm: Sequence[float] | None = None,
    aif: np.ndarray | None = None,
    aif_signal: np.ndarray | None = None,
    fit: Any = None,
    mask: np.ndarray | None = None,
) -> QCResult:
    """Protocol compliance and data quality of one series.

    ``datasets``: the series' headers; ``study``: headers of the study's other series (None when
    unknown: then T1/B1/M0 presence is "not determined" rather than "absent"); ``protocols``: loaded
    protocols or site rule directories/files added to the shipped ones; ``given``: facts a person
    knows and the header does not (``hemodynamic_impairment=yes``, ``dce_purpose=perfusion``);
    ``times_s``/``data`` (``(t, ...)``)/``aif``/``fit``: for the measured facts and quality checks.
    """
    protos = protocols if isinstance(protocols, Mapping) else load_protocols(protocols)
    ds = list(datasets)
    hdr = header_facts(ds)
    decision = ""
    if technique:
        tech: str | None = technique.lower()
    elif ds:  # the one detector (the pipeline's), from every instance of the series
        d = detect_series(ds)
        tech, decision = d.technique, d.reason
    else:
        tech = None
    proto_key, dynamic = tech, tech in {"dsc", "dce", "ctp"}
    if tech is not None:
        try:
            entry = techniques.get(tech)
        except KeyError:  # a protocol name without a registered technique (a site's own)
            pass
        else:
            tech, proto_key, dynamic = entry.name, entry.qc_protocol or entry.name, entry.dynamic
    proto = protos.get(proto_key) if proto_key else None
    facts: Facts = {}
    if proto is not None:
        facts.update(default_facts(proto.defaults))
    if study is not None:
        uid = str(ds[0].get("SeriesInstanceUID", "")) if ds else None
        facts.update(study_facts(study, uid))
    facts.update(hdr)
    if times_s is None and ds:
        times_s = frame_times(ds)
    if times_s is not None and len(times_s) >= 2:
        facts.update(timing_facts(times_s))
    facts.update(
        quality.measure(
            data,
            times_s,
            falls=(tech == "dsc"),
            spacing_mm=spacing_mm,
            aif=aif,
            aif_signal=aif_signal,
            fit=fit,
            mask=mask,
            dynamic=dynamic,
            modality="CT" if tech == "ctp" else "MR",
        )
    )
    facts.update(provenance_facts(getattr(fit, "provenance", None)))
    facts.update(given_facts(given))
    result = QCResult(tech, facts, decision=decision)
    if proto is None:
        if tech is None:
            result.protocol.append(
                Finding.make(
                    Severity.INFO,
                    None,
                    f"technique not recognised: {decision}" if decision else "technique not recognised",
                    "one of " + ", ".join(sorted(protos)) + " (pass the technique explicitly)",
                    "perfnode qc",
                )
            )
        else:
            result.protocol.append(
                Finding.make(
                    Severity.INFO,
                    None,
                    f"technique {tech}",
                    "a technique with a protocol rule file: " + ", ".join(sorted(protos)),
                    "perfnode qc (no recommended protocol shipped)",
                )
            )
        return result
    result.title, result.reference = proto.title, proto.reference
    result.protocol = evaluate(proto, facts, "protocol")
    result.quality = evaluate(proto, facts, "quality")
    return result


def compliance_findings(
    datasets: Sequence[Dataset],
    *,
    study: Sequence[Dataset] | None = None,
    technique: str | None = None,
    protocols: Path | str | Sequence[Path | str] | None = None,
    given: Mapping[str, Any] | Sequence[str] | None = None,
) -> list[Finding]:
    """Protocol-compliance findings from the headers alone (for ``perfnode check``)."""
    return check_series(datasets, study=study, technique=technique, protocols=protocols, given=given).protocol
