"""The DICOM server: one pynetdicom AE built from a list of service modules.

Contract for service modules (kept stable; other parts of perfnode add their own):

* :data:`SERVICES` lists module names. Each module exposes

  - ``contexts(settings) -> list[Context]``: the presentation contexts it accepts
    (abstract syntax, transfer syntaxes, SCP/SCU role selection). The conformance statement
    (:mod:`perfnode.conformance`) is generated from the same lists.
  - ``handlers(ctx: NodeContext) -> list[tuple[event, handler]]``: pynetdicom event bindings; a
    handler translates a DIMSE request into a call on ``ctx.archive`` and a status, nothing else.
  - optionally ``setup(ctx: NodeContext) -> None``: called once before the port opens.
  - optionally ``start(ctx: NodeContext) -> Callable[[], None] | None``: a background worker
    started with the server; the returned callable stops it at shutdown.

* :func:`start_server` returns a :class:`RunningServer` (non-blocking, ``.stop()``, ``.port``,
  ``.ctx``). The node as a whole (archive, server, pipeline) is composed in :mod:`perfnode.node`.

Socket tuning: every accepted connection gets ``TCP_NODELAY``, and on Linux ``TCP_QUICKACK`` is
re-armed before each receive, so a peer that waits for our ACK (delayed-ACK + Nagle) is never
held up ~40–200 ms per object.

Connections pass the association gate (:mod:`perfnode.net.gate`: a whole A-ASSOCIATE-RQ within the
ARTIM timeout, bounded numbers waiting, per host) and take a slot (:mod:`perfnode.net.admission`)
only when negotiated; PDUs are read with length and time limits (:mod:`perfnode.net.pdu`).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import resource
import socket
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pydicom.config
from pynetdicom import AE, evt
from pynetdicom.transport import AssociationSocket

from perfnode import audit
from perfnode.archive.facade import Archive
from perfnode.audit.trail import AuditTrail
from perfnode.config import Settings
from perfnode.errors import CommandError
from perfnode.net import tls
from perfnode.net.admission import Admission
from perfnode.net.ae import server_ae
from perfnode.net.context import Context, NodeContext, association_stats, peer_name
from perfnode.net.gate import GatedServer, GateLimits
from perfnode.net.guard import Guard

__all__ = ["SERVICES", "Context", "RunningServer", "all_contexts", "association_stats", "build_ae",
           "quiet_libraries", "service_modules", "start_server", "tune_socket"]

log = logging.getLogger("perfnode.server")
#: ``sys.setswitchinterval`` for the node's process (Python's default is 0.005 s).
SWITCH_INTERVAL_S = 0.001
#: pynetdicom's own association limit, out of the way of :class:`~perfnode.net.admission.Admission`.
UNLIMITED_THREADS = 1 << 20

#: Service modules, in the order their contexts are offered.
SERVICES: list[str] = ["perfnode.net.echo", "perfnode.net.store",
                       "perfnode.net.find", "perfnode.net.retrieve", "perfnode.net.commitment"]


def service_modules(names: list[str] | None = None) -> list[ModuleType]:
    return [importlib.import_module(n) for n in (SERVICES if names is None else names)]


def all_contexts(settings: Settings) -> list[tuple[str, Context]]:
    """(module name, context) for every service module, in offer order."""
    return [(m.__name__, c) for m in service_modules() for c in m.contexts(settings)]


def tune_socket(assoc_sock: AssociationSocket) -> None:
    """TCP_NODELAY on (TCP_QUICKACK is re-armed before each read by :class:`~perfnode.net.pdu.PduReader`)."""
    sock = assoc_sock.socket
    if sock is None:
        return
    with contextlib.suppress(OSError):  # a non-TCP socket
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


@dataclass
class RunningServer:
    """A started DICOM server: ``stop()`` shuts it down (idempotent)."""

    settings: Settings
    ctx: NodeContext
    ae: AE
    server: Any
    stoppers: list[Callable[[], None]] = field(default_factory=list)
    #: Close the archive at stop (when :func:`start_server` opened it).
    owns_archive: bool = False
    #: The TLS port's server (``[tls] port``), if any.
    tls_server: Any = None
    _stopped: bool = False

    @property
    def tls_port(self) -> int | None:
        return int(self.tls_server.server_address[1]) if self.tls_server is not None else None

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self.tls_server is not None:
            self.tls_server.shutdown()
        self.server.shutdown()
        for stop in reversed(self.stoppers):
            try:
                stop()
            except Exception:  # noqa: BLE001
                log.exception("stopping a service failed")
        if self.owns_archive:
            self.ctx.archive.close()
        log.info("stopped %s on port %s", self.settings.ae_title, self.port)


_STARTED: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()


def _summary(event: Any) -> str:
    stats = association_stats(event.assoc)
    took = time.monotonic() - _STARTED.get(event.assoc, time.monotonic())
    counts = ", ".join(f"{k} {v}" for k, v in sorted(stats.items())) or "no requests"
    return f"{peer_name(event)} after {took:.1f} s: {counts}"


#: DIMSE requests counted for the association's log line (C-STORE-RQs are counted by the store
#: service as stored / duplicates / refused, N-ACTION and N-EVENT-REPORT by the commitment service;
#: the C-STORE-RQs a C-GET sends are not received).
_COUNTED_REQUESTS = {"C_ECHO_RQ": "C-ECHO", "C_FIND_RQ": "C-FIND", "C_MOVE_RQ": "C-MOVE",
                     "C_GET_RQ": "C-GET", "C_CANCEL_RQ": "C-CANCEL"}


def _count_request(event: Any) -> None:
    """EVT_DIMSE_RECV: count the requests an association made, for its log line."""
    name = _COUNTED_REQUESTS.get(type(event.message).__name__)
    if name is not None:
        association_stats(event.assoc)[name] += 1


def _log_handlers(settings: Settings) -> list[tuple[Any, Callable]]:
    def on_open(event: Any) -> None:
        tune_socket(event.assoc.dul.socket)

    def on_accepted(event: Any) -> None:
        _STARTED[event.assoc] = time.monotonic()
        log.debug("association accepted from %s", peer_name(event))

    def on_rejected(event: Any) -> None:
        reason = getattr(event.assoc, "reject_reason", None)
        if reason:
            log.warning("association rejected from %s: %s", peer_name(event), reason)
            return
        log.warning("association rejected from %s: calling AE not in the AE table (--require-known-peers)"
                    if settings.require_known_peers else "association rejected from %s", peer_name(event))

    def on_released(event: Any) -> None:
        log.info("association released: %s", _summary(event))

    def on_aborted(event: Any) -> None:
        log.warning("association aborted: %s", _summary(event))

    return [(evt.EVT_CONN_OPEN, on_open), (evt.EVT_ACCEPTED, on_accepted), (evt.EVT_REJECTED, on_rejected),
            (evt.EVT_RELEASED, on_released), (evt.EVT_ABORTED, on_aborted),
            (evt.EVT_DIMSE_RECV, _count_request)]


def build_ae(settings: Settings) -> AE:
    """The node's SCP AE with every service module's presentation contexts (:func:`server_ae`).

    Slots are counted by :mod:`perfnode.net.admission` (negotiated associations only), not by
    pynetdicom (which counts every connection's thread): its own limit is set out of the way."""
    ae = server_ae(settings, [cx for _name, cx in all_contexts(settings)])
    ae.maximum_associations = UNLIMITED_THREADS
    return ae


def serve_gated(ae: AE, settings: Settings, handlers: list[tuple[Any, Callable[..., Any]]],
                port: int | None = None, ssl_context: Any = None) -> GatedServer:
    """``ae.start_server(block=False)`` with the association gate and slot counting in front; on
    ``port`` (default the node's) and, with ``ssl_context``, TLS only (the gate does the handshake)."""
    limits = GateLimits(artim_timeout=settings.acse_timeout, max_pending=settings.max_pending,
                        max_pending_per_host=settings.max_pending_per_host)
    admission = Admission(settings.max_associations, settings.max_associations_per_host)
    port = settings.port if port is None else port
    what = "TLS port" if ssl_context is not None else "port"
    try:
        server = ae.make_server((settings.host, port), evt_handlers=handlers, server_class=GatedServer,
                                ssl_context=ssl_context, limits=limits, admission=admission)
    except OSError as exc:
        raise CommandError(f"cannot listen on {what} {settings.host or '*'}:{port}: "
                           f"{exc.strerror or exc}") from None
    thread = threading.Thread(target=server.serve_forever, name="AcceptorServer", daemon=True)
    thread.start()
    ae._servers.append(server)
    return server


def _one_line(record: logging.LogRecord) -> bool:
    """Logging filter: the exception's message is kept, its traceback dropped."""
    if record.exc_info and record.exc_info[1] is not None:
        record.msg = f"{record.getMessage()} ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
        record.args = ()
    record.exc_info = None
    record.exc_text = None
    return True


def _log_thread_death(args: threading.ExceptHookArgs) -> None:
    """A thread ended by an exception: one log line naming it (the node carries on)."""
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    log.critical("thread %s died: %s: %s", name, args.exc_type.__name__, args.exc_value,
                 exc_info=(args.exc_type, args.exc_value, args.exc_traceback))  # type: ignore[arg-type]


def raise_open_file_limit(want: int = 65536) -> None:
    """Raise the soft limit of open files towards the hard one: every connection is a descriptor."""
    with contextlib.suppress(ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = want if hard == resource.RLIM_INFINITY else min(want, hard)
        if soft != resource.RLIM_INFINITY and soft < target:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def quiet_libraries() -> None:
    """Malformed input is reported once, by our handlers, not by pydicom warnings or Alembic chatter."""
    warnings.filterwarnings("ignore", module=r"pydicom(\..*)?$")
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    # Its warnings are ignored anyway: do not spend time validating every value read.
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # A peer's undecodable AE title or UID, an event invalid in the current state, an exception in a
    # state machine action: pynetdicom logs them (with tracebacks) and re-raises, and
    # perfnode.net.reactor reports each in one line naming the peer. Elsewhere pynetdicom's messages
    # are kept, in one line: a malformed PDU is not a bug in the node.
    for name in ("pynetdicom.utils", "pynetdicom.fsm"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    for name in ("pynetdicom.dimse", "pynetdicom.dul", "pynetdicom.acse", "pynetdicom.association",
                 "pynetdicom.pdu", "pynetdicom.pdu_items", "pynetdicom.events", "pynetdicom.transport",
                 "pynetdicom.service_class"):
        logger = logging.getLogger(name)
        if _one_line not in logger.filters:
            logger.addFilter(_one_line)


def start_server(settings: Settings, archive: Archive | None = None,
                 trail: AuditTrail | None = None) -> RunningServer:
    """Bind the port and serve in background threads; ``archive`` is opened from the settings if not given.

    ``trail`` records the audit messages (default: the process's, :func:`perfnode.audit.current`)."""
    quiet_libraries()
    # Network threads mostly wait; when one wakes (a PDU, a response to send) it should get the GIL
    # within a millisecond rather than after the default 5 ms slice of a busy hook or query thread.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    threading.excepthook = _log_thread_death
    raise_open_file_limit()
    owns = archive is None
    if archive is None:
        archive = Archive.open(settings.data, settings.database_url, settings.duplicate_policy,
                        validation=settings.store.validation)
        archive.recover()
    ctx = NodeContext(settings=settings, archive=archive, guard=Guard(settings, trail or audit.current()))
    modules = service_modules()
    for m in modules:
        if (setup := getattr(m, "setup", None)) is not None:
            setup(ctx)
    ae = build_ae(settings)
    assert ctx.guard is not None
    handlers = ctx.guard.handlers() + _log_handlers(settings)
    for m in modules:
        handlers += m.handlers(ctx)
    tls_context = None
    if settings.tls.port is not None:
        t = settings.tls
        assert t.cert is not None and t.key is not None  # checked with the settings
        tls_context = tls.server_context(t.cert, t.key, t.ca, t.require_client_cert)
    server = serve_gated(ae, settings, handlers)
    tls_server = None
    if tls_context is not None and settings.tls.port is not None:
        try:
            tls_server = serve_gated(ae, settings, handlers, settings.tls.port, tls_context)
        except BaseException:
            server.shutdown()
            raise
    running = RunningServer(settings, ctx, ae, server, owns_archive=owns, tls_server=tls_server)
    try:
        for m in modules:
            start = getattr(m, "start", None)
            if start is not None:
                stop = start(ctx)
                if stop is not None:
                    running.stoppers.append(stop)
    except BaseException:  # a service could not start: stop the others
        running.stop()
        raise
    return running
