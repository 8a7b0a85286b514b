"""Durable jobs and series completion, on a real SQLite index."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydicom.dataset import Dataset

from perfnode.archive import jobs
from perfnode.archive.completion import ready_series
from perfnode.archive.db import Database
from perfnode.archive.models import Instance, Patient, Series, Study
from perfnode.pipeline.technique import choose
from perfnode.techniques import detect_series


@pytest.fixture
def db(tmp_path) -> Database:
    return Database(f"sqlite:///{tmp_path / 'index.sqlite'}")


def add_series(db: Database, uid: str, parts: list[tuple[str, int | None, int | None, int | None]],
               age_s: float) -> None:
    """A series whose instances are (concatenation UID, number, total, frames), last seen age_s ago."""
    when = jobs.now() - timedelta(seconds=age_s)
    with db.session() as s:
        p = Patient(patient_id=f"P-{uid}", patient_name="Test^Patient")
        st = Study(patient=p, study_instance_uid=f"{uid}.1")
        se = Series(study=st, series_instance_uid=uid, modality="MR", last_received_at=when)
        for i, (cuid, num, total, frames) in enumerate(parts):
            s.add(Instance(series=se, sop_instance_uid=f"{uid}.9.{i}",
                           sop_class_uid="1.2.840.10008.5.1.4.1.1.4.1",
                           transfer_syntax_uid="1.2.840.10008.1.2.1", concatenation_uid=cuid,
                           in_concatenation_number=num, in_concatenation_total_number=total,
                           number_of_frames=frames, path=f"objects/{i}.dcm", size_bytes=1, sha256="0" * 64,
                           received_at=when, instance_number=i + 1))
        s.add(p)


def test_completion_rules(db):
    add_series(db, "1.1", [("9.1", 1, 2, 10), ("9.1", 2, 2, 10)], age_s=0)  # concatenation complete
    add_series(db, "1.2", [("9.2", 1, 3, 10), ("9.2", 3, 3, 10)], age_s=0)  # part 2 missing, fresh
    add_series(db, "1.3", [("", None, None, 400)], age_s=0)  # one multi-frame instance
    add_series(db, "1.4", [("", None, None, 1)] * 1 + [("", None, None, 1)], age_s=0)  # classic, fresh
    add_series(db, "1.5", [("", None, None, 1), ("", None, None, 1)], age_s=30)  # classic, stable
    ready = dict(ready_series(db, stable_s=10))
    assert set(ready) == {"1.1", "1.3", "1.5"}
    assert "concatenation" in ready["1.1"] and "10 s" in ready["1.5"]
    # an incomplete concatenation still completes by the stable time
    assert "1.2" in dict(ready_series(db, stable_s=0))


def test_job_lifecycle_is_durable_and_idempotent(db, tmp_path):
    add_series(db, "1.1", [("", None, None, 1)], age_s=30)
    assert [u for u, _ in ready_series(db, 10)] == ["1.1"]
    job = jobs.create_job(db, "1.1", "dsc", "MR3T", ["PACS"])
    assert job is not None and jobs.create_job(db, "1.1", "dsc") is None  # one job per series+analysis
    assert ready_series(db, 10) == []  # a series with a job is not offered again
    claimed = jobs.claim_next(db)
    assert claimed.id == job.id and claimed.state == "running" and claimed.attempts == 1
    assert jobs.claim_next(db) is None
    # a node killed now: a new node (new engine on the same file) re-queues the job
    db2 = Database(db.url)
    assert jobs.requeue_interrupted(db2) == 1
    again = jobs.claim_next(db2)
    assert again.id == job.id and again.attempts == 2
    jobs.record_sent(db2, job.id, "1.2.3", "PACS")
    jobs.record_sent(db2, job.id, "1.2.3", "PACS")  # twice is still once
    assert jobs.already_sent(db2, job.id, "PACS") == {"1.2.3"}
    jobs.finish(db2, job.id, "done")
    assert [j.state for j in jobs.list_jobs(db2)] == ["done"]
    with pytest.raises(ValueError):
        jobs.finish(db2, job.id, "exploded")


def _mr(te_ms: float | None, image_type: list[str], **kw) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4.1"
    ds.Modality = "MR"
    ds.ImageType = image_type
    if te_ms is not None:
        ds.EchoTime = te_ms
    for k, v in kw.items():
        setattr(ds, k, v)
    return ds


def detect(ds: Dataset) -> str | None:
    return detect_series([ds]).technique


def test_technique_from_header_and_rules():
    perf = ["ORIGINAL", "PRIMARY", "PERFUSION", "NONE"]
    dynamic = {"NumberOfTemporalPositions": 40}
    assert detect(_mr(30, perf, **dynamic)) == "dsc"
    assert detect(_mr(1.8, perf, **dynamic)) == "dce"
    assert detect(_mr(30, ["ORIGINAL", "PRIMARY", "M", "NONE"])) is None  # not dynamic
    assert detect(_mr(30, ["DERIVED", "PRIMARY", "PERFUSION"], **dynamic)) is None  # our own kind of output
    ct = Dataset()
    ct.Modality, ct.ImageType, ct.SOPClassUID = "CT", perf, "1.2.840.10008.5.1.4.1.1.2.1"
    ct.NumberOfTemporalPositions = 30
    assert detect(ct) == "ctp"
    pm = _mr(30, perf, SOPClassUID="1.2.840.10008.5.1.4.1.1.30", **dynamic)
    assert detect(pm) is None
    ds = _mr(1.8, perf, ProtocolName="ep2d_perf_DSC", **dynamic)
    rules = [{"calling_ae": "MR3T", "protocol": "*dsc*", "technique": "dsc"},
             {"protocol": "*", "calling_ae": "CT*", "technique": "none"}]
    assert choose(ds, "MR3T", rules).technique == "dsc"  # rule wins over the header
    assert choose(ds, "OTHER", rules).technique == "dce"  # no rule matches: header
    assert choose(ct, "CT1", rules).technique is None
    with pytest.raises(ValueError, match="technique"):
        choose(ds, "X", [{"technique": "magic"}])


def test_a_series_waiting_for_its_study_is_read_once(tmp_path, monkeypatch):
    """A DCE series is held back while its study still receives (its T1 series may be on the way);
    its header is read once for all the polls it waits, and its job is queued when the study is quiet."""
    import shutil

    from perfnode.archive.facade import Archive
    from perfnode.archive.storage import Storage
    from perfnode.config import PipelineSettings, load_settings
    from perfnode.phantoms import make
    from perfnode.pipeline import runner

    settings = load_settings(data=str(tmp_path / "data"))
    storage = Storage(settings.data)
    db = Database(settings.database_url)
    make("dce", "single", tmp_path / "dce")
    files = sorted((tmp_path / "dce").rglob("*.dcm"), key=lambda p: p.stat().st_size)
    shutil.copy(files[-1], settings.data / "dce.dcm")  # the dynamic series
    shutil.copy(files[0], settings.data / "t1.dcm")  # the variable-flip-angle T1 series
    old, fresh = jobs.now() - timedelta(seconds=60), jobs.now()
    with db.session() as s:
        st = Study(patient=Patient(patient_id="P1", patient_name="Test^Patient"), study_instance_uid="1.9")
        for uid, when, path in (("1.9.1", old, "dce.dcm"), ("1.9.2", fresh, "t1.dcm")):
            se = Series(study=st, series_instance_uid=uid, modality="MR", last_received_at=when)
            s.add(Instance(series=se, sop_instance_uid=f"{uid}.1",
                           sop_class_uid="1.2.840.10008.5.1.4.1.1.4.1",
                           transfer_syntax_uid="1.2.840.10008.1.2.1", number_of_frames=None, path=path,
                           size_bytes=1, sha256="0" * 64, received_at=when, instance_number=1,
                           calling_ae="MR3T"))
        s.add(st)
    reads: list[str] = []
    real = runner.dcmread
    monkeypatch.setattr(runner, "dcmread", lambda p, **kw: reads.append(str(p)) or real(p, **kw))
    sup = runner.Supervisor(Archive(db, storage), settings, PipelineSettings(stable_s=10.0))
    try:
        for _ in range(3):
            sup._enqueue_ready()
        assert sup.waiting == {"1.9.1": ("dce", "MR3T")}
        assert reads == [str(settings.data / "dce.dcm")]
        with db.session() as s:  # the study falls quiet
            s.query(Series).filter_by(series_instance_uid="1.9.2").update({"last_received_at": old})
        sup._enqueue_ready()
        assert sup.waiting == {}
        assert reads[1:] == [str(settings.data / "t1.dcm")]  # ready too now: looked at, not analysed
        with db.read() as s:
            assert {(j.series_instance_uid, j.analysis) for j in s.query(jobs.Job)} == {
                ("1.9.1", "dce"), ("1.9.2", "none")}
    finally:
        for pool in (sup.analysing, sup.delivering, sup.processes):
            pool.shutdown(wait=False)
        db.dispose()
