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
:class:`AsyncMonitor` watching with its token (the sync client's rule;
``async for`` then keeps the events of watched paths). Replies and events of
one read are all dispatched before any waiting task runs, so when ``await
m.watch(...)`` returns, an initial event that came with the OK is queued.
There is no reader task and no task per request.

*Cancellation* never desynchronises the connection: a call cancelled while
its reply is outstanding tells the protocol to drop that reply when it comes
(:meth:`ClientProtocol.abandon`). Where dropping is not enough the reply is
handed to a *late-reply* callback instead, whether it comes after the
cancellation or came just before it: a cancelled TRANSACTION_START aborts
the transaction it turns out to have started, a cancelled WATCH that
succeeded is unwatched. A
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
import errno
import os
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
from .client import Event, _domid
from .commands import Command, Operation
from .connection import default_socket_path, default_xenbus_path
from .exceptions import (
    ConnectionError,
    NoEntryError,
    PyXSError,
    TransactionConflictError,
    XenStoreError,
)
from .paths import PathLike, Permission, check_ascii, validate_path, validate_watch_path
from .protocol import ClientProtocol, Op, Packet, WatchEvent

__all__ = ["AsyncClient", "AsyncMonitor", "AsyncTransaction", "Event"]

T = TypeVar("T")

#: How often :meth:`AsyncClient.transact` retries (as the sync client).
DEFAULT_RETRIES = 16


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
        # Now, not when connect() resumes: a loss in between must count.
        self._client._transport = self

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

    async def execute(self, operation: Operation[T]) -> T:
        """Run a :mod:`pyxs.commands` command or procedure.

        A procedure is driven as :func:`~pyxs.commands.run_sync` drives it:
        each result is sent into it, each error (cancellation included)
        thrown into it.
        """
        if isinstance(operation, Command):
            return await self._call(operation)
        call = self._call
        try:
            command = next(operation)
            while True:
                try:
                    value = await call(command)
                except BaseException as exc:  # noqa: BLE001 - handed to the procedure
                    command = operation.throw(exc)
                else:
                    command = operation.send(value)
        except StopIteration as stop:
            result: T = stop.value
            return result

    async def read(self, path: PathLike, default: bytes | None = None) -> bytes:
        """The value at ``path``; ``default`` (when given) if it is missing."""
        try:
            return await self._call(commands.read(path))
        except NoEntryError:
            if default is None:
                raise
            return default

    async def write(self, path: PathLike, value: bytes) -> None:
        """Set the value at ``path``, creating it and missing parents."""
        await self._call(commands.write(path, value))

    async def mkdir(self, path: PathLike) -> None:
        """Make sure ``path`` exists; an existing node keeps its value."""
        await self._call(commands.mkdir(path))

    async def delete(self, path: PathLike) -> None:
        """Remove ``path`` and its subtree (fine if missing, not if its parent is)."""
        await self._call(commands.rm(path))

    async def list(self, path: PathLike) -> List[bytes]:
        """Child names of ``path`` in creation order (any number of them)."""
        return await self.execute(commands.list_children(path))

    async def exists(self, path: PathLike) -> bool:
        """Whether ``path`` exists."""
        return await self.execute(commands.exists(path))

    async def get_perms(self, path: PathLike) -> List[bytes]:
        """The permissions of ``path``, owner first: ``[b"n0", b"r5"]``."""
        return await self._call(commands.get_perms(path))

    async def set_perms(self, path: PathLike, perms: Iterable[PathLike | Permission]) -> None:
        """Replace the permissions of ``path``; the first entry names the owner."""
        await self._call(commands.set_perms(path, perms))

    async def walk(
        self, top: PathLike, topdown: bool = True
    ) -> AsyncIterator[Tuple[bytes, bytes, List[bytes]]]:
        """``(path, value, children)`` for ``top`` and every node below it.

        As the sync client's ``walk``: depth first, a node before its
        children with ``topdown`` (pruning ``children`` prunes the walk),
        after them otherwise; nodes removed meanwhile are skipped; a value
        that cannot be read is ``b""``.
        """
        top = validate_path(top)
        stack: List[Tuple[bytes, Tuple[bytes, List[bytes]] | None]] = [(top, None)]
        while stack:
            path, node = stack.pop()
            if node is not None:
                yield path, node[0], node[1]
                continue
            try:
                children = await self.list(path)
            except NoEntryError:
                if path is top:
                    raise
                continue
            try:
                value = await self.read(path)
            except XenStoreError:
                value = b""
            if topdown:
                yield path, value, children
            else:
                stack.append((path, (value, children)))
            prefix = path if path == b"/" else path + b"/"
            stack.extend((prefix + child, None) for child in reversed(children))


