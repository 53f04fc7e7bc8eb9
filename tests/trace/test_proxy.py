"""The tracing proxy through real sockets: byte-identical forwarding, the
same replies and events as without it (real xenstored and the embedded
server), many connections, pipelining, 4096-byte payloads, either side
going away mid-message, a guest's socket as upstream."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import socket
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from trace_support import TIMEOUT, FakeUpstream, Raw, proxy_to, recv_exactly, recv_to_eof

from pyxs import Client
from pyxs.exceptions import PermissionDeniedError
from pyxs.protocol import HEADER, HEADER_SIZE, PAYLOAD_MAX, Op, encode
from pyxs.server import Server
from pyxs.trace import Proxy, Tracer
from realxs import start_real_xenstored

REAL = pytest.param("real", marks=pytest.mark.realxs)


@pytest.fixture
def upstream_dir() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="pyxs-tu-", dir="/tmp") as tmp:
        yield tmp


def test_bytes_are_forwarded_as_read_both_ways(upstream_dir: str) -> None:
    """Pipelined packets, split anywhere (in a header, in a payload), a
    4096-byte payload: each side receives exactly the bytes the other sent,
    and the trace has one line per packet."""
    fake = FakeUpstream(upstream_dir)
    big = b"/big\0" + b"v" * (PAYLOAD_MAX - 5)
    requests = (
        encode(Op.WRITE, 1, 0, big) + encode(Op.READ, 2, 0, b"/a\0") + encode(Op.RM, 3, 0, b"/b\0")
    )
    replies = (
        encode(Op.WRITE, 1, 0, b"OK\0")
        + encode(Op.WATCH_EVENT, 0, 0, b"/a\0tok\0")
        + encode(Op.READ, 2, 0, b"x" * PAYLOAD_MAX)
        + encode(Op.ERROR, 3, 0, b"ENOENT\0")
    )
    with proxy_to(fake.path) as traced:
        client = Raw(traced.path)
        server = fake.accept()
        for cut in (7, HEADER_SIZE + 100, 4000, len(requests)):  # odd places
            client.sock.sendall(requests[:cut])
            requests_sent, requests = requests[:cut], requests[cut:]
            assert recv_exactly(server, len(requests_sent)) == requests_sent
        for start, stop in ((0, 3), (3, 30), (30, 4200), (4200, len(replies))):
            server.sendall(replies[start:stop])
        got = client.until(4)
        assert bytes(client.received) == replies
        assert [p.op for p in got] == [Op.WRITE, Op.WATCH_EVENT, Op.READ, Op.ERROR]
        client.close()
        assert recv_to_eof(server) == b""  # the client went: upstream closed
        server.close()
    fake.close()
    lines = [line.split(" ", 1)[1] for line in traced.text().splitlines()]
    assert lines[0] == "#1 - connected"
    assert lines[1].startswith('#1 > WRITE req=1 tx=0 /big "vvvv')
    assert lines[2:5] == ["#1 > READ req=2 tx=0 /a", "#1 > RM req=3 tx=0 /b", lines[4]]
    assert lines[4].startswith("#1 < WRITE req=1 tx=0 OK (")
    assert lines[5] == "#1 * WATCH_EVENT req=0 tx=0 /a tok"
    assert lines[6].startswith('#1 < READ req=2 tx=0 "xxxx')
    assert lines[7].startswith("#1 < RM req=3 tx=0 ERROR ENOENT (")
    assert lines[8:] == ["#1 - client closed"]


def test_client_going_away_mid_message(upstream_dir: str) -> None:
    """What the client sent is delivered, then its upstream connection is
    closed; the trace says the client stopped inside a packet."""
    fake = FakeUpstream(upstream_dir)
    whole = encode(Op.READ, 1, 0, b"/a\0")
    partial = encode(Op.WRITE, 2, 0, b"/b\0value")[: HEADER_SIZE + 3]
    with proxy_to(fake.path) as traced:
        client = Raw(traced.path)
        server = fake.accept()
        client.sock.sendall(whole + partial)
        client.close()
        assert recv_to_eof(server) == whole + partial
        server.close()
    fake.close()
    lines = [line.split(" ", 1)[1] for line in traced.text().splitlines()]
    assert lines == [
        "#1 - connected",
        "#1 > READ req=1 tx=0 /a",
        "#1 - client closed mid-message (19 bytes of a packet unfinished)",
    ]


def test_upstream_going_away_mid_message(upstream_dir: str) -> None:
    """The client gets every byte the upstream sent, then end of file."""
    fake = FakeUpstream(upstream_dir)
    reply = encode(Op.READ, 1, 0, b"abc")
    partial = encode(Op.WATCH_EVENT, 0, 0, b"/a\0tok\0")[:5]
    with proxy_to(fake.path) as traced:
        client = Raw(traced.path)
        server = fake.accept()
        client.send(Op.READ, 1, b"/a\0")
        recv_exactly(server, HEADER_SIZE + 3)
        server.sendall(reply + partial)
        server.close()
        assert client.read_to_eof() == reply + partial
        client.close()
    fake.close()
    lines = [line.split(" ", 1)[1] for line in traced.text().splitlines()]
    assert lines[:3] == ["#1 - connected", "#1 > READ req=1 tx=0 /a", lines[2]]
    assert lines[2].startswith('#1 < READ req=1 tx=0 "abc" (')
    assert lines[3:] == ["#1 - upstream closed mid-message (5 bytes of a packet unfinished)"]


def test_upstream_missing_closes_the_client(upstream_dir: str) -> None:
    with proxy_to(f"{upstream_dir}/nothing-here") as traced:
        client = Raw(traced.path)
        assert client.read_to_eof() == b""
        client.close()
    assert traced.text().split(" ", 1)[1] == (
        f"#1 - cannot connect to {upstream_dir}/nothing-here: No such file or directory; "
        "client closed\n"
    )


# -- the differential test ------------------------------------------------------------

MARK = 0x7E57


def transcript(socket_path: str) -> tuple[bytes, bytes]:
    """A workload on two raw connections; every byte each one received.

    No path changes twice between two of B's reads: an event equal to one
    still waiting to be sent is dropped, and what is still waiting depends
    on how the requests were split into reads, which the proxy may change.

    B watches /t; A pipelines writes (one of 4096 payload bytes), reads,
    a directory, permissions, errors and a transaction; then B makes a round
    trip, whose reply comes after the events A's requests caused."""
    a, b = Raw(socket_path), Raw(socket_path)
    try:
        b.send(Op.WATCH, 1, b"/t\0tok\0")
        b.until(2)  # its reply and the initial event
        big = b"/t/big\0" + bytes(range(256)) * 15 + b"x" * (PAYLOAD_MAX - 7 - 3840)
        sends = [
            (Op.WRITE, b"/t/a\0one", 0),
            (Op.WRITE, big, 0),
            (Op.READ, b"/t/big\0", 0),
            (Op.DIRECTORY, b"/t\0", 0),
            (Op.READ, b"/t/none\0", 0),
            (Op.SET_PERMS, b"/t\0n0\0r5\0", 0),
            (Op.GET_PERMS, b"/t\0", 0),
            (Op.TRANSACTION_START, b"\0", 0),
            (Op.RM, b"/t/none\0", 0),
            (Op.WRITE, b"bad//path\0x", 0),
        ]
        for req_id, (op, payload, tx_id) in enumerate(sends, 1):
            a.send(op, req_id, payload, tx_id)
        a.until(len(sends))
        tx_id = int(a.packets[7].payload.rstrip(b"\0"))
        a.send(Op.WRITE, 20, b"/t/in-tx\0y", tx_id)
        a.send(Op.TRANSACTION_END, 21, b"T\0", tx_id)
        a.send(Op.MKDIR, 22, b"/t/dir\0")
        a.until(len(sends) + 3)
        b.send(Op.GET_DOMAIN_PATH, MARK, b"0\0")
        while b.packets[-1].req_id != MARK:
            b.until(len(b.packets) + 1)
        return bytes(a.received), bytes(b.received)
    finally:
        a.close()
        b.close()


