"""Every public name of pyxs 0.4 exists and does what it did.

NAMES is written from pyxs 0.4.1's source (its modules' ``__all__`` and every
name without an underscore in them); each gets a check against a real server
(embedded and real xenstored). Names that are gone or behave differently are
listed in docs/migrating.rst ("Where 0.4 code needs a change"); they are in
NOT_KEPT here, so the list is complete either way.
"""

from __future__ import annotations

import errno
import os
import queue
import threading
import warnings
from typing import Any, Callable

import pytest

import pyxs

#: (module, name) of every public name in pyxs 0.4.1.
NAMES = [
    ("pyxs", "Router"),
    ("pyxs", "Client"),
    ("pyxs", "Monitor"),
    ("pyxs", "PyXSError"),
    ("pyxs", "ConnectionError"),
    ("pyxs", "UnexpectedPacket"),
    ("pyxs", "InvalidOperation"),
    ("pyxs", "InvalidPath"),
    ("pyxs", "InvalidPayload"),
    ("pyxs", "xs"),
    ("pyxs", "Error"),
    ("pyxs", "monitor"),
    ("pyxs.client", "Router"),
    ("pyxs.client", "RVar"),
    ("pyxs.client", "Client"),
    ("pyxs.client", "Monitor"),
    ("pyxs.client.Router", "connection"),
    ("pyxs.client.Router", "is_connected"),
    ("pyxs.client.Router", "subscribe"),
    ("pyxs.client.Router", "unsubscribe"),
    ("pyxs.client.Router", "send"),
    ("pyxs.client.Router", "start"),
    ("pyxs.client.Router", "terminate"),
    ("pyxs.client.RVar", "get"),
    ("pyxs.client.RVar", "set"),
    ("pyxs.client.Client", "SU"),
    ("pyxs.client.Client", "router"),
    ("pyxs.client.Client", "tx_id"),
    ("pyxs.client.Client", "execute_command"),
    ("pyxs.client.Client", "ack"),
    ("pyxs.client.Client", "connect"),
    ("pyxs.client.Client", "close"),
    ("pyxs.client.Client", "read"),
    ("pyxs.client.Client", "write"),
    ("pyxs.client.Client", "mkdir"),
    ("pyxs.client.Client", "delete"),
    ("pyxs.client.Client", "list"),
    ("pyxs.client.Client", "exists"),
    ("pyxs.client.Client", "get_perms"),
    ("pyxs.client.Client", "set_perms"),
    ("pyxs.client.Client", "walk"),
    ("pyxs.client.Client", "get_domain_path"),
    ("pyxs.client.Client", "is_domain_introduced"),
    ("pyxs.client.Client", "introduce_domain"),
    ("pyxs.client.Client", "release_domain"),
    ("pyxs.client.Client", "resume_domain"),
    ("pyxs.client.Client", "set_target"),
    ("pyxs.client.Client", "transaction"),
    ("pyxs.client.Client", "rollback"),
    ("pyxs.client.Client", "commit"),
    ("pyxs.client.Client", "monitor"),
    ("pyxs.client.Monitor", "client"),
    ("pyxs.client.Monitor", "events"),
    ("pyxs.client.Monitor", "unwatch_queue"),
    ("pyxs.client.Monitor", "watched"),
    ("pyxs.client.Monitor", "close"),
    ("pyxs.client.Monitor", "watch"),
    ("pyxs.client.Monitor", "unwatch"),
    ("pyxs.client.Monitor", "wait"),
    ("pyxs.connection", "PacketConnection"),
    ("pyxs.connection", "UnixSocketConnection"),
    ("pyxs.connection", "XenBusConnection"),
    ("pyxs.connection.PacketConnection", "path"),
    ("pyxs.connection.PacketConnection", "is_connected"),
    ("pyxs.connection.PacketConnection", "fileno"),
    ("pyxs.connection.PacketConnection", "connect"),
    ("pyxs.connection.PacketConnection", "close"),
    ("pyxs.connection.PacketConnection", "send"),
    ("pyxs.connection.PacketConnection", "recv"),
    ("pyxs.exceptions", "PyXSError"),
    ("pyxs.exceptions", "InvalidOperation"),
    ("pyxs.exceptions", "InvalidPayload"),
    ("pyxs.exceptions", "InvalidPath"),
    ("pyxs.exceptions", "InvalidPermission"),
    ("pyxs.exceptions", "ConnectionError"),
    ("pyxs.exceptions", "UnexpectedPacket"),
    ("pyxs.helpers", "check_path"),
    ("pyxs.helpers", "check_watch_path"),
    ("pyxs.helpers", "check_perms"),
    ("pyxs.helpers", "error"),
    ("pyxs._internal", "NUL"),
    ("pyxs._internal", "Event"),
    ("pyxs._internal", "Op"),
    ("pyxs._internal", "Operations"),
    ("pyxs._internal", "Packet"),
    ("pyxs._internal", "next_rq_id"),
    ("pyxs._compat", "xs"),
    ("pyxs._compat", "Error"),
]

