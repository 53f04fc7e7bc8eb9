"""Differential testing machinery: the same raw packets to two servers, compared.

Theory of operation
-------------------
A *sequence* is a list of steps run in lockstep against a reference server
(the real xenstored) and a candidate (the embedded server), each fresh. Every
side opens the same connections: two privileged socket connections (``c0``,
``c1``) and one connection per guest domain (``g5``, ``g6``; on the real
daemon through the guest-ring bridge of tests/realxs_guest.py). A step sends
one packet on one connection and reads that connection until the reply with
the step's req_id; meta steps change a domain's state or *sync*: every
connection sends a GET_DOMAIN_PATH with a reserved req_id and is read up to
its reply.

Everything a connection receives is appended to that connection's *stream*,
replies and WATCH_EVENTs in arrival order. The daemon queues a connection's
output in one FIFO, so an event caused by another connection's request is
queued before any reply the connection gets later, and comparing the streams
byte for byte (header included) compares replies, events and their
interleaving. Streams are compared after every step (the stepping
connection) and after every sync (all of them).

One timing effect must be taken out: cxenstored 4.17 drops a watch event
when an identical one (same watch, same path) is still queued, unsent, on
that connection ("dropping duplicate watch ... for domain N" in its trace),
and it writes a socket connection's queue one message per poll round. So
whether the second of two identical events survives depends on how fast the
first was written. After every step the harness therefore *flushes* every
connection that has ever set a watch (a sync request on each, read to its
reply): no event is left queued when the next step runs, and the streams are
a function of the steps alone (tests/interop/test_differential.py checks
that two real daemons agree). Duplicates queued within one step are still
dropped, deterministically, and the embedded server must do the same.

The generator draws from a :class:`Chooser`, either a seeded
``random.Random`` or hypothesis' ``data.draw``; it reads the reference's
replies (transaction ids) to pick plausible next steps. It only produces
payloads the real daemon survives (see :func:`real_safe`).
"""

from __future__ import annotations

import random
import select
import socket
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, TypeVar

from pyxs.protocol import PAYLOAD_MAX, Decoder, Op, Packet, encode

T = TypeVar("T")

SYNC_REQ_ID = 0x5EC0_0000
GUESTS = (5, 6)  # guest domains with a connection
SPARE = (7, 8)  # domains introduced/released/changed over the wire only
CONN_NAMES = ("c0", "c1", *(f"g{d}" for d in GUESTS))
#: a hang guard: a live connection's reply comes in milliseconds, even on a
#: loaded machine; only a connection the server stopped serving waits it out
REPLY_TIMEOUT = 30.0


# -- packets and connections -------------------------------------------------


def show(packet: Packet | str) -> str:
    if isinstance(packet, str):
        return packet
    try:
        name = Op(packet.op).name
    except ValueError:
        name = str(packet.op)
    return f"{name}(req={packet.req_id}, tx={packet.tx_id}, {packet.payload!r})"


