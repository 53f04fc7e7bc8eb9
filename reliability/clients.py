"""Both clients, one rule (issue 11, point 8), against a fake server.

The reply-routing rule (pyxs/protocol.py): a reply that matches no request,
or whose tx_id is not its request's, is a protocol violation that fails the
connection with :class:`pyxs.UnexpectedPacket`, in the sync client and in the
asyncio client alike. A real server never sends such a reply, so a fake one
(reliability/fakeserver.py) does, in the middle of pipelined traffic.

``one_rule``
    N cases for each client (``pyxs.Client`` with threads, ``pyxs.AsyncClient``
    with tasks), a fresh connection each. Several callers (a third of them in
    a transaction) make READs of paths of their own; the fake answers them,
    in a shuffled order, until each caller's last READ is the one left: all
    of them are then in flight at once. It answers some of those, sends the
    faulty reply, then the answers of the others. The faulty reply, cycling:

    - ``stray``: a READ reply whose req_id was never sent;
    - ``answered``: a second reply to a request already answered;
    - ``wrong tx``: the reply to a request in flight, its right value, with
      another tx_id (a request outside a transaction gets one inside one,
      and the other way round).

    Invariants: every caller gets its own right value (only for a reply sent
    before the faulty one) or UnexpectedPacket, never another caller's value
    (each value names its path), never another exception, never a hang (a
    60 s guard); the caller of the ``wrong tx`` reply gets UnexpectedPacket;
    a reply sent after the faulty one reaches nobody; the connection is
    failed after each case. Figures: cases, UnexpectedPacket raised, right
    values, wrong replies (must be 0).
"""

from __future__ import annotations

import asyncio
import random
import struct
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import pyxs
from pyxs.protocol import Op, Packet, encode

from .fakeserver import FakeServer, Peer, answer, is_value_for, value_for
from .figures import Figures

__all__ = ["KINDS", "one_rule"]

#: the faulty replies, in the order the cases cycle through them
KINDS = ("stray", "answered", "wrong tx")

#: a hang guard for a whole case (every reply is sent at once)
HANG_GUARD = 60.0

#: the transaction id the fake's TRANSACTION_START gives (fakeserver.answer)
FAKE_TX_ID = 17


@dataclass
class _Case:
    """One connection's plan, and what the fake did (filled by its thread)."""

    kind: str
    callers: int
    last: bytes  # how the path of each caller's last READ ends
    seed: int
    before: set[bytes] = field(default_factory=set)  # last READs answered first
    after: set[bytes] = field(default_factory=set)  # answered after the fault
    victim: bytes = b""  # the wrong tx case: the request the faulty reply answers
    fault_sent: bool = False


def _first(request: Packet) -> bytes:
    return request.payload.split(b"\0", 1)[0]


def _serve(plans: deque[_Case], peer: Peer) -> None:
    case = plans.popleft()
    rng = random.Random(case.seed)
    answered: list[Packet] = []
    held: list[Packet] = []
    # correct pipelined traffic: every request answered (replies shuffled
    # within each batch) but each caller's last READ, held until all of
    # them are in flight
    while len(held) < case.callers:
        replies = []
        for request in peer.requests():
            if request.op == Op.READ and _first(request).endswith(case.last):
                held.append(request)
            else:
                answered.append(request)
                replies.append(answer(request))
        rng.shuffle(replies)
        peer.send(b"".join(replies))
    rng.shuffle(held)
    split = rng.randrange(len(held))  # at least one answer after the fault
    before, after = held[:split], held[split:]
    in_flight = {r.req_id for r in held}
    if case.kind == "wrong tx":
        victim, after = after[0], after[1:]
        case.victim = _first(victim)
        data = answer(victim)
        op, req_id, tx_id, _size = struct.unpack_from("<IIII", data)
        other_tx = FAKE_TX_ID if tx_id == 0 else 0
        fault = encode(op, req_id, other_tx, data[16:])
    else:
        if case.kind == "stray":
            req_id = (max(in_flight) + 1000) & 0xFFFFFFFF or 1000
        else:
            req_id = rng.choice([r.req_id for r in answered if r.req_id not in in_flight])
        fault = encode(Op.READ, req_id, 0, value_for(b"/stray"))
    case.before = {_first(r) for r in before}
    case.after = {_first(r) for r in after}
    if before:
        peer.send(b"".join(answer(r) for r in before))
    case.fault_sent = True
    peer.send(fault)
    if after:
        peer.send(b"".join(answer(r) for r in after))
    while True:  # until the client hangs up (EOFError ends the handler)
        peer.requests()


