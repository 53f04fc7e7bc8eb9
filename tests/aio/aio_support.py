"""Helpers for the asyncio client's tests.

``run`` runs a coroutine in a fresh event loop with a hang guard (a failing
test must fail, not hang the suite). ``PtyBridge`` stands in for the XenBus
device: a pseudo-terminal whose far end is bridged to a real server's socket.
"""

from __future__ import annotations

import asyncio
import os
import tty
from collections import deque
from collections.abc import Awaitable
from typing import Any, Callable, TypeVar

from pyxs.protocol import Decoder, Op, Packet, encode

T = TypeVar("T")

#: Generous: only a hang (a bug) gets near it.
HANG_GUARD = 60.0


def run(main: Callable[[], Awaitable[T]], timeout: float = HANG_GUARD) -> T:
    """``asyncio.run(main())`` that fails instead of hanging."""

    async def guarded() -> T:
        return await asyncio.wait_for(main(), timeout)

    return asyncio.run(guarded())


async def settle(client: Any) -> None:
    """Wait until every request sent so far on ``client`` was answered.

    The server answers in order, so once a fresh request's reply is back,
    every earlier one (abandoned ones included) has been received too.
    """
    # A reply that came late may have made us send something (an abort, an
    # unwatch) after our probe: probe again until nothing is outstanding.
    for _ in range(5):
        await client.exists(b"/")
        if not client._protocol.pending:
            break
    assert not client._protocol.pending, client._protocol.pending
    assert not client._waiters
    assert not client._late_replies


class PtyBridge:
    """A pseudo-terminal standing in for ``/dev/xen/xenbus``.

    The client opens ``device_path`` (the pty's slave side, in raw mode);
    the bridge copies bytes between the master side and a connection to
    ``socket_path``. With ``kernel_watch=True`` it mimics Linux's xenbus
    driver, which answers WATCH itself: the OK of a WATCH is held back until
    the watch's first event has been passed on, so the event comes first.
    """

    def __init__(self, socket_path: str, kernel_watch: bool = False) -> None:
        self.socket_path = socket_path
        self.kernel_watch = kernel_watch
        self.device_path = ""
        self.to_server: list[Packet] = []
        self._master = -1
        self._slave = -1
        self._backlog: deque[memoryview] = deque()
        self._from_client = Decoder()
        self._from_server = Decoder()
        self._watch_reqs: set[int] = set()
        self._held: list[Packet] = []
        self._writer: asyncio.StreamWriter | None = None
        self._pump: asyncio.Task[None] | None = None
        self.reordered = 0

    async def __aenter__(self) -> PtyBridge:
        loop = asyncio.get_running_loop()
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.device_path = os.ttyname(self._slave)
        os.set_blocking(self._master, False)
        reader, self._writer = await asyncio.open_unix_connection(self.socket_path)
        loop.add_reader(self._master, self._from_pty)
        self._pump = asyncio.ensure_future(self._from_socket(reader))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def pause(self) -> None:
        """Stop taking requests from the device: they stay unanswered."""
        asyncio.get_running_loop().remove_reader(self._master)

    async def close(self) -> None:
        """Close the master side: the device "goes away" for the client."""
        if self._master >= 0:
            loop = asyncio.get_running_loop()
            loop.remove_reader(self._master)
            loop.remove_writer(self._master)
            os.close(self._master)
            os.close(self._slave)
            self._master = self._slave = -1
        if self._pump is not None:
            self._pump.cancel()
            try:
                await self._pump
            except asyncio.CancelledError:
                pass
            self._pump = None
        if self._writer is not None:
            self._writer.close()
            try:
                await self._writer.wait_closed()
            except OSError:
                pass
            self._writer = None

    def _from_pty(self) -> None:
        try:
            data = os.read(self._master, 65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # EIO: the client closed the device
            asyncio.get_running_loop().remove_reader(self._master)
            return
        for packet in self._from_client.feed(data):
            self.to_server.append(packet)
            if packet.op == Op.WATCH:
                self._watch_reqs.add(packet.req_id)
        assert self._writer is not None
        self._writer.write(data)

    async def _from_socket(self, reader: asyncio.StreamReader) -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                return
            if not self.kernel_watch:
                self._to_pty(data)
                continue
            for packet in self._from_server.feed(data):
                if packet.op == Op.WATCH and packet.req_id in self._watch_reqs:
                    self._watch_reqs.discard(packet.req_id)
                    self._held.append(packet)  # until the watch's first event
                    continue
                self._to_pty(encode(*packet))
                if packet.op == Op.WATCH_EVENT and self._held:
                    self.reordered += 1
                    self._to_pty(encode(*self._held.pop(0)))

    def _to_pty(self, data: bytes) -> None:
        if self._master < 0:
            return
        if not self._backlog:
            try:
                written = os.write(self._master, data)
            except BlockingIOError:
                written = 0
            if written == len(data):
                return
            data = data[written:]
            asyncio.get_running_loop().add_writer(self._master, self._drain)
        self._backlog.append(memoryview(data))

    def _drain(self) -> None:
        while self._backlog:
            try:
                written = os.write(self._master, self._backlog[0])
            except BlockingIOError:
                return
            if written < len(self._backlog[0]):
                self._backlog[0] = self._backlog[0][written:]
                return
            self._backlog.popleft()
        asyncio.get_running_loop().remove_writer(self._master)


class Tap:
    """Records the packets a client sends and receives, with optional hooks.

    ``on_send(packet)`` runs right after the packet was handed to the
    transport (inside the sending task's step); ``on_receive(packet)`` right
    after the client dispatched the data that completed it.
    """

    def __init__(self, client: Any) -> None:
        self.sent: list[Packet] = []
        self.received: list[Packet] = []
        self.on_send: Callable[[Packet], None] | None = None
        self.on_receive: Callable[[Packet], None] | None = None
        transport = client._transport
        write = transport.write
        data_received = client._data_received
        out, into = Decoder(), Decoder(frame_oversized=True)  # reads as the client does

        def tapped_write(data: bytes) -> None:
            write(data)
            for packet in out.feed(data):
                self.sent.append(packet)
                if self.on_send is not None:
                    self.on_send(packet)

        def tapped_data_received(data: bytes) -> None:
            data_received(data)
            for packet in into.feed(data):
                self.received.append(packet)
                if self.on_receive is not None:
                    self.on_receive(packet)

        transport.write = tapped_write
        client._data_received = tapped_data_received

    def sent_ops(self) -> list[int]:
        return [p.op for p in self.sent]
