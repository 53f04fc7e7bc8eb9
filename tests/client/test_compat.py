"""``pyxs.xs``: the xen.lowlevel.xs interface.

The same script of calls (xs_scenario.py) runs with Xen's own binding (the
real ``xen.lowlevel.xs`` from the Xen 4.17 packages, over libxenstore) and
with ``pyxs.xs``, against the same server; the transcripts must match.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from xs_scenario import scenario

import pyxs
from pyxs import compat
from realxs import run_binding_script

HERE = Path(__file__).parent


@pytest.mark.realxs  # xen.lowlevel.xs from the Xen 4.17 packages
def test_same_transcript_as_xen_lowlevel_xs(xs_server, unique_path, monkeypatch) -> None:
    base = unique_path.decode()
    expected = run_binding_script(
        HERE / "xs_scenario.py", xs_server.socket_path, base + "-libxs", str(0x7000)
    )
    monkeypatch.setenv("XENSTORED_PATH", xs_server.socket_path)
    got = json.loads(json.dumps(scenario(compat, base + "-pyxs", 0x7001)))
    # Transaction ids are counted per connection: both runs see the same.
    assert len(got) == len(expected)
    for mine, theirs in zip(got, expected):
        assert mine == theirs


def test_errors_are_pyxs_errors_and_runtime_errors(xs_server, monkeypatch) -> None:
    monkeypatch.setenv("XENSTORED_PATH", xs_server.socket_path)
    x = pyxs.xs()
    with pytest.raises(pyxs.NoEntryError) as info:
        x.get_permissions("", "/no/such/node")
    assert isinstance(info.value, RuntimeError)
    assert isinstance(info.value, pyxs.Error)  # pyxs 0.4's name for the base
    assert info.value.args == (2, "No such file or directory")
    assert info.value.errno == 2
    with pytest.raises(RuntimeError) as info2:
        x.read("", "bad path")
    assert info2.value.args[0] == 22
    x.close()


def test_constructor_and_repr(xs_server) -> None:
    x = pyxs.xs(unix_socket_path=xs_server.socket_path)
    assert repr(x) == f"xs(UnixSocketConnection({xs_server.socket_path!r}))"
    x.close()
    with pytest.raises(RuntimeError) as info:
        pyxs.xs(unix_socket_path="/nonexistent/socket")
    assert isinstance(info.value, pyxs.ConnectionError)


def test_transaction_handles(xs_server, unique_path) -> None:
    x = pyxs.xs(unix_socket_path=xs_server.socket_path)
    path = unique_path.decode()
    handles = [x.transaction_start() for _ in range(12)]
    # hex, upper case, as xs.c's "%lX"
    assert all(isinstance(h, str) and h == f"{int(h, 16):X}" for h in handles)
    assert any(int(h, 16) >= 10 for h in handles)
    for h in handles:
        assert x.transaction_end(h, abort=1) is True
    t = x.transaction_start()
    x.write(t, path, b"v")
    assert x.read("", path) is None
    assert x.read(t.lower(), path) == b"v"  # parsed as strtoul(t, NULL, 16)
    assert x.read("0x" + t, path) == b"v"
    assert x.transaction_end(transaction=t) is True
    assert x.read("", path) == b"v"
    x.close()


def test_watch_tokens_keep_identity_and_threads(xs_server, unique_path) -> None:
    import threading

    x = pyxs.xs(unix_socket_path=xs_server.socket_path)
    path = unique_path.decode()
    tokens = [object(), ("a", 1), "plain"]
    for i, token in enumerate(tokens):
        x.watch(f"{path}/{i}", token)
    initial = [x.read_watch() for _ in tokens]
    assert sorted(p for p, _ in initial) == [f"{path}/{i}" for i in range(3)]
    for p, token in initial:
        assert token is tokens[int(p.rsplit("/", 1)[1])]
    got = []
    reader = threading.Thread(target=lambda: got.append(x.read_watch()))
    reader.start()
    x.write("", f"{path}/1/child", b"")  # requests while read_watch blocks
    reader.join(30)
    assert got == [(f"{path}/1/child", tokens[1])]
    assert got[0][1] is tokens[1]
    x.close()


# -- pyxs 0.4's module names ---------------------------------------------------


def test_old_module_names_import() -> None:
    from pyxs._compat import Error, xs
    from pyxs._internal import NUL, Event, Op, Operations, Packet
    from pyxs.client import Client, Monitor, Router
    from pyxs.connection import PacketConnection, UnixSocketConnection, XenBusConnection
    from pyxs.exceptions import (
        ConnectionError,
        InvalidOperation,
        InvalidPath,
        InvalidPayload,
        InvalidPermission,
        PyXSError,
        UnexpectedPacket,
    )
    from pyxs.helpers import check_path, check_perms, check_watch_path, error

    assert (xs, Error) == (pyxs.xs, pyxs.PyXSError)
    assert (Client, Monitor, Router) == (pyxs.Client, pyxs.Monitor, pyxs.Router)
    assert Op is Operations is pyxs.Op and NUL == b"\0"
    assert Event is pyxs.Event and Event(b"/a", b"t") == (b"/a", b"t")
    assert issubclass(UnixSocketConnection, PacketConnection)
    assert issubclass(XenBusConnection, PacketConnection)
    for exc in (ConnectionError, InvalidOperation, InvalidPath, InvalidPayload, InvalidPermission):
        assert issubclass(exc, PyXSError) and exc is getattr(pyxs.exceptions, exc.__name__)
    assert issubclass(UnexpectedPacket, ConnectionError)
    # the helpers check as 0.4's did, with today's rules
    assert check_path(b"/local/domain/0") == b"/local/domain/0"
    assert check_watch_path(b"@releaseDomain") == b"@releaseDomain"
    assert check_perms([b"n0", b"r5"]) == [b"n0", b"r5"]
    with pytest.raises(InvalidPath):
        check_path(b"/a//b")
    with pytest.raises(InvalidPermission):
        check_perms([b"x5"])
    assert error(22).args == (22, os.strerror(22)) == error(b"EINVAL").args
    assert isinstance(error(b"ENOENT"), pyxs.NoEntryError)
    assert isinstance(Packet, type)


def test_old_packet_class(xs_server) -> None:
    from pyxs._internal import NUL, Op, Packet
    from pyxs.exceptions import InvalidOperation, InvalidPayload

    # 0.4's argument order: op, payload, rq_id, tx_id
    packet = Packet(Op.READ, b"/local" + NUL, 7)
    assert (packet.op, packet.rq_id, packet.tx_id, packet.size) == (Op.READ, 7, 0, 7)
    assert isinstance(packet, pyxs.protocol.Packet) and packet.req_id == 7
    assert Packet(Op.READ, b"/", 1, 5).tx_id == 5
    with pytest.raises(InvalidOperation):
        Packet(-1, b"", 0)
    with pytest.raises(InvalidPayload):
        Packet(Op.WRITE, b"x" * 4097, 0)
    # and a connection sends it as it sent 0.4's packets
    with pyxs.connection.UnixSocketConnection(xs_server.socket_path) as conn:
        conn.send(Packet(Op.GET_DOMAIN_PATH, b"3" + NUL, 9))
        reply = conn.recv()
    assert (reply.op, reply.req_id, reply.payload) == (Op.GET_DOMAIN_PATH, 9, b"/local/domain/3\0")
