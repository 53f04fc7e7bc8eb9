"""Faults a real server cannot be asked to produce: fakes are allowed here.

A scripted fake server (a thread behind a real Unix socket) plays the other
side; a transport that hands out 5 bytes at a time runs against the real
daemon; the real daemon is killed in the middle of calls.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from fake_server import Peer, fake_fixture  # noqa: F401 - the "fake" fixture

import pyxs
from pyxs.connection import UnixSocketConnection
from pyxs.protocol import Op, Packet, encode


def echo_value(request: Packet) -> bytes:
    """READ replies with the path as value; everything else OK."""
    if request.op == Op.READ:
        return request.payload.rstrip(b"\0")
    return b"OK\0"


def test_reply_cut_in_half(fake) -> None:
    def script(peer: Peer) -> None:
        while True:
            request = peer.request()
            wire = encode(request.op, request.req_id, request.tx_id, b"value-" * 100)
            for cut in (7, 16, 17, len(wire) // 2):
                peer.send(wire[:cut])
                time.sleep(0.02)
                peer.send(wire[cut:])
                if cut != len(wire) // 2:
                    request = peer.request()
                    wire = encode(request.op, request.req_id, request.tx_id, b"value-" * 100)

    server = fake(script)
    with pyxs.Client(unix_socket_path=server.path, timeout=10) as c:
        for _ in range(4):
            assert c.read(b"/x") == b"value-" * 100


def test_packets_split_and_joined_anyhow(fake) -> None:
    # Several replies in one write, then one reply over several writes.
    def script(peer: Peer) -> None:
        requests = [peer.request() for _ in range(3)]
        peer.send(b"".join(encode(r.op, r.req_id, r.tx_id, echo_value(r)) for r in requests))
        request = peer.request()
        for byte in encode(request.op, request.req_id, request.tx_id, echo_value(request)):
            peer.send(bytes([byte]))
        while True:
            request = peer.request()
            peer.reply(request, echo_value(request))

    server = fake(script)
    c = pyxs.Client(unix_socket_path=server.path, timeout=10)
    c.connect()
    results: dict[int, bytes] = {}
    threads = [
        threading.Thread(target=lambda i=i: results.__setitem__(i, c.read(b"/p%d" % i)))
        for i in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == {i: b"/p%d" % i for i in range(3)}
    assert c.read(b"/one-byte-at-a-time") == b"/one-byte-at-a-time"
    c.close()


class FiveBytes(UnixSocketConnection):
    """A socket that never gives more than 5 bytes per recv()."""

    def recv(self, size=None):
        if size is None:
            return super().recv()
        return super().recv(min(size, 5))


@pytest.mark.realxs
def test_five_bytes_at_a_time_on_the_real_daemon(real_xenstored, unique_path) -> None:
    router = pyxs.Router(FiveBytes(real_xenstored.socket_path))
    with pyxs.Client(router=router) as c:
        c[unique_path + b"/a"] = b"x" * 1000
        assert c[unique_path + b"/a"] == b"x" * 1000
        assert c.list(unique_path) == [b"a"]
        with c.monitor() as m:
            m.watch(unique_path, b"tok")
            assert m.next_event(30) == (unique_path, b"tok")
            errors = []

            def writer(i: int) -> None:
                try:
                    for n in range(20):
                        c[unique_path + b"/%d" % i] = b"%d" % n
                        assert c[unique_path + b"/%d" % i] == b"%d" % n
                except BaseException as exc:
                    errors.append(exc)

            threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            assert errors == []
            events = [m.next_event(30) for _ in range(80)]  # (30 s: a hang guard)
            assert list(m.wait(timeout=0.5)) == []
            assert set(events) == {(unique_path + b"/%d" % i, b"tok") for i in range(4)}


def kill(server) -> None:
    """The server dies: SIGKILL for the real daemon, shutdown for the embedded."""
    if server.name == "real":
        os.kill(server.daemon.pid, signal.SIGKILL)
        # reaped: all its files are closed, the listening socket too (a peer
        # can see its connection close while the exit still has that to do)
        server.daemon.proc.wait()
    else:
        server.close()
        # stopped for good: the fixture's own close() has nothing left to do
        server.close = lambda: None


def test_server_killed_mid_call(fresh_xs_server, unique_path) -> None:
    c = pyxs.Client(unix_socket_path=fresh_xs_server.socket_path)
    c.connect()
    m = c.monitor()
    m.watch(unique_path, b"t")
    assert m.next_event(30) == (unique_path, b"t")
    outcome: list[BaseException] = []
    started = threading.Barrier(5)

    def busy() -> None:
        try:
            c.write(unique_path + b"/x", b"y" * 100)
            started.wait(30)  # every busy thread has had a reply: all are calling
            while True:
                c.write(unique_path + b"/x", b"y" * 100)
        except BaseException as exc:
            outcome.append(exc)

    def waiting() -> None:
        started.wait(30)
        try:
            list(m.wait())
        except BaseException as exc:
            outcome.append(exc)

    threads = [threading.Thread(target=busy) for _ in range(3)]
    threads.append(threading.Thread(target=waiting))
    for t in threads:
        t.start()
    started.wait(30)
    kill(fresh_xs_server)
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    assert len(outcome) == 4
    assert all(isinstance(e, pyxs.ConnectionError) for e in outcome), outcome
    with pytest.raises(pyxs.ConnectionError):
        c.read(unique_path)
    with pytest.raises(pyxs.ConnectionError):
        c.connect()  # nobody listens any more
    c.close()


def test_unexpected_req_id_fails_the_connection(fake) -> None:
    def script(peer: Peer) -> None:
        request = peer.request()
        peer.send(encode(request.op, request.req_id + 1000, 0, b"stray\0"))
        peer.request()  # keep the connection open until the client drops it

    server = fake(script)
    c = pyxs.Client(unix_socket_path=server.path, timeout=10)
    c.connect()
    with pytest.raises(pyxs.UnexpectedPacket) as info:
        c.read(b"/a")
    assert info.value.__cause__ is None  # printed once, not chained to a copy
    assert not c.router.is_connected
    with pytest.raises(pyxs.ConnectionError):
        c.read(b"/a")
    c.connect()  # a new connection works again
    deadline = time.monotonic() + 30  # a hang guard
    while len(server.peers) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(server.peers) == 2
    c.close()


def test_unknown_error_name_is_einval(fake) -> None:
    def script(peer: Peer) -> None:
        while True:
            request = peer.request()
            peer.reply(request, b"EWHATEVER\0", op=Op.ERROR)

    server = fake(script)
    with pyxs.Client(unix_socket_path=server.path, timeout=10) as c:
        with pytest.raises(pyxs.InvalidArgumentError) as info:
            c.read(b"/a")
        assert info.value.args[0] == 22
        assert c.router.is_connected


def test_reply_of_the_wrong_type(fake) -> None:
    def script(peer: Peer) -> None:
        while True:
            request = peer.request()
            peer.reply(request, b"OK\0", op=Op.WRITE)

    server = fake(script)
    with pyxs.Client(unix_socket_path=server.path, timeout=10) as c:
        with pytest.raises(pyxs.UnexpectedPacket):
            c.read(b"/a")
        c.write(b"/a", b"")  # the connection itself is fine


def test_server_stops_answering(fake) -> None:
    answer = threading.Event()

    def script(peer: Peer) -> None:
        while True:
            request = peer.request()
            if not answer.is_set():
                # hold the reply until the client gave up on it
                answer.wait(30)
                time.sleep(0.1)
            peer.reply(request, echo_value(request))

    server = fake(script)
    with pyxs.Client(unix_socket_path=server.path, timeout=0.3) as c:
        start = time.monotonic()
        with pytest.raises(pyxs.RequestTimeout):
            c.read(b"/slow")
        assert time.monotonic() - start < 30  # a hang guard
        assert isinstance(pyxs.RequestTimeout("x"), TimeoutError)
        answer.set()
        # The late reply is dropped; the connection goes on.
        assert c.read(b"/next") == b"/next"
        session = c.router._session
        assert not session.protocol.pending and session.slots == {}


def test_server_stops_answering_with_followers(fake) -> None:
    # Several threads time out; none of them is left blocked.
    def script(peer: Peer) -> None:
        while True:
            peer.request()

    server = fake(script)
    c = pyxs.Client(unix_socket_path=server.path, timeout=0.3)
    c.connect()
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            c.read(b"/x")
        except BaseException as exc:
            outcome.append(exc)

    threads = [threading.Thread(target=call) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    assert len(outcome) == 6 and all(isinstance(e, pyxs.RequestTimeout) for e in outcome)
    assert c.router._session.slots == {}
    c.close()


def test_server_stops_reading(fake) -> None:
    # The socket buffer fills up: one thread blocks in send(), the others
    # queue their packets behind it. close() releases every one of them.
    stop = threading.Event()

    def script(peer: Peer) -> None:
        stop.wait(30)

    server = fake(script)
    c = pyxs.Client(unix_socket_path=server.path)
    c.connect()
    outcome: list[BaseException] = []

    def writer() -> None:
        try:
            while True:
                c.write(b"/big", b"x" * 4000)
        except BaseException as exc:
            outcome.append(exc)

    # Each thread has one 4 KB request in flight: 100 of them overfill the
    # socket's buffer (~200 KB).
    threads = [threading.Thread(target=writer) for _ in range(100)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30  # a hang guard
    session = c.router._session
    while not (session.write_lock.locked() and session.outbox) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert session.write_lock.locked() and session.outbox  # a writer stuck, others queued
    assert not outcome
    c.close()
    for t in threads:
        t.join(30)
    stop.set()
    assert not any(t.is_alive() for t in threads)
    assert len(outcome) == 100 and all(isinstance(e, pyxs.ConnectionError) for e in outcome)


def test_server_hangs_up_after_request(fake) -> None:
    def script(peer: Peer) -> None:
        peer.request()  # then the script returns and the peer is closed

    server = fake(script)
    with (
        pyxs.Client(unix_socket_path=server.path, timeout=10) as c,
        pytest.raises(pyxs.ConnectionError),
    ):
        c.read(b"/a")
        with pytest.raises(pyxs.ConnectionError):
            c.read(b"/a")


def test_malformed_watch_event_fails_the_connection(fake) -> None:
    def script(peer: Peer) -> None:
        request = peer.request()
        peer.send(encode(Op.WATCH_EVENT, 0, 0, b"no-token-separator"))
        peer.reply(request, b"v")
        peer.request()

    server = fake(script)
    with (
        pyxs.Client(unix_socket_path=server.path, timeout=10) as c,
        pytest.raises(pyxs.ConnectionError),
    ):
        c.read(b"/a")


class Interrupting(UnixSocketConnection):
    """recv() raises KeyboardInterrupt once, as a signal handler could."""

    interrupt = False

    def recv(self, size=None):
        if self.interrupt:
            self.interrupt = False
            raise KeyboardInterrupt
        return super().recv(size)


@pytest.mark.realxs
def test_interrupted_reader_leaves_a_usable_client(real_xenstored, unique_path) -> None:
    connection = Interrupting(real_xenstored.socket_path)
    with pyxs.Client(router=pyxs.Router(connection)) as c:
        c[unique_path] = b"v"
        connection.interrupt = True
        with pytest.raises(KeyboardInterrupt):
            c.read(unique_path)
        # the abandoned reply is dropped when it arrives; nothing is stuck
        assert c.read(unique_path) == b"v"
        assert c.read(unique_path) == b"v"
        session = c.router._session
        assert session.slots == {} and not session.protocol.pending
        assert not session.read_lock.locked()


def test_connect_failure() -> None:
    with pytest.raises(pyxs.ConnectionError, match="nonexistent"):
        pyxs.Client(unix_socket_path="/nonexistent/socket").connect()
    with pytest.raises(pyxs.ConnectionError):
        pyxs.Client(xen_bus_path="/nonexistent/xenbus").connect()
    c = pyxs.Client(unix_socket_path="/nonexistent/socket")
    with pytest.raises(pyxs.ConnectionError, match="not connected"):
        c.read(b"/")
    m = c.monitor()
    with pytest.raises(pyxs.ConnectionError):
        m.next_event(0)