class Wire:
    """A raw packet connection to a Unix socket path."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)  # blocking: waits for room in the listen backlog
        self.sock.settimeout(REPLY_TIMEOUT)
        self.decoder = Decoder()
        self.pending: list[Packet] = []
        self.stream: list[Packet | str] = []
        self.dead = False

    def request(self, op: int, req_id: int, tx_id: int, payload: bytes) -> Packet | str:
        """Send one packet; read (into the stream) up to its reply."""
        if self.dead:
            return "DEAD"
        try:
            self.sock.sendall(encode(op, req_id, tx_id, payload))
        except OSError as exc:
            return self._die(f"SEND-FAILED({exc.__class__.__name__})")
        deadline = time.monotonic() + REPLY_TIMEOUT
        while True:
            while self.pending:
                packet = self.pending.pop(0)
                self.stream.append(packet)
                if packet.op != Op.WATCH_EVENT and packet.req_id == req_id:
                    return packet
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return self._die("TIMEOUT")
            ready, _, _ = select.select([self.sock], [], [], remaining)
            if not ready:
                continue
            try:
                data = self.sock.recv(65536)
            except OSError as exc:
                return self._die(f"RECV-FAILED({exc.__class__.__name__})")
            if not data:
                return self._die("CLOSED")
            self.pending.extend(self.decoder.feed(data))

    def _die(self, what: str) -> str:
        self.dead = True
        self.stream.append(what)
        return what

    def close(self) -> None:
        self.sock.close()


class ServerLike(Protocol):
    name: str
    socket_path: str

    def introduce_guest(self, domid: int) -> str: ...

    def set_domain_state(self, domid: int, state: str) -> None: ...


class Side:
    """One server and the connections a sequence uses on it."""

    def __init__(self, server: ServerLike, guest_setup: Sequence[Step] = ()) -> None:
        self.server = server
        self.wires = [Wire(server.socket_path), Wire(server.socket_path)]
        # introduce, then the privileged setup (it may name the guests in
        # permissions, which needs them to exist), then connect as the guests
        paths = [server.introduce_guest(domid) for domid in GUESTS]
        for step in guest_setup:
            self.run(step)
        self.wires += [Wire(path) for path in paths]

    def run(self, step: Step) -> Packet | str | None:
        if step.kind == "state":
            self.server.set_domain_state(step.domid, step.state)
            return None
        if step.kind == "sync":
            self.flush(range(len(self.wires)))
            return None
        return self.wires[step.conn].request(step.op, step.req_id, step.tx_id, step.payload)

    def flush(self, conns: Iterable[int]) -> None:
        """A sync request on each of ``conns``: all their queued output is read."""
        for conn in conns:
            self.wires[conn].request(Op.GET_DOMAIN_PATH, SYNC_REQ_ID, 0, b"0\0")

    def close(self) -> None:
        for wire in self.wires:
            wire.close()


# -- steps -------------------------------------------------------------------


@dataclass
class Step:
    kind: str = "req"  # "req", "state" or "sync"
    conn: int = 0
    op: int = 0
    req_id: int = 0
    tx_id: int = 0
    payload: bytes = b""
    domid: int = 0
    state: str = ""

    def __str__(self) -> str:
        if self.kind == "state":
            return f"set_domain_state({self.domid}, {self.state!r})"
        if self.kind == "sync":
            return "sync"
        try:
            name = Op(self.op).name
        except ValueError:
            name = str(self.op)
        return (
            f"{CONN_NAMES[self.conn]}: {name}(req={self.req_id}, tx={self.tx_id}, {self.payload!r})"
        )


def real_safe(step: Step, active_tx: Sequence[set[int]]) -> bool:
    """False for a step known to crash the real daemon.

    - the malformed one-argument payloads of tests/REALXS.md's "Known
      defect" (never generated: one-argument payloads are always built as
      exactly one NUL-terminated string);
    - SET_PERMS on an ``@`` node that fails in ``set_perms_special()``: an
      unknown ``@`` name, or a connection without owner rights on the node
      (an unprivileged guest). 4.17's ``do_set_perms`` then returns the stale
      errno instead of the error (found by this suite: a guest's
      ``SET_PERMS "@introduceDomain\0w6\0w7\0r0\0"`` aborted the daemon), so
      only privileged connections send it, and only for the two known nodes;
    - RESET_WATCHES carrying the id of a live transaction of its connection
      (cxenstored 4.17.7 aborts: ``conn_delete_all_transactions: Assertion
      'conn->transaction == NULL' failed``; found by this suite).

    And one that does not crash it but breaks it: giving ``/`` an owner that
    can go away (7, 8, 9 here). When that domain goes, 4.17 removes the
    nodes it owns, the root included, and from then on every request, dom0's
    too, gets EACCES.
    """
    if step.kind != "req":
        return True
    if step.op in (Op.READ, Op.DIRECTORY, Op.GET_PERMS, Op.MKDIR, Op.RM):
        return step.payload.count(b"\0") == 1 and step.payload.endswith(b"\0")
    if step.op == Op.SET_PERMS and step.payload.startswith(b"/\0"):
        owner = step.payload[2:].split(b"\0", 1)[0][1:]
        return owner in (b"0", b"5", b"6")
    if step.op == Op.SET_PERMS and step.payload.startswith(b"@"):
        known = step.payload.split(b"\0", 1)[0] in (b"@introduceDomain", b"@releaseDomain")
        return known and CONN_NAMES[step.conn].startswith("c")
    if step.op == Op.RESET_WATCHES:
        return step.tx_id not in active_tx[step.conn]
    return True


# -- choosing ----------------------------------------------------------------


class Chooser(Protocol):
    def choice(self, items: Sequence[T]) -> T: ...

    def randint(self, lo: int, hi: int) -> int: ...


class RandomChooser:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def choice(self, items: Sequence[T]) -> T:
        return self.rng.choice(items)

    def randint(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)


class DrawChooser:
    """hypothesis' ``data.draw`` as a Chooser (shrinks towards early items)."""

    def __init__(self, draw: Callable[[Any], Any]) -> None:
        from hypothesis import strategies as st

        self.st = st
        self.draw = draw

    def choice(self, items: Sequence[T]) -> T:
        result: T = self.draw(self.st.sampled_from(list(items)))
        return result

    def randint(self, lo: int, hi: int) -> int:
        result: int = self.draw(self.st.integers(lo, hi))
        return result


