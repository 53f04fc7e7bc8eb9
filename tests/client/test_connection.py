"""Transports: default paths, the byte interface, pyxs 0.4's packet methods,
errors translated at the boundary, no work at import time."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

import pyxs
from pyxs.connection import (
    UnixSocketConnection,
    XenBusConnection,
    default_socket_path,
    default_xenbus_path,
)
from pyxs.protocol import HEADER, Op, Packet, encode
from pyxs.transports import discovery
from support import NON_DEVICES, make_non_device


def test_default_socket_path(monkeypatch) -> None:
    monkeypatch.delenv("XENSTORED_PATH", raising=False)
    monkeypatch.delenv("XENSTORED_RUNDIR", raising=False)
    assert default_socket_path() == "/var/run/xenstored/socket"
    monkeypatch.setenv("XENSTORED_RUNDIR", "/run/xs")
    assert default_socket_path() == "/run/xs/socket"
    monkeypatch.setenv("XENSTORED_PATH", "/some/socket")
    assert default_socket_path() == "/some/socket"
    monkeypatch.setenv("XENSTORED_PATH", "")  # empty counts as unset
    assert default_socket_path() == "/run/xs/socket"
    # resolved when the connection is made, not at import
    assert UnixSocketConnection().path == "/run/xs/socket"
    assert UnixSocketConnection("/explicit").path == "/explicit"


@pytest.mark.parametrize(
    ("platform", "dev_exists", "expected"),
    [
        ("linux", True, "/dev/xen/xenbus"),
        ("linux", False, "/proc/xen/xenbus"),
        ("netbsd10", False, "/kern/xen/xenbus"),
        ("freebsd14", False, "/dev/xen/xenstore"),
        ("sunos5", False, "/dev/xen/xenbus"),
    ],
)
def test_default_xenbus_path(monkeypatch, platform, dev_exists, expected) -> None:
    monkeypatch.setattr(discovery.sys, "platform", platform)
    monkeypatch.setattr(discovery.os.path, "exists", lambda p: dev_exists)
    assert default_xenbus_path() == expected
    assert XenBusConnection().path == expected


def test_reprs() -> None:
    assert repr(UnixSocketConnection("/s")) == "UnixSocketConnection('/s')"
    assert repr(XenBusConnection("/d")) == "XenBusConnection('/d')"


def test_byte_interface_and_packet_methods(xs_server) -> None:
    conn = UnixSocketConnection(xs_server.socket_path)
    assert not conn.is_connected
    with pytest.raises(pyxs.ConnectionError):
        conn.fileno()
    with pytest.raises(pyxs.ConnectionError):
        conn.send(b"x")
    with conn:
        conn.connect()  # open already: nothing happens
        assert conn.is_connected and conn.fileno() >= 0
        # pyxs 0.4: send(packet), recv() -> one packet
        conn.send(Packet(Op.GET_DOMAIN_PATH, 8, 0, b"3\0"))
        assert conn.recv() == Packet(Op.GET_DOMAIN_PATH, 8, 0, b"/local/domain/3\0")
        # the byte interface: recv(n) gives at most n bytes
        conn.send(encode(Op.GET_DOMAIN_PATH, 9, 0, b"4\0"))
        data = b""
        while len(data) < 16 + 16:
            chunk = conn.recv(5)
            assert 1 <= len(chunk) <= 5
            data += chunk
        assert HEADER.unpack(data[:16]) == (Op.GET_DOMAIN_PATH, 9, 0, 16)
        assert data[16:] == b"/local/domain/4\0"
        with pytest.raises(TypeError):
            conn.send("text")  # type: ignore[arg-type]
    assert not conn.is_connected
    conn.close()  # idempotent


def test_errors_become_connection_errors(tmp_path) -> None:
    with pytest.raises(pyxs.ConnectionError, match="error connecting to"):
        UnixSocketConnection(str(tmp_path / "none")).connect()
    with pytest.raises(pyxs.ConnectionError, match="error opening"):
        XenBusConnection(str(tmp_path / "none")).connect()
    with pytest.raises(pyxs.ConnectionError):
        XenBusConnection(str(tmp_path / "none")).recv(16)


def _connected_pair(tmp_path):
    """A UnixSocketConnection, connected, and the socket at its other end."""
    import socket

    path = str(tmp_path / "s")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(1)
    conn = UnixSocketConnection(path)
    conn.connect()
    peer, _ = listener.accept()
    listener.close()
    return conn, peer


def test_eof_is_a_connection_error(tmp_path) -> None:
    conn, peer = _connected_pair(tmp_path)
    peer.close()
    with pytest.raises(pyxs.ConnectionError, match="closed the connection"):
        conn.recv(16)
    conn.close()


def test_recv_due_reads_what_is_owed_and_what_else_is_there(tmp_path) -> None:
    """recv_due (the pyxs command's pipelined reads) waits for the bytes it is
    told are due and takes what else has arrived; at EOF it raises as recv."""
    conn, peer = _connected_pair(tmp_path)
    peer.sendall(b"a" * 40)
    peer.sendall(b"b" * 10)
    assert conn.recv_due(1 << 16, 32) == b"a" * 40 + b"b" * 10
    peer.sendall(b"c" * 8)
    assert conn.recv_due(1 << 16, 8) == b"c" * 8  # a header's worth or less: one recv
    peer.sendall(b"d" * 20)
    peer.close()
    assert conn.recv_due(1 << 16, 64) == b"d" * 20  # EOF cuts the wait short
    with pytest.raises(pyxs.ConnectionError, match="closed the connection"):
        conn.recv_due(1 << 16, 64)
    conn.close()
    with pytest.raises(pyxs.ConnectionError, match="not open"):
        conn.recv_due(1 << 16, 64)


def test_nothing_happens_at_import() -> None:
    script = """
import builtins, io, os, socket, sys
calls = []
real_socket, real_open, real_os_open = socket.socket, builtins.open, os.open
class Spy(real_socket):
    def __init__(self, *a, **k):
        calls.append(("socket", a))
        super().__init__(*a, **k)
socket.socket = Spy
builtins.open = lambda *a, **k: (calls.append(("open", a)), real_open(*a, **k))[1]
os.open = lambda *a, **k: (calls.append(("os.open", a)), real_os_open(*a, **k))[1]
import pyxs, pyxs.client, pyxs.connection, pyxs.compat
c = pyxs.Client()
assert calls == [], calls
import threading
assert threading.active_count() == 1
print("clean")
"""
    env_script = [sys.executable, "-c", script]
    result = subprocess.run(env_script, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "clean"


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("kind", NON_DEVICES)
def test_xenbus_refuses_what_is_not_a_device(tmp_path, kind) -> None:
    path = tmp_path / "xenbus"
    make_non_device(path, kind)
    before = _open_fds()
    conn = XenBusConnection(str(path))
    with pytest.raises(pyxs.ConnectionError, match=re.escape(repr(str(path)))):
        conn.connect()
    assert not conn.is_connected
    with pytest.raises(pyxs.ConnectionError, match=re.escape(repr(str(path)))):
        pyxs.Client(xen_bus_path=str(path)).connect()
    assert _open_fds() == before  # nothing left open
    if kind == "file":
        assert path.read_bytes() == b"keep me"  # and nothing written


def test_xenbus_takes_a_character_device() -> None:
    # A pty is a character device (the stand-in of tests/client/test_xenbus.py).
    master, slave = os.openpty()
    try:
        conn = XenBusConnection(os.ttyname(slave))
        conn.connect()
        assert conn.is_connected
        conn.close()
    finally:
        os.close(master)
        os.close(slave)


def test_xenbus_takes_the_proc_file_of_old_kernels() -> None:
    # Linux's xenfs exposes /proc/xen/xenbus as a regular file: a regular file
    # under /proc is accepted (opened here, never written).
    conn = XenBusConnection("/proc/self/comm")
    conn.connect()
    assert conn.is_connected
    conn.close()
