"""Monitor: watches, events, wait(timeout), wake(), close(); both servers."""

from __future__ import annotations

import threading
import time

import pytest
from client_support import connected_client, guest_clients

import pyxs
from pyxs import Event
from pyxs.exceptions import NoEntryError


@pytest.fixture
def client(xs_server):
    yield from connected_client(xs_server)


@pytest.fixture
def guest_client(xs_server):
    yield from guest_clients(xs_server)


def test_watch_initial_event_and_changes(client, unique_path) -> None:
    with client.monitor() as m:
        m.watch(unique_path, b"tok")
        assert m.watched == {unique_path}
        events = m.wait()
        assert next(events) == Event(unique_path, b"tok")  # the initial event
        client[unique_path + b"/a"] = b"1"
        assert next(events) == (unique_path + b"/a", b"tok")
        client.set_perms(unique_path + b"/a", [b"n0", b"r3"])
        assert next(events) == (unique_path + b"/a", b"tok")
        client.delete(unique_path + b"/a")
        assert next(events) == (unique_path + b"/a", b"tok")
        assert m.next_event(0.2) is None


def test_wait_timeout_ends_iteration(client, unique_path) -> None:
    with client.monitor() as m:
        m.watch(unique_path, b"t")
        assert m.next_event(30) == (unique_path, b"t")  # (30 s: a hang guard)
        assert list(m.wait(timeout=0.3)) == []
        start = time.monotonic()
        assert list(m.wait(timeout=0.2)) == []
        assert 0.15 < time.monotonic() - start < 30  # (30: a hang guard)
        assert m.next_event(timeout=0) is None


def test_events_routed_by_token(client, unique_path) -> None:
    a, b = client.monitor(), client.monitor()
    with a, b:
        a.watch(unique_path + b"/a", b"ta")
        b.watch(unique_path + b"/b", b"tb")
        assert a.next_event(30) == (unique_path + b"/a", b"ta")
        assert b.next_event(30) == (unique_path + b"/b", b"tb")
        client[unique_path + b"/b/x"] = b""
        client[unique_path + b"/a/x"] = b""
        assert a.next_event(30) == (unique_path + b"/a/x", b"ta")
        assert b.next_event(30) == (unique_path + b"/b/x", b"tb")
        assert a.next_event(0) is None and b.next_event(0) is None


def test_one_token_on_two_paths_delivers_each_event_once(client, unique_path) -> None:
    with client.monitor() as m:
        m.watch(unique_path + b"/a", b"tok")
        m.watch(unique_path + b"/b", b"tok")
        assert m.next_event(30) == (unique_path + b"/a", b"tok")
        assert m.next_event(30) == (unique_path + b"/b", b"tok")
        client[unique_path + b"/a/x"] = b""
        assert m.next_event(30) == (unique_path + b"/a/x", b"tok")
        assert m.next_event(0.2) is None


def test_unwatch_and_unwatched_events(client, unique_path) -> None:
    with client.monitor() as m:
        m.watch(unique_path, b"t")
        m.watch(unique_path + b"-2", b"t")
        assert sorted([m.next_event(30), m.next_event(30)]) == sorted(
            [(unique_path, b"t"), (unique_path + b"-2", b"t")]
        )
        m.unwatch(unique_path + b"-2", b"t")
        assert m.watched == {unique_path}
        with pytest.raises(NoEntryError):
            m.unwatch(unique_path + b"-2", b"t")
        # An event for a path no longer watched, with a token still in use:
        # dropped by wait(), yielded by wait(unwatched=True).
        m._events.append(Event(unique_path + b"-2", b"t"))
        assert list(m.wait(timeout=0.1)) == []
        m._events.append(Event(unique_path + b"-2", b"t"))
        assert list(m.wait(unwatched=True, timeout=0.1)) == [(unique_path + b"-2", b"t")]
        client[unique_path + b"-2"] = b"not watched any more"
        client[unique_path] = b"watched"
        assert m.next_event(30) == (unique_path, b"t")  # (30 s: a hang guard)
        assert list(m.wait(timeout=0.3)) == []


def test_close_unwatches(client, unique_path) -> None:
    m = client.monitor()
    m.watch(unique_path, b"t")
    m.close()
    assert m.watched == set()
    assert client.router._monitors == {}
    # the watch is gone on the server: the same watch can be added again
    with client.monitor() as m2:
        m2.watch(unique_path, b"t")
        assert m2.next_event(30) == (unique_path, b"t")
    assert m.next_event(0) is None  # closed: wait ends at once


def test_relative_watch(client, unique_path) -> None:
    rel = b"test-rel-" + unique_path.rsplit(b"/", 1)[1]
    with client.monitor() as m:
        m.watch(rel, b"r")
        assert m.next_event(30) == (rel, b"r")
        client[b"/local/domain/0/" + rel + b"/x"] = b""
        assert m.next_event(30) == (rel + b"/x", b"r")  # (30 s: a hang guard)
        assert list(m.wait(timeout=0.3)) == []
    client.delete(b"/local/domain/0/" + rel)


