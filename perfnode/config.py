"""Typed, validated settings: defaults < TOML file (``--config``) < environment (``PERFNODE_*``) < command
line.

Every table of the file is a section model below; a wrong type (``workers = "two"``, ``enabled =
"false"``), an unknown key or an unknown table (``[piepline]``) is refused when the settings are loaded,
in one line naming the file, the table and the key. ``perfnode config --show`` prints the effective
settings and where each value came from (:meth:`Settings.sources`)::

    [node]                      # the serve options (flat on Settings: settings.ae_title, settings.port …)
    ae_title = "PERFNODE"
    port = 11112
    data = "/var/lib/perfnode"
    database = "postgresql+psycopg://perfnode@db/perfnode"

    [peers.PACS]                # the AE table
    host = "pacs.example.org"
    port = 104

    [pipeline]                  # settings.pipeline (PipelineSettings) …
    [commitment]                # settings.commitment
    [qc]                        # settings.qc

**Adding a key** is one line: a field with its type and default on the section's model (e.g.
``validation: Literal["strict", "warn"] = "strict"`` on a ``StoreSettings``); it is then read from
the file, from ``PERFNODE_<SECTION>__<KEY>`` (``[node]`` keys: ``PERFNODE_<KEY>``) and shown by
``config --show``. **Adding a table**: a model class (``class XSettings(Section)``) and one field on
:class:`Settings` (``x: XSettings = Field(default_factory=XSettings)``).

Environment values are strings and are read leniently (``"true"``, ``"2"``, ``"a,b"`` for a list; an
empty value counts as unset); values in the file must have the right TOML type. ``PERFNODE_CONFIG``
names the file when ``--config`` is not given; ``PERFNODE_PEERS="AE=host:port AE2=host:port"`` adds
to the AE table.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, TypeAdapter, ValidationError, model_validator

AE_TITLE_RE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # PS3.5 AE VR: no backslash, 16 max


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names it (and the file) in one line."""


def validate_ae_title(value: str, what: str = "AE title") -> str:
    value = value.strip()
    if not AE_TITLE_RE.match(value):
        raise ConfigError(f"{what} {value!r}: 1–16 printable characters without backslash (PS3.5 AE)")
    return value


def validate_port(port: int) -> int:
    if not 0 <= int(port) <= 65535:
        raise ConfigError(f"port {port}: must be 0–65535")
    return int(port)


