"""Every Client operation, against the embedded server and the real xenstored."""

from __future__ import annotations

import copy
import errno
import threading

import pytest
from client_support import connected_client, guest_clients

import pyxs
from pyxs import commands
from pyxs.exceptions import (
    ExistsError,
    InvalidArgumentError,
    NoEntryError,
    PermissionDeniedError,
    TransactionConflictError,
    XenStoreError,
)
from pyxs.paths import Permission


@pytest.fixture
def client(xs_server):
    yield from connected_client(xs_server)


@pytest.fixture
def guest_client(xs_server):
    yield from guest_clients(xs_server)


def test_repr_and_default_path(monkeypatch) -> None:
    monkeypatch.delenv("XENSTORED_PATH", raising=False)
    monkeypatch.delenv("XENSTORED_RUNDIR", raising=False)
    assert repr(pyxs.Client()) == "Client(UnixSocketConnection('/var/run/xenstored/socket'))"
    assert repr(pyxs.Client(xen_bus_path="/dev/xen/xenbus")) == (
        "Client(XenBusConnection('/dev/xen/xenbus'))"
    )
    monkeypatch.setenv("XENSTORED_RUNDIR", "/run/x")
    assert repr(pyxs.Client()) == "Client(UnixSocketConnection('/run/x/socket'))"
    monkeypatch.setenv("XENSTORED_PATH", "/elsewhere")
    assert repr(pyxs.Client()) == "Client(UnixSocketConnection('/elsewhere'))"
    # unix_socket_path wins over xen_bus_path, as in pyxs 0.4
    assert repr(pyxs.Client("/s", "/dev/x")) == "Client(UnixSocketConnection('/s'))"
    router = pyxs.Router(pyxs.client.XenBusConnection("/dev/x"))
    assert repr(router) == "Router(XenBusConnection('/dev/x'))"
    assert repr(pyxs.Client(router=router)) == "Client(XenBusConnection('/dev/x'))"


def test_read_write(client, unique_path) -> None:
    p = unique_path + b"/a"
    client.write(p, b"hello")
    assert client.read(p) == b"hello"
    client[p] = b""  # empty values are values
    assert client[p] == b""
    binary = bytes(range(256)) + b"\0\0"  # any bytes, trailing NULs kept
    client[p] = binary
    assert client[p] == binary
    client[p] = bytearray(b"ba")
    assert client[p] == b"ba"
    # str paths are accepted (ASCII)
    assert client.read(p.decode()) == b"ba"


def test_read_missing(client, unique_path) -> None:
    with pytest.raises(NoEntryError) as info:
        client.read(unique_path + b"/nope")
    # pyxs 0.4 code checks args[0]
    assert info.value.args[0] == errno.ENOENT
    assert isinstance(info.value, pyxs.PyXSError)
    assert client.read(unique_path + b"/nope", b"dflt") == b"dflt"
    with pytest.raises(NoEntryError):
        client[unique_path + b"/nope"]


def test_write_creates_parents_and_mkdir(client, unique_path) -> None:
    client[unique_path + b"/x/y/z"] = b"v"
    assert client[unique_path + b"/x/y"] == b""
    client.mkdir(unique_path + b"/x/y")  # an existing node keeps its value
    client[unique_path + b"/x"] = b"keep"
    client.mkdir(unique_path + b"/x")
    assert client[unique_path + b"/x"] == b"keep"
    client.mkdir(unique_path + b"/m/n")
    assert client[unique_path + b"/m/n"] == b""


def test_delete(client, unique_path) -> None:
    client[unique_path + b"/d/a/b"] = b"1"
    client[unique_path + b"/d/c"] = b"2"
    client.delete(unique_path + b"/d")
    assert not client.exists(unique_path + b"/d")
    assert not client.exists(unique_path + b"/d/a/b")
    client.delete(unique_path + b"/d")  # missing node, parent exists: fine
    with pytest.raises(NoEntryError):
        client.delete(unique_path + b"/nope/deeper")
    client[unique_path + b"/e"] = b""
    del client[unique_path + b"/e"]
    assert not client.exists(unique_path + b"/e")


