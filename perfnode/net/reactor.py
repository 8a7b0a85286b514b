"""Event-driven reactors for pynetdicom associations (no 1 ms polling), and a cheap context copy.

pynetdicom 3.0 runs two threads per association that poll: the DUL reactor sleeps 1 ms whenever
it found nothing to do, and the association reactor sleeps 1 ms on every loop. On loopback that
costs a few milliseconds per C-STORE (the request waits for the DUL to wake up, the decoded
message waits for the association reactor, the response waits for the DUL again).

:func:`install` replaces both sleeps with waits that end as soon as there is work:

* the DUL waits in ``select`` on its socket and on a wake-up socket pair, written whenever a
  primitive is queued for it to send (or the association is being stopped);
* the association reactor waits on an :class:`threading.Event` set whenever the DUL hands it a
  DIMSE message or an ACSE primitive (release, abort), or stops.

Both waits keep a timeout (:data:`IDLE_TICK`) so that timers (ARTIM, network idle timeout) are
still checked while nothing happens. The loops are otherwise pynetdicom's own (``dul.py``
``run_reactor``, ``association.py`` ``_run_reactor``); the pynetdicom version is pinned in
``pyproject.toml`` because of that.

Hardening against a hostile or broken peer (each failure ends that association only, with a log
line naming the peer; the threads end cleanly and the slot is given back):

* PDUs are read by :class:`~perfnode.net.pdu.PduReader`: the length is checked against the Maximum
  Length we announced before anything is allocated, the buffer grows as data arrives, and a PDU
  must be complete within the network timeout (the ACSE timeout while negotiating);
* an exception while the state machine handles an event (a malformed DIMSE command, a PDU pynetdicom
  cannot decode) aborts the association instead of killing the DUL thread; an event that is not
  valid in the current state is dropped when the connection is closing anyway (Sta1, Sta13) and
  aborts the association otherwise;
* a DIMSE request whose service raises aborts the association;
* acceptors take a slot from the server's :class:`~perfnode.net.admission.Admission` when the
  request is negotiated, and give it back when the association ends (released, aborted or closed).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import queue
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pynetdicom.ae
import pynetdicom.association
import pynetdicom.transport
from pynetdicom import evt
from pynetdicom.acse import ACSE
from pynetdicom.association import LOGGER, Association
from pynetdicom.dul import DULServiceProvider
from pynetdicom.fsm import InvalidEventError
from pynetdicom.presentation import PresentationContext

from perfnode.net.pdu import PDU_NAMES, PduError, PduReader, PeerClosed, abort_pdu

log = logging.getLogger("perfnode.server")

#: Longest wait without an event (s): how often timers and stop flags are looked at when idle.
IDLE_TICK = 0.05
#: Used when the association has no network timeout (``None``): the longest one PDU may take.
DEFAULT_PDU_TIMEOUT = 60.0
#: State machine events that come from a primitive we queued (PS3.8 Table 9-10).
LOCAL_EVENTS = frozenset({"Evt1", "Evt7", "Evt8", "Evt9", "Evt11", "Evt14", "Evt15"})
#: States before the association is established: a PDU must come within the ACSE timeout.
NEGOTIATING = frozenset({"Sta2", "Sta3", "Sta4", "Sta5"})


def peer_of(assoc: Association) -> str:
    """``AE@host:port`` of the other side (``?`` while its AE title is unknown)."""
    remote = assoc.requestor if assoc.is_acceptor else assoc.acceptor
    try:
        ae = (remote.ae_title or "").strip() or "?"
    except Exception:  # noqa: BLE001 - not negotiated yet
        ae = "?"
    try:
        return f"{ae}@{remote.address}:{remote.port}"
    except Exception:  # noqa: BLE001
        return ae


class _WakingQueue(queue.Queue):
    """A queue that calls ``wake`` after every put."""

    def __init__(self, wake: Callable[[], None]) -> None:
        super().__init__()
        self._wake = wake

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        self._wake()


class EventDUL(DULServiceProvider):
    """pynetdicom's DUL reactor, waking on socket data or queued primitives instead of polling."""

    def __init__(self, assoc: Association) -> None:
        super().__init__(assoc)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.to_provider_queue = _WakingQueue(self.wake)
        self._spins = 0
        self._reader: PduReader | None = None

    def wake(self) -> None:
        """End the reactor's current wait (safe from any thread, also after the reactor stopped)."""
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def kill_dul(self) -> None:
        super().kill_dul()
        self.wake()

    def stop_dul(self) -> bool:
        if self.state_machine.current_state == "Sta1":
            self._kill_thread = True
            self.wake()
            if self.is_alive() and threading.current_thread() is not self:
                self.join()
            return True
        return False

    def _wait(self) -> None:
        """Sleep until the socket is readable, something is queued, or :data:`IDLE_TICK` passed."""
        if self._kill_thread or not self.to_provider_queue.empty() or not self.event_queue.empty():
            return
        if self._spins > 2:  # readable but nothing came of it: fall back to pynetdicom's poll
            time.sleep(self._run_loop_delay)
            return
        waits: list[Any] = [self._wake_r]
        transport = self.socket
        sock = transport.socket if transport is not None and transport._is_connected else None
        if self._reader is not None and self._reader.has_data():  # read ahead, or TLS-buffered
            return
        if sock is not None and sock.fileno() >= 0:
            waits.append(sock)
        try:
            ready, _, _ = select.select(waits, [], [], IDLE_TICK)
        except (OSError, ValueError):  # the socket was closed under us: let the loop find out
            time.sleep(self._run_loop_delay)
            return
        if self._wake_r in ready:
            with contextlib.suppress(OSError):
                while self._wake_r.recv(4096):
                    pass
        self._spins = self._spins + 1 if sock is not None and sock in ready else 0

    # -- reading PDUs ---------------------------------------------------------------------------
    def _pdu_reader(self) -> PduReader | None:
        transport = self.socket
        sock = transport.socket if transport is not None else None
        if sock is None:
            return None
        if self._reader is None or self._reader.sock is not sock:
            prefetched = getattr(transport, "prefetched", b"")
            self._reader = PduReader(sock, prefetched, send_timeout=self.assoc.network_timeout)
            if prefetched:
                transport.prefetched = bytearray()  # type: ignore[union-attr]
        return self._reader

    def _data_waiting(self) -> bool:
        reader = self._pdu_reader()
        return reader is not None and (reader.has_data() or bool(self.socket and self.socket.ready))

    def _is_transport_event(self) -> bool:
        """pynetdicom's check for incoming data, also seeing bytes already read ahead."""
        if self.state_machine.current_state == "Sta13":
            if self._data_waiting():
                self._read_pdu_data()
                return True
            if self.socket is not None:
                self.socket.close()
            return True
        if self._data_waiting():
            self._read_pdu_data()
            return True
        return False

    def _local_max_pdata(self) -> int:
        local = self.assoc.acceptor if self.assoc.is_acceptor else self.assoc.requestor
        return int(local.maximum_length or 0)

    def _pdu_timeout(self) -> float:
        if self.state_machine.current_state in NEGOTIATING:
            timeout = self.assoc.acse_timeout
        else:
            timeout = self.assoc.network_timeout
        return float(timeout) if timeout else DEFAULT_PDU_TIMEOUT

    def _read_pdu_data(self) -> None:
        """Read one PDU with the checks of :class:`PduReader`; queue its event (or abort)."""
        reader = self._pdu_reader()
        if reader is None:
            self.event_queue.put("Evt17")
            return
        try:
            data = reader.read(self._local_max_pdata(), self._pdu_timeout())
        except PeerClosed as exc:
            if exc.partial:
                log.warning("%s: %s", peer_of(self.assoc), exc)
            self.event_queue.put("Evt17")
            return
        except PduError as exc:
            log.warning("PDU from %s refused: %s; association aborted", peer_of(self.assoc), exc)
            self.abort_transport(exc.abort_reason)
            return
        try:
            pdu, event = self._decode_pdu(data)
        except Exception as exc:  # noqa: BLE001 - pynetdicom's decoders raise anything
            log.warning("undecodable %s from %s (%s: %s)", PDU_NAMES.get(data[0], "PDU"),
                        peer_of(self.assoc), type(exc).__name__, exc)
            self.event_queue.put("Evt19")
            return
        self.event_queue.put(event)
        self._recv_pdu.put(pdu)

    def abort_transport(self, reason: int = 0x00) -> None:
        """Send an A-ABORT (service provider) and close the connection; the state machine then
        sees the connection closed (Evt17) and tells the association (A-P-ABORT)."""
        transport = self.socket
        if transport is None:
            return
        if transport.socket is not None:
            with contextlib.suppress(OSError, ValueError):
                transport.socket.settimeout(1.0)
                transport.socket.sendall(abort_pdu(reason))
        transport.close()  # queues Evt17 when it was open
        self.assoc.is_aborted = True
        self.assoc.is_established = False

    # -- the state machine -----------------------------------------------------------------------
    def _act(self, event: str) -> None:
        """``state_machine.do_action(event)``, contained: a bad PDU or event ends this association only."""
        state = self.state_machine.current_state
        try:
            self.state_machine.do_action(event)
        except InvalidEventError:
            if event in LOCAL_EVENTS:
                with contextlib.suppress(queue.Empty):
                    self.to_provider_queue.get_nowait()  # else it would be offered again, forever
            if state in ("Sta1", "Sta13"):  # the connection is closed or closing: nothing to do
                log.debug("%s in %s dropped (%s)", event, state, peer_of(self.assoc))
                return
            log.warning("event %s not valid in state %s (%s): association aborted",
                        event, state, peer_of(self.assoc))
            self.abort_transport()
        except Exception as exc:  # noqa: BLE001 - e.g. a DIMSE command set pynetdicom cannot decode
            log.warning("%s from %s could not be handled (%s: %s): association aborted",
                        "data" if event == "Evt10" else event, peer_of(self.assoc), type(exc).__name__, exc)
            self.abort_transport()

    def run_reactor(self) -> None:
        """pynetdicom's ``DULServiceProvider.run_reactor`` with :meth:`_wait` for its sleep and
        :meth:`_act` for the state machine."""
        self._idle_timer.start()
        sleep = False
        try:
            while True:
                if not self.assoc._dul_ready.is_set():
                    self.assoc._dul_ready.set()
                    sleep = True
                if sleep:
                    self._wait()
                if self._kill_thread:
                    break
                if self.artim_timer.expired:
                    self.event_queue.put("Evt18")
                try:
                    if self._process_recv_primitive():
                        pass
                    elif self._is_transport_event():
                        self._idle_timer.restart()
                except Exception as exc:  # noqa: BLE001 - as pynetdicom: abort the association
                    log.warning("network error with %s (%s: %s): association aborted",
                                peer_of(self.assoc), type(exc).__name__, exc)
                    with contextlib.suppress(Exception):
                        if self.socket is not None and self.socket.socket is not None:
                            self.socket.socket.sendall(abort_pdu())
                        if self.socket is not None:
                            self.socket.close()
                    self.assoc.is_aborted = True
                    self.assoc.is_established = False
                    self.assoc._kill = True
                    self._kill_thread = True
                    return
                try:
                    event = self.event_queue.get(block=False)
                except queue.Empty:
                    sleep = True
                    continue
                self._spins = 0
                self._act(event)
                sleep = False
        finally:
            for s in (self._wake_r, self._wake_w):
                s.close()
            wake = getattr(self.assoc, "wake", None)
            if wake is not None:
                wake()


