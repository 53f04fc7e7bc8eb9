"""Watches (matching, order, errors) and transactions (isolation, conflicts, events)."""

from __future__ import annotations

from typing import Callable

from rawxs import RawConn

from pyxs.protocol import Op

OK = b"OK\0"


def payloads(conn: RawConn) -> list[bytes]:
    return [e.payload for e in conn.take_events()]


# -- watches --------------------------------------------------------------------


def test_watch_replies_ok_then_initial_event(dom0: RawConn) -> None:
    dom0.send(Op.WATCH, b"/never/there\0tok\0", req_id=77)
    assert dom0.read_packet() == (Op.WATCH, 77, 0, OK)
    assert dom0.read_packet() == (Op.WATCH_EVENT, 0, 0, b"/never/there\0tok\0")


def test_watch_ignores_tx_id(dom0: RawConn) -> None:
    dom0.send(Op.WATCH, b"/x\0t\0", tx_id=12345, req_id=5)
    assert dom0.read_packet() == (Op.WATCH, 5, 12345, OK)
    assert dom0.read_packet() == (Op.WATCH_EVENT, 0, 0, b"/x\0t\0")
    dom0.send(Op.UNWATCH, b"/x\0t\0", tx_id=999, req_id=6)
    assert dom0.read_packet() == (Op.UNWATCH, 6, 999, OK)


def test_events_of_own_changes_precede_the_reply(dom0: RawConn) -> None:
    dom0.ok(Op.WATCH, b"/ord\0tk\0")
    assert payloads(dom0) == [b"/ord\0tk\0"]
    dom0.send(Op.WRITE, b"/ord/x\0v", req_id=50)
    assert dom0.read_packet() == (Op.WATCH_EVENT, 0, 0, b"/ord/x\0tk\0")
    assert dom0.read_packet() == (Op.WRITE, 50, 0, OK)


def test_watch_matching(dom0: RawConn, connect: Callable[..., RawConn]) -> None:
    w = connect()
    w.ok(Op.WATCH, b"/vt/w\0t\0")
    payloads(w)
    dom0.ok(Op.WRITE, b"/vt/wother\0")
    dom0.ok(Op.WRITE, b"/vt\0x")
    dom0.ok(Op.WRITE, b"/vt/w/deep/er\0")  # parents created silently, but w matches the node
    dom0.ok(Op.MKDIR, b"/vt/w/deep\0")  # exists: nothing
    dom0.ok(Op.MKDIR, b"/vt/w/new\0")
    dom0.ok(Op.SET_PERMS, b"/vt/w\0n0\0")
    dom0.ok(Op.RM, b"/vt/w/nope\0")  # missing: nothing
    dom0.ok(Op.RM, b"/vt/w/new\0")
    assert payloads(w) == [
        b"/vt/w/deep/er\0t\0",
        b"/vt/w/new\0t\0",
        b"/vt/w\0t\0",
        b"/vt/w/new\0t\0",
    ]


def test_watch_errors(dom0: RawConn) -> None:
    assert dom0.ok(Op.WATCH, b"/we\0t\0") == OK
    assert dom0.error(Op.WATCH, b"/we\0t\0") == "EEXIST"
    assert dom0.ok(Op.WATCH, b"/we\0u\0") == OK
    assert dom0.ok(Op.WATCH, b"/we\0\0") == OK  # empty token
    for bad in (b"/we\0", b"/we", b"/we\0t", b"/we\0t\0x\0", b"/a.b\0t\0", b"/we/\0t\0", b"\0t\0"):
        assert dom0.error(Op.WATCH, bad) == "EINVAL", bad
    assert dom0.ok(Op.WATCH, b"/we\0v\0trailing") == OK
    assert dom0.ok(Op.WATCH, b"@bogus\0t\0") == OK
    assert dom0.ok(Op.WATCH, b"@a.b c\0t\0") == OK  # @ paths: only the length is checked
    assert dom0.ok(Op.WATCH, b"@" + b"b" * 2047 + b"\0t\0") == OK
    assert dom0.error(Op.WATCH, b"@" + b"b" * 2048 + b"\0t\0") == "EINVAL"
    assert dom0.ok(Op.UNWATCH, b"/we\0u\0") == OK
    assert dom0.error(Op.UNWATCH, b"/we\0u\0") == "ENOENT"
    assert dom0.error(Op.UNWATCH, b"/a.b\0t\0") == "ENOENT"
    assert dom0.ok(Op.UNWATCH, b"@a.b c\0t\0") == OK
    assert dom0.error(Op.UNWATCH, b"/we\0") == "EINVAL"
    assert dom0.error(Op.UNWATCH, b"/we\0t\0x\0") == "EINVAL"