# -- the client --------------------------------------------------------------


class AsyncClient(_Operations):
    """A XenStore client for asyncio: the sync Client's methods, as coroutines.

    :param unix_socket_path: the xenstored socket (by default
        :func:`~pyxs.connection.default_socket_path`).
    :param xen_bus_path: use the XenBus device at this path instead (when no
        socket path is given).

    Use it as ``async with AsyncClient() as c:``, or ``await c.connect()``
    and ``await c.close()``. Any number of tasks may use one client at once:
    their requests are pipelined on its one connection.
    """

    def __init__(
        self, unix_socket_path: str | None = None, xen_bus_path: str | None = None
    ) -> None:
        self.unix_socket_path = unix_socket_path
        self.xen_bus_path = xen_bus_path
        self._transport: _SocketTransport | _DeviceTransport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connecting: asyncio.Future[None] | None = None
        self._protocol = ClientProtocol()
        self._waiters: Dict[int, asyncio.Future[Packet]] = {}
        #: req_id -> what to do with the reply of a call cancelled before it came
        self._late_replies: Dict[int, Callable[[Packet], None]] = {}
        #: token -> the monitors watching with it (and how many watches each)
        self._subscribers: Dict[bytes, Dict[AsyncMonitor, int]] = {}
        self._monitors: Set[AsyncMonitor] = set()

    def __repr__(self) -> str:
        where = self.xen_bus_path if self._uses_xenbus() else self.unix_socket_path
        state = "connected" if self._transport is not None else "not connected"
        return f"AsyncClient({where or 'default'!r}, {state})"

    def _uses_xenbus(self) -> bool:
        return bool(self.xen_bus_path) and not self.unix_socket_path

    # -- connection --------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether the connection is open."""
        return self._transport is not None

    async def connect(self) -> None:
        """Open the connection (again, after a close or a failure).

        :raises pyxs.exceptions.ConnectionError: XenStore cannot be reached.
        """
        if self._connecting is not None:
            await asyncio.shield(self._connecting)  # another task is at it
            return
        if self._transport is not None:
            return
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._protocol = ClientProtocol()
        self._connecting = loop.create_future()
        try:
            if self._uses_xenbus():
                path = self.xen_bus_path or default_xenbus_path()
                flags = os.O_RDWR | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
                fd = os.open(path, flags)
                try:
                    self._transport = _DeviceTransport(self, loop, fd)
                except BaseException:
                    os.close(fd)
                    raise
            else:
                path = self.unix_socket_path or default_socket_path()
                await loop.create_unix_connection(lambda: _SocketTransport(self, loop), path)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise ConnectionError(f"error connecting to {path!r}: {reason}") from exc
        finally:
            self._connecting.set_result(None)
            self._connecting = None

    async def close(self) -> None:
        """Close the connection: pending calls fail with ConnectionError."""
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
        """Send ``command`` and wait for its reply: the one await of a call.

        ``late_reply`` gets the reply if the call is cancelled before it
        could take it (START and WATCH must undo what they did).
        """
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
                del self._waiters[req_id]
                if late_reply is None:
                    self._protocol.abandon(req_id)
                else:
                    self._late_replies[req_id] = late_reply
            elif late_reply is not None and waiter.done() and not waiter.cancelled():
                late_reply(waiter.result())  # it came, but too late for us
            raise
        return command.result(reply)

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
            transport = self._transport
            self._fail(error)
            if transport is not None:
                transport.abort()
            return
        waiters = self._waiters
        for reply in replies:
            waiter = waiters.pop(reply.req_id, None)
            if waiter is not None:
                if not waiter.done():
                    waiter.set_result(reply)
            elif self._late_replies:
                late_reply = self._late_replies.pop(reply.req_id, None)
                if late_reply is not None:
                    late_reply(reply)
        if events:
            subscribers = self._subscribers
            for event in events:
                for monitor in subscribers.get(event.token, ()):
                    monitor._deliver(event)

    def _connection_lost(self, transport: object, exc: BaseException | None) -> None:
        if transport is not self._transport:
            return  # closed by us: already failed
        reason = f": {exc}" if exc else ""
        error = ConnectionError(f"the connection to XenStore was lost{reason}")
        error.__cause__ = exc
        self._fail(error)

    def _fail(self, error: ConnectionError) -> None:
        """The connection is over: fail every pending call and monitor."""
        self._transport = None
        waiters, self._waiters = self._waiters, {}
        self._late_replies = {}
        for waiter in waiters.values():
            if not waiter.done():
                waiter.set_exception(error)
        monitors, self._monitors = self._monitors, set()
        self._subscribers = {}
        for monitor in monitors:
            monitor._fail(error)

    def _subscribe(self, token: bytes, monitor: AsyncMonitor) -> None:
        monitors = self._subscribers.setdefault(token, {})
        monitors[monitor] = monitors.get(monitor, 0) + 1

    def _unsubscribe(self, token: bytes, monitor: AsyncMonitor) -> None:
        monitors = self._subscribers.get(token)
        if monitors and monitor in monitors:
            monitors[monitor] -= 1
            if not monitors[monitor]:
                del monitors[monitor]
                if not monitors:
                    del self._subscribers[token]

    # -- the rest of XenStore ----------------------------------------------

    async def get_domain_path(self, domid: int | str | bytes) -> bytes:
        """The home path of a domain, ``b"/local/domain/<domid>"``."""
        return await self._call(commands.get_domain_path(_domid(domid)))

    async def is_domain_introduced(self, domid: int | str | bytes) -> bool:
        """Whether xenstored talks to the domain (introduced, not released)."""
        return await self._call(commands.is_domain_introduced(_domid(domid)))

    async def introduce_domain(self, domid: int | str | bytes, mfn: int, eventchn: int) -> None:
        """Tell xenstored about a new domain: its ring page and event channel.

        :raises ValueError: for domain 0, as pyxs 0.4 did.
        """
        domid = _domid(domid)
        if not domid:
            raise ValueError("domain 0 cannot be introduced.")
        await self._call(commands.introduce(domid, mfn, eventchn))

    async def release_domain(self, domid: int | str | bytes) -> None:
        """Tell xenstored to forget a domain (fires ``@releaseDomain``)."""
        await self._call(commands.release(_domid(domid)))

    async def resume_domain(self, domid: int | str | bytes) -> None:
        """Clear a domain's shutdown flag."""
        await self._call(commands.resume(_domid(domid)))

    async def set_target(self, domid: int | str | bytes, target: int | str | bytes) -> None:
        """Let ``domid`` act on ``target``'s nodes with its rights (stub domains)."""
        await self._call(commands.set_target(_domid(domid), _domid(target)))

    async def reset_watches(self) -> None:
        """Drop every watch and transaction of this connection.

        Monitors sharing the connection forget their watches too.
        """
        await self._call(commands.reset_watches())
        self._subscribers = {}
        for monitor in self._monitors:
            monitor.unwatch_queue.clear()

    async def control(self, *args: PathLike) -> bytes:
        """A ``xenstore-control`` command: ``control(b"print", b"hello")``."""
        return await self._call(commands.control(*args))

    #: The pre-Xen 4.9 name of CONTROL.
    debug = control

    # -- transactions --------------------------------------------------------

    def transaction(self) -> AsyncTransaction:
        """A new transaction, started by ``async with`` or ``await``.

        ``async with c.transaction() as t:`` runs the block's operations on
        ``t`` in the transaction and commits on normal exit (a conflict
        raises TransactionConflictError); when the block raises or is
        cancelled it is rolled back. ``t = await c.transaction()`` starts
        one to end with ``await t.commit()`` or ``await t.rollback()``.
        """
        return AsyncTransaction(self)

    async def transact(
        self,
        fn: Callable[..., Awaitable[T]],
        *args: Any,
        retries: int = DEFAULT_RETRIES,
        **kwargs: Any,
    ) -> T:
        """``await fn(t, *args, **kwargs)`` in a transaction; retry on conflict.

        As the sync ``Client.transact``: committed when ``fn`` returns,
        rolled back when it raises; on a conflict (EAGAIN, at commit or
        before) ``fn`` runs again in a new transaction, up to ``retries``
        more times, then TransactionConflictError is raised.
        """
        if retries < 0:
            raise ValueError("retries must be >= 0")
        for _ in range(retries + 1):
            try:
                async with self.transaction() as t:
                    result = await fn(t, *args, **kwargs)
            except TransactionConflictError:
                continue
            return result
        raise TransactionConflictError(
            errno.EAGAIN,
            os.strerror(errno.EAGAIN),
            f"transaction conflicted {retries + 1} times",
        )

    # -- watches -----------------------------------------------------------

    def monitor(self) -> AsyncMonitor:
        """A new :class:`AsyncMonitor` on this client's connection."""
        return AsyncMonitor(self)