def weighted(c: Chooser, table: Sequence[tuple[int, T]]) -> T:
    total = sum(w for w, _ in table)
    n = c.randint(0, total - 1)
    for w, item in table:
        if n < w:
            return item
        n -= w
    raise AssertionError("unreachable")


ABS_PATHS = [
    b"/a",
    b"/a/b",
    b"/a/b/c",
    b"/a/d",
    b"/b",
    b"/b/c",
    b"/tool",
    b"/tool/xenstored",
    b"/local",
    b"/local/domain",
    b"/local/domain/5",
    b"/local/domain/5/x",
    b"/local/domain/5/x/y",
    b"/local/domain/6",
    b"/local/domain/6/x",
    b"/local/domain/0/x",
]
HOT_PATHS = [b"/a", b"/a/b", b"/b", b"/local/domain/5/x"]
REL_PATHS = [b"x", b"x/y", b"d"]
LONG_PATHS = [b"/b/" + bytes([c]) * 1200 for c in b"klmnop"] + [b"x/" + b"z" * 1500]
BAD_PATHS = [
    b"/a/",
    b"//a",
    b"/a.b",
    b"",
    b"/a b",
    b"a//b",
    b"/\xc3\xa4",
    b"/a:b",
    b"/" + b"p" * 2048,
]
AT_PATHS = [b"@introduceDomain", b"@releaseDomain"]
TOKENS = [b"t", b"u", b""]
VALUES = [b"", b"v", b"hello", b"a\0b", b"\xff\x00\x01"]
PERM_DOMIDS = [0, 5, 6, 7, 9]
CONTROL_PAYLOADS = [
    b"check\0",
    b"print\0differential\0",
    b"help\0",
    b"bogus\0",
    b"",
    b"quota\0",
    b"quota-soft\0",
    *(b"quota\0%d\0" % d for d in (0, 0, 0, 5, 5, 6, 7, 9)),
    b"quota\0set\0",
]


@dataclass
class Model:
    """What the generator knows: tx ids per connection (from the reference)."""

    next_req: int = 1
    active_tx: list[set[int]] = field(default_factory=lambda: [set() for _ in CONN_NAMES])
    ended_tx: list[set[int]] = field(default_factory=lambda: [set() for _ in CONN_NAMES])
    #: connections that ever set a watch: flushed after every step
    watching: set[int] = field(default_factory=set)

    def observe(self, step: Step, reply: Packet | str | None) -> None:
        if not isinstance(reply, Packet) or step.kind != "req":
            return
        if step.op == Op.WATCH and reply.op == Op.WATCH:
            self.watching.add(step.conn)
        if step.op == Op.TRANSACTION_START and reply.op == Op.TRANSACTION_START:
            self.active_tx[step.conn].add(int(reply.payload.rstrip(b"\0")))
        elif step.op == Op.TRANSACTION_END and reply.op == Op.TRANSACTION_END:
            self.active_tx[step.conn].discard(step.tx_id)
            self.ended_tx[step.conn].add(step.tx_id)
        elif step.op == Op.TRANSACTION_END and reply.payload == b"EAGAIN\0":
            # a failed commit ends the transaction too
            self.active_tx[step.conn].discard(step.tx_id)
            self.ended_tx[step.conn].add(step.tx_id)
        elif step.op == Op.RESET_WATCHES and reply.op == Op.RESET_WATCHES:
            self.ended_tx[step.conn] |= self.active_tx[step.conn]
            self.active_tx[step.conn].clear()
        elif step.op == Op.INTRODUCE and reply.op == Op.INTRODUCE:
            domid = int(step.payload.split(b"\0")[0])
            if domid in GUESTS:  # re-introduce resets that guest's connection
                conn = CONN_NAMES.index(f"g{domid}")
                self.ended_tx[conn] |= self.active_tx[conn]
                self.active_tx[conn].clear()


