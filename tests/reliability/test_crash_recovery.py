"""kill -9 under concurrent senders, and what the node does with the files a crash leaves behind.

Before (issue 17): 2–7 files per kill -9 were renamed into ``objects/`` but never indexed, and
nothing reconciled them at start. Now: every acknowledged object is indexed and whole after a
restart, and no file in ``objects/`` is without an index row (re-indexed if whole, else moved to
``quarantine/``), with the counts in the log.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import time
from pathlib import Path

import pytest
from pydicom.uid import generate_uid
from pynetdicom import AE, _config

from tests.reliability.mutate import conformant_mr, oracle, part10
from tests.serve_helpers import Scu, files_under, instances, mr_object

MR = "1.2.840.10008.5.1.4.1.1.4"


def test_orphans_are_reindexed_when_whole_and_quarantined_otherwise(node_factory, tmp_path):
    node = node_factory()
    study, series = generate_uid(), generate_uid()
    kept = mr_object(tmp_path / "kept.dcm", study=study, series=series)
    with Scu(node.port, [kept]) as scu:
        assert scu.store(kept)[0] == 0
    (kept_row,) = instances(node.database_url).values()
    node.stop()

    # what a crash between rename and index commit leaves, and worse
    objects = node.data / "objects"

    def place(name: str, data: bytes, study_uid: str = study, series_uid: str = series) -> str:
        path = objects / study_uid / series_uid / f"{name}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return str(path.relative_to(node.data))

    whole_ds = conformant_mr(study=study, series=series)
    whole = place(whole_ds.SOPInstanceUID, part10(whole_ds))
    cut_ds = conformant_mr(study=study, series=series)
    cut = place(cut_ds.SOPInstanceUID, part10(cut_ds)[:-500])
    kept_bytes = (node.data / kept_row.path).read_bytes()
    elsewhere = place(kept_row.sop_instance_uid, kept_bytes, study, generate_uid())
    wrong_ds = conformant_mr(study=study, series=series)
    misnamed = place(generate_uid(), part10(wrong_ds))
    (node.data / "state").mkdir(exist_ok=True)
    (node.data / "state" / "running").write_text(json.dumps({"started": time.time() - 60}))

    node.start()
    assert node.logged("crash recovery (files since the unclean run started): 5 file(s) in objects/ checked, "
                       "1 without an index row re-indexed, 3 moved to quarantine/"), node.output()[-4000:]
    rows = instances(node.database_url)
    assert set(rows) == {kept_row.sop_instance_uid, whole_ds.SOPInstanceUID}
    recovered = rows[whole_ds.SOPInstanceUID]
    assert recovered.path == whole
    assert recovered.sha256 == hashlib.sha256((node.data / whole).read_bytes()).hexdigest()
    quarantine = node.data / "quarantine"
    why = {str(p.relative_to(quarantine)): p.read_text().strip() for p in quarantine.rglob("*.why")}
    assert set(why) == {str(Path(r).relative_to("objects")) + ".why" for r in (cut, elsewhere, misnamed)}
    assert why[str(Path(cut).relative_to("objects")) + ".why"].startswith("unreadable: (7FE0,0010) PixelData")
    assert why[str(Path(elsewhere).relative_to("objects")) + ".why"] == (
        f"SOP Instance UID {kept_row.sop_instance_uid} is indexed at {kept_row.path}")
    assert "do not match its path" in why[str(Path(misnamed).relative_to("objects")) + ".why"]
    assert {str(p.relative_to(node.data)) for p in files_under(objects)} == {kept_row.path, whole}
    # a clean stop leaves nothing to check
    assert node.stop() == 0, node.output()[-4000:]
    node.start()
    clean = "crash recovery (last stop was clean): 0 file(s) in objects/ checked"
    assert node.logged(clean), node.output()[-4000:]


def _sender(port: int, files: list[Path], acked: list[str], ae_title: str) -> None:
    """Send files one by one until the node dies; remember what was acknowledged (0x0000 or 0xB0xx)."""
    _config.STORE_SEND_CHUNKED_DATASET = True
    ae = AE(ae_title=ae_title)
    ae.add_requested_context(MR, "1.2.840.10008.1.2.1")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    while files:
        assoc = ae.associate("127.0.0.1", port, ae_title="PERFNODE")
        if not assoc.is_established:
            return
        try:
            while files and assoc.is_established:
                f = files[0]
                rsp = assoc.send_c_store(f)
                if rsp and "Status" in rsp and (rsp.Status == 0 or rsp.Status & 0xF000 == 0xB000):
                    acked.append(f.stem)
                    files.pop(0)
                elif not assoc.is_established:
                    return
        except Exception:  # noqa: BLE001 - the node was killed mid-request
            return
        finally:
            if assoc.is_established:
                assoc.release()


def kill_run(node, tmp_path: Path, senders: int, per_sender: int, kill_after: float, seed: int) -> dict:
    """Start ``senders`` threads sending, kill -9 the node after ``kill_after`` s, restart; figures."""
    folders = []
    for i in range(senders):
        study = generate_uid()
        files = []
        for k in range(per_sender):
            ds = conformant_mr(rows=64, columns=64, seed=seed * 1000 + i * 100 + k, study=study)
            path = tmp_path / f"r{seed}" / f"s{i}" / f"{ds.SOPInstanceUID}.dcm"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(part10(ds))
            files.append(path)
        folders.append(files)
    acked: list[list[str]] = [[] for _ in range(senders)]
    threads = [threading.Thread(target=_sender, args=(node.port, list(files), acked[i], f"SENDER{i}"))
               for i, files in enumerate(folders)]
    for t in threads:
        t.start()
    time.sleep(kill_after)
    node.kill()
    for t in threads:
        t.join(60)
    node.start()
    rows = instances(node.database_url)
    acknowledged = [uid for a in acked for uid in a]
    lost = [uid for uid in acknowledged if uid not in rows]
    corrupt = [uid for uid in acknowledged if uid in rows and oracle(node.data / rows[uid].path) is not None]
    indexed_paths = {r.path for r in rows.values()}
    orphans = [p for p in files_under(node.data / "objects")
               if str(p.relative_to(node.data)) not in indexed_paths]
    line = next((ln for ln in node.output().splitlines()[::-1] if "crash recovery (" in ln), "")
    return {"acknowledged": len(acknowledged), "lost": lost, "corrupt": corrupt, "orphans": orphans,
            "indexed": len(rows), "recovery": line}


@pytest.mark.slow
def test_kill_9_under_concurrent_senders_loses_nothing_acknowledged_leaves_no_orphan(node_factory, tmp_path):
    node = node_factory()
    total = 0
    for run in range(2):
        got = kill_run(node, tmp_path, senders=4, per_sender=60, kill_after=2.0 + run, seed=run)
        assert got["lost"] == [] and got["corrupt"] == [] and got["orphans"] == [], got
        assert "crash recovery (files since the unclean run started)" in got["recovery"], got["recovery"]
        total += got["acknowledged"]
    assert total > 0  # objects were acknowledged before each kill
    assert files_under(node.data / "tmp") == []


def test_state_marker_follows_the_node(node_factory):
    node = node_factory()
    marker = node.data / "state" / "running"
    assert json.loads(marker.read_text())["started"] > time.time() - 600
    node.stop()
    assert not marker.exists()
    shutil.rmtree(node.data / "state")  # a data folder from before recovery existed: everything checked
    node.start()
    assert node.logged("crash recovery (every file): 0 file(s) in objects/ checked")