#: 0.4's public names that are not kept, each with why (docs/migrating.rst).
NOT_KEPT = {
    ("pyxs.client.Router", "thread"): "no router thread: callers read in turn",
    ("pyxs.client.Router", "r_terminator"): "the router thread's wake-up pair",
    ("pyxs.client.Router", "w_terminator"): "the router thread's wake-up pair",
    ("pyxs.client.Router", "rvars"): "the router thread's reply table",
    ("pyxs.client.Router", "monitors"): "the router thread's subscriptions",
    ("pyxs.client.Router", "send_lock"): "the router thread's send lock",
}


@pytest.mark.parametrize("module, name", NAMES, ids=[f"{m}.{n}" for m, n in NAMES])
def test_every_04_name_exists(module, name) -> None:
    import importlib

    parts = module.split(".")
    owner: Any = None
    for i in range(len(parts), 0, -1):
        try:
            owner = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            owner = getattr(owner, attr)
        break
    if isinstance(owner, type):
        # an attribute of instances (set in __init__) or of the class
        assert name in dir(owner) or name in INSTANCE_ATTRIBUTES.get(owner.__name__, ()), name
    else:
        assert hasattr(owner, name)
    assert (module, name) in BEHAVIOUR, f"no behaviour check for {module}.{name}"


INSTANCE_ATTRIBUTES = {
    "Router": ("connection",),
    "Client": ("router",),
    "Monitor": ("client", "unwatch_queue"),
    "PacketConnection": ("path",),
}


def test_the_not_kept_are_not_claimed() -> None:
    for module, name in NOT_KEPT:
        assert (module, name) not in NAMES


# -- behaviour ------------------------------------------------------------------

BEHAVIOUR: dict[tuple, Callable[..., None]] = {}


def checks(*names: tuple) -> Callable[[Callable[..., None]], Callable[..., None]]:
    def register(fn: Callable[..., None]) -> Callable[..., None]:
        for name in names:
            BEHAVIOUR[name] = fn
        return fn

    return register


def test_every_name_has_its_check() -> None:
    assert set(BEHAVIOUR) == set(NAMES)


@checks(
    ("pyxs", "Client"),
    ("pyxs.client", "Client"),
    ("pyxs.client.Client", "router"),
    ("pyxs.client.Client", "connect"),
    ("pyxs.client.Client", "close"),
    ("pyxs.client.Client", "read"),
    ("pyxs.client.Client", "write"),
    ("pyxs.client.Client", "mkdir"),
    ("pyxs.client.Client", "delete"),
    ("pyxs.client.Client", "list"),
    ("pyxs.client.Client", "exists"),
    ("pyxs.client.Client", "get_perms"),
    ("pyxs.client.Client", "set_perms"),
    ("pyxs.client.Client", "walk"),
    ("pyxs.client.Client", "tx_id"),
    ("pyxs.client.Client", "transaction"),
    ("pyxs.client.Client", "rollback"),
    ("pyxs.client.Client", "commit"),
    ("pyxs", "PyXSError"),
    ("pyxs.exceptions", "PyXSError"),
)
def check_client_04_style(xs_server, unique_path) -> None:
    p = unique_path
    c = pyxs.Client(unix_socket_path=xs_server.socket_path)
    assert isinstance(c.router, pyxs.Router)
    c.connect()
    c[p + b"/a"] = b"1"
    c.write(p + b"/b", b"2")
    c.mkdir(p + b"/d")
    assert c[p + b"/a"] == b"1" and c.read(p + b"/nope", b"dflt") == b"dflt"
    assert c.list(p) == [b"a", b"b", b"d"] and c.exists(p + b"/b")
    c.delete(p + b"/b")
    del c[p + b"/d"]
    assert not c.exists(p + b"/b")
    c.set_perms(p + b"/a", [b"n0", b"r5"])
    assert c.get_perms(p + b"/a") == [b"n0", b"r5"]
    assert [w[0] for w in c.walk(p)] == [p, p + b"/a"]
    assert c.tx_id == 0
    c.transaction()
    assert c.tx_id
    c[p + b"/t"] = b"x"
    c.rollback()
    assert c.tx_id == 0 and not c.exists(p + b"/t")
    c.transaction()
    c[p + b"/t"] = b"y"
    assert c.commit() is True
    with pytest.raises(pyxs.PyXSError) as info:
        c.read(p + b"/missing")
    assert info.value.args == (errno.ENOENT, os.strerror(errno.ENOENT))
    c.close()
    with pytest.raises(pyxs.ConnectionError):
        c.read(p)