class _Tally:
    """The figures of one client."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.cases = 0
        self.unexpected = 0
        self.right = 0
        self.wrong = 0
        self.failed_connections = 0


def _judge(fig: Figures, tally: _Tally, case: _Case, number: int, outcomes: dict[int, Any]) -> None:
    """Check each caller's outcome ((last path, value or exception)) of one case."""
    where = f"{tally.name} case {number} ({case.kind})"
    if not case.fault_sent:
        fig.fail(f"{where}: the fake never sent the faulty reply")
    fig.faults += 1
    unexpected = 0
    for caller in range(case.callers):
        if caller not in outcomes:
            fig.fail(f"{where}: caller {caller} did not finish", "hangs")
            continue
        path, outcome = outcomes[caller]
        fig.ops += 1
        if isinstance(outcome, pyxs.UnexpectedPacket):
            unexpected += 1
            tally.unexpected += 1
            fig.errors += 1
        elif isinstance(outcome, BaseException):
            fig.fail(f"{where}: caller {caller} ({path!r}) raised {outcome!r}")
        else:
            verdict = is_value_for(outcome, path)
            if verdict is not True:
                tally.wrong += 1
                fig.fail(f"{where}: caller {caller} read {outcome!r} for {path!r}")
            elif path in case.after or path == case.victim:
                fig.fail(f"{where}: {path!r}'s reply, sent after the faulty one, was delivered")
            else:
                tally.right += 1
    if not unexpected:
        fig.fail(f"{where}: nobody got UnexpectedPacket")


def _plan(kind: str, callers: int, calls: int, rng: random.Random) -> _Case:
    return _Case(kind, callers, b"/%d" % (calls - 1), rng.randrange(1 << 30))


def _sync_cases(
    fig: Figures,
    fake: FakeServer,
    plans: deque[_Case],
    cases: int,
    callers: int,
    calls: int,
    rng: random.Random,
) -> _Tally:
    tally = _Tally("sync")
    for number in range(cases):
        case = _plan(KINDS[number % len(KINDS)], callers, calls, rng)
        plans.append(case)
        c = pyxs.Client(unix_socket_path=fake.socket_path, timeout=HANG_GUARD)
        c.connect()
        outcomes: dict[int, Any] = {}

        def caller(index: int, c: pyxs.Client = c, outcomes: dict[int, Any] = outcomes) -> None:
            path = b""
            try:
                if index < callers // 3:
                    c.transaction()
                for k in range(calls):
                    path = b"/one/%d/%d" % (index, k)
                    value = c.read(path)
                    if is_value_for(value, path) is not True:
                        break
                outcomes[index] = (path, value)
            except BaseException as exc:  # noqa: BLE001 - judged
                outcomes[index] = (path, exc)

        threads = [threading.Thread(target=caller, args=(i,)) for i in range(callers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(HANG_GUARD)
        tally.cases += 1
        if not c.router.is_connected:
            tally.failed_connections += 1
        else:
            fig.fail(f"sync case {number} ({case.kind}): the connection is still up")
        c.close()
        _judge(fig, tally, case, number, dict(outcomes))
    return tally


async def _async_cases(
    fig: Figures,
    path: str,
    plans: deque[_Case],
    cases: int,
    callers: int,
    calls: int,
    rng: random.Random,
) -> _Tally:
    tally = _Tally("asyncio")
    for number in range(cases):
        case = _plan(KINDS[number % len(KINDS)], callers, calls, rng)
        plans.append(case)
        c = pyxs.AsyncClient(path)
        await c.connect()
        outcomes: dict[int, Any] = {}

        async def caller(
            index: int, c: pyxs.AsyncClient = c, outcomes: dict[int, Any] = outcomes
        ) -> None:
            target: Any = c
            path = b""
            try:
                if index < callers // 3:
                    target = await c.transaction()
                for k in range(calls):
                    path = b"/one/%d/%d" % (index, k)
                    value = await target.read(path)
                    if is_value_for(value, path) is not True:
                        break
                outcomes[index] = (path, value)
            except Exception as exc:  # noqa: BLE001 - judged
                outcomes[index] = (path, exc)

        tasks = [asyncio.ensure_future(caller(i)) for i in range(callers)]
        _, stuck = await asyncio.wait(tasks, timeout=HANG_GUARD)
        for task in stuck:
            task.cancel()
        if stuck:
            await asyncio.wait(stuck)
        tally.cases += 1
        if not c.connected:
            tally.failed_connections += 1
        else:
            fig.fail(f"asyncio case {number} ({case.kind}): the connection is still up")
        await c.close()
        _judge(fig, tally, case, number, dict(outcomes))
    return tally


def one_rule(cases: int, *, callers: int = 6, calls: int = 4, seed: int = 8) -> Figures:
    """``cases`` faulty replies to each client, amid ``callers`` callers'
    traffic of ``calls`` READs each (at least 2: the ``answered`` case needs
    a request answered before the last ones)."""
    if calls < 2 or callers < 1:
        raise ValueError("at least one caller and 2 calls each")
    fig = Figures("one rule: stray and wrong-tx replies", "fake")
    rng = random.Random(seed)
    plans: deque[_Case] = deque()
    with FakeServer(lambda peer: _serve(plans, peer)) as fake:
        tallies = [_sync_cases(fig, fake, plans, cases, callers, calls, rng)]
        tallies.append(
            asyncio.run(_async_cases(fig, fake.socket_path, plans, cases, callers, calls, rng))
        )
        for exc in fake.errors:
            fig.fail(f"fake server: {exc!r}")
    for tally in tallies:
        fig.note(
            f"{tally.name}: {tally.cases} cases ({', '.join(KINDS)} in turn), "
            f"{callers} callers each: UnexpectedPacket raised {tally.unexpected} times, "
            f"right values {tally.right}, wrong replies {tally.wrong}, "
            f"connection failed {tally.failed_connections}/{tally.cases}"
        )
    return fig.done()