class Section(BaseModel):
    """A table of the config file: typed fields, no unknown keys, TOML types as they are."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


#: A path given as a string (the only lenient type in a file).
PathValue = Annotated[Path, Field(strict=False)]
#: A list in the file, a tuple in the settings.
StrTuple = Annotated[tuple[str, ...], Field(strict=False)]
Seconds = Annotated[float, Field(ge=0)]


#: What a peer may be allowed to do (perfnode.net.access).
Service = Literal["store", "query", "retrieve", "commit"]


class Peer(Section):
    """A known DICOM application entity (a row of the AE table, ``[peers.AE_TITLE]``)."""

    ae_title: str
    host: str
    port: Annotated[int, Field(ge=0, le=65535)]
    #: Transfer syntax UIDs this peer accepts; empty means "propose the usual ones".
    transfer_syntaxes: StrTuple = ()
    #: Associations to this peer use TLS ([tls] ca/cert/key; PS3.15 B.9/B.10).
    tls: bool = False
    #: Where this AE title may call from: addresses, networks ("10.0.0.0/24"), host names, or "*";
    #: empty = its ``host`` only (perfnode.net.access).
    hosts: StrTuple = ()
    #: What it may ask for (default: everything): store, query, retrieve, commit.
    allow: Annotated[tuple[Service, ...], Field(strict=False)] | None = None
    #: Pipeline maps go to this peer as 16-bit integer Parametric Maps (Real World Value Mapping slope
    #: and intercept; for viewers that cannot show Float Pixel Data) instead of float ones.
    integer_maps: bool = False

    def __init__(self, ae_title: str | None = None, host: str | None = None, port: int | None = None,
                 transfer_syntaxes: tuple[str, ...] | list[str] = (), **data: Any) -> None:
        # positional form ``Peer("PACS", "host", 104)`` as before
        if ae_title is not None:
            data["ae_title"] = ae_title
        if host is not None:
            data["host"] = host
        if port is not None:
            data["port"] = port
        data.setdefault("transfer_syntaxes", tuple(transfer_syntaxes))
        super().__init__(**data)

    @classmethod
    def parse(cls, spec: str) -> Peer:
        """Parse ``AE=host:port`` or ``AE@host:port``."""
        m = re.fullmatch(r"\s*([^=@]+?)\s*[=@]\s*(\[[^\]]+\]|[^:]+):(\d+)\s*", spec)
        if not m:
            raise ConfigError(f"peer {spec!r}: expected AE=host:port")
        ae, host, port = m.group(1), m.group(2).strip("[]"), int(m.group(3))
        return cls(validate_ae_title(ae, "peer AE title"), host, validate_port(port))


class TechniqueRule(Section):
    """``[[pipeline.rules]]``: override the technique by calling AE / protocol glob."""

    calling_ae: str = "*"
    protocol: str = "*"
    #: A technique name (``dsc``, ``dce`` …) or ``"none"`` (never analyse); checked by the pipeline.
    technique: str

    def get(self, key: str, default: Any = None) -> Any:
        """Mapping-style read (``rule.get("technique")``), as the rule matcher uses it."""
        return getattr(self, key, default)


class PipelineSettings(Section):
    """``[pipeline]``: series completion → jobs → maps → destinations."""

    enabled: bool = True
    #: A series with no new instance for this long is complete.
    stable_s: Seconds = 10.0
    poll_s: Annotated[float, Field(gt=0)] = 0.5
    #: Analysis processes.
    workers: Annotated[int, Field(ge=1)] = 1
    #: Where maps go (AE titles from the AE table).
    destinations: StrTuple = ()
    #: Per calling AE, instead of ``destinations``.
    destinations_by_ae: Annotated[dict[str, StrTuple], Field(strict=False)] = {}
    #: Also send the maps back to the AE that sent the series.
    return_to_sender: bool = False
    #: Ask each destination for storage commitment (report on the same association).
    commit: bool = False
    #: How long to wait for the destination's N-EVENT-REPORT on the commitment association.
    commit_timeout_s: Seconds = 60.0
    #: Also send colour renderings (not for quantitative use).
    colour: bool = False
    retry_initial_s: Seconds = 1.0
    retry_max_s: Seconds = 60.0
    #: Give up delivering (job failed) after this long; 0 = never.
    retry_give_up_s: Seconds = 86_400.0
    rules: Annotated[tuple[TechniqueRule, ...], Field(strict=False)] = ()
    #: Maps failing the quality gate (perfnode.qc.gate): "hold" = archived, not sent, job state "held" with
    #: the reasons; "send_flagged" = sent, "NOT RELIABLE …" first in Image Comments and in the provenance.
    on_quality_failure: Literal["hold", "send_flagged"] = "hold"

    def destinations_for(self, calling_ae: str, settings: Settings) -> list[str]:
        dests = list(self.destinations_by_ae.get(calling_ae.strip(), self.destinations))
        if self.return_to_sender and calling_ae.strip() in settings.peers and calling_ae.strip() not in dests:
            dests.append(calling_ae.strip())
        return dests


class CommitmentSettings(Section):
    """``[commitment]``: the Storage Commitment SCP's report queue."""

    retry_base_s: Seconds = 2.0
    retry_max_s: Seconds = 300.0
    poll_s: Annotated[float, Field(gt=0)] = 1.0
    #: Try the N-ACTION's own association for the report first.
    same_association: bool = False


class TlsSettings(Section):
    """``[tls]``: the node's TLS port, and TLS to peers marked ``tls = true`` (PS3.15 B.9/B.10, BCP 195)."""

    #: A second port that speaks DICOM over TLS only (``--tls-port``); none by default.
    port: Annotated[int, Field(ge=0, le=65535)] | None = None
    #: Our certificate chain and private key (PEM): presented on the TLS port and to TLS peers.
    cert: PathValue | None = None
    key: PathValue | None = None
    #: CA certificates (PEM) that sign the peers' certificates (clients on the TLS port, TLS peers).
    ca: PathValue | None = None
    #: Refuse TLS clients without a certificate signed by ``ca``.
    require_client_cert: bool = False
    #: As a client, check that a TLS peer's certificate names its host (BCP 195); off only for sites
    #: whose certificates do not carry the addresses peers are reached by.
    verify_peer_hostname: bool = True