class Generator:
    """Steps over a small alphabet, plausible given the model."""

    def __init__(self, c: Chooser, model: Model) -> None:
        self.c = c
        self.m = model

    def path(self) -> bytes:
        kind = weighted(self.c, [(12, "abs"), (3, "rel"), (2, "bad"), (1, "root"), (1, "long")])
        if kind == "long":
            # long names: /b's child list outgrows a 4096-byte reply (E2BIG,
            # DIRECTORY_PART paging) and a guest's 2048-byte node quota
            return self.c.choice(LONG_PATHS)
        if kind == "abs":
            # a hot subset makes transactions collide and watches fire
            return self.c.choice(HOT_PATHS if self.c.randint(0, 1) else ABS_PATHS)
        if kind == "rel":
            return self.c.choice(REL_PATHS)
        if kind == "bad":
            return self.c.choice(BAD_PATHS)
        return b"/"

    def watch_path(self) -> bytes:
        if self.c.randint(0, 5) == 0:
            return self.c.choice([*AT_PATHS, b"@bogus"])
        return self.path()

    def value(self) -> bytes:
        kind = weighted(self.c, [(10, "pool"), (4, "random"), (1, "big")])
        if kind == "pool":
            return self.c.choice(VALUES)
        if kind == "random":
            return bytes(self.c.randint(0, 255) for _ in range(self.c.randint(0, 12)))
        return b"q" * self.c.choice([2040, 2100, 3000])

    def perms(self) -> bytes:
        if self.c.randint(0, 12) == 0:
            return self.c.choice([b"", b"x0\0", b"n\0", b"nabc\0", b"r0\0x5\0"])
        entries = []
        for _ in range(self.c.randint(1, 3)):
            entries.append(
                b"%s%d\0" % (self.c.choice([b"n", b"r", b"w", b"b"]), self.c.choice(PERM_DOMIDS))
            )
        return b"".join(entries)

    def tx_for(self, conn: int) -> int:
        kind = weighted(self.c, [(12, "none"), (8, "active"), (1, "ended"), (1, "bogus")])
        active = sorted(self.m.active_tx[conn])
        ended = sorted(self.m.ended_tx[conn])
        if kind == "active" and active:
            return self.c.choice(active)
        if kind == "ended" and ended:
            return self.c.choice(ended)
        if kind == "bogus":
            return self.c.choice([999, 0xFFFFFFFF])
        return 0

    def step(self) -> Step:
        c = self.c
        kind = weighted(c, [(60, "req"), (1, "state"), (6, "sync")])
        if kind == "sync":
            return Step(kind="sync")
        if kind == "state":
            domid = c.choice([*SPARE, *GUESTS])
            states = ["running", "shutdown", "crashed"]
            if domid in SPARE:
                states += ["dying", "gone"]
            return Step(kind="state", domid=domid, state=c.choice(states))
        conn = weighted(c, [(5, 0), (3, 1), (3, 2), (1, 3)])
        table: list[tuple[int, Op | str]] = [
            (18, Op.WRITE),
            (14, Op.READ),
            (6, Op.MKDIR),
            (7, Op.RM),
            (7, Op.DIRECTORY),
            (3, Op.DIRECTORY_PART),
            (5, Op.GET_PERMS),
            (7, Op.SET_PERMS),
            (8, Op.WATCH),
            (4, Op.UNWATCH),
            (5, Op.TRANSACTION_START),
            (9, Op.TRANSACTION_END),
            (1, Op.RESET_WATCHES),
            (2, Op.GET_DOMAIN_PATH),
            (2, Op.IS_DOMAIN_INTRODUCED),
            (2, Op.INTRODUCE),
            (1, Op.RELEASE),
            (1, Op.RESUME),
            (2, Op.CONTROL),
            (1, "unknown"),
        ]
        choice = weighted(c, table)
        tx = self.tx_for(conn)
        payload = b""
        unknown = choice == "unknown"
        if unknown:
            op = c.choice([20, 23, 99, 0xFFFF, int(Op.WATCH_EVENT), int(Op.ERROR)])
        else:
            op = int(choice)
        if unknown:
            payload = b"/a\0"
        elif op in (Op.READ, Op.DIRECTORY, Op.GET_PERMS, Op.MKDIR, Op.RM):
            path = self.path() if c.randint(0, 9) else c.choice(AT_PATHS)
            if op == Op.DIRECTORY and c.randint(0, 3) == 0:
                path = b"/b"  # where the long children are
            payload = path + b"\0"
        elif op == Op.WRITE:
            payload = self.path() + (b"" if c.randint(0, 40) == 0 else b"\0" + self.value())
            payload = payload[:PAYLOAD_MAX]  # a long path plus a big value
        elif op == Op.DIRECTORY_PART:
            offset = c.choice(
                [b"0", b"0", b"1", b"2", b"5", b"100", b"2400", b"3605", b"abc", None]
            )
            path = self.path() if c.randint(0, 2) else b"/b"
            payload = path + b"\0" + (b"" if offset is None else offset + b"\0")
        elif op == Op.SET_PERMS:
            path = self.path() if c.randint(0, 12) else c.choice(AT_PATHS)
            payload = path + b"\0" + self.perms()
        elif op in (Op.WATCH, Op.UNWATCH):
            payload = self.watch_path() + b"\0"
            if c.randint(0, 25):
                payload += c.choice(TOKENS) + b"\0"
        elif op == Op.TRANSACTION_START:
            payload = c.choice([b"\0", b"\0", b""])
            if c.randint(0, 3):
                tx = 0
        elif op == Op.TRANSACTION_END:
            payload = weighted(c, [(6, b"T\0"), (3, b"F\0"), (1, b"X\0"), (1, b"")])
            busy = [i for i, txs in enumerate(self.m.active_tx) if txs]
            if busy and c.randint(0, 4):
                conn = c.choice(busy)
            active = sorted(self.m.active_tx[conn])
            if active and c.randint(0, 4):
                tx = c.choice(active)
        elif op == Op.RESET_WATCHES:
            if tx in self.m.active_tx[conn]:
                tx = 0
        elif op in (Op.GET_DOMAIN_PATH, Op.IS_DOMAIN_INTRODUCED, Op.RELEASE, Op.RESUME):
            arg = c.choice([b"0", b"5", b"6", b"7", b"8", b"9", b"32752", b"abc", b""])
            payload = arg + (b"\0" if c.randint(0, 15) else b"")
            if op in (Op.RELEASE,) and arg in (b"5", b"6"):
                payload = b"9\0"  # releasing a connected guest strands its socket
        elif op == Op.CONTROL:
            # never log/logfile/memreport/live-update/"quota set": they act
            # on the daemon itself
            payload = c.choice(CONTROL_PAYLOADS)
        elif op == Op.INTRODUCE:
            domid = c.choice([*SPARE, *SPARE, 9, *GUESTS])
            mfn = domid if c.randint(0, 5) else domid + 1
            payload = b"%d\0%d\0%d\0" % (domid, mfn, c.choice([1, 1, 0]))
            if c.randint(0, 20) == 0:
                payload = b"%d\0%d\0" % (domid, mfn)
        req_id = self.m.next_req
        self.m.next_req += 1
        return Step(conn=conn, op=op, req_id=req_id, tx_id=tx, payload=payload)


