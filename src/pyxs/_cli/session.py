"""One connection for one ``pyxs`` run: choosing it, and pipelining over it.

Theory of operation
-------------------
A command-line run is short and single-threaded, so it does not need the
threaded :class:`pyxs.Client`: :class:`Session` runs the sans-I/O pieces
itself, :class:`~pyxs.protocol.ClientProtocol` for the bytes and
:class:`~pyxs.commands.Driver` for each operation, over one transport of
:mod:`pyxs.transports.sync`. What it adds is *pipelining*:
:meth:`Session.submit` queues an operation (a
:class:`~pyxs.commands.Command` or a multi-step procedure such as
``list_children``) with a callback, and the session keeps many requests in
flight at once, so a tree walk costs one round trip per batch instead of
one per request. Replies come back in request order on one connection;
each is routed to its operation by req_id, a procedure's next command goes
to the front of the queue, and the callback gets ``(result, None)`` or
``(None, error)``: the error being the server's answer
(:class:`~pyxs.exceptions.XenStoreError`) or a local one (a bad path, E2BIG
for a request too big to send). Anything else (an UnexpectedPacket, a lost
connection) ends the run: it propagates out of :meth:`Session.step`.

Two limits keep a batch from blocking: at most :attr:`window` requests and
:data:`MAX_INFLIGHT_BYTES` of request bytes are in flight. A server that
stops reading while its replies pile up (the embedded server pauses reading
when its write buffer is full) therefore never leaves ``send`` blocked
while nobody reads the replies. Reads ask the transport for every byte the
replies still owed will take at least (:meth:`recv_due
<pyxs.transports.sync.PacketConnection.recv_due>`): a socket waits for a
whole batch in one system call.

The XenBus device takes one message per write() and answers WATCH itself,
so over it the window is one request and every packet is its own write.

Transport choice is libxenstore's ``xs_open()``
(:func:`~pyxs.transports.sync.default_connection`): the socket
(``$XENSTORED_PATH``, else ``$XENSTORED_RUNDIR/socket``, else
``/var/run/xenstored/socket``), then the XenBus device; unlike libxenstore, a
path that is neither a socket nor a character device is refused rather than
opened for writing. ``--socket`` and ``--xenbus`` name one transport. When
none can be opened, the message names the path a user most likely meant:
the first one where something is.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from .. import commands
from ..commands import Command, Driver
from ..exceptions import (
    ConnectionError,
    InvalidPayload,
    PyXSError,
    TransactionConflictError,
    XenStoreError,
    error_for_errno,
)
from ..protocol import HEADER_SIZE, PAYLOAD_MAX, ClientProtocol, WatchEvent
from ..transports.discovery import default_xenbus_path
from ..transports.sync import (
    PacketConnection,
    UnixSocketConnection,
    Unreachable,
    XenBusConnection,
    default_connection,
)

__all__ = ["CannotConnect", "Session", "connect"]

T = TypeVar("T")
if TYPE_CHECKING:  # annotations only
    #: ``callback(result, None)`` or ``callback(None, error)``
    Callback = Callable[[Any, BaseException | None], None]
    #: An operation queued or in flight: its command now, the callback, its
    #: transaction, its Driver when it is a procedure (None for a Command),
    #: and the size of its request.
    _Queued = tuple[Command[Any], Callback, int, Driver[Any] | None, int]

#: Requests in flight at most (sockets). Measured on a 10,000-node ls: 32-64
#: is best; larger windows let replies pile up in the socket and cost
#: xenstored extra polls.
WINDOW = 64
#: Request bytes in flight at most: well under a Unix socket's buffer.
MAX_INFLIGHT_BYTES = 64 * 1024
#: The most one read takes.
_READ_SIZE = 1 << 18
#: The least bytes a reply takes (its header).
_REPLY_MIN = 16


class CannotConnect(ConnectionError):
    """No XenStore could be reached (exit status 4)."""


def _mode(path: str) -> int:
    """What is at ``path`` (its ``st_mode``); 0 where nothing is."""
    try:
        return os.stat(path).st_mode
    except OSError:
        return 0


def _reason(error: ConnectionError, mode: int, device: bool) -> str:
    """Why opening a path failed, as ``strerror`` says it; for a ``device``,
    what is there instead when that is what is wrong with it."""
    cause = error.__cause__
    if device and stat.S_ISSOCK(mode):
        return "a socket, not a XenBus device (use --socket)"
    if device and mode and not stat.S_ISCHR(mode) and not isinstance(cause, OSError):
        return "not a socket or a character device"  # refused, not failed
    return getattr(cause, "strerror", None) or str(error)


def _message(path: str, transport: PacketConnection | None, error: ConnectionError) -> str:
    """The message for a transport that could not be opened."""
    mode = _mode(path)
    device = isinstance(transport, XenBusConnection)
    reason = _reason(error, mode, device)
    if device and stat.S_ISCHR(mode):
        return f"cannot open XenBus device {path}: {reason}"
    return f"cannot connect to XenStore at {path}: {reason}"


def _open_socket(path: str) -> PacketConnection:
    conn = UnixSocketConnection(path)
    try:
        conn.connect()
    except ConnectionError as exc:
        raise CannotConnect(_message(path, conn, exc)) from None
    return conn


def _open_xenbus(path: str | None) -> PacketConnection:
    """``--xenbus[=PATH]``: the device at PATH, else libxenstore's.

    On Linux libxenstore's is /proc/xen/xenbus only when /dev/xen/xenbus is
    missing: when neither exists, the message names the modern one first."""
    device = path or default_xenbus_path()
    conn = XenBusConnection(device)
    try:
        conn.connect()
    except ConnectionError as exc:
        reason = _reason(exc, _mode(device), device=True)
        if path is None and device == "/proc/xen/xenbus" and not os.path.exists(device):
            raise CannotConnect(
                f"cannot open XenBus device /dev/xen/xenbus: {reason} (nor {device})"
            ) from None
        raise CannotConnect(f"cannot open XenBus device {device}: {reason}") from None
    return conn


def connect(socket_path: str | None = None, xenbus: str | bool | None = None) -> PacketConnection:
    """Open the transport chosen by ``--socket``/``--xenbus``, else as libxenstore does."""
    if socket_path:
        return _open_socket(socket_path)
    if xenbus:
        return _open_xenbus(xenbus if isinstance(xenbus, str) else None)
    try:
        return default_connection(connect=True)
    except Unreachable as exc:
        attempts = exc.attempts
        # the first path where something is, else the first (the socket)
        path, transport, error = next((a for a in attempts if a[1] is not None), attempts[0])
        raise CannotConnect(_message(path, transport, error)) from None


def _lost(exc: ConnectionError) -> ConnectionError:
    """The transport's failure, as the ``pyxs`` command words it."""
    cause = exc.__cause__
    if isinstance(cause, OSError):
        message = f"connection to XenStore failed: {cause.strerror or cause}"
    else:
        message = "XenStore closed the connection"
    return ConnectionError(message, errno=exc.errno)