class GatedACSE(ACSE):
    """pynetdicom's ACSE; an acceptor first takes a slot from the server's admission control."""

    def _negotiate_as_acceptor(self) -> None:
        assoc = self.assoc
        admission = getattr(getattr(assoc, "_server", None), "admission", None)
        if admission is not None:
            rq = assoc.requestor
            refusal = admission.acquire(assoc, str(rq.address))
            if refusal is not None:
                assoc.reject_reason = refusal.reason  # type: ignore[attr-defined]
                self.requestor.ae_title = self.requestor.primitive.calling_ae_title  # type: ignore[union-attr]
                self.send_reject(0x02, 0x03, 0x02)  # rejected-transient, provider (presentation), local limit
                evt.trigger(assoc, evt.EVT_REJECTED, {})
                assoc.kill()
                return
        super()._negotiate_as_acceptor()


class EventAssociation(Association):
    """pynetdicom's Association whose reactor waits for messages instead of polling."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._wake_event = threading.Event()
        self._serving: set[int] = set()  # threads serving a request (one per N-EVENT-REPORT)
        self._served = threading.Condition()
        super().__init__(*args, **kwargs)
        self.acse = GatedACSE(self)
        self.dimse.msg_queue = _WakingQueue(self.wake)
        self.dul.to_user_queue = _WakingQueue(self.wake)

    def wake(self) -> None:
        self._wake_event.set()

    def kill(self) -> None:
        self.wake()
        super().kill()
        self._end()

    def run_reactor(self) -> None:
        try:
            super().run_reactor()
        finally:
            self._end()

    def _end(self) -> None:
        """Give back the slot and drop a dataset received only in part (idempotent)."""
        admission = getattr(getattr(self, "_server", None), "admission", None)
        if admission is not None:
            admission.release(self)
        message = getattr(self.dimse, "message", None)
        partial = getattr(message, "_data_set_file", None) if message is not None else None
        if partial is not None and not self.dul.is_alive():
            discard = getattr(partial, "discard", None)
            with contextlib.suppress(Exception):
                if discard is not None:
                    discard()
                else:
                    partial.close()
            message._data_set_file = None

    def release(self) -> None:
        """Release, but only after a request being served has been answered.

        pynetdicom marks its reactor paused while a service class runs (so that a handler may call
        ``send_*``), and serves an N-EVENT-REPORT in a thread of its own; so a ``release()`` from
        another thread, e.g. one woken by the N-EVENT-REPORT handler, could queue the A-RELEASE-RQ
        before the handler's response: the DUL then refuses that P-DATA in state Sta7 and the peer
        never gets its response.
        """
        me = threading.get_ident()
        with self._served:
            self._served.wait_for(lambda: not (self._serving - {me}), self.dimse_timeout)
        super().release()

    def _serve_request(self, msg: Any, context_id: int) -> None:
        me = threading.get_ident()
        with self._served:
            self._serving.add(me)
        try:
            super()._serve_request(msg, context_id)
        except Exception as exc:  # noqa: BLE001 - a request pynetdicom's service classes choke on
            log.warning("request from %s could not be served (%s: %s): association aborted",
                        peer_of(self), type(exc).__name__, exc)
            self.abort()
        finally:
            with self._served:
                self._serving.discard(me)
                self._served.notify_all()
            if me != self.ident:
                self.wake()  # pynetdicom cleared _is_paused in this thread: let the reactor set it again

    def _run_reactor(self) -> None:
        """pynetdicom's ``Association._run_reactor`` with an event wait for its 1 ms sleep.

        While it waits, the reactor reports itself paused (it touches no queue), so a
        ``send_*()`` call from another thread need not wait for it.
        """
        self._is_paused = False
        while not self._kill:
            self._is_paused = True
            self._wake_event.wait(IDLE_TICK)
            self._wake_event.clear()
            self._is_paused = True  # again: a thread serving an N-EVENT-REPORT may have reset it
            self._reactor_checkpoint.wait()
            self._is_paused = False

            context_id, msg = self.dimse.get_msg(block=False)
            if msg:
                self._serve_request(msg, context_id)  # type: ignore[arg-type]
                self._wake_event.set()  # more may have arrived while serving: look again at once

            if self.is_established and self.acse.is_release_requested():
                self.acse.send_release(is_response=True)
                LOGGER.info("Association Released")
                self.is_released = True
                self.is_established = False
                evt.trigger(self, evt.EVT_RELEASED, {})
                self.kill()
                return

            if self.acse.is_aborted():
                p_abort = self.acse.is_aborted("a-p-abort")
                LOGGER.info("Association Aborted" + (" (A-P-ABORT)" if p_abort else ""))
                self.dul.receive_pdu(wait=False)
                self.is_aborted = True
                self.is_established = False
                evt.trigger(self, evt.EVT_ABORTED, {})
                self.kill()
                return

            if not self.dul.is_alive():
                self.kill()
                return

            if self.dul.idle_timer_expired():
                LOGGER.error("Network timeout reached")
                if self.network_timeout_response == "A-RELEASE":
                    self._is_paused = True
                    self._reactor_checkpoint.wait()
                    self.release()
                    self._is_paused = False
                else:
                    self.abort()
                self.kill()
                return


def copy_contexts(value: Any, memo: dict | None = None) -> Any:
    """``deepcopy`` for the lists of presentation contexts pynetdicom copies per association.

    A context's only mutable part is its list of transfer syntaxes (UIDs are immutable strings);
    a full ``deepcopy`` of 170 storage contexts × 13 transfer syntaxes took ≈ 0.1 s per association.
    Anything else goes to :func:`copy.deepcopy`.
    """
    if isinstance(value, list) and all(isinstance(cx, PresentationContext) for cx in value):
        out = []
        for cx in value:
            new = copy.copy(cx)
            new._transfer_syntax = list(cx._transfer_syntax)
            out.append(new)
        return out
    return copy.deepcopy(value, memo)


_installed = False


def install() -> None:
    """Make every association this process creates from now on use the event-driven reactors."""
    global _installed
    if _installed:
        return
    pynetdicom.association.DULServiceProvider = EventDUL  # type: ignore[misc]
    # The acceptor side imports ``pynetdicom.association.Association`` when each connection arrives.
    pynetdicom.association.Association = EventAssociation  # type: ignore[misc]
    pynetdicom.ae.Association = EventAssociation  # type: ignore[misc]
    pynetdicom.transport.deepcopy = copy_contexts  # type: ignore[attr-defined]
    pynetdicom.ae.deepcopy = copy_contexts  # type: ignore[attr-defined]
    _installed = True
