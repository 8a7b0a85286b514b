"""PDU fuzzing: real conversations (associate, C-ECHO, C-STORE, release), mutated byte by byte.

A case is one connection: the PDUs of a valid conversation with one to three mutations applied
(bits flipped, bytes set, PDU or item length fields changed, PDUs cut, doubled, dropped, reordered,
or replaced by junk), sent with short pauses so that the receiver reacts in between. The peer's
answers are read and discarded; a few cases keep the connection open after the last byte (they
are closed at the end of the batch, so the receiver's timeouts are exercised). The same seeds give
the same cases, so a failure can be replayed.
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from tests.reliability.attacks import (
    ABORT,
    RELEASE_RQ,
    associate_rq,
    echo_command,
    p_data,
    pdv,
    store_command,
)
from tests.reliability.mutate import conformant_mr, part10, split


def conversations(rng: random.Random) -> list[list[bytes]]:
    """A few valid conversations, each a list of PDUs as a requestor sends them."""
    ds = conformant_mr(rows=8, columns=8, seed=rng.randrange(1000))
    for keyword in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        setattr(ds, keyword, f"2.25.{rng.getrandbits(120)}")  # the same seed, the same bytes
    uid = ds.SOPInstanceUID
    _, body, _ = split(part10(ds))
    rq = associate_rq()
    half = len(body) // 2
    return [
        [rq, p_data(pdv(1, echo_command(), command=True)), RELEASE_RQ],
        [rq, p_data(pdv(3, store_command(uid), command=True)), p_data(pdv(3, body, command=False)),
         RELEASE_RQ],
        [rq, p_data(pdv(3, store_command(uid, 7), command=True)),
         p_data(pdv(3, body[:half], command=False, last=False)), p_data(pdv(3, body[half:], command=False)),
         p_data(pdv(1, echo_command(8), command=True)), RELEASE_RQ],
        [rq, p_data(pdv(1, echo_command(), command=True)), ABORT],
    ]


def _mutate_pdu(pdu: bytes, rng: random.Random) -> list[bytes]:
    b = bytearray(pdu)
    if len(b) < 6:
        b += bytes(6 - len(b))
    kind = rng.randrange(12)
    if kind == 0:  # flip bits
        for _ in range(rng.randint(1, 6)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    elif kind == 1:  # set bytes
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.choice((0, 0xFF, 0x7F, 0x80, rng.randrange(256)))
    elif kind == 2:  # PDU length field
        n = len(b)
        struct.pack_into(">L", b, 2, rng.choice((0, 1, 3, 4, max(0, n - 5), max(0, n - 7), n + 10, 0xFFFFFFFF,
                                                 0x7FFFFFFF, rng.randrange(1 << 32))))
    elif kind == 3:  # an item or PDV length somewhere in the body
        if len(b) > 12:
            i = rng.randrange(6, len(b) - 4)
            if rng.random() < 0.5:
                struct.pack_into(">H", b, i, rng.choice((0, 1, 0xFFFF, rng.randrange(1 << 16))))
            else:
                struct.pack_into(">L", b, i, rng.choice((0, 1, 0xFFFFFFFF, rng.randrange(1 << 32))))
    elif kind == 4:  # PDU type
        b[0] = rng.choice((0, 1, 2, 3, 4, 5, 6, 7, 8, 0x10, 0xFF))
    elif kind == 5:  # cut short
        b = b[: rng.randrange(1, len(b))]
    elif kind == 6:  # trailing junk
        b += bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    elif kind == 7:  # doubled
        return [bytes(b), bytes(b)]
    elif kind == 8:  # dropped
        return []
    elif kind == 9:  # junk instead
        return [bytes(rng.randrange(256) for _ in range(rng.randint(1, 200)))]
    elif kind == 10:  # insert bytes
        i = rng.randrange(len(b))
        b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 12)))
    else:  # delete bytes
        i = rng.randrange(len(b))
        del b[i: i + rng.randint(1, 12)]
    return [bytes(b)]


@dataclass(frozen=True)
class Case:
    seed: int
    pdus: tuple[bytes, ...]
    hold: bool  # keep the connection open after the last PDU


def make_case(seed: int) -> Case:
    rng = random.Random(seed)
    convo = rng.choice(conversations(rng))
    pdus = list(convo)
    for _ in range(rng.randint(1, 3)):
        if not pdus:
            break
        if rng.random() < 0.1 and len(pdus) > 1:  # reorder
            i, j = rng.randrange(len(pdus)), rng.randrange(len(pdus))
            pdus[i], pdus[j] = pdus[j], pdus[i]
            continue
        i = rng.randrange(len(pdus))
        pdus[i:i + 1] = _mutate_pdu(pdus[i], rng)
    return Case(seed, tuple(pdus), hold=rng.random() < 0.03)


@dataclass
class BatchResult:
    cases: int = 0
    outcomes: Counter = field(default_factory=Counter)  # how the peer answered the last PDU
    held: list[socket.socket] = field(default_factory=list)
    seconds: float = 0.0


def run_case(port: int, case: Case, host: str = "127.0.0.1", pause: float = 0.002,
             read_timeout: float = 0.3) -> tuple[str, socket.socket | None]:
    """Send one case; return how it ended ("closed", "abort", "answered", "refused"), and the socket
    when the case holds it open."""
    try:
        sock = socket.create_connection((host, port), timeout=5)
    except OSError:
        return "refused", None
    outcome = "answered"
    try:
        for pdu in case.pdus:
            try:
                sock.sendall(pdu)
            except OSError:
                outcome = "closed"
                break
            time.sleep(pause)
        sock.settimeout(read_timeout)
        try:
            got = sock.recv(65536)
            if not got:
                outcome = "closed"
            elif got[0] == 0x07:
                outcome = "abort"
        except TimeoutError:
            outcome = "silent"
        except OSError:
            outcome = "closed"
    finally:
        if not case.hold:
            with contextlib.suppress(OSError):
                sock.close()
    return outcome, sock if case.hold else None


def run_batch(port: int, seeds: range, workers: int = 4, host: str = "127.0.0.1") -> BatchResult:
    """Run the cases of ``seeds`` with ``workers`` threads; held sockets are returned open."""
    result = BatchResult()
    lock = threading.Lock()
    it = iter(seeds)
    t0 = time.monotonic()

    def work() -> None:
        while True:
            with lock:
                seed = next(it, None)
            if seed is None:
                return
            outcome, held = run_case(port, make_case(seed), host)
            with lock:
                result.cases += 1
                result.outcomes[outcome] += 1
                if held is not None:
                    result.held.append(held)

    threads = [threading.Thread(target=work, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result.seconds = time.monotonic() - t0
    return result
