"""The asyncio client: one connection, any number of requests in flight.

Theory of operation
-------------------
:class:`AsyncClient` is the synchronous :class:`~pyxs.client.Client` with a
different way of moving bytes. Every operation comes from
:mod:`pyxs.commands` (the same :class:`~pyxs.commands.Command` objects, the
same procedures, driven here with ``await`` exactly as
:func:`~pyxs.commands.run_sync` drives them with blocking calls), and the
connection state is a :class:`~pyxs.protocol.ClientProtocol`: it allocates
req_ids, matches replies and tells watch events apart.

*Sending* is synchronous: a call allocates a req_id, registers a future for
it and hands the encoded packet straight to the transport, all before its
first ``await``. So requests from any number of tasks are pipelined on the
one connection in the order they were made, and a call cancelled before it
ran has sent nothing.

*Receiving* happens in one place, the transport's read callback (asyncio's
``data_received`` for a socket, a ``loop.add_reader`` callback for the
XenBus device): it feeds the bytes to the protocol, resolves the future of
each reply by req_id and puts each watch event in the queue of every
:class:`AsyncMonitor` watching that (path, token). Replies and events of one
read are all dispatched before any waiting task runs, so when ``await
m.watch(...)`` returns, an initial event that came with the OK is queued.

*Cancellation* never desynchronises the connection: a call cancelled while
its reply is outstanding tells the protocol to drop that reply when it comes
(:meth:`ClientProtocol.abandon`). Where dropping is not enough the reply is
watched instead: a cancelled TRANSACTION_START aborts the transaction it
turns out to have started, a cancelled WATCH that succeeded is unwatched. A
transaction whose body raises (cancellation included) is rolled back with an
abort that is sent at once and not waited for; the daemon handles requests
in order, so nothing sent later on the connection can see the transaction's
writes.

*Failure* is total and prompt: when the connection is lost or closed, every
pending call fails with :class:`pyxs.exceptions.ConnectionError`, and so
does every monitor once its queued events are consumed.

The XenBus device (``/dev/xen/xenbus``) is a character device rather than a
stream: each ``write()`` must hold one whole message (Linux's
``xenbus_file_write`` assembles one message and drops what follows it), and
the kernel answers WATCH itself, so the initial event may arrive *before*
the OK. Monitors therefore register a watch locally before sending it.
"""

from __future__ import annotations

import asyncio
import os
import posixpath
from collections import deque
from typing import (
    Any,
    AsyncIterator,
    Awaitable,
    Callable,
    Deque,
    Dict,
    Generator,
    Iterable,
    List,
    Set,
    Tuple,
    TypeVar,
)

from . import commands
from .commands import Command, Procedure
from .exceptions import ConnectionError, NoEntryError, PyXSError, TransactionConflictError
from .paths import PathLike, Permission
from .protocol import ClientProtocol, Packet, WatchEvent

__all__ = ["AsyncClient", "AsyncMonitor", "AsyncTransaction", "Event"]

T = TypeVar("T")

#: A watch event: the path that changed and the token given to ``watch``.
Event = WatchEvent

#: How often :meth:`AsyncClient.transact` retries a conflicting transaction.
DEFAULT_RETRIES = 10


# -- default locations -------------------------------------------------------


def _default_socket_path() -> str:
    # Private fallback until pyxs.connection.default_socket_path() exists.
    path = os.environ.get("XENSTORED_PATH")
    if path:
        return path
    rundir = os.environ.get("XENSTORED_RUNDIR")
    if rundir:
        return os.path.join(rundir, "socket")
    return "/var/run/xenstored/socket"


def _default_xenbus_path() -> str:
    # Private fallback until pyxs.connection.default_xenbus_path() exists.
    for path in ("/dev/xen/xenbus", "/proc/xen/xenbus", "/kern/xen/xenbus", "/dev/xen/xenstore"):
        if os.path.exists(path):
            return path
    return "/dev/xen/xenbus"


