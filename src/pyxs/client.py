"""The threaded client: :class:`Client`, :class:`Router` and :class:`Monitor`.

The threaded client's I/O (one connection shared by threads that take turns
at reading it, no reader thread) is the :class:`Router`'s, in
:mod:`pyxs.router`; watches and events are :class:`Monitor`'s, in
:mod:`pyxs.monitors`. Both are imported here under their pyxs 0.4 names.

Transactions belong to the thread (or greenlet) that started them: the
current transaction id is thread-local, so another thread sharing the
client is not silently inside it.
"""

from __future__ import annotations

import copy
import errno
import os
import re
import threading
from collections.abc import Iterator
from typing import Any, Callable, TypeVar

from . import commands
from ._deprecation import deprecated as _deprecated
from .commands import DEFAULT_RETRIES, Command, Operation, RetryPolicy, run_blocking
from .connection import (
    PacketConnection,
    UnixSocketConnection,
    XenBusConnection,
    default_connection,
)
from .exceptions import (
    ConnectionError,
    PyXSError,
    TransactionConflictError,
    UnexpectedPacket,
    XenStoreError,
    error_from_payload,
)
from .monitors import Monitor
from .operations import DomainOperations, TreeWalk, WalkEntry
from .paths import PathLike
from .protocol import Op, Packet, WatchEvent
from .router import RequestTimeout, Router
from .router import RVar as RVar  # pyxs 0.4 name, re-exported

__all__ = ["Client", "Event", "Monitor", "RequestTimeout", "Router"]


T = TypeVar("T")

#: A watch event: ``Event(path, token)``, both bytes.
Event = WatchEvent

#: The arguments pyxs 0.4's execute_command accepted: 7-bit, no controls but NUL.
_7BIT_ARG = re.compile(rb"[\x00\x20-\x7f]*\Z")


class _ControlDomainFlag:
    """``Client.SU``: read from ``/proc/xen/capabilities`` when first asked
    (pyxs 0.4 read it at import), with a DeprecationWarning."""

    value: bool | None = None

    def __get__(self, instance: object, owner: type) -> bool:
        _deprecated("Client.SU", "the server's answer (it refuses what a guest may not do)")
        if self.value is None:
            try:
                with open("/proc/xen/capabilities", "rb") as caps:
                    type(self).value = caps.read() == b"control_d\n"
            except OSError:
                type(self).value = False
        return bool(self.value)


_LOCAL_CLASSES: dict[type, type] = {}


def _transaction_state() -> Any:
    """A thread-local holder of ``tx_id`` (0 until set) and of the session
    (the connection) the transaction was started on.

    Built from whatever ``threading.local`` is when the client is created,
    so that under gevent or eventlet monkey-patching it is greenlet-local.
    """
    base = threading.local
    cls = _LOCAL_CLASSES.get(base)
    if cls is None:
        cls = _LOCAL_CLASSES[base] = type(
            "_TransactionState", (base,), {"tx_id": 0, "tx_session": None}
        )
    return cls()


