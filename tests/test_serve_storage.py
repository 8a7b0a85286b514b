"""The file store on its own: UID checks, safe paths, hashing while writing, no-replace placement."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest

from perfnode.archive.storage import ReceiveFile, Storage, check_uid
from perfnode.net.status import CannotUnderstand, OutOfResources


@pytest.mark.parametrize(("value", "message"), [
    ("../../etc/passwd", "(0008,0018) SOPInstanceUID: not a valid UID '../../etc/passwd'"),
    ("1.2.03", "(0008,0018) SOPInstanceUID: not a valid UID '1.2.03'"),  # leading zero
    ("1." + "2" * 63, "(0008,0018) SOPInstanceUID: not a valid UID: 65 characters, over 64"),
    ("", "(0008,0018) SOPInstanceUID: missing or empty"),
    (None, "(0008,0018) SOPInstanceUID: missing or empty"),
])
def test_check_uid_names_the_attribute(value, message):
    with pytest.raises(CannotUnderstand) as err:
        check_uid(value, "SOPInstanceUID")
    assert str(err.value).startswith(message)


def test_valid_uids_pass_and_trailing_padding_is_stripped():
    assert check_uid("1.2.840.10008.5.1.4.1.1.4\0", "SOPClassUID") == "1.2.840.10008.5.1.4.1.1.4"
    assert check_uid("0", "SOPClassUID") == "0"


@pytest.mark.parametrize("size", [10, 3 << 20])  # inline hashing, and the hasher thread
def test_receive_file_hashes_what_was_written(tmp_path, size):
    data = os.urandom(size)
    rf = ReceiveFile(tmp_path)
    for i in range(0, size, 16384):
        rf.write(data[i:i + 16384])
    assert rf.finish() == hashlib.sha256(data).hexdigest()
    rf.close()
    assert rf.size == size and Path(rf.name).read_bytes() == data
    rf.discard()
    assert list(tmp_path.iterdir()) == []


def test_receive_file_keeps_a_write_error_for_the_handler(tmp_path):
    rf = ReceiveFile(tmp_path)
    real = rf._fp

    class Full:
        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    rf._fp = Full()
    assert rf.write(b"abc") == 3  # never raises into pynetdicom
    with pytest.raises(OutOfResources, match="cannot write the received object: No space left"):
        rf.finish()
    rf._fp = real
    rf.discard()
    assert list(tmp_path.iterdir()) == []


def test_place_never_replaces_and_commit_is_atomic(tmp_path):
    st = Storage(tmp_path)
    rel = st.relative_path("1.2.3", "1.2.3.4", "1.2.3.4.5")
    assert rel == "objects/1.2.3/1.2.3.4/1.2.3.4.5.dcm"
    for content in (b"first", b"second"):
        rf = st.receive_file()
        rf.write(content)
        sha = rf.finish()
        rf.close()
        placed = st.place(rf.name, rel, sha, rf.size)
        if content == b"first":
            assert placed is not None
            stored, synced = placed
            assert synced.result(10) is None
            assert stored.sha256 == hashlib.sha256(b"first").hexdigest() and stored.size == 5
        else:
            assert placed is None
            rf.discard()
    assert (tmp_path / rel).read_bytes() == b"first"
    assert list(st.tmp.iterdir()) == []
    with pytest.raises(ValueError, match="outside the data folder"):
        st.absolute("../escape.dcm")
