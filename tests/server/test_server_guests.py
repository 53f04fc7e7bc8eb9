"""Unprivileged guest domains: permissions, watch filtering, quotas, domain life.

Guests connect to ``Server.guest_socket_path(domid)`` after a dom0 client
INTRODUCEd them over the wire.
"""

from __future__ import annotations

import os
from typing import Callable

import pytest
from rawxs import RawConn

from pyxs.protocol import Op
from pyxs.server import Quotas, Server

OK = b"OK\0"
Guest = Callable[[int], RawConn]


def home(dom0: RawConn, domid: int) -> None:
    """Give ``domid`` its /local/domain/<domid> (owned by it), as a toolstack does."""
    dom0.ok(Op.MKDIR, b"/local/domain/%d\0" % domid)
    dom0.ok(Op.SET_PERMS, b"/local/domain/%d\0n%d\0" % (domid, domid))


def test_guest_socket_exists_after_introduce(srv: Server, dom0: RawConn) -> None:
    path = srv.guest_socket_path(5)
    assert path == os.path.join(srv.run_dir, "domain-5.sock")
    assert not os.path.exists(path)
    dom0.ok(Op.INTRODUCE, b"5\x000\x007\0")
    assert os.path.exists(path)
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    assert oct(os.stat(srv.socket_path).st_mode & 0o777) == "0o600"


def test_guest_reads(dom0: RawConn, guest: Guest) -> None:
    g = guest(5)
    assert g.error(Op.READ, b"/tool\0") == "EACCES"
    assert g.error(Op.READ, b"/tool/nope\0") == "EACCES"  # ENOENT hidden
    assert g.error(Op.DIRECTORY, b"/\0") == "EACCES"
    dom0.ok(Op.WRITE, b"/pub\0v")
    dom0.ok(Op.SET_PERMS, b"/pub\0n0\0r5\0")
    assert g.ok(Op.READ, b"/pub\0") == b"v"
    assert g.error(Op.READ, b"/pub/nope\0") == "ENOENT"
    assert g.ok(Op.GET_PERMS, b"/pub\0") == b"n0\0r5\0"
    assert g.error(Op.WRITE, b"/pub\0x") == "EACCES"
    assert g.error(Op.WRITE, b"/pub/new\0x") == "EACCES"


def test_guest_relative_paths_and_ownership(dom0: RawConn, guest: Guest) -> None:
    g = guest(5)
    assert g.error(Op.WRITE, b"x\0hello") == "EACCES"  # no home yet
    home(dom0, 5)
    assert g.ok(Op.WRITE, b"x/y\0hello") == OK
    assert g.ok(Op.READ, b"/local/domain/5/x/y\0") == b"hello"
    assert g.ok(Op.GET_PERMS, b"x/y\0") == b"n5\0"
    assert g.ok(Op.DIRECTORY, b"/local/domain/5\0") == b"x\0"
    assert g.ok(Op.GET_DOMAIN_PATH, b"5\0") == b"/local/domain/5\0"
    # dom0 writing under the guest's home keeps the guest as owner
    dom0.ok(Op.WRITE, b"/local/domain/5/byd0\0v")
    assert dom0.ok(Op.GET_PERMS, b"/local/domain/5/byd0\0") == b"n5\0"


def test_guest_creation_inherits_parent_perms_with_guest_owner(dom0: RawConn, guest: Guest) -> None:
    g = guest(5)
    dom0.ok(Op.WRITE, b"/shared\0")
    dom0.ok(Op.SET_PERMS, b"/shared\0b0\0r7\0")
    assert g.ok(Op.WRITE, b"/shared/a/b\0v") == OK
    assert dom0.ok(Op.GET_PERMS, b"/shared/a\0") == b"b5\0r7\0"
    assert dom0.ok(Op.GET_PERMS, b"/shared/a/b\0") == b"b5\0r7\0"


