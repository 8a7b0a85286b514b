"""The file store: safe paths from UIDs, atomic durable writes, checksums, duplicate policy.

Layout under the data folder::

    objects/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm   stored objects
    tmp/                                                                    files being received

A file becomes visible under ``objects/`` only by an atomic ``rename`` of a temporary file that
was fully written and ``fsync``-ed; the directory is ``fsync``-ed after the rename. Paths are
built only from strings that passed :func:`check_uid` (digits and dots, at most 64 characters),
so a hostile UID can never name a path outside the data folder.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import queue
import re
import shutil
import tempfile
import threading
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from perfnode.errors import CannotUnderstand, OutOfResources

#: PS3.5 9.1: components of digits without leading zeros, separated by dots, 64 characters at most.
UID_RE = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")

#: fsyncs run here: a received file's while its header is read, a directory's while the index commits.
_DATASYNC = getattr(os, "fdatasync", os.fsync)  # no fdatasync on macOS
_SYNC_POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="fsync")

_UID_TAGS = {
    "StudyInstanceUID": "(0020,000D)",
    "SeriesInstanceUID": "(0020,000E)",
    "SOPInstanceUID": "(0008,0018)",
    "SOPClassUID": "(0008,0016)",
}


def check_uid(value: object, keyword: str) -> str:
    """Return ``value`` as a UID string, or raise :class:`CannotUnderstand` naming the attribute."""
    tag = _UID_TAGS.get(keyword, "")
    name = f"{tag} {keyword}".strip()
    if value is None or str(value).strip("\0 ") == "":
        raise CannotUnderstand(f"{name}: missing or empty (Type 1, PS3.3)")
    uid = str(value).strip("\0 ")
    if len(uid) > 64:
        raise CannotUnderstand(f"{name}: not a valid UID: {len(uid)} characters, over 64 (PS3.5 9.1)")
    if not UID_RE.fullmatch(uid):
        raise CannotUnderstand(f"{name}: not a valid UID {uid[:24]!r} (PS3.5 9.1 digits and dots)")
    return uid


def fsync_dir(path: Path) -> None:
    """Make a rename or create in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ReceiveFile:
    """A temporary file in ``tmp/`` that hashes while it is written and never raises on write.

    pynetdicom writes the received C-STORE dataset into it (see
    :func:`perfnode.net.store.install_receive_files`); a write error (disk full, I/O error) is
    kept in :attr:`error` so the C-STORE handler can answer with a failure status instead of
    the association being aborted.

    A ReceiveFile dropped without :meth:`discard` (pynetdicom starts a new message over a broken
    one, an association is aborted mid-dataset) removes its temporary file when it is collected,
    and stops its hashing thread: a hostile peer cannot pile up open files in ``tmp/``.
    """

    def __init__(self, directory: Path) -> None:
        fd, name = tempfile.mkstemp(dir=directory, prefix="rx-", suffix=".part")
        self.name = name
        # Small writes (meta, small objects) are buffered; PDU-sized ones go straight to the file.
        self._fp: BinaryIO = os.fdopen(fd, "wb", buffering=64 << 10)
        self._sha = hashlib.sha256()
        self.size = 0
        self.error: OSError | None = None
        self.closed = False
        self._hq: queue.SimpleQueue[Any] | None = None
        self._hasher: threading.Thread | None = None
        self._errors: list[OSError] = []  # written by the hashing thread
        self._finalizer = weakref.finalize(self, _abandon, name, None)

    @property
    def file(self) -> ReceiveFile:
        """pynetdicom calls ``.file.flush()`` after every fragment (a property: no reference cycle)."""
        return self

    #: Above this size the SHA-256 is computed in a helper thread, overlapping the network receive.
    HASH_THREAD_AFTER = 1 << 20

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self.error is None:
            try:
                self._fp.write(data)
            except OSError as exc:
                self.error = exc
                return len(data)
            self.size += len(data)
            if self._hq is None and self.size > self.HASH_THREAD_AFTER:
                self._hq = queue.SimpleQueue()
                self._hasher = threading.Thread(target=_hash_worker, daemon=True, name="rx-sha256",
                                                args=(self._hq, self._sha, self._fp.fileno(), self._errors))
                self._hasher.start()
                self._finalizer.detach()
                self._finalizer = weakref.finalize(self, _abandon, self.name, self._hq)
            if self._hq is not None:
                self._hq.put(data if isinstance(data, bytes) else bytes(data))  # bytes never change
            else:
                self._sha.update(data)
        return len(data)

    #: While a large object arrives, its data written so far is synced every this many bytes (in the
    #: helper thread), so the final fsync only has the tail left: the disk works during the receive.
    SYNC_EVERY = 8 << 20

    def _digest(self) -> str:
        if self._hq is not None and self._hasher is not None:
            self._hq.put(None)
            self._hasher.join()
            self._hq = None
            if self._errors and self.error is None:
                self.error = self._errors[0]
        return self._sha.hexdigest()

    def flush(self) -> None:  # buffered writes are flushed once, in finish()
        pass

    def flush_buffer(self) -> None:
        """Make everything written so far readable by name (no fsync; a write error is kept)."""
        if self.error is None and not self.closed:
            try:
                self._fp.flush()
            except OSError as exc:
                self.error = exc

    def finish(self) -> str:
        """Flush and fsync; return the SHA-256 (hex) of everything written; raise on a write error."""
        if self.error is None and not self.closed:
            try:
                self._fp.flush()
                os.fsync(self._fp.fileno())
            except OSError as exc:
                self.error = exc
        digest = self._digest()
        if self.error is not None:
            raise OutOfResources(f"cannot write the received object: {os.strerror(self.error.errno or 0)}")
        return digest

    def finish_in_background(self) -> Future[str]:
        """Flush now, then :meth:`finish` (fsync, digest) in the background pool.

        The file can be read by name as soon as this returns (e.g. its header, while the fsync runs).
        A write error already seen is raised at once, as :meth:`finish` would.
        """
        if self.error is None and not self.closed:
            try:
                self._fp.flush()
            except OSError as exc:
                self.error = exc
        if self.error is not None:
            self.finish()  # raises OutOfResources
        return _SYNC_POOL.submit(self.finish)

    def close(self) -> None:
        self._digest()  # stop the hasher thread, if any
        if not self.closed:
            self.closed = True
            with contextlib.suppress(OSError):
                self._fp.close()

    def discard(self) -> None:
        self.close()
        self._finalizer.detach()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.name)


