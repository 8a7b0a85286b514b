"""Transcoding on retrieve and send, against DCMTK peers that accept only Implicit VR Little Endian.

Issue 15: a stored JPEG / JPEG 2000 / RLE / JPEG-LS object failed with A702 when the destination took
only Implicit VR Little Endian, and a Big Endian object could not go to a little-endian-only peer.
Every object here must arrive re-encoded with exactly the pixels pydicom decodes from the stored file.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGLSLossless, generate_uid

from perfnode.config import Peer
from perfnode.net.client import send
from tests.nodes import free_port, need, perfnode, run, wait_for_port
from tests.serve_helpers import copy_with, sample

STUDY = "1.2.826.0.1.3680043.10.1234.15.1"
#: pydicom's sample objects, one per stored transfer syntax (name → stored transfer syntax).
STORED = {
    "SC_rgb_small_odd_jpeg.dcm": "1.2.840.10008.1.2.4.50",  # JPEG baseline (lossy), YBR_FULL_422
    "SC_rgb_jpeg_gdcm.dcm": "1.2.840.10008.1.2.4.70",  # JPEG lossless SV1
    "MR_small_jpeg_ls_lossless.dcm": "1.2.840.10008.1.2.4.80",  # JPEG-LS lossless
    "JPEGLSNearLossless_16.dcm": "1.2.840.10008.1.2.4.81",  # JPEG-LS near-lossless
    "MR2_J2KR.dcm": "1.2.840.10008.1.2.4.90",  # JPEG 2000 lossless
    "JPEG2000.dcm": "1.2.840.10008.1.2.4.91",  # JPEG 2000 (lossy)
    "emri_small_RLE.dcm": "1.2.840.10008.1.2.5",  # RLE lossless, Enhanced MR, 10 frames
    "MR_small_bigendian.dcm": "1.2.840.10008.1.2.2",  # Explicit VR Big Endian
    "image_dfl.dcm": "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
}
LOSSY = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.91"}


def _uid(k: int) -> str:
    return f"{STUDY}.{k}.1"


@pytest.fixture(scope="module")
def stored_files(tmp_path_factory) -> dict[str, Path]:
    """The samples with one study's UIDs, each its own series; SOP Instance UID → file."""
    folder = tmp_path_factory.mktemp("samples")
    out = {}
    for k, name in enumerate(STORED, 1):
        assert str(dcmread(sample(name), stop_before_pixels=True).file_meta.TransferSyntaxUID) == STORED[name]
        out[_uid(k)] = copy_with(sample(name), folder / name, StudyInstanceUID=STUDY,
                                 SeriesInstanceUID=f"{STUDY}.{k}", SOPInstanceUID=_uid(k),
                                 PatientID="TRANSCODE", PatientName="Trans^Code")
    return out