def test_write_only_node(dom0: RawConn, guest: Guest) -> None:
    g = guest(5)
    dom0.ok(Op.WRITE, b"/wo\0")
    dom0.ok(Op.SET_PERMS, b"/wo\0n0\0w5\0")
    assert g.ok(Op.WRITE, b"/wo\0data") == OK
    assert g.error(Op.READ, b"/wo\0") == "EACCES"
    assert dom0.ok(Op.READ, b"/wo\0") == b"data"
    assert dom0.ok(Op.GET_PERMS, b"/wo\0") == b"n0\0w5\0"


def test_owner_change_and_set_perms(dom0: RawConn, guest: Guest) -> None:
    g = guest(5)
    home(dom0, 5)
    g.ok(Op.WRITE, b"mine\0")
    assert g.error(Op.SET_PERMS, b"mine\0n0\0") == "EPERM"
    assert g.ok(Op.SET_PERMS, b"mine\0n5\0r0\0") == OK
    assert g.ok(Op.GET_PERMS, b"mine\0") == b"n5\0r0\0"
    dom0.ok(Op.WRITE, b"/theirs\0")
    dom0.ok(Op.SET_PERMS, b"/theirs\0n0\0b5\0")
    assert g.error(Op.SET_PERMS, b"/theirs\0n0\0b5\0") == "EACCES"  # not the owner
    assert g.error(Op.SET_PERMS, b"@releaseDomain\0n0\0r5\0") == "EACCES"


@pytest.mark.parametrize(
    ("op", "payload"),
    [
        (Op.INTRODUCE, b"6\x000\x007\0"),
        (Op.RELEASE, b"5\0"),
        (Op.RESUME, b"5\0"),
        (Op.SET_TARGET, b"5\x000\0"),
        (Op.IS_DOMAIN_INTRODUCED, b"0\0"),
        (Op.CONTROL, b"check\0"),
    ],
)
def test_privileged_ops_refused(guest: Guest, op: Op, payload: bytes) -> None:
    assert guest(5).error(op, payload) == "EACCES"


def test_watch_filtering(dom0: RawConn, guest: Guest) -> None:
    g = guest(5)
    assert g.ok(Op.WATCH, b"/wf\0t\0") == OK
    assert g.take_events() == [(Op.WATCH_EVENT, 0, 0, b"/wf\0t\0")]
    dom0.ok(Op.WRITE, b"/wf/secret\0")  # n0 everywhere: nothing for the guest
    dom0.ok(Op.WRITE, b"/wf/pub\0")
    dom0.ok(
        Op.SET_PERMS, b"/wf/pub\0n0\0r5\0"
    )  # readable now: fires (old perms n0 but node readable)
    dom0.ok(Op.WRITE, b"/wf/pub/child\0")  # parent readable: fires
    dom0.ok(Op.WRITE, b"/wf/pub/child/deeper\0")  # neither node nor parent readable (inherits r5!)
    events = [e.payload for e in g.take_events()]
    assert events == [b"/wf/pub\0t\0", b"/wf/pub/child\0t\0", b"/wf/pub/child/deeper\0t\0"]
    dom0.ok(Op.SET_PERMS, b"/wf/pub/child/deeper\0n0\0")  # old perms readable: fires
    dom0.ok(Op.SET_PERMS, b"/wf/pub/child\0n0\0")  # old perms readable: fires
    dom0.ok(Op.WRITE, b"/wf/pub/child/deeper\0x")  # node and parent unreadable: nothing
    events = [e.payload for e in g.take_events()]
    assert events == [b"/wf/pub/child/deeper\0t\0", b"/wf/pub/child\0t\0"]


def test_relative_watch_events(dom0: RawConn, guest: Guest) -> None:
    g = guest(5)
    home(dom0, 5)
    assert g.ok(Op.WATCH, b"relw\0rt\0") == OK
    dom0.ok(Op.WRITE, b"/local/domain/5/relw/x\0")
    assert [e.payload for e in g.take_events()] == [b"relw\0rt\0", b"relw/x\0rt\0"]
    assert g.ok(Op.UNWATCH, b"relw\0rt\0") == OK
    assert g.error(Op.UNWATCH, b"relw\0rt\0") == "ENOENT"