# -- transactions ------------------------------------------------------------


class AsyncTransaction(_Operations):
    """One transaction: the client's data operations, inside it.

    Made by :meth:`AsyncClient.transaction`. Operations on a transaction
    that has not started or has ended raise PyXSError.
    """

    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        #: The server's id of the transaction (0 until it started).
        self.tx_id = 0
        self._ended = False

    def __repr__(self) -> str:
        state = "ended" if self._ended else "open" if self.tx_id else "not started"
        return f"AsyncTransaction({self.tx_id}, {state})"

    def __await__(self) -> Generator[Any, None, AsyncTransaction]:
        return self.start().__await__()

    async def start(self) -> AsyncTransaction:
        """Start the transaction (``async with`` and ``await`` do this)."""
        if self.tx_id or self._ended:
            raise PyXSError("the transaction was started already")
        self.tx_id = await self.client._call(
            commands.transaction_start(), 0, late_reply=self._abort_late
        )
        return self

    def _abort_late(self, reply: Packet) -> None:
        # START was cancelled after it was sent: end what it turns out to have started.
        try:
            tx_id = commands.transaction_start().result(reply)
        except PyXSError:
            return
        self.client._send_nowait(commands.transaction_end(False), tx_id)

    def _open_id(self) -> int:
        if self._ended:
            raise PyXSError("the transaction has ended")
        if not self.tx_id:
            raise PyXSError("the transaction has not started")
        return self.tx_id

    def _call(self, command: Command[T]) -> Awaitable[T]:
        return self.client._call(command, self._open_id())

    async def _end(self, commit: bool) -> None:
        tx_id = self._open_id()
        self._ended = True
        await self.client._call(commands.transaction_end(commit), tx_id)

    async def commit(self) -> bool:
        """Commit; False when it conflicted (EAGAIN): nothing of it was applied."""
        try:
            await self._end(True)
        except TransactionConflictError:
            return False
        return True

    async def rollback(self) -> None:
        """Abort: nothing of the transaction is applied."""
        await self._end(False)

    async def __aenter__(self) -> AsyncTransaction:
        if not self.tx_id:
            await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if self._ended:
            return  # ended in the block
        if exc_type is None:
            await self._end(True)  # a conflict raises TransactionConflictError
        else:
            # Sent now, not waited for: safe even in a cancelled task, and
            # the server handles it before anything sent later.
            self._ended = True
            self.client._send_nowait(commands.transaction_end(False), self.tx_id)


