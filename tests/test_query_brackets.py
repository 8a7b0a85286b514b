"""Wildcard matching treats ``[`` as a literal character on every database (SQLite matches case-
sensitively with GLOB, where ``[…]`` is a character class unless escaped as ``[[]``)."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset

from perfnode.archive.db import Database
from perfnode.archive.models import Patient, Study
from perfnode.archive.query import STUDY_ROOT, Query

ACCESSIONS = {"1.9.1": "A[1]23", "1.9.2": "A123", "1.9.3": "A[12]", "1.9.4": "A2", "1.9.5": "a[1]23"}


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request, tmp_path_factory):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('b') / 'index.sqlite'}"
    else:
        url = request.getfixturevalue("pg_server").createdb("bracket_tests")
    database = Database(url)
    with database.session() as s:
        p = Patient(patient_id="P[1]", patient_name="Bracket^Test")
        s.add_all([Study(patient=p, study_instance_uid=uid, accession_number=acc, study_date="20240101")
                   for uid, acc in ACCESSIONS.items()])
    yield database
    database.dispose()


def studies(db: Database, **keys: str) -> list[str]:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = ""
    for k, v in keys.items():
        setattr(ds, k, v)
    return sorted(str(r.StudyInstanceUID) for page in Query(ds, STUDY_ROOT).pages(db) for r in page)


@pytest.mark.parametrize(("pattern", "expected"), [
    ("A[1]*", ["1.9.1"]),           # not A123 (a GLOB class [1] would match it), not a[1]23 (case)
    ("A[1*", ["1.9.1", "1.9.3"]),   # an unclosed bracket is just a character
    ("A[12]", ["1.9.3"]),           # no wildcard: exact match
    ("A[12]*", ["1.9.3"]),          # not A123, not A2
    ("?[1]23", ["1.9.1", "1.9.5"]),
    ("A?1*", ["1.9.1", "1.9.3"]),   # '?' still matches one character, here the '['
])
def test_brackets_are_literal_in_wildcard_matching(db, pattern, expected):
    assert studies(db, AccessionNumber=pattern) == expected


def test_brackets_in_a_patient_level_key(db):
    assert studies(db, PatientID="P[1]*") == sorted(ACCESSIONS)
    assert studies(db, PatientID="P1*") == []