def test_both_tokens_fire_and_duplicates_are_dropped(
    dom0: RawConn, connect: Callable[..., RawConn]
) -> None:
    w = connect()
    w.ok(Op.WATCH, b"/\0t\0")
    w.ok(Op.WATCH, b"/dd\0t\0")
    w.ok(Op.WATCH, b"/dd\0u\0")
    payloads(w)
    dom0.ok(Op.WRITE, b"/dd/x\0v")
    # "/dd/x t" from the watch on / and from the one on /dd: sent once
    assert payloads(w) == [b"/dd/x\0t\0", b"/dd/x\0u\0"]


def test_rm_event_order(dom0: RawConn, connect: Callable[..., RawConn]) -> None:
    dom0.ok(Op.WRITE, b"/r/a/b\0")
    dom0.ok(Op.WRITE, b"/r/c\0")
    w = connect()
    for path, token in (
        (b"/", b"root"),
        (b"/r", b"r"),
        (b"/r/a", b"a"),
        (b"/r/a/b", b"ab"),
        (b"/r/c", b"c"),
        (b"/r/zz", b"zz"),
    ):
        w.ok(Op.WATCH, path + b"\0" + token + b"\0")
    payloads(w)
    dom0.ok(Op.RM, b"/r\0")
    assert payloads(w) == [
        b"/r/a/b\0ab\0",
        b"/r/a\0a\0",
        b"/r/c\0c\0",
        b"/r\0root\0",
        b"/r\0r\0",
    ]


def test_event_order_across_connections(dom0: RawConn, connect: Callable[..., RawConn]) -> None:
    a = connect()
    b = connect()
    b.ok(Op.WATCH, b"/eo\0b1\0")
    a.ok(Op.WATCH, b"/eo/x\0a1\0")
    a.ok(Op.WATCH, b"/eo\0a2\0")
    payloads(a)
    payloads(b)
    dom0.ok(Op.WRITE, b"/eo/x\0")
    assert payloads(a) == [b"/eo/x\0a1\0", b"/eo/x\0a2\0"]
    assert payloads(b) == [b"/eo/x\0b1\0"]


def test_relative_watch_dom0(dom0: RawConn) -> None:
    dom0.ok(Op.WATCH, b"relw\0rt\0")
    dom0.ok(Op.WRITE, b"/local/domain/0/relw/x\0")
    assert payloads(dom0) == [b"relw\0rt\0", b"relw/x\0rt\0"]


def test_long_event_is_not_sent(dom0: RawConn) -> None:
    path = b"/" + b"p" * 1999
    token = b"t" * 2094
    assert dom0.ok(Op.WATCH, path + b"\0" + token + b"\0") == OK  # 4096 bytes
    assert payloads(dom0) == [path + b"\0" + token + b"\0"]
    dom0.ok(Op.WRITE, path + b"/child\0")
    assert payloads(dom0) == []  # 4102 bytes: over the limit, not sent


def test_closed_connection_loses_its_watches(
    srv: object, dom0: RawConn, connect: Callable[..., RawConn]
) -> None:
    w = connect()
    w.ok(Op.WATCH, b"/gone\0t\0")
    w.close()
    dom0.ok(Op.WRITE, b"/gone\0")
    from pyxs.server import Server

    assert isinstance(srv, Server)
    assert srv.call(lambda core: len(core.watches)) == 0


# -- transactions ------------------------------------------------------------------