@contextlib.contextmanager
def fresh(kind: str) -> Iterator[str]:
    """A new server of ``kind``; yields its dom0 socket."""
    if kind == "embedded":
        with Server() as server:
            yield server.socket_path
    else:
        daemon = start_real_xenstored(verbose=False)
        try:
            yield daemon.socket_path
        finally:
            daemon.stop()


@pytest.mark.parametrize("kind", ["embedded", REAL])
def test_same_replies_and_events_with_and_without_the_proxy(kind: str) -> None:
    with fresh(kind) as socket_path:
        direct = transcript(socket_path)
    with fresh(kind) as socket_path, proxy_to(socket_path) as traced:
        proxied = transcript(traced.path)
    assert proxied == direct
    assert b"ENOENT\0" in direct[0] and b"EINVAL\0" in direct[0]  # the workload has errors
    text = traced.text()
    requests = [line for line in text.splitlines() if " > " in line]
    replies = [line for line in text.splitlines() if " < " in line]
    assert len(requests) == len(replies) == 1 + 10 + 3 + 1
    assert sum(" * WATCH_EVENT " in line for line in text.splitlines()) >= 5


def test_many_connections_pipelining() -> None:
    """Twenty connections, each with 50 requests sent before any reply is
    read: every reply reaches its own connection, in order."""
    with Server() as server, proxy_to(server.socket_path) as traced:
        conns = [Raw(traced.path) for _ in range(20)]
        for n, conn in enumerate(conns):
            for i in range(25):
                conn.send(Op.WRITE, 2 * i + 1, b"/many/%d/%d\0%d" % (n, i, n * i))
                conn.send(Op.READ, 2 * i + 2, b"/many/%d/%d\0" % (n, i))
        for n, conn in enumerate(conns):
            packets = conn.until(50)
            assert [p.req_id for p in packets] == list(range(1, 51))
            assert [p.payload for p in packets[1::2]] == [b"%d" % (n * i) for i in range(25)]
            conn.close()
    lines = traced.text().splitlines()
    assert sum(" > " in line for line in lines) == sum(" < " in line for line in lines) == 1000


