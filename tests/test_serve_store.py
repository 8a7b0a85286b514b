"""``perfnode serve`` against real peers (DCMTK storescu, pynetdicom), SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from perfnode.net.status import CANNOT_UNDERSTAND, DATASET_DOES_NOT_MATCH_SOP_CLASS, DUPLICATE_SOP_INSTANCE
from tests.nodes import need, run
from tests.serve_helpers import (
    SAMPLES,
    Scu,
    count_instances,
    dataset_bytes,
    files_under,
    fresh_copy,
    instances,
    mr_object,
)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_node(request, node_factory):
    """A running node on SQLite, then on a real PostgreSQL server."""
    if request.param == "postgresql":
        return node_factory(database=request.getfixturevalue("pg_url"))
    return node_factory()


def storescu(port: int, files: list[Path], *extra: str, aet: str = "STORESCU") -> subprocess.CompletedProcess:
    """DCMTK storescu proposing each file's own transfer syntax (-R), verbose."""
    return run([need("storescu"), "-v", "-R", "-aet", aet, "-aec", "PERFNODE", *extra, "127.0.0.1", str(port),
                *map(str, files)])


#: storescu option that proposes a transfer syntax (besides the uncompressed ones).
PROPOSE = {"1.2.840.10008.1.2.1": "-xe", "1.2.840.10008.1.2.2": "-xb", "1.2.840.10008.1.2.1.99": "-xd",
           "1.2.840.10008.1.2.5": "-xr", "1.2.840.10008.1.2.4.50": "-xy", "1.2.840.10008.1.2.4.51": "-xx",
           "1.2.840.10008.1.2.4.70": "-xs", "1.2.840.10008.1.2.4.80": "-xt", "1.2.840.10008.1.2.4.81": "-xu",
           "1.2.840.10008.1.2.4.90": "-xv", "1.2.840.10008.1.2.4.91": "-xw"}


def test_stores_samples_byte_for_byte_and_indexes_them(db_node, tmp_path):
    files = [fresh_copy(name, tmp_path / "in") for name in SAMPLES]
    for f, ts in zip(files, SAMPLES.values(), strict=True):
        res = storescu(db_node.port, [f], PROPOSE[ts])
        assert res.returncode == 0, res.stdout + res.stderr
    rows = instances(db_node.database_url)
    assert len(rows) == len(files)
    for f, (name, ts) in zip(files, SAMPLES.items(), strict=True):
        ds = dcmread(f, stop_before_pixels=True)
        row = rows[ds.SOPInstanceUID]
        stored = db_node.data / row.path
        assert row.path == f"objects/{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}.dcm"
        assert row.transfer_syntax_uid == ts, name
        assert row.sop_class_uid == ds.SOPClassUID
        assert elements(stored) == elements(f), f"{name}: dataset changed"
        assert row.size_bytes == stored.stat().st_size
        assert row.sha256 == hashlib.sha256(stored.read_bytes()).hexdigest()
        assert row.calling_ae == "STORESCU"
        meta = dcmread(stored, stop_before_pixels=True).file_meta
        assert meta.TransferSyntaxUID == ts and meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert row.series.modality == ds.get("Modality", "")
        assert row.series.study.patient.patient_id == ds.get("PatientID", "")
    emri = next(r for r in rows.values() if r.sop_class_uid == "1.2.840.10008.5.1.4.1.1.4.1")
    assert emri.number_of_frames == 10
    assert emri.image_type.startswith("ORIGINAL\\PRIMARY")
    assert files_under(db_node.data / "tmp") == []
    summary = r"association released: STORESCU@127\.0\.0\.1:\d+ after [\d.]+ s: stored 1"
    assert re.search(summary, db_node.output())


def elements(path: Path) -> dict:
    """Tag → value of a file's dataset without group lengths and padding (DCMTK re-encodes what it sends)."""
    return {e.tag: e.value for e in dcmread(path) if e.tag.element != 0 and e.tag != 0xFFFCFFFC}


