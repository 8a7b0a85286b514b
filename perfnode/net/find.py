"""Query/Retrieve C-FIND SCP (Patient Root and Study Root; PS3.4 C.4.1): a thin handler.

Matching lives in the archive (:meth:`Archive.find`); this module picks the information model from
the presentation context, turns :class:`~perfnode.archive.query.QueryError` into a status,
sets Specific Character Set / Retrieve AE Title on each response, and honours C-CANCEL between
responses.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from pydicom.charset import python_encoding
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import evt
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
)

from perfnode.archive.facade import PATIENT_ROOT, STUDY_ROOT, QueryError, needs_unicode
from perfnode.config import Settings
from perfnode.net.context import Context, NodeContext, association_stats
from perfnode.net.status import (
    CANCEL,
    IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS,
    PENDING,
    PENDING_OPTIONAL_KEYS_NOT_SUPPORTED,
    UNABLE_TO_PROCESS,
    status_dataset,
)

log = logging.getLogger("perfnode.find")

_TEXT_VRS = {"PN", "LO", "SH", "LT", "ST", "UT", "UC"}
TRANSFER_SYNTAXES = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
ROOTS = {
    str(PatientRootQueryRetrieveInformationModelFind): PATIENT_ROOT,
    str(StudyRootQueryRetrieveInformationModelFind): STUDY_ROOT,
}


def contexts(settings: Settings) -> list[Context]:
    return [Context(uid, TRANSFER_SYNTAXES) for uid in ROOTS]


def query_status(exc: Exception) -> Dataset:
    """Status for a refused identifier (0xA900 mismatch, 0xC000 unable to process)."""
    if isinstance(exc, QueryError) and exc.kind == "mismatch":
        return status_dataset(IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, str(exc))
    return status_dataset(UNABLE_TO_PROCESS, str(exc) if isinstance(exc, QueryError) else type(exc).__name__)


def encodable(text: str, terms: list[str]) -> bool:
    """Whether every character of ``text`` can be written in one of the character sets ``terms``
    (ASCII always; ISO 2022 sets switch between their components with escape sequences)."""
    codecs = [python_encoding[t] for t in terms if t in python_encoding]
    for ch in set(text):
        if ch.isascii():
            continue
        for codec in codecs:
            try:
                ch.encode(codec)
                break
            except (UnicodeEncodeError, LookupError):
                continue
        else:
            return False
    return True


def response_charset(requested: Any, ds: Dataset) -> str | list[str] | None:
    """The Specific Character Set of a response: the requester's when it can carry the text (any
    set pydicom encodes: ISO_IR 100 … 192, ISO 2022 with escape sequences), else UTF-8."""
    if not requested:
        req: list[str] = []
    elif isinstance(requested, str):
        req = [requested]
    else:
        req = [str(v) for v in requested]
    if not needs_unicode(ds):
        return (req[0] if len(req) == 1 else req) or None
    if req == ["ISO_IR 192"]:
        return "ISO_IR 192"
    text = "".join("\\".join(map(str, e.value)) if isinstance(e.value, MultiValue) else str(e.value)
                   for e in ds if e.VR in _TEXT_VRS and e.value)
    terms = [t.strip() or "ISO 2022 IR 6" for t in req]  # an empty first value: the default repertoire
    if req and encodable(text, terms):
        return req[0] if len(req) == 1 else req
    return "ISO_IR 192"


def handle_find(event: Any, ctx: NodeContext) -> Iterator[tuple[Any, Dataset | None]]:
    """EVT_C_FIND: pending responses, one per match; cancel between responses."""
    if ctx.guard is not None and (refused := ctx.guard.refuse(event, "query")) is not None:
        yield refused, None
        return
    root = ROOTS.get(str(event.request.AffectedSOPClassUID), STUDY_ROOT)
    try:
        identifier = event.identifier
        query = ctx.archive.find(identifier, root)
    except Exception as exc:  # noqa: BLE001 - any unreadable identifier is answered with a status
        log.warning("C-FIND refused: %s", exc)
        if ctx.guard is not None:
            ctx.guard.queried(event, "4", f"refused: {exc}")
        yield query_status(exc), None
        return
    if ctx.guard is not None:
        ctx.guard.queried(event)
    requested_charset = identifier.get("SpecificCharacterSet")
    pending = PENDING_OPTIONAL_KEYS_NOT_SUPPORTED if query.optional_keys_not_supported else PENDING
    availability = "InstanceAvailability" in identifier
    n = 0
    for page in query.pages():
        for ds in page:
            if event.is_cancelled:
                log.info("C-FIND cancelled after %d responses", n)
                yield CANCEL, None
                return
            ds.RetrieveAETitle = ctx.settings.ae_title
            if availability:
                ds.InstanceAvailability = "ONLINE"
            charset = response_charset(requested_charset, ds)
            if charset:
                ds.SpecificCharacterSet = charset
            n += 1
            association_stats(event.assoc)["matches"] += 1
            yield pending, ds
    ff01 = " (0xFF01: optional keys not supported)" if pending == PENDING_OPTIONAL_KEYS_NOT_SUPPORTED else ""
    log.info("C-FIND %s level: %d matches%s", query.level, n, ff01)


def handlers(ctx: NodeContext) -> list[tuple[Any, Callable]]:
    return [(evt.EVT_C_FIND, partial(handle_find, ctx=ctx))]
