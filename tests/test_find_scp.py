"""C-FIND SCP end to end: DCMTK findscu and pynetdicom against a running ``perfnode serve``."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

from perfnode.archive.db import Database
from perfnode.archive.models import Instance, Patient, Series, Study
from tests.nodes import need, run
from tests.test_query_data import load, series_of


def findscu(
    node, tmp: Path, *keys: str, root: str = "-S", extra: tuple[str, ...] = ()
) -> tuple[list[Dataset], str]:
    out = tmp / f"rsp{len(list(tmp.glob('rsp*')))}"
    out.mkdir(parents=True)
    cmd = [
        need("findscu"),
        "-v",
        root,
        "-aec",
        node.ae_title,
        "127.0.0.1",
        str(node.port),
        "-X",
        "-od",
        str(out),
        *extra,
    ]
    for k in keys:
        cmd += ["-k", k]
    res = run(cmd, timeout=60)
    return [dcmread(p) for p in sorted(out.glob("rsp*.dcm"))], res.stdout + res.stderr


@pytest.fixture
def loaded(node, tmp_path):
    load(
        node, series_of("PA", "Müller^Jörg", "1.2.3.1", "1.2.3.1.1", 3, charset="ISO_IR 100"), tmp_path / "a"
    )
    load(
        node,
        series_of("PA", "Müller^Jörg", "1.2.3.1", "1.2.3.1.2", 2, charset="ISO_IR 100", modality="MR"),
        tmp_path / "b",
    )
    load(node, series_of("PB", "Doe^Jane", "1.2.3.2", "1.2.3.2.1", 1, study_date="20230101"), tmp_path / "c")
    return node


def test_findscu_study_root_all_levels(loaded, tmp_path):
    res, log = findscu(
        loaded,
        tmp_path,
        "QueryRetrieveLevel=STUDY",
        "StudyInstanceUID",
        "PatientID=PA",
        "StudyDate",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
        "ModalitiesInStudy",
        "PatientWeight",
    )
    assert "Pending: WarningUnsupportedOptionalKeys" in log  # PatientWeight is not supported: 0xFF01
    [r] = res
    assert r.StudyInstanceUID == "1.2.3.1" and r.StudyDate == "20240105"
    assert (r.NumberOfStudyRelatedSeries, r.NumberOfStudyRelatedInstances) == (2, 5)
    assert list(r.ModalitiesInStudy) == ["CT", "MR"]
    assert "PatientWeight" in r and r.PatientWeight is None
    assert r.RetrieveAETitle == loaded.ae_title and r.QueryRetrieveLevel == "STUDY"

    res, _ = findscu(loaded, tmp_path, "QueryRetrieveLevel=STUDY", "StudyInstanceUID", "StudyDate=-20231231")
    assert [r.StudyInstanceUID for r in res] == ["1.2.3.2"]

    res, _ = findscu(
        loaded,
        tmp_path,
        "QueryRetrieveLevel=SERIES",
        "StudyInstanceUID=1.2.3.1",
        "SeriesInstanceUID",
        "Modality",
        "NumberOfSeriesRelatedInstances",
    )
    assert sorted((r.SeriesInstanceUID, r.Modality, r.NumberOfSeriesRelatedInstances) for r in res) == [
        ("1.2.3.1.1", "CT", 3),
        ("1.2.3.1.2", "MR", 2),
    ]

    res, _ = findscu(
        loaded,
        tmp_path,
        "QueryRetrieveLevel=IMAGE",
        "StudyInstanceUID=1.2.3.1",
        "SeriesInstanceUID=1.2.3.1.1",
        "SOPInstanceUID",
        "InstanceNumber=2",
        "ImageType",
        "SOPClassUID",
    )
    [r] = res
    assert (r.SOPInstanceUID, r.InstanceNumber, list(r.ImageType)) == (
        "1.2.3.1.1.2",
        2,
        ["ORIGINAL", "PRIMARY", "AXIAL"],
    )


def test_findscu_ff01_for_keys_returned_but_not_matched_and_the_log_counts_queries(loaded, tmp_path):
    """PS3.4 C.4.1.1.4: FF01 when an optional key is not supported for existence *or matching*: a
    matching value on a derived count is not matched (all studies of PA answer), so FF00 would lie.
    The association's log line counts the C-FIND (not "no requests")."""
    res, log = findscu(loaded, tmp_path, "QueryRetrieveLevel=STUDY", "StudyInstanceUID", "PatientID=PA",
                       "NumberOfStudyRelatedInstances=99", "InstanceAvailability")
    [r] = res
    assert "Pending: WarningUnsupportedOptionalKeys" in log and "(Pending)" not in log
    assert r.NumberOfStudyRelatedInstances == 5 and r.InstanceAvailability == "ONLINE"
    res, log = findscu(loaded, tmp_path, "QueryRetrieveLevel=STUDY", "StudyInstanceUID", "PatientID=PA")
    assert len(res) == 1 and "(Pending)" in log and "WarningUnsupportedOptionalKeys" not in log
    assert loaded.logged("FINDSCU@127.0.0.1")
    assert loaded.logged("C-FIND 1, matches 1")
    assert not any("FINDSCU" in line and "no requests" in line for line in loaded.output().splitlines())