#: pydicom samples that lack Type 1 attributes of their IOD: stored, with warning 0xB007 naming the first.
NONCONFORMANT_SAMPLES = {
    "emri_small.dcm": "(0008,0070) Manufacturer missing +4",
    "emri_small_RLE.dcm": "(0008,0070) Manufacturer missing +4",
    "JPEGLSNearLossless_16.dcm": "(0008,0060) Modality missing +1",
}


def test_stores_exactly_the_bytes_received(db_node, tmp_path):
    """pynetdicom sends each file's dataset bytes unchanged: the stored dataset bytes are identical."""
    files = [fresh_copy(name, tmp_path / "in") for name in SAMPLES]
    with Scu(db_node.port, files) as scu:
        got = [scu.store(f) for f in files]
    assert got == [(0xB007, NONCONFORMANT_SAMPLES[n]) if n in NONCONFORMANT_SAMPLES else (0, "")
                   for n in SAMPLES]
    rows = instances(db_node.database_url)
    for f in files:
        row = rows[dcmread(f, stop_before_pixels=True).SOPInstanceUID]
        assert dataset_bytes(db_node.data / row.path) == dataset_bytes(f), f.name
    assert {r.transfer_syntax_uid for r in rows.values()} == set(SAMPLES.values())


ENHANCED_AND_OTHERS = [
    "1.2.840.10008.5.1.4.1.1.2.1",    # Enhanced CT
    "1.2.840.10008.5.1.4.1.1.4.3",    # Enhanced MR Color
    "1.2.840.10008.5.1.4.1.1.4.4",    # Legacy Converted Enhanced MR
    "1.2.840.10008.5.1.4.1.1.30",     # Parametric Map
    "1.2.840.10008.5.1.4.1.1.7",      # Secondary Capture
    "1.2.840.10008.5.1.4.1.1.88.11",  # Basic Text SR
]


def test_accepts_enhanced_and_other_storage_classes(node, tmp_path):
    files = [mr_object(tmp_path / f"{i}.dcm", sop_class=c, rows=8, cols=8, frames=2)
             for i, c in enumerate(ENHANCED_AND_OTHERS)]
    res = storescu(node.port, files)
    assert res.returncode == 0, res.stdout + res.stderr
    rows = instances(node.database_url).values()
    assert sorted(r.sop_class_uid for r in rows) == sorted(ENHANCED_AND_OTHERS)
    assert {r.number_of_frames for r in rows} == {2}


def test_restart_keeps_index_and_files(db_node, tmp_path):
    files = [fresh_copy("MR_small.dcm", tmp_path) for _ in range(3)]
    assert storescu(db_node.port, files).returncode == 0
    assert db_node.stop() == 0
    db_node.start()
    assert run([need("echoscu"), "-aec", "PERFNODE", "127.0.0.1", str(db_node.port)]).returncode == 0
    rows = instances(db_node.database_url)
    assert sorted(rows) == sorted(dcmread(f).SOPInstanceUID for f in files)
    assert all((db_node.data / r.path).exists() for r in rows.values())
    # sending them again after the restart is a no-op success
    assert storescu(db_node.port, files).returncode == 0
    assert count_instances(db_node.database_url) == 3


def test_duplicates_identical_noop_different_refused(db_node, tmp_path):
    uid = generate_uid()
    first = mr_object(tmp_path / "a.dcm", sop=uid, seed=1)
    other = mr_object(tmp_path / "b.dcm", sop=uid, seed=2)  # same UIDs? no: new study/series, new pixels
    with Scu(db_node.port, [first]) as scu:
        assert scu.store(first) == (0, "")
        assert scu.store(first) == (0, "")
        status, comment = scu.store(other)
        assert status == DUPLICATE_SOP_INSTANCE
        # the reason first (the Error Comment is cut to 64 characters; the log has the UID)
        assert comment == "(0008,0018) SOPInstanceUID already stored with different content"
        assert scu.store(mr_object(tmp_path / "c.dcm"))[0] == 0  # association still works
    rows = instances(db_node.database_url)
    assert len(rows) == 2
    stored = db_node.data / rows[uid].path
    assert dataset_bytes(stored) == dataset_bytes(first)
    assert rows[uid].sha256 == hashlib.sha256(stored.read_bytes()).hexdigest()
    assert files_under(db_node.data / "tmp") == []
    assert db_node.logged("already stored with different content")


