"""Hostile sockets against ``perfnode serve``: each case locked the node up before the gate and PDU limits.

Before (issue 17): a 6-byte header declaring 0xFFFFFFFF made the node allocate ≈ 4 GB; 16 half-sent
A-ASSOCIATE-RQs, 16 junk-and-close connections or 200 silent connections refused every peer
("Local Limit Exceeded") for 30–60 s or for good; a partial P-DATA was held for minutes.
Timeouts are short here (``--acse-timeout 3 --network-timeout 4``) so that "not longer than the
configured timeouts" can be checked; nothing asserts how fast the machine is.
"""

from __future__ import annotations

import os
import socket
import struct
import time

import pytest

from tests.reliability.attacks import (
    RELEASE_RQ,
    associate,
    associate_rq,
    closed_by_peer,
    connect,
    echo,
    echo_command,
    echo_within,
    p_data,
    pdu,
    pdv,
    read_pdu,
    vitals,
)

ACSE_S, NETWORK_S = 3.0, 4.0
TIMEOUTS = ["--acse-timeout", str(ACSE_S), "--network-timeout", str(NETWORK_S)]


@pytest.fixture
def hnode(node_factory):
    return node_factory(TIMEOUTS)


def test_pdu_bomb_allocates_nothing_and_the_node_answers(hnode):
    before = vitals(hnode.proc.pid)
    bombs = [connect(hnode.port) for _ in range(6)]
    for s in bombs:
        s.sendall(b"\x01\x00\xff\xff\xff\xff")  # A-ASSOCIATE-RQ "of 4 GB"
    inside, answer = associate(hnode.port)
    assert answer[0] == 0x02
    inside.sendall(b"\x04\x00\xff\xff\xff\xff" + bytes(1000))  # P-DATA-TF "of 4 GB" in an association
    for s in [*bombs, inside]:
        closed, seen = closed_by_peer(s, 10)
        assert closed and seen == [0x07], seen  # A-ABORT, then the connection is closed
        s.close()
    assert echo(hnode.port)[0]
    assert vitals(hnode.proc.pid).rss_mb - before.rss_mb < 50
    log = hnode.output()
    assert "A-ASSOCIATE-RQ of 4294967295 bytes, over the 1048576 accepted" in log
    assert "PDU from ATTACKER@127.0.0.1:" in log and "P-DATA-TF of 4294967295 bytes, over the Maximum " \
           "Length 262144 we announced (max_pdu" in log


def test_p_data_longer_than_max_pdu_is_refused(node_factory):
    node = node_factory([*TIMEOUTS, "--max-pdu", "16384"])
    sock, answer = associate(node.port)
    assert answer[0] == 0x02
    sock.sendall(p_data(pdv(1, bytes(20000), command=True)))
    closed, seen = closed_by_peer(sock, 10)
    assert closed and seen == [0x07]
    assert node.logged("P-DATA-TF of 20006 bytes, over the Maximum Length 16384 we announced")
    # a P-DATA of exactly the maximum is fine (the C-ECHO below uses small ones; this one is padding)
    assert echo(node.port)[0]


