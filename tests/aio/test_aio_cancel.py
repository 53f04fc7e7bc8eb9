"""Cancellation at every await point leaves the connection in sync.

The ``Tap`` cancels a task at exact moments: right after its n-th request
was handed to the transport (sent, reply outstanding) or right after the
n-th reply was dispatched (reply in, task not yet resumed). After each
cancellation the connection must still answer correctly, nothing may stay
pending, a transaction must be all-or-nothing and no transaction or watch
may be left behind on the server.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable
from typing import Callable

import pytest
from aio_support import Tap, run, settle

from pyxs import commands
from pyxs.aio import AsyncClient
from pyxs.exceptions import NoEntryError
from pyxs.protocol import Op, Packet


async def cancelled_at(
    client: AsyncClient, job: Callable[[], Awaitable[object]], where: str, n: int
) -> tuple[bool, Tap]:
    """Run ``job`` and cancel it after its ``n``-th send or reply.

    Returns whether the cancellation hit (False: the job finished first).
    """
    tap = Tap(client)
    task = asyncio.ensure_future(job())
    count = 0

    def hook(packet: Packet) -> None:
        nonlocal count
        if packet.op == Op.WATCH_EVENT:
            return
        count += 1
        if count == n:
            task.cancel()

    if where == "sent":
        tap.on_send = hook
    else:
        tap.on_receive = hook
    try:
        await task
    except asyncio.CancelledError:
        hit = True
    else:
        hit = False
    tap.on_send = tap.on_receive = None
    await settle(client)
    return hit, tap


def no_transaction_left(tap: Tap) -> None:
    """Every transaction the server started for us was ended by us."""
    started = {
        int(p.payload.rstrip(b"\0"))
        for p in tap.received
        if p.op == Op.TRANSACTION_START  # a successful START reply
    }
    ended = {p.tx_id for p in tap.sent if p.op == Op.TRANSACTION_END}
    assert started <= ended, (started, ended)


def test_cancel_before_send(xs_server, unique_path) -> None:
    async def main() -> None:
        async with AsyncClient(xs_server.socket_path) as c:
            await c.write(unique_path, b"v")
            tap = Tap(c)
            first = c.read(unique_path)  # alone: sent at once
            # Behind it, queued for the next batch; cancelled before then
            # (through ensure_future, a task on Python 3.9 and the call itself
            # on 3.10+; through a task on every Python; and directly): taken
            # back, never sent. A task learns of its cancellation at its
            # first step only, on the loop's next turn.
            ensured = asyncio.ensure_future(c.read(unique_path + b"/x"))
            task = asyncio.create_task(c.read(unique_path + b"/z"))
            direct = c.read(unique_path + b"/y")
            for cancelled in (ensured, task, direct):
                cancelled.cancel()
            for cancelled in (ensured, task, direct):
                with pytest.raises(asyncio.CancelledError):
                    await cancelled
            assert await first == b"v"
            assert [p.payload for p in tap.sent] == [unique_path + b"\0"]
            assert not c._protocol.pending
            assert await c.read(unique_path) == b"v"

    run(main)


@pytest.mark.parametrize("where", ["queued", "replied"])
def test_cancel_a_gather(xs_server, unique_path, where) -> None:
    async def main() -> None:
        async with AsyncClient(xs_server.socket_path) as c:
            await c.write(unique_path, b"v")
            tap = Tap(c)
            # The first READ goes out alone, the 499 others with the next batch.
            gathered = asyncio.gather(*(c.read(unique_path) for _ in range(500)))
            if where == "queued":
                gathered.cancel()
            else:  # all sent, some replies in, the others not (unless all came at once)

                def cancel_once_all_sent(packet: Packet) -> None:
                    if len(tap.sent) == 500:  # (the first reply may beat the batch)
                        gathered.cancel()

                tap.on_receive = cancel_once_all_sent
            try:
                await gathered
            except asyncio.CancelledError:
                cancelled = True
            else:
                cancelled = False
            tap.on_receive = None
            sent, received = len(tap.sent), len(tap.received)
            await settle(c)  # the replies still to come were dropped
            if where == "queued":
                assert cancelled
                assert sent == 1  # the others were taken back
            else:
                assert sent == 500
                assert cancelled or received == 500
            assert await c.read(unique_path) == b"v"

    run(main)


def test_cancel_after_send_before_reply(xs_server, unique_path) -> None:
    async def main() -> None:
        async with AsyncClient(xs_server.socket_path) as c:
            await c.write(unique_path + b"/a", b"A")
            await c.write(unique_path + b"/b", b"B")
            tap = Tap(c)
            task = asyncio.ensure_future(c.read(unique_path + b"/a"))
            await asyncio.sleep(0)  # the task runs once: its request is sent
            assert [p.op for p in tap.sent] == [Op.READ]
            assert c._protocol.pending  # and its reply is still to come
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # The late reply is dropped, not given to the next caller.
            assert await c.read(unique_path + b"/b") == b"B"
            assert [p.payload for p in tap.received if p.op == Op.READ] == [b"A", b"B"]
            await settle(c)

    run(main)


@pytest.mark.parametrize("where", ["sent", "replied"])
def test_cancel_each_step_of_a_transaction(xs_server, unique_path, where) -> None:
    a, b, big = unique_path + b"/a", unique_path + b"/b", unique_path + b"/big"

    async def main() -> None:
        async with AsyncClient(xs_server.socket_path) as c:
            names = [b"%03d-%s" % (i, b"z" * 70) for i in range(60)]  # DIRECTORY_PART
            await asyncio.gather(*(c.mkdir(big + b"/" + name) for name in names))

            async def job() -> None:
                async with c.transaction() as t:
                    await t.write(a, b"new")
                    assert await t.list(big) == names
                    assert await t.read(a) == b"new"
                    await t.write(b, b"new")

            n, hits = 0, 0
            while True:
                n += 1
                await c.write(a, b"old")
                await c.write(b, b"old")
                hit, tap = await cancelled_at(c, job, where, n)
                values = (await c.read(a), await c.read(b))
                assert values in ((b"old", b"old"), (b"new", b"new")), (n, values)
                no_transaction_left(tap)
                if not hit:
                    break
                hits += 1
                commit_sent = any(p.payload == b"T\0" for p in tap.sent)
                if not commit_sent:  # cancelled inside: rolled back
                    assert values == (b"old", b"old"), n
            assert hits >= 7  # START, WRITE, DIRECTORY, parts, READ, WRITE, END

    run(main)


@pytest.mark.parametrize("where", ["sent", "replied"])
def test_cancel_watch(xs_server, unique_path, where) -> None:
    async def main() -> None:
        async with AsyncClient(xs_server.socket_path) as c, c.monitor() as m:
            hit, tap = await cancelled_at(c, lambda: m.watch(unique_path, b"tok"), where, 1)
            assert hit
            assert not m.watched
            # If the server registered the watch, it was unwatched again.
            ops = [p.op for p in tap.sent if p.op in (Op.WATCH, Op.UNWATCH)]
            assert ops == [Op.WATCH, Op.UNWATCH]
            # So the same pair can be watched again, and works.
            await m.watch(unique_path, b"tok")
            await c.write(unique_path + b"/x", b"1")
            while (await asyncio.wait_for(m.next_event(), 30)).path != unique_path + b"/x":
                pass

    run(main)


def test_cancel_transaction_start_aborts_late(xs_server, unique_path) -> None:
    async def main() -> None:
        async with AsyncClient(xs_server.socket_path) as c:
            tap = Tap(c)
            task = asyncio.ensure_future(c.transaction().start())
            while not tap.sent:  # START is on its way
                await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await settle(c)
            no_transaction_left(tap)
            (tx_id,) = [int(p.payload[:-1]) for p in tap.received if p.op == Op.TRANSACTION_START]
            with pytest.raises(NoEntryError):  # it is gone on the server
                await c._call(commands.transaction_end(False), tx_id)

    run(main)


def test_cancelled_transaction_body_is_rolled_back(xs_server, unique_path) -> None:
    async def main() -> None:
        async with AsyncClient(xs_server.socket_path) as c:
            inside = asyncio.Event()
            tx_ids = []

            async def body() -> None:
                async with c.transaction() as t:
                    tx_ids.append(t.tx_id)
                    await t.write(unique_path, b"uncommitted")
                    inside.set()
                    await asyncio.sleep(3600)

            task = asyncio.ensure_future(body())
            await inside.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not await c.exists(unique_path)
            with pytest.raises(NoEntryError):  # the transaction is gone
                await c._call(commands.transaction_end(True), tx_ids[0])
            await settle(c)

    run(main)


def test_cancel_during_procedure(xs_server, unique_path) -> None:
    async def main() -> None:
        async with AsyncClient(xs_server.socket_path) as c:
            names = [b"%03d-%s" % (i, b"q" * 90) for i in range(60)]
            await asyncio.gather(*(c.mkdir(unique_path + b"/" + name) for name in names))
            for where in ("sent", "replied"):
                n = 0
                while True:
                    n += 1
                    hit, _ = await cancelled_at(c, lambda: c.list(unique_path), where, n)
                    if not hit:
                        break
                    assert await c.list(unique_path) == names
                assert n >= 3  # DIRECTORY (E2BIG) and at least two parts

    run(main)


def test_cancelled_monitor_get_loses_no_event(xs_server, unique_path) -> None:
    async def main() -> None:
        async with AsyncClient(xs_server.socket_path) as c, c.monitor() as m:
            await m.watch(unique_path, b"t")
            assert await m.next_event() == (unique_path, b"t")
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(m.next_event(), 0.01)
            getter = asyncio.ensure_future(m.next_event())
            await asyncio.sleep(0)  # waiting for an event
            tap = Tap(c)
            # Cancelled right after the event was queued and the getter woken.
            tap.on_receive = lambda p: getter.cancel() if p.op == Op.WATCH_EVENT else None
            await c.write(unique_path, b"1")
            with pytest.raises(asyncio.CancelledError):
                await getter
            assert await asyncio.wait_for(m.next_event(), 30) == (unique_path, b"t")

    run(main)


def test_timeouts_around_iteration_leave_the_monitor_usable(xs_server, unique_path) -> None:
    async def main() -> None:
        async with AsyncClient(xs_server.socket_path) as c, c.monitor() as m:
            await m.watch(unique_path, b"t")
            seen = []

            async def consume() -> None:
                async for event in m:
                    seen.append(event)

            # asyncio.wait_for everywhere; asyncio.timeout where it exists (3.11+).
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(consume(), 0.05)
            assert seen == [(unique_path, b"t")]
            if sys.version_info >= (3, 11):
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0.05):
                        await consume()
            assert await m.next_event(timeout=0.01) is None  # a timeout gives None
            await c.write(unique_path, b"1")
            assert await asyncio.wait_for(m.__anext__(), 30) == (unique_path, b"t")
            await settle(c)

    run(main)
