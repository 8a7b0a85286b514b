"""DICOM audit messages (PS3.15 A.5.3), as XML in the schema of PS3.15 A.5.1.

Each function returns an :class:`AuditMessage`: the XML element and the RFC 5424 severity. Who took
part is a :class:`Participant` (a DICOM application: AE title and network address); what was touched is
a :class:`StudyRef` (study, its SOP classes with instance counts, the patient) or a query.
Codes are DCM (PS3.16) and RFC-3881 ones as PS3.15 A.5.3 prescribes.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from xml.etree import ElementTree as ET

#: Event outcome indicators (PS3.15 A.5.1): success, minor failure, serious failure, major failure.
SUCCESS, MINOR_FAILURE, SERIOUS_FAILURE, MAJOR_FAILURE = "0", "4", "8", "12"
#: RFC 5424 severities used: warning for failures and alerts, notice otherwise (ITI-20 uses notice).
WARNING, NOTICE = 4, 5

Code = tuple[str, str, str]  # (code, coding scheme, meaning)
APPLICATION_ACTIVITY: Code = ("110100", "DCM", "Application Activity")
INSTANCES_TRANSFERRED: Code = ("110104", "DCM", "DICOM Instances Transferred")
QUERY: Code = ("110112", "DCM", "Query")
SECURITY_ALERT: Code = ("110113", "DCM", "Security Alert")
USER_AUTHENTICATION: Code = ("110114", "DCM", "User Authentication")
APPLICATION_START: Code = ("110120", "DCM", "Application Start")
APPLICATION_STOP: Code = ("110121", "DCM", "Application Stop")
LOGIN: Code = ("110122", "DCM", "Login")
LOGOUT: Code = ("110123", "DCM", "Logout")
NODE_AUTHENTICATION: Code = ("110126", "DCM", "Node Authentication")
USE_OF_RESTRICTED_FUNCTION: Code = ("110132", "DCM", "Use of Restricted Function")
APPLICATION: Code = ("110150", "DCM", "Application")
APPLICATION_LAUNCHER: Code = ("110151", "DCM", "Application Launcher")
DESTINATION: Code = ("110152", "DCM", "Destination Role ID")
SOURCE: Code = ("110153", "DCM", "Source Role ID")
STUDY_INSTANCE_UID: Code = ("110180", "DCM", "Study Instance UID")
SOP_CLASS_UID: Code = ("110181", "DCM", "SOP Class UID")
NODE_ID: Code = ("110182", "DCM", "Node ID")
PATIENT_NUMBER: Code = ("2", "RFC-3881", "Patient Number")


def _line(text: str) -> str:
    """Text for one RFC 5424 line: no line breaks or other control characters."""
    return "".join(c if c.isprintable() else " " for c in text).strip()


def _address_type(address: str) -> str:
    """NetworkAccessPointTypeCode: 2 for an IP address, 1 for a machine name."""
    try:
        ipaddress.ip_address(address.split("%")[0])
        return "2"
    except ValueError:
        return "1"


@dataclass(frozen=True)
class Participant:
    """A DICOM application taking part: its AE title and where it is (IP address or host name)."""

    ae_title: str
    address: str = ""
    #: For a process: its identity (PS3.15 A.5.2.1); default: the AE title.
    user_id: str = ""

    def element(self, requestor: bool, role: Code | None) -> ET.Element:
        ae = _line(self.ae_title) or "?"
        el = ET.Element("ActiveParticipant", {
            "UserID": _line(self.user_id) or ae,
            "AlternativeUserID": f"AETITLES={ae}",  # PS3.15 A.5.2.2
            "UserIsRequestor": "true" if requestor else "false",
        })
        if self.address:
            el.set("NetworkAccessPointID", _line(self.address))
            el.set("NetworkAccessPointTypeCode", _address_type(self.address))
        if role is not None:
            el.append(_code("RoleIDCode", role))
        return el


@dataclass
class StudyRef:
    """A study touched by an event: its UID, instances per SOP class, accession number and patient."""

    study_uid: str
    sop_classes: dict[str, int] = field(default_factory=dict)
    accession: str = ""
    patient_id: str = ""
    patient_name: str = ""
    description: str = ""

    def add(self, sop_class_uid: str, count: int = 1) -> None:
        self.sop_classes[sop_class_uid] = self.sop_classes.get(sop_class_uid, 0) + count

    @property
    def instances(self) -> int:
        return sum(self.sop_classes.values())


@dataclass
class AuditMessage:
    """One audit message: the ``AuditMessage`` element, its RFC 5424 severity and a short summary."""

    xml: ET.Element
    severity: int = NOTICE

    def to_bytes(self) -> bytes:
        """The XML as UTF-8, on one line."""
        return ET.tostring(self.xml, encoding="utf-8", xml_declaration=False)

    @property
    def event(self) -> str:
        event_id = self.xml.find("EventIdentification/EventID")
        return event_id.get("originalText", "") if event_id is not None else ""


def _code(tag: str, code: Code) -> ET.Element:
    return ET.Element(tag, {"csd-code": code[0], "codeSystemName": code[1], "originalText": code[2]})


def audit_source_id() -> str:
    """AuditSourceID: this machine's name (PS3.15 A.5.2: the system that detected the event)."""
    return os.environ.get("PERFNODE_AUDIT_SOURCE_ID") or socket.gethostname() or "perfnode"


