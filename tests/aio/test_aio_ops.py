"""Every operation of AsyncClient, against the embedded server and the real xenstored."""

from __future__ import annotations

import asyncio
import errno
import sys
import threading
import time

import pytest
from aio_support import run, settle

import pyxs
import pyxs.aio
from pyxs import commands
from pyxs.aio import AsyncClient, AsyncMonitor, AsyncTransaction
from pyxs.exceptions import (
    ConnectionError,
    ExistsError,
    InvalidPath,
    InvalidPermission,
    NoEntryError,
    PyXSError,
    TransactionConflictError,
)
from pyxs.paths import Permission
from pyxs.protocol import Decoder


def test_public_names() -> None:
    assert pyxs.AsyncClient is AsyncClient
    assert pyxs.aio.AsyncClient is AsyncClient
    assert {"AsyncClient", "AsyncMonitor", "AsyncTransaction", "Event"} <= set(pyxs.aio.__all__)


def test_read_write_mkdir_delete(xs_server, unique_path) -> None:
    async def main() -> None:
        async with AsyncClient(xs_server.socket_path) as c:
            assert c.connected
            await c.write(unique_path + b"/a", b"hello\0world")
            assert await c.read(unique_path + b"/a") == b"hello\0world"
            await c.write(unique_path + b"/empty", b"")
            assert await c.read(unique_path + b"/empty") == b""
            await c.write(unique_path.decode() + "/str", bytearray(b"x"))
            assert await c.execute(commands.read(unique_path + b"/str")) == b"x"
            assert b"str" in await c.execute(commands.list_children(unique_path))
            assert await c.read(unique_path.decode() + "/str") == b"x"

            with pytest.raises(NoEntryError) as info:
                await c.read(unique_path + b"/missing")
            assert info.value.args[0] == errno.ENOENT
            assert await c.read(unique_path + b"/missing", b"dflt") == b"dflt"
            assert await c.read(unique_path + b"/a", b"dflt") == b"hello\0world"

            await c.mkdir(unique_path + b"/d/e")
            assert await c.read(unique_path + b"/d/e") == b""
            await c.mkdir(unique_path + b"/a")  # existing: value kept
            assert await c.read(unique_path + b"/a") == b"hello\0world"

            assert await c.exists(unique_path + b"/d")
            await c.delete(unique_path + b"/d")
            assert not await c.exists(unique_path + b"/d")
            await c.delete(unique_path + b"/d")  # missing, parent exists: fine
            with pytest.raises(NoEntryError):
                await c.delete(unique_path + b"/nope/deeper")

            with pytest.raises(InvalidPath):
                await c.read(b"/bad//path")
            with pytest.raises(TypeError):
                await c.write(unique_path + b"/a", "not bytes")  # type: ignore[arg-type]
        assert not c.connected

    run(main)


def test_list_and_large_directories(xs_server, unique_path) -> None:
    async def main() -> None:
        async with AsyncClient(xs_server.socket_path) as c:
            names = [b"child-%04d-%s" % (i, b"x" * 40) for i in range(120)]  # > 4096 bytes
            await asyncio.gather(*(c.write(unique_path + b"/" + n, b"") for n in names))
            assert await c.list(unique_path) == names  # DIRECTORY_PART fallback
            assert await c.list(unique_path + b"/" + names[0]) == []
            with pytest.raises(NoEntryError):
                await c.list(unique_path + b"/missing")

    run(main)


def test_permissions(xs_server, unique_path) -> None:
    async def main() -> None:
        async with AsyncClient(xs_server.socket_path) as c:
            node = unique_path + b"/p"
            await c.write(node, b"v")
            assert (await c.get_perms(node))[0] == b"n0"
            await c.set_perms(node, [b"n0", b"r5", "w7"])
            assert await c.get_perms(node) == [b"n0", b"r5", b"w7"]
            await c.set_perms(node, [Permission("b", 0)])
            assert await c.get_perms(node) == [b"b0"]
            with pytest.raises(InvalidPermission):
                await c.set_perms(node, [b"x1"])
            with pytest.raises(NoEntryError):
                await c.get_perms(unique_path + b"/missing")

    run(main)


