"""The conformance statement's tables, generated from the server's own service modules.

``conformance/dicom-conformance-statement.md`` holds prose written by hand and generated blocks
between ``<!-- BEGIN GENERATED: name -->`` and ``<!-- END GENERATED: name -->``. The blocks come
from the same :func:`perfnode.net.server.all_contexts` the server negotiates with, so a new service
module shows up here automatically. Regenerate with ``python -m perfnode.conformance``; a test
fails when the committed file differs from what the code generates.
"""

from __future__ import annotations

import re
import sys
from collections import OrderedDict
from pathlib import Path

from pydicom.uid import UID

from perfnode.config import Settings
from perfnode.net.pdu import MAX_CONTROL_PDU
from perfnode.net.server import all_contexts

STATEMENT = Path(__file__).resolve().parent.parent / "conformance" / "dicom-conformance-statement.md"
_BLOCK = re.compile(
    r"(<!-- BEGIN GENERATED: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- END GENERATED: (?P=name) -->)", re.S)


def _service_name(module: str) -> str:
    return module.rsplit(".", 1)[-1]


def sop_class_table(settings: Settings) -> str:
    lines = ["| Service | SOP Class | SOP Class UID | Role |", "|---|---|---|---|"]
    for module, cx in all_contexts(settings):
        lines.append(f"| {_service_name(module)} | {UID(cx.abstract_syntax).name} | {cx.abstract_syntax} | "
                     f"{cx.role} |")
    return "\n".join(lines) + "\n"


def transfer_syntax_table(settings: Settings) -> str:
    by_service: OrderedDict[str, list[str]] = OrderedDict()
    for module, cx in all_contexts(settings):
        seen = by_service.setdefault(_service_name(module), [])
        seen.extend(ts for ts in cx.transfer_syntaxes if ts not in seen)
    lines = ["| Service | Transfer Syntax | UID |", "|---|---|---|"]
    for service, syntaxes in by_service.items():
        lines += [f"| {service} | {UID(ts).name} | {ts} |" for ts in syntaxes]
    return "\n".join(lines) + "\n"


def limits_table(settings: Settings) -> str:
    rows = [
        ("Default AE title", settings.ae_title),
        ("Default port", str(settings.port)),
        ("Maximum concurrent associations (default)", str(settings.max_associations)),
        ("Maximum concurrent associations from one address (default)",
         str(settings.max_associations_per_host)),
        ("Connections waiting for their A-ASSOCIATE-RQ, in all / from one address (default)",
         f"{settings.max_pending} / {settings.max_pending_per_host}"),
        ("Maximum PDU length received (default, bytes)", str(settings.max_pdu)),
        ("Largest A-ASSOCIATE-RQ and other control PDU accepted (bytes)", str(MAX_CONTROL_PDU)),
        ("ACSE / DIMSE / network timeouts (default, s)",
         f"{settings.acse_timeout:g} / {settings.dimse_timeout:g} / {settings.network_timeout:g}"),
        ("Presentation contexts accepted", str(len(all_contexts(settings)))),
        ("Duplicate SOP Instance with different bytes (default)", settings.duplicate_policy),
        ("Validation of received objects (default, `[store] validation`)",
         settings.store.validation),
    ]
    return "\n".join(["| Limit | Value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]) + "\n"


def blocks(settings: Settings | None = None) -> dict[str, str]:
    settings = settings or Settings()
    return {"sop-classes": sop_class_table(settings), "transfer-syntaxes": transfer_syntax_table(settings),
            "limits": limits_table(settings)}


def render(text: str, settings: Settings | None = None) -> str:
    """``text`` with every generated block replaced by what the code generates now."""
    generated = blocks(settings)

    def fill(m: re.Match) -> str:
        name = m.group("name")
        if name not in generated:
            return m.group(0)
        return f"{m.group(1)}{generated[name]}{m.group(4)}"

    return _BLOCK.sub(fill, text)


def main(argv: list[str] | None = None) -> int:
    path = Path((argv or sys.argv[1:] or [str(STATEMENT)])[0])
    old = path.read_text()
    new = render(old)
    if new != old:
        path.write_text(new)
        print(f"updated {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