def test_special_watches_follow_their_perms(srv: Server, dom0: RawConn, guest: Guest) -> None:
    g = guest(5)
    g.ok(Op.WATCH, b"@introduceDomain\0gi\0")
    g.ok(Op.WATCH, b"@releaseDomain\0gr\0")
    assert len(g.take_events()) == 2
    dom0.ok(Op.INTRODUCE, b"6\x000\x007\0")
    assert g.take_events() == []
    dom0.ok(Op.SET_PERMS, b"@introduceDomain\0n0\0r5\0")
    dom0.ok(Op.SET_PERMS, b"@releaseDomain\0n0\0r5\0")
    dom0.ok(Op.INTRODUCE, b"7\x000\x007\0")
    dom0.ok(Op.INTRODUCE, b"7\x000\x007\0")  # again: no event
    assert [e.payload for e in g.take_events()] == [b"@introduceDomain\0gi\0"]
    dom0.ok(Op.RELEASE, b"6\0")
    assert [e.payload for e in g.take_events()] == [b"@releaseDomain\0gr\0"]


def test_dom0_sees_introduce_and_release(dom0: RawConn, connect: Callable[..., RawConn]) -> None:
    w = connect()
    w.ok(Op.WATCH, b"@introduceDomain\0i\0")
    w.ok(Op.WATCH, b"@releaseDomain\0r\0")
    w.ok(Op.WATCH, b"/\0all\0")
    assert len(w.take_events()) == 3
    dom0.ok(Op.INTRODUCE, b"6\x000\x007\0")
    assert [e.payload for e in w.take_events()] == [b"@introduceDomain\0i\0"]
    dom0.ok(Op.INTRODUCE, b"0\x000\x007\0")  # dom0 itself: no event
    assert w.take_events() == []
    dom0.ok(Op.RELEASE, b"6\0")
    assert [e.payload for e in w.take_events()] == [b"@releaseDomain\0r\0"]


def test_release_removes_owned_nodes(
    srv: Server, dom0: RawConn, guest: Guest, connect: Callable[..., RawConn]
) -> None:
    g = guest(9)
    home(dom0, 9)
    g.ok(Op.WRITE, b"a/b\0v")
    dom0.ok(Op.WRITE, b"/local/domain/9/d0\0v")
    dom0.ok(Op.SET_PERMS, b"/local/domain/9/d0\0n0\0")
    dom0.ok(Op.WRITE, b"/o9/sub\0v")
    dom0.ok(Op.SET_PERMS, b"/o9\0n9\0")
    dom0.ok(Op.WRITE, b"/r9\0")
    dom0.ok(Op.SET_PERMS, b"/r9\0n0\0r9\0")
    w = connect()
    w.ok(Op.WATCH, b"/\0all\0")
    w.ok(Op.WATCH, b"/local/domain/9/a/b\0ab\0")
    w.ok(Op.WATCH, b"@releaseDomain\0rel\0")
    w.take_events()
    assert dom0.ok(Op.RELEASE, b"9\0") == OK
    assert [e.payload for e in w.take_events()] == [
        b"/local/domain/9/a/b\0ab\0",
        b"/local/domain/9\0all\0",
        b"/o9\0all\0",
        b"@releaseDomain\0rel\0",
    ]
    assert dom0.ok(Op.DIRECTORY, b"/local/domain\0") == b""
    assert dom0.ok(Op.DIRECTORY, b"/\0") == b"tool\0local\0r9\0"
    assert dom0.ok(Op.GET_PERMS, b"/r9\0") == b"n0\0r9\0"
    assert dom0.error(Op.CONTROL, b"quota\x009\0") == "ENOENT"
    assert g.is_closed()
    assert not os.path.exists(srv.guest_socket_path(9))
    # a new domain 9 does not inherit the old one's rights on /r9
    dom0.ok(Op.INTRODUCE, b"9\x000\x007\0")
    g2 = connect(srv.guest_socket_path(9))
    assert g2.error(Op.READ, b"/r9\0") == "EACCES"
    dom0.ok(Op.SET_PERMS, b"/r9\0n0\0r9\0")  # rewritten after the domain came: counts
    assert g2.ok(Op.READ, b"/r9\0") == b""


