"""Validate a received object before it is acknowledged (the store's policy around
:mod:`perfnode.dicom.wellformed`).

* unreadable (broken encoding, Pixel Data that does not hold the image it declares) → refused,
  :class:`~perfnode.errors.CannotUnderstand`, nothing kept, whatever the mode;
* readable but not conformant (a Type 1 attribute missing …) → with ``[store] validation = "warn"``
  (the default: an archive keeps what it can read) stored, and the findings recorded in the index
  (section ``"validation"``) and answered with a warning status; with ``"strict"`` refused,
  :class:`~perfnode.errors.DatasetMismatch`.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import insert
from sqlalchemy.engine import Connection

from perfnode.archive.models import InstanceFinding
from perfnode.clock import utcnow
from perfnode.dicom.findings import Finding
from perfnode.dicom.wellformed import Report, Unreadable, check_object
from perfnode.errors import CannotUnderstand, DatasetMismatch

SECTION = "validation"


class ValidationMode(StrEnum):
    STRICT = "strict"
    WARN = "warn"


def validation_mode(store_section: dict[str, Any]) -> ValidationMode:
    """The mode from the ``[store]`` table of the config file (``validation = "strict" | "warn"``)."""
    value = str(store_section.get("validation", ValidationMode.WARN)).strip().lower()
    try:
        return ValidationMode(value)
    except ValueError:
        from perfnode.config import ConfigError

        raise ConfigError(f"[store] validation = {value!r}: expected 'strict' or 'warn'") from None


def walk_received(path: str | Path, transfer_syntax: str, offset: int | None = None) -> Report:
    """Walk a received file's encoding (step 1, before its header is trusted).

    Raises :class:`CannotUnderstand` naming the element and the rule when it is unreadable.
    """
    try:
        return check_object(path, transfer_syntax, offset=offset)
    except Unreadable as exc:
        raise CannotUnderstand(f"unreadable: {exc} ({exc.rule})") from exc
    except OSError as exc:
        raise CannotUnderstand(f"unreadable: {exc}") from exc


def judge(report: Report, sop_class: str, mode: ValidationMode = ValidationMode.WARN) -> list[Finding]:
    """Step 2, once the SOP class is known: the findings to store with a warning (Type 1 included).

    Raises :class:`DatasetMismatch` in strict mode when there are any.
    """
    report.check_type1(sop_class)
    if report.findings and mode is ValidationMode.STRICT:
        raise DatasetMismatch(f"not conformant: {report.summary} ([store] validation = strict)")
    return report.findings


def validate_received(path: str | Path, transfer_syntax: str, sop_class: str,
                      mode: ValidationMode = ValidationMode.WARN, offset: int | None = None) -> list[Finding]:
    """Both steps: :func:`walk_received`, then :func:`judge`."""
    return judge(walk_received(path, transfer_syntax, offset), sop_class, mode)


def record_findings(conn: Connection, instance_id: int, findings: list[Finding]) -> None:
    """Insert the validation findings of one instance (inside the caller's index transaction)."""
    if not findings:
        return
    now = utcnow()
    conn.execute(insert(InstanceFinding), [
        {"instance_fk": instance_id, "section": SECTION, "severity": str(f.severity), "tag": f.tag,
         "keyword": f.keyword, "found": f.found, "expected": f.expected, "rule": f.rule, "where": f.where,
         "created_at": now}
        for f in findings])
