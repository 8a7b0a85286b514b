"""C-FIND identifier → SQL (perfnode.archive.query) on a real index: SQLite, and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, EnhancedMRImageStorage, ExplicitVRLittleEndian

from perfnode.archive.db import Database
from perfnode.archive.models import Instance, Patient, Series, Study
from perfnode.archive.query import PATIENT_ROOT, STUDY_ROOT, Query, QueryError


def populate(db: Database) -> None:
    """Three patients, five studies, series with a two-part concatenation."""
    now = datetime(2024, 1, 1, tzinfo=UTC)

    def inst(series: Series, uid: str, cls: str = CTImageStorage, **kw) -> Instance:
        return Instance(
            series=series,
            sop_instance_uid=uid,
            sop_class_uid=cls,
            transfer_syntax_uid=ExplicitVRLittleEndian,
            path=f"objects/{uid}.dcm",
            size_bytes=10,
            sha256="0" * 64,
            received_at=now,
            **kw,
        )

    with db.session() as s:
        p1 = Patient(
            patient_id="PID1", patient_name="Müller^Hans", patient_birth_date="19700101", patient_sex="M"
        )
        p2 = Patient(patient_id="PID2", patient_name="MULLER^Anna", patient_sex="F")
        p3 = Patient(patient_id="pid3", patient_name="Doe^John")
        st1 = Study(
            patient=p1,
            study_instance_uid="1.2.1",
            study_date="20240105",
            study_time="101500",
            accession_number="A100%",
            study_description="CT perfusion",
        )
        st2 = Study(patient=p1, study_instance_uid="1.2.2", study_date="20240210", accession_number="A1000")
        st3 = Study(patient=p2, study_instance_uid="1.2.3", study_date="20231231", accession_number="B_1")
        st4 = Study(patient=p3, study_instance_uid="1.2.4", study_date="", accession_number="BX1")
        se1 = Series(
            study=st1,
            series_instance_uid="1.3.1",
            modality="CT",
            series_number=1,
            series_description="perfusion",
        )
        se2 = Series(study=st1, series_instance_uid="1.3.2", modality="SR", series_number=2)
        se3 = Series(study=st2, series_instance_uid="1.3.3", modality="MR", series_number=1)
        se4 = Series(study=st3, series_instance_uid="1.3.4", modality="CT", series_number=7)
        s.add_all([p1, p2, p3, st1, st2, st3, st4, se1, se2, se3, se4])
        s.add_all(
            [
                inst(se1, "1.4.1", instance_number=1, image_type="ORIGINAL\\PRIMARY\\AXIAL"),
                inst(se1, "1.4.2", instance_number=2, image_type="DERIVED\\SECONDARY"),
                inst(se2, "1.4.3", cls="1.2.840.10008.5.1.4.1.1.88.22"),
                inst(
                    se3,
                    "1.4.4",
                    cls=EnhancedMRImageStorage,
                    number_of_frames=40,
                    concatenation_uid="1.5.1",
                    in_concatenation_number=1,
                    in_concatenation_total_number=2,
                    concatenation_frame_offset_number=0,
                    image_type="ORIGINAL\\PRIMARY\\PERFUSION\\NONE",
                ),
                inst(
                    se3,
                    "1.4.5",
                    cls=EnhancedMRImageStorage,
                    number_of_frames=20,
                    concatenation_uid="1.5.1",
                    in_concatenation_number=2,
                    in_concatenation_total_number=2,
                    concatenation_frame_offset_number=40,
                    image_type="ORIGINAL\\PRIMARY\\PERFUSION\\NONE",
                ),
                inst(se4, "1.4.6"),
            ]
        )


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request, tmp_path_factory):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('q') / 'index.sqlite'}"
    else:
        url = request.getfixturevalue("pg_server").createdb("query_tests")
    database = Database(url)
    populate(database)
    yield database
    database.dispose()


def ident(level: str, **keys) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for k, v in keys.items():
        setattr(ds, k, v)
    return ds


def find(db: Database, level: str, root: str = STUDY_ROOT, page_size: int = 200, **keys) -> list[Dataset]:
    return [r for page in Query(ident(level, **keys), root).pages(db, page_size) for r in page]


def uids(results: list[Dataset], kw: str = "StudyInstanceUID") -> list[str]:
    return sorted(str(r.get(kw)) for r in results)


def test_single_value_and_universal_matching(db):
    assert uids(find(db, "STUDY", PatientID="PID1", StudyInstanceUID="")) == ["1.2.1", "1.2.2"]
    assert uids(find(db, "STUDY", StudyInstanceUID="")) == ["1.2.1", "1.2.2", "1.2.3", "1.2.4"]
    assert uids(find(db, "STUDY", StudyInstanceUID="", PatientID="*")) == ["1.2.1", "1.2.2", "1.2.3", "1.2.4"]
    assert find(db, "STUDY", PatientID="NOPE", StudyInstanceUID="") == []


def test_wildcards_are_case_sensitive_except_person_names(db):
    # PatientID (LO) matches exactly: "PID*" does not match "pid3"
    assert uids(find(db, "STUDY", PatientID="PID*", StudyInstanceUID="")) == ["1.2.1", "1.2.2", "1.2.3"]
    assert uids(find(db, "STUDY", PatientID="?id3", StudyInstanceUID="")) == ["1.2.4"]
    # PN matching ignores case
    assert uids(find(db, "STUDY", PatientName="muller*", StudyInstanceUID="")) == ["1.2.3"]
    assert uids(find(db, "STUDY", PatientName="Mül*", StudyInstanceUID="")) == ["1.2.1", "1.2.2"]
    assert uids(find(db, "STUDY", PatientName="doe^john", StudyInstanceUID="")) == ["1.2.4"]
    assert uids(find(db, "STUDY", PatientName="M?LLER*", StudyInstanceUID="")) == ["1.2.1", "1.2.2", "1.2.3"]


def test_sql_special_characters_are_literal(db):
    assert uids(find(db, "STUDY", AccessionNumber="A100%", StudyInstanceUID="")) == ["1.2.1"]
    assert uids(find(db, "STUDY", AccessionNumber="A1*%", StudyInstanceUID="")) == ["1.2.1"]
    assert uids(find(db, "STUDY", AccessionNumber="B_*", StudyInstanceUID="")) == ["1.2.3"]  # not BX1


def test_date_and_time_ranges(db):
    assert uids(find(db, "STUDY", StudyDate="20240101-20240131", StudyInstanceUID="")) == ["1.2.1"]
    assert uids(find(db, "STUDY", StudyDate="-20231231", StudyInstanceUID="")) == ["1.2.3"]  # not empty date
    assert uids(find(db, "STUDY", StudyDate="20240101-", StudyInstanceUID="")) == ["1.2.1", "1.2.2"]
    assert uids(find(db, "STUDY", StudyDate="20240210", StudyInstanceUID="")) == ["1.2.2"]
    assert uids(find(db, "STUDY", StudyTime="1000-1015", StudyInstanceUID="")) == [
        "1.2.1"
    ]  # 1015 covers 101500
    assert uids(find(db, "STUDY", StudyTime="1016-", StudyInstanceUID="")) == []


def test_uid_list_matching(db):
    assert uids(find(db, "STUDY", StudyInstanceUID=["1.2.1", "1.2.3", "9.9"])) == ["1.2.1", "1.2.3"]
    res = find(db, "IMAGE", StudyInstanceUID="1.2.1", SeriesInstanceUID="1.3.1", SOPInstanceUID=["1.4.2"])
    assert uids(res, "SOPInstanceUID") == ["1.4.2"]


def test_returns_exactly_the_requested_keys(db):
    q = Query(
        ident("STUDY", PatientID="PID2", StudyInstanceUID="", StudyDate="", PatientWeight=""), STUDY_ROOT
    )
    [res] = [r for p in q.pages(db) for r in p]
    assert sorted(e.keyword for e in res) == [
        "PatientID",
        "PatientWeight",
        "QueryRetrieveLevel",
        "StudyDate",
        "StudyInstanceUID",
    ]
    assert res.StudyDate == "20231231" and res.PatientID == "PID2"
    assert res.PatientWeight is None  # unknown key: returned empty
    assert q.unsupported == [0x00101030]


def test_derived_study_keys(db):
    [r1, r2, r3, r4] = sorted(
        find(
            db,
            "STUDY",
            StudyInstanceUID="",
            NumberOfStudyRelatedSeries=None,
            NumberOfStudyRelatedInstances=None,
            ModalitiesInStudy="",
            SOPClassesInStudy="",
        ),
        key=lambda r: r.StudyInstanceUID,
    )
    assert (r1.NumberOfStudyRelatedSeries, r1.NumberOfStudyRelatedInstances) == (2, 3)
    assert list(r1.ModalitiesInStudy) == ["CT", "SR"]
    assert sorted(r1.SOPClassesInStudy) == sorted([CTImageStorage, "1.2.840.10008.5.1.4.1.1.88.22"])
    assert (r2.NumberOfStudyRelatedSeries, r2.NumberOfStudyRelatedInstances) == (1, 2)
    assert r2.ModalitiesInStudy == "MR" and r2.SOPClassesInStudy == EnhancedMRImageStorage
    assert (r4.NumberOfStudyRelatedSeries, r4.NumberOfStudyRelatedInstances) == (0, 0)
    assert r4.ModalitiesInStudy is None or list(r4.ModalitiesInStudy) == []


def test_modalities_in_study_is_a_matching_key(db):
    assert uids(find(db, "STUDY", ModalitiesInStudy="MR", StudyInstanceUID="")) == ["1.2.2"]
    assert uids(find(db, "STUDY", ModalitiesInStudy=["SR", "MR"], StudyInstanceUID="")) == ["1.2.1", "1.2.2"]


def test_patient_level_counts(db):
    [res] = find(
        db,
        "PATIENT",
        PATIENT_ROOT,
        PatientID="PID1",
        PatientName="",
        NumberOfPatientRelatedStudies=None,
        NumberOfPatientRelatedSeries=None,
        NumberOfPatientRelatedInstances=None,
    )
    assert res.PatientName == "Müller^Hans"
    assert (
        res.NumberOfPatientRelatedStudies,
        res.NumberOfPatientRelatedSeries,
        res.NumberOfPatientRelatedInstances,
    ) == (2, 3, 5)


def test_series_level(db):
    res = find(
        db,
        "SERIES",
        StudyInstanceUID="1.2.1",
        SeriesInstanceUID="",
        Modality="",
        NumberOfSeriesRelatedInstances=None,
        SeriesNumber=None,
    )
    assert [
        (r.SeriesInstanceUID, r.Modality, r.SeriesNumber, r.NumberOfSeriesRelatedInstances) for r in res
    ] == [("1.3.1", "CT", 1, 2), ("1.3.2", "SR", 2, 1)]
    assert uids(
        find(db, "SERIES", StudyInstanceUID="1.2.1", SeriesInstanceUID="", SeriesNumber=2),
        "SeriesInstanceUID",
    ) == ["1.3.2"]
    # Patient Root needs the patient's ID above the study
    res = find(db, "SERIES", PATIENT_ROOT, PatientID="PID2", StudyInstanceUID="1.2.3", SeriesInstanceUID="")
    assert uids(res, "SeriesInstanceUID") == ["1.3.4"]


def test_enhanced_image_level_keys(db):
    res = find(
        db,
        "IMAGE",
        StudyInstanceUID="1.2.2",
        SeriesInstanceUID="1.3.3",
        SOPInstanceUID="",
        NumberOfFrames=None,
        ImageType="",
        ConcatenationUID="",
        InConcatenationNumber=None,
        ConcatenationFrameOffsetNumber=None,
        InConcatenationTotalNumber=None,
    )
    got = sorted(
        (
            r.SOPInstanceUID,
            r.NumberOfFrames,
            list(r.ImageType),
            r.ConcatenationUID,
            r.InConcatenationNumber,
            r.ConcatenationFrameOffsetNumber,
            r.InConcatenationTotalNumber,
        )
        for r in res
    )
    it = ["ORIGINAL", "PRIMARY", "PERFUSION", "NONE"]
    assert got == [("1.4.4", 40, it, "1.5.1", 1, 0, 2), ("1.4.5", 20, it, "1.5.1", 2, 40, 2)]
    res = find(
        db,
        "IMAGE",
        StudyInstanceUID="1.2.2",
        SeriesInstanceUID="1.3.3",
        SOPInstanceUID="",
        InConcatenationNumber=2,
    )
    assert uids(res, "SOPInstanceUID") == ["1.4.5"]
    res = find(
        db,
        "IMAGE",
        StudyInstanceUID="1.2.1",
        SeriesInstanceUID="1.3.1",
        SOPInstanceUID="",
        ImageType=["DERIVED", "*"],
    )
    assert uids(res, "SOPInstanceUID") == ["1.4.2"]


def test_hierarchy_rules_name_the_attribute():
    with pytest.raises(QueryError, match=r"\(0010,0020\) PatientID.*STUDY level.*Patient Root"):
        Query(ident("STUDY", StudyInstanceUID=""), PATIENT_ROOT)
    with pytest.raises(QueryError, match=r"\(0020,000D\) StudyInstanceUID"):
        Query(ident("SERIES", SeriesInstanceUID=""), STUDY_ROOT)
    with pytest.raises(QueryError, match=r"\(0020,000D\) StudyInstanceUID"):
        Query(
            ident("IMAGE", StudyInstanceUID="1.2.*", SeriesInstanceUID="1.3", SOPInstanceUID=""), STUDY_ROOT
        )
    with pytest.raises(QueryError, match=r"\(0008,0052\) QueryRetrieveLevel"):
        Query(ident("FOO"), STUDY_ROOT)
    with pytest.raises(QueryError, match=r"PATIENT level is not in the Study Root"):
        Query(ident("PATIENT", PatientID=""), STUDY_ROOT)
    with pytest.raises(QueryError, match=r"\(0020,000E\) SeriesInstanceUID.*retrieve"):
        Query(ident("SERIES", StudyInstanceUID="1.2.1", SeriesInstanceUID=""), STUDY_ROOT, retrieve=True)


def test_matching_is_in_sql():
    q = Query(ident("STUDY", PatientID="PID*", PatientName="m*", StudyDate="2024-", StudyInstanceUID=""))
    sql = str(q.statement("sqlite").compile(compile_kwargs={"literal_binds": True}))
    assert "GLOB 'PID*'" in sql and "patients.patient_name_folded LIKE 'm%'" in sql
    assert "studies.study_date >= '2024'" in sql
    sql = str(q.statement("postgresql").compile(compile_kwargs={"literal_binds": True}))
    assert "patients.patient_id LIKE 'PID%'" in sql


def test_pages_cover_every_match_once(db):
    one_by_one = find(
        db, "IMAGE", StudyInstanceUID="1.2.1", SeriesInstanceUID="1.3.1", SOPInstanceUID="", page_size=1
    )
    assert [r.SOPInstanceUID for r in one_by_one] == ["1.4.1", "1.4.2"]


def test_retrieve_concatenation(db):
    series = Query(ident("SERIES", StudyInstanceUID="1.2.2", SeriesInstanceUID="1.3.3"), retrieve=True)
    assert [i.sop_instance_uid for i in series.instances(db)] == ["1.4.4", "1.4.5"]
    part = Query(
        ident("IMAGE", StudyInstanceUID="1.2.2", SeriesInstanceUID="1.3.3", SOPInstanceUID="1.4.5"),
        retrieve=True,
    )
    [item] = part.instances(db)
    assert (item.sop_instance_uid, item.sop_class_uid, item.path) == (
        "1.4.5",
        EnhancedMRImageStorage,
        "objects/1.4.5.dcm",
    )
    study = Query(ident("STUDY", StudyInstanceUID=["1.2.1", "1.2.3"]), retrieve=True)
    assert sorted(i.sop_instance_uid for i in study.instances(db)) == ["1.4.1", "1.4.2", "1.4.3", "1.4.6"]
    patient = Query(ident("PATIENT", PatientID="PID1"), PATIENT_ROOT, retrieve=True)
    assert len(patient.instances(db)) == 5


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def names_db(request, tmp_path_factory):
    """Patients with Cyrillic, Greek and Japanese names (PostgreSQL in the C locale, like SQLite,
    lowercases only ASCII with lower())."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('n') / 'index.sqlite'}"
    else:
        url = request.getfixturevalue("pg_server").createdb("name_tests")
    database = Database(url)
    with database.session() as s:
        for pid, name, doctor in (("RU1", "Иванов^Иван", "ШМИДТ^ОЛЬГА"), ("RU2", "Петров^Пётр", ""),
                                  ("GR", "ΠΑΠΑΔΟΠΟΥΛΟΣ^ΓΙΩΡΓΟΣ", ""), ("JP", "Yamada^Tarou=山田^太郎", ""),
                                  ("EN", "Ivanovich^John", "")):
            s.add(Study(patient=Patient(patient_id=pid, patient_name=name), study_instance_uid=f"9.{pid}",
                        referring_physician_name=doctor))
    yield database
    database.dispose()


