"""Storage commitment requests this node sent (Push Model SCU), and the reports that answer them.

1. :func:`record` stores the request (Transaction UID, destination, instances) before the N-ACTION
   goes out;
2. :func:`record_report` stores an N-EVENT-REPORT — whichever association it arrived on — matched by
   Transaction UID, item by item; it is committed before the report is answered with Success;
3. :func:`outcome` reads the request back (the waiting SCU polls it: the report may be received by
   the node's server, in another thread or process).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select

from perfnode.archive.db import Database
from perfnode.archive.models import SentCommitment, SentCommitmentItem, SentCommitmentState
from perfnode.clock import utcnow

#: Failure Reason for an instance the report mentioned neither as committed nor as failed.
NOT_IN_REPORT = 0x0110


@dataclass
class SentOutcome:
    """A sent request as the index holds it."""

    transaction_uid: str
    destination_ae: str
    state: str
    event_type: int | None = None
    reporter_ae: str = ""
    via: str = ""
    committed: list[str] = field(default_factory=list)
    failed: list[tuple[str, int]] = field(default_factory=list)  # (SOP Instance UID, Failure Reason)

    @property
    def reported(self) -> bool:
        return self.event_type is not None


@dataclass
class ReportMatch:
    """What :func:`record_report` made of a report: the request's state and what did not fit."""

    state: str
    destination_ae: str
    unknown_instances: list[str] = field(default_factory=list)


def record(db: Database, transaction_uid: str, destination_ae: str, refs: list[tuple[str, str]],
           job_id: int | None = None) -> None:
    """Store a request (committed when this returns), before its N-ACTION is sent."""
    with db.session() as s:
        req = SentCommitment(transaction_uid=transaction_uid, destination_ae=destination_ae.strip()[:16],
                             job_id=job_id, state=SentCommitmentState.WAITING, requested_at=utcnow(),
                             reporter_ae="", via="")
        req.items = [SentCommitmentItem(sop_class_uid=c, sop_instance_uid=i) for c, i in refs]
        s.add(req)


def record_report(db: Database, transaction_uid: str, event_type: int, committed: list[tuple[str, str]],
                  failed: list[tuple[str, str, int]], reporter_ae: str, via: str) -> ReportMatch | None:
    """Store an N-EVENT-REPORT for one of our requests; ``None`` when no request has this Transaction UID.

    Every instance of the request gets its outcome: committed (Referenced SOP Sequence), its Failure
    Reason (Failed SOP Sequence), or :data:`NOT_IN_REPORT`. A later report replaces an earlier one."""
    ok = {inst for _cls, inst in committed}
    bad = {inst: reason for _cls, inst, reason in failed}
    with db.session() as s:
        req = s.execute(select(SentCommitment).where(SentCommitment.transaction_uid == transaction_uid)
                        ).scalar_one_or_none()
        if req is None:
            return None
        mine = set()
        all_ok = True
        for it in req.items:
            mine.add(it.sop_instance_uid)
            if it.sop_instance_uid in ok and it.sop_instance_uid not in bad:
                it.committed, it.failure_reason = True, None
            else:
                it.committed, it.failure_reason = False, bad.get(it.sop_instance_uid, NOT_IN_REPORT)
                all_ok = False
        req.event_type, req.reporter_ae, req.via = event_type, reporter_ae.strip()[:16], via[:8]
        req.reported_at = utcnow()
        req.state = SentCommitmentState.COMMITTED if all_ok else SentCommitmentState.FAILED
        return ReportMatch(str(req.state), req.destination_ae, sorted((ok | set(bad)) - mine))


def outcome(db: Database, transaction_uid: str) -> SentOutcome | None:
    with db.read() as s:
        req = s.execute(select(SentCommitment).where(SentCommitment.transaction_uid == transaction_uid)
                        ).scalar_one_or_none()
        if req is None:
            return None
        out = SentOutcome(req.transaction_uid, req.destination_ae, str(req.state), req.event_type,
                          req.reporter_ae, req.via)
        for it in req.items:
            if it.committed:
                out.committed.append(it.sop_instance_uid)
            elif it.committed is False:
                out.failed.append((it.sop_instance_uid, int(it.failure_reason or NOT_IN_REPORT)))
        return out