class AccessSettings(Section):
    """``[access]``: what calling AE titles not in the AE table may do (perfnode.net.access)."""

    #: Default: store only (modalities send; only known peers query, retrieve, commit).
    unknown: Annotated[tuple[Service, ...], Field(strict=False)] = ("store",)
    #: Accept an association whatever Called AE Title it names (testing, or a node reached under several
    #: titles); by default one not equal to ``ae_title`` is rejected (A-ASSOCIATE-RJ, reason 7).
    accept_any_called_ae: bool = False


class AuditSettings(Section):
    """``[audit]``: the audit trail (DICOM audit messages, PS3.15 A.5; IHE ATNA)."""

    #: One RFC 5424 line per message in DATA/audit/audit-YYYY-MM-DD.log.
    enabled: bool = True
    #: Also send each message to this syslog collector over TLS (RFC 5425).
    syslog_host: str | None = None
    syslog_port: Annotated[int, Field(ge=1, le=65535)] = 6514
    #: CA that signs the collector's certificate (default: the system's CAs).
    syslog_ca: PathValue | None = None
    #: Our certificate and key for the collector (ATNA node authentication); default [tls] cert/key.
    syslog_cert: PathValue | None = None
    syslog_key: PathValue | None = None


class QcSettings(Section):
    """``[qc]``: protocol compliance and data quality."""

    #: A folder of site rule files overriding the shipped ESR protocols (``perfnode report``, jobs).
    protocols: PathValue | None = None


class WebSettings(Section):
    """``[web]``: the DICOMweb server and the viewer (``perfnode serve --web-port N`` / ``--no-web``).

    ``[web.users]`` maps a user to ``"sha256:<hex of the password>"`` (Basic authentication).
    """

    enabled: bool = True
    port: Annotated[int, Field(ge=0, le=65535)] = 8042
    #: Bind address; unset = the DICOM node's ``host``.
    host: str | None = None
    #: Who needs no credentials: "loopback" (default), "all" or "none".
    anonymous: Literal["loopback", "all", "none"] = "loopback"
    #: Accepted ``Authorization: Bearer`` tokens.
    tokens: StrTuple = ()
    users: Annotated[dict[str, str], Field(strict=False)] = {}
    #: e.g. an OHIF Viewer served from elsewhere.
    cors_origins: StrTuple = ()
    #: HTTPS when both are set.
    tls_cert: PathValue | None = None
    tls_key: PathValue | None = None
    #: QIDO-RS answers at most this many matches per request.
    max_qido_results: Annotated[int, Field(ge=1)] = 10_000
    #: Responses at least this large, of a compressible type, are gzip-ed for clients that accept it.
    gzip_min_bytes: Annotated[int, Field(ge=0)] = 1024

    @model_validator(mode="after")
    def _certificate_pair(self) -> WebSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        for p in (self.tls_cert, self.tls_key):
            if p is not None and not p.is_file():
                raise ValueError(f"{p}: no such file")
        return self

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None and self.tls_key is not None

    def bind_host(self, settings: Settings) -> str:
        host = settings.host if self.host is None else self.host
        return host or "0.0.0.0"

    def with_(self, **changes: Any) -> WebSettings:
        return self.model_copy(update=changes)


class QuerySettings(Section):
    """``[query]``: perfnode as a Q/R SCU (``perfnode find / move / get``; ``--charset``)."""

    #: Specific Character Set (0008,0005) of the requests, and the encoding of their keys: a defined
    #: term pydicom knows ("ISO_IR 192" UTF-8, "ISO_IR 100" Latin-1, "ISO_IR 144" Cyrillic,
    #: "ISO_IR 126" Greek, "ISO 2022 IR 6\\ISO 2022 IR 87" Japanese …; values joined by backslashes);
    #: "" sends none (ASCII only).
    character_set: str = "ISO_IR 192"

    @model_validator(mode="after")
    def _known_character_set(self) -> QuerySettings:
        from pydicom.charset import python_encoding

        for term in filter(None, (t.strip() for t in self.character_set.split("\\"))):
            if term not in python_encoding:
                raise ValueError(f"character_set {term!r}: not a Specific Character Set defined term "
                                 f"(e.g. ISO_IR 192, ISO_IR 100, ISO_IR 144, ISO 2022 IR 87)")
        return self