def test_findscu_patient_root(loaded, tmp_path):
    res, _ = findscu(
        loaded,
        tmp_path,
        "QueryRetrieveLevel=PATIENT",
        "PatientID",
        "PatientName",
        "NumberOfPatientRelatedStudies",
        "NumberOfPatientRelatedInstances",
        root="-P",
    )
    got = sorted(
        (r.PatientID, r.NumberOfPatientRelatedStudies, r.NumberOfPatientRelatedInstances) for r in res
    )
    assert got == [("PA", 1, 5), ("PB", 1, 1)]
    res, _ = findscu(
        loaded, tmp_path, "QueryRetrieveLevel=STUDY", "PatientID=PB", "StudyInstanceUID", root="-P"
    )
    assert [r.StudyInstanceUID for r in res] == ["1.2.3.2"]
    # Patient Root below PATIENT level needs the Patient ID: 0xA900 naming the attribute
    res, log = findscu(loaded, tmp_path, "QueryRetrieveLevel=STUDY", "StudyInstanceUID", root="-P")
    assert res == [] and "DataSetDoesNotMatchSOPClass" in log


def test_specific_character_sets(loaded, tmp_path):
    # UTF-8 request → UTF-8 response
    res, _ = findscu(
        loaded,
        tmp_path,
        "QueryRetrieveLevel=STUDY",
        "SpecificCharacterSet=ISO_IR 192",
        "PatientName=Mü*",
        "StudyInstanceUID",
    )
    [r] = res
    assert r.SpecificCharacterSet == "ISO_IR 192" and r.PatientName == "Müller^Jörg"
    assert "Müller^Jörg".encode() in (tmp_path / "rsp0" / "rsp0001.dcm").read_bytes()
    # Latin-1 requested → Latin-1 response bytes
    res, _ = findscu(
        loaded,
        tmp_path,
        "QueryRetrieveLevel=STUDY",
        "SpecificCharacterSet=ISO_IR 100",
        "PatientName",
        "StudyInstanceUID=1.2.3.1",
    )
    [r] = res
    assert r.SpecificCharacterSet == "ISO_IR 100" and r.PatientName == "Müller^Jörg"
    assert "Müller^Jörg".encode("latin-1") in (tmp_path / "rsp1" / "rsp0001.dcm").read_bytes()
    # no character set asked for and non-ASCII text → UTF-8 declared
    res, _ = findscu(loaded, tmp_path, "QueryRetrieveLevel=STUDY", "PatientName", "StudyInstanceUID=1.2.3.1")
    assert res[0].SpecificCharacterSet == "ISO_IR 192" and res[0].PatientName == "Müller^Jörg"
    # pure ASCII answers need no Specific Character Set
    res, _ = findscu(loaded, tmp_path, "QueryRetrieveLevel=STUDY", "PatientName", "StudyInstanceUID=1.2.3.2")
    assert "SpecificCharacterSet" not in res[0] and res[0].PatientName == "Doe^Jane"


def many_rows(url: str, n: int) -> None:
    """``n`` index rows in one series (no files needed to answer C-FIND)."""
    db = Database(url)
    now = datetime(2024, 1, 1, tzinfo=UTC)
    with db.session() as s:
        series = Series(
            study=Study(patient=Patient(patient_id="MANY"), study_instance_uid="1.9"),
            series_instance_uid="1.9.1",
            modality="MR",
        )
        s.add(series)
        s.add_all(
            Instance(
                series=series,
                sop_instance_uid=f"1.9.1.{i}",
                sop_class_uid="1.2.3",
                path="x",
                transfer_syntax_uid="1.2.840.10008.1.2.1",
                size_bytes=0,
                sha256="",
                received_at=now,
            )
            for i in range(n)
        )
    db.dispose()


def test_cancel_stops_a_running_query(node, tmp_path):
    many_rows(node.database_url, 3000)
    ae = AE(ae_title="CANCELSCU")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", node.port, ae_title=node.ae_title)
    assert assoc.is_established
    q = Dataset()
    q.QueryRetrieveLevel, q.StudyInstanceUID, q.SeriesInstanceUID, q.SOPInstanceUID = (
        "IMAGE",
        "1.9",
        "1.9.1",
        "",
    )
    statuses = []
    cx = assoc.accepted_contexts[0].context_id
    for status, _ in assoc.send_c_find(q, StudyRootQueryRetrieveInformationModelFind, msg_id=7):
        statuses.append(int(status.Status))
        if len(statuses) == 5:
            assoc.send_c_cancel(7, cx)
    assoc.release()
    assert statuses[-1] == 0xFE00  # Matching terminated due to Cancel request
    assert 5 <= len(statuses) - 1 < 3000
    assert set(statuses[:-1]) == {0xFF00}


def test_findscu_cancel_option(node, tmp_path):
    # enough matches that the node cannot have sent them all before DCMTK's C-CANCEL arrives, even
    # when the test machine is loaded (3000 was not always enough on 2 busy cores)
    many_rows(node.database_url, 20000)
    res, log = findscu(
        node,
        tmp_path,
        "QueryRetrieveLevel=IMAGE",
        "StudyInstanceUID=1.9",
        "SeriesInstanceUID=1.9.1",
        "SOPInstanceUID",
        extra=("--cancel", "3"),
    )
    assert "Cancel" in log and 3 <= len(res) < 20000