def _message(event: Code, action: str, outcome: str, types: Iterable[Code] = (),
             description: str = "", when: datetime | None = None) -> ET.Element:
    msg = ET.Element("AuditMessage")
    ident = ET.SubElement(msg, "EventIdentification", {
        "EventActionCode": action,
        "EventDateTime": (when or datetime.now(UTC)).isoformat(timespec="milliseconds"),
        "EventOutcomeIndicator": outcome,
    })
    ident.append(_code("EventID", event))
    for t in types:
        ident.append(_code("EventTypeCode", t))
    if description:
        ET.SubElement(ident, "EventOutcomeDescription").text = _line(description)
    return msg


def _finish(msg: ET.Element, objects: Iterable[ET.Element] = ()) -> ET.Element:
    source = ET.SubElement(msg, "AuditSourceIdentification", {"AuditSourceID": _line(audit_source_id())})
    source.append(ET.Element("AuditSourceTypeCode", {"csd-code": "4"}))  # application server process
    for obj in objects:
        msg.append(obj)
    return msg


def _severity(outcome: str) -> int:
    return NOTICE if outcome == SUCCESS else WARNING


def _study_objects(study: StudyRef) -> list[ET.Element]:
    """The study (with its SOP classes and counts) and its patient, as participant objects."""
    st = ET.Element("ParticipantObjectIdentification", {
        "ParticipantObjectID": _line(study.study_uid), "ParticipantObjectTypeCode": "2",
        "ParticipantObjectTypeCodeRole": "3"})
    st.append(_code("ParticipantObjectIDTypeCode", STUDY_INSTANCE_UID))
    # the schema (A.5.1) asks for a name or a query in every participant object
    ET.SubElement(st, "ParticipantObjectName").text = _line(study.description) or _line(study.study_uid)
    desc = ET.SubElement(st, "ParticipantObjectDescription")
    if study.accession:
        ET.SubElement(desc, "Accession", {"Number": _line(study.accession)})
    for uid, n in sorted(study.sop_classes.items()):
        ET.SubElement(desc, "SOPClass", {"UID": uid, "NumberOfInstances": str(n)})
    out = [st]
    if study.patient_id or study.patient_name:
        pat = ET.Element("ParticipantObjectIdentification", {
            "ParticipantObjectID": _line(study.patient_id) or "?", "ParticipantObjectTypeCode": "1",
            "ParticipantObjectTypeCodeRole": "1"})
        pat.append(_code("ParticipantObjectIDTypeCode", PATIENT_NUMBER))
        ET.SubElement(pat, "ParticipantObjectName").text = (_line(study.patient_name)
                                                            or _line(study.patient_id))
        out.append(pat)
    return out


def application_activity(started: bool, application: Participant, launcher: str = "",
                         outcome: str = SUCCESS, description: str = "") -> AuditMessage:
    """A.5.3.1 Application Activity: the node started or stopped."""
    msg = _message(APPLICATION_ACTIVITY, "E", outcome, [APPLICATION_START if started else APPLICATION_STOP],
                   description)
    msg.append(application.element(requestor=False, role=APPLICATION))
    if launcher:
        msg.append(Participant(launcher, user_id=launcher).element(requestor=True, role=APPLICATION_LAUNCHER))
    return AuditMessage(_finish(msg), _severity(outcome))


