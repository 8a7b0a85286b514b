"""The one place perfnode gets a pynetdicom AE or an association, as SCU and as SCP.

Every path that talks DICOM over the network (the server, ``send``/``echo``/``find``/``move``/``get``/
``commit``, pipeline delivery, storage-commitment reports, C-MOVE sub-associations) gets its AE from
:func:`make_ae` (or :func:`server_ae`) and opens associations with :func:`associate` (or hands
:func:`sub_association_args` to pynetdicom for the sub-associations it opens itself). Settings that
apply to every association — timeouts, PDU size, the event-driven reactors, and later TLS and the
association policy — are applied here and nowhere else.
"""

from __future__ import annotations

import secrets
import socket
import ssl
import threading
from collections.abc import Callable, Iterable
from typing import Any

from pydicom.uid import UID
from pynetdicom import AE
from pynetdicom.association import Association

from perfnode.config import Peer, Settings
from perfnode.errors import CommandError
from perfnode.net import reactor, tls
from perfnode.net.context import Context


class AssociationFailed(CommandError, RuntimeError):
    """The peer could not be reached or refused the association (the message names it)."""


_CLIENT_TLS: dict[tuple[Any, ...], ssl.SSLContext] = {}
_CLIENT_TLS_LOCK = threading.Lock()


def client_tls(settings: Settings) -> ssl.SSLContext:
    """The TLS context for associations to ``tls = true`` peers ([tls] ca, cert, key), made once."""
    t = settings.tls
    key = (t.ca, t.cert, t.key, t.verify_peer_hostname)
    with _CLIENT_TLS_LOCK:
        if key not in _CLIENT_TLS:
            _CLIENT_TLS[key] = tls.client_context(t.ca, t.cert, t.key, t.verify_peer_hostname)
        return _CLIENT_TLS[key]


def tls_args(settings: Settings, peer: Peer) -> tuple[ssl.SSLContext, str] | None:
    """pynetdicom's ``tls_args`` for ``peer``: ``None`` unless it is marked ``tls = true``."""
    return (client_tls(settings), peer.host) if peer.tls else None


def where(peer: Peer) -> str:
    return f"{peer.ae_title}@{peer.host}:{peer.port}" + (" (TLS)" if peer.tls else "")


def resolve(peer: Peer) -> None:
    """Fail in one line naming the host when the peer's host name does not resolve."""
    try:
        socket.getaddrinfo(peer.host, peer.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise AssociationFailed(f"{where(peer)}: unknown host {peer.host!r} ({exc.strerror})") from None


def make_ae(settings: Settings) -> AE:
    """An AE with our AE title, the configured timeouts and maximum PDU, on the event-driven reactors."""
    reactor.install()
    ae = AE(ae_title=settings.ae_title)
    ae.acse_timeout = settings.acse_timeout
    ae.dimse_timeout = settings.dimse_timeout
    ae.network_timeout = settings.network_timeout
    ae.maximum_pdu_size = settings.max_pdu
    return ae


def server_ae(settings: Settings, contexts: Iterable[Context]) -> AE:
    """The node's SCP AE: ``contexts`` accepted, association limit and calling-AE policy applied."""
    ae = make_ae(settings)
    ae.maximum_associations = settings.max_associations
    if settings.require_known_peers:
        # An empty list would disable the check: with no known peers, use an unguessable title.
        ae.require_calling_aet = list(settings.peers) or [secrets.token_hex(8).upper()]
    for cx in contexts:
        ae.add_supported_context(cx.abstract_syntax, list(cx.transfer_syntaxes),
                                 scu_role=cx.scu_role, scp_role=cx.scp_role)
    return ae


def associate(ae: AE, peer: Peer, settings: Settings | None = None, **kwargs: Any) -> Association:
    """An established association with ``peer`` (raises :class:`AssociationFailed` naming it), over TLS
    when the peer is marked ``tls = true`` (``settings`` give the CA and our certificate)."""
    resolve(peer)
    if peer.tls:
        kwargs["tls_args"] = tls_args(settings or Settings(), peer)
    assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title, **kwargs)
    if not assoc.is_established:
        refused = assoc.rejected_contexts if assoc.is_aborted and not assoc.accepted_contexts else []
        if refused:
            names = sorted({UID(cx.abstract_syntax).name for cx in refused})
            what = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            why = f"the peer accepted none of the presentation contexts proposed ({what})"
        else:
            why = ("the peer rejected it" if assoc.is_rejected
                   else "no connection, or the peer closed it")
        raise AssociationFailed(f"no association with {where(peer)}: {why}")
    return assoc


def sub_association_args(settings: Settings, peer: Peer) -> dict[str, Any]:
    """Keyword arguments for an association pynetdicom opens on our behalf (C-MOVE sub-operations)."""
    args: dict[str, Any] = {"max_pdu": settings.max_pdu}
    if peer.tls:
        args["tls_args"] = tls_args(settings, peer)
    return args


def listen(settings: Settings, port: int, contexts: Iterable[Context],
           handlers: list[tuple[Any, Callable[..., Any]]], host: str = "") -> Any:
    """A small non-blocking SCP for an SCU command (e.g. a storage-commitment report on a new association)."""
    ae = make_ae(settings)
    for cx in contexts:
        ae.add_supported_context(cx.abstract_syntax, list(cx.transfer_syntaxes),
                                 scu_role=cx.scu_role, scp_role=cx.scp_role)
    return ae.start_server((host, port), block=False, evt_handlers=handlers)