def test_list_and_exists(client, unique_path) -> None:
    for name in (b"one", b"two", b"three"):
        client[unique_path + b"/" + name] = b""
    assert client.list(unique_path) == [b"one", b"two", b"three"]  # creation order
    assert client.list(unique_path + b"/one") == []
    assert client.exists(unique_path + b"/two")
    assert not client.exists(unique_path + b"/four")
    with pytest.raises(NoEntryError):
        client.list(unique_path + b"/four")


def test_exists_in_a_transaction_the_server_dropped(client, unique_path) -> None:
    # The server answers ENOENT to everything in a transaction it no longer
    # knows: exists() must not read that as "missing".
    client[unique_path + b"/here"] = b""
    client.transaction()
    assert client.exists(unique_path + b"/here")
    assert not client.exists(unique_path + b"/missing")  # alive: really missing
    copy.copy(client).reset_watches()  # drops every transaction of the connection
    with pytest.raises(NoEntryError):
        client.exists(unique_path + b"/missing")
    with pytest.raises(NoEntryError):
        client.exists(unique_path + b"/here")
    client.tx_id = 0
    assert client.exists(unique_path + b"/here")
    assert not client.exists(unique_path + b"/missing")


def test_list_longer_than_one_packet(client, unique_path) -> None:
    # 5.5 KB of names: DIRECTORY says E2BIG, DIRECTORY_PART reads it in parts.
    names = [b"child-%04d-" % i + b"x" * 40 for i in range(110)]
    client.transaction()
    for name in names:
        client[unique_path + b"/" + name] = b""
    assert client.commit()
    with pytest.raises(XenStoreError) as info:
        client.execute(commands.directory(unique_path))
    assert info.value.errno == errno.E2BIG
    assert client.list(unique_path) == names


def test_perms(client, unique_path) -> None:
    p = unique_path + b"/p"
    client[p] = b""
    assert client.get_perms(p) == [b"n0"]
    client.set_perms(p, [b"n0", b"r5", "w6", Permission("b", 7)])
    assert client.get_perms(p) == [b"n0", b"r5", b"w6", b"b7"]
    client[p + b"/child"] = b""  # inherits
    assert client.get_perms(p + b"/child") == [b"n0", b"r5", b"w6", b"b7"]
    with pytest.raises(pyxs.InvalidPermission):
        client.set_perms(p, [b"x0"])
    with pytest.raises(pyxs.InvalidPermission):
        client.set_perms(p, [])
    with pytest.raises(NoEntryError):
        client.get_perms(unique_path + b"/nope")


def test_walk(client, unique_path) -> None:
    client[unique_path + b"/a/b"] = b"1"
    client[unique_path + b"/a/c"] = b"2"
    client[unique_path + b"/d"] = b"3"
    assert list(client.walk(unique_path)) == [
        (unique_path, b"", [b"a", b"d"]),
        (unique_path + b"/a", b"", [b"b", b"c"]),
        (unique_path + b"/a/b", b"1", []),
        (unique_path + b"/a/c", b"2", []),
        (unique_path + b"/d", b"3", []),
    ]
    # bottom-up all the way down (pyxs 0.4 forgot topdown below the top)
    assert [p for p, _, _ in client.walk(unique_path, topdown=False)] == [
        unique_path + b"/a/b",
        unique_path + b"/a/c",
        unique_path + b"/a",
        unique_path + b"/d",
        unique_path,
    ]
    # pruning, as with os.walk
    seen = []
    for path, _, children in client.walk(unique_path):
        seen.append(path)
        if b"a" in children:
            children.remove(b"a")
    assert seen == [unique_path, unique_path + b"/d"]
    with pytest.raises(NoEntryError):
        list(client.walk(unique_path + b"/nope"))