def test_duplicate_policy_replace(node_factory, tmp_path):
    node = node_factory(["--duplicate-policy", "replace"])
    uid, study, series = generate_uid(), generate_uid(), generate_uid()
    first = mr_object(tmp_path / "a.dcm", study=study, series=series, sop=uid, seed=1)
    second = mr_object(tmp_path / "b.dcm", study=study, series=series, sop=uid, seed=2)
    with Scu(node.port, [first]) as scu:
        assert scu.store(first)[0] == 0
        assert scu.store(second)[0] == 0
    (row,) = instances(node.database_url).values()
    assert dataset_bytes(node.data / row.path) == dataset_bytes(second)
    assert row.sha256 == hashlib.sha256((node.data / row.path).read_bytes()).hexdigest()


HOSTILE = [
    ("SOPInstanceUID", "../../../../tmp/perfnode-evil", "(0008,0018) SOPInstanceUID: not a valid UID"),
    ("SOPInstanceUID", "1.2." + "3" * 70, "(0008,0018) SOPInstanceUID: not a valid UID"),
    ("StudyInstanceUID", "../../../evil", "(0020,000D) StudyInstanceUID: not a valid UID"),
    ("SeriesInstanceUID", "1.2.3/../../x", "(0020,000E) SeriesInstanceUID: not a valid UID"),
    ("StudyInstanceUID", None, "(0020,000D) StudyInstanceUID: missing"),
    ("SeriesInstanceUID", "", "(0020,000E) SeriesInstanceUID: missing"),
]


def test_hostile_or_missing_uids_refused_naming_the_attribute(db_node, tmp_path):
    for i, (keyword, value, comment) in enumerate(HOSTILE):
        good = mr_object(tmp_path / f"good{i}.dcm")
        bad = mr_object(tmp_path / f"bad{i}.dcm")
        ds = dcmread(bad)
        if value is None:
            del ds[keyword]
        else:
            ds.__setattr__(keyword, value)
        ds.file_meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID", "")
        ds.save_as(bad)
        if len(value or "") > 64:  # pynetdicom refuses to send it: DCMTK does
            res = storescu(db_node.port, [bad, good], "-nh")
            assert "Received Store Response (Error: CannotUnderstand)" in res.stdout + res.stderr
            assert "Received Store Response (Success)" in res.stdout + res.stderr
        else:
            with Scu(db_node.port, [good]) as scu:
                status, text = scu.store(bad)
                assert status == CANNOT_UNDERSTAND
                assert text.startswith(comment)
                assert scu.store(good)[0] == 0  # the association keeps working
        assert db_node.logged(f"refused: 0xC000 {comment}")
    assert not Path("/tmp/perfnode-evil.dcm").exists()
    goods = sorted(f"{dcmread(tmp_path / f'good{i}.dcm').SOPInstanceUID}.dcm" for i in range(len(HOSTILE)))
    assert sorted(p.name for p in files_under(db_node.data / "objects")) == goods
    assert sorted(instances(db_node.database_url)) == sorted(g.removesuffix(".dcm") for g in goods)
    assert files_under(db_node.data / "tmp") == []
    assert not any(p.name.startswith("evil") for p in files_under(tmp_path.parent))


