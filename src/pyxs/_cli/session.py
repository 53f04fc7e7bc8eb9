"""One connection for one ``pyxs`` run: choosing it, and pipelining over it.

Theory of operation
-------------------
A command-line run is short and single-threaded, so it does not need the
threaded :class:`pyxs.Client`: :class:`Session` drives the sans-I/O
:class:`~pyxs.protocol.ClientProtocol` over one transport itself. What it
adds is *pipelining*: :meth:`Session.submit` queues an operation (a
:class:`~pyxs.commands.Command` or a multi-step procedure such as
``list_children``) with a callback, and the session keeps many requests in
flight at once, so a tree walk costs one round trip per batch instead of
one per request. Replies come back in request order on one connection;
each is routed to its task by req_id, a procedure's next command goes to the
front of the queue, and the callback gets ``(result, None)`` or
``(None, error)``.

Two limits keep a batch from blocking: at most :attr:`window` requests and
:data:`MAX_INFLIGHT_BYTES` of request bytes are in flight. A server that
stops reading while its replies pile up (the embedded server pauses reading
when its write buffer is full) therefore never leaves ``sendall`` blocked
while nobody reads the replies.

The XenBus device takes one message per write() and answers WATCH itself,
so over it the window is one request and every packet is its own write.

Transport choice follows libxenstore's ``xs_open()``: ``$XENSTORED_PATH``
(a socket, or a character device used as XenBus), else
``$XENSTORED_RUNDIR/socket``, else ``/var/run/xenstored/socket``; if that
is not there, the XenBus device. Unlike libxenstore, a path that is neither
a socket nor a character device is refused rather than opened for writing.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from collections import deque
from typing import Any, Callable, Optional, TypeVar

from .. import commands
from ..commands import Command
from ..connection import (
    PacketConnection,
    UnixSocketConnection,
    XenBusConnection,
    default_socket_path,
    default_xenbus_path,
)
from ..exceptions import (
    ConnectionError,
    PyXSError,
    TransactionConflictError,
    XenStoreError,
    error_for_errno,
)
from ..protocol import PAYLOAD_MAX, ClientProtocol, Packet, WatchEvent

__all__ = ["CannotConnect", "Session", "connect"]

T = TypeVar("T")
Callback = Callable[[Any, Optional[BaseException]], None]

#: Requests in flight at most (sockets). Measured on a 10,000-node ls: 32-64
#: is best; larger windows let replies pile up in the socket and cost
#: xenstored extra polls.
WINDOW = 64
#: Request bytes in flight at most: well under a Unix socket's buffer.
MAX_INFLIGHT_BYTES = 64 * 1024


class CannotConnect(ConnectionError):
    """No XenStore could be reached (exit status 4)."""


def _kind(path: str) -> tuple[str, str]:
    """('socket'|'chardev'|'other'|'missing', reason) for a path."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return "missing", exc.strerror or str(exc)
    if stat.S_ISSOCK(mode):
        return "socket", ""
    if stat.S_ISCHR(mode):
        return "chardev", ""
    return "other", "not a socket or a character device"


def _open_socket(path: str) -> PacketConnection:
    conn = UnixSocketConnection(path)
    try:
        conn.connect()
    except ConnectionError as exc:
        cause = exc.__cause__
        reason = getattr(cause, "strerror", None) or str(exc)
        raise CannotConnect(f"cannot connect to XenStore at {path}: {reason}") from None
    return conn


def _open_xenbus(path: str) -> PacketConnection:
    kind, reason = _kind(path)
    if kind != "chardev":
        if kind == "socket":
            reason = "a socket, not a XenBus device (use --socket)"
        raise CannotConnect(f"cannot open XenBus device {path}: {reason}")
    conn = XenBusConnection(path)
    try:
        conn.connect()
    except ConnectionError as exc:
        reason = getattr(exc.__cause__, "strerror", None) or str(exc)
        raise CannotConnect(f"cannot open XenBus device {path}: {reason}") from None
    return conn


def _default_xenbus() -> str:
    """libxenstore's device (:func:`default_xenbus_path`), which must exist.

    On Linux that is /proc/xen/xenbus only when /dev/xen/xenbus is missing:
    when neither exists, say so naming the modern one first."""
    device = default_xenbus_path()
    kind, reason = _kind(device)
    if kind == "missing" and device == "/proc/xen/xenbus":
        raise CannotConnect(f"cannot open XenBus device /dev/xen/xenbus: {reason} (nor {device})")
    return device