class Session:
    """A pipelined request engine over one transport (see the module docstring)."""

    def __init__(self, conn: PacketConnection, window: int | None = None) -> None:
        self.conn = conn
        #: a stream (a socket): requests may share a write
        self._stream = not conn.needs_poll
        self.window = window or (WINDOW if self._stream else 1)
        self._protocol = ClientProtocol()
        self.events: deque[WatchEvent] = deque()
        self._queue: deque[_Queued] = deque()
        #: req_id -> the operation waiting for its reply (as it was queued)
        self._waiting: dict[int, _Queued] = {}
        self._inflight_bytes = 0
        #: requests encoded and not sent yet
        self._outbox: list[bytes] = []

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- submitting ---------------------------------------------------------

    def submit(self, operation: commands.Operation[Any], callback: Callback, tx: int = 0) -> None:
        """Queue ``operation``; ``callback(result, error)`` runs when it is done.

        A request too big for XenStore fails as libxenstore fails it: E2BIG,
        without being sent. A procedure's local error (a bad path) goes to
        the callback at once.
        """
        driver: Driver[Any] | None = None
        if isinstance(operation, Command):
            command: Command[Any] = operation
        else:
            try:
                driver = Driver(operation)
            except PyXSError as exc:
                callback(None, exc)
                return
            command = driver.command
        size = len(command.payload)
        if size > PAYLOAD_MAX:
            if driver is not None:
                driver.close()
            callback(None, error_for_errno(errno.E2BIG))
            return
        self._queue.append((command, callback, tx, driver, HEADER_SIZE + size))

    def submit_many(
        self, items: Iterable[tuple[Command[Any], bytes, Callback]], tx: int = 0
    ) -> None:
        """:meth:`submit` each ``(command, payload, callback)``, in order: the
        request is ``command``'s op with ``payload`` (``command.payload`` or
        the same op's payload for another path the caller has checked), and
        its reply is decoded by ``command``'s rule.

        While the window has room, the requests are encoded at once (and
        sent together by the next :meth:`step`): the tree walk's way, one call
        per batch of nodes, and no Command made per request.
        """
        waiting = self._waiting
        out = self._outbox
        request = self._protocol.request
        room = 0 if self._queue else self.window - len(waiting)
        inflight = self._inflight_bytes
        for command, payload, callback in items:
            if room <= 0 or inflight >= MAX_INFLIGHT_BYTES:
                self._inflight_bytes = inflight
                if payload is not command.payload:
                    command = Command(command.op, payload, command.decode)
                self.submit(command, callback, tx)  # queued, behind what is there
                inflight = self._inflight_bytes
                room = 0
                continue
            try:
                req_id, data = request(command.op, payload, tx)
            except InvalidPayload:  # over PAYLOAD_MAX
                self._inflight_bytes = inflight  # the callback may submit too
                callback(None, error_for_errno(errno.E2BIG))
                inflight = self._inflight_bytes
                continue
            size = len(data)
            inflight += size
            room -= 1
            waiting[req_id] = (command, callback, tx, None, size)
            out.append(data)
        self._inflight_bytes = inflight

    @property
    def busy(self) -> bool:
        """Whether anything is queued or in flight."""
        return bool(self._queue or self._waiting)

    @property
    def queued(self) -> int:
        """Operations submitted and not sent yet."""
        return len(self._queue)

    def room(self) -> int:
        """How many more requests the window would send now (0 while the
        request bytes in flight are at their limit)."""
        if self._inflight_bytes >= MAX_INFLIGHT_BYTES:
            return 0
        return self.window - len(self._waiting) - len(self._queue)

    # -- moving bytes -------------------------------------------------------

    def _send(self) -> None:
        """Encode what the window lets go of the queue; send what is encoded."""
        queue = self._queue
        waiting = self._waiting
        out = self._outbox
        room = self.window - len(waiting)
        if queue and room > 0:
            request = self._protocol.request
            inflight = self._inflight_bytes
            for _ in range(min(room, len(queue))):
                if inflight >= MAX_INFLIGHT_BYTES:
                    break
                item = queue.popleft()
                command = item[0]
                req_id, data = request(command.op, command.payload, item[2])
                inflight += item[4]
                waiting[req_id] = item
                out.append(data)
            self._inflight_bytes = inflight
        if not out:
            return
        try:
            if self._stream:
                self.conn.send(out[0] if len(out) == 1 else b"".join(out))
            else:
                for data in out:
                    self.conn.send(data)
        except ConnectionError as exc:
            raise _lost(exc) from exc
        finally:
            out.clear()

    def _receive(self) -> None:
        # Every reply still owed is at least a header: the transport may wait
        # for that much at once.
        due = _REPLY_MIN * len(self._waiting) - self._protocol.buffered
        try:
            data = self.conn.recv_due(_READ_SIZE, due)
        except ConnectionError as exc:
            raise _lost(exc) from exc
        replies, events = self._protocol.receive(data)
        if events:
            self.events.extend(events)
        waiting = self._waiting
        queue = self._queue
        for packet in replies:
            command, callback, tx, driver, size = waiting.pop(packet.req_id)
            self._inflight_bytes -= size
            if driver is None:
                if packet.op == command.op:  # Command.result's common case, inlined
                    callback(command.decode(packet.payload), None)
                    continue
                try:
                    result = command.result(packet)
                except XenStoreError as exc:
                    callback(None, exc)
                    continue
                callback(result, None)
                continue
            try:
                done = driver.feed(packet)
            except XenStoreError as exc:
                callback(None, exc)
                continue
            if done:
                callback(driver.result, None)
            else:  # the procedure's next request goes first
                command = driver.command
                size = HEADER_SIZE + len(command.payload)
                queue.appendleft((command, callback, tx, driver, size))

    def step(self) -> None:
        """Send what the window allows, then handle one read's worth of replies."""
        self._send()
        if not self._waiting:
            raise RuntimeError("nothing to wait for")
        self._receive()

    def drain(self) -> None:
        """Run until every submitted operation is done."""
        while self.busy:
            self.step()

    # -- one at a time --------------------------------------------------------

    def call(self, operation: commands.Operation[T], tx: int = 0) -> T:
        """Run one operation (after everything already queued) and return its result."""
        box: list[tuple[Any, BaseException | None]] = []
        self.submit(operation, lambda result, error: box.append((result, error)), tx)
        while not box:
            self.step()
        result, error = box[0]
        if error is not None:
            raise error
        value: T = result
        return value

    def call_many(self, operations: list[commands.Operation[Any]], tx: int = 0) -> list[Any]:
        """Run operations pipelined; a list of results or exceptions, in order."""
        results: list[Any] = [None] * len(operations)

        def done(index: int) -> Callback:
            def callback(result: Any, error: BaseException | None) -> None:
                results[index] = result if error is None else error

            return callback

        for index, operation in enumerate(operations):
            self.submit(operation, done(index), tx)
        self.drain()
        return results

    def transaction(self, body: Callable[[int], int]) -> int:
        """Run ``body(tx_id) -> status`` in a transaction, as xenstore-utils does.

        Status 0 commits, anything else aborts. A commit that conflicts
        (EAGAIN) runs ``body`` again, forever, as the C tools do
        (:class:`~pyxs.commands.RetryPolicy` without a limit).
        """
        policy = commands.RetryPolicy(None)
        while True:
            tx = self.call(commands.transaction_start())
            try:
                status = body(tx)
            except BaseException:
                try:
                    self.drain()
                    self.call(commands.transaction_end(False), tx)
                except PyXSError:
                    pass
                raise
            self.drain()
            try:
                self.call(commands.transaction_end(status == 0), tx)
            except TransactionConflictError:
                if status != 0:
                    raise
                policy.conflicted()
                continue
            return status

    # -- watch events ---------------------------------------------------------

    def next_event(self) -> WatchEvent:
        """Block until a watch event arrives (replies are handled meanwhile)."""
        events = self.events
        while not events:
            self._send()
            self._receive()
        return events.popleft()
