"""Who may do what: each association's calling AE title checked against the AE table and the address
it calls from; each request checked against that peer's permissions.

* A peer in the AE table (``[peers.AE]``) is bound to where it may call from: ``hosts`` (addresses,
  networks such as ``"10.0.0.0/24"``, host names, or ``"*"`` for anywhere); by default its own ``host``.
  A known AE title calling from elsewhere is refused (A-ASSOCIATE-RJ, calling AE title not recognised).
* ``allow`` lists what the peer may ask for: ``store``, ``query``, ``retrieve``, ``commit`` (default: all).
* A calling AE title not in the AE table may do what ``[access] unknown`` lists (default ``["store"]``:
  modalities send, but only known peers query, retrieve or ask for storage commitment);
  ``require_known_peers`` (or ``unknown = []``) refuses such associations outright.

A refused request is answered 0x0124 "Refused: Not Authorized" (PS3.7 C.5.x) naming what is missing.
C-ECHO is always allowed.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("perfnode.access")

SERVICES = ("store", "query", "retrieve", "commit")
#: PS3.7 C.5 general status "Refused: Not Authorized".
NOT_AUTHORIZED = 0x0124
#: How long a host name's addresses are trusted before they are looked up again.
RESOLVE_TTL_S = 60.0

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text.split("%")[0].strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class _Resolver:
    """getaddrinfo with a small cache (host names in ``hosts`` are looked up at most once a minute)."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}
        self._lock = threading.Lock()

    def addresses(self, host: str) -> frozenset[str]:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(host)
            if hit and now - hit[0] < RESOLVE_TTL_S:
                return hit[1]
        try:
            found = frozenset(str(_ip(str(info[4][0]))) for info in socket.getaddrinfo(host, None))
        except OSError as exc:
            log.warning("peer host %r does not resolve (%s): nobody can call as it from a name", host, exc)
            found = frozenset()
        with self._lock:
            self._cache[host] = (now, found)
        return found


_RESOLVER = _Resolver()


@dataclass(frozen=True)
class HostRule:
    """Where a peer may call from: ``*``, a network, an address, or a host name."""

    text: str

    def matches(self, address: str) -> bool:
        ip = _ip(address)
        if self.text == "*":
            return True
        if ip is None:
            return False
        try:
            net: Network = ipaddress.ip_network(self.text.strip("[]"), strict=False)
        except ValueError:
            return str(ip) in _RESOLVER.addresses(self.text)
        if isinstance(net, ipaddress.IPv6Network) and ip.version == 4 and net.prefixlen == 128:
            mapped = net.network_address.ipv4_mapped
            return mapped is not None and mapped == ip
        return ip.version == net.version and ip in net


def parse_services(values: Iterable[str], where: str) -> frozenset[str]:
    from perfnode.config import ConfigError

    out = set()
    for v in values:
        if v not in SERVICES:
            raise ConfigError(f"{where}: {v!r} is not one of {', '.join(SERVICES)}")
        out.add(v)
    return frozenset(out)


class AccessPolicy:
    """The AE table's access rules, read from the settings once."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        access = getattr(settings, "access", None)
        unknown = getattr(access, "unknown", ("store",)) if access is not None else ("store",)
        self.require_known = bool(getattr(settings, "require_known_peers", False))
        self.accept_any_called_ae = bool(getattr(access, "accept_any_called_ae", False))
        self.unknown = frozenset() if self.require_known else parse_services(unknown, "[access] unknown")
        self.hosts: dict[str, tuple[HostRule, ...]] = {}
        self.allow: dict[str, frozenset[str]] = {}
        for ae, peer in settings.peers.items():
            hosts = tuple(getattr(peer, "hosts", ()) or ()) or (peer.host,)
            self.hosts[ae] = tuple(HostRule(h) for h in hosts)
            allow = getattr(peer, "allow", None)
            self.allow[ae] = (frozenset(SERVICES) if allow is None
                              else parse_services(allow, f"[peers.{ae}] allow"))

    def admit(self, calling_ae: str, address: str) -> str | None:
        """``None`` when an association from ``calling_ae`` at ``address`` may proceed, else why not."""
        ae = calling_ae.strip()
        if ae in self.hosts:
            if any(rule.matches(address) for rule in self.hosts[ae]):
                return None
            where = ", ".join(r.text for r in self.hosts[ae])
            return f"calling AE {ae!r} from {address}: the AE table binds it to {where}"
        if self.require_known or not self.unknown:
            return f"calling AE {ae!r} from {address} is not in the AE table"
        return None

    def may(self, calling_ae: str, service: str) -> str | None:
        """``None`` when ``calling_ae`` (already admitted) may use ``service``, else why not (≤ 64 chars
        where it can be, for a DIMSE Error Comment)."""
        ae = calling_ae.strip()
        allowed = self.allow.get(ae, self.unknown)
        if service in allowed:
            return None
        if ae in self.allow:
            return f"AE {ae!r} may not {service} ([peers.{ae}] allow)"
        return f"unknown AE {ae!r} may not {service} ([access] unknown)"
