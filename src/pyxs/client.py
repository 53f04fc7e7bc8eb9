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
import warnings
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Tuple,
    TypeVar,
    Union,
)

from . import commands
from .commands import Command, Operation, run_sync
from .connection import (
    PacketConnection,
    UnixSocketConnection,
    XenBusConnection,
    default_connection,
)
from .exceptions import (
    ConnectionError,
    NoEntryError,
    PyXSError,
    TransactionConflictError,
    UnexpectedPacket,
    XenStoreError,
    error_from_payload,
)
from .monitors import Monitor
from .paths import (
    PathLike,
    Permission,
    validate_path,
)
from .protocol import Op, WatchEvent
from .router import RequestTimeout, Router
from .router import RVar as RVar  # pyxs 0.4 name, re-exported

__all__ = ["Client", "Event", "Monitor", "RequestTimeout", "Router"]


def _deprecated(old: str, new: str) -> None:
    warnings.warn(f"{old} is deprecated (pyxs 0.4): use {new}", DeprecationWarning, stacklevel=3)


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


_LOCAL_CLASSES: Dict[type, type] = {}


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


def _domid(value: Union[int, str, bytes]) -> int:
    # pyxs 0.4 formatted domids with str(); accept "5" and b"5" as it did.
    if isinstance(value, (str, bytes)):
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"domain id must be an integer, not {value!r}") from None
    return value