def test_person_names_match_case_insensitively_beyond_ascii(names_db):
    def pids(**keys) -> list[str]:
        return sorted(str(r.PatientID) for r in find(names_db, "STUDY", PatientID="", StudyInstanceUID="",
                                                     **keys))

    assert pids(PatientName="иванов*") == ["RU1"]  # Cyrillic capital И folded
    assert pids(PatientName="ИВАНОВ^ИВАН") == ["RU1"]  # exact, other case
    assert pids(PatientName="ПЕТРОВ^ПЁТР") == ["RU2"]  # Ё/ё
    assert pids(PatientName="παπαδοπουλος*") == ["GR"]  # final sigma ς matches Σ
    assert pids(PatientName="*山田*") == ["JP"]
    assert pids(PatientName="Ivanov*") == ["EN"]  # a transliteration is another name
    assert pids(ReferringPhysicianName="шмидт*") == ["RU1"]
    [r] = find(names_db, "STUDY", PatientName="иванов*", StudyInstanceUID="")
    assert r.PatientName == "Иванов^Иван"  # returned as stored, not folded


NAMES_BY_CHARSET = [
    ("ISO_IR 100", "Müller^Jörg"), ("ISO_IR 101", "Dvořák^Antonín"), ("ISO_IR 109", "Ħal^Ġorġ"),
    ("ISO_IR 110", "Ģirts^Ķēniņš"), ("ISO_IR 144", "Иванов^Иван"), ("ISO_IR 126", "Παπαδόπουλος^Γιώργος"),
    ("ISO_IR 127", "قباني^لنزار"), ("ISO_IR 138", "שרון^דבורה"), ("ISO_IR 148", "Öztürk^Şükrü"),
    ("ISO_IR 192", "王^小東"), ("\\ISO 2022 IR 87", "Yamada^Tarou=山田^太郎"),
    ("\\ISO 2022 IR 149", "Hong^Gildong=洪^吉洞=홍^길동"),
]


@pytest.mark.parametrize(("charset", "name"), NAMES_BY_CHARSET)
def test_identifiers_in_every_character_set_decode_and_answer_in_it(charset, name):
    """An identifier as it comes off the wire in each Specific Character Set: the matching value is the
    name, and the response goes back in the same set, bytes that decode to the name again."""
    from pydicom import dcmread
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    from perfnode.net.find import response_charset

    terms = charset.split("\\") if "\\" in charset else charset
    ds = ident("STUDY", SpecificCharacterSet=terms, PatientName=name, StudyInstanceUID="")
    wire = DicomBytesIO()
    wire.is_little_endian, wire.is_implicit_VR = True, False
    write_dataset(wire, ds)
    received = dcmread(DicomBytesIO(wire.getvalue()), force=True)
    assert Query(received).matching["PatientName"] == name
    answer = ident("STUDY", PatientName=name)
    answer.SpecificCharacterSet = response_charset(received.SpecificCharacterSet, answer)
    assert answer.SpecificCharacterSet == terms
    out = DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, False
    write_dataset(out, answer)
    assert str(dcmread(DicomBytesIO(out.getvalue()), force=True).PatientName) == name