class Client(DomainOperations[bytes, None, bool, list[bytes]]):
    """XenStore client.

    :param unix_socket_path: the xenstored socket (see
        :func:`~pyxs.connection.default_socket_path` for the default).
    :param xen_bus_path: use the XenBus device at this path instead.
    :param router: share an existing :class:`Router` (and its connection).
    :param timeout: seconds to wait for each reply before raising
        :class:`RequestTimeout`; None (the default) waits as long as it takes.

    If ``unix_socket_path`` is given, XenStore is reached through
    :class:`~pyxs.connection.UnixSocketConnection`; if only ``xen_bus_path``
    is, through :class:`~pyxs.connection.XenBusConnection`; with neither, as
    libxenstore's ``xs_open`` does (:func:`~pyxs.connection.default_connection`,
    chosen when the client is made): the xenstored socket if it exists, else
    the XenBus device, so the same program runs in dom0 and in a guest. Use the client as a context
    manager, or call :meth:`connect` and :meth:`close`.

    Paths and tokens are bytes (str is accepted and encoded as ASCII); values
    are bytes, any bytes. Errors the server reports are raised as subclasses
    of :class:`~pyxs.exceptions.XenStoreError` (``NoEntryError`` for
    ``ENOENT``, ...) with ``e.args[0] == errno.ENOENT`` as in pyxs 0.4.

    One client can be shared by any number of threads (or greenlets). A
    transaction belongs to the thread that started it.
    """

    def __init__(
        self,
        unix_socket_path: str | None = None,
        xen_bus_path: str | None = None,
        router: Router | None = None,
        *,
        timeout: float | None = None,
    ) -> None:
        if router is None:
            connection: PacketConnection
            if unix_socket_path:
                connection = UnixSocketConnection(unix_socket_path)
            elif xen_bus_path:
                connection = XenBusConnection(xen_bus_path)
            else:
                connection = default_connection()
            router = Router(connection)
        self.router = router
        self.timeout = timeout
        self._local = _transaction_state()

    def __repr__(self) -> str:
        return f"Client({self.router.connection!r})"

    def __copy__(self) -> Client:
        # A copy shares the router; it has its own transactions.
        return type(self)(router=self.router, timeout=self.timeout)

    def __enter__(self) -> Client:
        self.connect()
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        tx_id = self.tx_id
        self.tx_id = 0
        self.close()
        if tx_id and exc_type is None:
            raise PyXSError("uncommitted transaction")

    # -- plumbing ----------------------------------------------------------------

    @property
    def tx_id(self) -> int:
        """The calling thread's current transaction id (0: none)."""
        return self._local.tx_id  # type: ignore[no-any-return]

    @tx_id.setter
    def tx_id(self, value: int) -> None:
        # Set by hand: taken to belong to the connection open now.
        local = self._local
        local.tx_id = value
        local.tx_session = self.router.session

    def _current_tx(self) -> int:
        """The calling thread's transaction id, checked to be of this
        connection.

        Transaction ids are numbered per connection (from 1 on both servers),
        so after a reconnect an old id may name another thread's new
        transaction: calls in a transaction that was lost with its
        connection raise instead, until :meth:`commit` or :meth:`rollback`
        (which raise too) ends it.
        """
        local = self._local
        tx_id: int = local.tx_id
        if tx_id and local.tx_session is not self.router.session:
            raise ConnectionError(
                f"transaction {tx_id} was lost with its connection; "
                "end it (rollback) and start again"
            )
        return tx_id

    @property
    def _in_transaction(self) -> bool:
        return bool(self._local.tx_id)

    def _op(self, make: Callable[..., Operation[T]], *args: Any) -> T:
        return self._submit(make(*args))  # bad arguments first, before anything else

    def _submit(self, operation: Operation[T]) -> T:
        local = self._local
        tx_id = local.tx_id
        router = self.router
        if tx_id and local.tx_session is not router.session:
            tx_id = self._current_tx()  # raises
        if operation.__class__ is Command:  # _run's first case, one call sooner
            reply = router.roundtrip(operation.op, operation.payload, tx_id, self.timeout)
            return operation.result(reply)
        if not tx_id:  # _run's second case, one call sooner
            return run_blocking(operation, self._exchange_outside)
        return self._run(operation, tx_id)

    def _op_outside(self, make: Callable[..., Operation[T]], *args: Any) -> T:
        # Connection-level operations go with tx_id 0, as libxenstore sends
        # them (cxenstored 4.17 aborts on RESET_WATCHES inside a transaction).
        return self._run(make(*args), 0)

    def _run(self, operation: Operation[T], tx_id: int) -> T:
        """Where a request of this client is made: one blocking round trip
        per command, in transaction ``tx_id``."""
        router = self.router
        timeout = self.timeout
        if operation.__class__ is Command:
            reply = router.roundtrip(operation.op, operation.payload, tx_id, timeout)
            return operation.result(reply)
        if not tx_id:  # no transaction to check at each step
            return run_blocking(operation, self._exchange_outside)

        local = self._local

        def exchange(command: Command[Any]) -> Packet:
            # Each step, as each call: not in this thread's transaction once
            # it was lost with its connection (another thread reconnected).
            if tx_id == local.tx_id and local.tx_session is not router.session:
                self._current_tx()  # raises
            return router.roundtrip(command.op, command.payload, tx_id, timeout)

        return run_blocking(operation, exchange)

    def _exchange_outside(self, command: Command[Any]) -> Packet:
        """A procedure's round trip outside any transaction (:meth:`_run`)."""
        return self.router.roundtrip(command.op, command.payload, 0, self.timeout)

    def execute(self, operation: Operation[T], tx_id: int | None = None) -> T:
        """Run a :mod:`pyxs.commands` command or procedure on this client.

        ``tx_id`` defaults to the calling thread's transaction; pass 0 to
        run outside it.

        >>> from pyxs import commands
        >>> client.execute(commands.read(b"/tool/xenstored"))  # doctest: +SKIP
        b''
        """
        if tx_id is None:
            tx_id = self._current_tx()
        return self._run(operation, tx_id)

    #: pyxs 0.4: whether this is the control domain (deprecated).
    SU = _ControlDomainFlag()

    def execute_command(self, op: int, *args: bytes, **kwargs: Any) -> bytes:
        """pyxs 0.4's request primitive: deprecated, use :meth:`execute` with
        a :mod:`pyxs.commands` operation.

        Sends ``op`` with the ``args`` joined as payload (each 7-bit ASCII,
        else ValueError) in the calling thread's transaction, and returns the
        reply's payload without its trailing NULs; an error reply raises its
        :class:`~pyxs.exceptions.XenStoreError`, a reply of another type
        :class:`~pyxs.exceptions.UnexpectedPacket`.
        """
        _deprecated("Client.execute_command()", "Client.execute() with a pyxs.commands operation")
        return self._execute_command(op, args)

    def ack(self, *args: Any) -> None:
        """pyxs 0.4's :meth:`execute_command` expecting ``OK``: deprecated,
        use :meth:`execute`."""
        _deprecated("Client.ack()", "Client.execute() with a pyxs.commands operation")
        payload = self._execute_command(args[0], args[1:])
        if payload != b"OK":
            raise PyXSError(payload)

    def _execute_command(self, op: int, args: tuple[Any, ...]) -> bytes:
        if not all(isinstance(arg, bytes) and _7BIT_ARG.match(arg) for arg in args):
            raise ValueError(args)
        reply = self.router.roundtrip(op, b"".join(args), self._current_tx(), self.timeout)
        if reply.op == Op.ERROR:
            raise error_from_payload(reply.payload)
        if reply.op != op:
            raise UnexpectedPacket(reply)
        return reply.payload.rstrip(b"\0")

    def connect(self) -> None:
        """Open the connection (again, after a close or a failure).

        :raises pyxs.exceptions.ConnectionError: when XenStore cannot be
            reached (not running, no permission, wrong path).
        """
        self.router.start()

    def close(self) -> None:
        """Close the connection; calls then raise ConnectionError. Idempotent.

        It closes the router, which every copy of this client and every
        monitor made from it share.
        """
        self.router.terminate()

    # -- the operations (pyxs.operations), and their pyxs 0.4 spellings --------

    __getitem__ = DomainOperations.read
    __setitem__ = DomainOperations.write
    __delitem__ = DomainOperations.delete

    def walk(self, top: PathLike, topdown: bool = True) -> Iterator[WalkEntry]:
        """Walk the tree under ``top``, as :func:`os.walk` walks directories.

        Yields ``(path, value, children)`` for ``top`` and every node below
        it. With ``topdown`` (the default) a node comes before its children,
        and removing names from ``children`` prunes the walk; otherwise after
        them. Nodes removed during the walk are skipped; a node whose value
        cannot be read (no permission) has value ``b""``.
        """
        walk = TreeWalk(top, topdown)
        for step in walk:
            if isinstance(step, tuple):
                yield step
            else:
                walk.answer(self.execute(step))

    def reset_watches(self) -> None:
        """Drop every watch and transaction of this connection (RESET_WATCHES).

        Monitors sharing the connection forget their watches too.
        """
        self._op_outside(commands.reset_watches)
        self.router.unsubscribe_all()
        self.tx_id = 0

    # -- transactions ----------------------------------------------------------

    def transaction(self) -> int:
        """Start a transaction in the calling thread and return its id.

        Every call of this thread then runs in it until :meth:`commit` or
        :meth:`rollback`. Prefer :meth:`transact`, which also retries.

        :raises pyxs.exceptions.PyXSError: with ``errno.EALREADY`` when this
            thread is in a transaction already.
        """
        local = self._local
        if local.tx_id:
            raise PyXSError(errno.EALREADY, os.strerror(errno.EALREADY))
        session = self.router.session  # the one the request goes on (or a failed one)
        tx_id = self._op(commands.transaction_start)
        local.tx_id = tx_id
        local.tx_session = session
        return tx_id

    def commit(self) -> bool:
        """Commit the calling thread's transaction.

        :returns: False when it conflicted with another change (EAGAIN): the
            transaction is over and nothing of it was applied; start again.
        """
        try:
            self._op(commands.transaction_end, True)
        except TransactionConflictError:
            return False
        finally:
            self.tx_id = 0
        return True

    def rollback(self) -> None:
        """Abort the calling thread's transaction: nothing of it is applied."""
        try:
            self._op(commands.transaction_end, False)
        finally:
            self.tx_id = 0

    def transact(
        self, fn: Callable[..., T], *args: Any, retries: int = DEFAULT_RETRIES, **kwargs: Any
    ) -> T:
        """Run ``fn(client, *args, **kwargs)`` in a transaction; retry on conflict.

        The transaction is committed when ``fn`` returns, and rolled back when
        it raises. When the commit conflicts (EAGAIN), ``fn`` runs again in a
        new transaction, up to ``retries`` more times; after that
        :class:`~pyxs.exceptions.TransactionConflictError` is raised. ``fn``
        must therefore have no effects outside XenStore that a retry would
        repeat.

        >>> def increment(c, path):
        ...     value = int(c.read(path, b"0")) + 1
        ...     c.write(path, b"%d" % value)
        ...     return value
        >>> client.transact(increment, b"/counter")  # doctest: +SKIP
        1
        """
        policy = RetryPolicy(retries)
        while True:
            self.transaction()
            try:
                result = fn(self, *args, **kwargs)
            except TransactionConflictError:
                self._rollback_quietly()
            except BaseException:
                self._rollback_quietly()
                raise
            else:
                if self.commit():
                    return result
            policy.conflicted()

    def _rollback_quietly(self) -> None:
        try:
            self.rollback()
        except (XenStoreError, ConnectionError):
            pass  # the error that made us roll back is the one to raise

    # -- watches -----------------------------------------------------------------

    def monitor(self) -> Monitor:
        """A new :class:`Monitor` sharing this client's connection.

        Closing the client closes the monitor's connection too; closing the
        monitor leaves the client alone.
        """
        return Monitor(copy.copy(self))
