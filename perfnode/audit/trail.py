"""Where audit messages go: one RFC 5424 line each in ``DATA/audit/audit-YYYY-MM-DD.log`` (always, unless
disabled), and optionally to a syslog collector over TLS (RFC 5425 framing), as IHE ATNA ITI-20 asks.

Writing never blocks or breaks the node: the file is appended under a lock (flushed per message, fsync-ed
at close); the collector is fed from a bounded queue by one thread that reconnects with backoff, and a
full queue drops the oldest message with a warning in the node's log (the file keeps every message).
"""

from __future__ import annotations

import collections
import logging
import os
import socket
import ssl
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from perfnode.audit.messages import AuditMessage

log = logging.getLogger("perfnode.audit")

#: syslog facility 10 (security/authorization, "authpriv"), as ITI-20 prescribes.
FACILITY = 10
#: MSGID of an ATNA message (IHE ITI TF-2 3.20.6.1).
MSGID = "IHE+RFC-3881"
APP_NAME = "perfnode"
BOM = "\ufeff"


def rfc5424_line(message: AuditMessage, hostname: str, when: datetime | None = None,
                 procid: str | None = None) -> str:
    """``<PRI>1 TIMESTAMP HOST perfnode PID IHE+RFC-3881 - BOM<AuditMessage…>`` (no newline)."""
    pri = FACILITY * 8 + message.severity
    stamp = (when or datetime.now(UTC)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    host = "".join(c for c in hostname if 33 <= ord(c) <= 126)[:255] or "-"
    pid = procid or str(os.getpid())
    return f"<{pri}>1 {stamp} {host} {APP_NAME} {pid} {MSGID} - {BOM}{message.to_bytes().decode('utf-8')}"


class SyslogSender:
    """Sends lines to a syslog collector over TLS (RFC 5425: ``LEN SP MSG``) from a background thread."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext, queue_size: int = 10_000,
                 retry_max_s: float = 60.0) -> None:
        self.host, self.port, self.context = host, port, context
        self.queue: collections.deque[bytes] = collections.deque(maxlen=queue_size)
        self.retry_max_s = retry_max_s
        self.sent = 0
        self.dropped = 0
        self._cv = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="audit-syslog", daemon=True)
        self._thread.start()

    def put(self, line: str) -> None:
        data = line.encode("utf-8")
        with self._cv:
            if len(self.queue) == self.queue.maxlen:
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    log.warning("audit collector %s:%s unreachable: %d messages dropped from its queue "
                                "(all are in the audit files)", self.host, self.port, self.dropped)
            self.queue.append(f"{len(data)} ".encode() + data)
            self._cv.notify()

    def _connect(self) -> ssl.SSLSocket:
        raw = socket.create_connection((self.host, self.port), timeout=10)
        try:
            return self.context.wrap_socket(raw, server_hostname=self.host)
        except BaseException:
            raw.close()
            raise

    def _run(self) -> None:
        sock: ssl.SSLSocket | None = None
        delay = 1.0
        while True:
            with self._cv:
                while not self.queue and not self._stopping:
                    self._cv.wait()
                if not self.queue and self._stopping:
                    break
                frame = self.queue[0]
            try:
                if sock is None:
                    sock = self._connect()
                    delay = 1.0
                sock.sendall(frame)
                with self._cv:
                    if self.queue and self.queue[0] is frame:
                        self.queue.popleft()
                    self.sent += 1
            except (OSError, ssl.SSLError) as exc:
                if sock is not None:
                    sock.close()
                    sock = None
                log.warning("audit collector %s:%s: %s (retrying in %.0f s)",
                            self.host, self.port, exc, delay)
                with self._cv:
                    if self._stopping:
                        break
                    self._cv.wait(delay)
                delay = min(delay * 2, self.retry_max_s)
        if sock is not None:
            sock.close()

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (for up to ``timeout`` s), then stop."""
        deadline = time.monotonic() + timeout
        while self.queue and time.monotonic() < deadline and self._thread.is_alive():
            time.sleep(0.05)
        with self._cv:
            self._stopping = True
            self._cv.notify()
        self._thread.join(timeout=2)


class AuditTrail:
    """The node's audit trail: ``emit(message)`` writes it to the day's file and the collector."""

    def __init__(self, folder: Path | None, hostname: str | None = None,
                 sender: SyslogSender | None = None) -> None:
        self.folder = folder
        self.hostname = hostname or socket.gethostname()
        self.sender = sender
        self.count = 0
        self._lock = threading.Lock()
        self._file: IO[str] | None = None
        self._day = ""
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)

    @property
    def enabled(self) -> bool:
        return self.folder is not None or self.sender is not None

    def path_for(self, day: str) -> Path:
        assert self.folder is not None
        return self.folder / f"audit-{day}.log"

    def emit(self, message: AuditMessage) -> None:
        """Record one message (errors are logged, never raised: auditing must not stop the node)."""
        if not self.enabled:
            return
        now = datetime.now(UTC)
        try:
            line = rfc5424_line(message, self.hostname, now)
            with self._lock:
                self.count += 1
                if self.folder is not None:
                    day = now.strftime("%Y-%m-%d")
                    if day != self._day or self._file is None:
                        self._close_file()
                        self._file = open(self.path_for(day), "a", encoding="utf-8")  # noqa: SIM115
                        self._day = day
                    self._file.write(line + "\n")
                    self._file.flush()
            if self.sender is not None:
                self.sender.put(line)
        except Exception:  # noqa: BLE001
            log.exception("audit message %s could not be recorded", message.event)

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None

    def close(self) -> None:
        with self._lock:
            self._close_file()
        if self.sender is not None:
            self.sender.close()


_NULL = AuditTrail(None)
_current: AuditTrail = _NULL


def install(trail: AuditTrail | None) -> None:
    """Make ``trail`` the process's audit trail (``None``: none)."""
    global _current
    _current = trail if trail is not None else _NULL


def current() -> AuditTrail:
    """The running node's audit trail (a trail that records nothing when no node runs here)."""
    return _current