def test_half_sent_requests_hold_no_slot_and_time_out(hnode):
    rq = associate_rq()
    half = [connect(hnode.port) for _ in range(17)]
    for s in half:
        s.sendall(rq[: len(rq) // 2])
    ok, seconds, what = echo(hnode.port)
    assert ok, what  # at once: waiting connections take no association slot
    for s in half:  # and each is closed by the ARTIM timer
        closed, seen = closed_by_peer(s, ACSE_S + 10)
        assert closed and seen == []
        s.close()
    assert hnode.logged("bytes of its A-ASSOCIATE-RQ after 3 s (ARTIM timeout, acse_timeout)")


def test_junk_then_close_locks_nobody_out(hnode):
    junk = [os.urandom(100), b"\x01\x00\x00\x00\x00\x50" + os.urandom(94), b"\x09" + os.urandom(99),
            b"\x04\x00\x00\x00\x00\x10" + os.urandom(16)]
    for i in range(16):
        s = connect(hnode.port)
        s.sendall(junk[i % len(junk)])
        s.close()
    time.sleep(0.5)  # the node has read them all
    for _ in range(3):
        ok, _, what = echo(hnode.port)
        assert ok, what
    assert "Traceback" not in hnode.output()


def test_two_hundred_silent_connections_lock_nobody_out(hnode):
    silent = [connect(hnode.port) for _ in range(200)]
    ok, _, what = echo(hnode.port)
    assert ok, what
    for s in silent[:5]:
        closed, _ = closed_by_peer(s, ACSE_S + 10)
        assert closed
    for s in silent:
        s.close()


def test_pending_connections_per_host_are_capped_but_other_hosts_get_in(node_factory):
    node = node_factory([*TIMEOUTS, "--max-pending-per-host", "20"])
    silent = [connect(node.port, source="127.0.0.2") for _ in range(30)]
    refused = 0
    for s in silent[20:]:
        closed, _ = closed_by_peer(s, 5)
        refused += closed
    assert refused == 10  # closed at once, before any ARTIM timeout
    assert echo(node.port)[0]  # from 127.0.0.1
    assert node.logged("connection(s) from 127.0.0.2 closed at once")
    for s in silent:
        s.close()
    assert echo_within(node.port, ACSE_S + 10, source="127.0.0.2")[0]


def test_partial_p_data_in_an_association_is_aborted_after_the_network_timeout(node_factory):
    node = node_factory([*TIMEOUTS, "--max-associations", "1"])
    sock, answer = associate(node.port)
    assert answer[0] == 0x02
    whole = p_data(pdv(1, echo_command(), command=True))
    sock.sendall(whole[:10])
    assert echo(node.port, timeout=2)[2] == "rejected"  # the one slot is in use…
    closed, seen = closed_by_peer(sock, NETWORK_S + 10)
    assert closed and seen == [0x07]  # …until the PDU times out: A-ABORT, closed
    assert echo_within(node.port, 10)[0]
    assert node.logged("incomplete PDU: 10 of")


def test_a_slot_is_freed_as_soon_as_the_peer_closes(node_factory):
    node = node_factory(["--max-associations", "1", "--network-timeout", "600"])
    sock, answer = associate(node.port)
    assert answer[0] == 0x02
    assert echo(node.port, timeout=2)[2] == "rejected"
    assert node.logged("association rejected from PROBE@127.0.0.1")
    sock.close()
    ok, seconds = echo_within(node.port, 10)  # not after the 600 s network timeout
    assert ok


def test_per_host_association_limit(node_factory):
    node = node_factory(["--max-associations-per-host", "2"])
    held = [associate(node.port, source="127.0.0.2") for _ in range(2)]
    assert [a[0] for _, a in held] == [0x02, 0x02]
    third, answer = associate(node.port, source="127.0.0.2")
    assert answer[0] == 0x03 and answer[1][1:4] == bytes((0x02, 0x03, 0x02))  # transient, local limit
    assert echo(node.port)[0]  # another host is not affected
    assert node.logged("2 associations in use from 127.0.0.2 (max_associations_per_host 2)")
    for s, _ in held:
        s.sendall(RELEASE_RQ)
        assert read_pdu(s) == (0x06, bytes(4))
        s.close()
    third.close()


def test_state_machine_surprises_end_only_that_association(hnode):
    """A-RELEASE-RQ followed by junk (Evt14 in Sta13), a command set without CommandDataSetType,
    a PDV whose item length lies, an unknown PDU type: each association ends, the node serves on."""
    cases = [
        RELEASE_RQ + b"\x09\x00\x00\x00\x00\x02ab",
        p_data(pdv(1, echo_command()[:-10], command=True)),  # CommandDataSetType cut off
        p_data(struct.pack(">L", 5000) + b"\x01\x03" + echo_command()),
        pdu(0x04, b"\x00\x00\x00\x01"),  # a PDV item of length 1
        pdu(0x0A, b"junk"),
        p_data(pdv(9, echo_command(), command=True)),  # a presentation context never proposed
        p_data(pdv(1, b"\xff" * 40, command=True)),
    ]
    for payload in cases:
        sock, answer = associate(hnode.port)
        assert answer[0] == 0x02
        sock.sendall(payload)
        closed, _ = closed_by_peer(sock, NETWORK_S + 10)
        assert closed, payload
        sock.close()
    assert echo(hnode.port)[0]
    time.sleep(0.5)
    log = hnode.output()
    assert "Exception in thread" not in log and "died" not in log, log[-3000:]
    assert vitals(hnode.proc.pid).threads < 40


def test_shutdown_is_clean_with_connections_pending(hnode):
    socks = [connect(hnode.port) for _ in range(5)]
    socks[0].sendall(associate_rq()[:20])
    assert hnode.stop() == 0
    for s in socks:
        s.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", hnode.port), timeout=1)