@checks(
    ("pyxs.client.Client", "get_domain_path"),
    ("pyxs.client.Client", "is_domain_introduced"),
    ("pyxs.client.Client", "introduce_domain"),
    ("pyxs.client.Client", "release_domain"),
    ("pyxs.client.Client", "resume_domain"),
    ("pyxs.client.Client", "set_target"),
)
def check_domains(xs_server, unique_domid) -> None:
    with pyxs.Client(unix_socket_path=xs_server.socket_path) as c:
        assert c.get_domain_path(5) == b"/local/domain/5"
        assert c.is_domain_introduced(0) is True
        with pytest.raises(ValueError):
            c.introduce_domain(0, 1, 1)  # as 0.4
        c.introduce_domain(unique_domid, unique_domid, 1)
        assert c.is_domain_introduced(unique_domid)
        c.set_target(unique_domid, 0)
        c.resume_domain(unique_domid)
        c.release_domain(unique_domid)
        assert not c.is_domain_introduced(unique_domid)


@checks(("pyxs.client.Client", "SU"))
def check_su(xs_server) -> None:
    with pytest.deprecated_call(match="Client.SU"):
        su = pyxs.Client.SU
    assert su is os.path.exists("/proc/xen/capabilities") and su in (True, False)


@checks(("pyxs.client.Client", "execute_command"), ("pyxs.client.Client", "ack"))
def check_execute_command(xs_server, unique_path) -> None:
    from pyxs._internal import NUL, Op

    with pyxs.Client(unix_socket_path=xs_server.socket_path) as c:
        with pytest.deprecated_call(match=r"Client.execute_command\(\).*Client.execute\(\)"):
            c.execute_command(Op.WRITE, unique_path + NUL, b"v\0\0")
        with pytest.deprecated_call(match=r"Client.execute_command\(\)"):
            assert c.execute_command(Op.READ, unique_path + NUL) == b"v"  # NULs stripped
        with pytest.deprecated_call(), pytest.raises(pyxs.NoEntryError):
            c.execute_command(Op.READ, unique_path + b"/nope" + NUL)
        with pytest.deprecated_call(), pytest.raises(ValueError):
            c.execute_command(Op.WRITE, unique_path + NUL, b"\xff")  # 7-bit only, as 0.4
        with pytest.deprecated_call(match=r"Client.ack\(\)"):
            c.ack(Op.MKDIR, unique_path + b"/m" + NUL)
        assert c.exists(unique_path + b"/m")
        c.transaction()
        with pytest.deprecated_call():
            c.execute_command(Op.WRITE, unique_path + b"/tx" + NUL, b"in")
        assert c.commit()
        assert c[unique_path + b"/tx"] == b"in"