class StoreSettings(Section):
    """``[store]``: what the C-STORE SCP does with what it receives."""

    #: Readable but not conformant (a Type 1 attribute missing …): "warn" stores it and answers
    #: 0xB007 with findings; "strict" refuses it (0xA900). Unreadable objects are always refused.
    validation: Literal["strict", "warn"] = "warn"


class Settings(Section):
    """Everything perfnode needs to know; the ``[node]`` keys are flat fields."""

    # [node]
    ae_title: str = "PERFNODE"
    #: Bind address; "" = all interfaces.
    host: str = ""
    port: Annotated[int, Field(ge=0, le=65535)] = 11112
    data: PathValue = Path("perfnode-data")
    #: SQLAlchemy URL; None = SQLite file in the data folder.
    database: str | None = None
    max_associations: Annotated[int, Field(ge=1)] = 16
    #: Accepted associations from one remote address at once.
    max_associations_per_host: Annotated[int, Field(ge=1)] = 8
    #: Connections waiting for their A-ASSOCIATE-RQ (they hold no slot), in all and per address.
    max_pending: Annotated[int, Field(ge=1)] = 512
    max_pending_per_host: Annotated[int, Field(ge=1)] = 256
    #: Also the ARTIM timeout: a connection's A-ASSOCIATE-RQ must be whole within it.
    acse_timeout: Seconds = 30.0
    dimse_timeout: Seconds = 60.0
    network_timeout: Seconds = 60.0
    #: Maximum PDU length we offer to receive (bytes, 0 = unlimited); chosen by benchmarks/ingest.py.
    max_pdu: int = 262_144
    require_known_peers: bool = False
    #: A file holding the index database's password (a container secret), put into ``database``'s URL.
    database_password_file: PathValue | None = None
    #: Same SOP Instance UID with different bytes: "reject" (failure status, keep the stored copy) or
    #: "replace".
    duplicate_policy: Literal["reject", "replace"] = "reject"
    # other tables
    peers: Annotated[dict[str, Peer], Field(strict=False)] = {}
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)
    commitment: CommitmentSettings = Field(default_factory=CommitmentSettings)
    qc: QcSettings = Field(default_factory=QcSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    query: QuerySettings = Field(default_factory=QuerySettings)
    tls: TlsSettings = Field(default_factory=TlsSettings)
    access: AccessSettings = Field(default_factory=AccessSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)

    _sources: dict[str, str] = PrivateAttr(default_factory=dict)

    @property
    def database_url(self) -> str:
        if self.database:
            if self.database_password_file is None:
                return self.database
            from sqlalchemy.engine import make_url

            return make_url(self.database).set(password=read_secret(self.database_password_file)) \
                .render_as_string(hide_password=False)
        return f"sqlite:///{(self.data / 'index.sqlite').resolve()}"

    def peer(self, ae_title: str) -> Peer:
        try:
            return self.peers[ae_title.strip()]
        except KeyError:
            raise ConfigError(f"unknown AE {ae_title!r}: not in the AE table (--peer AE=host:port)") from None

    def sources(self) -> dict[str, str]:
        """``"table.key"`` → where its value came from: ``default``, ``file PATH``, ``env NAME`` or
        ``command line``."""
        return dict(self._sources)


#: The tables of the file: name → field of :class:`Settings` ("node" is the flat part).
TABLES = ("node", "peers", "pipeline", "commitment", "qc", "web", "store", "query", "tls", "access", "audit")
NODE_KEYS = tuple(k for k, f in Settings.model_fields.items()
                  if k not in TABLES and not isinstance(f.default, BaseModel) and f.default_factory is None)
SECTIONS = tuple(t for t in TABLES if t not in ("node", "peers"))


def _where(loc: tuple[Any, ...]) -> str:
    """``[pipeline] workers`` / ``[node] port`` / ``[peers.PACS] host`` from a pydantic error location."""
    parts = [str(p) for p in loc]
    if not parts:
        return "settings"
    if parts[0] in SECTIONS:
        table, rest = parts[0], parts[1:]
        if table == "pipeline" and rest[:1] == ["rules"] and len(rest) > 1:
            return f"[[pipeline.rules]] #{int(rest[1]) + 1} {' '.join(rest[2:])}".rstrip()
        return f"[{table}] {'.'.join(rest)}".rstrip()
    if parts[0] == "peers" and len(parts) > 1:
        return f"[peers.{parts[1]}] {'.'.join(parts[2:])}".rstrip()
    return f"[node] {'.'.join(parts)}"


def _one_line(exc: ValidationError, origin: str) -> ConfigError:
    err = exc.errors()[0]
    where = _where(tuple(err.get("loc", ())))
    if err.get("type") == "extra_forbidden":
        return ConfigError(f"{origin}: {where}: unknown setting")
    if err.get("type") == "missing":
        return ConfigError(f"{origin}: {where}: missing (required)")
    if err.get("type") == "value_error":  # a rule across keys of a table
        return ConfigError(f"{origin}: {where}: {str(err.get('msg', '')).removeprefix('Value error, ')}")
    msg = str(err.get("msg", "invalid")).replace("Input should be", "expected").replace("Value error, ", "")
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return ConfigError(f"{origin}: {where}: {msg}, got {err.get('input')!r}{more}")


def _origin_of(exc: ValidationError, sources: dict[str, str], default: str) -> str:
    """Where the first invalid value came from: ``command line``, ``environment NAME`` or the file."""
    loc = [str(p) for p in exc.errors()[0].get("loc", ())]
    key = ".".join(loc[:2]) if loc and loc[0] in SECTIONS + ("peers",) else f"node.{loc[0]}" if loc else ""
    source = sources.get(key, "")
    if source == "command line":
        return "command line"
    if source.startswith("env "):
        return f"environment {source[4:]}"
    if source.startswith("file "):
        return f"config file {source[5:]}"
    return default


def _field_annotation(model: type[BaseModel], key: str) -> Any:
    return model.model_fields[key].annotation


def _from_env(model: type[BaseModel], key: str, raw: str, name: str) -> Any:
    """An environment string read leniently for the field's type (lists: comma-separated or JSON)."""
    ann = _field_annotation(model, key)
    text = raw.strip()
    try:
        if text[:1] in "[{":
            return TypeAdapter(ann).validate_python(json.loads(text), strict=False)
        if "tuple" in str(ann) or "list" in str(ann):
            return tuple(p.strip() for p in text.split(",") if p.strip())
        return TypeAdapter(ann).validate_python(raw, strict=False)
    except ValidationError as exc:
        msg = str(exc.errors()[0].get("msg", "invalid")).replace("Input should be", "expected")
        raise ConfigError(f"environment {name}={raw!r}: {msg}") from None
    except ValueError as exc:
        raise ConfigError(f"environment {name}={raw!r}: {exc}") from None


def _env(name: str) -> str | None:
    """An environment variable; empty counts as unset (compose passes ``${X:-}`` as "")."""
    value = os.environ.get(name)
    return value if value else None


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build settings from a TOML file, ``PERFNODE_*`` environment variables and overrides.

    ``overrides`` (the command line) uses the ``[node]`` field names; ``None`` values are ignored,
    and ``peers`` may be a list of ``AE=host:port`` strings that are added to (and win over) the
    file's table.
    """
    values: dict[str, Any] = {}
    tables: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    peers: dict[str, Any] = {}
    sources: dict[str, str] = {}
    origin = "settings"
    if not config_file and _env("PERFNODE_CONFIG"):
        config_file = _env("PERFNODE_CONFIG")
    if config_file:
        path = Path(config_file)
        origin = f"config file {path}"
        try:
            doc = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path}: not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path}: cannot read it ({exc})") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: {exc}") from None
        for table, content in doc.items():
            if table not in TABLES:
                raise ConfigError(f"{origin}: [{table}]: unknown table (known: {', '.join(TABLES)})")
            if not isinstance(content, dict):
                raise ConfigError(f"{origin}: {table} must be a table ([{table}])")
        for key, value in doc.get("node", {}).items():
            if key not in NODE_KEYS:
                raise ConfigError(f"{origin}: [node] {key}: unknown setting")
            values[key] = value
            sources[f"node.{key}"] = f"file {path}"
        for ae, spec in doc.get("peers", {}).items():
            if not isinstance(spec, dict):
                raise ConfigError(f"{origin}: [peers.{ae}] must be a table with host and port")
            validate_ae_title(ae, f"{origin}: [peers.{ae}] AE title")
            peers[ae] = {"ae_title": ae, **spec}
            sources[f"peers.{ae}"] = f"file {path}"
        for table in SECTIONS:
            for key, value in doc.get(table, {}).items():
                tables[table][key] = value
                sources[f"{table}.{key}"] = f"file {path}"
    env_origin = "environment"
    for key in NODE_KEYS:
        name = f"PERFNODE_{key.upper()}"
        if (raw := _env(name)) is not None:
            values[key] = _from_env(Settings, key, raw, name)
            sources[f"node.{key}"] = f"env {name}"
    for table in SECTIONS:
        model = Settings.model_fields[table].annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        for key in model.model_fields:
            name = f"PERFNODE_{table.upper()}__{key.upper()}"
            if (raw := _env(name)) is not None:
                tables[table][key] = _from_env(model, key, raw, name)
                sources[f"{table}.{key}"] = f"env {name}"
    for spec in (_env("PERFNODE_PEERS") or "").split():
        try:
            p = Peer.parse(spec)
        except ConfigError as exc:
            raise ConfigError(f"environment PERFNODE_PEERS: {exc}") from None
        peers[p.ae_title] = p.model_dump()
        sources[f"peers.{p.ae_title}"] = "env PERFNODE_PEERS"
    for key, value in overrides.items():
        if value is None:
            continue
        table, _, sub = key.partition("__")
        if sub and table in SECTIONS:  # another table's key on the command line: web__port=…
            tables[table][sub] = value
            sources[f"{table}.{sub}"] = "command line"
        elif key == "peers":
            for spec in value:
                p = spec if isinstance(spec, Peer) else Peer.parse(spec)
                peers[p.ae_title] = p.model_dump()
                sources[f"peers.{p.ae_title}"] = "command line"
        elif key in NODE_KEYS:
            values[key] = value
            sources[f"node.{key}"] = "command line"
        else:
            raise ConfigError(f"unknown setting {key}")
    doc_origin = origin if config_file else env_origin
    try:
        settings = Settings.model_validate({**values, "peers": peers, **tables}, strict=None)
    except ValidationError as exc:
        raise _one_line(exc, _origin_of(exc, sources, doc_origin)) from None
    for key in NODE_KEYS:
        sources.setdefault(f"node.{key}", "default")
    for table in SECTIONS:
        for key in type(getattr(settings, table)).model_fields:
            sources.setdefault(f"{table}.{key}", "default")
    settings._sources = sources
    return _check(settings, doc_origin)


def read_secret(path: Path) -> str:
    """A secret from a file (a container secret): its first line, without the line break."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"secret file {path}: {exc.strerror or exc}") from None
    return text.splitlines()[0] if text else ""


def _check(s: Settings, origin: str) -> Settings:
    """Rules that span keys or need more than a type."""
    validate_ae_title(s.ae_title)
    if s.database_password_file is not None:
        if not s.database:
            raise ConfigError(f"{origin}: [node] database_password_file: needs a database URL")
        read_secret(s.database_password_file)
    if s.tls.port is not None and (s.tls.cert is None or s.tls.key is None):
        raise ConfigError(f"{origin}: [tls] port {s.tls.port}: needs cert and key (--tls-cert, --tls-key)")
    if s.tls.require_client_cert and s.tls.ca is None:
        raise ConfigError(f"{origin}: [tls] require_client_cert: needs ca (--tls-ca)")
    if not 4096 <= s.max_pdu <= 2**32 - 1 and s.max_pdu != 0:
        raise ConfigError(f"max_pdu {s.max_pdu}: 0 (unlimited) or 4096–4294967295")
    p = s.pipeline
    for ae in (*p.destinations, *(a for v in p.destinations_by_ae.values() for a in v)):
        if ae.strip() not in s.peers:
            raise ConfigError(f"{origin}: [pipeline] destination {ae!r}: not in the AE table ([peers.{ae}])")
    if not s.web.tls and s.tls.cert is not None and s.tls.key is not None:  # HTTPS: the [tls] certificate
        s = s.model_copy(update={"web": s.web.with_(tls_cert=s.tls.cert, tls_key=s.tls.key)})
    return s