def test_walk(xs_server, unique_path) -> None:
    async def main() -> None:
        async with AsyncClient(xs_server.socket_path) as c:
            await c.write(unique_path + b"/a/b", b"1")
            await c.write(unique_path + b"/c", b"2")
            top = [n async for n in c.walk(unique_path)]
            assert top == [
                (unique_path, b"", [b"a", b"c"]),
                (unique_path + b"/a", b"", [b"b"]),
                (unique_path + b"/a/b", b"1", []),
                (unique_path + b"/c", b"2", []),
            ]
            pruned = []
            async for path, _, children in c.walk(unique_path):
                pruned.append(path)
                children[:] = [n for n in children if n != b"a"]
            assert pruned == [unique_path, unique_path + b"/c"]
            with pytest.raises(NoEntryError):
                [n async for n in c.walk(unique_path + b"/missing")]
            bottom = [n[0] async for n in c.walk(unique_path, topdown=False)]
            assert bottom == [
                unique_path + b"/a/b",
                unique_path + b"/a",
                unique_path + b"/c",
                unique_path,
            ]

    run(main)


def test_domains_and_control(xs_server, unique_domid) -> None:
    async def main() -> None:
        async with AsyncClient(xs_server.socket_path) as c:
            domid, target = unique_domid, unique_domid + 1000
            assert await c.get_domain_path(domid) == b"/local/domain/%d" % domid
            assert await c.get_domain_path(str(domid)) == b"/local/domain/%d" % domid
            with pytest.raises(ValueError):
                await c.introduce_domain(0, 1, 7)
            assert await c.is_domain_introduced(0)
            assert not await c.is_domain_introduced(domid)
            await c.introduce_domain(domid, 1, 7)
            assert await c.is_domain_introduced(domid)
            await c.introduce_domain(target, 1, 8)
            await c.set_target(domid, target)
            await c.resume_domain(domid)
            await c.release_domain(domid)
            await c.release_domain(target)
            assert not await c.is_domain_introduced(domid)
            with pytest.raises(NoEntryError):
                await c.release_domain(domid)
            assert await c.control(b"print", b"hello-from-aio") == b"OK"
            assert await c.debug(b"check") == b"OK"
            assert b"print" in await c.control("help")
            with pytest.raises(ValueError):
                await c.control()

    run(main)


def test_transactions(xs_server, unique_path) -> None:
    async def main() -> None:
        node = unique_path + b"/t"
        async with AsyncClient(xs_server.socket_path) as c:
            await c.write(node, b"0")
            async with c.transaction() as t:
                assert isinstance(t, AsyncTransaction) and t.tx_id
                await t.write(node, b"1")
                await t.mkdir(unique_path + b"/t2")
                assert await t.read(node) == b"1"
                assert await c.read(node) == b"0"  # isolated until commit
                assert await t.list(unique_path) == [b"t", b"t2"]
                assert await t.exists(unique_path + b"/t2")
                assert await t.get_perms(node) == [b"n0"]
                await t.set_perms(node, [b"n0", b"r3"])
                assert [n[0] async for n in t.walk(unique_path)][-1] == unique_path + b"/t2"
            assert await c.read(node) == b"1"
            assert await c.get_perms(node) == [b"n0", b"r3"]

            # The body raises: rolled back, the error propagates.
            with pytest.raises(RuntimeError):
                async with c.transaction() as t:
                    await t.delete(node)
                    raise RuntimeError("boom")
            assert await c.read(node) == b"1"
            with pytest.raises(PyXSError):
                await t.read(node)  # ended

            # Explicit form: t = await c.transaction(); commit/rollback.
            t = await c.transaction()
            await t.write(node, b"2")
            await t.rollback()
            assert await c.read(node) == b"1"
            t = await c.transaction()
            await t.write(node, b"3")
            assert await t.commit() is True
            assert await c.read(node) == b"3"
            with pytest.raises(PyXSError):
                await t.commit()
            with pytest.raises(PyXSError):
                await c.transaction().read(node)  # not started
            t = await c.transaction()
            await t.write(node, b"4")
            await c.write(node, b"5")
            assert await t.commit() is False  # a conflict, as the sync commit() says
            assert await c.read(node) == b"5"

            # Conflict: EAGAIN surfaces as TransactionConflictError.
            with pytest.raises(TransactionConflictError) as info:
                async with c.transaction() as t:
                    await t.read(node)
                    await t.write(node, b"mine")
                    await c.write(node, b"theirs")  # outside the transaction
            assert info.value.args[0] == errno.EAGAIN
            assert await c.read(node) == b"theirs"
            await settle(c)

    run(main)


