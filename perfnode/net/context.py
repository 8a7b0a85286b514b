"""What every network service module is given and gives: the node's context, its presentation contexts,
and per-association counters. (No module of ``net/`` but this one is imported by all the others.)"""

from __future__ import annotations

import weakref
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from perfnode.archive.facade import Archive
from perfnode.config import Settings

if TYPE_CHECKING:
    from perfnode.net.guard import Guard


@dataclass
class NodeContext:
    """The settings and the archive: all a handler needs (it translates DIMSE ↔ archive calls)."""

    settings: Settings
    archive: Archive
    #: Access checks and the audit trail (:mod:`perfnode.net.guard`); set by the server.
    guard: Guard | None = None


@dataclass(frozen=True)
class Context:
    """One accepted presentation context (an abstract syntax with its transfer syntaxes).

    ``scp_role``/``scu_role`` are for SCP/SCU Role Selection negotiation (PS3.7 D.3.3.4),
    e.g. C-GET where the node acts as Storage SCU on the same association; ``None`` means
    "no role selection". ``role`` is what the conformance statement lists ("SCP", "SCU", …).
    """

    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]
    scp_role: bool | None = None
    scu_role: bool | None = None
    role: str = "SCP"


_STATS: weakref.WeakKeyDictionary[Any, Counter[str]] = weakref.WeakKeyDictionary()


def association_stats(assoc: Any) -> Counter[str]:
    """Per-association counters (``stats[assoc]["stored"] += 1``), logged when it ends."""
    stats = _STATS.get(assoc)
    if stats is None:
        stats = _STATS[assoc] = Counter()
    return stats


def peer_name(event: Any) -> str:
    """``AE@address:port`` of the association's requestor, for log lines."""
    r = event.assoc.requestor
    return f"{(r.ae_title or '').strip() or '?'}@{r.address}:{r.port}"
