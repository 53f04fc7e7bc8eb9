"""Hand-minimised differential sequences: embedded server vs real xenstored.

Each case is a short sequence (most found by the seeded suite and shrunk with
``xsdiff.shrink``) replayed in lockstep on a fresh real xenstored and a fresh
embedded server; every reply and watch event must match byte for byte. A
case that fails is a discrepancy of the embedded server; the comment above
each case says what 4.17 does. Once fixed, a case guards against regressions.

Step notation: ``("c0", "WRITE", tx, payload)``; connections c0/c1 are dom0
sockets, g5/g6 guests 5 and 6; ``("S", ...)`` marks privileged setup run
before the guests connect; ``("state", domid, state)``; ``("sync",)``.
"""

from __future__ import annotations

from typing import Any

import pytest
from xsdiff import CONN_NAMES, Step, real_alive, replay

from pyxs.protocol import Op
from realxs import start_real_xenstored, stop_real_xenstored
from servers import EmbeddedXsServer, RealXsServer


def make_real() -> RealXsServer:
    daemon = start_real_xenstored()
    return RealXsServer(daemon, stop=lambda: stop_real_xenstored(daemon))


def build(spec: list[tuple[Any, ...]]) -> tuple[list[Step], list[Step]]:
    setup: list[Step] = []
    steps: list[Step] = []
    for n, item in enumerate(spec, start=1):
        if item[0] == "state":
            steps.append(Step(kind="state", domid=item[1], state=item[2]))
        elif item[0] == "sync":
            steps.append(Step(kind="sync"))
        elif item[0] == "S":
            _, conn, op, tx, payload = item
            setup.append(
                Step(conn=CONN_NAMES.index(conn), op=Op[op], req_id=n, tx_id=tx, payload=payload)
            )
        else:
            conn, op, tx, payload = item
            steps.append(
                Step(conn=CONN_NAMES.index(conn), op=Op[op], req_id=n, tx_id=tx, payload=payload)
            )
    return setup, steps


GUEST_DIR = [
    ("S", "c0", "MKDIR", 0, b"/local/domain/5\0"),
    ("S", "c0", "SET_PERMS", 0, b"/local/domain/5\0n5\0"),
]

