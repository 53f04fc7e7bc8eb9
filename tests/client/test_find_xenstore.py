"""Client(), AsyncClient() and xs() with no arguments find XenStore as
libxenstore's ``xs_open`` does: the xenstored socket, else the XenBus device
(``$XENSTORED_PATH`` if set, else the OS's device path).

The device is a raw pty bridged to a real server (xenbus_standin.py); where
the OS's device path must be told apart from $XENSTORED_PATH, the function
naming it is pointed at the stand-in (no /dev/xen on this machine).
"""

from __future__ import annotations

import asyncio
import errno
import socket

import pytest
from xenbus_standin import XenBusStandIn

import pyxs
from pyxs.connection import UnixSocketConnection, XenBusConnection, default_connection
from pyxs.transports import discovery
from pyxs.transports.sync import Unreachable


@pytest.fixture
def device(xs_server):
    with XenBusStandIn(xs_server.socket_path) as standin:
        yield standin


@pytest.fixture
def guest_env(monkeypatch, tmp_path, device):
    """A guest: no xenstored socket, and the XenBus device at the OS's path."""
    monkeypatch.delenv("XENSTORED_PATH", raising=False)
    monkeypatch.setenv("XENSTORED_RUNDIR", str(tmp_path))  # no socket in it
    monkeypatch.setattr(discovery, "default_xenbus_path", lambda: device.device_path)
    return device


def test_client_in_a_guest_uses_the_device(guest_env, unique_path) -> None:
    c = pyxs.Client()
    assert isinstance(c.router.connection, XenBusConnection)
    assert c.router.connection.path == guest_env.device_path
    with c:
        c[unique_path] = b"from a guest"
        assert c[unique_path] == b"from a guest"


def test_xs_in_a_guest_uses_the_device(guest_env, unique_path) -> None:
    x = pyxs.xs()
    assert isinstance(x.client.router.connection, XenBusConnection)
    x.write("", unique_path.decode(), b"v")
    assert x.read("", unique_path.decode()) == b"v"
    x.watch(unique_path.decode(), "t")
    assert x.read_watch() == (unique_path.decode(), "t")
    x.close()


def test_async_client_in_a_guest_uses_the_device(guest_env, unique_path) -> None:
    async def main() -> bytes:
        async with pyxs.AsyncClient() as c:
            await c.write(unique_path, b"async guest")
            return await c.read(unique_path)

    assert asyncio.run(asyncio.wait_for(main(), 60)) == b"async guest"


def test_xenstored_path_naming_a_device(monkeypatch, device, unique_path) -> None:
    # xs_domain_dev() is $XENSTORED_PATH when set: a character device there
    # is used as the XenBus device.
    monkeypatch.setenv("XENSTORED_PATH", device.device_path)
    assert isinstance(default_connection(), XenBusConnection)
    with pyxs.Client() as c:
        c[unique_path] = b"dev"
    x = pyxs.xs()
    assert x.read("", unique_path.decode()) == b"dev"
    x.close()


def test_the_socket_comes_first(monkeypatch, xs_server, guest_env) -> None:
    monkeypatch.setenv("XENSTORED_PATH", xs_server.socket_path)
    assert isinstance(default_connection(), UnixSocketConnection)
    assert isinstance(pyxs.Client().router.connection, UnixSocketConnection)


def test_a_dead_socket_falls_back_to_the_device(monkeypatch, tmp_path, guest_env) -> None:
    # A socket file nobody listens on: xs_open's connect fails, the device is next.
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(tmp_path / "socket"))
    dead.close()
    connection = default_connection(connect=True)
    try:
        assert isinstance(connection, XenBusConnection) and connection.is_connected
    finally:
        connection.close()
    x = pyxs.xs()
    assert isinstance(x.client.router.connection, XenBusConnection)
    x.close()


def test_nothing_there(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("XENSTORED_PATH", raising=False)
    monkeypatch.setenv("XENSTORED_RUNDIR", str(tmp_path))
    monkeypatch.setattr(discovery, "default_xenbus_path", lambda: str(tmp_path / "bus"))
    c = pyxs.Client()  # chosen now, opened later: the socket, which says it is missing
    assert c.router.connection.path == str(tmp_path / "socket")
    with pytest.raises(pyxs.ConnectionError) as info:
        c.connect()
    assert info.value.errno == errno.ENOENT and str(tmp_path / "socket") in str(info.value)
    with pytest.raises(pyxs.ConnectionError) as both:
        default_connection(connect=True)
    assert both.value.errno == errno.ENOENT
    assert "socket" in str(both.value) and "bus" in str(both.value)
    # why each candidate failed, in xs_open's order (nothing was there)
    assert isinstance(both.value, Unreachable)
    assert [(path, transport) for path, transport, _ in both.value.attempts] == [
        (str(tmp_path / "socket"), None),
        (str(tmp_path / "bus"), None),
    ]
    assert [error.errno for _, _, error in both.value.attempts] == [errno.ENOENT] * 2
    with pytest.raises(RuntimeError) as xs_info:
        pyxs.xs()
    assert xs_info.value.args == (errno.ENOENT, "No such file or directory")