def test_keep_orphans() -> None:
    with Server(keep_orphans=True) as srv, RawConn(srv.socket_path) as dom0:
        dom0.ok(Op.INTRODUCE, b"9\x000\x007\0")
        home(dom0, 9)
        dom0.ok(Op.RELEASE, b"9\0")
        assert dom0.ok(Op.GET_PERMS, b"/local/domain/9\0") == b"n0\0"


def test_set_domain_state(
    srv: Server, dom0: RawConn, guest: Guest, connect: Callable[..., RawConn]
) -> None:
    w = connect()
    w.ok(Op.WATCH, b"/\0all\0")
    w.ok(Op.WATCH, b"@releaseDomain\0rel\0")
    guest(11)
    guest(12)
    dom0.ok(Op.WRITE, b"/o11\0v")
    dom0.ok(Op.SET_PERMS, b"/o11\0n11\0")
    w.take_events()
    rel = b"@releaseDomain\0rel\0"
    srv.set_domain_state(11, "shutdown")
    assert [e.payload for e in w.take_events()] == [rel]
    srv.set_domain_state(11, "shutdown")  # noticed already
    assert w.take_events() == []
    assert dom0.ok(Op.IS_DOMAIN_INTRODUCED, b"11\0") == b"T\0"
    dom0.ok(Op.RESUME, b"11\0")
    srv.set_domain_state(12, "running")  # a VIRQ: 11 is still shut down
    assert [e.payload for e in w.take_events()] == [rel]
    srv.set_domain_state(11, "crashed")
    srv.set_domain_state(12, "crashed")
    assert [e.payload for e in w.take_events()] == [rel]
    srv.set_domain_state(11, "dying")
    assert [e.payload for e in w.take_events()] == [b"/o11\0all\0", rel]
    srv.set_domain_state(12, "gone")
    assert [e.payload for e in w.take_events()] == [rel]
    assert dom0.ok(Op.IS_DOMAIN_INTRODUCED, b"11\0") == b"F\0"
    assert dom0.ok(Op.IS_DOMAIN_INTRODUCED, b"12\0") == b"F\0"
    assert dom0.error(Op.READ, b"/o11\0") == "ENOENT"
    with pytest.raises(ValueError, match="unknown domain state"):
        srv.set_domain_state(11, "paused")


def test_existing_domains_for_permissions(srv: Server, dom0: RawConn) -> None:
    dom0.ok(Op.WRITE, b"/x\0")
    assert dom0.error(Op.SET_PERMS, b"/x\0n20\0") == "ENOENT"
    srv.set_domain_state(20, "running")
    assert dom0.ok(Op.SET_PERMS, b"/x\0n20\0") == OK
    assert dom0.ok(Op.IS_DOMAIN_INTRODUCED, b"20\0") == b"F\0"


def test_set_target(dom0: RawConn, guest: Guest) -> None:
    g5 = guest(5)
    guest(6)
    dom0.ok(Op.WRITE, b"/t6\0secret")
    dom0.ok(Op.SET_PERMS, b"/t6\0n6\0")
    assert g5.error(Op.READ, b"/t6\0") == "EACCES"
    dom0.ok(Op.SET_TARGET, b"5\x006\0")
    assert g5.ok(Op.READ, b"/t6\0") == b"secret"


def test_reintroduce_resets_the_guest(dom0: RawConn, guest: Guest) -> None:
    g = guest(5)
    g.ok(Op.WATCH, b"@releaseDomain\0r\0")
    assert g.ok(Op.TRANSACTION_START, b"\0") == b"1\0"
    dom0.ok(Op.INTRODUCE, b"5\x000\x007\0")
    assert g.error(Op.READ, b"/\0", tx_id=1) == "ENOENT"
    assert g.error(Op.UNWATCH, b"@releaseDomain\0r\0") == "ENOENT"


# -- quotas -------------------------------------------------------------------


def test_node_size_quota(dom0: RawConn, guest: Guest) -> None:
    g = guest(5)
    home(dom0, 5)
    assert g.ok(Op.WRITE, b"sz\0" + b"a" * 2015) == OK  # 24 + 8 + 2015 < 2048
    assert g.error(Op.WRITE, b"sz\0" + b"a" * 2016) == "ENOSPC"
    assert g.error(Op.SET_PERMS, b"sz\0n5\0r1\0") == "ENOSPC"  # the node grows by one entry
    assert dom0.ok(Op.WRITE, b"/local/domain/5/sz\0" + b"a" * 4000) == OK  # dom0: no quota