def test_exists_in_a_transaction_the_server_dropped(xs_server, unique_path) -> None:
    # The server answers ENOENT to everything in a transaction it no longer
    # knows: exists() must not read that as "missing" (as the sync client).
    async def main() -> None:
        async with AsyncClient(xs_server.socket_path) as c:
            await c.write(unique_path + b"/here", b"")
            t = await c.transaction()
            assert await t.exists(unique_path + b"/here")
            assert not await t.exists(unique_path + b"/missing")  # alive: really missing
            await c.reset_watches()  # drops every transaction of the connection
            with pytest.raises(NoEntryError):
                await t.exists(unique_path + b"/missing")
            with pytest.raises(NoEntryError):
                await t.exists(unique_path + b"/here")
            with pytest.raises(NoEntryError):
                await t.rollback()
            assert await c.exists(unique_path + b"/here")  # outside: plain answers
            assert not await c.exists(unique_path + b"/missing")
            await settle(c)

    run(main)


def test_exists_in_a_guest_transaction(xs_server, unique_path, unique_domid) -> None:
    # A guest cannot read "/" (the check of an ENOENT): missing is still missing.
    async def main() -> None:
        home = b"/local/domain/%d" % unique_domid
        guest_socket = xs_server.introduce_guest(unique_domid)
        async with AsyncClient(xs_server.socket_path) as c:
            await c.mkdir(home)
            await c.set_perms(home, [b"b%d" % unique_domid])
            async with AsyncClient(guest_socket) as guest:
                await guest.write(b"data/x", b"1")
                async with guest.transaction() as t:
                    assert await t.exists(b"data/x")
                    assert not await t.exists(b"data/nothing")
                assert await guest.read(b"data/x") == b"1"
            await c.delete(home)

    run(main)


def test_transaction_lost_with_its_connection(xs_server, unique_path) -> None:
    # Transaction ids are numbered per connection: after a reconnect the old
    # id names a new transaction of the new connection. Calls in the lost
    # one must fail, not land in that one (or outside any).
    async def main() -> None:
        node = unique_path + b"/n"
        c = AsyncClient(xs_server.socket_path)

        async def lost_and_other() -> tuple[AsyncTransaction, AsyncTransaction]:
            await c.close()
            await c.connect()
            lost = await c.transaction()
            await c.close()
            with pytest.raises(ConnectionError, match="lost with its connection"):
                await lost.read(node)
            await c.connect()
            other = await c.transaction()
            assert other.tx_id == lost.tx_id  # the hazard is real on this server
            return lost, other

        await c.connect()
        await c.write(node, b"0")
        t, other = await lost_and_other()
        assert "lost" in repr(t)
        for call in (
            lambda: t.write(unique_path + b"/stale", b"x"),
            lambda: t.read(node),
            lambda: t.read(node, b"default"),
            lambda: t.exists(node),
            lambda: t.list(unique_path),
            lambda: t.mkdir(unique_path + b"/stale"),
            lambda: t.delete(node),
            lambda: t.set_perms(node, [b"n0", b"r3"]),
            lambda: t.execute(commands.read(node)),
        ):
            with pytest.raises(ConnectionError, match="lost with its connection"):
                await call()
        with pytest.raises(ConnectionError, match="lost with its connection"):
            await t.rollback()
        with pytest.raises(PyXSError, match="ended"):
            await t.commit()
        await other.write(node, b"other")
        assert await other.commit()
        assert await c.list(unique_path) == [b"n"]  # nothing of the stale calls landed
        assert await c.read(node) == b"other"

        # An error in an ``async with`` block sends no abort: it would abort `other`.
        lost, other = await lost_and_other()
        with pytest.raises(RuntimeError):
            async with lost:
                raise RuntimeError("boom")
        await other.write(unique_path + b"/two", b"")
        assert await other.commit()

        # A normal exit raises: its commit would commit `other`.
        lost, other = await lost_and_other()
        with pytest.raises(ConnectionError, match="lost with its connection"):
            async with lost:
                pass
        await other.write(unique_path + b"/three", b"")
        assert await other.commit()

        assert await c.list(unique_path) == [b"n", b"two", b"three"]
        assert await c.transact(lambda t: t.exists(node))  # a new one is fine
        await settle(c)
        await c.close()

    run(main)


