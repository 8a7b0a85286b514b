"""The association guard: admits or refuses each association (:mod:`perfnode.net.access`), checks each
request against the peer's permissions, and writes the audit trail of what peers do (PS3.15 A.5.3):
login/logout per association, the instances stored per study (one message per study when the
association ends), each query with its keys, the instances sent on retrieve, and a security alert for
every refusal.

Service handlers call :meth:`Guard.refuse` first (a status to answer with, or ``None``), then report
what they did (:meth:`stored`, :meth:`queried`, :meth:`retrieved`).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import evt

from perfnode.audit import messages as m
from perfnode.audit.trail import AuditTrail
from perfnode.net.access import NOT_AUTHORIZED, AccessPolicy
from perfnode.net.status import status_dataset
from perfnode.net.tls import describe as tls_describe

log = logging.getLogger("perfnode.access")

#: A-ASSOCIATE-RJ: rejected-permanent, service-user, calling AE title not recognised (PS3.8 9.3.4).
REJECT_CALLING_AE = (0x01, 0x01, 0x03)
#: A-ASSOCIATE-RJ: rejected-permanent, service-user, called AE title not recognised (PS3.8 9.3.4).
REJECT_CALLED_AE = (0x01, 0x01, 0x07)


def requestor(assoc: Any) -> m.Participant:
    """The peer that requested the association (its calling AE title is read from the A-ASSOCIATE-RQ
    while the association is still being negotiated)."""
    r = assoc.requestor
    title = r.ae_title or getattr(getattr(r, "primitive", None), "calling_ae_title", "") or ""
    return m.Participant(str(title).strip() or "?", str(r.address or ""))


def called_ae(assoc: Any) -> str:
    """The Called AE Title of the association's A-ASSOCIATE-RQ (stripped; "" when not known)."""
    primitive = getattr(assoc.requestor, "primitive", None)
    title = getattr(primitive, "called_ae_title", "") or ""
    return (title.decode("ascii", "replace") if isinstance(title, bytes) else str(title)).strip()


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value)


class Transfers:
    """Studies touched on one association, for one audit message per study when it ends."""

    def __init__(self) -> None:
        self.studies: dict[str, m.StudyRef] = {}
        self.lock = threading.Lock()

    def add(self, header: Dataset, sop_class_uid: str) -> None:
        uid = _text(header, "StudyInstanceUID") or "?"
        with self.lock:
            ref = self.studies.get(uid)
            if ref is None:
                ref = self.studies[uid] = m.StudyRef(
                    uid, accession=_text(header, "AccessionNumber"), patient_id=_text(header, "PatientID"),
                    patient_name=_text(header, "PatientName"))
            ref.add(sop_class_uid)

    def take(self) -> list[m.StudyRef]:
        with self.lock:
            out, self.studies = list(self.studies.values()), {}
            return out


