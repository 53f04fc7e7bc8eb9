"""XenBusConnection over a character-device stand-in (a raw pty bridged to a
server, answering WATCH itself as Linux's xenbus driver does)."""

from __future__ import annotations

import threading

import pytest
from xenbus_standin import XenBusStandIn

import pyxs
from pyxs.connection import XenBusConnection


@pytest.fixture
def device(xs_server):
    with XenBusStandIn(xs_server.socket_path) as standin:
        yield standin


@pytest.fixture
def bus_client(device):
    with pyxs.Client(xen_bus_path=device.device_path, timeout=30) as c:
        yield c


def test_connection_class(device) -> None:
    c = pyxs.Client(xen_bus_path=device.device_path)
    assert isinstance(c.router.connection, XenBusConnection)
    assert repr(c) == f"Client(XenBusConnection({device.device_path!r}))"


def test_operations_over_the_device(bus_client, unique_path) -> None:
    c = bus_client
    c[unique_path + b"/a"] = b"x" * 3000
    assert c[unique_path + b"/a"] == b"x" * 3000
    c.mkdir(unique_path + b"/b")
    assert c.list(unique_path) == [b"a", b"b"]
    assert c.get_perms(unique_path) == [b"n0"]
    assert c.transact(lambda c: c.read(unique_path + b"/a")[:1]) == b"x"
    c.delete(unique_path)
    assert not c.exists(unique_path)


def test_watch_answered_by_the_device(device, bus_client, unique_path) -> None:
    with bus_client.monitor() as m:
        m.watch(unique_path, b"tok")
        assert device.watch_oks == 1 and device.events_before_ok == 1
        assert m.next_event(30) == (unique_path, b"tok")
        bus_client[unique_path + b"/x"] = b""
        assert m.next_event(30) == (unique_path + b"/x", b"tok")
        with pytest.raises(pyxs.ExistsError):
            m.watch(unique_path, b"tok")
        m.unwatch(unique_path, b"tok")
        assert device.watch_oks == 2
        bus_client[unique_path + b"/y"] = b""
        assert m.next_event(0.3) is None


def test_threads_and_a_monitor_over_the_device(bus_client, unique_path) -> None:
    with bus_client.monitor() as m:
        m.watch(unique_path, b"t")
        assert m.next_event(30) == (unique_path, b"t")
        got = []

        def listen() -> None:
            for event in m.wait(timeout=5):
                got.append(event)
                if len(got) == 80:
                    return

        listener = threading.Thread(target=listen)
        listener.start()
        errors = []

        def work(i: int) -> None:
            try:
                for n in range(20):
                    bus_client[unique_path + b"/%d" % i] = b"%d" % n
                    assert bus_client[unique_path + b"/%d" % i] == b"%d" % n
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        listener.join(30)
        assert errors == []
        assert len(got) == 80


def test_close_wakes_a_blocked_reader(device, unique_path) -> None:
    # A read of the device cannot be interrupted by close(): the reader
    # select()s on it together with the wake-up pair.
    c = pyxs.Client(xen_bus_path=device.device_path)
    c.connect()
    m = c.monitor()
    m.watch(unique_path, b"t")
    outcome = []
    waiting = threading.Event()

    def waiter() -> None:
        try:
            for event in m.wait():
                outcome.append(event)
                waiting.set()  # the watch's first event: it is in wait()
        except pyxs.ConnectionError as exc:
            outcome.append(exc)

    t = threading.Thread(target=waiter)
    t.start()
    assert waiting.wait(30)
    c.close()
    t.join(30)
    assert not t.is_alive()
    assert len(outcome) == 2 and outcome[0] == (unique_path, b"t")
    assert isinstance(outcome[1], pyxs.ConnectionError)


def test_device_gone(device, bus_client) -> None:
    assert bus_client.exists(b"/")
    device.close()
    with pytest.raises(pyxs.ConnectionError):
        bus_client.read(b"/")