@checks(
    ("pyxs", "Monitor"),
    ("pyxs.client", "Monitor"),
    ("pyxs.client.Client", "monitor"),
    ("pyxs.client.Monitor", "client"),
    ("pyxs.client.Monitor", "unwatch_queue"),
    ("pyxs.client.Monitor", "watched"),
    ("pyxs.client.Monitor", "close"),
    ("pyxs.client.Monitor", "watch"),
    ("pyxs.client.Monitor", "unwatch"),
    ("pyxs.client.Monitor", "wait"),
    ("pyxs.client.Monitor", "events"),
    ("pyxs._internal", "Event"),
)
def check_monitor(xs_server, unique_path) -> None:
    from pyxs._internal import Event

    with pyxs.Client(unix_socket_path=xs_server.socket_path) as c:
        m = c.monitor()
        assert isinstance(m, pyxs.Monitor) and m.client.router is c.router
        m.watch(unique_path, b"tok")
        assert m.unwatch_queue == {(unique_path, b"tok")} and m.watched == {unique_path}
        assert next(m.wait()) == Event(unique_path, b"tok")
        c[unique_path + b"/x"] = b""
        with pytest.deprecated_call(match=r"Monitor.events.*Monitor.next_event\(\)"):
            events = m.events
        assert events.get(timeout=30) == (unique_path + b"/x", b"tok")
        assert events.empty() and events.qsize() == 0
        with pytest.raises(queue.Empty):
            events.get_nowait()
        c[unique_path + b"/y"] = b""
        assert events.get() == (unique_path + b"/y", b"tok")
        m.unwatch(unique_path, b"tok")
        assert not m.watched
        m.watch(unique_path, b"tok2")
        m.close()
        assert not m.unwatch_queue


@checks(("pyxs", "monitor"))
def check_monitor_shortcut(xs_server, unique_path) -> None:
    with pyxs.monitor(unix_socket_path=xs_server.socket_path) as m:
        m.watch(unique_path, b"t")
        assert next(m.wait()) == (unique_path, b"t")


@checks(
    ("pyxs", "Router"),
    ("pyxs.client", "Router"),
    ("pyxs.client.Router", "connection"),
    ("pyxs.client.Router", "is_connected"),
    ("pyxs.client.Router", "subscribe"),
    ("pyxs.client.Router", "unsubscribe"),
    ("pyxs.client.Router", "start"),
    ("pyxs.client.Router", "terminate"),
    ("pyxs.client.Router", "send"),
    ("pyxs.client", "RVar"),
    ("pyxs.client.RVar", "get"),
    ("pyxs.client.RVar", "set"),
    ("pyxs._internal", "Packet"),
    ("pyxs._internal", "NUL"),
    ("pyxs._internal", "Op"),
    ("pyxs._internal", "Operations"),
    ("pyxs._internal", "next_rq_id"),
    ("pyxs.connection", "UnixSocketConnection"),
)
def check_router(xs_server, unique_path) -> None:
    from pyxs._internal import NUL, Op, Operations, Packet, next_rq_id
    from pyxs.client import RVar
    from pyxs.connection import UnixSocketConnection

    router = pyxs.Router(UnixSocketConnection(xs_server.socket_path))
    assert isinstance(router.connection, UnixSocketConnection) and not router.is_connected
    router.start()
    assert router.is_connected
    with pyxs.Client(router=router) as c:
        m = c.monitor()
        router.subscribe(b"manual", m)
        c.execute(pyxs.commands.watch(unique_path, b"manual"))
        assert m.next_event(30) == (unique_path, b"manual")
        router.unsubscribe(b"manual", m)
        with pytest.deprecated_call(match="next_rq_id"):
            rq_id = next_rq_id()
        with pytest.deprecated_call(match=r"Router.send\(\)"):
            rvar = router.send(Packet(Op.GET_DOMAIN_PATH, b"7" + NUL, rq_id))
        assert isinstance(rvar, RVar)
        reply = rvar.get()
        assert (reply.op, reply.req_id, reply.payload) == (
            Op.GET_DOMAIN_PATH,
            rq_id,
            b"/local/domain/7\0",
        )
        assert Operations is Op
    router.terminate()
    assert not router.is_connected
    box = RVar()
    threading.Timer(0, box.set, (b"x",)).start()
    assert box.get() == b"x"


