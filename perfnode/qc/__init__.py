"""Quality control: protocol compliance against the ESR recommendations, data quality, the HTML report.

- ``protocols/*.toml``: the recommended protocols as rules (one file per technique), each citing its source;
  a site adds or overrides rules by id with its own files (:func:`perfnode.qc.rules.load_protocols`).
- :mod:`perfnode.qc.facts`: what a rule can test, read from the headers or measured from the data.
- :mod:`perfnode.qc.quality`: data-quality measures (vectorised numpy), thresholds in the rule files.
- :func:`check_series`: facts + rules → findings (the shared :class:`~perfnode.dicom.findings.Finding`);
  :func:`compliance_findings` is the header-only variant for ``perfnode check``.
- :func:`perfnode.qc.report.write_report` / :func:`perfnode.qc.series.report_files`: the HTML report.
"""

from perfnode.qc.compliance import QCResult, check_series, compliance_findings

__all__ = ["QCResult", "check_series", "compliance_findings"]