def test_sop_class_mismatch_and_unreadable_dataset(db_node, tmp_path):
    # File meta says MR Image Storage, the dataset says CT Image Storage: sent on the MR context.
    mismatch = mr_object(tmp_path / "m.dcm", sop_class="1.2.840.10008.5.1.4.1.1.2")
    ds = dcmread(mismatch)
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    ds.save_as(mismatch)
    # A valid File Meta Information followed by elements with an unknown VR: unreadable dataset.
    garbage = mr_object(tmp_path / "g.dcm")
    raw = garbage.read_bytes()
    cut = raw.index(b"\x08\x00\x16\x00")  # (0008,0016) in the dataset
    garbage.write_bytes(raw[:cut] + b"\x08\x00\x16\x00ZZ\x04\x00abcd" * 3)
    good = mr_object(tmp_path / "ok.dcm")
    with Scu(db_node.port, [good, mismatch]) as scu:
        status, text = scu.store(mismatch)
        assert status == DATASET_DOES_NOT_MATCH_SOP_CLASS
        assert text.startswith("(0008,0016) SOPClassUID 1.2.840.10008.5.1.4.1.1.2 does not match")
        status, text = scu.store(garbage)
        assert status == CANNOT_UNDERSTAND
        assert text.startswith("unreadable: (0008,0016) SOPClassUID: no valid VR")
        assert scu.store(good)[0] == 0
    assert count_instances(db_node.database_url) == 1
    assert len(files_under(db_node.data / "objects")) == 1
    assert files_under(db_node.data / "tmp") == []


@pytest.mark.slow
def test_eight_concurrent_senders(db_node, tmp_path):
    per_sender = 12
    folders = []
    for i in range(8):
        study = generate_uid()
        folders.append([mr_object(tmp_path / f"s{i}" / f"{k}.dcm", study=study, rows=32, cols=32, seed=k)
                        for k in range(per_sender)])
    procs = [subprocess.Popen([need("storescu"), "-aet", f"SENDER{i}", "-aec", "PERFNODE", "127.0.0.1",
                               str(db_node.port), *map(str, files)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i, files in enumerate(folders)]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert count_instances(db_node.database_url) == 8 * per_sender
    log = db_node.output()
    assert "locked" not in log and "refused" not in log and "failed" not in log
    senders = {r.calling_ae for r in instances(db_node.database_url).values()}
    assert senders == {f"SENDER{i}" for i in range(8)}


def test_write_failure_disk_full(node_factory, tmp_path):
    """A data folder on a tiny tmpfs: the object that does not fit is refused, nothing is left behind."""
    data = tmp_path / "full"
    data.mkdir()
    if run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(data)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        node = node_factory(database=f"sqlite:///{tmp_path / 'index.sqlite'}", name="full")
        big = mr_object(tmp_path / "big.dcm", rows=512, cols=512)  # 512 KiB of pixels
        small = mr_object(tmp_path / "small.dcm", rows=16, cols=16)
        with Scu(node.port, [big]) as scu:
            status, text = scu.store(big)
            assert status == 0xA700
            assert text.startswith("cannot write the received object: No space left")
            assert scu.store(small)[0] == 0
        assert list(instances(node.database_url)) == [dcmread(small).SOPInstanceUID]
        assert [p.name for p in files_under(data / "objects")] == [f"{dcmread(small).SOPInstanceUID}.dcm"]
        assert files_under(data / "tmp") == []
        node.stop()
    finally:
        run(["umount", "-l", str(data)])


def test_write_failure_in_object_folder(node, tmp_path):
    """The object's series folder cannot be created (a file is in the way): 0xA700, nothing indexed."""
    study, series = generate_uid(), generate_uid()
    blocker = node.data / "objects" / study
    blocker.write_bytes(b"not a folder")
    f = mr_object(tmp_path / "x.dcm", study=study, series=series)
    with Scu(node.port, [f]) as scu:
        status, text = scu.store(f)
        assert status == 0xA700 and text.startswith(f"cannot store objects/{study}"[:64])
    assert count_instances(node.database_url) == 0
    assert files_under(node.data / "tmp") == []
    assert blocker.read_bytes() == b"not a folder"