def user_authentication(login: bool, user: Participant, node: Participant, outcome: str = SUCCESS,
                        description: str = "") -> AuditMessage:
    """A.5.3.12 User Authentication: a peer's association accepted (Login), ended (Logout) or refused
    (Login, failure). ``user`` is the peer (requestor), ``node`` the authenticating node."""
    msg = _message(USER_AUTHENTICATION, "E", outcome, [LOGIN if login else LOGOUT], description)
    msg.append(user.element(requestor=True, role=None))
    msg.append(node.element(requestor=False, role=None))
    return AuditMessage(_finish(msg), _severity(outcome))


def security_alert(alert: Code, reporter: Participant, subject: str, description: str,
                   outcome: str = MINOR_FAILURE, performer: Participant | None = None) -> AuditMessage:
    """A.5.3.11 Security Alert: a refused peer, a protocol attack (e.g. a PDU bomb), a refused request.
    ``subject`` is the node the alert is about (``AE@address`` or an address)."""
    msg = _message(SECURITY_ALERT, "E", outcome, [alert], description)
    msg.append(reporter.element(requestor=False, role=APPLICATION))
    if performer is not None:
        msg.append(performer.element(requestor=True, role=None))
    obj = ET.Element("ParticipantObjectIdentification", {
        "ParticipantObjectID": _line(subject) or "?", "ParticipantObjectTypeCode": "2",
        "ParticipantObjectTypeCodeRole": "13"})  # security resource
    obj.append(_code("ParticipantObjectIDTypeCode", NODE_ID))
    ET.SubElement(obj, "ParticipantObjectName").text = _line(subject) or "?"
    ET.SubElement(obj, "ParticipantObjectDetail", {
        "type": "Alert Description", "value": base64.b64encode(_line(description).encode()).decode()})
    return AuditMessage(_finish(msg, [obj]), WARNING)


def instances_transferred(action: str, source: Participant, destination: Participant, study: StudyRef,
                          requestor: str = "destination", other: Participant | None = None,
                          outcome: str = SUCCESS, description: str = "") -> AuditMessage:
    """A.5.3.7 DICOM Instances Transferred, for one study: ``action`` "C" when received and stored,
    "R" when sent out (C-MOVE, C-GET, pipeline delivery), "U" when stored again (replaced).
    ``requestor`` names who asked ("source", "destination" or "other", e.g. a C-MOVE requestor)."""
    if action not in {"C", "R", "U"}:
        raise ValueError(f"EventActionCode {action!r}: C, R or U (PS3.15 A.5.3.7)")
    msg = _message(INSTANCES_TRANSFERRED, action, outcome, (), description)
    msg.append(source.element(requestor=requestor == "source", role=SOURCE))
    msg.append(destination.element(requestor=requestor == "destination", role=DESTINATION))
    if other is not None:
        msg.append(other.element(requestor=requestor == "other", role=None))
    return AuditMessage(_finish(msg, _study_objects(study)), _severity(outcome))


def query(requestor: Participant, responder: Participant, sop_class_uid: str, identifier: bytes,
          transfer_syntax_uid: str, outcome: str = SUCCESS, description: str = "") -> AuditMessage:
    """A.5.3.10 Query: a C-FIND received, with its identifier (the query keys) as encoded on the wire."""
    msg = _message(QUERY, "E", outcome, (), description)
    msg.append(requestor.element(requestor=True, role=SOURCE))
    msg.append(responder.element(requestor=False, role=DESTINATION))
    obj = ET.Element("ParticipantObjectIdentification", {
        "ParticipantObjectID": sop_class_uid, "ParticipantObjectTypeCode": "2",
        "ParticipantObjectTypeCodeRole": "3"})
    obj.append(_code("ParticipantObjectIDTypeCode", SOP_CLASS_UID))
    ET.SubElement(obj, "ParticipantObjectQuery").text = base64.b64encode(identifier).decode()
    ET.SubElement(obj, "ParticipantObjectDetail", {
        "type": "TransferSyntax", "value": base64.b64encode(transfer_syntax_uid.encode()).decode()})
    return AuditMessage(_finish(msg, [obj]), _severity(outcome))
