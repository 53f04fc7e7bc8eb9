"""The XenBus device transport, over a pseudo-terminal bridged to a server.

A raw-mode pty behaves like the device where it matters here: a character
device read and written with non-blocking ``os.read``/``os.write``, with a
small buffer (so writes do come back short or with EAGAIN under load), that
fails with EIO when its other side goes away.
"""

from __future__ import annotations

import asyncio
import os
import re
from typing import Any

import pytest
from aio_support import PtyBridge, Tap, run, settle

import pyxs.transports.asyncio
from pyxs.aio import AsyncClient
from pyxs.exceptions import ConnectionError, NoEntryError
from pyxs.protocol import HEADER, HEADER_SIZE, Op
from support import make_non_device


@pytest.mark.parametrize("kind", ["file", "fifo", "directory"])
def test_refuses_what_is_not_a_device(tmp_path, kind) -> None:
    # pyxs.connection.open_xenbus_device's rule, as the sync client: a file
    # left at the device's path must not be written into (a FIFO would be).
    path = tmp_path / "xenbus"
    make_non_device(path, kind)
    reason = "not a character device" if kind != "directory" else "Is a directory"

    async def main() -> None:
        before = set(os.listdir("/proc/self/fd"))
        c = AsyncClient(xen_bus_path=str(path))
        with pytest.raises(ConnectionError, match=re.escape(repr(str(path))) + ".*" + reason):
            await c.connect()
        assert not c.connected
        assert set(os.listdir("/proc/self/fd")) == before  # nothing left open

    run(main)
    if kind == "file":
        assert path.read_bytes() == b"keep me"


def test_operations_over_the_device(xs_server, unique_path) -> None:
    async def main() -> None:
        async with (
            PtyBridge(xs_server.socket_path) as bridge,
            AsyncClient(xen_bus_path=bridge.device_path) as c,
        ):
            assert bridge.device_path in repr(c)
            await c.write(unique_path + b"/a", b"1\0\n\r\x03\x11\x13")  # raw bytes
            assert await c.read(unique_path + b"/a") == b"1\0\n\r\x03\x11\x13"
            assert await c.list(unique_path) == [b"a"]
            with pytest.raises(NoEntryError):
                await c.read(unique_path + b"/b")
            async with c.transaction() as t:
                await t.write(unique_path + b"/b", b"2")
            assert await c.read(unique_path + b"/b") == b"2"
            async with c.monitor() as m:
                await m.watch(unique_path, b"t")
                assert await asyncio.wait_for(m.next_event(), 30) == (unique_path, b"t")
                await c.delete(unique_path + b"/a")
                assert await asyncio.wait_for(m.next_event(), 30) == (unique_path + b"/a", b"t")

    run(main)


def test_watch_answered_by_the_kernel(xs_server, unique_path) -> None:
    # Linux's xenbus driver answers WATCH itself: the initial event can
    # arrive before the OK. The bridge reproduces that order.
    async def main() -> None:
        async with (
            PtyBridge(xs_server.socket_path, kernel_watch=True) as bridge,
            AsyncClient(xen_bus_path=bridge.device_path) as c,
        ):
            tap = Tap(c)
            async with c.monitor() as m:
                await m.watch(unique_path, b"first")
                await m.watch(unique_path + b"/x", b"second")
                assert bridge.reordered == 2
                ops = [p.op for p in tap.received]
                assert ops[:2] == [Op.WATCH_EVENT, Op.WATCH]
                assert await asyncio.wait_for(m.next_event(), 30) == (unique_path, b"first")
                second = await asyncio.wait_for(m.next_event(), 30)
                assert second == (unique_path + b"/x", b"second")
                await c.write(unique_path + b"/x", b"1")
                got = {await asyncio.wait_for(m.next_event(), 30) for _ in range(2)}
                x = unique_path + b"/x"
                assert got == {(x, b"first"), (x, b"second")}

    run(main)


