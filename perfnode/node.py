"""The composition root: settings → archive → DICOM services, DICOMweb → pipeline, started and stopped
as one.

Nothing else wires perfnode together. ``perfnode serve`` calls :func:`run_node`; tests and benchmarks
call :func:`start_node` (non-blocking) and ``.stop()``::

    node = start_node(load_settings(config_file, port=0))
    node.port, node.archive        # the bound port; the Archive facade (perfnode.archive.facade)
    node.stop()

Who depends on whom (an import-contract test keeps it so): this module and ``commands/`` use every
layer; ``pipeline`` uses ``net`` (SCU side, to deliver maps) and the archive facade; ``net`` uses the
archive facade; ``archive`` uses ``dicom``; ``dicom`` and ``perfusion`` use nothing of ours but
``dicom.codes``.
"""

from __future__ import annotations

import faulthandler
import gc
import getpass
import logging
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from perfnode import audit
from perfnode.archive.facade import Archive
from perfnode.audit import messages
from perfnode.audit.trail import AuditTrail, SyslogSender
from perfnode.config import Settings
from perfnode.net.server import RunningServer, start_server

log = logging.getLogger("perfnode.server")

#: ``gc.set_threshold`` for the node's process (Python's default is 700, 10, 10).
GC_THRESHOLDS = (50_000, 20, 100)
#: A shutdown slower than this writes every thread's stack to stderr (and carries on).
SLOW_STOP_S = 15.0


@dataclass
class RunningNode:
    """A started node: archive, DICOM server and pipeline. ``stop()`` shuts all down (idempotent)."""

    settings: Settings
    archive: Archive
    server: RunningServer
    stoppers: list[Callable[[], None]] = field(default_factory=list)
    trail: AuditTrail | None = None
    _stopped: bool = False

    @property
    def port(self) -> int:
        return self.server.port

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.server.stop()
        for stop in reversed(self.stoppers):
            try:
                stop()
            except Exception:  # noqa: BLE001
                log.exception("stopping a service failed")
        self.archive.close()
        if self.trail is not None:
            self.trail.emit(messages.application_activity(False, _application(self.settings)))
            self.trail.close()
            if audit.current() is self.trail:
                audit.install(None)


def _application(settings: Settings) -> messages.Participant:
    return messages.Participant(settings.ae_title, socket.gethostname(),
                                user_id=f"perfnode/{settings.ae_title}")


def open_trail(settings: Settings) -> AuditTrail:
    """The audit trail the settings ask for: DATA/audit files, and a syslog collector over TLS."""
    from perfnode.net.tls import client_context

    a = settings.audit
    sender = None
    if a.syslog_host:
        cert, key = (a.syslog_cert, a.syslog_key) if a.syslog_cert else (settings.tls.cert, settings.tls.key)
        sender = SyslogSender(a.syslog_host, a.syslog_port, client_context(a.syslog_ca, cert, key))
    return AuditTrail(settings.data / "audit" if a.enabled else None, sender=sender)


def open_archive(settings: Settings, must_exist: bool = False) -> Archive:
    """The archive the settings name (data folder, index URL, duplicate policy); ``must_exist``: a
    folder or database without one is refused (:class:`~perfnode.errors.NoArchive`), not created."""
    return Archive.open(settings.data, settings.database_url, settings.duplicate_policy,
                        validation=settings.store.validation, must_exist=must_exist)


def preflight(settings: Settings) -> None:
    """Fail in one line, before anything is opened or logged, when a port the node needs is taken or
    its TLS certificate, key or CA cannot be loaded."""
    from perfnode.errors import CommandError
    from perfnode.net.tls import server_context

    t = settings.tls
    if t.port is not None and t.cert is not None and t.key is not None:
        server_context(t.cert, t.key, t.ca, t.require_client_cert)

    for what, port in (("port", settings.port), ("TLS port", settings.tls.port)):
        if not port:
            continue
        with socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
            try:
                s.bind((settings.host, port))
            except OSError as exc:
                raise CommandError(f"cannot listen on {what} {settings.host or '*'}:{port}: "
                                   f"{exc.strerror or exc}") from None


def start_node(settings: Settings) -> RunningNode:
    """Open the archive, start the DICOM server and the pipeline; return at once."""
    from perfnode.pipeline.runner import start_pipeline
    from perfnode.web.service import start as start_web

    preflight(settings)
    archive = open_archive(settings)
    archive.recover()
    archive.on_stored(archive.record_findings)  # the IHE PERF findings of every stored object
    try:
        trail = open_trail(settings)
    except BaseException:
        archive.close()
        raise
    trail.emit(messages.application_activity(True, _application(settings), _launcher()))
    try:
        server = start_server(settings, archive, trail)
    except BaseException as exc:
        trail.emit(messages.application_activity(False, _application(settings),
                                                 outcome=messages.MAJOR_FAILURE,
                                                 description=f"could not start: {exc}"))
        trail.close()
        archive.close()
        raise
    audit.install(trail)
    node = RunningNode(settings, archive, server, trail=trail)
    try:
        for start in (lambda: start_web(server.ctx), lambda: start_pipeline(archive, settings)):
            stop = start()
            if stop is not None:
                node.stoppers.append(stop)
    except BaseException:  # e.g. the web port is in use: stop what started
        node.stop()
        raise
    # Everything built so far lives as long as the node: keep it out of the cyclic collector's full
    # passes, and collect young objects less often (a full pass cost ≈ 70 ms in the middle of a
    # 50 MB C-STORE; the receive path makes little cyclic garbage).
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    log.info("%s listening on port %s (%s)", settings.ae_title, node.port, archive.describe())
    return node


def _launcher() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        return ""


def wait_for_signal(
        signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)) -> Callable[[], int]:
    """Catch ``signals`` from now on; the returned callable blocks until one has arrived and
    returns its number (it restores the previous handlers).

    The Python-level handler does nothing: the interpreter's C handler writes the signal number to
    a wake-up socket, which the main thread reads. A handler that set a ``threading.Event`` could
    deadlock if the signal landed while the main thread held that event's lock inside ``wait()``.
    """
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    previous = {s: signal.signal(s, lambda *_: None) for s in signals}

    def wait() -> int:
        try:
            while True:
                data = reader.recv(64)
                for number in data:
                    if number in signals:
                        return number
        finally:
            signal.set_wakeup_fd(previous_fd)
            for s, h in previous.items():
                signal.signal(s, h)
            reader.close()
            writer.close()

    return wait


def run_node(settings: Settings) -> None:
    """Serve until SIGTERM or SIGINT, then shut down cleanly."""
    faulthandler.enable()  # a crash, or SIGABRT from a supervisor, prints every thread's stack
    wait = wait_for_signal()  # before the port opens: a signal from then on is never lost
    node = start_node(settings)
    try:
        number = wait()
        log.info("shutting down (%s)", signal.Signals(number).name)
    finally:
        faulthandler.dump_traceback_later(SLOW_STOP_S)
        try:
            node.stop()
        finally:
            faulthandler.cancel_dump_traceback_later()