def test_walk_skips_nodes_removed_meanwhile(client, unique_path) -> None:
    client[unique_path + b"/a/b"] = b"1"
    client[unique_path + b"/z"] = b"2"
    walked = []
    for path, _, _ in client.walk(unique_path):
        walked.append(path)
        if path == unique_path:
            client.delete(unique_path + b"/a")
    assert walked == [unique_path, unique_path + b"/z"]


def test_domain_ops(client, unique_domid) -> None:
    assert client.get_domain_path(5) == b"/local/domain/5"
    assert client.get_domain_path("7") == b"/local/domain/7"
    assert client.is_domain_introduced(0) is True
    assert client.is_domain_introduced(unique_domid) is False
    with pytest.raises(ValueError):
        client.introduce_domain(0, 1, 1)
    client.introduce_domain(unique_domid, 1, 4)
    assert client.is_domain_introduced(unique_domid) is True
    client.resume_domain(unique_domid)
    client.set_target(unique_domid, 0)
    client.release_domain(unique_domid)
    assert client.is_domain_introduced(unique_domid) is False
    with pytest.raises(NoEntryError):
        client.release_domain(unique_domid)
    with pytest.raises(NoEntryError):
        client.resume_domain(0x7FEF)
    with pytest.raises(InvalidArgumentError):
        client.release_domain(0)


def test_control(client) -> None:
    assert client.control(b"check") == b"OK"
    assert client.debug("print", "hello from pyxs") == b"OK"
    with pytest.raises(InvalidArgumentError):
        client.control(b"no-such-command")
    with pytest.raises(ValueError):
        client.control()


def test_transactions(client, unique_path) -> None:
    p = unique_path + b"/t"
    client[p] = b"0"
    tx = client.transaction()
    assert tx > 0 and client.tx_id == tx
    client[p] = b"1"
    client[unique_path + b"/new"] = b"n"
    with pyxs.Client(unix_socket_path=client.router.connection.path) as other:
        assert other[p] == b"0"  # isolated until commit
    with pytest.raises(pyxs.PyXSError) as info:
        client.transaction()
    assert info.value.args[0] == errno.EALREADY
    assert client.commit() is True
    assert client.tx_id == 0
    assert client[p] == b"1" and client[unique_path + b"/new"] == b"n"

    client.transaction()
    client[p] = b"2"
    client.rollback()
    assert client.tx_id == 0
    assert client[p] == b"1"


def test_commit_conflict_returns_false(client, unique_path) -> None:
    p = unique_path + b"/c"
    client[p] = b"0"
    client.transaction()
    client.read(p)
    with pyxs.Client(unix_socket_path=client.router.connection.path) as other:
        other[p] = b"changed"
    client[p] = b"mine"
    assert client.commit() is False
    assert client.tx_id == 0
    assert client[p] == b"changed"


def test_commit_without_transaction_raises(client) -> None:
    with pytest.raises(NoEntryError):
        client.commit()


def test_transact_retries_on_conflict(client, unique_path) -> None:
    p = unique_path + b"/counter"
    client[p] = b"0"
    calls = []

    def increment(c, path, *, step):
        value = int(c[path]) + step
        calls.append(value)
        if len(calls) < 3:  # somebody else gets in the way, twice
            with pyxs.Client(unix_socket_path=c.router.connection.path) as other:
                other[path] = b"%d" % (int(other[path]) + 10)
        c[path] = b"%d" % value
        return value

    assert client.transact(increment, p, step=1) == 21
    assert calls == [1, 11, 21]
    assert client[p] == b"21"
    assert client.tx_id == 0


def test_transact_gives_up(client, unique_path) -> None:
    p = unique_path + b"/busy"
    client[p] = b"0"

    def always_conflicts(c):
        c.read(p)
        with pyxs.Client(unix_socket_path=c.router.connection.path) as other:
            other[p] = b"x"
        c[p] = b"mine"

    with pytest.raises(TransactionConflictError) as info:
        client.transact(always_conflicts, retries=2)
    assert info.value.args[0] == errno.EAGAIN
    assert client[p] == b"x"
    assert client.tx_id == 0