def guest_setup(c: Chooser) -> list[Step]:
    """Privileged setup run before the guests connect (toolstack-like)."""
    steps = []
    req_id = 0x5E7_0000
    for path in (b"/a", b"/a/b", b"/b"):
        if c.randint(0, 2):
            req_id += 1
            steps.append(Step(conn=0, op=Op.WRITE, req_id=req_id, payload=path + b"\0init"))
            if c.randint(0, 1):
                perms = c.choice([b"n0\0r5\0", b"n0\0b5\0w6\0", b"n5\0r6\0", b"n0\0r0\0"])
                req_id += 1
                steps.append(
                    Step(conn=0, op=Op.SET_PERMS, req_id=req_id, payload=path + b"\0" + perms)
                )
    if c.randint(0, 2) == 0:
        for path in LONG_PATHS[: c.choice([3, 4])]:  # 4: DIRECTORY "/b" is E2BIG
            req_id += 1
            steps.append(Step(conn=0, op=Op.WRITE, req_id=req_id, payload=path + b"\0"))
    for domid in GUESTS:
        if c.randint(0, 3) == 0:
            continue  # no domain directory at all
        base = b"/local/domain/%d" % domid
        perms = c.choice([b"n%d\0" % domid, b"n0\0r%d\0" % domid, b"n0\0"])
        for op, payload in ((Op.MKDIR, base + b"\0"), (Op.SET_PERMS, base + b"\0" + perms)):
            req_id += 1
            steps.append(Step(conn=0, op=op, req_id=req_id, payload=payload))
    return steps


