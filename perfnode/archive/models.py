"""The index: typed SQLAlchemy 2 models (schema versioned by Alembic in ``migrations/``).

Patient → Study → Series → Instance, holding what C-FIND needs at every level, plus the
facts about each stored file (path, size, checksum, transfer syntax, who sent it, when).
Text is stored decoded (Unicode); UIDs, dates (YYYYMMDD) and times (HHMMSS.FFFFFF) as the
DICOM strings, so range matching is a string comparison in SQL.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates

from perfnode.clock import as_utc

UID = String(64)


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime in and out; ``timestamptz`` on PostgreSQL, a naive UTC string on SQLite
    (so that SQLite's string comparison of times stays right). A naive value is refused."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = as_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if not isinstance(value, datetime):
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class JobState(enum.StrEnum):
    """queued → running → done | refused (cannot be analysed, the note says why) | failed | held (maps
    archived but not sent: they failed the quality gate, the note says why); ``skipped`` for series
    perfnode does not analyse."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    REFUSED = "refused"
    FAILED = "failed"
    SKIPPED = "skipped"
    HELD = "held"


class CommitmentState(enum.StrEnum):
    """A storage-commitment request: its report is ``pending`` until ``delivered``."""

    PENDING = "pending"
    DELIVERED = "delivered"


def _state(cls: type[enum.Enum], name: str) -> Enum:
    """The enum stored as its value in a VARCHAR(16) with a CHECK constraint (same on every database)."""
    return Enum(cls, name=name, native_enum=False, create_constraint=True, length=16, validate_strings=True,
                values_callable=lambda e: [m.value for m in e])


class Base(DeclarativeBase):
    pass


