"""Durable storage commitment (PS3.4 Annex J, push model): requests, checks, report queue.

Life of a request, every step a committed row:

1. :func:`record_request` stores the N-ACTION (transaction UID, requester, referenced
   instances) — only then is the N-ACTION answered with Success;
2. :func:`evaluate` checks every referenced instance: it must be in the index with the same
   SOP Class and its file must exist and re-hash to the stored SHA-256. Otherwise the item
   fails with 0x0112 (no such object instance), 0x0119 (class/instance conflict) or 0x0110
   (processing failure: file missing, unreadable or changed);
3. :func:`report` builds the N-EVENT-REPORT content; :func:`mark_delivered` or
   :func:`mark_failed` (exponential backoff) record the outcome. Pending requests are picked
   up again by :func:`due` after a restart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from perfnode.archive.db import Database
from perfnode.archive.models import CommitmentItem, CommitmentRequest, CommitmentState, Instance
from perfnode.clock import utcnow
from perfnode.errors import CLASS_INSTANCE_CONFLICT, NO_SUCH_OBJECT_INSTANCE, PROCESSING_FAILURE

EVENT_ALL_SUCCESS = 1
EVENT_SOME_FAILURES = 2
_CHUNK = 500


class DuplicateTransaction(ValueError):
    """The Transaction UID was already used by an earlier request."""


@dataclass
class Report:
    """What an N-EVENT-REPORT for one request says."""

    request_id: int
    transaction_uid: str
    requester_ae: str
    successes: list[tuple[str, str]] = field(default_factory=list)  # (class, instance)
    failures: list[tuple[str, str, int]] = field(default_factory=list)  # (class, instance, reason)

    @property
    def event_type(self) -> int:
        return EVENT_SOME_FAILURES if self.failures else EVENT_ALL_SUCCESS


def record_request(
    db: Database, transaction_uid: str, requester_ae: str, address: str, refs: list[tuple[str, str]]
) -> int:
    """Store a request durably (committed when this returns); return its id."""
    now = utcnow()
    with db.session() as s:
        if (
            s.execute(
                select(CommitmentRequest.id).where(CommitmentRequest.transaction_uid == transaction_uid)
            ).first()
            is not None
        ):
            raise DuplicateTransaction(
                f"(0008,1195) TransactionUID {transaction_uid}: already used by an "
                "earlier request (PS3.4 J.3.2.1.1 requires a new UID per request)"
            )
        req = CommitmentRequest(
            transaction_uid=transaction_uid,
            requester_ae=requester_ae.strip(),
            requester_address=address[:64],
            state=CommitmentState.PENDING,
            received_at=now,
            next_attempt_at=now,
            attempts=0,
            last_error="",
        )
        req.items = [CommitmentItem(sop_class_uid=c, sop_instance_uid=i) for c, i in refs]
        s.add(req)
        s.flush()
        return req.id


def evaluate(db: Database, storage: Any, request_id: int) -> None:
    """Check every referenced instance (index row, SOP Class, file, checksum) and store the outcome."""
    with db.read() as s:
        items = s.execute(
            select(CommitmentItem.id, CommitmentItem.sop_class_uid, CommitmentItem.sop_instance_uid).where(
                CommitmentItem.request_fk == request_id
            )
        ).all()
    stored: dict[str, tuple[str, str, str]] = {}
    uids = [i.sop_instance_uid for i in items]
    for start in range(0, len(uids), _CHUNK):
        with db.read() as s:
            for row in s.execute(
                select(
                    Instance.sop_instance_uid, Instance.sop_class_uid, Instance.path, Instance.sha256
                ).where(Instance.sop_instance_uid.in_(uids[start : start + _CHUNK]))
            ):
                stored[row[0]] = (row[1], row[2], row[3])
    outcome: dict[int, int | None] = {}
    for item_id, cls, inst in items:  # file checks outside any transaction: hashing takes time
        found = stored.get(inst)
        if found is None:
            outcome[item_id] = NO_SUCH_OBJECT_INSTANCE
        elif found[0] != cls:
            outcome[item_id] = CLASS_INSTANCE_CONFLICT
        else:
            try:
                ok = storage.same_content(found[1], found[2])
            except (OSError, ValueError):
                ok = False
            outcome[item_id] = None if ok else PROCESSING_FAILURE
    with db.session() as s:
        for item_id, reason in outcome.items():
            s.get_one(CommitmentItem, item_id).failure_reason = reason
        s.get_one(CommitmentRequest, request_id).evaluated_at = utcnow()


def due(db: Database, now: datetime | None = None) -> list[tuple[int, bool]]:
    """Pending requests whose next attempt is due: ``(id, evaluated)``, oldest first."""
    now = now or utcnow()
    with db.read() as s:
        rows = s.execute(
            select(CommitmentRequest.id, CommitmentRequest.evaluated_at)
            .where(CommitmentRequest.state == CommitmentState.PENDING,
                   CommitmentRequest.next_attempt_at <= now)
            .order_by(CommitmentRequest.next_attempt_at, CommitmentRequest.id)
        ).all()
    return [(r[0], r[1] is not None) for r in rows]


def report(db: Database, request_id: int) -> Report:
    with db.read() as s:
        req = s.get_one(CommitmentRequest, request_id)
        rep = Report(req.id, req.transaction_uid, req.requester_ae)
        for it in req.items:
            if it.failure_reason is None:
                rep.successes.append((it.sop_class_uid, it.sop_instance_uid))
            else:
                rep.failures.append((it.sop_class_uid, it.sop_instance_uid, it.failure_reason))
    return rep


def mark_delivered(db: Database, request_id: int) -> None:
    with db.session() as s:
        req = s.get_one(CommitmentRequest, request_id)
        req.state, req.delivered_at, req.attempts = CommitmentState.DELIVERED, utcnow(), req.attempts + 1
        req.last_error = ""


def mark_failed(db: Database, request_id: int, error: str, base_s: float, max_s: float) -> float:
    """Record a failed delivery; the next attempt waits ``base_s·2^(attempts-1)`` (at most ``max_s``)."""
    with db.session() as s:
        req = s.get_one(CommitmentRequest, request_id)
        req.attempts += 1
        delay = min(max_s, base_s * 2.0 ** (req.attempts - 1))
        req.next_attempt_at = utcnow() + timedelta(seconds=delay)
        req.last_error = error[:2000]
    return delay


def pending_count(db: Database) -> int:
    with db.read() as s:
        pending = select(CommitmentRequest.id).where(CommitmentRequest.state == CommitmentState.PENDING)
        return len(s.execute(pending).all())