def test_transact_retries_on_conflict(xs_server, unique_path) -> None:
    async def main() -> None:
        node = unique_path + b"/counter"
        async with AsyncClient(xs_server.socket_path) as c:
            await c.write(node, b"0")
            attempts = 0

            async def increment(t: AsyncTransaction) -> int:
                nonlocal attempts
                attempts += 1
                value = int(await t.read(node)) + 1
                if attempts < 3:
                    await c.write(node, b"%d" % (value * 10))  # interfere
                await t.write(node, b"%d" % value)
                return value

            assert await c.transact(increment) == 111  # 0 -> 10 -> 110 -> 111
            assert attempts == 3
            assert await c.read(node) == b"111"

            async def always_conflicts(t: AsyncTransaction) -> None:
                nonlocal attempts
                attempts += 1
                await t.read(node)
                await c.write(node, b"x")
                await t.write(node, b"y")

            attempts = 0
            with pytest.raises(TransactionConflictError, match="3 times"):
                await c.transact(always_conflicts, retries=2)
            assert attempts == 3
            with pytest.raises(ValueError):
                await c.transact(always_conflicts, retries=-1)

            async def with_args(t: AsyncTransaction, path: bytes, *, value: bytes) -> bytes:
                await t.write(path, value)
                return await t.read(path)

            assert await c.transact(with_args, node + b"2", value=b"v") == b"v"

            async def fails(t: AsyncTransaction) -> None:
                await t.write(node + b"3", b"x")
                raise KeyError("nope")

            with pytest.raises(KeyError):
                await c.transact(fails)
            assert not await c.exists(node + b"3")  # rolled back

            # Many concurrent increments on one connection all land.
            async def add_one(t: AsyncTransaction) -> None:
                await t.write(node, b"%d" % (int(await t.read(node)) + 1))

            await c.write(node, b"0")
            await asyncio.gather(*(c.transact(add_one, retries=100) for _ in range(20)))
            assert await c.read(node) == b"20"

    run(main)


def test_monitor(xs_server, unique_path) -> None:
    async def main() -> None:
        async with AsyncClient(xs_server.socket_path) as c:
            async with c.monitor() as m:
                assert isinstance(m, AsyncMonitor)
                await m.watch(unique_path, b"tok")
                assert m.watched == {unique_path}
                assert m.unwatch_queue == {(unique_path, b"tok")}
                event = await asyncio.wait_for(m.next_event(), 30)  # the initial event
                assert event == pyxs.aio.Event(unique_path, b"tok")
                assert event.path == unique_path and event.token == b"tok"
                await c.write(unique_path + b"/x", b"1")
                async for event in m:
                    assert event == (unique_path + b"/x", b"tok")
                    break
                assert await m.next_event(0) is None
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(m.next_event(), 0.05)
                with pytest.raises(ExistsError):
                    await m.watch(unique_path, b"tok")
                assert m.unwatch_queue == {(unique_path, b"tok")}  # still watched
                await c.write(unique_path + b"/y", b"1")
                assert await asyncio.wait_for(m.next_event(), 30) == (unique_path + b"/y", b"tok")

                await m.unwatch(unique_path, b"tok")
                assert not m.watched
                await c.write(unique_path + b"/z", b"1")
                await settle(c)
                assert await m.next_event(0) is None
                with pytest.raises(NoEntryError):
                    await m.unwatch(unique_path, b"tok")

                await m.watch(b"@introduceDomain", b"intro")
                assert await asyncio.wait_for(m.next_event(), 30) == (b"@introduceDomain", b"intro")
                await m.watch(unique_path + b"/x", b"")  # an empty token is allowed
                assert await asyncio.wait_for(m.next_event(), 30) == (unique_path + b"/x", b"")
                await c.write(unique_path + b"/x", b"2")
                await settle(c)  # an event is queued: close drops it
            assert await m.next_event(0) is None
            # Iteration after close ends; the watches were dropped, so the
            # same pairs can be watched again on this connection.
            assert [e async for e in m] == []
            assert await m.next_event() is None
            async with c.monitor() as m2:
                await m2.watch(unique_path, b"tok")
                await m2.watch(unique_path + b"/x", b"")
                assert await asyncio.wait_for(m2.next_event(), 30) == (unique_path, b"tok")
            await settle(c)

    run(main)


