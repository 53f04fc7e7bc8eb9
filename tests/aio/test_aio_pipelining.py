"""Many requests in flight on one connection, with watch events in between."""

from __future__ import annotations

import asyncio

from aio_support import run, settle

from pyxs.aio import AsyncClient, AsyncTransaction
from pyxs.protocol import Decoder, Op


def test_1000_concurrent_reads_with_interleaved_events(xs_server, unique_path) -> None:
    async def main() -> None:
        n = 1000
        async with AsyncClient(xs_server.socket_path) as c:
            await asyncio.gather(
                *(c.write(unique_path + b"/v/%d" % i, b"value-%d" % i) for i in range(n))
            )
            async with c.monitor() as m:
                await m.watch(unique_path + b"/w", b"tok")
                assert await m.next_event() == (unique_path + b"/w", b"tok")

                # Record the packets as they arrive, to show where the events came.
                arrivals: list[int] = []
                decoder = Decoder()
                data_received = c._data_received

                def spy(data: bytes) -> None:
                    arrivals.extend(p.op for p in decoder.feed(data))
                    data_received(data)

                c._data_received = spy  # type: ignore[method-assign]

                # 1000 reads from 1000 tasks, with a write (firing the watch)
                # after every 10th; all are pipelined on the one connection.
                jobs = []
                for i in range(n):
                    jobs.append(c.read(unique_path + b"/v/%d" % i))
                    if i % 10 == 0:
                        jobs.append(c.write(unique_path + b"/w/%d" % i, b"x"))
                results = await asyncio.gather(*jobs)
                values = [r for r in results if r is not None]
                assert values == [b"value-%d" % i for i in range(n)]

                events = [await asyncio.wait_for(m.next_event(), 30) for _ in range(n // 10)]
                assert events == [(unique_path + b"/w/%d" % i, b"tok") for i in range(0, n, 10)]
                assert await m.next_event(0) is None
                # Events came in between replies, and reached the monitor.
                first_read = arrivals.index(Op.READ)
                last_read = len(arrivals) - 1 - arrivals[::-1].index(Op.READ)
                assert arrivals[first_read:last_read].count(Op.WATCH_EVENT) >= n // 20
                await settle(c)

    run(main)


def test_concurrent_transactions_and_procedures(xs_server, unique_path) -> None:
    async def main() -> None:
        async with AsyncClient(xs_server.socket_path) as c:
            names = [b"n%03d-%s" % (i, b"y" * 60) for i in range(80)]  # needs DIRECTORY_PART
            await asyncio.gather(*(c.mkdir(unique_path + b"/big/" + n) for n in names))
            # Existing nodes: transactions that add children to one parent conflict.
            await asyncio.gather(*(c.mkdir(unique_path + b"/tx/%d" % i) for i in range(50)))
            await asyncio.gather(*(c.mkdir(unique_path + b"/tr/%d" % i) for i in range(50)))

            async def in_transaction(i: int) -> list[bytes]:
                async with c.transaction() as t:
                    await t.write(unique_path + b"/tx/%d" % i, b"%d" % i)
                    children = await t.list(unique_path + b"/big")
                    assert await t.read(unique_path + b"/tx/%d" % i) == b"%d" % i
                return children

            async def by_transact(i: int) -> None:
                async def body(t: AsyncTransaction) -> None:
                    await t.write(unique_path + b"/tr/%d" % i, b"ok")

                await c.transact(body)

            results = await asyncio.gather(
                *(in_transaction(i) for i in range(50)),
                *(c.list(unique_path + b"/big") for _ in range(50)),
                *(by_transact(i) for i in range(50)),
            )
            assert all(r == names for r in results[:100])
            assert sorted(await c.list(unique_path + b"/tx")) == sorted(
                b"%d" % i for i in range(50)
            )
            assert len(await c.list(unique_path + b"/tr")) == 50
            await settle(c)

    run(main)
