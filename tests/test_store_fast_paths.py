"""The shortcuts on the C-STORE path give what the long way gives.

* the header of a received file, read past its File Meta Information, equals ``dcmread``'s;
* the per-association copy of the presentation contexts is as independent as a ``deepcopy``;
* a replaced object's PERF findings go with it, whatever the replacement is.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import generate_uid
from pynetdicom import AE, AllStoragePresentationContexts
from pynetdicom.dsutils import create_file_meta
from pynetdicom.presentation import PresentationContext

from perfnode.archive.db import Database
from perfnode.archive.findings import load_findings
from perfnode.archive.ingest import HEADER_KEYWORDS, read_header
from perfnode.errors import CannotUnderstand
from perfnode.net.reactor import copy_contexts
from perfnode.phantoms import Size, make
from tests.serve_helpers import SAMPLES, Scu, dataset_bytes, mr_object, sample


def received_file(src: Path, dest: Path, transfer_syntax: str) -> Path:
    """A file laid out as pynetdicom writes a received dataset: preamble, DICM, meta, dataset bytes."""
    meta = dcmread(src, stop_before_pixels=True)
    with open(dest, "wb") as f:
        f.write(b"\0" * 128 + b"DICM")
        write_file_meta_info(f, create_file_meta(  # type: ignore[arg-type]
            sop_class_uid=meta.SOPClassUID, sop_instance_uid=meta.SOPInstanceUID,
            transfer_syntax=transfer_syntax))
        f.write(dataset_bytes(src))
    return dest


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_received_header_read_past_the_meta_equals_dcmread(name, tmp_path):
    """Every transfer syntax (deflated falls back to dcmread): same attributes, same values."""
    path = received_file(sample(name), tmp_path / "rx.dcm", SAMPLES[name])
    fast, slow = read_header(path, SAMPLES[name]), read_header(path)
    for keyword in HEADER_KEYWORDS:
        assert fast.get(keyword) == slow.get(keyword), keyword
    assert fast.SOPInstanceUID == dcmread(sample(name)).SOPInstanceUID
    assert "PixelData" not in fast


def test_received_header_garbage_is_refused_as_by_dcmread(tmp_path):
    """Elements with an unknown VR: both readers refuse, with the same reason."""
    path = received_file(sample("MR_small.dcm"), tmp_path / "rx.dcm", SAMPLES["MR_small.dcm"])
    raw = path.read_bytes()
    cut = raw.index(b"\x08\x00\x16\x00", 200)  # (0008,0016) in the dataset, past the meta
    path.write_bytes(raw[:cut] + b"\x08\x00\x16\x00ZZ\x04\x00abcd" * 3)
    reasons = []
    for transfer_syntax in (SAMPLES["MR_small.dcm"], None):
        with pytest.raises(CannotUnderstand, match="dataset unreadable: Unknown Value Repr") as err:
            read_header(path, transfer_syntax)
        reasons.append(str(err.value))
    assert reasons[0] == reasons[1]


def test_context_copy_is_independent_and_equal():
    ae = AE()
    for cx in AllStoragePresentationContexts[:20]:
        ae.add_supported_context(cx.abstract_syntax)
    original = ae.supported_contexts
    fast, deep = copy_contexts(original), copy.deepcopy(original)
    assert [(c.abstract_syntax, c.transfer_syntax, c.scu_role, c.scp_role) for c in fast] == \
        [(c.abstract_syntax, c.transfer_syntax, c.scu_role, c.scp_role) for c in deep]
    fast[0].transfer_syntax.append("1.2.840.10008.1.2.4.50")
    fast[1].context_id = 3
    assert "1.2.840.10008.1.2.4.50" not in original[0].transfer_syntax
    assert original[1].context_id is None
    assert all(isinstance(c, PresentationContext) and c is not o for c, o in zip(fast, original, strict=True))
    assert copy_contexts({"a": [1]}) == {"a": [1]}  # anything else: a plain deepcopy


def _wait_for(predicate, timeout: float = 30.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


@pytest.mark.slow
def test_replaced_object_loses_its_perf_findings(node_factory, tmp_path):
    """A non-conforming perfusion object, then a plain MR image under the same UIDs (policy replace)."""
    node = node_factory(["--duplicate-policy", "replace"])
    _, files = make("dsc", "single", tmp_path / "bad", size=Size(nx=8, ny=8, nz=2, nt=4),
                    break_rule="image-type-value1")
    bad = dcmread(files[0], stop_before_pixels=True)
    plain = mr_object(tmp_path / "plain.dcm", study=bad.StudyInstanceUID, series=bad.SeriesInstanceUID,
                      sop=bad.SOPInstanceUID)
    db = Database(node.database_url, migrate=False)
    try:
        with Scu(node.port, [files[0], plain]) as scu:
            assert scu.store(files[0])[0] == 0
            assert _wait_for(lambda: load_findings(db, bad.SeriesInstanceUID) != [])
            (_, finding), = load_findings(db, bad.SeriesInstanceUID)
            assert (finding.tag, finding.keyword) == ("(0008,0008)", "ImageType")
            assert scu.store(plain)[0] == 0
        assert load_findings(db, bad.SeriesInstanceUID) == []  # gone with the re-indexing, at once
        other = mr_object(tmp_path / "other.dcm", seed=3, sop=generate_uid())
        with Scu(node.port, [other]) as scu:  # the node goes on; no finding for a plain image
            assert scu.store(other)[0] == 0
        assert load_findings(db, bad.SeriesInstanceUID) == []
    finally:
        db.dispose()
