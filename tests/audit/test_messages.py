"""Each audit message perfnode writes is valid against the DICOM audit message schema (PS3.15 A.5.1)
and carries what PS3.15 A.5.3 asks of its kind; the trail writes one RFC 5424 line per message."""

from __future__ import annotations

import base64
import re
import socket

import pytest
from lxml import etree

from perfnode.audit import messages as m
from perfnode.audit.trail import AuditTrail
from tests.audit.schema import validate

NODE = m.Participant("PERFNODE", "10.1.2.3")
PEER = m.Participant("CT1", "192.168.7.9")
STUDY = m.StudyRef("1.2.3.4", {"1.2.840.10008.5.1.4.1.1.4.1": 30, "1.2.840.10008.5.1.4.1.1.30": 7},
                   accession="ACC12", patient_id="PID-1", patient_name="Doe^Jane")


def all_messages() -> dict[str, m.AuditMessage]:
    return {
        "start": m.application_activity(True, NODE, launcher="root"),
        "stop": m.application_activity(False, NODE),
        "login": m.user_authentication(True, PEER, NODE),
        "logout": m.user_authentication(False, PEER, NODE),
        "refused": m.user_authentication(True, PEER, NODE, m.MINOR_FAILURE, "calling AE not allowed"),
        "alert": m.security_alert(m.NODE_AUTHENTICATION, NODE, "CT1@192.168.7.9",
                                  "calling AE 'CT1' from 192.168.7.9 is bound to 10.0.0.5"),
        "stored": m.instances_transferred("C", PEER, NODE, STUDY, requestor="source"),
        "moved": m.instances_transferred("R", NODE, m.Participant("VIEWER", "10.9.9.9"), STUDY,
                                         requestor="other", other=PEER),
        "query": m.query(PEER, NODE, "1.2.840.10008.5.1.4.1.2.2.1", b"\x08\x00\x52\x00CS\x06\x00STUDY ",
                         "1.2.840.10008.1.2.1"),
    }


@pytest.mark.parametrize("name", list(all_messages()))
def test_message_is_valid_against_the_schema(name, audit_schema):
    validate(audit_schema, all_messages()[name].to_bytes())


def test_the_schema_refuses_a_broken_message(audit_schema):
    xml = etree.fromstring(all_messages()["stored"].to_bytes())
    xml.remove(xml.find("EventIdentification"))  # the event must be identified
    with pytest.raises(AssertionError, match="not a valid DICOM audit message"):
        validate(audit_schema, etree.tostring(xml))


def test_instances_transferred_names_participants_study_and_patient():
    xml = etree.fromstring(all_messages()["moved"].to_bytes())
    ev = xml.find("EventIdentification")
    assert ev.get("EventActionCode") == "R" and ev.find("EventID").get("csd-code") == "110104"
    def role(p):
        return p.find("RoleIDCode").get("csd-code") if p.find("RoleIDCode") is not None else None

    roles = {p.get("UserID"): (role(p), p.get("UserIsRequestor"), p.get("NetworkAccessPointID"))
             for p in xml.findall("ActiveParticipant")}
    assert roles == {"PERFNODE": ("110153", "false", "10.1.2.3"), "VIEWER": ("110152", "false", "10.9.9.9"),
                     "CT1": (None, "true", "192.168.7.9")}
    study, patient = xml.findall("ParticipantObjectIdentification")
    assert study.get("ParticipantObjectID") == "1.2.3.4"
    counts = {c.get("UID"): int(c.get("NumberOfInstances")) for c in study.iter("SOPClass")}
    assert counts == STUDY.sop_classes
    assert study.find("ParticipantObjectDescription/Accession").get("Number") == "ACC12"
    assert patient.get("ParticipantObjectID") == "PID-1"
    assert patient.find("ParticipantObjectName").text == "Doe^Jane"


def test_query_carries_its_keys():
    xml = etree.fromstring(all_messages()["query"].to_bytes())
    obj = xml.find("ParticipantObjectIdentification")
    assert base64.b64decode(obj.find("ParticipantObjectQuery").text).endswith(b"STUDY ")
    detail = obj.find("ParticipantObjectDetail")
    assert detail.get("type") == "TransferSyntax"
    assert base64.b64decode(detail.get("value")) == b"1.2.840.10008.1.2.1"


def test_no_line_break_survives_into_a_message(audit_schema):
    msg = m.security_alert(m.USE_OF_RESTRICTED_FUNCTION, NODE, "X@1.2.3.4", "line one\nline two\r\x00")
    data = msg.to_bytes()
    assert b"\n" not in data and b"\r" not in data
    validate(audit_schema, data)


RFC5424 = re.compile(
    r"^<(\d+)>1 (\S+) (\S+) perfnode (\d+) IHE\+RFC-3881 - \ufeff(<AuditMessage>.*</AuditMessage>)$")


def test_trail_writes_one_rfc5424_line_per_message(tmp_path, audit_schema):
    trail = AuditTrail(tmp_path / "audit")
    msgs = all_messages()
    for msg in msgs.values():
        trail.emit(msg)
    trail.close()
    files = list((tmp_path / "audit").glob("audit-*.log"))
    assert len(files) == 1
    lines = files[0].read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(msgs)
    for line, msg in zip(lines, msgs.values(), strict=True):
        match = RFC5424.match(line)
        assert match, line
        assert int(match.group(1)) == 10 * 8 + msg.severity  # facility authpriv
        assert match.group(3) == socket.gethostname()
        validate(audit_schema, match.group(5).encode("utf-8"))
