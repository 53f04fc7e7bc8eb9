"""The asyncio transports: how :class:`~pyxs.aio.AsyncClient` moves bytes.

Theory of operation
-------------------
A transport is what the client writes to and what calls the client back
when bytes arrive or the connection ends. The client sees only
:class:`AsyncTransport`: ``write(data)`` (``data`` is one whole message, or
several joined on a socket), ``writelines(messages)``, ``is_closing()``,
``abort()`` and a ``closed`` future that is done once the connection is
closed. Writes never block and never raise for a failed connection: a
transport that failed says so by ``is_closing()`` until it reports the
loss.

A transport calls its owner (:class:`TransportOwner`, the client) back:
``_data_received(data)`` for every read, and once, later than any write
(never from inside one), ``_connection_lost(transport, exc)``.

- :class:`SocketTransport`: a Unix socket through the event loop's own
  transport (asyncio's ``BufferedProtocol``, reading into one buffer of
  its own).
- :class:`DeviceTransport`: the XenBus character device, a file descriptor
  watched with ``loop.add_reader``; one ``os.write`` per message, since
  the device takes one whole message per ``write()``.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from typing import Protocol

from ..exceptions import ConnectionError

__all__ = ["AsyncTransport", "DeviceTransport", "SocketTransport", "TransportOwner"]


class AsyncTransport(Protocol):
    """What the client writes to (see the module's notes)."""

    #: done once the connection is closed
    closed: asyncio.Future[None]

    def write(self, data: bytes) -> None: ...

    def writelines(self, messages: list[bytes]) -> None: ...

    def is_closing(self) -> bool: ...

    def abort(self) -> None: ...


class TransportOwner(Protocol):
    """What a transport calls back: the client it moves bytes for.

    The callbacks are looked up at each call, so a test may tap them.
    """

    _transport: AsyncTransport | None

    def _data_received(self, data: bytes) -> None: ...

    def _connection_lost(self, transport: AsyncTransport, exc: BaseException | None) -> None: ...


class SocketTransport(asyncio.BufferedProtocol):
    """A Unix socket, through the event loop's own transport.

    Made by ``loop.create_unix_connection(lambda: SocketTransport(owner,
    loop), path)``; it becomes the owner's ``_transport`` when the
    connection is made.

    Read into one buffer of its own: a plain Protocol gets a new bytes
    object per read, which asyncio allocates at 256 KiB and shrinks, and
    depending on the allocator's state that is an mmap() and munmap() per
    read (a sequential transaction took twice as long through them).
    """

    _transport: asyncio.Transport

    def __init__(self, owner: TransportOwner, loop: asyncio.AbstractEventLoop) -> None:
        self._owner = owner
        self._buffer = memoryview(bytearray(65536))
        self.closed: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """asyncio: the socket is connected; the client gets this transport."""
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        # Now, not when connect() resumes: a loss in between must count.
        self._owner._transport = self

    def write(self, data: bytes) -> None:
        """Write ``data`` (buffered by the event loop's transport)."""
        self._transport.write(data)

    def writelines(self, messages: list[bytes]) -> None:
        """Write several messages at once, in one write."""
        self.write(b"".join(messages))

    def is_closing(self) -> bool:
        """Whether the socket is closed or closing."""
        # After a write or read error asyncio's transport is closing at once,
        # but tells connection_lost only on the loop's next turn.
        return self._transport.is_closing()

    def get_buffer(self, sizehint: int) -> memoryview:
        """asyncio: where the next read goes (one 64 KiB buffer, reused)."""
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        """asyncio: ``nbytes`` were read; hand them to the client."""
        self._owner._data_received(self._buffer[:nbytes].tobytes())

    def eof_received(self) -> bool:
        """asyncio: XenStore closed its end; the transport closes too."""
        return False  # close; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        """asyncio: the socket is gone; tell the client, resolve :attr:`closed`."""
        if not self.closed.done():
            self.closed.set_result(None)
        self._owner._connection_lost(self, exc)

    def abort(self) -> None:
        self._transport.abort()


class DeviceTransport:
    """The XenBus character device (or anything that behaves like one).

    Takes an open non-blocking file descriptor and closes it when the
    connection ends. Each message is written with its own ``os.write``; a
    write the device did not take whole (a pseudo-terminal stand-in can do
    that) is finished when the device is writable again, before the next
    message starts.
    """

    def __init__(self, owner: TransportOwner, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        self._owner = owner
        self._loop = loop
        self._fd = fd
        self._backlog: deque[memoryview] = deque()
        self.closed: asyncio.Future[None] = loop.create_future()
        loop.add_reader(fd, self._readable)

    def is_closing(self) -> bool:
        return self._fd < 0

    def writelines(self, messages: list[bytes]) -> None:
        for data in messages:
            if self._fd < 0:
                return
            if data:  # b"": a request taken back before it was sent
                self.write(data)

    def write(self, data: bytes) -> None:
        if self._fd < 0:
            raise ConnectionError("not connected")
        if self._backlog:
            self._backlog.append(memoryview(data))
            return
        try:
            written = os.write(self._fd, data)
        except (BlockingIOError, InterruptedError):
            written = 0
        except OSError as exc:
            self._close(exc)
            return
        if written < len(data):
            self._backlog.append(memoryview(data)[written:])
            self._loop.add_writer(self._fd, self._writable)

    def _writable(self) -> None:
        backlog = self._backlog
        while backlog:
            data = backlog[0]
            try:
                written = os.write(self._fd, data)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._close(exc)
                return
            if written < len(data):
                backlog[0] = data[written:]
                return
            backlog.popleft()
        self._loop.remove_writer(self._fd)

    def _readable(self) -> None:
        try:
            data = os.read(self._fd, 65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # EIO: a pseudo-terminal whose other end went away
            self._close(exc)
            return
        if data:
            self._owner._data_received(data)
        else:
            self._close(None)

    def _close(self, exc: Exception | None) -> None:
        fd, self._fd = self._fd, -1
        if fd < 0:
            return
        self._backlog.clear()
        self._loop.remove_reader(fd)
        self._loop.remove_writer(fd)
        os.close(fd)
        self.closed.set_result(None)
        # Later, as asyncio's transports do: never from inside a write().
        self._loop.call_soon(self._owner._connection_lost, self, exc)

    def abort(self) -> None:
        self._close(None)
