"""The asyncio client: one connection, any number of requests in flight.

Theory of operation
-------------------
:class:`AsyncClient` is the synchronous :class:`~pyxs.client.Client` with a
different way of moving bytes. Every operation comes from
:mod:`pyxs.commands` (the same :class:`~pyxs.commands.Command` objects, the
same procedures), and the connection state is a
:class:`~pyxs.protocol.ClientProtocol`: it allocates req_ids, matches
replies and tells watch events apart.

The operations themselves (``read``, ``list``, ``get_domain_path``...) are
written once, in :mod:`pyxs.operations`, for this client and the sync one;
this module says only how one is run.

*A call is a future.* An operation such as ``c.read(path)`` is a plain
method: it encodes its request, registers a :class:`ReplyFuture` under the
request's req_id, queues the bytes and returns the future, all at once.
``await``, :func:`asyncio.gather` and :func:`asyncio.wait_for` take it as it
is, so no task is made per call; the future is also a coroutine object, so
:func:`asyncio.create_task` (and ``TaskGroup.create_task``) take it too. An
error found before sending (a bad path, a closed connection) is raised when
the future is awaited, as from a coroutine. Unlike a coroutine, a call is
made when the method is called, awaited or not. The operations that must
act on their reply (a transaction's ``start`` and ``commit``, ``transact``,
a monitor's ``watch`` and ``unwatch``, ``reset_watches``) are coroutines.

*Sending* is batched. A call made while nothing else is in flight is
written at once (sequential use waits for nothing). Calls made while others
are in flight are queued in call order and written together once every
callback the event loop had scheduled when the first of them was queued has
run (two turns of the loop later), with one ``write`` (on the XenBus
device, one ``write()`` per message). So requests from any number of tasks
are pipelined on the one connection in the order they were made, and 1,000
calls in a ``gather`` cost two system calls. Why not on the next turn: a
call wrapped in a task (``create_task``; on Python 3.9 also
``ensure_future``, ``gather`` and ``wait_for``, which wrap whatever is a
coroutine before looking whether it is a future) hears that the task was
cancelled only at the task's first step, which the loop runs on its next
turn; by then the request must still be queued, to be taken back.

*Receiving* happens in one place, the transport's read callback (asyncio's
``data_received`` for a socket, a ``loop.add_reader`` callback for the
XenBus device): it feeds the bytes to the protocol, decodes each reply
(:meth:`Command.result <pyxs.commands.Command.result>`) into the result or
the exception of the future waiting for its req_id, and puts each watch
event in the queue of every :class:`AsyncMonitor` watching with its token
(the sync client's rule; ``async for`` then keeps the events of watched
paths). A procedure (``list``, ``exists``, :meth:`~AsyncClient.execute`)
is driven there too, by its :class:`~pyxs.commands.Driver`: each reply is
fed to it, and the next command it asks for is queued under the same
future. As everywhere, only the server's errors go into a procedure; a lost
connection or a cancellation closes it and settles the future. Replies and events of one
read are all dispatched before any waiting task runs, so when ``await
m.watch(...)`` returns, an initial event that came with the OK is queued.
There is no reader task and no task per request.

*Cancellation* never desynchronises the connection. Cancelling a future
(directly, through its task, a timeout or a cancelled ``gather``) takes its
request back if it is still queued, so nothing is sent; once sent, it tells
the protocol to drop the reply when it comes (:meth:`ClientProtocol.abandon`).
Where dropping is not enough the reply is handed to a *late-reply* callback
instead, whether it comes after the cancellation or came just before it: a
cancelled TRANSACTION_START aborts the transaction it turns out to have
started, a cancelled WATCH that succeeded is unwatched. A transaction whose
body raises (cancellation included) is rolled back with an abort that is
sent at once and not waited for; the daemon handles requests in order, so
nothing sent later on the connection can see the transaction's writes.

*Failure* is total and prompt: when the connection is lost or closed, every
pending call fails with :class:`pyxs.exceptions.ConnectionError`, and so
does every monitor once its queued events are consumed. A transport that
has failed (a write or read error) but not yet reported the loss fails the
connection the moment a call or a queued write meets it: nothing more is
written to it.

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
from collections.abc import AsyncIterator, Awaitable, Coroutine, Generator
from threading import get_ident
from typing import Any, Callable, NoReturn, TypeVar

from . import commands
from .client import Event
from .commands import DEFAULT_RETRIES, Command, Driver, Operation, RetryPolicy
from .connection import XenBusConnection, default_connection, open_xenbus_device
from .exceptions import (
    ConnectionError,
    PyXSError,
    TransactionConflictError,
)
from .monitors import NOTHING_YET, MonitorBase
from .operations import DomainOperations, Operations, TreeWalk, WalkEntry
from .paths import PathLike, check_ascii, validate_watch_path
from .protocol import ClientProtocol, Packet, WatchEvent
from .transports.asyncio import AsyncTransport, DeviceTransport, SocketTransport

__all__ = ["AsyncClient", "AsyncMonitor", "AsyncTransaction", "Event", "ReplyFuture"]

T = TypeVar("T")


# -- calls -------------------------------------------------------------------


class ReplyFuture(asyncio.Future[T], Coroutine[Any, Any, T]):
    """What an operation returns: an asyncio future for its result.

    Await it (``await c.read(path)``), gather it, bound it with
    :func:`asyncio.wait_for`; it is a coroutine object as well, so
    :func:`asyncio.create_task` takes it. Cancelling it abandons the call
    and leaves the connection in sync (see the module's notes).
    """

    # The client's bookkeeping. _slot: where its request sits in the
    # client's outbox (a count of requests queued on the connection).
    # _steps: the iterator of ``await self``, made when a task first steps it.
    __slots__ = (
        "_client",
        "_command",
        "_driver",
        "_late",
        "_req_id",
        "_slot",
        "_steps",
        "_tx_id",
    )

    _client: AsyncClient
    _command: Command[Any]
    _late: Callable[[Any], None] | None
    _driver: Driver[T] | None  # a procedure's; None for a plain command
    _req_id: int
    _slot: int
    _steps: Generator[Any, None, T]
    _tx_id: int

    def cancel(self, msg: Any | None = None) -> bool:
        if not super().cancel(msg):
            return False
        self._client._abandon(self)
        return True

    # -- the coroutine protocol ----------------------------------------------
    #
    # Why a future is also a coroutine: the documented API (docs/asyncio.rst)
    # lets asyncio.create_task() and TaskGroup.create_task() take a call, and
    # they take coroutines only. Being a future is what makes a call cheap:
    # await, gather (on Python 3.10+) and wait_for take a future as it is,
    # with no task per call (1,000 concurrent READs: 3.6 us of client CPU
    # each as futures, 9.5 us through create_task, measured 2026-12-07).
    # A task steps a coroutine with send() and is handed the future to wait
    # for: exactly what ``await self`` gives, so send() is that iterator's
    # (asyncio sets its own flags there).

    def send(self, value: None) -> Any:
        try:
            steps = self._steps
        except AttributeError:  # the first step: made only when a task runs the call
            steps = self._steps = self.__await__()
        return steps.send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> NoReturn:
        # Only a task (or close()) throws in: whatever it is, the call is off.
        if not self.done():
            self.cancel()
        if val is None:
            val = typ if isinstance(typ, BaseException) else typ()
        raise val

    def close(self) -> None:
        if not self.done():
            self.cancel()


# -- operations, shared by the client and its transactions -------------------

# (RBytes, RNone, RBool, RList) of pyxs.operations, for asyncio: futures of them.
_Bytes = ReplyFuture[bytes]
_None = ReplyFuture[None]
_Bool = ReplyFuture[bool]
_List = ReplyFuture[list[bytes]]


class _AsyncOperations(Operations[_Bytes, _None, _Bool, _List]):
    """How the operations of :mod:`pyxs.operations` run on asyncio: each
    returns a :class:`ReplyFuture`, and an error in its arguments is raised
    where the call is awaited, as from a coroutine."""

    def _submit(self, operation: Operation[T]) -> ReplyFuture[T]:
        raise NotImplementedError

    def _failed(self, error: Exception) -> ReplyFuture[Any]:
        raise NotImplementedError

    def _op(self, make: Callable[..., Operation[T]], *args: Any) -> ReplyFuture[T]:
        try:
            operation = make(*args)
        except Exception as exc:  # noqa: BLE001 - raised where the call is awaited
            return self._failed(exc)
        return self._submit(operation)

    def execute(self, operation: Operation[T]) -> ReplyFuture[T]:
        """Run a :mod:`pyxs.commands` command or procedure (as
        :meth:`pyxs.Client.execute` does, in this object's transaction if any)."""
        return self._submit(operation)

    async def walk(self, top: PathLike, topdown: bool = True) -> AsyncIterator[WalkEntry]:
        """``(path, value, children)`` for ``top`` and every node below it,
        as :meth:`pyxs.Client.walk` gives them."""
        walk = TreeWalk(top, topdown)
        for step in walk:
            if isinstance(step, tuple):
                yield step
            else:
                walk.answer(await self.execute(step))


# -- the client --------------------------------------------------------------


class AsyncClient(_AsyncOperations, DomainOperations[_Bytes, _None, _Bool, _List]):
    """A XenStore client for asyncio: the sync Client's methods, as awaitables.

    :param unix_socket_path: the xenstored socket (by default
        :func:`~pyxs.connection.default_socket_path`).
    :param xen_bus_path: use the XenBus device at this path instead (when no
        socket path is given). With neither, XenStore is found as the sync
        :class:`~pyxs.client.Client` finds it (libxenstore's rule, see
        :func:`~pyxs.connection.default_connection`), when connecting.

    Use it as ``async with AsyncClient() as c:``, or ``await c.connect()``
    and ``await c.close()``. Any number of tasks may use one client at once:
    their requests are pipelined on its one connection. Operations return
    a :class:`ReplyFuture` (or are coroutines): ``await`` them, gather them,
    or make tasks of them.
    """

    def __init__(
        self, unix_socket_path: str | None = None, xen_bus_path: str | None = None
    ) -> None:
        self.unix_socket_path = unix_socket_path
        self.xen_bus_path = xen_bus_path
        self._transport: AsyncTransport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = 0  # the loop's
        self._connecting: asyncio.Future[None] | None = None
        self._protocol = ClientProtocol()
        self._waiters: dict[int, ReplyFuture[Any]] = {}
        #: req_id -> the cancelled call whose reply must still be acted on
        self._late_replies: dict[int, ReplyFuture[Any]] = {}
        #: requests queued for the next write, and how many were queued before them
        self._outbox: list[bytes] = []
        self._queued = 0
        #: token -> the monitors watching with it (and how many watches each)
        self._subscribers: dict[bytes, dict[AsyncMonitor, int]] = {}
        self._monitors: set[AsyncMonitor] = set()

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
        self._thread = get_ident()
        self._protocol = ClientProtocol()
        xenbus = self._uses_xenbus()
        path = self.xen_bus_path if xenbus else self.unix_socket_path
        if not path:
            # Neither given: libxenstore's rule (the socket, else the device).
            default = default_connection()
            path = default.path
            xenbus = isinstance(default, XenBusConnection)
        self._connecting = loop.create_future()
        try:
            if xenbus:
                # Raises ConnectionError itself (and refuses a regular file).
                fd = open_xenbus_device(path, os.O_NONBLOCK)
                try:
                    self._transport = DeviceTransport(self, loop, fd)
                except BaseException:
                    os.close(fd)
                    raise
            else:
                await loop.create_unix_connection(lambda: SocketTransport(self, loop), path)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise ConnectionError(
                f"error connecting to {path!r}: {reason}", errno=exc.errno or errno.EIO
            ) from exc
        finally:
            self._connecting.set_result(None)
            self._connecting = None

    async def close(self) -> None:
        """Close the connection: pending calls fail with ConnectionError."""
        transport = self._transport
        if transport is None:
            return
        self._flush()  # aborts and unwatches sent on the way out
        self._fail(ConnectionError("the client was closed"))
        transport.abort()
        await asyncio.shield(transport.closed)

    async def __aenter__(self) -> AsyncClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- moving bytes ------------------------------------------------------

    def _op_outside(self, make: Callable[..., Operation[T]], *args: Any) -> ReplyFuture[T]:
        return self._op(make, *args)  # the client's _op is outside transactions already

    @property
    def _in_transaction(self) -> bool:
        return False

    def _call(
        self,
        operation: Operation[T],
        tx_id: int = 0,
        late: Callable[[T], None] | None = None,
    ) -> ReplyFuture[T]:
        """Send ``operation`` (a command, or a procedure's first command);
        the future of its result.

        ``late`` gets the result if the call is cancelled after it was sent
        and the reply turns out to be a success (START and WATCH must undo
        what they did).
        """
        loop = self._loop
        if self._transport is None:
            return self._failed(ConnectionError("not connected"))
        future: ReplyFuture[T] = ReplyFuture(loop=loop)
        future._client = self
        future._late = late
        future._tx_id = tx_id
        if operation.__class__ is Command:
            future._command = operation
            future._driver = None
        else:
            try:
                driver = Driver(operation)  # a procedure's arguments are checked here
            except Exception as exc:  # noqa: BLE001 - raised where the call is awaited
                future.set_exception(exc)
                return future
            future._command = driver.command
            future._driver = driver
        if get_ident() == self._thread:
            self._start(future)
        else:
            self._start_in_loop(future)
        return future

    _submit = _call  # the operations' calls are outside transactions

    def _start_in_loop(self, future: ReplyFuture[Any]) -> None:
        # Made outside the loop's thread (asyncio.run_coroutine_threadsafe
        # takes calls made in another thread, as it takes coroutine objects):
        # the request is made in the loop's thread, on its next turn. (Told
        # by thread id: asyncio.get_running_loop() costs more, a getpid()
        # on Python 3.11.)
        future._req_id = 0  # not in flight: cancelling it has nothing to take back

        def start() -> None:
            if not future.done():
                self._start(future)
            elif future._driver is not None:  # cancelled meanwhile
                future._driver.close()

        self._loop.call_soon_threadsafe(start)  # type: ignore[union-attr]

    def _start(self, future: ReplyFuture[Any]) -> None:
        """Send the request of ``future._command`` (or queue it)."""
        transport = self._transport
        if transport is None or transport.is_closing():
            self._settle(future, self._dead(transport))
            return
        command = future._command
        try:
            req_id, data = self._protocol.request(command.op, command.payload, future._tx_id)
        except ValueError as exc:  # InvalidPayload: over 4096 bytes
            self._settle(future, exc)
            return
        future._req_id = req_id
        waiters = self._waiters
        outbox = self._outbox
        if outbox or waiters:  # others are in flight: go with the next batch
            if not outbox:
                self._flush_soon()
            future._slot = self._queued + len(outbox)
            outbox.append(data)
            waiters[req_id] = future
            return
        # Alone: waiting for the loop's next turn would only add latency.
        waiters[req_id] = future
        future._slot = self._queued
        self._queued += 1
        transport.write(data)
        if transport.is_closing():  # the write failed
            self._dead(transport)

    def _settle(self, future: ReplyFuture[Any], error: Exception) -> None:
        """``future``'s call ends with ``error`` (not the server's answer:
        the driver's rule says a procedure is closed, not told)."""
        if future._driver is not None:
            future._driver.close()
        future.set_exception(error)

    def _failed(self, error: Exception) -> ReplyFuture[Any]:
        """A call that fails where it is awaited, as a coroutine would."""
        loop: asyncio.AbstractEventLoop | None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not in a loop's thread
            loop = self._loop
        if loop is None:
            raise error  # no event loop anywhere: nothing could await it
        future: ReplyFuture[Any] = ReplyFuture(loop=loop)
        future.set_exception(error)
        return future

    def _dead(self, transport: AsyncTransport | None) -> ConnectionError:
        """The error for a call that finds no usable connection.

        A transport that is closing failed (or saw the end of the stream)
        and has not told us yet: fail the connection now, so that nothing
        more is written to it (asyncio logs each write to a dead socket).
        """
        if transport is None:
            return ConnectionError("not connected")
        error = ConnectionError("the connection to XenStore was lost")
        self._fail(error)
        return error

    def _flush_soon(self) -> None:
        """Have :meth:`_flush` run once every callback scheduled by now has run.

        A task made around a call just queued (and perhaps cancelled at
        once) takes its first step, and only then hears of its cancellation,
        in the loop's next turn: the batch is written in the turn after, so
        that the call is still queued then, and is taken back.
        """
        loop = self._loop
        assert loop is not None
        loop.call_soon(loop.call_soon, self._flush)

    def _flush(self) -> None:
        """Write the requests queued since the last batch."""
        outbox = self._outbox
        if not outbox:
            return
        self._outbox = []
        self._queued += len(outbox)
        transport = self._transport
        if transport is None:
            return  # failed meanwhile: the calls have their error
        if transport.is_closing():
            self._dead(transport)
            return
        transport.writelines(outbox)
        if transport.is_closing():  # the write failed
            self._dead(transport)

    def _abandon(self, future: ReplyFuture[Any]) -> None:
        """``future`` was cancelled: take its request back, or drop its reply."""
        req_id = future._req_id
        if self._waiters.get(req_id) is not future:
            return  # not in flight (failed, or a procedure between steps)
        del self._waiters[req_id]
        position = future._slot - self._queued
        if position >= 0:  # still queued: it is never sent
            self._outbox[position] = b""
            self._protocol.forget(req_id)
        elif future._late is not None:
            self._late_replies[req_id] = future
        else:
            self._protocol.abandon(req_id)
        if future._driver is not None:
            future._driver.close()

    def _send_nowait(self, command: Command[Any], tx_id: int = 0) -> None:
        """Send ``command`` and drop its reply (aborts and unwatches on exit)."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        req_id, data = self._protocol.request(command.op, command.payload, tx_id)
        self._protocol.abandon(req_id)
        outbox = self._outbox
        if not outbox:
            self._flush_soon()
        outbox.append(data)

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
            future = waiters.pop(reply.req_id, None)
            if future is None:
                if self._late_replies:
                    self._late_reply(reply.req_id, reply)
                continue
            command = future._command
            if reply.op == command.op and future._driver is None:
                try:
                    value = command.decode(reply.payload)
                except Exception as exc:  # noqa: BLE001 - the call's outcome
                    future.set_exception(exc)
                else:
                    future.set_result(value)
            else:  # an error reply, or a procedure's step
                self._resolve(future, reply)
        if events:
            subscribers = self._subscribers
            for event in events:
                for monitor in subscribers.get(event.token, ()):
                    monitor._deliver(event)

    def _resolve(self, future: ReplyFuture[Any], reply: Packet) -> None:
        """``reply`` answers ``future``'s request: settle it, or send the
        next request of its procedure (the driver decides, by its rule)."""
        driver = future._driver
        try:
            if driver is None:
                value = future._command.result(reply)
            elif driver.feed(reply):
                value = driver.result
            else:
                future._command = driver.command
                self._start(future)
                return
        except Exception as exc:  # noqa: BLE001 - the call's outcome
            future.set_exception(exc)
        else:
            future.set_result(value)

    def _late_reply(self, req_id: int, reply: Packet) -> None:
        future = self._late_replies.pop(req_id, None)
        if future is None or future._late is None:
            return
        try:
            value = future._command.result(reply)
        except Exception:  # noqa: BLE001 - it did nothing: nothing to undo
            return
        future._late(value)

    def _connection_lost(self, transport: object, exc: BaseException | None) -> None:
        if transport is not self._transport:
            return  # closed by us, or already failed
        reason = f": {exc}" if exc else ""
        error = ConnectionError(f"the connection to XenStore was lost{reason}")
        error.__cause__ = exc
        self._fail(error)

    def _fail(self, error: ConnectionError) -> None:
        """The connection is over: fail every pending call and monitor."""
        self._transport = None
        self._queued += len(self._outbox)
        self._outbox = []
        waiters, self._waiters = self._waiters, {}
        self._late_replies = {}
        for future in waiters.values():
            if not future.done():
                self._settle(future, error)
        waiters.clear()  # a _data_received under way must find none of them
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

    def _undo(self, future: ReplyFuture[Any]) -> None:
        """The task awaiting ``future`` (made with ``late``) was cancelled:
        if the reply came before the task could take it, undo it now."""
        late = future._late
        if future.done() and not future.cancelled() and future.exception() is None and late:
            late(future.result())

    async def _call_undoable(self, command: Command[T], tx_id: int, late: Callable[[T], None]) -> T:
        """``await self._call(command, tx_id, late)``, undone if cancelled late."""
        future = self._call(command, tx_id, late)
        try:
            return await future
        except asyncio.CancelledError:
            self._undo(future)
            raise

    # -- the rest of XenStore (the operations are pyxs.operations') ----------

    async def reset_watches(self) -> None:
        """Drop every watch and transaction of this connection.

        Monitors sharing the connection forget their watches too.
        """
        await self._call(commands.reset_watches())
        self._subscribers = {}
        for monitor in self._monitors:
            monitor.unwatch_queue.clear()

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
        policy = RetryPolicy(retries)
        while True:
            try:
                async with self.transaction() as t:
                    return await fn(t, *args, **kwargs)
            except TransactionConflictError:
                pass
            policy.conflicted()

    # -- watches -----------------------------------------------------------

    def monitor(self) -> AsyncMonitor:
        """A new :class:`AsyncMonitor` on this client's connection."""
        return AsyncMonitor(self)


# -- transactions ------------------------------------------------------------


class AsyncTransaction(_AsyncOperations):
    """One transaction: the client's data operations, inside it.

    Made by :meth:`AsyncClient.transaction`. Operations on a transaction
    that has not started or has ended raise PyXSError; on one that was lost
    with its connection (the client closed or lost it, and may have
    connected again), ConnectionError.
    """

    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        #: The server's id of the transaction (0 until it started).
        self.tx_id = 0
        self._ended = False
        #: The client's transport (its connection) when START was sent.
        self._session: object = None

    def __repr__(self) -> str:
        if self._ended:
            state = "ended"
        elif not self.tx_id:
            state = "not started"
        else:
            state = "open" if self._session is self.client._transport else "lost"
        return f"AsyncTransaction({self.tx_id}, {state})"

    def __await__(self) -> Generator[Any, None, AsyncTransaction]:
        return self.start().__await__()

    async def start(self) -> AsyncTransaction:
        """Start the transaction (``async with`` and ``await`` do this)."""
        if self.tx_id or self._ended:
            raise PyXSError("the transaction was started already")
        client = self.client
        # Transaction ids are numbered per connection: the id is only
        # meaningful on the connection it came from.
        self._session = client._transport
        self.tx_id = await client._call_undoable(commands.transaction_start(), 0, self._abort_late)
        return self

    def _abort_late(self, tx_id: int) -> None:
        # START was cancelled after it was sent: end what it turns out to have started.
        if self._session is self.client._transport:
            self.client._send_nowait(commands.transaction_end(False), tx_id)

    def _not_open(self) -> PyXSError:
        if self._ended:
            return PyXSError("the transaction has ended")
        if self.tx_id:
            # After a reconnect the old id may name a transaction of the new
            # connection: nothing of this one may be sent there.
            return ConnectionError(
                f"transaction {self.tx_id} was lost with its connection; "
                "end it (rollback) and start again"
            )
        return PyXSError("the transaction has not started")

    def _is_open(self) -> bool:
        """Started, not ended, and on the client's current connection."""
        return bool(self.tx_id) and not self._ended and self._session is self.client._transport

    @property
    def _in_transaction(self) -> bool:
        return True

    def _submit(self, operation: Operation[T]) -> ReplyFuture[T]:
        if not self._is_open():
            return self._failed(self._not_open())
        return self.client._call(operation, self.tx_id)

    def _failed(self, error: Exception) -> ReplyFuture[Any]:
        return self.client._failed(error)

    def _end(self, commit: bool) -> ReplyFuture[None]:
        if not self._is_open():
            error = self._not_open()
            if self.tx_id:
                self._ended = True  # a lost one is over too
            return self._failed(error)
        self._ended = True
        return self.client._call(commands.transaction_end(commit), self.tx_id)

    async def commit(self) -> bool:
        """Commit; False when it conflicted (EAGAIN): nothing of it was applied."""
        try:
            await self._end(True)
        except TransactionConflictError:
            return False
        return True

    def rollback(self) -> ReplyFuture[None]:
        """Abort: nothing of the transaction is applied."""
        return self._end(False)

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
            # the server handles it before anything sent later. Not for a
            # transaction lost with its connection: its id may be another's.
            self._ended = True
            if self._session is self.client._transport:
                self.client._send_nowait(commands.transaction_end(False), self.tx_id)


# -- watches -----------------------------------------------------------------


class AsyncMonitor(MonitorBase):
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
        super().__init__()
        self.client = client
        self._getters: list[asyncio.Future[None]] = []
        self._error: ConnectionError | None = None
        client._monitors.add(self)

    def __repr__(self) -> str:
        return f"AsyncMonitor({self.client!r})"

    async def __aenter__(self) -> AsyncMonitor:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

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

        def unwatch_late(_: None) -> None:  # the server did add it: take it back
            client._send_nowait(commands.unwatch(path, tok))

        try:
            await client._call_undoable(commands.watch(path, tok), 0, unwatch_late)
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

    async def _next(self) -> WatchEvent | None:
        while True:
            found = self._take()
            if found is not NOTHING_YET:
                return found
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