def _hash_worker(hq: queue.SimpleQueue[bytes | None], sha: Any, fd: int, errors: list[OSError]) -> None:
    """Hash the chunks of one received file; sync what the kernel has every ``SYNC_EVERY`` bytes."""
    hashed = synced = 0
    while (chunk := hq.get()) is not None:
        sha.update(chunk)  # hashlib releases the GIL for large buffers
        hashed += len(chunk)
        if hashed - synced >= ReceiveFile.SYNC_EVERY and not errors:
            try:
                _DATASYNC(fd)  # what the kernel has so far; the buffered rest waits for finish()
            except OSError as exc:
                errors.append(exc)
            synced = hashed


def _abandon(name: str, hq: queue.SimpleQueue[bytes | None] | None) -> None:
    """A ReceiveFile was dropped without being discarded: stop its hasher, remove its file."""
    if hq is not None:
        hq.put(None)
    with contextlib.suppress(OSError):
        os.unlink(name)


@dataclass(frozen=True)
class StoredFile:
    """Where a received object now lives (``path`` relative to the data folder)."""

    path: str
    size: int
    sha256: str


class Storage:
    """Files under one data folder."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()
        self.objects = self.root / "objects"
        self.tmp = self.root / "tmp"
        self.objects.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self._locks = [threading.Lock() for _ in range(64)]

    def clean_tmp(self) -> int:
        """Remove partial files left by a crash or an aborted association; return how many."""
        n = 0
        for p in self.tmp.glob("rx-*.part"):
            with contextlib.suppress(OSError):
                p.unlink()
                n += 1
        return n

    def receive_file(self) -> ReceiveFile:
        return ReceiveFile(self.tmp)

    def lock(self, sop_instance_uid: str) -> threading.Lock:
        """A lock serialising work on one SOP Instance UID (striped)."""
        return self._locks[hash(sop_instance_uid) % len(self._locks)]

    def relative_path(self, study_uid: str, series_uid: str, sop_uid: str) -> str:
        parts = [check_uid(study_uid, "StudyInstanceUID"), check_uid(series_uid, "SeriesInstanceUID"),
                 check_uid(sop_uid, "SOPInstanceUID")]
        return f"objects/{parts[0]}/{parts[1]}/{parts[2]}.dcm"

    def absolute(self, relative: str) -> Path:
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"{relative!r} is outside the data folder")
        return path

    def same_content(self, relative: str, sha256: str) -> bool:
        """Whether the stored file at ``relative`` has this SHA-256."""
        try:
            with open(self.absolute(relative), "rb") as f:
                return hashlib.file_digest(f, "sha256").hexdigest() == sha256
        except FileNotFoundError:
            return False

    def place(self, source: str | Path, relative: str, sha256: str,
              size: int) -> tuple[StoredFile, Future[None]] | None:
        """Rename into place without replacing; ``None`` when a file is already at ``relative``.

        Returns the stored file and a future for the directory ``fsync`` (run in a small pool so
        that it overlaps the index commit); the rename is durable once the future has a result,
        and the caller must wait for it before acknowledging. Callers hold :meth:`lock` for the
        SOP Instance UID, so check-then-rename cannot race.
        """
        if self.absolute(relative).exists():
            return None
        dirs = self._rename(source, relative)
        return StoredFile(relative, size, sha256), _SYNC_POOL.submit(self._sync_dirs, relative, dirs)

    def commit(self, source: str | Path, relative: str, sha256: str, size: int) -> StoredFile:
        """Move a fully written, fsync-ed file to ``relative`` atomically and durably (replacing).

        ``source`` should be in ``tmp/`` (same file system); otherwise it is copied next to the
        destination first. On any error nothing new is at ``relative`` and :class:`OutOfResources`
        is raised.
        """
        self._sync_dirs(relative, self._rename(source, relative))
        return StoredFile(relative, size, sha256)

    def _rename(self, source: str | Path, relative: str) -> list[Path]:
        """Rename (or copy across file systems); return the folders whose entries changed."""
        dest = self.absolute(relative)
        try:
            created = self._makedirs(dest.parent)
            try:
                os.rename(source, dest)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                self._copy_into(Path(source), dest)
        except OSError as exc:
            raise OutOfResources(f"cannot store {relative}: {exc.strerror or exc}") from exc
        return [dest.parent, *(d.parent for d in created)]

    def _sync_dirs(self, relative: str, dirs: list[Path]) -> None:
        try:
            for d in dirs:
                fsync_dir(d)
        except OSError as exc:
            raise OutOfResources(f"cannot store {relative}: {exc.strerror or exc}") from exc

    def remove(self, relative: str) -> None:
        """Delete a stored file (used to undo a store whose index commit failed)."""
        path = self.absolute(relative)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            fsync_dir(path.parent)

    def _makedirs(self, directory: Path) -> list[Path]:
        missing: list[Path] = []
        d = directory
        while not d.exists() and d != self.root:
            missing.append(d)
            d = d.parent
        for d in reversed(missing):
            with contextlib.suppress(FileExistsError):
                d.mkdir()
        return missing

    def _copy_into(self, source: Path, dest: Path) -> None:
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".rx-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
                out.flush()
                os.fsync(out.fileno())
            os.rename(tmp, dest)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        with contextlib.suppress(FileNotFoundError):
            os.unlink(source)