def test_node_quota(dom0: RawConn, guest: Guest) -> None:
    g = guest(5)
    home(dom0, 5)
    dom0.ok(Op.CONTROL, b"quota\0set\0nodes\x006\0")
    # /local/domain/5 counts: 5 more fit
    for i in range(5):
        assert g.ok(Op.WRITE, b"q%d\0" % i) == OK
    assert g.error(Op.WRITE, b"q5\0") == "ENOSPC"
    g.ok(Op.RM, b"q0\0")
    assert g.error(Op.WRITE, b"x/a/b\0") == "ENOSPC"  # needs two
    assert g.error(Op.READ, b"x\0") == "ENOENT"  # nothing left behind
    assert g.ok(Op.WRITE, b"x\0") == OK
    assert b"nodes           :        6\n" in dom0.ok(Op.CONTROL, b"quota\x005\0")


def test_children_count_toward_node_size(dom0: RawConn, guest: Guest) -> None:
    g = guest(5)
    home(dom0, 5)
    g.ok(Op.MKDIR, b"n\0")
    created = 0
    while True:
        reply = g.request(Op.WRITE, b"n/%d\0" % created)
        if reply.op == Op.ERROR:
            assert reply.payload == b"ENOSPC\0"
            break
        created += 1
    assert created == 531  # the child list reaches 2048 bytes


def test_watch_quota(dom0: RawConn, guest: Guest) -> None:
    g = guest(5)
    for i in range(129):
        assert g.ok(Op.WATCH, b"/w%d\0t\0" % i) == OK
    assert g.error(Op.WATCH, b"/w999\0t\0") == "E2BIG"
    for i in range(200):  # dom0 has no quota
        dom0.ok(Op.WATCH, b"/w%d\0t\0" % i)


def test_transaction_quota(guest: Guest) -> None:
    g = guest(5)
    for i in range(11):
        assert g.ok(Op.TRANSACTION_START, b"\0") == b"%d\0" % (i + 1)
    assert g.error(Op.TRANSACTION_START, b"\0") == "ENOSPC"


def test_perms_quota(dom0: RawConn, guest: Guest) -> None:
    g = guest(5)
    home(dom0, 5)
    g.ok(Op.WRITE, b"p\0")
    assert g.ok(Op.SET_PERMS, b"p\0n5\0r1\0r2\0r3\0r4\0") == OK
    assert g.error(Op.SET_PERMS, b"p\0n5\0r1\0r2\0r3\0r4\0r6\0") == "ENOSPC"
    assert dom0.ok(Op.SET_PERMS, b"/local/domain/5/p\0n5\0r1\0r2\0r3\0r4\0r6\0r7\0") == OK


def test_transaction_nodes_quota() -> None:
    with Server(quotas={"transaction-nodes": 4}) as srv, RawConn(srv.socket_path) as dom0:
        dom0.ok(Op.INTRODUCE, b"5\x000\x007\0")
        home(dom0, 5)
        with RawConn(srv.guest_socket_path(5)) as g:
            tx = int(g.ok(Op.TRANSACTION_START, b"\0")[:-1])
            for i in range(2):
                g.ok(Op.WRITE, b"t%d\0" % i, tx_id=tx)  # t_i and the home: 3 nodes
            assert g.error(Op.WRITE, b"t2/deeper\0", tx_id=tx) == "ENOSPC"
            assert g.error(Op.TRANSACTION_END, b"T\0", tx_id=tx) == "ENOMEM"


def test_quota_options() -> None:
    quotas = Quotas(nodes=3, watches=1)
    with Server(quotas=quotas) as srv, RawConn(srv.socket_path) as dom0:
        table = dom0.ok(Op.CONTROL, b"quota\0")
        assert b"nodes            :        3 " in table
        assert b"watches          :        1 " in table
    with pytest.raises(ValueError, match="unknown quota"):
        Server(quotas={"bogus": 1})
