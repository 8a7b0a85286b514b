"""The audit trail: DICOM audit messages (PS3.15 A.5, IHE ATNA) for what the node does and refuses.

:mod:`perfnode.audit.messages` builds the messages (one function per PS3.15 A.5.3 message);
:mod:`perfnode.audit.trail` writes each as one RFC 5424 line to ``DATA/audit/`` and optionally sends it
to a syslog collector over TLS (RFC 5425). Code that has something to report calls the node's
:class:`~perfnode.audit.trail.AuditTrail` (``trail.emit(message)``); :func:`current` gives the running
node's trail to code without a context (a no-op trail when none runs).
"""

from __future__ import annotations

from perfnode.audit.trail import AuditTrail, current, install

__all__ = ["AuditTrail", "current", "install"]
