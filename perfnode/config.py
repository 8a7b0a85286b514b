"""Typed settings: defaults < TOML file (``--config``) < environment (``PERFNODE_*``) < command line.

The TOML file has a ``[node]`` table with the same names as the ``serve`` options and a
``[peers.AE_TITLE]`` table per known peer (the AE table)::

    [node]
    ae_title = "PERFNODE"
    port = 11112
    data = "/var/lib/perfnode"
    database = "postgresql+psycopg://perfnode@db/perfnode"

    [peers.PACS]
    host = "pacs.example.org"
    port = 104

Other tables (``[pipeline]``, ``[commitment]``, ``[qc]`` …) are kept in ``Settings.sections``
for the components that own them.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

AE_TITLE_RE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # PS3.5 AE VR: no backslash, 16 max


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names it."""


@dataclass(frozen=True)
class Peer:
    """A known DICOM application entity (a row of the AE table)."""

    ae_title: str
    host: str
    port: int
    #: Transfer syntax UIDs this peer accepts; empty means "propose the usual ones".
    transfer_syntaxes: tuple[str, ...] = ()

    @classmethod
    def parse(cls, spec: str) -> Peer:
        """Parse ``AE=host:port`` or ``AE@host:port``."""
        m = re.fullmatch(r"\s*([^=@]+?)\s*[=@]\s*(\[[^\]]+\]|[^:]+):(\d+)\s*", spec)
        if not m:
            raise ConfigError(f"peer {spec!r}: expected AE=host:port")
        ae, host, port = m.group(1), m.group(2).strip("[]"), int(m.group(3))
        return cls(validate_ae_title(ae, "peer AE title"), host, validate_port(port))


def validate_ae_title(value: str, what: str = "AE title") -> str:
    value = value.strip()
    if not AE_TITLE_RE.match(value):
        raise ConfigError(f"{what} {value!r}: 1–16 printable characters without backslash (PS3.5 AE)")
    return value


def validate_port(port: int) -> int:
    if not 0 <= int(port) <= 65535:
        raise ConfigError(f"port {port}: must be 0–65535")
    return int(port)


@dataclass(frozen=True)
class Settings:
    """Everything ``perfnode serve`` and the SCU commands need to know."""

    ae_title: str = "PERFNODE"
    host: str = ""  # bind address; "" = all interfaces
    port: int = 11112
    data: Path = Path("perfnode-data")
    database: str | None = None  # SQLAlchemy URL; None = SQLite file in the data folder
    max_associations: int = 16
    acse_timeout: float = 30.0
    dimse_timeout: float = 60.0
    network_timeout: float = 60.0
    #: Maximum PDU length we offer to receive (bytes); chosen by benchmarks/ingest.py.
    max_pdu: int = 262_144
    require_known_peers: bool = False
    #: What to do when a SOP Instance UID arrives again with different bytes:
    #: "reject" (default: failure status, keep the stored copy) or "replace".
    duplicate_policy: str = "reject"
    peers: dict[str, Peer] = field(default_factory=dict)
    #: Other TOML tables, for the components that own them.
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def database_url(self) -> str:
        if self.database:
            return self.database
        return f"sqlite:///{(self.data / 'index.sqlite').resolve()}"

    def peer(self, ae_title: str) -> Peer:
        try:
            return self.peers[ae_title.strip()]
        except KeyError:
            raise ConfigError(f"unknown AE {ae_title!r}: not in the AE table (--peer AE=host:port)") from None

    def section(self, name: str) -> dict[str, Any]:
        return self.sections.get(name, {})


_NODE_KEYS = {f.name for f in fields(Settings)} - {"peers", "sections"}


def _coerce(name: str, value: Any) -> Any:
    default = getattr(Settings(), name)
    try:
        if name == "data":
            return Path(value)
        if isinstance(default, bool):
            if isinstance(value, str):
                return value.strip().lower() in {"1", "true", "yes", "on"}
            return bool(value)
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"setting {name}: {value!r} is not a valid {type(default).__name__}") from None
    return value


def _check(s: Settings) -> Settings:
    validate_ae_title(s.ae_title)
    validate_port(s.port)
    if s.duplicate_policy not in {"reject", "replace"}:
        raise ConfigError(f"duplicate_policy {s.duplicate_policy!r}: expected 'reject' or 'replace'")
    if s.max_associations < 1:
        raise ConfigError("max_associations must be at least 1")
    if not 4096 <= s.max_pdu <= 2**32 - 1 and s.max_pdu != 0:
        raise ConfigError(f"max_pdu {s.max_pdu}: 0 (unlimited) or 4096–4294967295")
    return s


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build settings from a TOML file, ``PERFNODE_*`` environment variables and overrides.

    ``overrides`` uses the field names; ``None`` values are ignored, and ``peers`` may be a
    list of ``AE=host:port`` strings that are added to (and win over) the file's table.
    """
    values: dict[str, Any] = {}
    peers: dict[str, Peer] = {}
    sections: dict[str, dict[str, Any]] = {}
    if config_file:
        path = Path(config_file)
        try:
            doc = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path}: not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: {exc}") from None
        for key, value in doc.get("node", {}).items():
            if key not in _NODE_KEYS:
                raise ConfigError(f"config file {path}: unknown setting [node] {key}")
            values[key] = _coerce(key, value)
        for ae, spec in doc.get("peers", {}).items():
            if "host" not in spec or "port" not in spec:
                raise ConfigError(f"config file {path}: [peers.{ae}] needs host and port")
            peers[ae] = Peer(
                validate_ae_title(ae, "peer AE title"),
                str(spec["host"]),
                validate_port(spec["port"]),
                tuple(spec.get("transfer_syntaxes", ())),
            )
        sections = {k: v for k, v in doc.items() if k not in {"node", "peers"} and isinstance(v, dict)}
    for key in _NODE_KEYS:
        env = os.environ.get(f"PERFNODE_{key.upper()}")
        if env is not None:
            values[key] = _coerce(key, env)
    for key, value in overrides.items():
        if value is None:
            continue
        if key == "peers":
            for spec in value:
                p = spec if isinstance(spec, Peer) else Peer.parse(spec)
                peers[p.ae_title] = p
        elif key in _NODE_KEYS:
            values[key] = _coerce(key, value)
        else:
            raise ConfigError(f"unknown setting {key}")
    return _check(replace(Settings(), **values, peers=peers, sections=sections))
