"""What perfnode relies on inside pynetdicom and pydicom, pinned: a new library version that changes
it fails here, with a message saying which perfnode code to revisit, instead of somewhere deep in a
network test (or not at all).

* ``net/reactor.py`` replaces pynetdicom's DUL and association reactors with copies of their loops
  (event waits instead of 1 ms sleeps) by swapping classes in ``pynetdicom.association``/``.ae``, and
  replaces ``deepcopy`` in ``pynetdicom.transport``/``.ae`` for the per-association context copy;
* ``net/store.py`` makes pynetdicom stream each C-STORE dataset into the archive's file
  (``dimse_messages.NamedTemporaryFile`` + ``_config.STORE_RECV_CHUNKED_DATASET``), then reads it back
  from the request's ``_dataset_file``;
* ``net/server.py`` replaces ``AssociationSocket.recv`` per connection (TCP_QUICKACK);
* ``dicom/parametric_map.py`` marks pre-encoded sequences with ``Dataset.set_original_encoding`` and
  the private ``Dataset._character_set``.
"""

from __future__ import annotations

import hashlib
import inspect
import threading

import pydicom
import pynetdicom
import pynetdicom.ae
import pynetdicom.association
import pynetdicom.dimse_messages
import pynetdicom.dul
import pynetdicom.transport
import pytest
from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import MRImageStorage, Verification
from pynetdicom.transport import AssociationSocket

from perfnode.archive.facade import Archive, ReceiveFile
from perfnode.config import Peer, load_settings
from perfnode.net import reactor, store
from perfnode.net.ae import associate, make_ae
from tests.serve_helpers import mr_object

#: sha256 (first 16 hex digits) of the source of each library function perfnode copies, as of
#: pynetdicom 3.0.4. perfnode/net/reactor.py holds the copies.
COPIED = {
    (DULServiceProvider, "run_reactor"): ("e3a10eb3a0931e48", "perfnode.net.reactor.EventDUL.run_reactor"),
    (Association, "_run_reactor"): ("f28838c5559e462a", "perfnode.net.reactor.EventAssociation._run_reactor"),
}


def fingerprint(obj: object) -> str:
    return hashlib.sha256(inspect.getsource(obj).encode()).hexdigest()[:16]


@pytest.mark.parametrize(("owner", "name"), list(COPIED), ids=lambda x: getattr(x, "__name__", x))
def test_the_reactor_loops_perfnode_copies_are_unchanged(owner, name):
    expected, ours = COPIED[(owner, name)]
    got = fingerprint(getattr(owner, name))
    assert got == expected, (
        f"pynetdicom {pynetdicom.__version__} changed {owner.__name__}.{name} (source fingerprint {got}, "
        f"was {expected} in 3.0.4). {ours} is a copy of it with the 1 ms sleep replaced by an event wait: "
        f"diff the new version against it, port the change, then update COPIED in this test.")


def test_the_internals_the_reactor_copies_use_still_exist():
    """Attribute names the copied loops use, looked up on a real association."""
    assoc = Association(pynetdicom.AE(), "requestor")
    dul = assoc.dul
    missing = [f"DUL.{a}" for a in ("_idle_timer", "artim_timer", "event_queue", "to_provider_queue",
                                    "to_user_queue", "_run_loop_delay", "_kill_thread", "state_machine",
                                    "_process_recv_primitive", "_is_transport_event", "idle_timer_expired",
                                    "receive_pdu", "kill_dul", "stop_dul", "socket") if not hasattr(dul, a)]
    missing += [f"Association.{a}" for a in ("_dul_ready", "_reactor_checkpoint", "_is_paused", "_kill",
                                             "dimse", "acse", "network_timeout_response", "_serve_request",
                                             "is_released", "is_aborted") if not hasattr(assoc, a)]
    missing += [f"DIMSE.{a}" for a in ("get_msg", "msg_queue") if not hasattr(assoc.dimse, a)]
    missing += [f"ACSE.{a}" for a in ("is_release_requested", "send_release", "is_aborted")
                if not hasattr(assoc.acse, a)]
    assert not missing, (f"pynetdicom {pynetdicom.__version__} no longer has {missing}: "
                         "perfnode/net/reactor.py uses them in its copies of the reactor loops")
    init = inspect.getsource(Association.__init__)
    assert "self.dul: DULServiceProvider = DULServiceProvider(self)" in init, (
        "Association no longer builds its DUL as pynetdicom.association.DULServiceProvider(self): "
        "reactor.install() swaps that name to use EventDUL")


def test_installed_reactors_serve_both_sides():
    """After install(): both the requestor and the acceptor association (built when the connection
    arrives, from ``pynetdicom.association.Association``) are perfnode's, and a C-ECHO goes through."""
    reactor.install()
    settings = load_settings(port=0, host="127.0.0.1")
    seen: list[tuple[type, type]] = []

    def on_echo(event):
        seen.append((type(event.assoc), type(event.assoc.dul)))
        return 0x0000

    server_ae = make_ae(settings)
    server_ae.add_supported_context(Verification)
    server = server_ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_ECHO, on_echo)])
    try:
        ae = make_ae(settings)
        ae.add_requested_context(Verification)
        assoc = associate(ae, Peer("ANY", "127.0.0.1", server.server_address[1]))
        try:
            assert int(assoc.send_c_echo().Status) == 0
            assert (type(assoc), type(assoc.dul)) == (reactor.EventAssociation, reactor.EventDUL)
        finally:
            assoc.release()
    finally:
        server.shutdown()
    assert seen == [(reactor.EventAssociation, reactor.EventDUL)], (
        "the acceptor side did not use perfnode's reactors: pynetdicom no longer looks up "
        "pynetdicom.association.Association when a connection arrives (see reactor.install)")