def test_transact_rolls_back_on_error(client, unique_path) -> None:
    p = unique_path + b"/rb"

    def fails(c):
        c[p] = b"written"
        raise KeyError("boom")

    with pytest.raises(KeyError):
        client.transact(fails)
    assert not client.exists(p)
    assert client.tx_id == 0


def test_transaction_is_per_thread(client, unique_path) -> None:
    p = unique_path + b"/mine"
    client[p] = b""
    client[unique_path + b"-theirs"] = b""  # nothing the transaction touches
    client.transaction()
    client[p] = b"in-tx"
    seen = {}

    def other_thread() -> None:
        seen["tx_id"] = client.tx_id
        seen["value"] = client.read(p)  # not inside our transaction
        client[unique_path + b"-theirs"] = b"direct"

    t = threading.Thread(target=other_thread)
    t.start()
    t.join()
    assert seen == {"tx_id": 0, "value": b""}
    assert client.commit()
    assert client[p] == b"in-tx"
    assert client[unique_path + b"-theirs"] == b"direct"


def test_transaction_lost_with_its_connection(xs_server, unique_path) -> None:
    # Transaction ids are numbered per connection: after a reconnect, the old
    # id may well be another client's new transaction. Calls in the lost one
    # must fail, not land in that one (or outside any).
    c = pyxs.Client(unix_socket_path=xs_server.socket_path, timeout=30)
    c.connect()
    c[unique_path] = b""
    c.transaction()
    c.close()
    c.connect()
    other = copy.copy(c)  # same connection, a transaction of its own
    other.transaction()
    for call in (
        lambda: c.write(unique_path + b"/stale", b"x"),
        lambda: c.read(unique_path),
        lambda: c.exists(unique_path),
        lambda: c.execute(commands.read(unique_path)),
    ):
        with pytest.raises(pyxs.ConnectionError, match="lost with its connection"):
            call()
    with pytest.raises(pyxs.ConnectionError):
        c.rollback()
    assert c.tx_id == 0
    assert other.commit()
    assert c.list(unique_path) == []  # nothing of the stale calls landed
    assert c.transact(lambda t: t.exists(unique_path))  # a new one is fine
    c.close()


def test_context_manager_uncommitted_transaction(xs_server) -> None:
    c = pyxs.Client(unix_socket_path=xs_server.socket_path)
    with pytest.raises(pyxs.PyXSError, match="uncommitted transaction"), c:
        c.transaction()
    assert not c.router.is_connected
    # with an exception in the block, that exception wins
    with pytest.raises(KeyError), pyxs.Client(unix_socket_path=xs_server.socket_path) as c2:
        c2.transaction()
        raise KeyError


def test_execute_commands(client, unique_path) -> None:
    client.execute(commands.write(unique_path + b"/e", b"v"))
    assert client.execute(commands.read(unique_path + b"/e")) == b"v"
    assert client.execute(commands.list_children(unique_path)) == [b"e"]
    tx = client.transaction()
    client[unique_path + b"/e"] = b"tx"
    assert client.execute(commands.read(unique_path + b"/e"), tx_id=0) == b"v"
    assert client.execute(commands.read(unique_path + b"/e")) == b"tx"
    assert client.execute(commands.read(unique_path + b"/e"), tx_id=tx) == b"tx"
    client.rollback()


def test_local_validation(client) -> None:
    for bad in (b"", b"/a//b", b"/a/", b"/a b", b"/\xff", "/\u00e9"):
        with pytest.raises(pyxs.InvalidPath):
            client.read(bad)
    with pytest.raises(pyxs.InvalidPath):
        client.write(b"/a" * 2000, b"")
    with pytest.raises(pyxs.InvalidPayload):
        client.write(b"/big", b"x" * 4096)
    with pytest.raises(TypeError):
        client.write(b"/x", "str value")


