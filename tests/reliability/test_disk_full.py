"""A full disk under the index or under the objects: A700 (Out of Resources), nothing half-kept, and
the node stores again as soon as there is room.

Before (issue 17): a full SQLite index answered 0x0110 "database or disk is full". Needs root (a
small tmpfs is mounted); skipped otherwise.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

import pytest

from tests.nodes import run
from tests.reliability.attacks import echo
from tests.serve_helpers import Scu, files_under, instances, mr_object


@contextlib.contextmanager
def tmpfs(path: Path, size: str):
    path.mkdir(parents=True, exist_ok=True)
    if run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield path
    finally:
        run(["umount", "-l", str(path)])


def fill(folder: Path) -> Path:
    """Take every free byte of the file system under ``folder``; return the filler file."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for size in (64 << 10, 4096, 512, 1):
            chunk = bytes(size)
            while True:
                try:
                    os.write(fd, chunk)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
    finally:
        os.close(fd)
    return filler


def test_full_index_answers_a700_keeps_nothing_and_recovers(node_factory, tmp_path):
    with tmpfs(tmp_path / "idx", "2m") as idx:
        node = node_factory(database=f"sqlite:///{idx / 'index.sqlite'}", name="full-index")
        first = mr_object(tmp_path / "first.dcm", rows=16, cols=16)
        with Scu(node.port, [first]) as scu:
            assert scu.store(first)[0] == 0
        filler = fill(idx)
        statuses = []
        files = [mr_object(tmp_path / f"x{i}.dcm", rows=16, cols=16, seed=i) for i in range(300)]
        with Scu(node.port, files[:1]) as scu:
            for f in files:
                status, comment = scu.store(f)
                statuses.append(status)
                if status != 0:
                    break
        assert statuses[-1] == 0xA700, statuses  # not 0x0110
        assert comment.startswith("index cannot be written: database or disk is full")
        assert echo(node.port)[0]  # the node serves on
        rows = instances(node.database_url)
        stored = {p.stem for p in files_under(node.data / "objects")}
        assert stored == set(rows)  # the refused object's file was taken back
        filler.unlink()
        refused = files[len(statuses) - 1]
        with Scu(node.port, [refused]) as scu:
            assert scu.store(refused)[0] == 0  # room again: stored
        assert node.logged("refused: 0xA700 index cannot be written: database or disk is full")
        node.stop()


def test_full_data_folder_answers_a700_and_leaves_no_partial_file(node_factory, tmp_path):
    with tmpfs(tmp_path / "data", "1m") as data:
        node = node_factory(database=f"sqlite:///{tmp_path / 'index.sqlite'}", name="data")
        node.stop()
        node.data = data
        node.start()
        filler = fill(data)
        big = mr_object(tmp_path / "big.dcm", rows=256, cols=256)
        with Scu(node.port, [big]) as scu:
            status, comment = scu.store(big)
            assert status == 0xA700 and comment.startswith("cannot write the received object: No space left")
        assert files_under(data / "objects") == [] and files_under(data / "tmp") == []
        filler.unlink()
        with Scu(node.port, [big]) as scu:
            assert scu.store(big)[0] == 0
        node.stop()