def test_context_copies_go_through_the_module_level_deepcopy():
    """reactor.install() replaces the ``deepcopy`` name in pynetdicom.transport and pynetdicom.ae."""
    for module, call in ((pynetdicom.transport, "deepcopy(self.server.contexts)"),
                         (pynetdicom.ae, "deepcopy(contexts)")):
        src = inspect.getsource(module)
        assert "from copy import deepcopy" in src and call in src, (
            f"{module.__name__} no longer copies presentation contexts with a module-level deepcopy "
            f"({call}): perfnode.net.reactor.copy_contexts would silently stop being used")
    assert hasattr(PresentationContext(), "_transfer_syntax"), (
        "PresentationContext._transfer_syntax is gone: perfnode.net.reactor.copy_contexts copies it")


def test_a_received_dataset_streams_into_the_archive_file(tmp_path):
    """``_config.STORE_RECV_CHUNKED_DATASET`` + ``dimse_messages.NamedTemporaryFile`` → the handler's
    request carries the archive's :class:`ReceiveFile` as ``_dataset_file``, with the bytes in it."""
    src = inspect.getsource(pynetdicom.dimse_messages)
    assert "NamedTemporaryFile(" in src and "primitive._dataset_file = self._data_set_file" in src, (
        "pynetdicom no longer writes a chunked C-STORE dataset into dimse_messages.NamedTemporaryFile and "
        "hands it on as request._dataset_file: perfnode.net.store.install_receive_files must follow")
    archive = Archive.open(tmp_path / "data", f"sqlite:///{tmp_path / 'index.sqlite'}")
    store.install_receive_files(archive)
    got: list[tuple[type, int]] = []
    done = threading.Event()

    def on_store(event):
        rf = getattr(event.request, "_dataset_file", None)
        got.append((type(rf), rf.size if isinstance(rf, ReceiveFile) else -1))
        done.set()
        return 0x0000

    settings = load_settings(port=0, host="127.0.0.1")
    server_ae = make_ae(settings)
    server_ae.add_supported_context(MRImageStorage, list(store.TRANSFER_SYNTAXES))
    server = server_ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    path = mr_object(tmp_path / "mr.dcm", rows=8, cols=8)
    try:
        ae = make_ae(settings)
        ae.add_requested_context(MRImageStorage)
        assoc = associate(ae, Peer("ANY", "127.0.0.1", server.server_address[1]))
        try:
            assert int(assoc.send_c_store(pydicom.dcmread(path)).Status) == 0
        finally:
            assoc.release()
    finally:
        server.shutdown()
        store.uninstall_receive_files()  # process-wide: later tests' own C-STORE SCPs must not see it
        archive.close()
    assert done.wait(5) and got and got[0][0] is ReceiveFile, (
        f"the C-STORE request carried {got[0][0] if got else None}, not the archive's ReceiveFile")
    assert got[0][1] > 8 * 8 * 2  # the dataset (and its meta) were written into it
    assert pynetdicom.dimse_messages.NamedTemporaryFile.__module__ == "tempfile"  # given back


def test_socket_reads_go_through_association_socket_recv():
    """net/server.tune_socket replaces ``AssociationSocket.recv(nr_bytes)`` on each connection."""
    params = list(inspect.signature(AssociationSocket.recv).parameters)
    assert params == ["self", "nr_bytes"], f"AssociationSocket.recv is now {params}"
    src = inspect.getsource(pynetdicom.dul)
    assert "self.socket.recv(" in src, (
        "the DUL no longer reads PDUs with AssociationSocket.recv: perfnode.net.server.tune_socket "
        "(TCP_QUICKACK re-armed before each read) would be bypassed")


def test_pydicom_encoding_hooks_used_by_the_parametric_map_writer():
    """dicom/parametric_map.py marks pre-encoded sequences as Explicit VR Little Endian this way."""
    ds = Dataset()
    ds.PatientName = "Müller"
    assert hasattr(ds, "_character_set"), "pydicom Dataset._character_set is gone (dicom/parametric_map.py)"
    params = list(inspect.signature(Dataset.set_original_encoding).parameters)
    assert params[:4] == ["self", "is_implicit_vr", "is_little_endian", "character_encoding"], params
    ds.set_original_encoding(False, True, ds._character_set)
    assert ds.original_encoding == (False, True)


def test_dependency_bounds_say_why():
    """Every upper bound in pyproject.toml has its reason next to it."""
    import tomllib
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    deps = tomllib.loads(text)["project"]["dependencies"]
    lines = text.splitlines()
    for dep in deps:
        if "<" not in dep:
            continue
        (line,) = [ln for ln in lines if f'"{dep}"' in ln]
        assert "#" in line, f"{dep}: an upper bound needs its reason in a comment on the same line"

