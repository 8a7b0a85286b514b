"""The conformance statement's tables, generated from the server's own service modules.

``conformance/dicom-conformance-statement.md`` (and ``ihe-integration-statement.md``, its actors table
from :data:`IHE_ROWS`) holds prose written by hand and generated blocks
between ``<!-- BEGIN GENERATED: name -->`` and ``<!-- END GENERATED: name -->``. The blocks come
from the same :func:`perfnode.net.server.all_contexts` the server negotiates with, so a new service
module shows up here automatically. Regenerate with ``python -m perfnode.conformance``; a test
fails when the committed file differs from what the code generates.
"""

from __future__ import annotations

import re
import sys
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from pydicom.uid import UID

from perfnode.config import Settings
from perfnode.net.pdu import MAX_CONTROL_PDU
from perfnode.net.server import all_contexts

STATEMENT = Path(__file__).resolve().parent.parent / "conformance" / "dicom-conformance-statement.md"
IHE_STATEMENT = Path(__file__).resolve().parent.parent / "conformance" / "ihe-integration-statement.md"
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


# --- IHE Integration Statement (conformance/ihe-integration-statement.md) -----------------------------

STORAGE_COMMITMENT = "1.2.840.10008.1.20.1"
ENHANCED_MR, ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.4.1", "1.2.840.10008.5.1.4.1.1.2.1"
MR, CT = "1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.2"
PARAMETRIC_MAP = "1.2.840.10008.5.1.4.1.1.30"
FIND_MODELS = ("1.2.840.10008.5.1.4.1.2.1.1", "1.2.840.10008.5.1.4.1.2.2.1")
RETRIEVE_MODELS = ("1.2.840.10008.5.1.4.1.2.1.2", "1.2.840.10008.5.1.4.1.2.2.2",
                   "1.2.840.10008.5.1.4.1.2.1.3", "1.2.840.10008.5.1.4.1.2.2.3")


@dataclass(frozen=True)
class IheRow:
    """One transaction an actor of a profile performs, how perfnode does it, and the conformance/run cases
    that exercise it against real peers.

    ``service``: for the SCP side, the module of :data:`perfnode.net.server.SERVICES` whose presentation
    contexts carry ``sop_classes`` (checked); for the SCU side, the ``perfnode`` command (checked)."""

    profile: str
    actor: str
    transaction: str
    optionality: str  # R (required by the profile) / O
    role: str  # "SCP" or "SCU" (DIMSE role perfnode takes), "display"
    service: str
    sop_classes: tuple[str, ...]
    cases: tuple[str, ...]
    #: "Done by" when not the service module (SCP) or the command (SCU) itself.
    how: str = ""


