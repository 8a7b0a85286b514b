"""C-FIND / C-MOVE / C-GET identifier → SQL, in one place (PS3.4 C.2.2.2 matching, C.6 models).

A :class:`Query` is built from a request identifier once (bad identifiers are refused here
with a :class:`QueryError` naming the tag, keyword and rule), then run against the index:

* :meth:`Query.pages` yields response identifiers in pages; every page is its own short read
  transaction (keyset pagination on the level's primary key), so a long query never holds
  the SQLite lock and can be cancelled between pages;
* :meth:`Query.instances` lists the stored files a retrieve must send.

All matching happens in SQL: single value, ``*``/``?`` wildcards (escaped LIKE; GLOB on
SQLite where LIKE would ignore case), date/time ranges, UID lists, universal matching.
Person names match case-insensitively, other strings exactly.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from pydicom import config
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import Tag
from sqlalchemy import ColumnElement, Select, and_, exists, func, or_, select
from sqlalchemy.orm import InstrumentedAttribute

from perfnode.archive.db import Database
from perfnode.archive.ingest import fold
from perfnode.archive.models import Instance, Patient, Series, Study

LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")
PATIENT_ROOT = "PATIENT"
STUDY_ROOT = "STUDY"

#: Level → model whose rows are the matches at that level.
_MODEL: dict[str, Any] = {"PATIENT": Patient, "STUDY": Study, "SERIES": Series, "IMAGE": Instance}
#: Level → unique key (PS3.4 C.6.1.1 / C.6.2.1).
UNIQUE_KEY = {
    "PATIENT": "PatientID",
    "STUDY": "StudyInstanceUID",
    "SERIES": "SeriesInstanceUID",
    "IMAGE": "SOPInstanceUID",
}

#: Keyword → (level, column) for keys stored in the index.
_COLUMNS: dict[str, tuple[str, InstrumentedAttribute[Any]]] = {
    "PatientName": ("PATIENT", Patient.patient_name),
    "PatientID": ("PATIENT", Patient.patient_id),
    "IssuerOfPatientID": ("PATIENT", Patient.issuer_of_patient_id),
    "PatientBirthDate": ("PATIENT", Patient.patient_birth_date),
    "PatientSex": ("PATIENT", Patient.patient_sex),
    "StudyInstanceUID": ("STUDY", Study.study_instance_uid),
    "StudyDate": ("STUDY", Study.study_date),
    "StudyTime": ("STUDY", Study.study_time),
    "AccessionNumber": ("STUDY", Study.accession_number),
    "StudyID": ("STUDY", Study.study_id),
    "StudyDescription": ("STUDY", Study.study_description),
    "ReferringPhysicianName": ("STUDY", Study.referring_physician_name),
    "SeriesInstanceUID": ("SERIES", Series.series_instance_uid),
    "Modality": ("SERIES", Series.modality),
    "SeriesNumber": ("SERIES", Series.series_number),
    "SeriesDescription": ("SERIES", Series.series_description),
    "BodyPartExamined": ("SERIES", Series.body_part_examined),
    "ProtocolName": ("SERIES", Series.protocol_name),
    "SeriesDate": ("SERIES", Series.series_date),
    "SeriesTime": ("SERIES", Series.series_time),
    "FrameOfReferenceUID": ("SERIES", Series.frame_of_reference_uid),
    "SOPInstanceUID": ("IMAGE", Instance.sop_instance_uid),
    "SOPClassUID": ("IMAGE", Instance.sop_class_uid),
    "InstanceNumber": ("IMAGE", Instance.instance_number),
    "ImageType": ("IMAGE", Instance.image_type),
    "NumberOfFrames": ("IMAGE", Instance.number_of_frames),
    "ConcatenationUID": ("IMAGE", Instance.concatenation_uid),
    "InConcatenationNumber": ("IMAGE", Instance.in_concatenation_number),
    "InConcatenationTotalNumber": ("IMAGE", Instance.in_concatenation_total_number),
    "ConcatenationFrameOffsetNumber": ("IMAGE", Instance.concatenation_frame_offset_number),
    "ContentDate": ("IMAGE", Instance.content_date),
    "ContentTime": ("IMAGE", Instance.content_time),
    "AvailableTransferSyntaxUID": ("IMAGE", Instance.transfer_syntax_uid),
}

#: Person Name keys matched case-insensitively, on their case-folded column (migration 0007).
_FOLDED: dict[str, InstrumentedAttribute[Any]] = {
    "PatientName": Patient.patient_name_folded,
    "ReferringPhysicianName": Study.referring_physician_name_folded,
}

#: Derived (computed) return keys: keyword → level. Only ModalitiesInStudy is also matchable.
_DERIVED = {
    "NumberOfPatientRelatedStudies": "PATIENT",
    "NumberOfPatientRelatedSeries": "PATIENT",
    "NumberOfPatientRelatedInstances": "PATIENT",
    "NumberOfStudyRelatedSeries": "STUDY",
    "NumberOfStudyRelatedInstances": "STUDY",
    "ModalitiesInStudy": "STUDY",
    "SOPClassesInStudy": "STUDY",
    "NumberOfSeriesRelatedInstances": "SERIES",
}

#: Keys that are filled in by the service, not matched.
_SERVICE_KEYS = {"QueryRetrieveLevel", "SpecificCharacterSet", "RetrieveAETitle", "InstanceAvailability"}

_TAG_VR: dict[str, tuple[int, str]] = {kw: (tag_for_keyword(kw) or 0, dictionary_VR(kw))
                                       for kw in [*_COLUMNS, *_DERIVED]}

SUPPORTED_KEYS: dict[str, list[str]] = {
    lvl: [k for k, (lv, _) in _COLUMNS.items() if lv == lvl] + [k for k, lv in _DERIVED.items() if lv == lvl]
    for lvl in LEVELS
}


class QueryError(ValueError):
    """The identifier cannot be processed; the message names tag, keyword and rule.

    ``kind`` is ``"mismatch"`` (identifier does not match the information model, PS3.4
    C.4.1.1.4 0xA900) or ``"unprocessable"`` (0xC000).
    """

    def __init__(self, message: str, kind: str = "mismatch") -> None:
        super().__init__(message)
        self.kind = kind


def _name(keyword: str) -> str:
    t = Tag(tag_for_keyword(keyword) or 0)
    return f"({t.group:04X},{t.element:04X}) {keyword}"


def _levels_visible(root: str, level: str) -> list[str]:
    """Levels whose attributes may appear at ``level`` (Study Root folds patient into study)."""
    upto = LEVELS[: LEVELS.index(level) + 1]
    return list(upto)


def _values(elem_value: Any) -> list[str]:
    if elem_value is None:
        return []
    if isinstance(elem_value, MultiValue | list | tuple):
        return [str(v) for v in elem_value]
    s = str(elem_value)
    return [s] if s != "" else []


def _has_wildcard(s: str) -> bool:
    return "*" in s or "?" in s


def _like_pattern(value: str) -> str:
    out = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return out.replace("*", "%").replace("?", "_")


def _glob_pattern(value: str) -> str:
    return value.replace("[", "[[]")


def _match(col: Any, vr: str, raw: Any, dialect: str) -> ColumnElement[bool] | None:
    """SQL condition for one matching key (None = universal match)."""
    cond: ColumnElement[bool] | None = _condition(col, vr, raw, dialect)
    return cond


def _condition(col: Any, vr: str, raw: Any, dialect: str) -> Any:
    vals = _values(raw)
    if not vals or vals == ["*"]:
        return None
    if vr == "UI":  # list of UID matching (C.2.2.2.2)
        return col.in_(vals) if len(vals) > 1 else col == vals[0]
    if vr in {"IS", "US", "UL", "SS", "SL"}:
        try:
            ints = [int(v) for v in vals]
        except ValueError:
            raise QueryError(f"not an integer: {vals!r} (PS3.5 {vr})", "unprocessable") from None
        return col.in_(ints) if len(ints) > 1 else col == ints[0]
    if vr in {"DA", "TM", "DT"}:
        conds = [_range(col, v) for v in vals]
        return conds[0] if len(conds) == 1 else _or(conds)
    value = "\\".join(vals)  # multi-valued CS (ImageType) is stored backslash-joined
    if vr == "PN":  # col is the case-folded column (_FOLDED), compared with the folded value
        if _has_wildcard(value):  # served by ix_patients_patient_name_folded
            return col.like(_like_pattern(fold(value)), escape="\\")
        return col == fold(value)
    if _has_wildcard(value):
        if dialect == "sqlite":  # SQLite LIKE ignores case; GLOB does not
            return col.op("GLOB")(_glob_pattern(value))
        return col.like(_like_pattern(value), escape="\\")
    return col == value


def _or(conds: list[ColumnElement[bool]]) -> ColumnElement[bool]:
    return or_(*conds)


def _range(col: Any, value: str) -> Any:
    """Single value or range (C.2.2.2.5): ``A``, ``A-B``, ``-B``, ``A-``; empty values never match."""
    if "-" not in value:
        return col == value
    lo, _, hi = value.partition("-")
    conds = [col != ""]
    if lo:
        conds.append(col >= lo)
    if hi:
        # an upper bound includes everything it is a prefix of ("1230" covers 12:30:59)
        conds.append(col <= hi + "\uffff")
    return and_(*conds)


@dataclass(frozen=True)
class RetrieveItem:
    """One stored instance a retrieve sends."""

    id: int
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    path: str


class Query:
    """A validated C-FIND (or C-MOVE/C-GET) identifier for one information model."""

    def __init__(self, identifier: Dataset, root: str = STUDY_ROOT, retrieve: bool = False,
                 relational: bool = False) -> None:
        """``relational``: no unique keys needed above the level (PS3.4 C.4.1.2.2.2 relational
        queries; QIDO-RS searches such as ``/series`` or ``/instances`` across studies)."""
        if root not in (PATIENT_ROOT, STUDY_ROOT):
            raise ValueError(f"unknown information model root {root!r}")
        self.root = root
        level = str(identifier.get("QueryRetrieveLevel", "") or "").strip().upper()
        if level not in LEVELS:
            raise QueryError(
                f"{_name('QueryRetrieveLevel')}: {level!r} is not one of {', '.join(LEVELS)}"
                " (PS3.4 C.4.1.1.3.1)"
            )
        if root == STUDY_ROOT and level == "PATIENT":
            raise QueryError(
                f"{_name('QueryRetrieveLevel')}: PATIENT level is not in the Study Root "
                "information model (PS3.4 C.6.2)"
            )
        self.level = level
        self.identifier = identifier
        visible = _levels_visible(root, level)
        self.matching: dict[str, Any] = {}
        self.return_keys: list[str] = []  # keywords in identifier order
        self.unsupported: list[int] = []  # tags requested that we return empty
        #: Keys whose value we return, but whose matching value the identifier gave is not matched
        #: (derived counts, SOP Classes in Study) or that we leave out (private attributes).
        self.not_matched: list[int] = []
        for elem in identifier:
            kw = elem.keyword or keyword_for_tag(elem.tag)
            if kw in _SERVICE_KEYS or elem.tag.group == 0x0000:
                continue
            if elem.tag.is_private:
                if not elem.tag.is_private_creator:
                    self.not_matched.append(int(elem.tag))
                continue
            self.return_keys.append(kw)
            matchable = kw in _COLUMNS and _COLUMNS[kw][0] in visible
            if matchable or (kw == "ModalitiesInStudy" and "STUDY" in visible):
                if _values(elem.value):
                    self.matching[kw] = elem.value
            elif kw in _DERIVED and _DERIVED[kw] == level:
                if _values(elem.value):  # returned, but not a matching key (PS3.4 C.4.1.1.4: FF01)
                    self.not_matched.append(int(elem.tag))
            else:
                self.unsupported.append(int(elem.tag))
        self._check_hierarchy(retrieve, relational)

    def _check_hierarchy(self, retrieve: bool, relational: bool = False) -> None:
        """Baseline hierarchical rules (C.4.1.2.2.1 / C.4.2.2.1): unique keys above the level."""
        top = 0 if self.root == PATIENT_ROOT else 1
        above = [] if relational else LEVELS[top : LEVELS.index(self.level)]
        for lvl in above:
            kw = UNIQUE_KEY[lvl]
            vals = _values(self.identifier.get(kw))
            if len(vals) != 1 or _has_wildcard(vals[0]):
                raise QueryError(
                    f"{_name(kw)}: a {self.level} level query in the {self.root.title()} Root model needs "
                    f"a single value of this {lvl} level unique key (PS3.4 C.4.1.2.2.1, baseline hierarchy)"
                )
        if retrieve:
            kw = UNIQUE_KEY[self.level]
            vals = _values(self.identifier.get(kw))
            if not vals or any(_has_wildcard(v) for v in vals):
                raise QueryError(
                    f"{_name(kw)}: a {self.level} level retrieve needs one or more values of the unique key, "
                    "without wildcards (PS3.4 C.4.2.2.1)"
                )

    # -- SQL ---------------------------------------------------------------------------------

    def _base(self, columns: Iterable[Any], dialect: str) -> Select[Any]:
        model: Any = _MODEL[self.level]
        stmt = select(model.id, *columns).select_from(model)
        if self.level == "IMAGE":
            stmt = stmt.join(Series, Instance.series_fk == Series.id)
        if self.level in ("IMAGE", "SERIES"):
            stmt = stmt.join(Study, Series.study_fk == Study.id)
        if self.level in ("IMAGE", "SERIES", "STUDY"):
            stmt = stmt.join(Patient, Study.patient_fk == Patient.id)
        for kw, raw in self.matching.items():
            if kw == "ModalitiesInStudy":
                mods = _values(raw)
                stmt = stmt.where(exists().where(Series.study_fk == Study.id, Series.modality.in_(mods)))
                continue
            col = _FOLDED.get(kw, _COLUMNS[kw][1])
            cond = _match(col, dictionary_VR(kw), raw, dialect)
            if cond is not None:
                stmt = stmt.where(cond)
        return stmt

    def statement(self, dialect: str = "sqlite") -> Select[Any]:
        """The SELECT of matches (level primary key + requested stored columns)."""
        cols = [_COLUMNS[k][1].label(k) for k in self._stored_return_keys()]
        return self._base(cols, dialect)

    def _stored_return_keys(self) -> list[str]:
        visible = _levels_visible(self.root, self.level)
        return [k for k in self.return_keys if k in _COLUMNS and _COLUMNS[k][0] in visible]

    def pages(self, db: Database, page_size: int = 200, offset: int = 0) -> Iterator[list[Dataset]]:
        """Response identifiers, a page at a time, each page in its own short transaction.

        ``offset`` skips that many matches first (QIDO-RS ``offset``), in SQL.
        """
        model = _MODEL[self.level]
        dialect = db.engine.dialect.name
        stmt = self.statement(dialect).order_by(model.id).limit(page_size)
        last = 0
        while True:
            with db.read() as s:
                page = stmt.where(model.id > last)
                if offset and last == 0:
                    page = page.offset(offset)
                rows = s.execute(page).all()
                if not rows:
                    return
                derived = self._derived(s, [r[0] for r in rows])
            last = rows[-1][0]
            yield [self._response(row, derived) for row in rows]
            if len(rows) < page_size:
                return

    def _derived(self, s: Any, ids: list[int]) -> dict[str, dict[int, Any]]:
        wanted = [k for k in self.return_keys if k in _DERIVED and _DERIVED[k] == self.level]
        out: dict[str, dict[int, Any]] = {}
        if not wanted:
            return out
        # Instances are counted per series by a correlated subquery (an index lookup on
        # instances.series_fk per series): cheap whatever the planner's statistics say.
        n_inst = (
            select(func.count(Instance.id))
            .where(Instance.series_fk == Series.id)
            .correlate(Series)
            .scalar_subquery()
        )
        if self.level == "PATIENT":
            per = (
                select(
                    Study.patient_fk.label("k"),
                    Study.id.label("st"),
                    Series.id.label("se"),
                    n_inst.label("n"),
                )
                .select_from(Study)
                .outerjoin(Series, Series.study_fk == Study.id)
                .where(Study.patient_fk.in_(ids))
                .subquery()
            )
            q = select(
                per.c.k, func.count(func.distinct(per.c.st)), func.count(per.c.se), func.sum(per.c.n)
            ).group_by(per.c.k)
            rows = s.execute(q).all()
            out["NumberOfPatientRelatedStudies"] = {r[0]: int(r[1]) for r in rows}
            out["NumberOfPatientRelatedSeries"] = {r[0]: int(r[2]) for r in rows}
            out["NumberOfPatientRelatedInstances"] = {r[0]: int(r[3] or 0) for r in rows}
        elif self.level == "STUDY":
            if {"NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"} & set(wanted):
                per = (
                    select(Series.study_fk.label("k"), n_inst.label("n"))
                    .where(Series.study_fk.in_(ids))
                    .subquery()
                )
                q = select(per.c.k, func.count(), func.sum(per.c.n)).group_by(per.c.k)
                rows = s.execute(q).all()
                out["NumberOfStudyRelatedSeries"] = {r[0]: int(r[1]) for r in rows}
                out["NumberOfStudyRelatedInstances"] = {r[0]: int(r[2] or 0) for r in rows}
            if "ModalitiesInStudy" in wanted:
                q = (
                    select(Series.study_fk, Series.modality)
                    .where(Series.study_fk.in_(ids))
                    .group_by(Series.study_fk, Series.modality)
                    .order_by(Series.study_fk, Series.modality)
                )
                out["ModalitiesInStudy"] = _grouped(s.execute(q).all())
            if "SOPClassesInStudy" in wanted:
                q = (
                    select(Series.study_fk, Instance.sop_class_uid)
                    .join(Instance, Instance.series_fk == Series.id)
                    .where(Series.study_fk.in_(ids))
                    .group_by(Series.study_fk, Instance.sop_class_uid)
                    .order_by(Series.study_fk, Instance.sop_class_uid)
                )
                out["SOPClassesInStudy"] = _grouped(s.execute(q).all())
        elif self.level == "SERIES":
            q = (
                select(Instance.series_fk, func.count(Instance.id))
                .where(Instance.series_fk.in_(ids))
                .group_by(Instance.series_fk)
            )
            out["NumberOfSeriesRelatedInstances"] = dict(s.execute(q).all())
        return out

    def _response(self, row: Any, derived: dict[str, dict[int, Any]]) -> Dataset:
        ds = Dataset()
        ds.QueryRetrieveLevel = self.level
        m = row._mapping
        for kw in self.return_keys:
            if kw in m:
                value = m[kw]
            elif kw in derived:
                value = derived[kw].get(row[0], [] if kw in ("ModalitiesInStudy", "SOPClassesInStudy") else 0)
            elif kw not in _TAG_VR:
                continue  # an unsupported key: added empty below
            else:
                value = None
            _set(ds, kw, value)
        for tag in self.unsupported:
            if tag not in ds:
                ds.add_new(tag, dictionary_VR(tag) if _known(tag) else "UN", None)
        return ds

    # -- retrieve ----------------------------------------------------------------------------

    def instances(self, db: Database) -> list[RetrieveItem]:
        """The stored instances under the matched entities, in series/instance order."""
        dialect = db.engine.dialect.name
        matched = self._base([], dialect).subquery()
        model = _MODEL[self.level]
        stmt = select(
            Instance.id,
            Instance.sop_class_uid,
            Instance.sop_instance_uid,
            Instance.transfer_syntax_uid,
            Instance.path,
        ).select_from(Instance)
        if self.level == "IMAGE":
            stmt = stmt.where(Instance.id.in_(select(matched.c.id)))
        else:
            stmt = stmt.join(Series, Instance.series_fk == Series.id)
            if self.level == "SERIES":
                stmt = stmt.where(Series.id.in_(select(matched.c.id)))
            else:
                stmt = stmt.join(Study, Series.study_fk == Study.id)
                key = Study.id if model is Study else Study.patient_fk
                stmt = stmt.where(key.in_(select(matched.c.id)))
        stmt = stmt.order_by(
            Instance.series_fk, Instance.in_concatenation_number, Instance.instance_number, Instance.id
        )
        with db.read() as s:
            return [RetrieveItem(*r) for r in s.execute(stmt).all()]


def _grouped(rows: Iterable[tuple[int, str]]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = defaultdict(list)
    for key, value in rows:
        if value:
            out[key].append(value)
    return dict(out)


def _known(tag: int) -> bool:
    try:
        dictionary_VR(tag)
        return True
    except KeyError:
        return False


def _set(ds: Dataset, kw: str, value: Any) -> None:
    """Add one return key (values come from our own index: conversion yes, re-validation no)."""
    tag, vr = _TAG_VR[kw]
    if value == "":
        value = None
    elif vr == "CS" and isinstance(value, str) and "\\" in value:
        value = value.split("\\")
    ds[tag] = DataElement(tag, vr, value, validation_mode=config.IGNORE)


def needs_unicode(ds: Dataset) -> bool:
    """Whether a response carries text outside ASCII (it then needs a Specific Character Set)."""
    for elem in ds:
        if elem.VR in {"PN", "LO", "SH", "LT", "ST", "UT", "UC"} and elem.value is not None:
            text = "\\".join(map(str, elem.value)) if isinstance(elem.value, MultiValue) else str(elem.value)
            if not text.isascii():
                return True
    return False
