"""Scripted operation sequences, run against the embedded server AND the real
cxenstored 4.17, compared byte for byte (replies and watch events, req_id and
tx_id included).

Theory of operation
-------------------
Both servers start fresh for this module, and every script runs on both in
the same order, so generation counts (DIRECTORY_PART), transaction ids and
first-time events (@introduceDomain) stay in step.

A script is a list of steps on named connections. After each step every
open connection makes a round trip (GET_DOMAIN_PATH with a marker req_id):
the events a step caused reach each connection before that round trip's
reply, on both servers, so the transcript of a script -- per step, the
packets each connection received -- is deterministic. Guests are reached
through ``Server.guest_socket_path`` on the embedded server and through the
ring bridge of tests/realxs_guest.py on the real one.

The scripts cover tests/REALXS.md's behaviour reference item by item; they avoid
what makes the real daemon abort (see "Known defect").
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import Any, Callable

import pytest
from rawxs import SYNC_REQ_ID, RawConn

from pyxs.protocol import Op, Packet, encode
from pyxs.server import Server
from realxs import start_real_xenstored
from realxs_guest import dom0_request, guests_for, introduce_payload

pytestmark = pytest.mark.realxs

Step = tuple[Any, ...]


class Target:
    """One server under test: named raw connections and the script runner."""

    def __init__(
        self,
        name: str,
        socket_path: str,
        guest: Callable[[int], str],
        set_state: Callable[[int, str], None],
        settle: Callable[[int], None] | None = None,
    ) -> None:
        self.name = name
        self.socket_path = socket_path
        self.guest = guest
        self.set_state = set_state
        #: waits until the server is done with a guest's closed connection
        self.settle = settle
        self.conns: dict[str, RawConn] = {}
        self.domids: dict[str, int] = {}

    def run(self, script: Sequence[Step]) -> list[str]:
        transcript: list[str] = []
        try:
            for index, step in enumerate(script):
                transcript.extend(f"{index} {line}" for line in self.step(step))
                for name in sorted(self.conns):
                    conn = self.conns[name]
                    for packet in conn.sync():
                        transcript.append(f"{index} {name} <- {_fmt(packet)}")
                    conn.events.clear()
        finally:
            for conn in self.conns.values():
                conn.close()
            self.conns.clear()
            self.domids.clear()
        return transcript

    def step(self, step: Step) -> list[str]:
        kind = step[0]
        if kind == "connect":  # ("connect", name[, domid])
            name = step[1]
            domid = step[2] if len(step) > 2 else 0
            path = self.socket_path if domid == 0 else self.guest(domid)
            self.conns[name] = RawConn(path, timeout=10)
            self.domids[name] = domid
            return []
        if kind == "close":
            self.conns.pop(step[1]).close()
            domid = self.domids.pop(step[1], 0)
            if domid and self.settle is not None:
                self.settle(domid)
            return []
        if kind == "state":  # ("state", domid, state)
            self.set_state(step[1], step[2])
            return []
        if kind == "raw":  # ("raw", name, [chunks], expect_close): bytes in pieces
            conn = self.conns[step[1]]
            for chunk in step[2]:
                conn.send_raw(chunk)
                time.sleep(0.02)
            if step[3]:
                closed = conn.is_closed(5)
                self.conns.pop(step[1]).close()
                return [f"{step[1]} closed={closed}"]
            return []
        if kind == "pipeline":  # ("pipeline", name, [(op, payload, tx), ...])
            conn = self.conns[step[1]]
            requests = step[2]
            conn.send_raw(
                b"".join(
                    encode(op, 100 + i, tx, payload) for i, (op, payload, tx) in enumerate(requests)
                )
            )
            got: list[Packet] = []
            while len([p for p in got if p.op != Op.WATCH_EVENT]) < len(requests):
                got.append(conn.read_packet())
            return [f"{step[1]} <- {_fmt(p)}" for p in got]
        # a request: (name, op, payload[, tx_id])
        name, op, payload = step[0], step[1], step[2]
        tx_id = step[3] if len(step) > 3 else 0
        conn = self.conns[name]
        req_id = conn.send(op, payload, tx_id)
        return [f"{name} <- {_fmt(p)}" for p in conn.until_reply(req_id)]


def _fmt(packet: Packet) -> str:
    try:
        op = Op(packet.op).name
    except ValueError:
        op = str(packet.op)
    req = "SYNC" if packet.req_id == SYNC_REQ_ID else str(packet.req_id)
    return f"{op} req={req} tx={packet.tx_id} {packet.payload!r}"


@contextlib.contextmanager
def server_pair(quotas: dict[str, int] | None = None) -> Iterator[tuple[Target, Target]]:
    """(embedded, real), both fresh, with the same ``quotas`` (xenstored's
    ``-Q name=value``)."""
    options = [arg for item in (quotas or {}).items() for arg in ("-Q", f"{item[0]}={item[1]}")]
    daemon = start_real_xenstored(*options)
    guests = guests_for(daemon.rundir, daemon.socket_path)
    server = Server(quotas=quotas)
    server.__enter__()

    def embedded_guest(domid: int) -> str:
        reply = dom0_request(server.socket_path, Op.INTRODUCE, introduce_payload(domid))
        assert reply.op == Op.INTRODUCE, reply
        return server.guest_socket_path(domid)

    try:
        yield (
            Target("embedded", server.socket_path, embedded_guest, server.set_domain_state),
            Target(
                "real",
                daemon.socket_path,
                guests.introduce,
                guests.set_domain_state,
                guests.settle,
            ),
        )
    finally:
        server.__exit__(None, None, None)
        daemon.stop()


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[Target, Target]]:
    """(embedded, real): both fresh, used by every test of this module in order."""
    with server_pair() as both:
        yield both


def check(pair: tuple[Target, Target], script: Sequence[Step]) -> list[str]:
    embedded, real = pair
    expected = real.run(script)
    got = embedded.run(script)
    assert got == expected
    return expected


OK = b"OK\0"
W, R, D, M, X, GP, SP = Op.WRITE, Op.READ, Op.DIRECTORY, Op.MKDIR, Op.RM, Op.GET_PERMS, Op.SET_PERMS
DP, WA, UW, TS, TE = (
    Op.DIRECTORY_PART,
    Op.WATCH,
    Op.UNWATCH,
    Op.TRANSACTION_START,
    Op.TRANSACTION_END,
)


# ---------------------------------------------------------------------------
# Paths (first: relative paths want a store without /local/domain/0)


def test_paths(pair: tuple[Target, Target]) -> None:
    bad = [b"/a.b", b"/a:b", b"/a+b", b"/a b", b"/a*b", b"/\xc3\xa9", b"//a", b"/a//b", b"/a/", b""]
    script: list[Step] = [("connect", "a")]
    script += [("a", X, b"/local/domain/0/x\0")]
    script += [("a", W, p + b"\0v") for p in bad]
    script += [
        ("a", W, b"/" + b"a" * 2047 + b"\0"),
        ("a", W, b"/" + b"b" * 2048 + b"\0"),
        ("a", W, b"/local/domain/1/" + b"a" * 2048 + b"\0"),
        ("a", W, b"/local/domain/1/" + b"a" * 2049 + b"\0"),
        ("a", W, b"/local/domain/12345/" + b"a" * 2048 + b"\0"),
        ("a", W, b"/local/domain/012345/" + b"a" * 2048 + b"\0"),
        ("a", W, b"/local/domain/-1/" + b"a" * 2048 + b"\0"),
        ("a", W, b"/local/domain/123456/" + b"a" * 2020 + b"\0"),
        ("a", W, b"rel/x\0v"),
        ("a", R, b"/local/domain/0/rel/x\0"),
        ("a", R, b"rel/x\0"),
        ("a", D, b"/local/domain/0\0"),
        ("a", W, b"c" * 2048 + b"\0"),
        ("a", W, b"c" * 2049 + b"\0"),
        ("a", R, b"@introduceDomain\0"),
        ("a", GP, b"@releaseDomain\0"),
        ("a", SP, b"@releaseDomain\0n0\0"),
        ("a", SP, b"@bogus\0n0\0"),
        ("a", WA, b"@bogus\0t\0"),
        ("a", WA, b"@a.b c\0t\0"),
        ("a", DP, b"/\x000\0"),
        ("a", DP, b"/local/domain\x000\0"),
    ]
    check(pair, script)


# ---------------------------------------------------------------------------
# Replies and data


def test_replies_and_data(pair: tuple[Target, Target]) -> None:
    script: list[Step] = [
        ("connect", "a"),
        ("a", R, b"/\0"),
        ("a", W, b"/rd/v\0hello"),
        ("a", R, b"/rd/v\0"),
        ("a", W, b"/rd/v\0a\0b\0"),
        ("a", R, b"/rd/v\0"),
        ("a", W, b"/rd/v\0"),
        ("a", R, b"/rd/v\0"),
        ("a", W, b"/rd/nonul"),
        ("a", W, b"/rd/big\0" + b"x" * (4096 - 8)),
        ("a", R, b"/rd/big\0"),
        ("a", M, b"/rd/dir/sub\0"),
        ("a", M, b"/rd/dir/sub\0"),
        ("a", D, b"/rd\0"),
        ("a", D, b"/rd/v\0"),
        ("a", D, b"/rd/nope\0"),
        ("a", R, b"/rd/nope\0"),
        ("a", X, b"/rd/nope\0"),
        ("a", X, b"/rd/nope/deeper\0"),
        ("a", X, b"/\0"),
        ("a", X, b"/rd\0"),
        ("a", D, b"/\0"),
    ]
    check(pair, script)


def test_directory_order_e2big_and_parts(pair: tuple[Target, Target]) -> None:
    script: list[Step] = [("connect", "a")]
    script += [("a", W, b"/do/" + n + b"\0") for n in (b"one", b"two", b"three", b"four")]
    script += [
        ("a", D, b"/do\0"),
        ("a", X, b"/do/two\0"),
        ("a", D, b"/do\0"),
        ("a", W, b"/do/two\0x"),
    ]
    script += [("a", D, b"/do\0")]
    for offset in (b"0", b"2", b"5", b"19", b"100", b"-1", b"abc"):
        script.append(("a", DP, b"/do\0" + offset + b"\0"))
    script += [("a", DP, b"/do\0"), ("a", DP, b"/do\x001"), ("a", DP, b"/nope\x000\0")]
    names = [b"c%04d-%s" % (i, b"y" * 50) for i in range(100)]  # 5.6 KB of names
    script += [("a", M, b"/big/" + n + b"\0") for n in names]
    script += [("a", D, b"/big\0"), ("a", DP, b"/big\x000\0")]
    listing = b"".join(n + b"\0" for n in names)
    first = 4096 - len(b"999\0") - 1  # cut somewhere near the end of the first part
    script += [("a", DP, b"/big\0%d\0" % off) for off in (first - 60, first, len(listing) - 3)]
    script += [("a", W, b"/do/one\0changed"), ("a", DP, b"/do\x000\0")]
    check(pair, script)


def test_generations(pair: tuple[Target, Target]) -> None:
    script: list[Step] = [
        ("connect", "a"),
        ("a", W, b"/gen/a\0"),
        ("a", W, b"/gen/b/c/d\0"),
        ("a", TS, b"\0"),
        ("a", W, b"/gen/e\0"),
        ("a", X, b"/gen/b\0"),
        ("a", W, b"/gen/f\0", 1),
        ("a", DP, b"/gen/f\x000\0", 1),
        ("a", TE, b"T\0", 1),
        ("a", SP, b"/gen/a\0n0\0"),
        ("a", M, b"/gen/a\0"),
        ("a", X, b"/gen/zz\0"),
    ]
    script += [("a", DP, p + b"\x000\0") for p in (b"/", b"/gen", b"/gen/a", b"/gen/e", b"/gen/f")]
    check(pair, script)


# ---------------------------------------------------------------------------
# Permissions


def test_permissions_dom0(pair: tuple[Target, Target]) -> None:
    script: list[Step] = [
        ("connect", "a"),
        ("a", Op.INTRODUCE, b"40\x000\x007\0"),
        ("a", W, b"/pm\0"),
        ("a", GP, b"/pm\0"),
        ("a", SP, b"/pm\0n0\0r40\0"),
        ("a", W, b"/pm/c\0"),
        ("a", GP, b"/pm/c\0"),
        ("a", SP, b"/pm\0n40\0r99\0"),
        ("a", GP, b"/pm\0"),
        ("a", SP, b"/pm\0n99\0"),
        ("a", SP, b"/pm\0n-1\0"),
        ("a", SP, b"/pm/nope\0n0\0"),
    ]
    for entry in (
        b"r99999",
        b"r-1",
        b"r0x10",
        b"r010",
        b"r 5",
        b"r+5",
        b"r4294967295",
        b"r4294967296",
        b"r0X1f",
    ):
        script += [("a", SP, b"/pm\0n0\0" + entry + b"\0"), ("a", GP, b"/pm\0")]
    for bad in (
        b"",
        b"n0",
        b"x0\0",
        b"n0\0rabc\0",
        b"n0\0r\0",
        b"n0\0r5x\0",
        b"n0\0\0",
        b"n0\0R5\0",
        b"n0\0r08\0",
        b"n0\0r0x\0",
    ):
        script.append(("a", SP, b"/pm\0" + bad))
    script += [("a", SP, b"/pm\0n0\0r5\0extra"), ("a", GP, b"/pm\0")]
    check(pair, script)


def test_permissions_guest(pair: tuple[Target, Target]) -> None:
    g = 41
    script: list[Step] = [
        ("connect", "a"),
        ("connect", "g", g),
        ("g", R, b"/tool\0"),
        ("g", R, b"/tool/nope\0"),
        ("g", D, b"/\0"),
        ("g", W, b"x\0hello"),
        ("a", M, b"/local/domain/41\0"),
        ("a", SP, b"/local/domain/41\0n41\0"),
        ("g", W, b"x/y\0hello"),
        ("g", GP, b"x/y\0"),
        ("g", D, b"/local/domain/41\0"),
        ("a", W, b"/local/domain/41/byd0\0v"),
        ("a", GP, b"/local/domain/41/byd0\0"),
        ("a", W, b"/pg\0v"),
        ("a", SP, b"/pg\0n0\0r41\0"),
        ("g", R, b"/pg\0"),
        ("g", R, b"/pg/nope\0"),
        ("g", W, b"/pg\0x"),
        ("g", W, b"/pg/new\0x"),
        ("a", W, b"/pg/wo\0"),
        ("a", SP, b"/pg/wo\0n0\0w41\0"),
        ("g", W, b"/pg/wo\0data"),
        ("g", R, b"/pg/wo\0"),
        ("a", R, b"/pg/wo\0"),
        ("a", GP, b"/pg/wo\0"),
        ("a", W, b"/shared\0"),
        ("a", SP, b"/shared\0b0\0r7\0"),
        ("g", W, b"/shared/a/b\0v"),
        ("a", GP, b"/shared/a/b\0"),
        ("g", SP, b"x\0n0\0"),
        ("g", SP, b"x\0n41\0r0\0"),
        ("g", GP, b"x\0"),
        ("g", SP, b"/pg\0n0\0b41\0"),
        ("g", Op.INTRODUCE, b"6\x000\x007\0"),
        ("g", Op.RELEASE, b"41\0"),
        ("g", Op.RESUME, b"41\0"),
        ("g", Op.SET_TARGET, b"41\x000\0"),
        ("g", Op.IS_DOMAIN_INTRODUCED, b"0\0"),
        ("g", Op.CONTROL, b"check\0"),
        ("g", Op.GET_DOMAIN_PATH, b"41\0"),
        ("g", M, b"/local/domain/41/x/y\0"),
        ("g", X, b"/local/domain/41/x\0"),
        ("g", X, b"/tool\0"),
        ("g", X, b"/tool/nope\0"),
    ]
    check(pair, script)


def test_watch_filtering_for_guests(pair: tuple[Target, Target]) -> None:
    g = 42
    script: list[Step] = [
        ("connect", "a"),
        ("connect", "g", g),
        ("g", WA, b"/wf\0t\0"),
        ("a", W, b"/wf/secret\0"),
        ("a", W, b"/wf/pub\0"),
        ("a", SP, b"/wf/pub\0n0\0r42\0"),
        ("a", W, b"/wf/pub/child\0"),
        ("a", W, b"/wf/pub/child/deeper\0"),
        ("a", SP, b"/wf/pub/child/deeper\0n0\0"),
        ("a", SP, b"/wf/pub/child\0n0\0"),
        ("a", W, b"/wf/pub/child/deeper\0x"),
        ("a", X, b"/wf/pub/child\0"),
        ("a", X, b"/wf/pub\0"),
        ("a", M, b"/local/domain/42\0"),
        ("a", SP, b"/local/domain/42\0n42\0"),
        ("g", WA, b"relw\0rt\0"),
        ("a", W, b"/local/domain/42/relw/x\0"),
        ("g", UW, b"relw\0rt\0"),
        ("g", UW, b"relw\0rt\0"),
        ("g", WA, b"@introduceDomain\0gi\0"),
        ("g", WA, b"@releaseDomain\0gr\0"),
        ("a", Op.INTRODUCE, b"43\x000\x007\0"),
        ("a", SP, b"@introduceDomain\0n0\0r42\0"),
        ("a", SP, b"@releaseDomain\0n0\0r42\0"),
        ("a", Op.INTRODUCE, b"44\x000\x007\0"),
        ("a", Op.INTRODUCE, b"44\x000\x007\0"),
        ("a", Op.RELEASE, b"43\0"),
        ("a", SP, b"@introduceDomain\0n0\0"),
        ("a", SP, b"@releaseDomain\0n0\0"),
    ]
    check(pair, script)


# ---------------------------------------------------------------------------
# Transactions


def test_transactions(pair: tuple[Target, Target]) -> None:
    script: list[Step] = [
        ("connect", "a"),
        ("connect", "b"),
        ("connect", "w"),
        ("w", WA, b"/tx\0all\0"),
        ("a", W, b"/tx/t\0x"),
        ("a", TS, b"\0"),
        ("a", TS, b""),
        ("a", TS, b"\0", 1),
        ("a", TS, b"\0", 99),
        ("b", TS, b"abc"),
        ("a", R, b"/tx/t\0", 1),
        ("b", R, b"/tx/t\0", 1),
        ("a", W, b"/tx/t\0two", 1),
        ("b", W, b"/tx/t\0three", 1),
        ("a", TE, b"T\0", 1),
        ("b", TE, b"T\0", 1),
        ("b", R, b"/tx/t\0", 1),
        ("a", R, b"/tx/t\0"),
        ("a", R, b"/tx/t\0", 2),
        ("a", W, b"/tx/other\0", 2),
        ("b", W, b"/tx/t\0outside"),
        ("a", R, b"/tx/t\0", 2),
        ("a", TE, b"T\0", 2),
        ("a", TS, b"\0"),
        ("a", W, b"/tx/iso/new\0inside", 3),
        ("a", X, b"/tx/t\0", 3),
        ("a", R, b"/tx/iso/new\0", 3),
        ("b", R, b"/tx/iso/new\0"),
        ("b", R, b"/tx/t\0"),
        ("a", D, b"/tx\0", 3),
        ("b", D, b"/tx\0"),
        ("a", TE, b"X\0", 3),
        ("a", TE, b"T", 3),
        ("a", TE, b"T\0", 3),
        ("a", TE, b"F\0", 3),
        ("a", TE, b"F\0"),
        ("a", TE, b"X\0"),
        ("a", TE, b"X\0", 77),
        ("a", TS, b"\0"),
        ("a", W, b"/tx/abort\0", 4),
        ("a", TE, b"F\0", 4),
        ("b", R, b"/tx/abort\0"),
        ("a", TS, b"\0"),
        ("a", R, b"/tx/late\0", 5),
        ("b", W, b"/tx/late\0"),
        ("a", TE, b"T\0", 5),
        ("a", TS, b"\0"),
        ("a", WA, b"/tx/w2\0t\0"),
        ("a", RESET, b""),
        ("a", R, b"/\0", 6),
        ("a", UW, b"/tx/w2\0t\0"),
    ]
    check(pair, script)


RESET = Op.RESET_WATCHES


def test_commit_events(pair: tuple[Target, Target]) -> None:
    script: list[Step] = [
        ("connect", "a"),
        ("connect", "w"),
        ("a", W, b"/ce/r/a/b\0v"),
        ("a", W, b"/ce/r/c\0v"),
        ("w", WA, b"/ce\0all\0"),
        ("w", WA, b"/ce/r/a/b\0ab\0"),
        ("w", WA, b"/ce/r/c\0c\0"),
        ("w", WA, b"/ce/r\0r\0"),
        ("a", WA, b"/ce/new\0own\0"),
        ("a", TS, b"\0"),
        ("a", W, b"/ce/new/x\0v", 1),
        ("a", W, b"/ce/r/c\0v2", 1),
        ("a", X, b"/ce/r\0", 1),
        ("a", W, b"/ce/new\0v3", 1),
        ("a", SP, b"/ce/new\0n0\0r5\0", 1),
        ("a", TE, b"T\0", 1),
        ("a", D, b"/ce\0"),
        ("a", R, b"/ce/new\0"),
        ("a", DP, b"/ce\x000\0"),
        ("a", W, b"/ce/r/a/b\0v"),
        ("a", W, b"/ce/r/c\0v"),
        ("a", X, b"/ce/r\0"),
        ("a", W, b"/lv/a/b/c\0old"),
        ("a", TS, b"\0"),
        ("a", W, b"/lv/a/b/c\0new", 2),
        ("a", W, b"/lv/a\0A", 2),
        ("a", W, b"/lv/a/b/d\0D", 2),
        ("a", W, b"/lv/a/e\0E", 2),
        ("a", W, b"/lv/f\0F"),
        ("a", TE, b"T\0", 2),
        ("a", D, b"/lv\0"),
        ("a", D, b"/lv/a\0"),
        ("a", D, b"/lv/a/b\0"),
        ("a", DP, b"/lv/a/b\x000\0"),
        ("a", DP, b"/lv\x000\0"),
    ]
    check(pair, script)


# ---------------------------------------------------------------------------
# Watches


def test_watches(pair: tuple[Target, Target]) -> None:
    script: list[Step] = [
        ("connect", "a"),
        ("connect", "w"),
        ("connect", "x"),
        ("w", WA, b"/vt/w\0t\0"),
        ("a", W, b"/vt/wother\0"),
        ("a", W, b"/vt\0x"),
        ("a", W, b"/vt/w/deep/er\0"),
        ("a", M, b"/vt/w/deep\0"),
        ("a", M, b"/vt/w/new\0"),
        ("a", SP, b"/vt/w\0n0\0"),
        ("a", X, b"/vt/w/nope\0"),
        ("a", X, b"/vt/w/new\0"),
        ("w", WA, b"/vt/w\0t\0"),
        ("w", WA, b"/vt/w\0u\0"),
        ("w", WA, b"/vt/w\0\0"),
        ("a", W, b"/vt/w/z\0"),
        ("w", WA, b"/vt/w\0"),
        ("w", WA, b"/vt/w"),
        ("w", WA, b"/vt/w\0t"),
        ("w", WA, b"/vt/w\0t\0x\0"),
        ("w", WA, b"/vt/w\0v\0trailing"),
        ("w", WA, b"/a.b\0t\0"),
        ("w", WA, b"/vt/w/\0t\0"),
        ("w", WA, b"\0t\0"),
        ("w", UW, b"/vt/w\0u\0"),
        ("w", UW, b"/vt/w\0u\0"),
        ("w", UW, b"/a.b\0t\0"),
        ("w", UW, b"/vt/w\0"),
        ("w", UW, b"/vt/w\0t\0x\0"),
        ("x", WA, b"/\0t\0"),
        ("x", WA, b"/dd\0t\0"),
        ("x", WA, b"/dd\0u\0"),
        ("w", WA, b"/dd/x\0late\0"),
        ("a", W, b"/dd/x\0v"),
        ("x", W, b"/dd/y\0v"),
        ("x", WA, b"relw\0rt\0"),
        ("a", W, b"/local/domain/0/relw/x\0"),
        ("a", WA, b"/ord\0tk\0"),
        ("a", W, b"/ord/x\0v"),
        ("w", WA, b"/" + b"p" * 1999 + b"\0" + b"t" * 2094 + b"\0"),
        ("a", W, b"/" + b"p" * 1999 + b"/child\0"),
        ("w", WA, b"/vt/w\0t\0", 12345),
        ("w", UW, b"/vt/w\0t\0", 999),
        ("a", W, b"/rmo/r/a/b\0"),
        ("a", W, b"/rmo/r/c\0"),
        ("x", RESET, b""),
        ("w", RESET, b""),
    ]
    for path, token in (
        (b"/", b"root"),
        (b"/rmo/r", b"r"),
        (b"/rmo/r/a", b"a"),
        (b"/rmo/r/a/b", b"ab"),
        (b"/rmo/r/c", b"c"),
        (b"/rmo/r/zz", b"zz"),
    ):
        script.append(("w", WA, path + b"\0" + token + b"\0"))
    script += [("a", X, b"/rmo/r\0"), ("a", X, b"/rmo/r\0")]
    check(pair, script)


def test_domains_and_special_watches(pair: tuple[Target, Target]) -> None:
    script: list[Step] = [
        ("connect", "a"),
        ("connect", "w"),
        ("w", WA, b"@introduceDomain\0i\0"),
        ("w", WA, b"@releaseDomain\0r\0"),
        ("w", WA, b"@releaseDomain\0r2\0"),
        ("w", WA, b"/\0all\0"),
        ("a", Op.INTRODUCE, b"50\x000\x007\0"),
        ("a", Op.INTRODUCE, b"50\x000\x008\0"),
        ("a", Op.INTRODUCE, b"0\x000\x007\0"),
        ("a", Op.INTRODUCE, b"51\x000\0"),
        ("a", Op.INTRODUCE, b"51\x000\x000\0"),
        ("a", Op.INTRODUCE, b"abc\0x\0y\0"),
        ("a", Op.INTRODUCE, b"51\x00x\x00-5\0"),
        ("a", Op.IS_DOMAIN_INTRODUCED, b"51\0"),
        ("a", Op.IS_DOMAIN_INTRODUCED, b"52\0"),
        ("a", Op.IS_DOMAIN_INTRODUCED, b"0\0"),
        ("a", Op.IS_DOMAIN_INTRODUCED, b"32752\0"),
        ("a", Op.IS_DOMAIN_INTRODUCED, b"abc\0"),
        ("a", Op.IS_DOMAIN_INTRODUCED, b"1"),
        ("a", Op.IS_DOMAIN_INTRODUCED, b"1\x002\0"),
        ("a", Op.RESUME, b"50\0"),
        ("a", Op.RESUME, b"0\0"),
        ("a", Op.RESUME, b"abc\0"),
        ("a", Op.RESUME, b"52\0"),
        ("a", Op.SET_TARGET, b"50\x0051\0"),
        ("a", Op.SET_TARGET, b"0\x000\0"),
        ("a", Op.SET_TARGET, b"52\x000\0"),
        ("a", Op.SET_TARGET, b"0\0"),
        ("a", Op.RELEASE, b"0\0"),
        ("a", Op.RELEASE, b"52\0"),
        ("a", Op.RELEASE, b"50\x002\0"),
        ("a", M, b"/local/domain/51\0"),
        ("a", SP, b"/local/domain/51\0n51\0"),
        ("a", W, b"/local/domain/51/d0\0"),
        ("a", SP, b"/local/domain/51/d0\0n0\0"),
        ("a", W, b"/o51/sub\0v"),
        ("a", SP, b"/o51\0n51\0"),
        ("a", W, b"/r51\0"),
        ("a", SP, b"/r51\0n0\0r51\0"),
        ("a", Op.CONTROL, b"quota\x0051\0"),
        ("a", Op.RELEASE, b"51\0"),
        ("a", D, b"/\0"),
        ("a", GP, b"/r51\0"),
        ("a", Op.CONTROL, b"quota\x0051\0"),
        ("a", Op.RELEASE, b"51\0"),
        ("a", Op.IS_DOMAIN_INTRODUCED, b"51\0"),
    ]
    check(pair, script)


def test_domain_states(pair: tuple[Target, Target]) -> None:
    script: list[Step] = [
        ("connect", "a"),
        ("connect", "w"),
        ("w", WA, b"@releaseDomain\0rel\0"),
        ("w", WA, b"/\0all\0"),
        ("a", Op.INTRODUCE, b"61\x000\x007\0"),
        ("a", Op.INTRODUCE, b"62\x000\x007\0"),
        ("a", W, b"/o61\0v"),
        ("a", SP, b"/o61\0n61\0"),
        ("state", 61, "shutdown"),
        ("state", 61, "shutdown"),
        ("a", Op.IS_DOMAIN_INTRODUCED, b"61\0"),
        ("a", Op.RESUME, b"61\0"),
        ("state", 62, "running"),
        ("state", 61, "crashed"),
        ("state", 62, "crashed"),
        ("state", 61, "dying"),
        ("state", 62, "gone"),
        ("a", Op.IS_DOMAIN_INTRODUCED, b"61\0"),
        ("a", Op.IS_DOMAIN_INTRODUCED, b"62\0"),
        ("a", R, b"/o61\0"),
        ("a", SP, b"/o61\0n61\0"),
    ]
    check(pair, script)


# ---------------------------------------------------------------------------
# Other ops, control, framing


def test_other_ops(pair: tuple[Target, Target]) -> None:
    script: list[Step] = [("connect", "a")]
    for arg in (b"5\0", b"abc\0", b"\0", b"-1\0", b"12abc\0", b"5", b"1\x002\0"):
        script.append(("a", Op.GET_DOMAIN_PATH, arg))
    for op in (20, 23, 99, 0xFFFF, 15, 16, 24, 25, 26):
        script.append(("a", op, b"/\0"))
    script += [
        ("a", Op.CONTROL, b"print\0hello\0"),
        ("a", Op.CONTROL, b"check\0"),
        ("a", Op.CONTROL, b"help\0"),
        ("a", Op.CONTROL, b"log\0on\0"),
        ("a", Op.CONTROL, b"quota\0"),
        ("a", Op.CONTROL, b"quota-soft\0"),
        ("a", Op.CONTROL, b"quota\x000\0"),
        ("a", Op.CONTROL, b"quota\0abc\0"),
        ("a", Op.CONTROL, b"quota\x00999\0"),
        ("a", Op.CONTROL, b"quota\0set\0nodes\x00999\0"),
        ("a", Op.CONTROL, b"quota\0"),
        ("a", Op.CONTROL, b"quota\0set\0nodes\x001000\0"),
        ("a", Op.CONTROL, b"quota-soft\0set\0memory\x00100\0"),
        ("a", Op.CONTROL, b"quota-soft\0"),
        ("a", Op.CONTROL, b"quota-soft\0set\0memory\x002097152\0"),
        ("a", Op.CONTROL, b"live-update\0-a\0"),
        ("a", Op.CONTROL, b"live-update\0-c\0x\0"),
    ]
    for bad in (
        b"",
        b"nope\0",
        b"print\0",
        b"print\0a\0b\0",
        b"check",
        b"Check\0",
        b"check\0x\0",
        b"help\0x\0",
        b"log\0",
        b"log\0maybe\0",
        b"quota\0set\0",
        b"quota\0set\0nodes\0",
        b"quota\0set\0nodes\0abc\0",
        b"quota\0set\0bogus\x005\0",
        b"quota\x001\x002\0",
        b"quota-soft\0set\0nodes\x001\0",
        b"quota-soft\x000\0",
        b"live-update\0",
    ):
        script.append(("a", Op.CONTROL, bad))
    script.append(("a", Op.READ, b"/\0", 42))
    script.append(("a", Op.CONTROL, b"check\0", 42))
    check(pair, script)


def test_framing(pair: tuple[Target, Target]) -> None:
    script: list[Step] = [
        ("connect", "a"),
        ("connect", "b"),
        ("a", W, b"/fr\0" + b"v" * (4096 - 4)),
        (
            "raw",
            "b",
            [encode(Op.READ, 1, 0, b"/fr/p0\0")[:10], encode(Op.READ, 1, 0, b"/fr/p0\0")[10:]],
            False,
        ),
        ("b", R, b"/fr\0"),
        (
            "pipeline",
            "a",
            [(W, b"/fr/p%d\0%d" % (i, i), 0) for i in range(20)]
            + [(R, b"/fr/p%d\0" % i, 0) for i in range(20)],
        ),
        ("a", WA, b"/fr/p3\0t\0"),
        ("pipeline", "a", [(W, b"/fr/p3\0x", 0), (W, b"/fr/p3\0y", 0), (R, b"/fr/p3\0", 0)]),
        ("raw", "b", [b"\x02\0\0\0\x01\0\0\0\0\0\0\0\x01\x10\0\0"], True),
        ("a", R, b"/fr/p1\0"),
    ]
    check(pair, script)


# ---------------------------------------------------------------------------
# Quotas of guests


def test_guest_quotas(pair: tuple[Target, Target]) -> None:
    g = 70
    script: list[Step] = [
        ("connect", "a"),
        ("connect", "g", g),
        ("a", M, b"/local/domain/70\0"),
        ("a", SP, b"/local/domain/70\0n70\0"),
        ("g", W, b"sz\0" + b"a" * 2015),
        ("g", W, b"sz\0" + b"a" * 2016),
        ("g", SP, b"sz\0n70\0r1\0"),
        ("g", W, b"sz\0"),
        ("g", W, b"p\0"),
        ("g", SP, b"p\0n70\0r1\0r2\0r3\0r4\0"),
        ("g", SP, b"p\0n70\0r1\0r2\0r3\0r4\0r6\0"),
        ("a", SP, b"/local/domain/70/p\0n70\0r1\0r2\0r3\0r4\0r6\0r7\0"),
        ("a", Op.CONTROL, b"quota\x0070\0"),
        ("a", Op.CONTROL, b"quota\0set\0nodes\x006\0"),
        ("g", W, b"q0\0"),
        ("g", W, b"q1\0"),
        ("g", W, b"q2\0"),
        ("g", W, b"q3\0"),
        ("g", X, b"q0\0"),
        ("g", W, b"x/a/b\0"),
        ("g", R, b"x\0"),
        ("g", W, b"x\0"),
        ("a", Op.CONTROL, b"quota\x0070\0"),
        ("a", Op.CONTROL, b"quota\0set\0nodes\x001000\0"),
        ("g", M, b"n\0"),
    ]
    script += [("g", W, b"n/%d\0" % i) for i in range(525, 540)]  # the child list hits 2048 bytes
    script += [("g", WA, b"/w%d\0t\0" % i) for i in range(130)]
    script += [("g", TS, b"\0") for _ in range(12)]
    script += [("a", Op.CONTROL, b"quota\x0070\0")]
    check(pair, script)


def test_guest_transactions(pair: tuple[Target, Target]) -> None:
    g = 71
    script: list[Step] = [
        ("connect", "a"),
        ("connect", "g", g),
        ("connect", "w"),
        ("a", M, b"/local/domain/71\0"),
        ("a", SP, b"/local/domain/71\0n71\0"),
        ("w", WA, b"/local/domain/71\0all\0"),
        ("g", WA, b"/gt\0mine\0"),
        ("a", W, b"/gt/pub\0"),
        ("a", SP, b"/gt/pub\0n0\0b71\0"),
        ("g", TS, b"\0"),
        ("g", W, b"t0\0v", 1),
        ("g", W, b"/gt/pub/x\0v", 1),
        ("g", R, b"/tool\0", 1),
        ("g", X, b"t0\0", 1),
        ("g", W, b"t1/deeper\0v", 1),
        ("g", D, b"/local/domain/71\0", 1),
        ("a", Op.CONTROL, b"quota\x0071\0"),  # memory counts the transaction's copies
        ("g", TE, b"T\0", 1),
        ("g", D, b"/local/domain/71\0"),
        ("a", GP, b"/local/domain/71/t1/deeper\0"),
        ("a", GP, b"/gt/pub/x\0"),
    ]
    check(pair, script)


def test_oversized_header_drops_connection(pair: tuple[Target, Target]) -> None:
    script: list[Step] = [
        ("connect", "a"),
        ("connect", "bad"),
        ("bad", WA, b"/ov\0t\0"),
        ("bad", TS, b"\0"),
        ("raw", "bad", [encode(Op.READ, 1, 0, b"/\0")[:12] + b"\x01\x10\0\0"], True),
        ("a", W, b"/ov\0"),
        ("a", R, b"/\0"),
    ]
    check(pair, script)


def test_transcripts_are_not_empty(pair: tuple[Target, Target]) -> None:
    lines = check(pair, [("connect", "a"), ("a", R, b"/nope\0"), ("a", W, b"/t\0x")])
    assert lines == ["1 a <- ERROR req=1 tx=0 b'ENOENT\\x00'", "2 a <- WRITE req=2 tx=0 b'OK\\x00'"]


def test_stale_transactions_and_vanishing_domains(pair: tuple[Target, Target]) -> None:
    script: list[Step] = [
        ("connect", "a"),
        ("connect", "b"),
        ("a", WA, b"/st\0st\0"),
        # a transaction's copy lists a child that vanished outside: RM is EIO
        ("a", W, b"/st/x/y\0v"),
        ("a", TS, b"\0"),
        ("a", W, b"/st/x\0w", 1),
        ("b", X, b"/st/x/y\0"),
        ("a", X, b"/st/x\0", 1),
        ("a", TE, b"F\0", 1),
        # ... or lacks a child created outside: RM of that child is EIO
        ("a", W, b"/st/p\0v"),
        ("a", TS, b"\0"),
        ("a", M, b"/st/p\0", 2),
        ("b", M, b"/st/p/c\0"),
        ("a", X, b"/st/p/c\0", 2),
        ("a", TE, b"F\0", 2),
        # a domain that exists without being introduced loses its nodes when it goes
        ("state", 80, "running"),
        ("a", W, b"/st/o/a\0x"),
        ("a", SP, b"/st/o/a\0n80\0"),
        ("a", SP, b"/st/o\0r80\0"),
        ("state", 80, "gone"),
        ("a", D, b"/st\0"),
    ]
    check(pair, script)


def test_guest_transaction_quotas(pair: tuple[Target, Target]) -> None:
    script: list[Step] = [
        ("connect", "a"),
        ("connect", "g", 90),
        ("a", M, b"/local/domain/90\0"),
        ("a", SP, b"/local/domain/90\0n90\0"),
        ("a", Op.CONTROL, b"quota\0set\0nodes\x003\0"),
        ("g", TS, b"\0"),
        ("g", W, b"a\0", 1),
        ("g", W, b"b\0", 1),
        ("g", TE, b"T\0", 1),  # the count would reach the quota: ENOSPC
        ("g", W, b"c\0"),
        ("g", W, b"d\0"),
        ("g", W, b"e\0"),
        ("a", Op.CONTROL, b"quota\0set\0nodes\x001000\0"),
        ("a", Op.CONTROL, b"quota\0set\0transaction-nodes\x004\0"),
        ("g", TS, b"\0"),
        ("g", W, b"t0\0", 2),
        ("g", W, b"t1\0", 2),
        ("g", W, b"t2/deeper\0", 2),
        ("g", W, b"t3\0", 2),
        ("a", Op.CONTROL, b"quota\x0090\0"),
        ("g", TE, b"T\0", 2),
        ("a", Op.CONTROL, b"quota\0set\0transaction-nodes\x001024\0"),
        ("a", Op.CONTROL, b"quota\x0090\0"),
    ]
    check(pair, script)


# ---------------------------------------------------------------------------
# Stale permission entries (XSA-322): domains that did not exist, died, came back


def test_entries_for_domains_that_did_not_exist(pair: tuple[Target, Target]) -> None:
    script: list[Step] = [
        ("connect", "a"),
        ("a", W, b"/sp/a\0x"),
        ("a", SP, b"/sp/a\0n0\0r71\0"),  # 71 does not exist: the entry is ignored
        ("a", GP, b"/sp/a\0"),  # ... yet listed
        ("connect", "g", 71),
        ("g", R, b"/sp/a\0"),
        ("a", W, b"/sp/a\0y"),  # dom0 rewrites the value: still ignored
        ("g", R, b"/sp/a\0"),
        ("a", W, b"/sp/a/child\0c"),  # a child copies the parent's entries as they are
        ("a", GP, b"/sp/a/child\0"),
        ("g", R, b"/sp/a/child\0"),
        ("a", SP, b"/sp/a\0n0\0r71\0"),  # set again now that 71 exists: it counts
        ("g", R, b"/sp/a\0"),
        ("g", R, b"/sp/a/child\0"),
    ]
    check(pair, script)


def test_entries_of_a_dead_domain_are_not_inherited(pair: tuple[Target, Target]) -> None:
    script: list[Step] = [
        ("connect", "a"),
        ("connect", "h", 72),
        ("a", W, b"/sp/b\0x"),
        ("a", SP, b"/sp/b\0n0\0r72\0"),
        ("a", W, b"/sp/c\0x"),
        ("a", SP, b"/sp/c\0n0\0b72\0"),
        ("a", W, b"/sp/d\0x"),
        ("a", SP, b"/sp/d\0n0\0r72\0"),
        ("h", R, b"/sp/b\0"),
        ("close", "h"),
        ("state", 72, "dying"),  # domain 72 dies ...
        ("state", 72, "running"),  # ... and a new domain 72 appears
        ("connect", "h", 72),
        ("h", R, b"/sp/b\0"),
        ("a", W, b"/sp/b\0y"),  # dom0 rewrites the node: the old entry stays dead
        ("h", R, b"/sp/b\0"),
        ("a", GP, b"/sp/b\0"),
        ("a", TS, b"\0"),
        ("a", W, b"/sp/c\0y", 1),  # ... also in a transaction
        ("a", TE, b"T\0", 1),
        ("h", R, b"/sp/c\0"),
        ("h", W, b"/sp/c\0z"),
        ("a", W, b"/sp/d/new\0n"),  # a new child of a stale parent
        ("h", R, b"/sp/d/new\0"),
        ("h", R, b"/sp/d\0"),
        ("a", SP, b"/sp/b\0n0\0r72\0"),  # granted anew: counts
        ("h", R, b"/sp/b\0"),
    ]
    check(pair, script)


def test_a_domain_reintroduced_with_no_write_in_between(pair: tuple[Target, Target]) -> None:
    """cxenstored compares generations with <=: a domain that comes back
    before any node was written has the generation of the granted node."""
    script: list[Step] = [
        ("connect", "a"),
        ("a", W, b"/sp/e\0x"),
        ("connect", "h", 73),
        ("a", SP, b"/sp/e\0n0\0r73\0"),
        ("close", "h"),
        ("state", 73, "dying"),
        ("state", 73, "running"),
        ("connect", "h", 73),
        ("a", W, b"/sp/e\0y"),
        ("h", R, b"/sp/e\0"),
    ]
    assert check(pair, script)[-1] == "9 h <- READ req=1 tx=0 b'y'"
