"""The index side of the PERF checks: record the findings of every stored perfusion object.

``record_findings`` runs after every newly stored object (an ``Archive.on_stored`` listener); it
replaces the instance's "perf" findings, so storing the same instance again does not duplicate them.
The node stores non-conforming objects all the same: an archive never drops data.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from sqlalchemy import delete, select

from perfnode.archive.db import Database
from perfnode.archive.models import Instance, InstanceFinding, Series
from perfnode.clock import utcnow
from perfnode.dicom.findings import Finding, Severity
from perfnode.dicom.perf import check_dataset, is_perfusion_candidate

log = logging.getLogger(__name__)
SECTION = "perf"


def save_findings(db: Database, instance_id: int, findings: list[Finding], section: str = SECTION) -> None:
    """Replace the ``section`` findings of one instance (one transaction)."""
    now = utcnow()
    with db.session() as s:
        s.execute(
            delete(InstanceFinding).where(
                InstanceFinding.instance_fk == instance_id, InstanceFinding.section == section
            )
        )
        s.add_all(
            InstanceFinding(
                instance_fk=instance_id,
                section=section,
                severity=str(f.severity),
                tag=f.tag,
                keyword=f.keyword,
                found=f.found,
                expected=f.expected,
                rule=f.rule,
                where=f.where,
                created_at=now,
            )
            for f in findings
        )


def record_findings(db: Database, instance_id: int, path: Path, header: Dataset | None = None) -> None:
    """Check the stored file against the PERF profile and record what was found.

    ``header`` (the attributes read at store time) settles cheaply whether the PERF rules apply at
    all; only perfusion objects are read again in full. A replaced object's old findings were
    deleted when it was re-indexed, so a non-perfusion object needs no write.
    """
    if header is not None and not is_perfusion_candidate(header):
        return
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    findings = check_dataset(ds)
    if findings:
        log.info("%s: %d PERF finding(s)", ds.SOPInstanceUID, len(findings))
    save_findings(db, instance_id, findings)


def load_findings(
    db: Database, series_instance_uid: str | None = None, instance_id: int | None = None
) -> list[tuple[str, Finding]]:
    """``(SOP Instance UID, finding)`` pairs recorded for a series or one instance."""
    q = select(Instance.sop_instance_uid, InstanceFinding).join(
        Instance, InstanceFinding.instance_fk == Instance.id
    )
    if series_instance_uid is not None:
        q = q.join(Series, Instance.series_fk == Series.id).where(
            Series.series_instance_uid == series_instance_uid
        )
    if instance_id is not None:
        q = q.where(Instance.id == instance_id)
    with db.read() as s:
        rows = s.execute(q.order_by(InstanceFinding.id)).all()
    return [
        (uid, Finding(Severity(r.severity), r.tag, r.keyword, r.found, r.expected, r.rule, r.where))
        for uid, r in rows
    ]


def series_paths(db: Database, data: Path, series_instance_uid: str) -> list[Path]:
    """Absolute paths of the stored instances of a series (empty when the series is unknown)."""
    with db.read() as s:
        rows = (
            s.execute(
                select(Instance.path)
                .join(Series, Instance.series_fk == Series.id)
                .where(Series.series_instance_uid == series_instance_uid)
                .order_by(Instance.id)
            )
            .scalars()
            .all()
        )
    return [data / p for p in rows]
