"""``--max-associations``, ``--network-timeout`` and ``--acse-timeout`` of ``perfnode serve``, seen by a
real peer (pynetdicom as SCU, and a raw socket that says nothing)."""

from __future__ import annotations

import socket
import time

from pynetdicom import AE
from pynetdicom.sop_class import Verification

from tests.nodes import Node


def scu(port: int):
    ae = AE(ae_title="LIMITS")
    ae.add_requested_context(Verification)
    return ae.associate("127.0.0.1", port, ae_title="PERFNODE")


def scu_when_free(port: int, timeout: float = 30.0):
    """An association as soon as the node has a free slot (a closed or dropped connection frees its
    slot when the node's thread for it has ended)."""
    deadline = time.monotonic() + timeout
    while True:
        assoc = scu(port)
        if assoc.is_established or time.monotonic() > deadline:
            return assoc
        time.sleep(0.2)


def test_max_associations_refuses_the_one_too_many_and_frees_the_slot(node_factory):
    # --acse-timeout: the start-up probe's connection (connect, close) holds a slot until it is dropped
    node: Node = node_factory(["--max-associations", "2", "--acse-timeout", "2"])
    first = scu_when_free(node.port)
    second = scu_when_free(node.port)
    try:
        assert first.is_established and second.is_established
        third = scu(node.port)
        assert third.is_rejected and not third.is_established
        # A-ASSOCIATE-RJ: rejected-transient, source service-provider (presentation), local limit exceeded
        rj = third.acceptor.primitive
        assert (rj.result, rj.result_source, rj.diagnostic) == (0x02, 0x03, 0x02)
        first.release()
        again = scu_when_free(node.port, 10)
        assert again.is_established and int(again.send_c_echo().Status) == 0
        again.release()
    finally:
        for a in (first, second):
            if a.is_established:
                a.release()


def test_network_timeout_ends_an_idle_association(node_factory):
    node: Node = node_factory(["--network-timeout", "2"])
    assoc = scu(node.port)
    assert assoc.is_established and int(assoc.send_c_echo().Status) == 0
    deadline = time.monotonic() + 30
    while assoc.is_established and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not assoc.is_established, "the idle association was still open after 30 s"
    assert assoc.is_released or assoc.is_aborted
    assert node.logged("association released: LIMITS@127.0.0.1") or node.logged("association aborted: LIMITS")


def test_acse_timeout_drops_a_connection_that_never_asks_for_an_association(node_factory):
    node: Node = node_factory(["--acse-timeout", "2", "--max-associations", "1"])
    silent = socket.create_connection(("127.0.0.1", node.port))
    silent.settimeout(30)
    t0 = time.monotonic()
    try:
        data = b""
        while chunk := silent.recv(4096):  # an A-ABORT PDU may come first, then the close
            data += chunk
    finally:
        silent.close()
    took = time.monotonic() - t0
    assert took < 30, "the node kept a silent connection open for 30 s"
    assert data == b"" or data[:1] == b"\x07"  # nothing, or an A-ABORT
    assoc = scu_when_free(node.port, 10)  # the single slot is free again
    assert assoc.is_established
    assoc.release()