class _WriteLog:
    """Stands in for ``os`` in pyxs.transports.asyncio and records the writes to ``fd``."""

    def __init__(self) -> None:
        self.fd = -1
        self.writes: list[bytes] = []
        self.short = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def write(self, fd: int, data: bytes) -> int:
        written = os.write(fd, data)
        if fd == self.fd:
            self.writes.append(bytes(data[:written]))
            self.short += written < len(data)
        return written


def test_1000_pipelined_reads_whole_message_writes(xs_server, unique_path, monkeypatch) -> None:
    log = _WriteLog()
    monkeypatch.setattr(pyxs.transports.asyncio, "os", log)

    async def main() -> None:
        async with (
            PtyBridge(xs_server.socket_path) as bridge,
            AsyncClient(xen_bus_path=bridge.device_path) as c,
        ):
            log.fd = c._transport._fd  # the device (connecting wrote nothing)
            values = [b"%d-%s" % (i, b"v" * 200) for i in range(1000)]
            await asyncio.gather(
                *(c.write(unique_path + b"/%d" % i, v) for i, v in enumerate(values))
            )
            async with c.monitor() as m:
                await m.watch(unique_path + b"/w", b"w")
                jobs = [c.read(unique_path + b"/%d" % i) for i in range(1000)]
                jobs += [c.write(unique_path + b"/w/%d" % i, b"") for i in range(50)]
                results = await asyncio.gather(*jobs)
                assert results[:1000] == values
                events = {await asyncio.wait_for(m.next_event(), 30) for _ in range(51)}
                assert len(events) == 51
            await settle(c)
            sent = bridge.to_server

        # The pty's buffer is small: many writes came back short or EAGAIN...
        assert log.short > 0
        # ...yet no write() ever held parts of two messages.
        stream = b"".join(log.writes)
        boundaries, pos = set(), 0
        while pos < len(stream):
            pos += HEADER_SIZE + HEADER.unpack_from(stream, pos)[3]
            boundaries.add(pos)
        start = 0
        for chunk in log.writes:
            end = start + len(chunk)
            assert not any(start < b < end for b in boundaries)
            start = end
        assert len(sent) == len(boundaries)

    run(main)


def test_device_gone_fails_pending_calls(xs_server, unique_path) -> None:
    async def main() -> None:
        async with PtyBridge(xs_server.socket_path) as bridge:
            c = AsyncClient(xen_bus_path=bridge.device_path)
            await c.connect()
            m = c.monitor()
            await m.watch(unique_path, b"t")
            assert await m.next_event() == (unique_path, b"t")
            bridge.pause()  # requests stay in the device, unanswered
            calls = [asyncio.ensure_future(c.read(unique_path, b"")) for _ in range(100)]
            getter = asyncio.ensure_future(m.next_event())
            await asyncio.sleep(0.05)
            assert not any(call.done() for call in calls)
            await bridge.close()  # the device goes away (reads fail with EIO)
            results = await asyncio.gather(*calls, getter, return_exceptions=True)
            assert all(isinstance(r, ConnectionError) for r in results), results
            assert not c.connected
            with pytest.raises(ConnectionError):
                await c.read(unique_path)
            await c.close()

    run(main)


def test_close_over_the_device(xs_server, unique_path) -> None:
    async def main() -> None:
        async with PtyBridge(xs_server.socket_path) as bridge:
            c = AsyncClient(xen_bus_path=bridge.device_path)
            await c.connect()
            bridge.pause()
            calls = [asyncio.ensure_future(c.read(unique_path, b"")) for _ in range(10)]
            await asyncio.sleep(0)
            await c.close()
            results = await asyncio.gather(*calls, return_exceptions=True)
            assert all(isinstance(r, ConnectionError) for r in results), results
        # A pty outlives its openers (a device file does not): a fresh one.
        async with PtyBridge(xs_server.socket_path) as bridge:
            c.xen_bus_path = bridge.device_path
            await c.connect()  # the client connects again
            assert await c.read(unique_path, b"default") == b"default"
            await c.close()

    run(main)
