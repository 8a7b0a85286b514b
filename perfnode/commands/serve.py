"""``perfnode serve``: run the DICOM node until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse

from perfnode.config import Settings, load_settings


def add_node_options(p: argparse.ArgumentParser) -> None:
    """Options shared by commands that need the node's settings (``--config``, ``--peer`` …)."""
    p.add_argument("--config", metavar="FILE", help="TOML file: [node] settings and [peers.AE] table")
    p.add_argument("--ae-title", help="our AE title (default PERFNODE)")
    p.add_argument("--peer", action="append", metavar="AE=host:port", help="a known peer (repeatable)")


def settings_from(args: argparse.Namespace, **extra: object) -> Settings:
    return load_settings(args.config, ae_title=args.ae_title, peers=args.peer, **extra)


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("serve", help="run the DICOM node (C-ECHO, C-STORE, … SCP)",
                       description="Run the DICOM node until SIGTERM/SIGINT.")
    add_serve_options(p)
    p.set_defaults(func=run)
    return p


def add_serve_options(p: argparse.ArgumentParser) -> None:
    """``--config``, ``--peer`` and every ``[node]`` setting as an option."""
    add_node_options(p)
    p.add_argument("--port", type=int, help="TCP port to listen on (default 11112)")
    p.add_argument("--host", help="address to bind (default: all interfaces)")
    p.add_argument("--data", metavar="DIR", help="data folder (default ./perfnode-data)")
    p.add_argument("--database", metavar="URL",
                   help="SQLAlchemy URL of the index (default: SQLite file in the data folder; "
                        "postgresql+psycopg://user@host/db works)")
    p.add_argument("--max-associations", type=int, help="concurrent associations (default 16)")
    p.add_argument("--max-associations-per-host", type=int, metavar="N",
                   help="concurrent associations from one address (default 8)")
    p.add_argument("--max-pending", type=int, metavar="N",
                   help="connections waiting for their A-ASSOCIATE-RQ (default 512)")
    p.add_argument("--max-pending-per-host", type=int, metavar="N",
                   help="connections from one address waiting for their A-ASSOCIATE-RQ (default 256)")
    p.add_argument("--acse-timeout", type=float, metavar="S",
                   help="association negotiation timeout, also the time a connection has to send its "
                        "whole A-ASSOCIATE-RQ (ARTIM) (30)")
    p.add_argument("--dimse-timeout", type=float, metavar="S", help="DIMSE message timeout (60)")
    p.add_argument("--network-timeout", type=float, metavar="S",
                   help="idle network timeout; also the time one PDU has to arrive whole (60)")
    p.add_argument("--max-pdu", type=int, metavar="BYTES",
                   help="maximum PDU length we receive (default 262144; 0 = unlimited)")
    p.add_argument("--require-known-peers", action="store_true", default=None,
                   help="refuse associations from calling AE titles not in the AE table")
    p.add_argument("--duplicate-policy", choices=["reject", "replace"],
                   help="same SOP Instance UID with different bytes: reject (default) or replace")
    p.add_argument("--web-port", type=int, metavar="N",
                   help="DICOMweb and viewer HTTP port (default 8042; [web] port in the config file)")
    p.add_argument("--no-web", action="store_true", default=None, help="no DICOMweb server and no viewer")
    p.add_argument("--allow-unknown", metavar="SERVICES", type=_services,
                   help="what calling AE titles not in the AE table may do, comma-separated from store, "
                        "query, retrieve, commit; '' for nothing (default: store)")
    p.add_argument("--accept-any-called-ae", action="store_true", default=None,
                   help="accept associations whatever Called AE Title they name (default: it must be "
                        "the node's AE title, else A-ASSOCIATE-RJ 'called AE title not recognised')")
    t = p.add_argument_group("DICOM TLS (PS3.15 B.9/B.10, BCP 195; also the [tls] table)")
    t.add_argument("--tls-port", type=int, metavar="PORT", help="also listen on PORT, TLS only")
    t.add_argument("--tls-cert", metavar="FILE", help="our certificate chain (PEM)")
    t.add_argument("--tls-key", metavar="FILE", help="our private key (PEM)")
    t.add_argument("--tls-ca", metavar="FILE", help="CA certificates (PEM) that sign the peers' certificates")
    t.add_argument("--tls-require-client-cert", action="store_true", default=None,
                   help="refuse TLS clients without a certificate signed by --tls-ca")


def _services(text: str) -> tuple[str, ...]:
    from perfnode.net.access import SERVICES

    items = tuple(s.strip() for s in text.split(",") if s.strip())
    bad = [s for s in items if s not in SERVICES]
    if bad:
        raise argparse.ArgumentTypeError(f"{', '.join(bad)}: not one of {', '.join(SERVICES)}")
    return items


def serve_settings(args: argparse.Namespace) -> Settings:
    """The settings ``serve`` runs with: file < environment < these options."""
    return settings_from(
        args, port=args.port, host=args.host, data=args.data, database=args.database,
        max_associations=args.max_associations, max_associations_per_host=args.max_associations_per_host,
        max_pending=args.max_pending, max_pending_per_host=args.max_pending_per_host,
        acse_timeout=args.acse_timeout,
        dimse_timeout=args.dimse_timeout, network_timeout=args.network_timeout, max_pdu=args.max_pdu,
        require_known_peers=args.require_known_peers, duplicate_policy=args.duplicate_policy,
        web__port=args.web_port,
        web__enabled=False if args.no_web else True if args.web_port is not None else None,
        access__unknown=args.allow_unknown, access__accept_any_called_ae=args.accept_any_called_ae,
        tls__port=args.tls_port, tls__cert=args.tls_cert,
        tls__key=args.tls_key, tls__ca=args.tls_ca, tls__require_client_cert=args.tls_require_client_cert)


def run(args: argparse.Namespace) -> int:
    from perfnode.node import run_node

    run_node(serve_settings(args))
    return 0