# -- watches -----------------------------------------------------------------


class AsyncMonitor:
    """Watches and their events, as the sync Monitor with ``await``.

    ::

        async with client.monitor() as m:
            await m.watch(b"/vm", b"token")
            async for event in m:           # Event(path, token)
                ...

    Events of this monitor's tokens are queued as they arrive, from the
    moment ``watch`` is called (the first is the one XenStore sends for
    every new watch). Timeouts: ``asyncio.wait_for``/``asyncio.timeout``
    around the loop, or ``next_event(timeout)``. Iteration ends on
    :meth:`wake` and :meth:`close`; when the connection is lost it raises
    ConnectionError (after the events already queued).
    """

    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        #: ``(path, token)`` of every watch this monitor added (pyxs 0.4's name)
        self.unwatch_queue: Set[Tuple[bytes, bytes]] = set()
        self._events: Deque[WatchEvent] = deque()
        self._getters: List[asyncio.Future[None]] = []
        self._error: ConnectionError | None = None
        self._woken = False
        self._closed = False
        client._monitors.add(self)

    def __repr__(self) -> str:
        return f"AsyncMonitor({self.client!r})"

    async def __aenter__(self) -> AsyncMonitor:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def watched(self) -> Set[bytes]:
        """The paths this monitor watches."""
        return {path for path, _ in self.unwatch_queue}

    async def watch(self, wpath: PathLike, token: PathLike) -> None:
        """Add a watch on ``wpath`` and everything below it.

        An event comes at once, then on creation, change, permission change
        and removal of the node or a descendant (and spuriously, sometimes).
        """
        path = validate_watch_path(wpath)
        tok = check_ascii(token, "token")
        client = self.client
        if self._error is not None and client.connected:
            self._error = None  # the client connected again: start afresh
        # Subscribe first: on XenBus the first event may come before the OK.
        client._subscribe(tok, self)

        def unwatch_late(reply: Packet) -> None:
            if reply.op == Op.WATCH:  # the server did add it: take it back
                client._send_nowait(commands.unwatch(path, tok))

        try:
            await client._call(commands.watch(path, tok), late_reply=unwatch_late)
        except BaseException:
            client._unsubscribe(tok, self)
            raise
        self._closed = False
        self.unwatch_queue.add((path, tok))
        client._monitors.add(self)

    async def unwatch(self, wpath: PathLike, token: PathLike) -> None:
        """Remove a watch added by :meth:`watch`."""
        path = validate_watch_path(wpath)
        tok = check_ascii(token, "token")
        try:
            await self.client._call(commands.unwatch(path, tok))
        except asyncio.CancelledError:
            self._forget(path, tok)  # sent: the server will remove it
            raise
        self._forget(path, tok)

    def _forget(self, path: bytes, token: bytes) -> None:
        if (path, token) in self.unwatch_queue:
            self.unwatch_queue.discard((path, token))
            self.client._unsubscribe(token, self)

    async def close(self) -> None:
        """Remove every watch of this monitor, drop the events not yet taken
        and end every wait (now and later, until the next :meth:`watch`).

        The UNWATCH requests are sent at once and not waited for (so this is
        safe in a cancelled task); the server handles them before anything
        sent later on the connection.
        """
        client = self.client
        for path, token in self.unwatch_queue:
            client._send_nowait(commands.unwatch(path, token))
            client._unsubscribe(token, self)
        self.unwatch_queue.clear()
        self._events.clear()
        self._closed = True
        client._monitors.discard(self)
        self._wake()

    def wake(self) -> None:
        """End the current (or the next) wait: ``next_event`` gives None."""
        self._woken = True
        self._wake()

    # -- events ------------------------------------------------------------

    def _deliver(self, event: WatchEvent) -> None:
        self._events.append(event)
        self._wake()

    def _wake(self) -> None:
        getters, self._getters = self._getters, []
        for getter in getters:
            if not getter.done():
                getter.set_result(None)

    def _fail(self, error: ConnectionError) -> None:
        self._error = error
        self.unwatch_queue.clear()
        self._wake()

    def _is_watched(self, event: WatchEvent) -> bool:
        # The sync Monitor's rule: the event's path is a watched path, or
        # below one, for the event's token.
        path, token = event
        for wpath, wtoken in self.unwatch_queue:
            if wtoken != token:
                continue
            if path == wpath or wpath == b"/":
                return True
            if path.startswith(wpath) and path[len(wpath) : len(wpath) + 1] == b"/":
                return True
            if wpath[:1] == b"@" and wpath.startswith(path + b"/"):
                return True
        return False

    async def _next(self) -> WatchEvent | None:
        while True:
            if self._events:
                return self._events.popleft()
            if self._woken:
                self._woken = False
                return None
            if self._closed:
                return None
            if self._error is not None:
                raise self._error
            if not self.client.connected:
                raise ConnectionError("not connected")
            getter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._getters.append(getter)
            await getter

    async def next_event(self, timeout: float | None = None) -> WatchEvent | None:
        """The next event of any of this monitor's tokens.

        Waits until one comes, ``timeout`` seconds pass (0 polls), or
        :meth:`wake` or :meth:`close` is called: those give None.

        :raises pyxs.exceptions.ConnectionError: the connection is closed or lost.
        """
        if timeout is None:
            return await self._next()
        if timeout <= 0:
            if self._events:
                return self._events.popleft()
            if self._error is not None and not self._closed:
                raise self._error
            return None
        try:
            return await asyncio.wait_for(self._next(), timeout)
        except asyncio.TimeoutError:
            return None

    async def wait(
        self, unwatched: bool = False, timeout: float | None = None
    ) -> AsyncIterator[WatchEvent]:
        """Yield events as they come (as the sync ``Monitor.wait``).

        :param unwatched: also yield events for paths no longer watched.
        :param timeout: end after this many seconds without an event.
        """
        while True:
            event = await self.next_event(timeout)
            if event is None:
                return
            if unwatched or self._is_watched(event):
                yield event

    def __aiter__(self) -> AsyncMonitor:
        return self

    async def __anext__(self) -> WatchEvent:
        # wait() as a plain iterator: cancelling one step (a timeout) leaves
        # the monitor and its queued events as they were.
        while True:
            event = await self._next()
            if event is None:
                raise StopAsyncIteration
            if self._is_watched(event):
                return event