def test_monitors_share_one_connection(xs_server, unique_path) -> None:
    async def main() -> None:
        a, b = unique_path + b"/a", unique_path + b"/b"
        async with AsyncClient(xs_server.socket_path) as c, c.monitor() as m1, c.monitor() as m2:
            await m1.watch(a, b"same")  # same token, different paths
            await m2.watch(b, b"same")
            await m2.watch(a, b"other")
            # the initial events written out first: cxenstored 4.17 drops an
            # event identical to one still queued (see tests/interop/xsdiff.py)
            await settle(c)
            await c.write(a, b"1")
            await c.write(b, b"1")
            await settle(c)
            # Events are routed by token; iteration keeps the watched ones.
            got1 = [e async for e in m1.wait(timeout=0)]
            got2 = [e async for e in m2.wait(timeout=0)]
            assert got1 == [(a, b"same"), (a, b"same")]
            assert sorted(got2) == sorted([(b, b"same"), (a, b"other")] * 2)
            await c.write(b, b"2")
            await settle(c)
            assert [e async for e in m1.wait(timeout=0)] == []
            await c.write(b, b"3")
            await settle(c)
            assert [e async for e in m1.wait(unwatched=True, timeout=0)] == [(b, b"same")]
            assert await m1.next_event(0) is None

            # wake() ends a wait in another task.
            async def consume() -> list:
                return [e async for e in m1]

            consumer = asyncio.ensure_future(consume())
            await asyncio.sleep(0)
            m1.wake()
            assert await asyncio.wait_for(consumer, 30) == []
            assert await m2.next_event(timeout=0.01) == (b, b"same")
            assert await m2.next_event(timeout=0.01) == (b, b"same")
            assert await m2.next_event(timeout=0.01) is None

    run(main)


def test_relative_paths_and_reset_watches(xs_server, unique_path) -> None:
    async def main() -> None:
        rel = b"aio-" + unique_path.rsplit(b"/", 1)[1]
        async with AsyncClient(xs_server.socket_path) as c:
            await c.write(rel + b"/x", b"1")
            assert await c.read(b"/local/domain/0/" + rel + b"/x") == b"1"
            async with c.monitor() as m:
                await m.watch(rel, b"r")
                assert await asyncio.wait_for(m.next_event(), 30) == (rel, b"r")
                await c.write(rel + b"/y", b"2")
                assert await asyncio.wait_for(m.next_event(), 30) == (rel + b"/y", b"r")
                t = await c.transaction()
                await c.reset_watches()  # drops the watches and the transaction
                assert not m.watched
                await c.write(rel + b"/z", b"3")
                await settle(c)
                assert await m.next_event(0) is None
                with pytest.raises(NoEntryError):
                    await t.commit()
            await c.delete(rel)

    run(main)


def test_not_connected_and_connect_errors(tmp_path) -> None:
    async def main() -> None:
        c = AsyncClient(str(tmp_path / "no-such-socket"))
        with pytest.raises(ConnectionError):
            await c.read(b"/")
        with pytest.raises(ConnectionError, match="no-such-socket"):
            await c.connect()
        await c.close()  # closing a client that never connected is fine
        with pytest.raises(ConnectionError, match="no-such-device"):
            await AsyncClient(xen_bus_path=str(tmp_path / "no-such-device")).connect()

    run(main)


def test_default_socket_path(xs_server, monkeypatch) -> None:
    monkeypatch.setenv("XENSTORED_PATH", xs_server.socket_path)

    async def main() -> None:
        async with AsyncClient() as c:
            assert await c.exists(b"/")
        c = AsyncClient()
        await c.connect()
        await c.connect()  # already connected: no-op
        await c.close()
        await c.close()
        await c.connect()  # a closed client can connect again
        assert await c.exists(b"/")
        await c.close()

    run(main)


def test_every_way_to_await_a_call(xs_server, unique_path) -> None:
    async def main() -> None:
        async with AsyncClient(xs_server.socket_path) as c:
            await c.write(unique_path, b"v")
            read = c.read(unique_path)
            assert isinstance(read, pyxs.aio.ReplyFuture)
            assert await read == b"v"
            assert await read == b"v"  # a future: awaited again, same result
            # Tasks take calls as coroutines, procedures included.
            tasks = [
                asyncio.create_task(c.read(unique_path)),
                asyncio.ensure_future(c.exists(unique_path)),
                asyncio.get_running_loop().create_task(c.list(unique_path)),
                asyncio.create_task(c.read(unique_path + b"/missing", b"dflt")),
            ]
            assert await asyncio.gather(*tasks) == [b"v", True, [], b"dflt"]
            if sys.version_info >= (3, 11):
                async with asyncio.TaskGroup() as group:
                    grouped = group.create_task(c.read(unique_path))
                assert grouped.result() == b"v"
            assert await asyncio.wait_for(c.read(unique_path), 30) == b"v"
            assert await asyncio.shield(c.read(unique_path)) == b"v"
            done, _ = await asyncio.wait([asyncio.create_task(c.read(unique_path))])
            assert [t.result() for t in done] == [b"v"]
            # Errors are raised where the call is awaited, not where it is made.
            bad = c.read(b"bad path!")
            missing = c.read(unique_path + b"/missing")
            results = await asyncio.gather(bad, missing, return_exceptions=True)
            assert [type(r) for r in results] == [InvalidPath, NoEntryError]
            with pytest.raises(InvalidPath):
                await asyncio.create_task(c.write(b"bad path!", b""))
            t = c.transaction()
            with pytest.raises(PyXSError, match="not started"):
                await t.read(unique_path)
            await settle(c)

    run(main)


