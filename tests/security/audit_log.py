"""Read a node's audit trail (``DATA/audit/audit-*.log``) back in the tests."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from pathlib import Path

from lxml import etree


@dataclass
class Event:
    event: str  # EventID originalText, e.g. "Security Alert"
    types: list[str]  # EventTypeCode originalTexts
    action: str
    outcome: str
    description: str  # EventOutcomeDescription
    participants: list[dict[str, str]]
    objects: list[etree._Element]
    xml: bytes

    def object_ids(self) -> list[str]:
        return [o.get("ParticipantObjectID") for o in self.objects]

    def query_bytes(self) -> bytes:
        q = self.objects[0].find("ParticipantObjectQuery")
        return base64.b64decode(q.text) if q is not None else b""


def audit_lines(data: Path) -> list[str]:
    return [ln for f in sorted((data / "audit").glob("audit-*.log"))
            for ln in f.read_text(encoding="utf-8").splitlines()]


def parse(line: str) -> Event:
    xml = line[line.index("<AuditMessage"):].encode("utf-8")
    doc = etree.fromstring(xml)
    ident = doc.find("EventIdentification")
    desc = ident.find("EventOutcomeDescription")
    return Event(
        event=ident.find("EventID").get("originalText"),
        types=[t.get("originalText") for t in ident.findall("EventTypeCode")],
        action=ident.get("EventActionCode", ""), outcome=ident.get("EventOutcomeIndicator"),
        description=desc.text if desc is not None else "",
        participants=[dict(p.attrib) for p in doc.findall("ActiveParticipant")],
        objects=doc.findall("ParticipantObjectIdentification"), xml=xml)


def audit_events(data: Path, wait_for: str | None = None, timeout: float = 10.0) -> list[Event]:
    """The node's audit events so far (waiting up to ``timeout`` s for one whose event is ``wait_for``:
    some are written when an association ends, just after the peer saw its response)."""
    deadline = time.monotonic() + timeout
    while True:
        events = [parse(ln) for ln in audit_lines(data)]
        if wait_for is None or any(e.event == wait_for for e in events) or time.monotonic() > deadline:
            return events
        time.sleep(0.1)
