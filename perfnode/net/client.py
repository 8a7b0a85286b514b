"""SCU side: C-ECHO and C-STORE (send files and folders), with a progress bar.

Per SOP class, each file's own transfer syntax is proposed plus an uncompressed context
(:func:`storage_proposal`). A file whose syntax the peer accepted is sent as it is on disk
(pynetdicom reads the dataset bytes from the file); otherwise it is re-encoded for the peer
(:mod:`perfnode.dicom.transcode`), or reported as not sent, naming the syntaxes. An association
carries at most 128 presentation contexts, so many different (SOP class, transfer syntax) pairs are
sent over several associations.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import _config, build_context
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import Verification
from tqdm import tqdm

from perfnode.config import ConfigError, Peer, Settings
from perfnode.dicom import transcode
from perfnode.net.ae import AssociationFailed, associate, make_ae

log = logging.getLogger("perfnode.client")

MAX_CONTEXTS = 128  # PS3.8: presentation context IDs are odd numbers 1–255
UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
#: (SOP class, transfer syntax) pairs per association: each needs at most two contexts.
PAIRS_PER_ASSOCIATION = MAX_CONTEXTS // 2


def parse_target(spec: str, settings: Settings | None = None) -> Peer:
    """``AE@host:port`` (or ``AE=host:port``), or a bare AE title from the AE table."""
    if "@" in spec or "=" in spec:
        return Peer.parse(spec)
    if settings is None:
        raise ConfigError(f"--to {spec!r}: expected AE@host:port, or an AE title from the AE table")
    return settings.peer(spec)


def echo(peer: Peer, settings: Settings | None = None) -> int:
    """C-ECHO the peer; return the response status (raises :class:`AssociationFailed`)."""
    ae = make_ae(settings or Settings())
    ae.add_requested_context(Verification)
    assoc = associate(ae, peer, settings)
    try:
        rsp = assoc.send_c_echo()
        if "Status" not in rsp:
            raise AssociationFailed(f"{peer.ae_title}: no C-ECHO response")
        return int(rsp.Status)
    finally:
        assoc.release()


def storage_proposal(
    pairs: Iterable[tuple[str, str]], transfer_syntaxes: tuple[str, ...] = ()
) -> list[PresentationContext]:
    """Presentation contexts to send objects of these (SOP class, stored transfer syntax) pairs.

    Per SOP class: each stored compressed (or big-endian, deflated) syntax on its own, plus one
    uncompressed context (Explicit, Implicit VR Little Endian), so a peer can refuse compression and
    still get the data. ``transfer_syntaxes`` (the peer's list in the AE table) limits the proposal to
    what the peer takes, and adds the lossless encodings perfnode can produce from the stored data
    when they are on that list. At most 128 contexts: the uncompressed one of every class first.
    """
    by_class: dict[str, set[str]] = defaultdict(set)
    for cls, ts in pairs:
        by_class[cls].add(ts)
    native: list[PresentationContext] = []
    plain: list[PresentationContext] = []
    allowed = list(dict.fromkeys(transfer_syntaxes))
    for cls, tss in by_class.items():
        stored = [ts for ts in sorted(tss) if ts not in UNCOMPRESSED and (not allowed or ts in allowed)]
        extra: list[str] = []
        if allowed:  # a restricted peer: anything on its list perfnode can make from what is stored
            makeable = {t for ts in tss for t in transcode.producible(ts)}
            extra = [t for t in allowed if t in makeable and t not in UNCOMPRESSED and t not in stored]
        native += [build_context(cls, ts) for ts in [*stored, *extra]]
        unc = [ts for ts in UNCOMPRESSED if not allowed or ts in allowed]
        if unc:
            plain.append(build_context(cls, unc))
    return (plain + native)[:MAX_CONTEXTS]


def accepted_syntaxes(assoc: Any, as_scu: bool = True) -> dict[str, set[str]]:
    """SOP class → transfer syntaxes accepted on an association for sending C-STOREs."""
    out: dict[str, set[str]] = defaultdict(set)
    for cx in assoc.accepted_contexts:
        if not as_scu or cx.as_scu:
            out[str(cx.abstract_syntax)].add(str(cx.transfer_syntax[0]))
    return out


def iter_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Files under each path (folders recursively, sorted), skipping hidden files."""
    for p in map(Path, paths):
        if p.is_dir():
            yield from (f for f in sorted(p.rglob("*")) if f.is_file() and not f.name.startswith("."))
        elif p.is_file():
            yield p
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")


@dataclass
class SendResult:
    sent: int = 0
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    failed: list[tuple[Path, int, str]] = field(default_factory=list)


def _sop_class_and_ts(path: Path) -> tuple[str, str] | None:
    try:
        ds = dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"])
        ts = ds.file_meta.TransferSyntaxUID
        sop = ds.file_meta.get("MediaStorageSOPClassUID") or ds.get("SOPClassUID")
        return (str(sop), str(ts)) if sop and ts else None
    except (InvalidDicomError, OSError, AttributeError, ValueError, EOFError):
        return None


def _send_one(assoc: Any, f: Path, key: tuple[str, str], accepted: set[str], result: SendResult,
              on_sent: Callable[[Path], None] | None) -> None:
    """C-STORE one file: as stored when the peer accepted its syntax, else re-encoded (or not sent)."""
    what: Path | Any = f
    if key[1] not in accepted:
        try:
            what = transcode.for_peer(dcmread(f), accepted)
        except (transcode.NoAcceptableSyntax, transcode.TranscodeError) as exc:
            result.failed.append((f, -1, f"not sent: {exc}"))
            log.warning("%s: not sent: %s", f, exc)
            return
        log.info("%s: re-encoded from %s to %s for %s", f, UID(key[1]).name,
                 UID(str(what.file_meta.TransferSyntaxUID)).name, assoc.acceptor.ae_title)
    rsp = assoc.send_c_store(what)
    status = int(rsp.Status) if "Status" in rsp else -1
    if status in (0x0000, 0xB000, 0xB007, 0xB006):
        result.sent += 1
        if on_sent is not None:
            on_sent(f)
    else:
        comment = str(rsp.get("ErrorComment", "")) if status >= 0 else "no response"
        result.failed.append((f, status, comment))
        log.warning("%s: C-STORE status 0x%04X %s", f, status & 0xFFFF, comment)


def send(paths: Iterable[str | Path], peer: Peer, settings: Settings | None = None,
         progress: bool = True, on_sent: Callable[[Path], None] | None = None) -> SendResult:
    """C-STORE every DICOM file under ``paths`` to ``peer``; non-DICOM files are skipped.

    ``on_sent(path)`` is called after each object the peer accepted (e.g. to keep a sent-log).
    """
    settings = settings or Settings()
    result = SendResult()
    groups: dict[tuple[str, str], list[Path]] = {}
    for f in iter_files(paths):
        key = _sop_class_and_ts(f)
        if key is None or key[0] == "1.2.840.10008.1.3.10":  # not DICOM, or a DICOMDIR
            result.skipped.append((f, "not a DICOM Part 10 object file"))
            continue
        groups.setdefault(key, []).append(f)
    keys = list(groups)
    total = sum(len(v) for v in groups.values())
    _config.STORE_SEND_CHUNKED_DATASET = True
    with tqdm(total=total, unit="obj", disable=not progress or None, desc=f"send → {peer.ae_title}") as bar:
        for start in range(0, len(keys), PAIRS_PER_ASSOCIATION):
            batch = keys[start:start + PAIRS_PER_ASSOCIATION]
            contexts = storage_proposal(batch, peer.transfer_syntaxes)
            if not contexts:  # the AE table allows nothing these objects can be sent in
                for key in batch:
                    why = transcode.no_acceptable(key[1], peer.transfer_syntaxes, key[0])
                    result.failed += [(f, -1, f"not sent: {why}") for f in groups[key]]
                    bar.update(len(groups[key]))
                continue
            ae = make_ae(settings)
            ae.requested_contexts = contexts
            assoc = associate(ae, peer, settings)
            try:
                accepted = accepted_syntaxes(assoc)
                for key in batch:
                    for f in groups[key]:
                        _send_one(assoc, f, key, accepted.get(key[0], set()), result, on_sent)
                        if not assoc.is_established:
                            raise AssociationFailed(f"{peer.ae_title}: association lost at {f}")
                        bar.update()
            finally:
                if assoc.is_established:
                    assoc.release()
    return result