def test_a_guests_socket_as_upstream(xs_server: Any, unique_domid: int) -> None:
    """Upstream a guest's socket: the connection acts as that guest (relative
    paths, its permissions); ``domain-<domid>.sock`` (the embedded server's
    name) makes the trace name the domain."""
    domid = unique_domid
    home = b"/local/domain/%d" % domid
    guest_socket = xs_server.introduce_guest(domid)
    with Client(xs_server.socket_path) as dom0:
        dom0.mkdir(home)
        dom0.set_perms(home, [b"n%d" % domid])
        with proxy_to(guest_socket) as traced, Client(traced.path) as guest:
            guest.write(b"data/ip", b"192.0.2.7")
            with pytest.raises(PermissionDeniedError):
                guest.read(b"/tool/xenstored")
        assert dom0.read(home + b"/data/ip") == b"192.0.2.7"
    conn = f"#1/dom{domid}" if guest_socket.endswith(f"domain-{domid}.sock") else "#1"
    assert (xs_server.name == "embedded") == (conn != "#1")
    lines = [line.split(" ", 1)[1] for line in traced.text().splitlines()]
    assert f'{conn} > WRITE req=1 tx=0 data/ip "192.0.2.7"' in lines
    assert any(line.startswith(f"{conn} < READ req=2 tx=0 ERROR EACCES (") for line in lines)


def test_an_oversized_header_is_forwarded_and_said(upstream_dir: str) -> None:
    """A header announcing more than 4096 bytes goes through as it is (the
    daemon decides what to do with it); the trace says it stops decoding."""
    fake = FakeUpstream(upstream_dir)
    data = HEADER.pack(Op.WRITE, 1, 0, PAYLOAD_MAX + 1) + b"/x\0" + b"y" * 100
    with proxy_to(fake.path) as traced:
        client = Raw(traced.path)
        server = fake.accept()
        client.sock.sendall(data)
        assert recv_exactly(server, len(data)) == data
        client.close()
        assert recv_to_eof(server) == b""
        server.close()
    fake.close()
    lines = [line.split(" ", 1)[1] for line in traced.text().splitlines()]
    assert lines == [
        "#1 - connected",
        "#1 - client: header announces 4097 payload bytes (limit 4096); "
        "the rest is forwarded, not decoded",
        "#1 - client closed",
    ]


