"""Put a job's output files into the node's own archive (durable, indexed, queryable)."""

from __future__ import annotations

from pathlib import Path

from perfnode.archive.ingest import find_instance, header_uids, read_header
from perfnode.errors import DuplicateConflict
from perfnode.net.context import NodeContext
from perfnode.net.store import store_received


def archive_outputs(ctx: NodeContext, files: list[str | Path]) -> list[tuple[str, Path]]:
    """Store each file like a received C-STORE; return (SOP Instance UID, archived path) pairs.

    A re-run job makes the same SOP Instance UIDs (deterministic); where one is archived already,
    the archived copy is kept and used, so what was sent before is what is sent again.
    """
    out: list[tuple[str, Path]] = []
    for f in files:
        ds = read_header(f)
        uids = header_uids(ds)
        rf = ctx.storage.receive_file()
        with open(f, "rb") as src:
            while chunk := src.read(1 << 20):
                rf.write(chunk)
        try:
            _, path, *_ = store_received(ctx, rf, uids.sop_class, str(ds.file_meta.TransferSyntaxUID),
                                        uids.sop_class, uids.sop_instance, ctx.settings.ae_title)
        except DuplicateConflict:
            with ctx.db.read() as s:
                path = ctx.storage.absolute(find_instance(s, uids.sop_instance).path)
        out.append((uids.sop_instance, path))
    return out
