"""Association slots: taken only by a complete A-ASSOCIATE-RQ about to be accepted, per node and per host.

pynetdicom counts every acceptor thread against ``maximum_associations``, including connections
that have not yet sent (or will never finish) their A-ASSOCIATE-RQ and associations already
released but not yet torn down; a handful of idle sockets then lock everyone out. Here a slot is
taken when the request is negotiated (:meth:`Admission.acquire`) and given back as soon as the
association ends (:meth:`Admission.release`, idempotent), whatever way it ends.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass

log = logging.getLogger("perfnode.server")


@dataclass(frozen=True)
class Refusal:
    """Why an association was refused a slot (for the log line and the A-ASSOCIATE-RJ)."""

    reason: str


class Admission:
    """Counts accepted associations, in total and per remote host."""

    def __init__(self, max_total: int, max_per_host: int) -> None:
        self.max_total = max_total
        self.max_per_host = max_per_host or max_total
        self._lock = threading.Lock()
        self._held: dict[int, str] = {}  # id(association) → host
        self._per_host: Counter[str] = Counter()

    def acquire(self, key: object, host: str) -> Refusal | None:
        """Take a slot for ``key`` (an association) from ``host``; a :class:`Refusal` when full."""
        with self._lock:
            if id(key) in self._held:
                return None
            if len(self._held) >= self.max_total:
                return Refusal(f"{len(self._held)} associations in use (max_associations {self.max_total})")
            if self._per_host[host] >= self.max_per_host:
                return Refusal(f"{self._per_host[host]} associations in use from {host} "
                               f"(max_associations_per_host {self.max_per_host})")
            self._held[id(key)] = host
            self._per_host[host] += 1
            return None

    def release(self, key: object) -> None:
        with self._lock:
            host = self._held.pop(id(key), None)
            if host is not None:
                self._per_host[host] -= 1
                if self._per_host[host] <= 0:
                    del self._per_host[host]

    @property
    def in_use(self) -> int:
        with self._lock:
            return len(self._held)
