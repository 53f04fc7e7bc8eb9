"""Losing the connection, closing it, and servers that break the protocol."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import struct

import pytest
from aio_support import run

from pyxs.aio import AsyncClient
from pyxs.exceptions import ConnectionError, UnexpectedPacket
from pyxs.protocol import Op, encode
from pyxs.server import Server
from realxs import start_real_xenstored, stop_real_xenstored


def test_close_fails_pending_calls_promptly(xs_server, unique_path) -> None:
    async def main() -> None:
        c = AsyncClient(xs_server.socket_path)
        await c.connect()
        m = c.monitor()
        await m.watch(unique_path, b"t")
        assert await m.next_event() == (unique_path, b"t")
        t = await c.transaction()
        calls = [asyncio.ensure_future(c.read(unique_path, b"")) for _ in range(100)]
        in_tx = asyncio.ensure_future(t.write(unique_path + b"/x", b"1"))
        getter = asyncio.ensure_future(m.next_event())
        await asyncio.sleep(0)  # all sent, none answered yet
        assert len(c._protocol.pending) == 101
        await c.close()
        results = await asyncio.gather(*calls, in_tx, getter, return_exceptions=True)
        assert all(isinstance(r, ConnectionError) for r in results), results
        assert "closed" in str(results[0])
        with pytest.raises(ConnectionError):
            await c.read(unique_path)
        with pytest.raises(ConnectionError):
            await m.watch(unique_path, b"u")
        with pytest.raises(ConnectionError):
            [e async for e in m]
        await m.close()

    run(main)


@pytest.mark.parametrize("kind", ["embedded", pytest.param("real", marks=pytest.mark.realxs)])
def test_server_killed_fails_pending_calls(kind, request) -> None:
    async def main() -> None:
        if kind == "real":  # a daemon of its own: SIGSTOP it, then SIGKILL it
            daemon = start_real_xenstored()
            request.addfinalizer(lambda: stop_real_xenstored(daemon))
            socket_path = daemon.socket_path

            async def pause() -> None:
                os.kill(daemon.pid, signal.SIGSTOP)

            async def kill() -> None:
                os.kill(daemon.pid, signal.SIGKILL)

        else:  # an embedded server on this loop: it reads nothing until we yield
            server = Server()
            await server.start()
            socket_path = server.socket_path

            async def pause() -> None:
                pass

            async def kill() -> None:
                await server.close()  # drops every connection at once

        async with AsyncClient(socket_path) as c:
            m = c.monitor()
            await m.watch(b"/", b"t")
            assert await m.next_event() == (b"/", b"t")
            await pause()
            calls = [asyncio.ensure_future(c.read(b"/", b"")) for _ in range(100)]
            getter = asyncio.ensure_future(m.next_event())
            await asyncio.sleep(0)  # each call runs once: its request is sent
            assert len(c._protocol.pending) == 100  # sent...
            assert not any(call.done() for call in calls)  # ...and not answered
            await kill()
            results = await asyncio.gather(*calls, getter, return_exceptions=True)
            assert all(isinstance(r, ConnectionError) for r in results), results
            assert "lost" in str(results[0])
            assert not c.connected
            with pytest.raises(ConnectionError):
                await c.read(b"/")

    run(main)


async def _fake_server(path: str, reply: bytes) -> asyncio.AbstractServer:
    """A server that answers the first request with ``reply`` (raw bytes) and hangs up."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        header = await reader.readexactly(16)
        await reader.readexactly(struct.unpack("<IIII", header)[3])
        writer.write(reply)
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    return await asyncio.start_unix_server(handle, path)