def test_transaction_isolation(dom0: RawConn, connect: Callable[..., RawConn]) -> None:
    other = connect()
    dom0.ok(Op.WRITE, b"/iso/old\0v")
    tx = int(dom0.ok(Op.TRANSACTION_START, b"\0")[:-1])
    dom0.ok(Op.WRITE, b"/iso/new\0inside", tx_id=tx)
    dom0.ok(Op.RM, b"/iso/old\0", tx_id=tx)
    assert dom0.ok(Op.READ, b"/iso/new\0", tx_id=tx) == b"inside"
    assert dom0.error(Op.READ, b"/iso/old\0", tx_id=tx) == "ENOENT"
    assert other.error(Op.READ, b"/iso/new\0") == "ENOENT"
    assert other.ok(Op.READ, b"/iso/old\0") == b"v"
    assert dom0.ok(Op.DIRECTORY, b"/iso\0", tx_id=tx) == b"new\0"
    assert other.ok(Op.DIRECTORY, b"/iso\0") == b"old\0"
    assert dom0.ok(Op.TRANSACTION_END, b"T\0", tx_id=tx) == OK
    assert other.ok(Op.READ, b"/iso/new\0") == b"inside"
    assert other.error(Op.READ, b"/iso/old\0") == "ENOENT"
    assert other.ok(Op.DIRECTORY, b"/iso\0") == b"new\0"


def test_transaction_abort(dom0: RawConn, connect: Callable[..., RawConn]) -> None:
    w = connect()
    w.ok(Op.WATCH, b"/ab\0t\0")
    payloads(w)
    tx = int(dom0.ok(Op.TRANSACTION_START, b"\0")[:-1])
    dom0.ok(Op.WRITE, b"/ab/x\0", tx_id=tx)
    assert dom0.ok(Op.TRANSACTION_END, b"F\0", tx_id=tx) == OK
    assert payloads(w) == []
    assert dom0.error(Op.READ, b"/ab/x\0") == "ENOENT"


def test_conflict_two_writers(dom0: RawConn, connect: Callable[..., RawConn]) -> None:
    dom0.ok(Op.WRITE, b"/t\0x")
    c2, c3 = connect(), connect()
    t2 = int(c2.ok(Op.TRANSACTION_START, b"\0")[:-1])
    t3 = int(c3.ok(Op.TRANSACTION_START, b"\0")[:-1])
    assert c2.ok(Op.READ, b"/t\0", tx_id=t2) == b"x"
    assert c3.ok(Op.READ, b"/t\0", tx_id=t3) == b"x"
    c2.ok(Op.WRITE, b"/t\0two", tx_id=t2)
    c3.ok(Op.WRITE, b"/t\0three", tx_id=t3)
    assert c2.ok(Op.TRANSACTION_END, b"T\0", tx_id=t2) == OK
    assert c3.error(Op.TRANSACTION_END, b"T\0", tx_id=t3) == "EAGAIN"
    assert dom0.ok(Op.READ, b"/t\0") == b"two"
    assert c3.error(Op.READ, b"/\0", tx_id=t3) == "ENOENT"  # gone after EAGAIN


def test_conflict_read_changed_outside(dom0: RawConn) -> None:
    dom0.ok(Op.WRITE, b"/c\0x")
    tx = int(dom0.ok(Op.TRANSACTION_START, b"\0")[:-1])
    dom0.ok(Op.READ, b"/c\0", tx_id=tx)
    dom0.ok(Op.WRITE, b"/other\0", tx_id=tx)
    dom0.ok(Op.WRITE, b"/c\0changed")
    assert dom0.ok(Op.READ, b"/c\0", tx_id=tx) == b"x"  # the transaction's copy
    assert dom0.error(Op.TRANSACTION_END, b"T\0", tx_id=tx) == "EAGAIN"
    assert dom0.error(Op.READ, b"/other\0") == "ENOENT"


def test_conflict_on_missing_node_created_outside(dom0: RawConn) -> None:
    tx = int(dom0.ok(Op.TRANSACTION_START, b"\0")[:-1])
    assert dom0.error(Op.READ, b"/late\0", tx_id=tx) == "ENOENT"
    dom0.ok(Op.WRITE, b"/late\0")
    assert dom0.error(Op.TRANSACTION_END, b"T\0", tx_id=tx) == "EAGAIN"


def test_no_conflict_on_unrelated_change(dom0: RawConn) -> None:
    dom0.ok(Op.WRITE, b"/u/a\0")
    dom0.ok(Op.WRITE, b"/u/b\0")
    tx = int(dom0.ok(Op.TRANSACTION_START, b"\0")[:-1])
    dom0.ok(Op.WRITE, b"/u/a\0in", tx_id=tx)
    dom0.ok(Op.WRITE, b"/u/b\0out")
    assert dom0.ok(Op.TRANSACTION_END, b"T\0", tx_id=tx) == OK
    assert dom0.ok(Op.READ, b"/u/a\0") == b"in"
    assert dom0.ok(Op.READ, b"/u/b\0") == b"out"


