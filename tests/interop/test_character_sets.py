"""Specific Character Set end to end, against DCMTK storescu/findscu and ``perfnode find``.

Cyrillic (ISO_IR 144), Greek (ISO_IR 126) and Japanese (ISO 2022 IR 87) names stored by storescu;
findscu sends keys encoded in those sets (the bytes, as a peer in that locale would), gets the
right patient — case-insensitively — and its answer in the same set. ``perfnode find`` used to send no
Specific Character Set, so a Cyrillic name went out as ``??????`` and matched other patients.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from pydicom import dcmread

from tests.nodes import need, perfnode, run
from tests.test_query_data import series_of, write

PATIENTS = [  # (patient ID, name, Specific Character Set)
    ("RU1", "Иванов^Иван", "ISO_IR 144"),
    ("RU2", "Петров^Пётр", "ISO_IR 144"),
    ("GR", "ΠΑΠΑΔΟΠΟΥΛΟΣ^ΓΙΩΡΓΟΣ", "ISO_IR 126"),
    ("JP", "Yamada^Tarou=山田^太郎=やまだ^たろう", ["", "ISO 2022 IR 87"]),
    ("EN", "Smith^Johnny", None),
]


@pytest.fixture(scope="module")
def names_node(tmp_path_factory):
    from tests.nodes import Node, free_port

    tmp = tmp_path_factory.mktemp("charsets")
    node = Node(data=tmp / "node", port=free_port(),
                extra=["--allow-unknown", "store,query,retrieve,commit", "--no-web"]).start()
    files: list[Path] = []
    for i, (pid, name, charset) in enumerate(PATIENTS, start=1):
        files += write(series_of(pid, name, f"1.2.9.{i}", f"1.2.9.{i}.1", 1, charset=charset), tmp / pid)
    res = run([need("storescu"), "-aec", node.ae_title, "127.0.0.1", str(node.port), *map(str, files)])
    assert res.returncode == 0, res.stdout + res.stderr
    yield node, tmp
    node.stop()


def findscu(node, out: Path, charset: str, name: bytes) -> list[Path]:
    """DCMTK findscu with the name key as raw bytes in ``charset`` (DCMTK sends -k values as given)."""
    out.mkdir()
    cmd = [need("findscu"), "-S", "-aec", node.ae_title, "-X", "-od", str(out),
           "-k", f"(0008,0005)={charset}", "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientID",
           "-k", b"PatientName=" + name, "127.0.0.1", str(node.port)]
    res = subprocess.run(cmd, capture_output=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    return sorted(out.glob("rsp*.dcm"))


def test_findscu_in_cyrillic_greek_and_japanese(names_node):
    node, tmp = names_node
    # Cyrillic, lower case against a capitalised name: only Ivanov, answered in ISO_IR 144
    [rsp] = findscu(node, tmp / "ru", "ISO_IR 144", "иванов*".encode("iso8859_5"))
    ds = dcmread(rsp)
    assert (ds.PatientID, ds.PatientName, ds.SpecificCharacterSet) == ("RU1", "Иванов^Иван", "ISO_IR 144")
    assert "Иванов^Иван".encode("iso8859_5") in rsp.read_bytes()
    [rsp] = findscu(node, tmp / "ru2", "ISO_IR 144", "ПЕТРОВ^ПЁТР".encode("iso8859_5"))
    assert dcmread(rsp).PatientID == "RU2"
    # Greek capitals stored, lower case (final sigma) asked
    [rsp] = findscu(node, tmp / "gr", "ISO_IR 126", "παπαδοπουλος*".encode("iso8859_7"))
    ds = dcmread(rsp)
    assert (ds.PatientID, ds.SpecificCharacterSet) == ("GR", "ISO_IR 126")
    assert "ΠΑΠΑΔΟΠΟΥΛΟΣ".encode("iso8859_7") in rsp.read_bytes()
    # Japanese: ideographic component in ISO 2022 IR 87 (JIS X 0208 after ESC $ B)
    [rsp] = findscu(node, tmp / "jp", "\\ISO 2022 IR 87", "*山田*".encode("iso2022_jp"))
    ds = dcmread(rsp)
    assert ds.PatientID == "JP" and list(ds.SpecificCharacterSet) == ["", "ISO 2022 IR 87"]
    assert str(ds.PatientName) == "Yamada^Tarou=山田^太郎=やまだ^たろう"
    assert b"\x1b$B" in rsp.read_bytes()


def test_perfnode_find_sends_its_character_set_and_a_cyrillic_name_matches_no_one_else(names_node):
    node, _ = names_node
    target = f"{node.ae_title}@127.0.0.1:{node.port}"

    def pids(*extra: str) -> list[str]:
        res = run(perfnode("find", target, "-k", "PatientID", *extra, "--json"))
        assert res.returncode == 0, res.stdout + res.stderr
        return sorted(r["PatientID"] for r in json.loads(res.stdout))

    assert pids("-k", "PatientName=Иванов*") == ["RU1"]  # UTF-8 by default
    assert pids("-k", "PatientName=ИВАНОВ*", "--charset", "ISO_IR 144") == ["RU1"]
    assert pids("-k", "PatientName=Петров^Пётр") == ["RU2"]
    assert pids("-k", "PatientName=ΠΑΠΑΔΟΠΟΥΛΟΣ*", "--charset", "ISO_IR 126") == ["GR"]
    # no character set: a name the default repertoire cannot carry is refused, not sent as ??????
    res = run(perfnode("find", target, "-k", "PatientName=Иванов*", "--charset", ""))
    assert res.returncode != 0 and "ISO_IR 192" in res.stderr