def test_requests_go_out_in_call_order(xs_server, unique_path) -> None:
    async def main() -> None:
        async with AsyncClient(xs_server.socket_path) as c:
            decoder = Decoder()
            sent: list[bytes] = []
            write = c._transport.write

            def spy(data: bytes) -> None:
                sent.extend(p.payload for p in decoder.feed(data))
                write(data)

            c._transport.write = spy
            paths = [unique_path + b"/%d" % i for i in range(300)]
            # Writes and procedures from the caller and from tasks, interleaved.
            calls = []
            for i, path in enumerate(paths):
                if i % 3 == 0:
                    calls.append(c.write(path, b"%d" % i))
                elif i % 3 == 1:
                    calls.append(asyncio.ensure_future(c.mkdir(path)))
                else:
                    calls.append(c.exists(path))
                if i % 50 == 0:
                    await asyncio.sleep(0)  # a batch goes out
            await asyncio.gather(*calls)
            assert [p.split(b"\0")[0] for p in sent] == paths
            await settle(c)

    run(main)


def test_calls_from_another_thread(xs_server, unique_path) -> None:
    # asyncio.run_coroutine_threadsafe takes a call made in another thread:
    # the request must still be made in the loop's thread.
    async def main() -> None:
        async with AsyncClient(xs_server.socket_path) as c:
            await c.write(unique_path, b"v")
            loop = asyncio.get_running_loop()
            loop.set_debug(True)  # asyncio checks that the loop is used from its thread
            tap_threads: list[str] = []
            write = c._transport.write

            def spy(data: bytes) -> None:
                tap_threads.append(threading.current_thread().name)
                write(data)

            c._transport.write = spy

            def elsewhere() -> list[object]:
                calls = [
                    c.read(unique_path),
                    c.exists(unique_path + b"/missing"),
                    c.list(unique_path),
                    c.read(b"bad path!"),
                ]
                futures = [asyncio.run_coroutine_threadsafe(call, loop) for call in calls]
                # Cancelled from here, before or after the loop made them.
                dropped = [
                    asyncio.run_coroutine_threadsafe(c.read(unique_path), loop) for _ in range(20)
                ]
                for i, f in enumerate(dropped):
                    if i % 2:
                        time.sleep(0.001)
                    f.cancel()
                results: list[object] = []
                for f in futures:
                    try:
                        results.append(f.result(10))
                    except InvalidPath as exc:
                        results.append(exc)
                return results

            results = await loop.run_in_executor(None, elsewhere)
            assert results[:3] == [b"v", False, []]
            assert isinstance(results[3], InvalidPath)
            assert tap_threads and set(tap_threads) == {threading.current_thread().name}
            await settle(c)

    run(main)


def test_a_procedure_gets_only_the_servers_errors(xs_server, unique_path) -> None:
    """commands.Driver's one rule, in the asyncio client: ENOENT is thrown
    into the procedure (it may catch it); a lost connection or a cancel is
    not: the procedure is closed, and the call gets the error."""
    seen: list[str] = []

    def procedure() -> commands.Procedure[bytes]:
        try:
            try:
                yield commands.read(unique_path + b"/missing")
            except NoEntryError:
                seen.append("ENOENT")
            value: bytes = yield commands.read(unique_path)
        except BaseException as exc:  # the test: what gets in
            seen.append(type(exc).__name__)
            raise
        return value

    async def main() -> None:
        async with AsyncClient(xs_server.socket_path) as c:
            await c.write(unique_path, b"v")
            assert await c.execute(procedure()) == b"v"
            assert seen == ["ENOENT"]
            call = c.execute(procedure())
            call.cancel()  # before any reply: the loop has not run since
            with pytest.raises(asyncio.CancelledError):
                await call
            assert seen == ["ENOENT", "GeneratorExit"]
            call = c.execute(procedure())
            await c.close()  # before any reply, too
            with pytest.raises(ConnectionError):
                await call
            assert seen == ["ENOENT", "GeneratorExit", "GeneratorExit"]

    run(main)
