"""Truncated and mislabelled objects over the network: refused by name, never acknowledged as stored.

Before (issue 17): of 1,650 mutated C-STOREs, 526 were answered Success and 311 of those failed a
full parse (Pixel Data shorter than declared, transfer syntax mislabelled, unterminated sequences,
no Rows/Columns). Now every one of those is refused (0xC000, the comment names the element and the
rule, nothing kept), and every object that is acknowledged (Success or warning) passes an outside
judge (DCMTK dcmdump + pydicom decoding its pixels).
"""

from __future__ import annotations

import random

import pytest
from sqlalchemy import select

from perfnode.archive.db import Database
from perfnode.archive.models import InstanceFinding
from tests.nodes import need, perfnode, run
from tests.reliability.mutate import TARGETED, conformant_mr, oracle, part10, random_mutation, with_sequence
from tests.serve_helpers import Scu, files_under, instances


def test_each_known_corruption_is_refused_naming_the_element_and_nothing_is_kept(node, tmp_path):
    good_ds = conformant_mr()
    good = tmp_path / "good.dcm"
    good.write_bytes(part10(good_ds))
    sent = []
    for i, (name, (make, mutate, expected)) in enumerate(sorted(TARGETED.items())):
        bad = tmp_path / f"bad{i}.dcm"
        bad.write_bytes(mutate(make()))
        with Scu(node.port, [bad, good]) as scu:
            status, comment = scu.store(bad)
            assert (status, comment[: len(expected[:64])]) == (0xC000, expected[:64]), name
            sent.append(name)
    with Scu(node.port, [good]) as scu:
        assert scu.store(good) == (0, "")  # the node serves on
    assert list(instances(node.database_url)) == [good_ds.SOPInstanceUID]
    assert [p.name for p in files_under(node.data / "objects")] == [f"{good_ds.SOPInstanceUID}.dcm"]
    assert files_under(node.data / "tmp") == []
    assert node.logged("refused: 0xC000 unreadable: (7FE0,0010) PixelData")
    assert len(sent) == len(TARGETED)


def test_readable_but_not_conformant_is_stored_with_a_warning_and_a_finding(node, tmp_path):
    ds = conformant_mr()
    del ds.ScanningSequence
    f = tmp_path / "t1.dcm"
    f.write_bytes(part10(ds))
    with Scu(node.port, [f]) as scu:
        rsp = scu.assoc.send_c_store(f)
    assert rsp.Status == 0xB007  # PS3.4 B.2.3: Data Set does not match SOP Class (warning), stored
    assert rsp.ErrorComment == "(0018,0020) ScanningSequence missing"
    assert rsp["OffendingElement"].VM == 1 and int(rsp.OffendingElement) == 0x00180020
    (row,) = instances(node.database_url).values()
    assert oracle(node.data / row.path) is None
    db = Database(node.database_url, migrate=False)
    try:
        with db.read() as s:
            found = s.execute(select(InstanceFinding)).scalars().all()
    finally:
        db.dispose()
    assert [(x.section, x.severity, x.tag, x.keyword, x.found, x.rule) for x in found] == [
        ("validation", "warning", "(0018,0020)", "ScanningSequence", "missing", "PS3.3")]
    assert "Type 1 in the mr-image module" in found[0].expected
    # DCMTK's storescu takes the warning as stored
    res = run([need("storescu"), "-v", "-aec", "PERFNODE", "127.0.0.1", str(node.port), str(f)])
    assert res.returncode == 0 and "Warning" in res.stdout + res.stderr, res.stdout + res.stderr


def test_strict_mode_refuses_what_is_not_conformant(node_factory, tmp_path):
    cfg = tmp_path / "node.toml"
    cfg.write_text('[store]\nvalidation = "strict"\n')
    node = node_factory(["--config", str(cfg)])
    ds = conformant_mr()
    del ds.ImageType
    f = tmp_path / "t1.dcm"
    f.write_bytes(part10(ds))
    with Scu(node.port, [f]) as scu:
        status, comment = scu.store(f)
    assert (status, comment) == (0xA900, "not conformant: (0008,0008) ImageType missing ([store] validatio")
    assert instances(node.database_url) == {} and files_under(node.data / "objects") == []


def test_a_misspelled_validation_mode_stops_the_node_at_start(tmp_path):
    cfg = tmp_path / "node.toml"
    cfg.write_text('[store]\nvalidation = "lenient"\n')
    res = run(perfnode("serve", "--config", str(cfg), "--port", "0", "--data", str(tmp_path / "d")),
              timeout=120)
    assert res.returncode != 0
    assert "[store] validation: expected 'strict' or 'warn', got 'lenient'" in res.stdout + res.stderr


@pytest.mark.slow
def test_random_mutations_nothing_corrupt_is_acknowledged(node, tmp_path):
    rng = random.Random(2026)
    acknowledged = refused = 0
    files = []
    for i in range(150):  # each from its own object: no two share a SOP Instance UID
        _, data = random_mutation(part10(with_sequence(conformant_mr(seed=i))), rng)
        f = tmp_path / f"m{i}.dcm"
        f.write_bytes(data)
        files.append(f)
    for f in files:
        try:
            scu = Scu(node.port, [f])
        except Exception:  # noqa: BLE001 - its File Meta Information no longer names a context
            continue
        with scu:
            try:
                status, _ = scu.store(f)
            except Exception:  # noqa: BLE001 - pynetdicom could not send it
                continue
        if status == 0 or status & 0xF000 == 0xB000:
            acknowledged += 1
        else:
            refused += 1
    rows = instances(node.database_url)
    assert len(rows) == acknowledged
    for row in rows.values():
        assert oracle(node.data / row.path) is None, row.path
    assert refused > 20 and acknowledged > 5, (refused, acknowledged)
    assert files_under(node.data / "tmp") == []