@checks(
    ("pyxs.connection", "PacketConnection"),
    ("pyxs.connection.PacketConnection", "path"),
    ("pyxs.connection.PacketConnection", "is_connected"),
    ("pyxs.connection.PacketConnection", "fileno"),
    ("pyxs.connection.PacketConnection", "connect"),
    ("pyxs.connection.PacketConnection", "close"),
    ("pyxs.connection.PacketConnection", "send"),
    ("pyxs.connection.PacketConnection", "recv"),
    ("pyxs.connection", "XenBusConnection"),
)
def check_connections(xs_server) -> None:
    from pyxs._internal import NUL, Op, Packet
    from pyxs.connection import PacketConnection, UnixSocketConnection, XenBusConnection

    conn = UnixSocketConnection(xs_server.socket_path)
    assert isinstance(conn, PacketConnection) and conn.path == xs_server.socket_path
    assert not conn.is_connected
    conn.connect()
    assert conn.is_connected and isinstance(conn.fileno(), int)
    conn.send(Packet(Op.GET_DOMAIN_PATH, b"3" + NUL, 9))
    assert conn.recv().payload == b"/local/domain/3\0"
    conn.close(silent=False)
    assert not conn.is_connected
    assert issubclass(XenBusConnection, PacketConnection)
    with pytest.raises(pyxs.ConnectionError):
        XenBusConnection("/nonexistent/xenbus").connect()


@checks(
    ("pyxs", "ConnectionError"),
    ("pyxs", "UnexpectedPacket"),
    ("pyxs", "InvalidOperation"),
    ("pyxs", "InvalidPath"),
    ("pyxs", "InvalidPayload"),
    ("pyxs.exceptions", "InvalidOperation"),
    ("pyxs.exceptions", "InvalidPayload"),
    ("pyxs.exceptions", "InvalidPath"),
    ("pyxs.exceptions", "InvalidPermission"),
    ("pyxs.exceptions", "ConnectionError"),
    ("pyxs.exceptions", "UnexpectedPacket"),
    ("pyxs.helpers", "check_path"),
    ("pyxs.helpers", "check_watch_path"),
    ("pyxs.helpers", "check_perms"),
    ("pyxs.helpers", "error"),
)
def check_exceptions_and_helpers(xs_server) -> None:
    from pyxs._internal import Op, Packet
    from pyxs.helpers import check_path, check_perms, check_watch_path, error

    for exc in (pyxs.InvalidOperation, pyxs.InvalidPath, pyxs.InvalidPayload):
        assert issubclass(exc, ValueError) and issubclass(exc, pyxs.PyXSError)
    assert issubclass(pyxs.exceptions.InvalidPermission, ValueError)
    assert issubclass(pyxs.UnexpectedPacket, pyxs.ConnectionError)
    with pytest.raises(pyxs.InvalidOperation):
        Packet(99, b"", 0)
    with pytest.raises(pyxs.InvalidPayload):
        Packet(Op.WRITE, b"x" * 4097, 0)
    assert check_path(b"/a/b") == b"/a/b"
    with pytest.raises(pyxs.InvalidPath):
        check_path(b"/a/")
    assert check_watch_path(b"@introduceDomain") == b"@introduceDomain"
    assert check_perms([]) == [] and check_perms([b"b7", b"w999999"]) == [b"b7", b"w999999"]
    with pytest.raises(pyxs.exceptions.InvalidPermission):
        check_perms([b"q1"])
    assert error(2).args == (2, os.strerror(2)) == error(b"ENOENT").args
    with pytest.raises(pyxs.ConnectionError):
        pyxs.Client(unix_socket_path="/nonexistent/socket").connect()


@checks(("pyxs", "xs"), ("pyxs", "Error"), ("pyxs._compat", "xs"), ("pyxs._compat", "Error"))
def check_xs(xs_server, unique_path) -> None:
    from pyxs._compat import Error, xs

    assert (xs, Error) == (pyxs.xs, pyxs.Error)
    handle = xs(unix_socket_path=xs_server.socket_path)
    path = unique_path.decode()
    handle.write("", path, b"v")
    assert handle.read("", path) == b"v"
    with pytest.raises(Error):
        handle.write("", "bad path", b"")
    handle.close()


@pytest.mark.parametrize("check", sorted(set(BEHAVIOUR.values()), key=lambda f: f.__name__))
def test_behaves_as_in_04(check, xs_server, request) -> None:
    import inspect

    kwargs = {name: request.getfixturevalue(name) for name in inspect.signature(check).parameters}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a deprecated name must be checked with deprecated_call
        check(**kwargs)