def connect(socket_path: str | None = None, xenbus: str | bool | None = None) -> PacketConnection:
    """Open the transport chosen by ``--socket``/``--xenbus``, else as libxenstore does."""
    if socket_path:
        return _open_socket(socket_path)
    if xenbus:
        return _open_xenbus(xenbus if isinstance(xenbus, str) else _default_xenbus())
    path = default_socket_path()
    kind, reason = _kind(path)
    if kind == "socket":
        return _open_socket(path)
    if kind == "chardev":  # $XENSTORED_PATH naming the XenBus device
        return _open_xenbus(path)
    if kind == "other":
        raise CannotConnect(f"cannot connect to XenStore at {path}: {reason}")
    if not os.environ.get("XENSTORED_PATH"):
        device = default_xenbus_path()
        if _kind(device)[0] == "chardev":
            return _open_xenbus(device)
    raise CannotConnect(f"cannot connect to XenStore at {path}: {reason}")


class _Task:
    """One submitted operation: its current command and what to do next."""

    __slots__ = ("callback", "command", "procedure", "size", "tx")

    def __init__(self, command: Command[Any], procedure: Any, tx: int, callback: Callback) -> None:
        self.command = command
        self.procedure = procedure
        self.tx = tx
        self.callback = callback
        self.size = 0


def _lost(exc: OSError) -> ConnectionError:
    return ConnectionError(f"connection to XenStore failed: {exc.strerror or exc}")