class Patient(Base):
    __tablename__ = "patients"
    __table_args__ = (UniqueConstraint("patient_id", "issuer_of_patient_id", name="uq_patient_identity"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(64), default="", index=True)
    issuer_of_patient_id: Mapped[str] = mapped_column(String(64), default="")
    patient_name: Mapped[str] = mapped_column(String(324), default="", index=True)
    #: ``patient_name.casefold()``: what C-FIND Person Name matching compares (migration 0007).
    patient_name_folded: Mapped[str] = mapped_column(String(1024), default="", server_default="")
    patient_birth_date: Mapped[str] = mapped_column(String(8), default="")
    patient_sex: Mapped[str] = mapped_column(String(16), default="")

    studies: Mapped[list[Study]] = relationship(back_populates="patient")

    @validates("patient_name")
    def _fold_name(self, _key: str, value: str) -> str:
        self.patient_name_folded = (value or "").casefold()  # ORM writes; the store path sets both
        return value


class Study(Base):
    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_fk: Mapped[int] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"), index=True)
    study_instance_uid: Mapped[str] = mapped_column(UID, unique=True)
    study_date: Mapped[str] = mapped_column(String(8), default="", index=True)
    study_time: Mapped[str] = mapped_column(String(16), default="")
    accession_number: Mapped[str] = mapped_column(String(16), default="", index=True)
    study_id: Mapped[str] = mapped_column(String(16), default="")
    study_description: Mapped[str] = mapped_column(String(64), default="")
    referring_physician_name: Mapped[str] = mapped_column(String(324), default="")
    referring_physician_name_folded: Mapped[str] = mapped_column(String(1024), default="", server_default="")

    patient: Mapped[Patient] = relationship(back_populates="studies")
    series: Mapped[list[Series]] = relationship(back_populates="study")

    @validates("referring_physician_name")
    def _fold_name(self, _key: str, value: str) -> str:
        self.referring_physician_name_folded = (value or "").casefold()
        return value


class Series(Base):
    __tablename__ = "series"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_fk: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    series_instance_uid: Mapped[str] = mapped_column(UID, unique=True)
    modality: Mapped[str] = mapped_column(String(16), default="", index=True)
    series_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    series_description: Mapped[str] = mapped_column(String(64), default="")
    body_part_examined: Mapped[str] = mapped_column(String(16), default="")
    protocol_name: Mapped[str] = mapped_column(String(64), default="")
    series_date: Mapped[str] = mapped_column(String(8), default="")
    series_time: Mapped[str] = mapped_column(String(16), default="")
    frame_of_reference_uid: Mapped[str] = mapped_column(UID, default="")
    #: Last time an instance of this series arrived (drives "series stable" completion).
    last_received_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    study: Mapped[Study] = relationship(back_populates="series")
    instances: Mapped[list[Instance]] = relationship(back_populates="series")


class Instance(Base):
    __tablename__ = "instances"
    __table_args__ = (Index("ix_instances_concatenation", "concatenation_uid", "in_concatenation_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    series_fk: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"), index=True)
    sop_instance_uid: Mapped[str] = mapped_column(UID, unique=True)
    sop_class_uid: Mapped[str] = mapped_column(UID, index=True)
    transfer_syntax_uid: Mapped[str] = mapped_column(UID)
    instance_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    image_type: Mapped[str] = mapped_column(String(256), default="")  # backslash-joined values
    number_of_frames: Mapped[int | None] = mapped_column(Integer, nullable=True)
    concatenation_uid: Mapped[str] = mapped_column(UID, default="")
    in_concatenation_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    in_concatenation_total_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    concatenation_frame_offset_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    content_date: Mapped[str] = mapped_column(String(8), default="")
    content_time: Mapped[str] = mapped_column(String(16), default="")
    specific_character_set: Mapped[str] = mapped_column(String(128), default="")
    #: File path relative to the data folder.
    path: Mapped[str] = mapped_column(String(512))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    #: SHA-256 of the stored file (hex), computed while it was written.
    sha256: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    calling_ae: Mapped[str] = mapped_column(String(16), default="")

    series: Mapped[Series] = relationship(back_populates="instances")


# --- pipeline: jobs and the sent-log (migration 0004_jobs) -------------------------------


class Job(Base):
    """One analysis of one series: queued → running → done | failed (with the error)."""

    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("series_instance_uid", "analysis", name="uq_job_series_analysis"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    series_instance_uid: Mapped[str] = mapped_column(UID, index=True)
    #: Technique analysed: dsc, dce, ctp, asl, ivim.
    analysis: Mapped[str] = mapped_column(String(16))
    state: Mapped[JobState] = mapped_column(_state(JobState, "job_state"), default=JobState.QUEUED,
                                            index=True)
    error: Mapped[str] = mapped_column(Text, default="")
    calling_ae: Mapped[str] = mapped_column(String(16), default="")
    #: Destination AE titles, comma-separated.
    destinations: Mapped[str] = mapped_column(String(512), default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    output_series_uid: Mapped[str] = mapped_column(UID, default="")
    #: Folder (relative to the data folder) holding the job's outputs and report.
    output_dir: Mapped[str] = mapped_column(String(512), default="")

    sent: Mapped[list[SentObject]] = relationship(back_populates="job")


class SentObject(Base):
    """An output instance delivered to a destination (so a resumed job sends nothing twice)."""

    __tablename__ = "sent_objects"
    __table_args__ = (UniqueConstraint("job_fk", "sop_instance_uid", "destination", name="uq_sent_once"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_fk: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    sop_instance_uid: Mapped[str] = mapped_column(UID)
    destination: Mapped[str] = mapped_column(String(16))
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime)

    job: Mapped[Job] = relationship(back_populates="sent")


# --- storage commitment: requests and per-instance results (migration 0002_commitment) --------

#: C-FIND person-name matching is ``patient_name_folded LIKE 'pattern'`` (perfnode.archive.query);
#: on PostgreSQL this index serves prefix patterns whatever the database collation.
Index("ix_patients_patient_name_folded", Patient.patient_name_folded,
      postgresql_ops={"patient_name_folded": "varchar_pattern_ops"})



class CommitmentRequest(Base):
    """A Storage Commitment Push Model request (N-ACTION), kept until its report is delivered."""

    __tablename__ = "commitment_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    transaction_uid: Mapped[str] = mapped_column(UID, unique=True)
    #: Calling AE title of the requester; the report goes to this AE from the AE table.
    requester_ae: Mapped[str] = mapped_column(String(16))
    requester_address: Mapped[str] = mapped_column(String(64), default="")
    state: Mapped[CommitmentState] = mapped_column(_state(CommitmentState, "commitment_state"),
                                                   default=CommitmentState.PENDING, index=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: When the instances were checked (files re-hashed); None = not yet.
    evaluated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    items: Mapped[list[CommitmentItem]] = relationship(
        back_populates="request", cascade="all, delete-orphan", order_by="CommitmentItem.id")


class CommitmentItem(Base):
    """One referenced SOP instance of a commitment request and its outcome."""

    __tablename__ = "commitment_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    request_fk: Mapped[int] = mapped_column(
        ForeignKey("commitment_requests.id", ondelete="CASCADE"), index=True)
    sop_class_uid: Mapped[str] = mapped_column(UID)
    sop_instance_uid: Mapped[str] = mapped_column(UID)
    #: None = committed (success); else the PS3.4 Failure Reason (0x0110, 0x0112, 0x0119 …).
    failure_reason: Mapped[int | None] = mapped_column(Integer, nullable=True)

    request: Mapped[CommitmentRequest] = relationship(back_populates="items")


class SentCommitmentState(enum.StrEnum):
    """A storage-commitment request this node sent (SCU): ``waiting`` for the N-EVENT-REPORT, then
    ``committed`` (event type 1: every instance) or ``failed`` (event type 2, or instances the report
    did not mention)."""

    WAITING = "waiting"
    COMMITTED = "committed"
    FAILED = "failed"


class SentCommitment(Base):
    """A Storage Commitment N-ACTION this node sent (``perfnode commit``, pipeline), recorded before it
    is sent; the N-EVENT-REPORT — on the same association or a new one — is matched by Transaction UID."""

    __tablename__ = "sent_commitments"

    id: Mapped[int] = mapped_column(primary_key=True)
    transaction_uid: Mapped[str] = mapped_column(UID, unique=True)
    #: The AE asked to commit (from the AE table, or AE@host:port).
    destination_ae: Mapped[str] = mapped_column(String(16))
    #: The pipeline job whose maps these are (None: ``perfnode commit``).
    job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    state: Mapped[SentCommitmentState] = mapped_column(_state(SentCommitmentState, "sent_commitment_state"),
                                                       default=SentCommitmentState.WAITING, index=True)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reported_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: N-EVENT-REPORT Event Type ID (1 all committed, 2 failures); None until reported.
    event_type: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: Calling AE title of the report's association (the report may come from another AE than asked).
    reporter_ae: Mapped[str] = mapped_column(String(16), default="")
    #: "same" (on the N-ACTION's association) or "new" (a new association to this node).
    via: Mapped[str] = mapped_column(String(8), default="")

    items: Mapped[list[SentCommitmentItem]] = relationship(
        back_populates="request", cascade="all, delete-orphan", order_by="SentCommitmentItem.id")


class SentCommitmentItem(Base):
    """One instance of a sent request and what the report said about it."""

    __tablename__ = "sent_commitment_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    request_fk: Mapped[int] = mapped_column(ForeignKey("sent_commitments.id", ondelete="CASCADE"), index=True)
    sop_class_uid: Mapped[str] = mapped_column(UID)
    sop_instance_uid: Mapped[str] = mapped_column(UID)
    #: None until reported; True when in the Referenced SOP Sequence of the report.
    committed: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    #: Failure Reason from the Failed SOP Sequence (0x0110, 0x0112, 0x0119 …); None otherwise.
    failure_reason: Mapped[int | None] = mapped_column(Integer, nullable=True)

    request: Mapped[SentCommitment] = relationship(back_populates="items")


# --- PERF profile findings per stored instance (migration 0003_findings; perfnode/archive/findings.py) ---


class InstanceFinding(Base):
    """One finding (``perfnode.dicom.findings.Finding``) about a stored instance."""

    __tablename__ = "findings"

    id: Mapped[int] = mapped_column(primary_key=True)
    instance_fk: Mapped[int] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"), index=True)
    #: Which checks made it: "perf" (IHE PERF profile); "qc" and others may follow.
    section: Mapped[str] = mapped_column(String(32), default="perf")
    severity: Mapped[str] = mapped_column(String(8), index=True)
    tag: Mapped[str] = mapped_column(String(11), default="")
    keyword: Mapped[str] = mapped_column(String(64), default="")
    found: Mapped[str] = mapped_column(Text, default="")
    expected: Mapped[str] = mapped_column(Text, default="")
    rule: Mapped[str] = mapped_column(String(128), default="")
    where: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
