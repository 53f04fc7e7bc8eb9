"""Many threads, one client: requests in flight together, events routed to
their monitors whatever else is going on, no thread ever stuck."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from client_support import connected_client

import pyxs

THREADS = 8
ROUNDS = 60


@pytest.fixture
def client(xs_server):
    yield from connected_client(xs_server)


def run_threads(target, count=THREADS):
    errors: list[BaseException] = []

    def guarded(i: int) -> None:
        try:
            target(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a thread is stuck"
    return errors


def test_threads_share_one_client(client, unique_path) -> None:
    def work(i: int) -> None:
        base = unique_path + b"/%d" % i
        for n in range(ROUNDS):
            client[base] = b"%d-%d" % (i, n)
            assert client[base] == b"%d-%d" % (i, n)
        assert client.list(unique_path)  # mixed with the others

    assert run_threads(work) == []
    assert sorted(client.list(unique_path)) == sorted(b"%d" % i for i in range(THREADS))
    # every reply was matched, nothing left behind
    session = client.router._session
    assert session.slots == {} and not session.protocol.pending
    assert session.followers == set() and not session.read_lock.locked()
    assert session.outbox == [] and not session.write_lock.locked()


def test_requests_really_overlap(client, unique_path, monkeypatch) -> None:
    # With one reader at a time and a follower sleeping on its own event,
    # at some point several requests must be outstanding at once. Counted as
    # each request is added: a thread sampling the count missed the overlaps
    # now and then on a loaded machine.
    peak = [0]

    protocol = client.router._session.protocol
    request = type(protocol).request

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = request(self, *args, **kwargs)
        if self is protocol:
            peak[0] = max(peak[0], len(self.pending))
        return result

    monkeypatch.setattr(type(protocol), "request", counted)
    assert run_threads(lambda i: [client.exists(b"/") for _ in range(ROUNDS)]) == []
    assert peak[0] >= 2


def test_thread_local_transactions(client, unique_path) -> None:
    for i in range(THREADS):
        client[unique_path + b"/%d" % i] = b"0"

    def work(i: int) -> None:
        p = unique_path + b"/%d" % i
        for _ in range(10):

            def bump(c):
                c[p] = b"%d" % (int(c[p]) + 1)

            client.transact(bump, retries=50)

    assert run_threads(work) == []
    for i in range(THREADS):
        assert client[unique_path + b"/%d" % i] == b"10"


def test_events_while_requests_in_flight(client, unique_path) -> None:
    with client.monitor() as m:
        m.watch(unique_path + b"/w", b"w")
        assert m.next_event(30) == (unique_path + b"/w", b"w")
        received = []

        def listen() -> None:
            for event in m.wait(timeout=5):
                received.append(event)
                if len(received) == ROUNDS:
                    return

        listener = threading.Thread(target=listen)
        listener.start()

        def work(i: int) -> None:
            for n in range(ROUNDS):
                if i == 0:
                    client[unique_path + b"/w/%d" % n] = b""
                else:
                    client.exists(unique_path + b"/other")

        assert run_threads(work, 4) == []
        listener.join(30)
        assert not listener.is_alive()
        assert received == [(unique_path + b"/w/%d" % n, b"w") for n in range(ROUNDS)]


def test_monitor_waiting_does_not_block_requests(client, unique_path) -> None:
    # A thread blocked in wait() is the reader; other threads' replies still
    # get through it, and it still gets its events.
    with client.monitor() as m:
        m.watch(unique_path, b"t")
        assert m.next_event(30) is not None
        got = []
        listener = threading.Thread(target=lambda: got.append(m.next_event(30)))
        listener.start()
        read_lock = client.router._session.read_lock
        deadline = time.monotonic() + 30  # a hang guard
        while not read_lock.locked() and time.monotonic() < deadline:
            time.sleep(0.001)  # until the listener is the reader, blocked in wait
        assert read_lock.locked()
        for i in range(50):
            client.write(unique_path + b"-x", b"%d" % i)
        client[unique_path + b"/ping"] = b""
        listener.join(30)
        assert got == [(unique_path + b"/ping", b"t")]


def test_close_fails_every_waiter_promptly(xs_server, unique_path) -> None:
    c = pyxs.Client(unix_socket_path=xs_server.socket_path)
    c.connect()
    outcome: list[object] = []
    calling = threading.Barrier(THREADS + 1)

    def work(i: int) -> None:
        try:
            c.exists(b"/")
            calling.wait(30)  # every thread has had a reply: they are all calling
            while True:
                c.exists(b"/")
        except pyxs.ConnectionError as exc:
            outcome.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    calling.wait(30)
    c.close()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    assert len(outcome) == THREADS
    with pytest.raises(pyxs.ConnectionError):
        c.read(b"/")
    # and the client can connect again
    c.connect()
    assert c.exists(b"/")
    c.close()
    c.close()  # idempotent


def test_shared_router_between_clients(xs_server, unique_path) -> None:
    router = pyxs.Router(pyxs.client.UnixSocketConnection(xs_server.socket_path))
    a = pyxs.Client(router=router)
    b = pyxs.Client(router=router)
    a.connect()
    b.connect()  # already open: nothing happens
    a.transaction()
    a[unique_path] = b"a"
    assert b.tx_id == 0
    assert not b.exists(unique_path)
    assert a.commit()
    assert b[unique_path] == b"a"
    b.close()
    assert not router.is_connected
    with pytest.raises(pyxs.ConnectionError):
        a.read(unique_path)


class _ScriptedWriteLock:
    """A session's write lock that plays one interleaving on cue.

    The first try (``acquire(False)``) of the thread being scripted fails, as
    if another thread were writing: its request is queued in the outbox. Its
    second try (in the flush that follows) succeeds, then that thread stops
    right there, write lock held, until ``resume`` is set. Every blocking
    acquire sets ``waited``.
    """

    def __init__(self, lock, scripted: threading.Thread) -> None:
        self.lock = lock
        self.scripted = scripted
        self.tries = 0
        self.paused = threading.Event()
        self.resume = threading.Event()
        self.waited = threading.Event()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if blocking:
            self.waited.set()
            return self.lock.acquire(blocking, timeout)
        if threading.current_thread() is not self.scripted:
            return self.lock.acquire(False)
        self.tries += 1
        if self.tries == 1:
            return False
        if not self.lock.acquire(False):
            return False
        if self.tries == 2:
            self.paused.set()
            self.resume.wait(30)
        return True

    def release(self) -> None:
        self.lock.release()

    def locked(self) -> bool:
        return self.lock.locked()


def test_reconnect_while_a_writer_flushes(xs_server, unique_path) -> None:
    # A thread that has taken the write lock to flush queued requests, and a
    # thread reconnecting meanwhile: connect() must not stall on it, and the
    # old connection's request must fail, never go out on the new one.
    c = pyxs.Client(unix_socket_path=xs_server.socket_path, timeout=30)
    c.connect()
    session = c.router._session
    outcome: list[BaseException] = []

    def write_old() -> None:
        try:
            c.write(unique_path + b"/old", b"old")
        except BaseException as exc:
            outcome.append(exc)

    writer = threading.Thread(target=write_old)
    lock = session.write_lock = _ScriptedWriteLock(session.write_lock, writer)
    writer.start()
    try:
        assert lock.paused.wait(30)  # the request is queued; the writer holds the lock
        c.close()
        took: list[float] = []

        def reconnect() -> None:
            start = time.monotonic()
            c.connect()
            took.append(time.monotonic() - start)

        connector = threading.Thread(target=reconnect)
        connector.start()
        assert lock.waited.wait(30)  # connect() waits for the old writer
        lock.resume.set()  # the writer goes on with its flush
        connector.join(30)
        writer.join(30)
        assert not connector.is_alive() and not writer.is_alive()
        assert took and took[0] < 2.0, took
        assert len(outcome) == 1 and isinstance(outcome[0], pyxs.ConnectionError), outcome
        assert c.router.is_connected
        assert not c.exists(unique_path + b"/old")
        c.write(unique_path + b"/new", b"new")  # the new connection is sound
        assert c.list(unique_path) == [b"new"]
    finally:
        lock.resume.set()
        c.close()


def test_close_just_before_a_reader_polls(xs_server, monkeypatch) -> None:
    # The connection fails while a wakeable reader (a monitor) is making its
    # wake-up pair: it must notice, not sleep in select() on a descriptor
    # that is closed, or by now the pair's own.
    c = pyxs.Client(unix_socket_path=xs_server.socket_path)
    c.connect()
    router = c.router
    make_waker = router._make_waker

    def fail_first(session):
        router._fail(session, pyxs.ConnectionError("closed meanwhile"))
        return make_waker(session)

    monkeypatch.setattr(router, "_make_waker", fail_first)
    m = c.monitor()
    start = time.monotonic()
    with pytest.raises(pyxs.ConnectionError, match="closed meanwhile"):
        m.next_event(timeout=60)
    assert time.monotonic() - start < 30  # noticed, not slept until the timeout
    c.close()


def test_a_reader_of_last_resort_delivers_events(xs_server, unique_path) -> None:
    # Router.read_until_closed (compat's fileno thread): with nobody calling,
    # a thread of its own reads, and events reach the monitor as they come.
    delivered = threading.Event()

    class Flagging(pyxs.Monitor):
        def _deliver(self, event: Any) -> None:
            super()._deliver(event)
            delivered.set()

    router = pyxs.Router(pyxs.client.UnixSocketConnection(xs_server.socket_path))
    client = pyxs.Client(router=router)
    client.connect()
    other = pyxs.Client(unix_socket_path=xs_server.socket_path)
    other.connect()
    try:
        m = Flagging(client)
        m.watch(unique_path, b"tok")
        assert m.next_event(5) == (unique_path, b"tok")  # the initial event
        delivered.clear()
        reader = threading.Thread(target=router.read_until_closed)
        reader.start()
        other[unique_path] = b"v"
        assert delivered.wait(30), "the reader thread did not deliver the event"
        assert m.next_event(0) == (unique_path, b"tok")
        client.close()
        reader.join(30)
        assert not reader.is_alive(), "read_until_closed outlived the connection"
    finally:
        other.close()
        client.close()


def test_router_session_is_new_after_each_start(xs_server) -> None:
    router = pyxs.Router(pyxs.client.UnixSocketConnection(xs_server.socket_path))
    router.start()
    first = router.session
    router.start()  # open already: the same session
    assert router.session is first
    router.terminate()
    assert router.session is first  # failed, not replaced until start()
    router.start()
    assert router.session is not first
    router.terminate()