@pytest.mark.parametrize(
    "reply, error",
    [
        (encode(Op.READ, 77, 0, b"x"), UnexpectedPacket),  # answers nothing we asked
        (struct.pack("<IIII", Op.READ, 1, 0, 5000), ConnectionError),  # > 4096 bytes
        (encode(Op.WATCH_EVENT, 0, 0, b"no-nul"), UnexpectedPacket),  # malformed event
        (encode(Op.READ, 1, 0, b"abc")[:10], ConnectionError),  # cut, then EOF
        (encode(Op.WRITE, 1, 0, b"OK\0"), UnexpectedPacket),  # a reply of the wrong type
        (b"", ConnectionError),  # no reply at all: hangs up
    ],
    ids=["unknown-req-id", "too-large", "bad-event", "cut-short", "wrong-type", "hang-up"],
)
def test_protocol_violations(tmp_path, reply, error) -> None:
    # Faults a real server cannot be made to produce: a scripted fake.
    async def main() -> None:
        path = str(tmp_path / "fake")
        server = await _fake_server(path, reply)
        async with server, AsyncClient(path) as c:
            first = c.read(b"/a")  # the request the fake server answers
            other = asyncio.ensure_future(c.exists(b"/b"))
            with pytest.raises(error):
                await first
            with pytest.raises(ConnectionError):
                await other  # everything pending fails too
            assert not c.connected

    run(main)


def test_concurrent_connects_share_one_connection(xs_server) -> None:
    async def main() -> None:
        c = AsyncClient(xs_server.socket_path)
        await asyncio.gather(*(c.connect() for _ in range(5)))
        transport = c._transport
        assert transport is not None
        await c.connect()
        assert c._transport is transport
        assert await c.exists(b"/")
        await c.close()
        assert repr(c).endswith("not connected)")

    run(main)


async def _client_of_a_bare_socket(path: str) -> tuple[AsyncClient, socket.socket]:
    """An AsyncClient connected to a plain listening socket, and the
    accepted end (the listener itself is closed)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen()
        c = AsyncClient(path)
        await c.connect()
        peer, _ = listener.accept()
    return c, peer


def test_calls_after_a_socket_error_fail_without_writing(tmp_path, caplog) -> None:
    # The daemon's end is gone before the client notices: its first send
    # fails (EPIPE) and the transport is closing, but connection_lost comes
    # only on the loop's next turn. Every call meanwhile must fail at once
    # with ConnectionError; none may write to the dead socket, which asyncio
    # would log ("socket.send() raised exception.") once per write.
    caplog.set_level(logging.WARNING, logger="asyncio")

    async def main() -> None:
        c, peer = await _client_of_a_bare_socket(str(tmp_path / "gone"))
        peer.close()
        first = c.read(b"/a")  # sent alone, at once: the send fails
        assert first.done()
        calls = [c.read(b"/a") for _ in range(50)]
        assert all(call.done() for call in calls)  # failed without waiting
        results = await asyncio.gather(first, *calls, return_exceptions=True)
        assert all(isinstance(r, ConnectionError) for r in results), results
        assert "lost" in str(results[0])
        assert not c.connected
        # Tasks made of calls, and batches sent on the loop's turn: the same.
        tasks = [asyncio.ensure_future(c.write(b"/a", b"x")) for _ in range(20)]
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, ConnectionError) for r in results), results
        await c.close()

    run(main)
    assert "socket.send() raised exception" not in caplog.text
    assert not [r for r in caplog.records if r.name == "asyncio"], caplog.text


def test_batched_write_to_a_failed_socket(tmp_path, caplog) -> None:
    # The same with requests in flight: the batch of the loop's next turn
    # meets the dead socket, fails the connection, and later calls fail at
    # once without writing.
    caplog.set_level(logging.WARNING, logger="asyncio")

    async def main() -> None:
        c, peer = await _client_of_a_bare_socket(str(tmp_path / "gone"))
        first = c.read(b"/a")  # sent: the peer is still there, and never answers
        await asyncio.sleep(0)
        peer.close()
        queued = [c.read(b"/a") for _ in range(100)]  # queued for the next turn
        assert not any(call.done() for call in queued)
        results = await asyncio.gather(first, *queued, return_exceptions=True)
        assert all(isinstance(r, ConnectionError) for r in results), results
        later = [c.read(b"/a") for _ in range(10)]
        assert all(call.done() for call in later)
        results = await asyncio.gather(*later, return_exceptions=True)
        assert all(isinstance(r, ConnectionError) for r in results), results
        await c.close()

    run(main)
    assert "socket.send() raised exception" not in caplog.text
    assert not [r for r in caplog.records if r.name == "asyncio"], caplog.text