def test_a_conflict_in_the_summary(xs_server: Any, unique_path: bytes) -> None:
    """Two connections through the proxy: a transaction that reads a node
    another connection then changes conflicts at commit (EAGAIN), one
    committed, a watch fired: the summary counts them as the server said."""
    with proxy_to(xs_server.socket_path, summary=True) as traced:
        a, b = Raw(traced.path), Raw(traced.path)
        b.send(Op.WATCH, 1, unique_path + b"\0w\0")
        b.until(2)  # the reply and the initial event
        a.send(Op.TRANSACTION_START, 1, b"\0")
        (started,) = a.until(1)
        tx_id = int(started.payload.rstrip(b"\0"))
        a.send(Op.READ, 2, unique_path + b"\0", tx_id)
        a.send(Op.WRITE, 3, unique_path + b"/x\0in-tx", tx_id)
        a.until(3)
        b.send(Op.WRITE, 2, unique_path + b"\0changed")
        b.until(4)  # its own event and its reply, in some order
        a.send(Op.TRANSACTION_END, 4, b"T\0", tx_id)
        assert a.until(4)[-1].payload == b"EAGAIN\0"
        a.send(Op.TRANSACTION_START, 5, b"\0")
        tx_id = int(a.until(5)[-1].payload.rstrip(b"\0"))
        a.send(Op.WRITE, 6, unique_path + b"/y\0ok", tx_id)
        a.send(Op.TRANSACTION_END, 7, b"T\0", tx_id)
        assert a.until(7)[-1].payload == b"OK\0"
        b.send(Op.GET_DOMAIN_PATH, MARK, b"0\0")  # after the commit's event
        while b.packets[-1].req_id != MARK:
            b.until(len(b.packets) + 1)
        a.close()
        b.close()
    lines = traced.text().splitlines()
    assert lines[lines.index("summary:") :][-2:] == [
        "  watches: 1 registered, 3 fired",
        "  transactions: 2 started, 1 committed, 1 conflicted, 0 aborted",
    ]
    assert "  errors: 2 (EAGAIN 1, ENOENT 1)" in lines  # (the READ in the transaction)


class OutOfDescriptors(socket.socket):
    """A listener whose accept() fails with EMFILE while ``failing`` is set."""

    failing = False
    failures = 0

    def accept(self) -> tuple[socket.socket, Any]:
        if self.failing:
            self.failures += 1
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
        return super().accept()


def test_out_of_descriptors_the_listener_waits_for_a_link_to_end() -> None:
    """accept() failing for want of descriptors leaves the listener readable:
    the proxy stops polling it (no spinning) until a link ends, then takes
    the client that waited."""
    with Server() as server, tempfile.TemporaryDirectory(prefix="pyxs-tt-", dir="/tmp") as tmp:
        listener = OutOfDescriptors(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(f"{tmp}/proxy.sock")
        listener.listen(8)
        out = io.StringIO()
        proxy = Proxy(listener, server.socket_path, Tracer(out))
        thread = threading.Thread(target=proxy.serve_forever, daemon=True)
        thread.start()
        try:
            first = Raw(f"{tmp}/proxy.sock")
            first.send(Op.READ, 1, b"/\0")
            first.until(1)  # served: its link exists
            listener.failing = True
            waiting = Raw(f"{tmp}/proxy.sock")  # in the backlog: accept() fails
            waiting.send(Op.READ, 1, b"/\0")
            first.send(Op.READ, 2, b"/\0")  # the loop goes round
            first.until(2)
            listener.failing = False
            first.close()  # a link ends: the listener is polled again
            assert waiting.until(1)[0].op == Op.READ
            waiting.close()
        finally:
            proxy.stop()
            thread.join(TIMEOUT)
            listener.close()
    assert listener.failures == 1
    assert sum(" > READ " in line for line in out.getvalue().splitlines()) == 3