IHE_ROWS: tuple[IheRow, ...] = (
    IheRow("PERF", "Image Manager/Image Archive", "Modality Images Stored [RAD-8]", "R", "SCP", "store",
           (ENHANCED_MR, ENHANCED_CT, MR, CT), ("im-rad8-dcmtk", "im-rad8-pynetdicom", "im-rad8-orthanc")),
    IheRow("PERF", "Image Manager/Image Archive", "Creator Images Stored [RAD-18]", "R", "SCP", "store",
           (PARAMETRIC_MAP,), ("im-rad18-dcmtk", "dciodvfy-offline-maps")),
    IheRow("PERF", "Image Manager/Image Archive", "Storage Commitment [RAD-10]", "R", "SCP", "commitment",
           (STORAGE_COMMITMENT,), ("im-rad10-pynetdicom", "im-rad10-orthanc")),
    IheRow("PERF", "Image Manager/Image Archive", "Query Images [RAD-14]", "R", "SCP", "find", FIND_MODELS,
           ("im-rad14-dcmtk", "im-rad14-pynetdicom", "im-rad14-orthanc", "im-rad14-charset-dcmtk",
            "im-rad14-ff01-dcmtk")),
    IheRow("PERF", "Image Manager/Image Archive", "Retrieve Images [RAD-16]", "R", "SCP", "retrieve",
           RETRIEVE_MODELS, ("im-rad16-move-dcmtk", "im-rad16-get-dcmtk", "im-rad16-move-orthanc",
                             "im-rad16-transcode-dcmtk", "dciodvfy-retrieved")),
    IheRow("PERF", "Acquisition Modality (simulator)", "Modality Images Stored [RAD-8]", "R", "SCU", "send",
           (ENHANCED_MR, ENHANCED_CT), ("am-rad8-orthanc", "am-rad8-dcmqrscp", "am-rad8-perfnode",
                                        "dciodvfy-phantoms")),
    IheRow("PERF", "Acquisition Modality (simulator)", "Storage Commitment [RAD-10]", "R", "SCU", "commit",
           (STORAGE_COMMITMENT,), ("am-rad10-orthanc", "am-rad10-perfnode", "am-rad10-dcmqrscp")),
    IheRow("PERF", "Image Display", "Query Images [RAD-14]", "R", "SCU", "find", FIND_MODELS,
           ("id-rad14-dcmqrscp", "id-rad14-orthanc", "id-rad14-charset-perfnode")),
    IheRow("PERF", "Image Display", "Retrieve Images [RAD-16]", "R", "SCU", "move", RETRIEVE_MODELS[:2],
           ("id-rad16-move-dcmqrscp",)),
    IheRow("PERF", "Image Display", "Retrieve Images [RAD-16]", "R", "SCU", "get", RETRIEVE_MODELS[2:],
           ("id-rad16-get-orthanc", "id-rad16-get-maps-perfnode")),
    IheRow("PERF", "Image Display", "Display of PERF objects (RAD TF-2 4.16.4.2.2.7)", "R", "display",
           "serve", (ENHANCED_MR, ENHANCED_CT), ("id-display-viewer",)),
    IheRow("(outside PERF)", "Evidence Creator (the pipeline's maps)", "Creator Images Stored [RAD-18]", "—",
           "SCU", "serve", (PARAMETRIC_MAP,), ("ec-rad18-pipeline-orthanc", "dciodvfy-pipeline-maps"),
           "`perfnode serve`: `[pipeline]`"),
    IheRow("(outside PERF)", "Evidence Creator (the pipeline's maps)", "Storage Commitment [RAD-10]", "—",
           "SCU", "serve", (STORAGE_COMMITMENT,), ("ec-rad10-pipeline-orthanc",),
           "`perfnode serve`: `[pipeline] commit`"),
)


def ihe_table() -> str:
    lines = ["| Profile | Actor | Transaction | Opt. | perfnode role | Done by | SOP classes | "
             "conformance/run cases |", "|---|---|---|---|---|---|---|---|"]
    for r in IHE_ROWS:
        how = r.how or (f"`net/{r.service}.py`" if r.role == "SCP" else f"`perfnode {r.service}`")
        classes = ", ".join(UID(u).name.replace(" SOP Class", "").replace("Query/Retrieve Information Model",
                                                                          "Q/R") for u in r.sop_classes)
        cases = ", ".join(f"`{c}`" for c in r.cases)
        lines.append(f"| {r.profile} | {r.actor} | {r.transaction} | {r.optionality} | {r.role} | {how} | "
                     f"{classes} | {cases} |")
    return "\n".join(lines) + "\n"


def blocks(settings: Settings | None = None) -> dict[str, str]:
    settings = settings or Settings()
    return {"sop-classes": sop_class_table(settings), "transfer-syntaxes": transfer_syntax_table(settings),
            "limits": limits_table(settings), "ihe-actors": ihe_table()}


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
    for path in [Path(a) for a in (argv or sys.argv[1:])] or [STATEMENT, IHE_STATEMENT]:
        old = path.read_text()
        new = render(old)
        if new != old:
            path.write_text(new)
            print(f"updated {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