# -- running -----------------------------------------------------------------


class Mismatch(AssertionError):
    """The streams differ; ``key`` is the first differing (expected, got) pair."""

    def __init__(self, message: str, key: tuple[str, str, str], steps: list[Step]) -> None:
        super().__init__(message)
        self.key = key
        self.steps = steps


def _streams(ref: Side, cand: Side, conn: int) -> tuple[list[Packet | str], list[Packet | str]]:
    return ref.wires[conn].stream, cand.wires[conn].stream


def _first_difference(ref: Side, cand: Side, conn: int) -> tuple[int, tuple[str, str, str]]:
    a, b = _streams(ref, cand, conn)
    i = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    want = show(a[i]) if i < len(a) else "(nothing)"
    have = show(b[i]) if i < len(b) else "(nothing)"
    return i, (CONN_NAMES[conn], want, have)


def _report(
    title: str, steps: list[Step], ref: Side, cand: Side, conns: Sequence[int], how: str
) -> str:
    lines = [title, how, "", "steps (reference = real xenstored):"]
    lines += [f"  {i:3d}  {s}" for i, s in enumerate(steps)]
    for conn in conns:
        a, b = _streams(ref, cand, conn)
        if a == b:
            continue
        i, _ = _first_difference(ref, cand, conn)
        lines.append(f"connection {CONN_NAMES[conn]}: streams differ at packet {i}")
        lines.append(f"  expected ({ref.server.name}): {[show(p) for p in a[i : i + 4]]}")
        lines.append(f"  got      ({cand.server.name}): {[show(p) for p in b[i : i + 4]]}")
    return "\n".join(lines)


def _compare(steps: list[Step], ref: Side, cand: Side, conns: Sequence[int], how: str) -> None:
    for conn in conns:
        a, b = _streams(ref, cand, conn)
        if a != b:
            _, key = _first_difference(ref, cand, conn)
            message = _report("differential mismatch", steps, ref, cand, conns, how)
            raise Mismatch(message, key, list(steps))


StepSource = Callable[[Model], Iterator[Step]]


def drive(
    setup: list[Step],
    source: StepSource,
    make_ref: Callable[[], Any],
    make_cand: Callable[[], Any],
    how: str,
    ref_alive: Callable[[Any], bool] = lambda s: True,
) -> list[Step]:
    """Run ``setup`` then the steps ``source`` yields, in lockstep; compare.

    Steps that :func:`real_safe` rejects (given the transactions live at
    that point) are skipped. Returns the steps run; raises :class:`Mismatch`.
    """
    model = Model()
    ref_server, cand_server = make_ref(), make_cand()
    ref = cand = None
    steps: list[Step] = list(setup)
    try:
        ref = Side(ref_server, setup)
        cand = Side(cand_server, setup)
        _compare(steps, ref, cand, range(len(CONN_NAMES)), how)
        for step in source(model):
            if not real_safe(step, model.active_tx):
                continue
            steps.append(step)
            reply = ref.run(step)
            cand.run(step)
            if isinstance(reply, str) and not ref_alive(ref_server):
                title = "the REAL xenstored died (add a real_safe rule)"
                raise AssertionError(_report(title, steps, ref, cand, (), how))
            model.observe(step, reply)
            if isinstance(reply, str):
                _compare(steps, ref, cand, (step.conn,), how)
                break  # the connection is gone on both sides: stop here
            # no event may stay queued into the next step (see the module doc)
            ref.flush(sorted(model.watching))
            cand.flush(sorted(model.watching))
            conns = range(len(CONN_NAMES)) if step.kind != "req" else (step.conn,)
            _compare(steps, ref, cand, sorted({*conns, *model.watching}), how)
        steps.append(Step(kind="sync"))
        ref.run(steps[-1])
        cand.run(steps[-1])
        _compare(steps, ref, cand, range(len(CONN_NAMES)), how)
        return steps
    finally:
        for side in (ref, cand):
            if side is not None:
                side.close()
        for server in (cand_server, ref_server):
            server.close()