def test_reset_watches(client, unique_path) -> None:
    with client.monitor() as m:
        m.watch(unique_path, b"t")
        assert next(m.wait(timeout=5)) == (unique_path, b"t")
        client.transaction()
        client.reset_watches()
        assert client.tx_id == 0
        assert m.watched == set()
        client[unique_path + b"/x"] = b""
        assert list(m.wait(timeout=0.3)) == []
    with pytest.raises(ExistsError), client.monitor() as m2:
        m2.watch(unique_path, b"t")
        m2.watch(unique_path, b"t")


def test_guest_permissions(client, guest_client, unique_path, unique_domid) -> None:
    client[unique_path + b"/secret"] = b"s"
    guest = guest_client(unique_domid)
    with pytest.raises(PermissionDeniedError) as info:
        guest.read(unique_path + b"/secret")
    assert info.value.args[0] == errno.EACCES
    with pytest.raises(PermissionDeniedError):
        guest.exists(unique_path + b"/secret")
    client.set_perms(unique_path + b"/secret", [b"n0", b"r%d" % unique_domid])
    assert guest.read(unique_path + b"/secret") == b"s"
    # relative paths are the guest's home
    client.mkdir(b"/local/domain/%d" % unique_domid)
    client.set_perms(b"/local/domain/%d" % unique_domid, [b"b%d" % unique_domid])
    guest.write(b"data/x", b"1")
    guest.transaction()  # a guest cannot read "/": still, missing is missing
    assert guest.exists(b"data/x")
    assert not guest.exists(b"data/nothing")
    guest.rollback()
    assert client[b"/local/domain/%d/data/x" % unique_domid] == b"1"
    assert guest.get_domain_path(unique_domid) == b"/local/domain/%d" % unique_domid
    with pytest.raises(PermissionDeniedError):
        guest.is_domain_introduced(0)


@pytest.mark.cpython  # mypy is in the test extra for CPython only: types are the same on PyPy
def test_both_clients_keep_precise_types(tmp_path) -> None:
    """The operations are written once (pyxs.operations), generic over their
    result types: mypy still sees what each client's methods give."""
    import mypy.api

    program = tmp_path / "uses.py"
    program.write_text(
        "from pyxs import Client\n"
        "from pyxs.aio import AsyncClient\n"
        "async def f(c: Client, a: AsyncClient) -> None:\n"
        "    reveal_type(c.read(b'/'))\n"
        "    reveal_type(c.list(b'/'))\n"
        "    reveal_type(c.exists(b'/'))\n"
        "    reveal_type(c.write(b'/', b''))\n"
        "    reveal_type(c.get_domain_path(1))\n"
        "    reveal_type(a.read(b'/'))\n"
        "    reveal_type(await a.read(b'/'))\n"
        "    reveal_type(await a.list(b'/'))\n"
        "    reveal_type(await a.is_domain_introduced(1))\n"
        "    async with a.transaction() as t:\n"
        "        reveal_type(await t.get_perms(b'/'))\n"
    )
    out, err, _ = mypy.api.run(
        ["--strict", "--no-error-summary", "--cache-dir", str(tmp_path / "cache"), str(program)]
    )
    marker = "Revealed type is "
    # (older mypy releases spell builtins out: "builtins.list[builtins.bytes]")
    revealed = [
        line.split(marker)[1].replace("builtins.", "")
        for line in out.splitlines()
        if marker in line
    ]
    assert revealed == [
        '"bytes"',
        '"list[bytes]"',
        '"bool"',
        '"None"',
        '"bytes"',
        '"pyxs.aio.ReplyFuture[bytes]"',
        '"bytes"',
        '"list[bytes]"',
        '"bool"',
        '"list[bytes]"',
    ], out + err
    assert "error:" not in out, out