class Guard:
    """One per node: the access policy and the audit trail, bound to the association events."""

    def __init__(self, settings: Any, trail: AuditTrail) -> None:
        self.settings = settings
        self.policy = AccessPolicy(settings)
        self.trail = trail
        self._stored: weakref.WeakKeyDictionary[Any, Transfers] = weakref.WeakKeyDictionary()
        self._refused: weakref.WeakSet[Any] = weakref.WeakSet()

    # --- participants -------------------------------------------------------------------------
    def node(self, assoc: Any | None = None) -> m.Participant:
        address = ""
        if assoc is not None:
            address = str(getattr(assoc.acceptor, "address", "") or "")
        return m.Participant(self.settings.ae_title, address)

    # --- association events -------------------------------------------------------------------
    def handlers(self) -> list[tuple[Any, Callable[..., Any]]]:
        return [(evt.EVT_REQUESTED, self.on_requested), (evt.EVT_ACCEPTED, self.on_accepted),
                (evt.EVT_REJECTED, self.on_rejected), (evt.EVT_RELEASED, self.on_ended),
                (evt.EVT_ABORTED, self.on_ended)]

    def on_requested(self, event: Any) -> None:
        """A-ASSOCIATE-RQ received: refuse one addressed to another Called AE Title, and a calling AE
        the AE table does not admit from this address."""
        peer = requestor(event.assoc)
        called = called_ae(event.assoc)
        rq = event.assoc.requestor
        where = f"{peer.ae_title}@{peer.address}:{rq.port}"
        if called != self.settings.ae_title and not self.policy.accept_any_called_ae:
            reason = (f"called AE title {called!r} not recognised: this node is {self.settings.ae_title!r} "
                      "([access] accept_any_called_ae accepts any)")
            rejection = REJECT_CALLED_AE
        else:
            admitted = self.policy.admit(peer.ae_title, peer.address)
            if admitted is None:
                return
            reason, rejection = admitted, REJECT_CALLING_AE
        log.warning("association rejected from %s to %s: %s", where, called, reason)
        self._refused.add(event.assoc)
        self.trail.emit(m.user_authentication(True, peer, self.node(event.assoc), m.MINOR_FAILURE, reason))
        self.alert(m.NODE_AUTHENTICATION, f"{peer.ae_title}@{peer.address}", reason)
        event.assoc.acse.send_reject(*rejection)
        # as pynetdicom does after its own rejections: stop the DUL (which sends the queued A-ASSOCIATE-RJ)
        # before the association closes the socket
        event.assoc.kill()

    def on_accepted(self, event: Any) -> None:
        sock = getattr(event.assoc.dul.socket, "socket", None)
        how = tls_describe(sock)
        if how:
            log.info("association from %s over %s", requestor(event.assoc).ae_title, how)
        self.trail.emit(m.user_authentication(True, requestor(event.assoc), self.node(event.assoc),
                                              description=f"DICOM association over {how}" if how else ""))

    def on_rejected(self, event: Any) -> None:
        if event.assoc in self._refused:
            return  # already audited by on_requested
        peer = requestor(event.assoc)
        reason = f"association from {peer.ae_title}@{peer.address} rejected (A-ASSOCIATE-RJ)"
        self.trail.emit(m.user_authentication(True, peer, self.node(event.assoc), m.MINOR_FAILURE, reason))

    def on_ended(self, event: Any) -> None:
        if event.assoc in self._refused:
            return
        peer, node = requestor(event.assoc), self.node(event.assoc)
        transfers = self._stored.pop(event.assoc, None)
        for study in transfers.take() if transfers else []:
            self.trail.emit(m.instances_transferred("C", peer, node, study, requestor="source",
                                                    description=f"{study.instances} instances stored"))
        aborted = event.event is evt.EVT_ABORTED
        self.trail.emit(m.user_authentication(False, peer, node, description="association aborted" if aborted
                                              else ""))

    # --- requests -----------------------------------------------------------------------------
    def refuse(self, event: Any, service: str) -> Dataset | None:
        """A 0x0124 status naming why, when the calling AE may not use ``service``; else ``None``."""
        peer = requestor(event.assoc)
        reason = self.policy.may(peer.ae_title, service)
        if reason is None:
            return None
        log.warning("%s from %s@%s refused: %s", service, peer.ae_title, peer.address, reason)
        self.alert(m.USE_OF_RESTRICTED_FUNCTION, f"{peer.ae_title}@{peer.address}", reason, performer=peer)
        return status_dataset(NOT_AUTHORIZED, reason)

    def alert(self, kind: m.Code, subject: str, description: str,
              performer: m.Participant | None = None) -> None:
        """A security alert (refused peer, protocol attack such as a PDU bomb, refused request)."""
        self.trail.emit(m.security_alert(kind, self.node(), subject, description, performer=performer))

    def stored(self, event: Any, header: Dataset, sop_class_uid: str) -> None:
        """An instance stored on this association (audited per study when the association ends)."""
        transfers = self._stored.get(event.assoc)
        if transfers is None:
            transfers = self._stored.setdefault(event.assoc, Transfers())
        transfers.add(header, sop_class_uid)

    def queried(self, event: Any, outcome: str = m.SUCCESS, description: str = "") -> None:
        """A C-FIND received: the query's SOP class and its identifier as encoded on the wire."""
        req = event.request
        raw = req.Identifier
        identifier = raw.getvalue() if hasattr(raw, "getvalue") else bytes(raw)
        self.trail.emit(m.query(requestor(event.assoc), self.node(event.assoc), str(req.AffectedSOPClassUID),
                                identifier, str(event.context.transfer_syntax), outcome, description))

    def retrieved(self, event: Any, destination: m.Participant, studies: Iterable[m.StudyRef],
                  how: str, requested_by_destination: bool) -> None:
        """Instances sent out on a C-MOVE (to ``destination``) or C-GET (to the requestor), per study
        (``studies`` from a :class:`Transfers` the sub-operations filled)."""
        for study in studies:
            self.trail.emit(m.instances_transferred(
                "R", self.node(event.assoc), destination, study,
                requestor="destination" if requested_by_destination else "other",
                other=None if requested_by_destination else requestor(event.assoc),
                description=f"{study.instances} instances sent by {how}"))

