"""A finding: one way an object (or an acquisition) departs from a rule.

Shared by the IHE PERF profile checks (``dicom/perf.py``) and the quality-control checks
(``qc/``), so that ``perfnode check`` and the map provenance show them the same way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from pydicom.datadict import keyword_for_tag, tag_for_keyword
from pydicom.tag import Tag


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


def tag_str(tag: int | str | None) -> str:
    """``(gggg,eeee)`` for a tag given as an int or a keyword; "" when there is none."""
    if tag is None or tag == "":
        return ""
    if isinstance(tag, str):
        t = tag_for_keyword(tag)
        if t is None:
            return tag
        tag = t
    t = Tag(tag)
    return f"({t.group:04X},{t.element:04X})"


@dataclass(frozen=True)
class Finding:
    """Severity, the attribute (tag and keyword), what was found, what was expected, the rule."""

    severity: Severity
    tag: str  # "(0008,0008)" or "" when the finding is not about one attribute
    keyword: str
    found: str
    expected: str
    rule: str  # e.g. "IHE RAD TF-3 PERF Table 4.8-1", "PS3.3 C.7.6.16", "ESR 2024 Table 1"
    where: str = ""  # file, frame or other location, when it helps

    @classmethod
    def make(cls, severity: Severity | str, attribute: int | str | None, found: Any, expected: Any,
             rule: str, where: str = "") -> Finding:
        """Build a finding from a tag (int) or keyword; the other of the two is looked up."""
        if isinstance(attribute, int):
            keyword = keyword_for_tag(attribute) or ""
        else:
            keyword = attribute or ""
        return cls(Severity(severity), tag_str(attribute), keyword, str(found), str(expected), rule, where)

    @property
    def attribute(self) -> str:
        return f"{self.tag} {self.keyword}".strip()

    def __str__(self) -> str:
        loc = f" [{self.where}]" if self.where else ""
        what = f"{self.attribute}{loc}: " if self.attribute or loc else ""
        return f"{self.severity.upper()}: {what}found {self.found}; expected {self.expected} ({self.rule})"

    def to_dict(self) -> dict[str, str]:
        d = asdict(self)
        d["severity"] = str(self.severity)
        return d
