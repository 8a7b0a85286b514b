"""The conformance statement's tables are generated from the code and cannot drift."""

from __future__ import annotations

from pynetdicom import AllStoragePresentationContexts

from perfnode import conformance
from perfnode.config import Settings
from perfnode.net import store


def test_committed_statement_matches_the_code():
    text = conformance.STATEMENT.read_text()
    assert conformance.render(text) == text, "run: python -m perfnode.conformance"


def test_statement_lists_every_storage_class_and_transfer_syntax():
    text = conformance.STATEMENT.read_text()
    for cx in AllStoragePresentationContexts:
        assert f"| store | {cx.abstract_syntax.name} | {cx.abstract_syntax} | SCP |" in text
    for ts in store.TRANSFER_SYNTAXES:
        assert f"| store | {ts.name} | {ts} |" in text
    assert "| Maximum PDU length received (default, bytes) | 262144 |" in text


def test_store_accepts_all_storage_classes_with_the_usual_transfer_syntaxes():
    cxs = store.contexts(Settings())
    assert len(cxs) == len(AllStoragePresentationContexts) > 120
    uids = {c.abstract_syntax for c in cxs}
    for needed in ("1.2.840.10008.5.1.4.1.1.4.1", "1.2.840.10008.5.1.4.1.1.2.1",
                   "1.2.840.10008.5.1.4.1.1.4.3", "1.2.840.10008.5.1.4.1.1.4.4",
                   "1.2.840.10008.5.1.4.1.1.30", "1.2.840.10008.5.1.4.1.1.88.22"):
        assert needed in uids
    assert {len(c.transfer_syntaxes) for c in cxs} == {13}