def test_commit_events_in_first_access_order(
    dom0: RawConn, connect: Callable[..., RawConn]
) -> None:
    for path in (b"/tr/r/a/b", b"/tr/r/c"):
        dom0.ok(Op.WRITE, path + b"\0v")
    w = connect()
    for path, token in (
        (b"/tr", b"all"),
        (b"/tr/r/a/b", b"ab"),
        (b"/tr/r/c", b"c"),
        (b"/tr/r", b"r"),
    ):
        w.ok(Op.WATCH, path + b"\0" + token + b"\0")
    payloads(w)
    tx = int(dom0.ok(Op.TRANSACTION_START, b"\0")[:-1])
    dom0.ok(Op.WRITE, b"/tr/new/x\0v", tx_id=tx)
    dom0.ok(Op.WRITE, b"/tr/r/c\0v2", tx_id=tx)
    dom0.ok(Op.RM, b"/tr/r\0", tx_id=tx)
    dom0.ok(Op.WRITE, b"/tr/new\0v3", tx_id=tx)
    assert payloads(w) == []
    assert dom0.ok(Op.TRANSACTION_END, b"T\0", tx_id=tx) == OK
    assert payloads(w) == [
        b"/tr/new/x\0all\0",
        b"/tr/new\0all\0",
        b"/tr/r/c\0all\0",
        b"/tr/r/c\0c\0",
        b"/tr/r/c\0r\0",
        b"/tr/r\0all\0",
        b"/tr/r\0r\0",
        b"/tr/r/a/b\0ab\0",
    ]
    assert dom0.ok(Op.DIRECTORY, b"/tr\0") == b"new\0"
    assert dom0.ok(Op.READ, b"/tr/new\0") == b"v3"
    assert dom0.ok(Op.READ, b"/tr/new/x\0") == b"v"


def test_commit_replaces_nodes_touched_at_several_levels(dom0: RawConn) -> None:
    dom0.ok(Op.WRITE, b"/lv/a/b/c\0old")
    tx = int(dom0.ok(Op.TRANSACTION_START, b"\0")[:-1])
    dom0.ok(Op.WRITE, b"/lv/a/b/c\0new", tx_id=tx)
    dom0.ok(Op.WRITE, b"/lv/a\0A", tx_id=tx)
    dom0.ok(Op.WRITE, b"/lv/a/b/d\0D", tx_id=tx)
    dom0.ok(Op.WRITE, b"/lv/a/e\0E", tx_id=tx)
    dom0.ok(Op.WRITE, b"/lv/f\0F")  # outside, unrelated sibling of /lv/a
    assert dom0.ok(Op.TRANSACTION_END, b"T\0", tx_id=tx) == OK
    assert dom0.ok(Op.READ, b"/lv/a/b/c\0") == b"new"
    assert dom0.ok(Op.READ, b"/lv/a\0") == b"A"
    assert dom0.ok(Op.READ, b"/lv/a/b/d\0") == b"D"
    assert dom0.ok(Op.READ, b"/lv/a/e\0") == b"E"
    assert dom0.ok(Op.DIRECTORY, b"/lv\0") == b"a\0f\0"
    assert dom0.ok(Op.DIRECTORY, b"/lv/a\0") == b"b\0e\0"
    assert dom0.ok(Op.DIRECTORY, b"/lv/a/b\0") == b"c\0d\0"
    assert dom0.ok(Op.CONTROL, b"check\0") == OK


def test_transaction_on_closed_connection_is_dropped(
    srv: object, dom0: RawConn, connect: Callable[..., RawConn]
) -> None:
    c = connect()
    tx = int(c.ok(Op.TRANSACTION_START, b"\0")[:-1])
    c.ok(Op.WRITE, b"/vanish\0", tx_id=tx)
    c.close()
    assert dom0.error(Op.READ, b"/vanish\0") == "ENOENT"
    from pyxs.server import Server

    assert isinstance(srv, Server)
    assert srv.call(lambda core: sum(len(x.transactions) for x in core.conns.values())) == 0