class Session:
    """A pipelined request engine over one transport (see the module docstring)."""

    def __init__(self, conn: PacketConnection, window: int | None = None) -> None:
        self.conn = conn
        self.stream = not conn.needs_poll  # a socket: batches may share a write
        self.window = window or (WINDOW if self.stream else 1)
        self.protocol = ClientProtocol()
        self.events: deque[WatchEvent] = deque()
        self._queue: deque[_Task] = deque()
        #: req_id -> the _Task waiting for it, or a raw handler(packet)
        self.waiting: dict[int, Any] = {}
        self._inflight_bytes = 0
        #: encoded requests not sent yet (see raw())
        self.outbox: list[bytes] = []
        #: raw requests waiting for room in the window: (op, payload, tx, handler)
        self._raw_queue: deque[tuple[int, bytes, int, Callable[[Packet], None]]] = deque()
        self._sock: socket.socket | None = None
        if self.stream:
            # A socket object of our own on the same connection, for
            # MSG_WAITALL reads (the transport's recv() takes no flags).
            self._sock = socket.fromfd(conn.fileno(), socket.AF_UNIX, socket.SOCK_STREAM)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self.conn.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- submitting ---------------------------------------------------------

    def submit(self, operation: commands.Operation[Any], callback: Callback, tx: int = 0) -> None:
        """Queue ``operation``; ``callback(result, error)`` runs when it is done.

        A request too big for XenStore fails as libxenstore fails it: E2BIG,
        without being sent.
        """
        if isinstance(operation, Command):
            if len(operation.payload) > PAYLOAD_MAX:
                callback(None, error_for_errno(errno.E2BIG))
                return
            self._queue.append(_Task(operation, None, tx, callback))
            return
        try:
            first = next(operation)
        except StopIteration as stop:
            callback(stop.value, None)
        except PyXSError as exc:  # a local error (bad path) from the procedure
            callback(None, exc)
        else:
            if len(first.payload) > PAYLOAD_MAX:
                operation.close()
                callback(None, error_for_errno(errno.E2BIG))
                return
            self._queue.append(_Task(first, operation, tx, callback))

    def submit_started(
        self, procedure: Any, command: Command[Any], callback: Callback, tx: int = 0
    ) -> None:
        """Queue a procedure that has already yielded ``command``."""
        self._queue.append(_Task(command, procedure, tx, callback))

    def raw(self, op: int, payload: bytes, tx: int, handler: Callable[[Packet], None]) -> None:
        """Encode a request now; ``handler(reply_packet)`` gets its reply.

        For hot loops (the tree walk) that decode replies themselves. The
        caller keeps within :attr:`window` and :data:`MAX_INFLIGHT_BYTES`.
        """
        req_id, data = self.protocol.request(op, payload, tx)
        self.waiting[req_id] = handler
        self.outbox.append(data)

    def raw_later(
        self, op: int, payload: bytes, tx: int, handler: Callable[[Packet], None]
    ) -> None:
        """As :meth:`raw`, but sent when the window has room."""
        self._raw_queue.append((op, payload, tx, handler))

    @property
    def busy(self) -> bool:
        """Whether anything is queued or in flight."""
        return bool(self._queue or self.waiting or self.outbox or self._raw_queue)

    @property
    def queued(self) -> int:
        """Operations submitted and not sent yet."""
        return len(self._queue)

    # -- moving bytes -------------------------------------------------------

    def _send(self) -> None:
        queue = self._queue
        waiting = self.waiting
        out = self.outbox
        raw_queue = self._raw_queue
        while raw_queue and len(waiting) < self.window:
            op, payload, tx, handler = raw_queue.popleft()
            req_id, data = self.protocol.request(op, payload, tx)
            waiting[req_id] = handler
            out.append(data)
        if queue and len(waiting) < self.window:
            request = self.protocol.request
            limit = self.window
            inflight = self._inflight_bytes
            while queue and len(waiting) < limit and inflight < MAX_INFLIGHT_BYTES:
                task = queue.popleft()
                command = task.command
                req_id, data = request(command.op, command.payload, task.tx)
                task.size = len(data)
                inflight += task.size
                waiting[req_id] = task
                out.append(data)
            self._inflight_bytes = inflight
        if not out:
            return
        sock = self._sock
        if sock is not None:
            data = out[0] if len(out) == 1 else b"".join(out)
            out.clear()
            try:
                sock.sendall(data)
            except OSError as exc:
                raise _lost(exc) from exc
        else:
            for data in out:
                self.conn.send(data)
            out.clear()

    def _recv(self) -> bytes:
        sock = self._sock
        if sock is None:
            return self.conn.recv(1 << 18)
        # Every reply still due is at least a 16-byte header: wait for that
        # many bytes in one system call rather than waking up per reply.
        need = 16 * len(self.waiting) - self.protocol.buffered
        try:
            if need <= 16:
                data = sock.recv(1 << 18)
            else:
                data = sock.recv(need, socket.MSG_WAITALL)
                if len(data) == need:
                    try:
                        data += sock.recv(1 << 18, socket.MSG_DONTWAIT)
                    except BlockingIOError:
                        pass
        except OSError as exc:
            raise _lost(exc) from exc
        if not data:
            raise ConnectionError("XenStore closed the connection")
        return data

    def _receive(self) -> None:
        replies, events = self.protocol.receive(self._recv())
        if events:
            self.events.extend(events)
        waiting = self.waiting
        for packet in replies:
            entry = waiting.pop(packet.req_id)
            if entry.__class__ is _Task:
                self._inflight_bytes -= entry.size
                self._advance(entry, packet)
            else:
                entry(packet)

    def _advance(self, task: _Task, packet: Packet) -> None:
        try:
            result = task.command.result(packet)
        except XenStoreError as exc:
            if task.procedure is None:
                task.callback(None, exc)
                return
            self._resume(task, None, exc)
            return
        if task.procedure is None:
            task.callback(result, None)
        else:
            self._resume(task, result, None)

    def _resume(self, task: _Task, result: Any, error: BaseException | None) -> None:
        try:
            procedure = task.procedure
            command = procedure.send(result) if error is None else procedure.throw(error)
        except StopIteration as stop:
            task.callback(stop.value, None)
        except XenStoreError as exc:
            task.callback(None, exc)
        else:
            task.command = command
            self._queue.appendleft(task)

    def step(self) -> None:
        """Send what the window allows, then handle one read's worth of replies."""
        self._send()
        if not self.waiting:
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

    def transaction(self, body: Callable[[int], int], retries: int | None = None) -> int:
        """Run ``body(tx_id) -> status`` in a transaction, as xenstore-utils does.

        Status 0 commits, anything else aborts. A commit that conflicts
        (EAGAIN) runs ``body`` again (forever by default, as the C tools do).
        """
        attempt = 0
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
                attempt += 1
                if status == 0 and (retries is None or attempt <= retries):
                    continue
                raise
            return status

    # -- watch events ---------------------------------------------------------

    def next_event(self) -> WatchEvent:
        """Block until a watch event arrives (replies are handled meanwhile)."""
        events = self.events
        while not events:
            self._send()
            self._receive()
        return events.popleft()