CASES: dict[str, list[tuple[Any, ...]]] = {
    # A guest watching its directory; nodes CREATED by a transaction (its own
    # or dom0's) fire at commit on the real daemon, for the guest too.
    "tx-created-node-event-reaches-guest (guest tx, MKDIR)": [
        *GUEST_DIR,
        ("g5", "WATCH", 0, b"/local/domain/5\0w\0"),
        ("g5", "TRANSACTION_START", 0, b"\0"),
        ("g5", "MKDIR", 1, b"/local/domain/5/gm\0"),
        ("g5", "TRANSACTION_END", 1, b"T\0"),
    ],
    "tx-created-node-event-reaches-guest (guest tx, WRITE)": [
        *GUEST_DIR,
        ("g5", "WATCH", 0, b"/local/domain/5\0w\0"),
        ("g5", "TRANSACTION_START", 0, b"\0"),
        ("g5", "WRITE", 1, b"/local/domain/5/gw\0v"),
        ("g5", "TRANSACTION_END", 1, b"T\0"),
    ],
    "tx-created-node-event-reaches-guest (dom0 tx, WRITE)": [
        *GUEST_DIR,
        ("g5", "WATCH", 0, b"/local/domain/5\0w\0"),
        ("c0", "TRANSACTION_START", 0, b"\0"),
        ("c0", "WRITE", 1, b"/local/domain/5/dw\0v"),
        ("c0", "TRANSACTION_END", 1, b"T\0"),
        ("sync",),
    ],
    # The same with a node that already existed: both servers agree (control).
    "tx-modified-node-event-reaches-guest (control)": [
        *GUEST_DIR,
        ("S", "c0", "WRITE", 0, b"/local/domain/5/old\0v"),
        ("g5", "WATCH", 0, b"/local/domain/5\0w\0"),
        ("c0", "TRANSACTION_START", 0, b"\0"),
        ("c0", "WRITE", 1, b"/local/domain/5/old\0v2"),
        ("c0", "TRANSACTION_END", 1, b"T\0"),
        ("sync",),
    ],
    # A recursive RM inside a transaction: at commit the real daemon fires the
    # removed node and then (pre-order) each removed child with an exact watch;
    # the guest may read them all, so it gets both.
    "tx-recursive-rm-child-event-reaches-guest": [
        ("S", "c0", "WRITE", 0, b"/r/c\0init"),
        ("S", "c0", "SET_PERMS", 0, b"/r\0n0\0b5\0"),
        ("S", "c0", "SET_PERMS", 0, b"/r/c\0n0\0b5\0"),
        ("g5", "WATCH", 0, b"/r\0p\0"),
        ("g5", "WATCH", 0, b"/r/c\0c\0"),
        ("c0", "TRANSACTION_START", 0, b"\0"),
        ("c0", "RM", 1, b"/r\0"),
        ("c0", "TRANSACTION_END", 1, b"T\0"),
        ("sync",),
    ],
    # A domain that was never introduced but exists (the hypervisor says so)
    # and owns nodes: when it goes away, 4.17 deletes the nodes it owns
    # (domain_tree_remove, no -K), firing watches; no @releaseDomain.
    "orphans-of-a-non-introduced-domain-are-deleted": [
        ("c0", "WATCH", 0, b"@releaseDomain\0r\0"),
        ("c0", "WATCH", 0, b"/o\0o\0"),
        ("c0", "WRITE", 0, b"/o/a\0x"),
        ("c0", "WRITE", 0, b"/o/b/c\0y"),
        ("state", 7, "running"),
        ("c0", "SET_PERMS", 0, b"/o/a\0n7\0"),
        ("c0", "SET_PERMS", 0, b"/o/b\0r7\0"),
        ("state", 7, "gone"),
        ("c0", "DIRECTORY", 0, b"/o\0"),
        ("c0", "GET_PERMS", 0, b"/o/b/c\0"),
    ],
    # Control: the same for an introduced domain released over the wire;
    # both servers agree.
    "orphans-of-a-released-domain-are-deleted (control)": [
        ("c0", "WATCH", 0, b"/o\0o\0"),
        ("c0", "INTRODUCE", 0, b"8\x008\x001\0"),
        ("c0", "WRITE", 0, b"/o/d/x\0z"),
        ("c0", "SET_PERMS", 0, b"/o/d\0n8\0r0\0"),
        ("c0", "RELEASE", 0, b"8\0"),
        ("c0", "DIRECTORY", 0, b"/o\0"),
    ],
    # 4.17 copies a node into a transaction when the transaction first touches
    # it. Changes made outside afterwards make a later recursive RM in the
    # transaction fail with EIO (then the commit fails with EAGAIN).
    "tx-rm-of-a-node-whose-child-vanished-outside-is-EIO": [
        ("c0", "WRITE", 0, b"/x/y\0v"),
        ("c0", "TRANSACTION_START", 0, b"\0"),
        ("c0", "WRITE", 1, b"/x\0w"),
        ("c1", "RM", 0, b"/x/y\0"),
        ("c0", "RM", 1, b"/x\0"),
        ("c0", "TRANSACTION_END", 1, b"T\0"),
    ],
    "tx-rm-of-a-child-created-outside-is-EIO": [
        ("c0", "WRITE", 0, b"/p\0v"),
        ("c0", "TRANSACTION_START", 0, b"\0"),
        ("c0", "MKDIR", 1, b"/p\0"),
        ("c1", "MKDIR", 0, b"/p/c\0"),
        ("c0", "RM", 1, b"/p/c\0"),
        ("c0", "DIRECTORY", 1, b"/p\0"),
        ("c0", "TRANSACTION_END", 1, b"T\0"),
    ],
    # The transaction read /x, /x went away outside, the transaction wrote
    # /x/y, then /x/y came back outside: the RM of /x in the transaction is
    # EIO on 4.17 (seed 8238, shrunk). Without the outside MKDIR both servers
    # answer EIO (next case).
    "tx-rm-after-the-node-was-recreated-outside-is-EIO": [
        ("c0", "WRITE", 0, b"/x/y\0a"),
        ("c0", "TRANSACTION_START", 0, b"\0"),
        ("c0", "GET_PERMS", 1, b"/x\0"),
        ("c1", "RM", 0, b"/x\0"),
        ("c0", "WRITE", 1, b"/x/y\0hello"),
        ("c1", "MKDIR", 0, b"/x/y\0"),
        ("c0", "RM", 1, b"/x\0"),
        ("c0", "TRANSACTION_END", 1, b"T\0"),
    ],
    "tx-rm-after-the-node-vanished-outside-is-EIO (control)": [
        ("c0", "WRITE", 0, b"/x/y\0a"),
        ("c0", "TRANSACTION_START", 0, b"\0"),
        ("c0", "GET_PERMS", 1, b"/x\0"),
        ("c1", "RM", 0, b"/x\0"),
        ("c0", "WRITE", 1, b"/x/y\0hello"),
        ("c0", "RM", 1, b"/x\0"),
        ("c0", "TRANSACTION_END", 1, b"T\0"),
    ],
    # A transaction makes a domain the owner of a node; the domain is
    # destroyed before the commit: 4.17 fails the commit with ENOMEM and
    # applies nothing (seed 20220 at 400 steps, shrunk).
    "tx-commit-naming-a-destroyed-domain-as-owner-is-ENOMEM": [
        ("c0", "INTRODUCE", 0, b"7\x007\x001\0"),
        ("c0", "WRITE", 0, b"/d\0"),
        ("c0", "WATCH", 0, b"/d\0w\0"),
        ("c0", "TRANSACTION_START", 0, b"\0"),
        ("c0", "SET_PERMS", 1, b"/d\0n7\0"),
        ("state", 7, "gone"),
        ("c0", "TRANSACTION_END", 1, b"T\0"),
        ("c0", "GET_PERMS", 0, b"/d\0"),
    ],
    # CONTROL "quota <domid>": 4.17 charges the node records a live
    # transaction has read or written to the domain's "memory" until it ends.
    "quota-memory-counts-transaction-accesses (dom0)": [
        ("c0", "CONTROL", 0, b"quota\x000\0"),
        ("c1", "TRANSACTION_START", 0, b"\0"),
        ("c1", "READ", 1, b"/tool\0"),
        ("c0", "CONTROL", 0, b"quota\x000\0"),
        ("c1", "READ", 1, b"/nope\0"),
        ("c0", "CONTROL", 0, b"quota\x000\0"),
        ("c1", "WRITE", 1, b"/new\0value"),
        ("c0", "CONTROL", 0, b"quota\x000\0"),
        ("c1", "RM", 1, b"/tool/xenstored\0"),
        ("c0", "CONTROL", 0, b"quota\x000\0"),
        ("c1", "TRANSACTION_END", 1, b"F\0"),
        ("c0", "CONTROL", 0, b"quota\x000\0"),
    ],
    "quota-memory-counts-transaction-accesses (guest)": [
        ("S", "c0", "MKDIR", 0, b"/local/domain/5\0"),
        ("g5", "TRANSACTION_START", 0, b"\0"),
        ("g5", "RM", 1, b"/local/domain/5/x\0"),
        ("c0", "CONTROL", 0, b"quota\x005\0"),
    ],
    # A domain that exists but was never introduced gets an accounting record
    # as soon as a SET_PERMS names it (even one that then fails): "quota <id>"
    # answers for it from then on, counting the nodes it owns.
    "quota-of-a-domain-named-in-perms-but-not-introduced": [
        ("c0", "CONTROL", 0, b"quota\x007\0"),
        ("state", 7, "running"),
        ("c0", "CONTROL", 0, b"quota\x007\0"),
        ("c0", "SET_PERMS", 0, b"/nope\0n7\0"),
        ("c0", "CONTROL", 0, b"quota\x007\0"),
        ("c0", "SET_PERMS", 0, b"/tool/xenstored\0n7\0"),
        ("c0", "CONTROL", 0, b"quota\x007\0"),
    ],
    # Control: memory of plain writes, perms and watches agrees.
    "quota-memory-nodes-perms-watches (control)": [
        ("c0", "CONTROL", 0, b"quota\x000\0"),
        ("c0", "WRITE", 0, b"/a\0hello"),
        ("c0", "SET_PERMS", 0, b"/a\0n0\0r5\0"),
        ("c0", "WATCH", 0, b"/a\0tok\0"),
        ("g5", "WATCH", 0, b"/a\0tok\0"),
        ("c0", "CONTROL", 0, b"quota\x000\0"),
        ("c0", "CONTROL", 0, b"quota\x005\0"),
    ],
}


@pytest.mark.realxs
@pytest.mark.parametrize("case", list(CASES))
def test_case(case: str) -> None:
    setup, steps = build(CASES[case])
    replay(setup, steps, make_real, EmbeddedXsServer, f"case {case!r}", ref_alive=real_alive)