def run_sequence(
    c: Chooser,
    make_ref: Callable[[], Any],
    make_cand: Callable[[], Any],
    length: int,
    how: str,
    ref_alive: Callable[[Any], bool] = lambda s: True,
) -> list[Step]:
    """Generate and run one sequence; raise :class:`Mismatch` on a difference."""
    setup = guest_setup(c)

    def source(model: Model) -> Iterator[Step]:
        gen = Generator(c, model)
        for _ in range(length):
            step = gen.step()
            if step.kind == "req" and step.op == Op.INTRODUCE:
                # re-introducing a guest zeroes its ring: drain it first
                yield Step(kind="sync")
            yield step

    return drive(setup, source, make_ref, make_cand, how, ref_alive)


def replay(
    setup: list[Step],
    steps: list[Step],
    make_ref: Callable[[], Any],
    make_cand: Callable[[], Any],
    how: str = "replay",
    ref_alive: Callable[[Any], bool] = lambda s: True,
) -> list[Step]:
    """Run a recorded sequence (unsafe steps are still skipped)."""
    return drive(setup, lambda model: iter(steps), make_ref, make_cand, how, ref_alive)


def shrink(
    setup: list[Step],
    steps: list[Step],
    make_ref: Callable[[], Any],
    make_cand: Callable[[], Any],
    key: tuple[str, str, str],
) -> tuple[list[Step], list[Step]]:
    """Greedy delta debugging: drop steps while the same difference remains."""

    def fails(su: list[Step], st: list[Step]) -> bool:
        try:
            replay(su, st, make_ref, make_cand)
        except Mismatch as exc:
            return exc.key == key
        return False

    for which in ("steps", "setup"):
        chunk = max(1, len(steps if which == "steps" else setup) // 2)
        while chunk >= 1:
            i = 0
            while True:
                cur = steps if which == "steps" else setup
                if i >= len(cur):
                    break
                trial = cur[:i] + cur[i + chunk :]
                if which == "steps" and fails(setup, trial):
                    steps = trial
                elif which == "setup" and fails(trial, steps):
                    setup = trial
                else:
                    i += chunk
            chunk //= 2
    return setup, steps


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def real_alive(server: Any) -> bool:
    return pid_alive(server.daemon.pid)


__all__ = [
    "CONN_NAMES",
    "DrawChooser",
    "Mismatch",
    "RandomChooser",
    "Side",
    "Step",
    "Wire",
    "pid_alive",
    "real_alive",
    "real_safe",
    "drive",
    "replay",
    "run_sequence",
    "show",
    "shrink",
]


def case_literal(setup: list[Step], steps: list[Step]) -> str:
    """Steps in the notation of test_differential_cases.py."""
    lines = []
    for prefix, group in (('"S", ', setup), ("", steps)):
        for step in group:
            if step.kind == "state":
                lines.append(f'    ("state", {step.domid}, "{step.state}"),')
            elif step.kind == "sync":
                lines.append('    ("sync",),')
            else:
                name = Op(step.op).name if step.op in Op._value2member_map_ else step.op
                where = CONN_NAMES[step.conn]
                op = f'"{name}"' if isinstance(name, str) else str(name)
                lines.append(f'    ({prefix}"{where}", {op}, {step.tx_id}, {step.payload!r}),')
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    """``python tests/interop/xsdiff.py SEED [STEPS]``: run one seed against the
    embedded server and, on a mismatch, shrink it and print a case for
    test_differential_cases.py."""
    import sys
    from pathlib import Path

    sys.path[:0] = [str(Path(__file__).resolve().parent.parent)]
    from realxs import start_real_xenstored, stop_real_xenstored
    from servers import EmbeddedXsServer, RealXsServer

    def make_real() -> Any:
        daemon = start_real_xenstored()
        return RealXsServer(daemon, stop=lambda: stop_real_xenstored(daemon))

    seed = int(argv[0])
    length = int(argv[1]) if len(argv) > 1 else 120
    try:
        run_sequence(
            RandomChooser(seed),
            make_real,
            EmbeddedXsServer,
            length,
            f"seed {seed}",
            ref_alive=real_alive,
        )
    except Mismatch as exc:
        setup = guest_setup(RandomChooser(seed))
        setup, steps = shrink(setup, exc.steps[len(setup) :], make_real, EmbeddedXsServer, exc.key)
        print(f"seed {seed}: {exc.key[0]} expected {exc.key[1]}, got {exc.key[2]}")
        print(case_literal(setup, steps))
        return 1
    print(f"seed {seed}: no difference in {length} steps")
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
