"""SCU side: C-ECHO and C-STORE (send files and folders), with a progress bar.

Files are sent as they are on disk (pynetdicom reads the dataset bytes from the file), so each
file's own transfer syntax is proposed; an association carries at most 128 presentation
contexts, so many different (SOP class, transfer syntax) pairs are sent over several
associations.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pynetdicom import AE, _config
from pynetdicom.sop_class import Verification
from tqdm import tqdm

from perfnode.config import ConfigError, Peer, Settings
from perfnode.net import reactor

log = logging.getLogger("perfnode.client")

MAX_CONTEXTS = 128  # PS3.8: presentation context IDs are odd numbers 1–255


class AssociationFailed(RuntimeError):
    """The peer could not be reached or refused the association."""


def parse_target(spec: str, settings: Settings | None = None) -> Peer:
    """``AE@host:port`` (or ``AE=host:port``), or a bare AE title from the AE table."""
    if "@" in spec or "=" in spec:
        return Peer.parse(spec)
    if settings is None:
        raise ConfigError(f"--to {spec!r}: expected AE@host:port, or an AE title from the AE table")
    return settings.peer(spec)


def _ae(settings: Settings) -> AE:
    reactor.install()
    ae = AE(ae_title=settings.ae_title)
    ae.acse_timeout = settings.acse_timeout
    ae.dimse_timeout = settings.dimse_timeout
    ae.network_timeout = settings.network_timeout
    ae.maximum_pdu_size = settings.max_pdu
    return ae


def echo(peer: Peer, settings: Settings | None = None) -> int:
    """C-ECHO the peer; return the response status (raises :class:`AssociationFailed`)."""
    ae = _ae(settings or Settings())
    ae.add_requested_context(Verification)
    assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title)
    if not assoc.is_established:
        raise AssociationFailed(f"no association with {peer.ae_title}@{peer.host}:{peer.port}")
    try:
        rsp = assoc.send_c_echo()
        if "Status" not in rsp:
            raise AssociationFailed(f"{peer.ae_title}: no C-ECHO response")
        return int(rsp.Status)
    finally:
        assoc.release()


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
        for start in range(0, len(keys), MAX_CONTEXTS):
            batch = keys[start:start + MAX_CONTEXTS]
            ae = _ae(settings)
            for sop, ts in batch:
                ae.add_requested_context(sop, ts)
            assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title)
            if not assoc.is_established:
                raise AssociationFailed(f"no association with {peer.ae_title}@{peer.host}:{peer.port}")
            try:
                for key in batch:
                    for f in groups[key]:
                        rsp = assoc.send_c_store(f)
                        status = int(rsp.Status) if "Status" in rsp else -1
                        if status in (0x0000, 0xB000, 0xB007, 0xB006):
                            result.sent += 1
                            if on_sent is not None:
                                on_sent(f)
                        else:
                            comment = str(rsp.get("ErrorComment", "")) if status >= 0 else "no response"
                            result.failed.append((f, status, comment))
                            log.warning("%s: C-STORE status 0x%04X %s", f, status & 0xFFFF, comment)
                            if not assoc.is_established:
                                raise AssociationFailed(f"{peer.ae_title}: association lost at {f}")
                        bar.update()
            finally:
                if assoc.is_established:
                    assoc.release()
    return result