def test_transaction_events_fire_on_commit(client, unique_path) -> None:
    client[unique_path] = b""
    with client.monitor() as m:
        m.watch(unique_path, b"t")
        assert m.next_event(30) == (unique_path, b"t")
        client.transaction()
        client[unique_path + b"/x"] = b"1"
        assert m.next_event(0.2) is None
        assert client.commit()
        assert m.next_event(30) == (unique_path + b"/x", b"t")
        client.transaction()
        client[unique_path + b"/y"] = b"1"
        client.rollback()
        assert m.next_event(0.3) is None


def test_special_watches(client, unique_domid) -> None:
    with client.monitor() as m:
        m.watch(b"@introduceDomain", b"intro")
        m.watch(b"@releaseDomain", b"rel")
        initial = {m.next_event(30), m.next_event(30)}
        assert initial == {(b"@introduceDomain", b"intro"), (b"@releaseDomain", b"rel")}
        client.introduce_domain(unique_domid, 1, 4)
        assert m.next_event(30) == (b"@introduceDomain", b"intro")  # (30 s: a hang guard)
        assert list(m.wait(timeout=0.3)) == []
        client.release_domain(unique_domid)
        assert m.next_event(30) == (b"@releaseDomain", b"rel")  # (30 s: a hang guard)
        assert list(m.wait(timeout=0.3)) == []


def test_release_domain_on_domain_death(xs_server, client, unique_domid) -> None:
    xs_server.introduce_guest(unique_domid)
    with client.monitor() as m:
        m.watch(b"@releaseDomain", b"rel")
        assert m.next_event(30) == (b"@releaseDomain", b"rel")
        xs_server.set_domain_state(unique_domid, "dying")
        assert m.next_event(30) == (b"@releaseDomain", b"rel")
    assert client.is_domain_introduced(unique_domid) is False


def test_wake_from_another_thread(client, unique_path) -> None:
    with client.monitor() as m:
        m.watch(unique_path, b"t")
        assert m.next_event(30) is not None
        got = []
        seen = threading.Event()

        def waiter() -> None:
            for event in m.wait():  # no timeout: only wake() ends it
                got.append(event)
                seen.set()

        t = threading.Thread(target=waiter)
        t.start()
        client[unique_path] = b"x"  # an event comes to the waiting thread
        assert seen.wait(30)  # (a hang guard)
        m.wake()
        t.join(30)
        assert not t.is_alive()
        assert got == [(unique_path, b"t")]
        # a wake() with nobody waiting ends the next wait at once
        m.wake()
        assert list(m.wait()) == []


def test_close_from_another_thread_ends_wait(client, unique_path) -> None:
    m = client.monitor()
    m.watch(unique_path, b"t")
    done = threading.Event()
    waiting = threading.Event()

    def waiter() -> None:
        for _ in m.wait():
            waiting.set()  # the watch's first event: it is in wait()
        done.set()

    t = threading.Thread(target=waiter)
    t.start()
    assert waiting.wait(30)
    m.close()
    assert done.wait(30)
    t.join(30)


def test_client_close_fails_blocked_wait(xs_server, unique_path) -> None:
    c = pyxs.Client(unix_socket_path=xs_server.socket_path)
    c.connect()
    m = c.monitor()
    m.watch(unique_path, b"t")
    errors = []
    waiting = threading.Event()

    def waiter() -> None:
        try:
            for _ in m.wait():
                waiting.set()  # the watch's first event: it is in wait()
        except pyxs.ConnectionError as exc:
            errors.append(exc)

    t = threading.Thread(target=waiter)
    t.start()
    assert waiting.wait(30)
    c.close()
    t.join(30)
    assert not t.is_alive()
    assert len(errors) == 1
    m.close()  # over a closed connection: just forgets
    assert m.watched == set()


def test_monitor_shortcut(xs_server, unique_path) -> None:
    with pyxs.monitor(unix_socket_path=xs_server.socket_path) as m:
        assert isinstance(m, pyxs.Monitor)
        m.watch(unique_path, "str-token")
        assert next(m.wait()) == (unique_path, b"str-token")
        router = m.client.router
    assert not router.is_connected


def test_many_events_in_order(client, unique_path) -> None:
    with client.monitor() as m:
        m.watch(unique_path, b"t")
        assert m.next_event(30) == (unique_path, b"t")
        for i in range(200):
            client[unique_path + b"/%d" % i] = b""
        got = [m.next_event(30) for _ in range(200)]
        assert got == [(unique_path + b"/%d" % i, b"t") for i in range(200)]


def test_guest_monitor_relative_paths(client, guest_client, unique_domid) -> None:
    home = b"/local/domain/%d" % unique_domid
    guest = guest_client(unique_domid)  # introduced: it may own nodes now
    client.mkdir(home)
    client.set_perms(home, [b"b%d" % unique_domid])
    with guest.monitor() as m:
        m.watch(b"data", b"g")
        assert m.next_event(30) == (b"data", b"g")
        client[home + b"/data/x"] = b"1"
        assert m.next_event(30) == (b"data/x", b"g")
        guest[b"data/y"] = b"2"
        assert m.next_event(30) == (b"data/y", b"g")


def test_domain_specific_special_path(client) -> None:
    with client.monitor() as m:
        m.watch(b"@releaseDomain/5", b"r5")
        assert m.watched == {b"@releaseDomain/5"}
        assert m.next_event(30) == (b"@releaseDomain/5", b"r5")