@pytest.fixture
def implicit_only(tmp_path):
    """DCMTK storescp accepting only Implicit VR Little Endian (``+xi``): (port, output folder)."""
    port, out = free_port(), tmp_path / "implicit-only"
    out.mkdir()
    proc = subprocess.Popen([need("storescp"), "+xi", "-aet", "IMPLICIT", "-od", str(out), str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, proc=proc)
    yield port, out
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def loaded(node_factory, stored_files, implicit_only, tmp_path):
    port, _ = implicit_only
    cfg = tmp_path / "perfnode.toml"
    cfg.write_text(f'[peers.IMPLICIT]\nhost = "127.0.0.1"\nport = {port}\n'
                   f'[peers.JPEGONLY]\nhost = "127.0.0.1"\nport = {port}\n'
                   'transfer_syntaxes = ["1.2.840.10008.1.2.4.50"]\n')
    n = node_factory(extra_args=["--config", str(cfg)])
    res = send(list(stored_files.values()), Peer(n.ae_title, "127.0.0.1", n.port), progress=False)
    assert res.sent == len(stored_files) and not res.failed, res
    return n


def assert_same_pixels_implicit(folder: Path, stored_files: dict[str, Path],
                                expected_ts: str = ImplicitVRLittleEndian) -> None:
    got = {str(ds.SOPInstanceUID): ds for ds in map(dcmread, sorted(folder.iterdir()))}
    assert sorted(got) == sorted(stored_files)
    for uid, ds in got.items():
        original = dcmread(stored_files[uid])
        ts = str(original.file_meta.TransferSyntaxUID)
        assert ds.file_meta.TransferSyntaxUID == expected_ts, ts
        assert np.array_equal(ds.pixel_array, original.pixel_array), f"pixels changed for {ts}"
        if ts in LOSSY:  # once lossy, always flagged (PS3.3 C.7.6.1.1.5)
            assert ds.LossyImageCompression == "01", ts


def test_movescu_to_implicit_only_storescp(loaded, implicit_only, stored_files):
    _, out = implicit_only
    res = run([need("movescu"), "-v", "-S", "-aec", loaded.ae_title, "-aem", "IMPLICIT", "127.0.0.1",
               str(loaded.port), "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={STUDY}"],
              timeout=120)
    log = res.stdout + res.stderr
    assert "Final Move Response (Success)" in log, log + loaded.output()[-3000:]
    assert_same_pixels_implicit(out, stored_files)


def test_getscu_proposing_explicit_little_endian_only(loaded, stored_files, tmp_path):
    """DCMTK getscu proposes its storage contexts (SCP role) with Explicit VR Little Endian only;
    ``+B`` writes what arrived on the wire, so the file shows the negotiated syntax."""
    out = tmp_path / "get"
    out.mkdir()
    res = run([need("getscu"), "-v", "-S", "+B", "-aec", loaded.ae_title, "-od", str(out), "127.0.0.1",
               str(loaded.port), "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={STUDY}"],
              timeout=120)
    log = res.stdout + res.stderr
    assert f"Number of Completed Suboperations : {len(stored_files)}" in log, log + loaded.output()[-3000:]
    assert_same_pixels_implicit(out, stored_files, ExplicitVRLittleEndian)


def test_perfnode_send_to_implicit_only_storescp(implicit_only, stored_files):
    port, out = implicit_only
    res = run(perfnode("send", *map(str, stored_files.values()), "--to", f"IMPLICIT@127.0.0.1:{port}",
                       "--no-progress"), timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"sent {len(stored_files)}, failed 0" in res.stdout
    assert_same_pixels_implicit(out, stored_files)


def test_no_acceptable_syntax_names_offered_and_accepted(loaded, implicit_only, tmp_path):
    """A peer restricted to JPEG baseline (which perfnode cannot encode) gets a per-instance failure."""
    _, out = implicit_only
    res = run([need("movescu"), "-v", "-S", "-aec", loaded.ae_title, "-aem", "JPEGONLY", "127.0.0.1",
               str(loaded.port), "-k", "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={STUDY}",
               "-k", f"SeriesInstanceUID={STUDY}.8"], timeout=60)  # the big-endian MR
    assert "Final Move Response (Refused: OutOfResourcesSubOperations)" in res.stdout + res.stderr
    assert list(out.iterdir()) == []
    assert loaded.logged(f"retrieve {_uid(8)}: sub-operation will fail: stored as Explicit VR Big Endian; "
                         "the peer accepted nothing"), loaded.output()[-2000:]


def test_send_restricted_peer_names_syntaxes(implicit_only, stored_files):
    port, _ = implicit_only
    peer = Peer("IMPLICIT", "127.0.0.1", port, ("1.2.840.10008.1.2.4.50",))
    res = send([stored_files[_uid(8)]], peer, progress=False)
    [(_, status, comment)] = res.failed
    assert status == -1
    assert comment.startswith("not sent: stored as Explicit VR Big Endian; the peer accepted")
    assert "perfnode can send it as Explicit VR Big Endian, Explicit VR Little Endian, Implicit VR Little " \
           "Endian, Deflated Explicit VR Little Endian, JPEG-LS Lossless" in comment


def test_reencoded_losslessly_for_a_jpeg_ls_only_peer(node_factory, tmp_path):
    """A peer restricted (AE table) to JPEG-LS lossless gets uncompressed data, re-encoded losslessly."""
    port, out = free_port(), tmp_path / "jls"
    out.mkdir()
    proc = subprocess.Popen([need("storescp"), "+xa", "-aet", "JLS", "-od", str(out), str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc=proc)
        src = copy_with(sample("CT_small.dcm"), tmp_path / "ct.dcm", SOPInstanceUID=generate_uid())
        res = send([src], Peer("JLS", "127.0.0.1", port, (str(JPEGLSLossless),)), progress=False)
        assert res.sent == 1 and not res.failed, res
        [got] = [dcmread(p) for p in out.iterdir()]
        assert got.file_meta.TransferSyntaxUID == JPEGLSLossless
        assert np.array_equal(got.pixel_array, dcmread(src).pixel_array)
    finally:
        proc.terminate()
        proc.wait(10)