# -- transports --------------------------------------------------------------
#
# A transport has write(data) (``data`` is one whole message), abort() and a
# ``closed`` future; it calls its client's _data_received(data) and, once,
# _connection_lost(transport, exc).


class _SocketTransport(asyncio.Protocol):
    """A Unix socket, through the event loop's own transport."""

    def __init__(self, client: AsyncClient, loop: asyncio.AbstractEventLoop) -> None:
        self._client = client
        self._transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self.write = transport.write  # type: ignore[method-assign]

    def write(self, data: bytes) -> None:
        raise ConnectionError("not connected")

    def data_received(self, data: bytes) -> None:
        self._client._data_received(data)

    def eof_received(self) -> bool:
        return False  # close; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        self._client._connection_lost(self, exc)

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()


class _DeviceTransport:
    """The XenBus character device (or anything that behaves like one).

    Each message is written with its own ``os.write``; a write the device
    did not take whole (a pseudo-terminal stand-in can do that) is finished
    when the device is writable again, before the next message starts.
    """

    def __init__(self, client: AsyncClient, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        self._client = client
        self._loop = loop
        self._fd = fd
        self._backlog: Deque[memoryview] = deque()
        self.closed: asyncio.Future[None] = loop.create_future()
        loop.add_reader(fd, self._readable)

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
            self._client._data_received(data)
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
        self._loop.call_soon(self._client._connection_lost, self, exc)

    def abort(self) -> None:
        self._close(None)


# -- operations, shared by the client and its transactions -------------------


class _Operations:
    """The data operations, written once over ``_call`` (one command)."""

    def _call(self, command: Command[T]) -> Awaitable[T]:
        raise NotImplementedError

    async def _drive(self, procedure: Procedure[T]) -> T:
        # commands.run_sync, with await: results are sent into the procedure,
        # errors (cancellation included) thrown into it.
        call = self._call
        try:
            command = next(procedure)
            while True:
                try:
                    value = await call(command)
                except BaseException as exc:  # noqa: BLE001 - handed to the procedure
                    command = procedure.throw(exc)
                else:
                    command = procedure.send(value)
        except StopIteration as stop:
            result: T = stop.value
            return result

    async def read(self, path: PathLike, default: bytes | None = None) -> bytes:
        """The value at ``path``; ``default`` (when given) if it does not exist."""
        try:
            return await self._call(commands.read(path))
        except NoEntryError:
            if default is None:
                raise
            return default

    async def write(self, path: PathLike, value: bytes) -> None:
        """Set ``path`` to ``value``, creating missing parents."""
        await self._call(commands.write(path, value))

    async def mkdir(self, path: PathLike) -> None:
        """Create ``path`` (and parents) with empty values; existing ones stay."""
        await self._call(commands.mkdir(path))

    async def delete(self, path: PathLike) -> None:
        """Remove ``path`` and its subtree (fine if missing, not if its parent is)."""
        await self._call(commands.rm(path))

    async def list(self, path: PathLike) -> List[bytes]:
        """Child names of ``path`` in creation order (any number of them)."""
        return await self._drive(commands.list_children(path))

    async def exists(self, path: PathLike) -> bool:
        """Whether ``path`` exists."""
        return await self._drive(commands.exists(path))

    async def get_perms(self, path: PathLike) -> List[bytes]:
        """The permission list of ``path``, owner first: ``[b"n0", b"r5"]``."""
        return await self._call(commands.get_perms(path))

    async def set_perms(self, path: PathLike, perms: Iterable[PathLike | Permission]) -> None:
        """Replace the permission list of ``path``."""
        await self._call(commands.set_perms(path, perms))

    async def walk(
        self, top: PathLike, topdown: bool = True
    ) -> AsyncIterator[Tuple[bytes, bytes, List[bytes]]]:
        """``(path, value, children)`` for ``top`` and every node below it."""
        top = top.encode("ascii") if isinstance(top, str) else bytes(top)
        children = await self.list(top)
        try:
            value = await self.read(top)
        except PyXSError:
            value = b""  # no read permission
        if topdown:
            yield top, value, children
        for child in children:
            async for node in self.walk(posixpath.join(top, child), topdown):
                yield node
        if not topdown:
            yield top, value, children


# -- the client --------------------------------------------------------------


class AsyncClient(_Operations):
    """A XenStore client for asyncio.

    ``unix_socket_path`` (default ``$XENSTORED_PATH``, else
    ``$XENSTORED_RUNDIR/socket``, else ``/var/run/xenstored/socket``) or,
    when only ``xen_bus_path`` is given, the XenBus device. Use it as
    ``async with AsyncClient() as c:`` or ``await c.connect()`` ...
    ``await c.close()``. Any number of tasks may use one client at once.
    """

    def __init__(
        self, unix_socket_path: str | None = None, xen_bus_path: str | None = None
    ) -> None:
        self.unix_socket_path = unix_socket_path
        self.xen_bus_path = xen_bus_path
        self._transport: _SocketTransport | _DeviceTransport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._protocol = ClientProtocol()
        self._waiters: Dict[int, asyncio.Future[Packet]] = {}
        self._monitors: Set[AsyncMonitor] = set()

    def __repr__(self) -> str:
        where = self.xen_bus_path if self._uses_xenbus() else self.unix_socket_path
        state = "connected" if self._transport is not None else "closed"
        return f"<AsyncClient {where or 'default'} {state}>"

    def _uses_xenbus(self) -> bool:
        return bool(self.xen_bus_path) and not self.unix_socket_path

    # -- connection --------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether the connection is open."""
        return self._transport is not None

    async def connect(self) -> None:
        """Open the connection (pyxs.ConnectionError if that fails)."""
        if self._transport is not None:
            return
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._protocol = ClientProtocol()
        try:
            if self._uses_xenbus():
                path = self.xen_bus_path or _default_xenbus_path()
                flags = os.O_RDWR | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
                fd = os.open(path, flags)
                try:
                    self._transport = _DeviceTransport(self, loop, fd)
                except BaseException:
                    os.close(fd)
                    raise
            else:
                path = self.unix_socket_path or _default_socket_path()
                _, transport = await loop.create_unix_connection(
                    lambda: _SocketTransport(self, loop), path
                )
                self._transport = transport
        except OSError as exc:
            raise ConnectionError(f"cannot connect to XenStore at {path}: {exc}") from exc

    async def close(self) -> None:
        """Close the connection; pending calls fail with ConnectionError."""
        transport = self._transport
        if transport is None:
            return
        self._fail(ConnectionError("the client was closed"))
        transport.abort()
        await asyncio.shield(transport.closed)

    async def __aenter__(self) -> AsyncClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- moving bytes ------------------------------------------------------

    async def _call(
        self,
        command: Command[T],
        tx_id: int = 0,
        late_reply: Callable[[Packet], None] | None = None,
    ) -> T:
        """Send ``command`` and wait for its reply (the one await of a call)."""
        transport = self._transport
        if transport is None:
            raise ConnectionError("not connected")
        assert self._loop is not None
        req_id, data = self._protocol.request(command.op, command.payload, tx_id)
        waiter: asyncio.Future[Packet] = self._loop.create_future()
        self._waiters[req_id] = waiter
        transport.write(data)
        try:
            reply = await waiter
        except asyncio.CancelledError:
            if self._waiters.get(req_id) is waiter:  # the reply is still to come
                if late_reply is None:
                    del self._waiters[req_id]
                    self._protocol.abandon(req_id)
                else:
                    self._waiters[req_id] = self._watch_reply(late_reply)
            elif late_reply is not None and waiter.done() and not waiter.cancelled():
                late_reply(waiter.result())  # it came, but too late for us
            raise
        return command.result(reply)

    def _watch_reply(self, callback: Callable[[Packet], None]) -> asyncio.Future[Packet]:
        assert self._loop is not None
        future: asyncio.Future[Packet] = self._loop.create_future()

        def done(f: asyncio.Future[Packet]) -> None:
            if not f.cancelled() and f.exception() is None:
                callback(f.result())

        future.add_done_callback(done)
        return future

    def _send_nowait(self, command: Command[Any], tx_id: int = 0) -> None:
        """Send ``command`` and drop its reply (aborts and unwatches on exit)."""
        transport = self._transport
        if transport is None:
            return
        req_id, data = self._protocol.request(command.op, command.payload, tx_id)
        self._protocol.abandon(req_id)
        transport.write(data)

    def _data_received(self, data: bytes) -> None:
        try:
            replies, events = self._protocol.receive(data)
        except (ConnectionError, ValueError) as exc:  # UnexpectedPacket, PacketTooLarge
            error = exc if isinstance(exc, ConnectionError) else ConnectionError(str(exc))
            self._fail(error)
            if self._transport is not None:
                self._transport.abort()
            return
        waiters = self._waiters
        for reply in replies:
            waiter = waiters.pop(reply.req_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(reply)
        for event in events:
            for monitor in self._monitors:
                monitor._deliver(event)

    def _connection_lost(self, transport: object, exc: BaseException | None) -> None:
        if transport is not self._transport:
            return  # closed by us: already failed
        reason = f": {exc}" if exc else ""
        error = ConnectionError(f"the connection to XenStore was lost{reason}")
        error.__cause__ = exc
        self._fail(error)

    def _fail(self, error: ConnectionError) -> None:
        """Mark the connection dead; fail every pending call and monitor."""
        self._transport = None
        waiters, self._waiters = self._waiters, {}
        for waiter in waiters.values():
            if not waiter.done():
                waiter.set_exception(error)
        for monitor in self._monitors:
            monitor._fail(error)
        self._monitors = set()

    # -- transactions -------------------------------------------------------

    def transaction(self) -> AsyncTransaction:
        """A new transaction: ``async with c.transaction() as t:``.

        The body's operations go through ``t``; it commits on normal exit
        (TransactionConflictError on EAGAIN) and rolls back when the body
        raises or is cancelled. ``t = await c.transaction()`` starts one
        without the context; then ``await t.commit()`` or ``t.rollback()``.
        """
        return AsyncTransaction(self)

    async def transact(
        self,
        fn: Callable[[AsyncTransaction], Awaitable[T]],
        retries: int = DEFAULT_RETRIES,
    ) -> T:
        """Run ``await fn(t)`` in a transaction, again on conflict (EAGAIN).

        After ``retries`` retries the last TransactionConflictError propagates.
        """
        attempt = 0
        while True:
            try:
                async with self.transaction() as t:
                    result = await fn(t)
                return result
            except TransactionConflictError:
                if attempt >= retries:
                    raise
                attempt += 1

    # -- watches -----------------------------------------------------------

    def monitor(self) -> AsyncMonitor:
        """A new monitor: ``async with c.monitor() as m:`` (see AsyncMonitor)."""
        return AsyncMonitor(self)

    # -- the rest of XenStore ----------------------------------------------

    async def get_domain_path(self, domid: int) -> bytes:
        """``/local/domain/<domid>``, as the server resolves relative paths."""
        return await self._call(commands.get_domain_path(domid))

    async def is_domain_introduced(self, domid: int) -> bool:
        """Whether xenstored is talking to ``domid``."""
        return await self._call(commands.is_domain_introduced(domid))

    async def introduce_domain(self, domid: int, mfn: int, eventchn: int) -> None:
        """INTRODUCE ``domid`` with its ring page frame and event channel."""
        await self._call(commands.introduce(domid, mfn, eventchn))

    async def release_domain(self, domid: int) -> None:
        """RELEASE ``domid``: xenstored forgets it (fires @releaseDomain)."""
        await self._call(commands.release(domid))

    async def resume_domain(self, domid: int) -> None:
        """RESUME ``domid`` (clears its shutdown flag)."""
        await self._call(commands.resume(domid))

    async def set_target(self, domid: int, target: int) -> None:
        """Let ``domid`` act with ``target``'s privileges."""
        await self._call(commands.set_target(domid, target))

    async def reset_watches(self) -> None:
        """Drop this connection's watches and transactions on the server."""
        await self._call(commands.reset_watches())
        for monitor in self._monitors:
            monitor._watches.clear()

    async def control(self, *args: PathLike) -> bytes:
        """CONTROL, as ``xenstore-control`` sends it: ``control(b"print", b"hi")``."""
        return await self._call(commands.control(*args))


# -- transactions ------------------------------------------------------------


class AsyncTransaction(_Operations):
    """A transaction: the data operations of the client, inside it.

    ``async with client.transaction() as t`` starts it and commits it on
    normal exit; if the body raises (or is cancelled) it is rolled back.
    A conflict at commit raises TransactionConflictError.
    """

    def __init__(self, client: AsyncClient) -> None:
        self._client = client
        #: The server's id for this transaction (0 until it started).
        self.tx_id = 0
        self._ended = False

    def __repr__(self) -> str:
        state = "ended" if self._ended else "open" if self.tx_id else "new"
        return f"<AsyncTransaction {self.tx_id} {state}>"

    def __await__(self) -> Generator[Any, None, AsyncTransaction]:
        return self.start().__await__()

    async def start(self) -> AsyncTransaction:
        """Start the transaction (done by ``async with`` and ``await``)."""
        if self.tx_id or self._ended:
            raise PyXSError("the transaction was already started")
        client = self._client
        self.tx_id = await client._call(
            commands.transaction_start(), 0, late_reply=self._abort_late
        )
        return self

    def _abort_late(self, reply: Packet) -> None:
        # TRANSACTION_START was cancelled after it was sent: if it started a
        # transaction, end it, unseen.
        try:
            tx_id = commands.transaction_start().result(reply)
        except PyXSError:
            return
        self._client._send_nowait(commands.transaction_end(False), tx_id)

    def _open_tx(self) -> int:
        if not self.tx_id:
            raise PyXSError("the transaction was not started")
        if self._ended:
            raise PyXSError("the transaction has ended")
        return self.tx_id

    def _call(self, command: Command[T]) -> Awaitable[T]:
        return self._client._call(command, self._open_tx())

    async def commit(self) -> None:
        """Commit; TransactionConflictError (EAGAIN) when it conflicted."""
        tx_id = self._open_tx()
        self._ended = True
        await self._client._call(commands.transaction_end(True), tx_id)

    async def rollback(self) -> None:
        """Abort: nothing the transaction did is applied."""
        tx_id = self._open_tx()
        self._ended = True
        await self._client._call(commands.transaction_end(False), tx_id)

    def _rollback_nowait(self) -> None:
        if self.tx_id and not self._ended:
            self._ended = True
            self._client._send_nowait(commands.transaction_end(False), self.tx_id)

    async def __aenter__(self) -> AsyncTransaction:
        if not self.tx_id:
            await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if self._ended:
            return
        if exc_type is None:
            await self.commit()
        else:
            self._rollback_nowait()


# -- watches -----------------------------------------------------------------


class AsyncMonitor:
    """Watches and the events they fire, as an async iterator.

    ::

        async with client.monitor() as m:
            await m.watch(b"/vm", b"token")
            async for event in m:           # Event(path, token)
                ...

    Events for this monitor's (path, token) pairs are queued from the
    moment ``watch`` is called (the first is the initial event XenStore
    sends for every new watch). Use ``asyncio.wait_for`` or
    ``asyncio.timeout`` for timeouts. Iteration ends when the monitor is
    closed and raises ConnectionError when the connection is lost (after
    the events already queued).
    """

    def __init__(self, client: AsyncClient) -> None:
        self._client = client
        #: token -> watched paths
        self._watches: Dict[bytes, Set[bytes]] = {}
        self._events: Deque[WatchEvent] = deque()
        self._getters: List[asyncio.Future[None]] = []
        self._error: ConnectionError | None = None
        self._closed = False
        client._monitors.add(self)

    def __repr__(self) -> str:
        return f"<AsyncMonitor watching {sorted(self.watched)!r}>"

    @property
    def watched(self) -> Set[Tuple[bytes, bytes]]:
        """The (path, token) pairs this monitor watches."""
        return {(path, token) for token, paths in self._watches.items() for path in paths}

    def _check_usable(self) -> None:
        if self._closed:
            raise PyXSError("the monitor is closed")
        if self._error is not None:
            raise self._error

    async def watch(self, path: PathLike, token: PathLike) -> None:
        """Watch ``path`` (and its subtree) with ``token``."""
        command = commands.watch(path, token)
        self._check_usable()
        wpath, wtoken = command.payload.split(b"\0")[:2]
        paths = self._watches.setdefault(wtoken, set())
        added = wpath not in paths
        # Registered before sending: on XenBus the initial event can come first.
        paths.add(wpath)

        def unwatch_late(reply: Packet) -> None:
            if reply.op == command.op:
                self._client._send_nowait(commands.unwatch(wpath, wtoken))

        try:
            await self._client._call(command, late_reply=unwatch_late if added else None)
        except BaseException:
            if added:
                self._forget(wpath, wtoken)
            raise

    async def unwatch(self, path: PathLike, token: PathLike) -> None:
        """Stop watching (path, token); its events are no longer delivered."""
        command = commands.unwatch(path, token)
        self._check_usable()
        wpath, wtoken = command.payload.split(b"\0")[:2]
        self._forget(wpath, wtoken)
        await self._client._call(command)

    def _forget(self, path: bytes, token: bytes) -> None:
        paths = self._watches.get(token)
        if paths is not None:
            paths.discard(path)
            if not paths:
                del self._watches[token]

    def _deliver(self, event: WatchEvent) -> None:
        paths = self._watches.get(event.token)
        if not paths:
            return
        if event.path not in paths:
            path = event.path
            for watched in paths:
                if path.startswith(watched + b"/") or (watched == b"/" and path[:1] == b"/"):
                    break
            else:
                return  # another monitor's watch with the same token
        self._events.append(event)
        self._wake()

    def _wake(self) -> None:
        getters, self._getters = self._getters, []
        for getter in getters:
            if not getter.done():
                getter.set_result(None)

    def _fail(self, error: ConnectionError) -> None:
        if self._error is None:
            self._error = error
        self._wake()

    async def get(self) -> WatchEvent:
        """The next event (waits for one)."""
        while True:
            if self._events:
                return self._events.popleft()
            if self._closed:
                raise PyXSError("the monitor is closed")
            if self._error is not None:
                raise self._error
            loop = self._client._loop
            assert loop is not None
            getter: asyncio.Future[None] = loop.create_future()
            self._getters.append(getter)
            await getter

    def get_nowait(self) -> WatchEvent | None:
        """The next queued event, or None."""
        return self._events.popleft() if self._events else None

    def __aiter__(self) -> AsyncMonitor:
        return self

    async def __anext__(self) -> WatchEvent:
        if self._closed and not self._events:
            raise StopAsyncIteration
        try:
            return await self.get()
        except PyXSError:
            if self._closed:
                raise StopAsyncIteration from None
            raise

    async def close(self) -> None:
        """Unwatch everything (without waiting for the replies) and stop."""
        if self._closed:
            return
        self._closed = True
        for path, token in self.watched:
            self._client._send_nowait(commands.unwatch(path, token))
        self._watches.clear()
        self._client._monitors.discard(self)
        self._wake()

    async def __aenter__(self) -> AsyncMonitor:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