class Client:
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
        local.tx_session = self.router._session

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
        if tx_id and local.tx_session is not self.router._session:
            raise ConnectionError(
                f"transaction {tx_id} was lost with its connection; "
                "end it (rollback) and start again"
            )
        return tx_id

    def _call(self, command: Command[T]) -> T:
        local = self._local
        tx_id = local.tx_id
        if tx_id and local.tx_session is not self.router._session:
            tx_id = self._current_tx()  # raises
        reply = self.router.roundtrip(command.op, command.payload, tx_id, self.timeout)
        return command.result(reply)

    def _call_outside(self, command: Command[T]) -> T:
        # Connection-level operations go with tx_id 0, as libxenstore sends
        # them (cxenstored 4.17 aborts on RESET_WATCHES inside a transaction).
        return command.result(self.router.roundtrip(command.op, command.payload, 0, self.timeout))

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
        router = self.router
        timeout = self.timeout

        def roundtrip(command: Command[Any]) -> Any:
            reply = router.roundtrip(command.op, command.payload, tx_id, timeout)
            return command.result(reply)

        return run_sync(operation, roundtrip)

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

    def _execute_command(self, op: int, args: Tuple[Any, ...]) -> bytes:
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

    # -- the operations --------------------------------------------------------

    def read(self, path: PathLike, default: bytes | None = None) -> bytes:
        """The value at ``path`` (bytes, possibly empty).

        :param default: returned instead of raising
            :class:`~pyxs.exceptions.NoEntryError` when ``path`` is missing.
        """
        command = commands.read(path)
        local = self._local
        tx_id = local.tx_id
        if tx_id and local.tx_session is not self.router._session:
            tx_id = self._current_tx()  # raises
        try:
            return command.result(
                self.router.roundtrip(command.op, command.payload, tx_id, self.timeout)
            )
        except NoEntryError:
            if default is None:
                raise
            return default

    __getitem__ = read

    def write(self, path: PathLike, value: bytes) -> None:
        """Set the value at ``path``, creating it and missing parents."""
        self._call(commands.write(path, value))

    __setitem__ = write

    def mkdir(self, path: PathLike) -> None:
        """Make sure ``path`` exists; a new node (and parents) get ``b""``.
        An existing node keeps its value."""
        self._call(commands.mkdir(path))

    def delete(self, path: PathLike) -> None:
        """Remove ``path`` and everything under it. A missing ``path`` is
        fine, but its parent must exist (else NoEntryError)."""
        self._call(commands.rm(path))

    __delitem__ = delete

    def list(self, path: PathLike) -> List[bytes]:
        """The names of the children of ``path``, in creation order.

        Lists too long for one reply are read in parts (DIRECTORY_PART).
        """
        return run_sync(commands.list_children(path), self._call)

    def exists(self, path: PathLike) -> bool:
        """Whether ``path`` exists.

        In a transaction the server no longer knows (it answers ENOENT to
        everything then), this raises that NoEntryError rather than saying
        False.
        """
        return run_sync(commands.exists(path, bool(self._local.tx_id)), self._call)

    def get_perms(self, path: PathLike) -> List[bytes]:
        """The permissions of ``path``, owner first: ``[b"n0", b"r5"]``."""
        return self._call(commands.get_perms(path))

    def set_perms(self, path: PathLike, perms: Iterable[Union[PathLike, Permission]]) -> None:
        """Replace the permissions of ``path``; the first entry names the owner.

        Each entry is ``w<domid>``, ``r<domid>``, ``b<domid>`` (both) or
        ``n<domid>`` (none), as bytes, str or :class:`~pyxs.paths.Permission`.
        """
        self._call(commands.set_perms(path, perms))

    def walk(
        self, top: PathLike, topdown: bool = True
    ) -> Iterator[Tuple[bytes, bytes, List[bytes]]]:
        """Walk the tree under ``top``, as :func:`os.walk` walks directories.

        Yields ``(path, value, children)`` for ``top`` and every node below
        it. With ``topdown`` (the default) a node comes before its children,
        and removing names from ``children`` prunes the walk; otherwise after
        them. Nodes removed during the walk are skipped; a node whose value
        cannot be read (no permission) has value ``b""``.
        """
        top = validate_path(top)
        # [path, value, children, expanded]: iterative, so deep trees are fine.
        stack: List[Tuple[bytes, Tuple[bytes, List[bytes]] | None]] = [(top, None)]
        while stack:
            path, node = stack.pop()
            if node is not None:
                yield path, node[0], node[1]
                continue
            try:
                children = self.list(path)
            except NoEntryError:
                if path is top:
                    raise
                continue
            try:
                value = self.read(path)
            except XenStoreError:
                value = b""
            if topdown:
                yield path, value, children
            else:
                stack.append((path, (value, children)))
            prefix = path if path == b"/" else path + b"/"
            stack.extend((prefix + child, None) for child in reversed(children))

    def get_domain_path(self, domid: Union[int, str, bytes]) -> bytes:
        """The home path of a domain, ``b"/local/domain/<domid>"``."""
        return self._call_outside(commands.get_domain_path(_domid(domid)))

    def is_domain_introduced(self, domid: Union[int, str, bytes]) -> bool:
        """Whether xenstored talks to the domain (introduced, not released)."""
        return self._call_outside(commands.is_domain_introduced(_domid(domid)))

    def introduce_domain(self, domid: Union[int, str, bytes], mfn: int, eventchn: int) -> None:
        """Tell xenstored about a new domain: its ring page and event channel.

        :raises ValueError: for domain 0, as pyxs 0.4 did.
        """
        domid = _domid(domid)
        if not domid:
            raise ValueError("domain 0 cannot be introduced.")
        self._call_outside(commands.introduce(domid, mfn, eventchn))

    def release_domain(self, domid: Union[int, str, bytes]) -> None:
        """Tell xenstored to forget a domain (fires ``@releaseDomain``)."""
        self._call_outside(commands.release(_domid(domid)))

    def resume_domain(self, domid: Union[int, str, bytes]) -> None:
        """Clear a domain's shutdown flag, so that its next shutdown fires
        the watches again."""
        self._call_outside(commands.resume(_domid(domid)))

    def set_target(self, domid: Union[int, str, bytes], target: Union[int, str, bytes]) -> None:
        """Let ``domid`` act on ``target``'s nodes with ``target``'s rights
        (stub domains)."""
        self._call_outside(commands.set_target(_domid(domid), _domid(target)))

    def reset_watches(self) -> None:
        """Drop every watch and transaction of this connection (RESET_WATCHES).

        Monitors sharing the connection forget their watches too.
        """
        self._call_outside(commands.reset_watches())
        self.router.unsubscribe_all()
        self.tx_id = 0

    def control(self, *args: PathLike) -> bytes:
        """A ``xenstore-control`` command: ``control(b"print", b"hello")``."""
        return self._call_outside(commands.control(*args))

    #: The pre-Xen 4.9 name of CONTROL.
    debug = control

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
        session = self.router._session  # the one the request goes on (or a failed one)
        tx_id = self._call(commands.transaction_start())
        local.tx_id = tx_id
        local.tx_session = session
        return tx_id

    def commit(self) -> bool:
        """Commit the calling thread's transaction.

        :returns: False when it conflicted with another change (EAGAIN): the
            transaction is over and nothing of it was applied; start again.
        """
        try:
            self._call(commands.transaction_end(True))
        except TransactionConflictError:
            return False
        finally:
            self.tx_id = 0
        return True

    def rollback(self) -> None:
        """Abort the calling thread's transaction: nothing of it is applied."""
        try:
            self._call(commands.transaction_end(False))
        finally:
            self.tx_id = 0

    def transact(self, fn: Callable[..., T], *args: Any, retries: int = 16, **kwargs: Any) -> T:
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
        if retries < 0:
            raise ValueError("retries must be >= 0")
        for _ in range(retries + 1):
            self.transaction()
            try:
                result = fn(self, *args, **kwargs)
            except TransactionConflictError:
                self._rollback_quietly()
                continue
            except BaseException:
                self._rollback_quietly()
                raise
            if self.commit():
                return result
        raise TransactionConflictError(
            errno.EAGAIN,
            os.strerror(errno.EAGAIN),
            f"transaction conflicted {retries + 1} times",
        )

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
