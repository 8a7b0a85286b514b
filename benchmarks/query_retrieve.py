"""Query/retrieve speed, measured against real peers in one run (prints figures and ratios).

1. C-FIND matching in SQL on a big index (synthetic rows, bulk-inserted with SQLAlchemy core):
   1,000,000 instances in 10,000 studies by default. Median latency of
   * a study-level query by Patient ID,
   * a study-level query by Patient Name wildcard,
   * a series-level query by Study Instance UID,
   each with derived counts, on SQLite and on a throwaway PostgreSQL server. Goal: < 50 ms each.
2. C-MOVE of one study of N instances (default 1,000 CT images of 256×256) to DCMTK ``storescp``:
   ``perfnode serve`` vs DCMTK ``dcmqrscp`` serving the same files, the same ``movescu`` asking.
   Goal: ratio perfnode/dcmqrscp ≤ 1.0.

    .venv/bin/python benchmarks/query_retrieve.py [--instances 1000000] [--move 1000] [--skip-postgres]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, CTImageStorage, ExplicitVRLittleEndian
from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perfnode.archive.db import Database  # noqa: E402
from perfnode.archive.models import Instance, Patient, Series, Study  # noqa: E402
from perfnode.archive.query import Query  # noqa: E402
from tests.nodes import free_port, wait_for_port  # noqa: E402
from tests.pg import start_pg  # noqa: E402

SERIES_PER_STUDY = 4
CHUNK = 50_000


# -- 1. the index -----------------------------------------------------------------------------


def fill(db: Database, n_instances: int, n_studies: int) -> float:
    """Bulk-insert synthetic rows; returns seconds taken."""
    t0 = time.perf_counter()
    n_patients = n_studies // 2
    per_series = max(1, n_instances // (n_studies * SERIES_PER_STUDY))
    now = datetime(2024, 1, 1)
    with db.engine.begin() as conn:
        conn.execute(
            insert(Patient),
            [
                {
                    "id": p + 1,
                    "patient_id": f"PID{p:07d}",
                    "issuer_of_patient_id": "",
                    "patient_name": f"NAME{p:06d}^GIVEN",
                    "patient_name_folded": f"name{p:06d}^given",  # what PN matching compares (0007)
                    "patient_birth_date": "19600101",
                    "patient_sex": "O",
                }
                for p in range(n_patients)
            ],
        )
        conn.execute(
            insert(Study),
            [
                {
                    "id": s + 1,
                    "patient_fk": s % n_patients + 1,
                    "study_instance_uid": f"1.2.9.{s}",
                    "study_date": f"2024{1 + s % 12:02d}{1 + s % 28:02d}",
                    "study_time": "120000",
                    "accession_number": f"A{s:08d}",
                    "study_id": "1",
                    "study_description": "CT perfusion",
                    "referring_physician_name": "",
                }
                for s in range(n_studies)
            ],
        )
        conn.execute(
            insert(Series),
            [
                {
                    "id": s * SERIES_PER_STUDY + k + 1,
                    "study_fk": s + 1,
                    "series_instance_uid": f"1.2.9.{s}.{k}",
                    "modality": "CT" if k < 3 else "SR",
                    "series_number": k + 1,
                    "series_description": "",
                    "body_part_examined": "HEAD",
                    "protocol_name": "",
                    "series_date": "",
                    "series_time": "",
                    "frame_of_reference_uid": "",
                }
                for s in range(n_studies)
                for k in range(SERIES_PER_STUDY)
            ],
        )
    rows = (
        {
            "series_fk": se + 1,
            "sop_instance_uid": f"1.2.9.{se // SERIES_PER_STUDY}.{se % SERIES_PER_STUDY}.{i}",
            "sop_class_uid": CTImageStorage,
            "transfer_syntax_uid": ExplicitVRLittleEndian,
            "instance_number": i,
            "image_type": "ORIGINAL\\PRIMARY\\AXIAL",
            "concatenation_uid": "",
            "content_date": "",
            "content_time": "",
            "specific_character_set": "",
            "path": "x",
            "size_bytes": 0,
            "sha256": "",
            "received_at": now,
            "calling_ae": "",
        }
        for se in range(n_studies * SERIES_PER_STUDY)
        for i in range(per_series)
    )
    batch: list[dict] = []
    for row in rows:
        batch.append(row)
        if len(batch) == CHUNK:
            with db.engine.begin() as conn:
                conn.execute(insert(Instance), batch)
            batch = []
    if batch:
        with db.engine.begin() as conn:
            conn.execute(insert(Instance), batch)
    with db.engine.begin() as conn:  # committed, so the planner has statistics
        conn.exec_driver_sql("ANALYZE")
    return time.perf_counter() - t0


def ident(level: str, **keys) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for k, v in keys.items():
        setattr(ds, k, v)
    return ds


def median_ms(db: Database, make: callable, repeat: int = 30) -> tuple[float, int]:
    times, n = [], 0
    for r in range(repeat):
        q = Query(make(r))
        t0 = time.perf_counter()
        n = sum(len(p) for p in q.pages(db))
        times.append(1000 * (time.perf_counter() - t0))
    return statistics.median(times), n


def query_bench(url: str, label: str, n_instances: int, n_studies: int) -> dict[str, float]:
    db = Database(url)
    secs = fill(db, n_instances, n_studies)
    n_patients = n_studies // 2
    print(f"  {label}: inserted {n_instances:,} instances / {n_studies:,} studies in {secs:.0f} s")
    study_keys = dict(
        StudyInstanceUID="",
        StudyDate="",
        PatientName="",
        NumberOfStudyRelatedInstances=None,
        NumberOfStudyRelatedSeries=None,
        ModalitiesInStudy="",
    )
    cases = {
        "study by PatientID": lambda r: ident(
            "STUDY", PatientID=f"PID{(r * 7919) % n_patients:07d}", **study_keys
        ),
        "study by PatientName wildcard": lambda r: ident(
            "STUDY", **{**study_keys, "PatientName": f"name{(r * 31) % (n_patients // 10):05d}*"}
        ),
        "series by StudyInstanceUID": lambda r: ident(
            "SERIES",
            StudyInstanceUID=f"1.2.9.{(r * 104729) % n_studies}",
            SeriesInstanceUID="",
            Modality="",
            NumberOfSeriesRelatedInstances=None,
        ),
    }
    out = {}
    for name, make in cases.items():
        ms, n = median_ms(db, make)
        out[name] = ms
        print(
            f"  {label}: {name:32s} median {ms:7.2f} ms ({n} matches)  goal < 50 ms: "
            f"{'met' if ms < 50 else 'NOT met'}"
        )
    db.dispose()
    return out


# -- 2. C-MOVE --------------------------------------------------------------------------------


def write_study(folder: Path, n: int, size: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(1, n + 1):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = f"1.2.8.1.1.{i}"
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, f"1.2.8.1.1.{i}"
        ds.PatientID, ds.PatientName, ds.StudyInstanceUID, ds.SeriesInstanceUID = (
            "BENCH",
            "B^B",
            "1.2.8.1",
            "1.2.8.1.1",
        )
        ds.StudyDate, ds.StudyTime, ds.Modality, ds.InstanceNumber, ds.SeriesNumber = (
            "20240101",
            "1200",
            "CT",
            i,
            1,
        )
        ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "1", "", ""
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = rng.integers(0, 4096, (size, size), dtype=np.uint16).tobytes()
        p = folder / f"{i:05d}.dcm"
        ds.save_as(p, enforce_file_format=True)
        paths.append(p)
    return paths


def movescu(port: int, aec: str) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(
        [
            "movescu",
            "-S",
            "-aec",
            aec,
            "-aem",
            "DEST",
            "127.0.0.1",
            str(port),
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            "StudyInstanceUID=1.2.8.1",
        ],
        capture_output=True,
        text=True,
    )
    dt = time.perf_counter() - t0
    if res.returncode != 0 or "E:" in res.stderr:
        raise RuntimeError(f"movescu to {aec} failed: {res.stdout}{res.stderr}")
    return dt


def move_bench(tmp: Path, n: int, size: int, repeat: int) -> float:
    files = write_study(tmp / "files", n, size)
    dest_port, node_port, qr_port = free_port(), free_port(), free_port()
    procs = []
    node_log = open(tmp / "node.log", "wb")  # noqa: SIM115 - handed to the child process
    try:
        procs.append(
            subprocess.Popen(
                ["storescp", "--ignore", "-aet", "DEST", str(dest_port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "perfnode.cli",
                    "serve",
                    "--no-web",
                    "--port",
                    str(node_port),
                    "--data",
                    str(tmp / "node"),
                    "--peer",
                    f"DEST=127.0.0.1:{dest_port}",
                    # the benchmark's SCUs (DCMTK, pynetdicom) call with AE titles not in the AE table
                    "--allow-unknown",
                    "store,query,retrieve",
                ],
                stdout=node_log,
                stderr=subprocess.STDOUT,
            )
        )
        (tmp / "qrdb").mkdir()
        cfg = tmp / "dcmqrscp.cfg"
        cfg.write_text(
            f"NetworkTCPPort = {qr_port}\nMaxPDUSize = 65536\nMaxAssociations = 8\n"
            f"HostTable BEGIN\ndest = (DEST, 127.0.0.1, {dest_port})\nHostTable END\n"
            "VendorTable BEGIN\nVendorTable END\n"
            f"AETable BEGIN\nDCMQR {tmp / 'qrdb'} RW (200, 2048mb) ANY\nAETable END\n"
        )
        procs.append(
            subprocess.Popen(
                ["dcmqrscp", "-c", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        )
        for name, p in (("storescp", dest_port), ("perfnode serve", node_port), ("dcmqrscp", qr_port)):
            try:
                wait_for_port(p, 120)
            except TimeoutError:
                raise RuntimeError(
                    f"{name} did not start; perfnode log:\n{(tmp / 'node.log').read_text()[-2000:]}"
                ) from None
        for aec, port in (("PERFNODE", node_port), ("DCMQR", qr_port)):
            subprocess.run(
                ["storescu", "-aec", aec, "127.0.0.1", str(port), "+sd", str(tmp / "files")],
                check=True,
                capture_output=True,
            )
        times: dict[str, list[float]] = {"perfnode": [], "dcmqrscp": []}
        for _ in range(repeat):  # alternate, so both see the same machine load
            times["perfnode"].append(movescu(node_port, "PERFNODE"))
            times["dcmqrscp"].append(movescu(qr_port, "DCMQR"))
        mb = sum(f.stat().st_size for f in files) / 1e6
        med = {k: statistics.median(v) for k, v in times.items()}
        for k, v in med.items():
            print(
                f"  C-MOVE {n} instances ({mb:.0f} MB) by {k:8s}: median {v:6.2f} s  ({n / v:6.0f} obj/s, "
                f"{mb / v:6.1f} MB/s)  runs {', '.join(f'{t:.2f}' for t in times[k])}"
            )
        ratio = med["perfnode"] / med["dcmqrscp"]
        print(f"  ratio perfnode/dcmqrscp = {ratio:.2f}  goal <= 1.0: {'met' if ratio <= 1.0 else 'NOT met'}")
        return ratio
    finally:
        node_log.close()
        for p in procs:
            p.terminate()
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", type=int, default=1_000_000)
    ap.add_argument("--studies", type=int, default=10_000)
    ap.add_argument("--move", type=int, default=1000, help="instances in the moved study (0: skip)")
    ap.add_argument("--size", type=int, default=256, help="rows = columns of the moved images")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-postgres", action="store_true")
    ap.add_argument("--skip-index", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="perfnode-bench-qr-"))
    try:
        if not args.skip_index:
            print("C-FIND in SQL (archive/query.py), synthetic index:")
            query_bench(f"sqlite:///{tmp / 'index.sqlite'}", "SQLite    ", args.instances, args.studies)
            if args.skip_postgres:
                print("  PostgreSQL: skipped (--skip-postgres)")
            elif (pg := start_pg()) is None:
                print("  PostgreSQL: skipped (server binaries not installed)")
            else:
                try:
                    query_bench(pg.createdb("bench"), "PostgreSQL", args.instances, args.studies)
                finally:
                    pg.stop()
        if args.move:
            for tool in ("storescp", "dcmqrscp", "movescu", "storescu"):
                if shutil.which(tool) is None:
                    print(f"C-MOVE: skipped ({tool} not installed)")
                    return 0
            print(f"C-MOVE of one study to DCMTK storescp ({args.size}x{args.size} CT, uncompressed):")
            move_bench(tmp / "move", args.move, args.size, args.repeat)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
