"""The threaded client: :class:`Client`, :class:`Router` and :class:`Monitor`.

Theory of operation
-------------------
One :class:`Router` owns one connection and multiplexes it: any number of
threads (or greenlets) share it, and their requests are in flight together.
There is **no reader thread**. Instead the waiting threads take turns at
reading (a *leader/follower* scheme):

1. A caller encodes its request with the connection's
   :class:`~pyxs.protocol.ClientProtocol` (which hands out a 32-bit req_id
   not in flight) and registers a *waiter* for that req_id, under the send
   lock. Then it sends the bytes, *writes being combined*: if another thread
   is in the middle of a send, the packet is queued and that thread sends
   it after its own (its write lock is only ever tried, never waited for).
   No thread waits for a lock held across I/O, which is what keeps many
   threads on one CPU from queueing up behind a blocked send.
2. It then waits for its reply. If nobody is reading the connection, it
   becomes the *reader*: it reads from the connection and hands every packet
   to its owner, following the protocol's reply-routing rule (a reply goes
   to the waiter registered for its req_id, a ``WATCH_EVENT`` goes to the
   monitors that watch with its token). If somebody is reading already, it
   is a *follower*: it sleeps on its thread's *parking lock* (reused from
   call to call, far cheaper than a ``threading.Event``) until the reader
   hands it its reply, or hands it the reader's role.
3. When the reader has its own reply it stops reading and wakes one
   follower still waiting, who becomes the next reader. A follower that
   finds its reply delivered by then passes the role on in the same way.

A lone thread therefore does a plain ``send`` then ``recv`` with no hand-off
between threads. :meth:`Monitor.wait` takes part as a reader too, so events
are read whatever else is (or is not) in flight.

The reader that hits an error (the connection closed, a malformed or
unexpected packet) *fails the connection*: every waiter gets a
:class:`~pyxs.exceptions.ConnectionError`, the connection is closed, and
later calls raise until :meth:`Client.connect` opens it again. A reader that
must be wakeable (a monitor, a call with a timeout, the XenBus device, whose
reads ``close()`` cannot interrupt) first select()s on the connection and on
a wake-up socket pair; ``close()``, :meth:`Monitor.wake` and
:meth:`Monitor.close` write to that pair.

State of one open connection lives in a ``_Session``; reconnecting makes a
new one, so a straggler from the old connection can never touch the new
one: :meth:`Router.start` waits until the failed session's reader and
writer have left (closing the connection woke them), and whoever takes
their places afterwards finds the session failed before doing any I/O;
requests queued in the failed session's outbox are dropped, their callers
get the ConnectionError. Lock order: the start lock, then a session's read
and write locks, then the send lock, then the state lock. The send and
state locks are never held across I/O. The read and write locks are (by the
reader and the writer), so nobody waits for them but :meth:`Router.start`,
holding only the start lock; the others only try them. A follower registers itself *before*
trying the read lock a second time, and a leaving reader looks for
followers *after* releasing it; the writer's outbox works the same way: so
no hand-over is ever missed.

Transactions belong to the thread (or greenlet) that started them: the
current transaction id is thread-local, so another thread sharing the
client is not silently inside it.
"""

from __future__ import annotations

import copy
import errno
import os
import queue
import re
import select
import socket
import threading
import warnings
from collections import deque
from time import monotonic
from typing import (
    Any,
    Callable,
    Deque,
    Dict,
    Iterable,
    Iterator,
    List,
    Set,
    Tuple,
    TypeVar,
)

from . import commands
from .commands import DEFAULT_RETRIES, Command, Operation, RetryPolicy, run_blocking
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
from .operations import DomainOperations, TreeWalk, WalkEntry
from .paths import (
    PathLike,
    check_ascii,
    validate_watch_path,
    watch_matches,
)
from .protocol import ClientProtocol, Op, Packet, WatchEvent

__all__ = ["Client", "Event", "Monitor", "RequestTimeout", "Router"]


def _deprecated(old: str, new: str) -> None:
    warnings.warn(f"{old} is deprecated (pyxs 0.4): use {new}", DeprecationWarning, stacklevel=3)


T = TypeVar("T")

#: A watch event: ``Event(path, token)``, both bytes.
Event = WatchEvent

#: Bytes asked of the transport per read: a few packets' worth.
_READ_SIZE = 65536

#: Seconds start() waits for a failed connection's last reader and writer
#: to leave (closing the connection wakes them; this is a safety net).
_STRAGGLER_WAIT = 5.0


class RequestTimeout(PyXSError, TimeoutError):
    """No reply came within the client's ``timeout``.

    The connection stays usable: the late reply, if it ever comes, is
    dropped. Whether the server carried the request out is unknown.
    """


class _Parker:
    """A thread's (or greenlet's) place to sleep: a lock it blocks on.

    The lock is held while there is no wake-up to take; :func:`_unpark`
    releases it, once (``permit``), and the sleeper takes it back. Made once
    per thread and reused, because a lock is far cheaper to create and to
    hand over than a ``threading.Event``.
    """

    __slots__ = ("lock", "permit")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lock.acquire()
        self.permit = False


class _Waiter:
    """A thread blocked on the connection: for a reply, or for events.

    ``reply`` stays None until the wait is over; then it is the reply
    :class:`Packet`, :data:`_READY` (a monitor has something to look at) or
    the exception that failed the connection. ``parker`` is set while the
    thread sleeps, or may sleep, as a follower.
    """

    __slots__ = ("parker", "reply")

    def __init__(self) -> None:
        self.reply: Any = None
        self.parker: _Parker | None = None


def _unpark(waiter: _Waiter) -> None:
    # With the state lock held: wake the thread sleeping for ``waiter``.
    parker = waiter.parker
    if parker is not None and not parker.permit:
        parker.permit = True
        parker.lock.release()


_READY = object()


class _Session:
    """The state of one open connection."""

    __slots__ = (
        "failure",
        "followers",
        "outbox",
        "protocol",
        "read_lock",
        "slots",
        "waker",
        "write_lock",
    )

    def __init__(self, failure: BaseException | None = None) -> None:
        self.protocol = ClientProtocol()
        #: req_id -> the waiter for its reply
        self.slots: Dict[int, _Waiter] = {}
        #: waiters asleep as followers
        self.followers: Set[_Waiter] = set()
        #: held by the reader
        self.read_lock = threading.Lock()
        #: held by the writer; packets other threads queued for it to send
        self.write_lock = threading.Lock()
        self.outbox: List[bytes] = []
        #: set when the connection failed or was closed
        self.failure = failure
        #: the wake-up socket pair of wakeable readers, made when first needed
        self.waker: Tuple[socket.socket, socket.socket] | None = None

    def close_waker(self) -> None:
        # Only when no reader can be in select() on it (read lock held).
        waker, self.waker = self.waker, None
        if waker is not None:
            waker[0].close()
            waker[1].close()


def _connection_error(failure: BaseException) -> ConnectionError:
    """The exception a caller raises for the failure of its connection.

    A copy each (one exception object raised by many threads would gather
    their tracebacks), of the same class (an UnexpectedPacket stays one), and
    not chained to the failure it copies: printed, it shows once.
    """
    if isinstance(failure, ConnectionError):
        return failure.copy()
    code = getattr(failure, "errno", None) or errno.EIO
    error = ConnectionError(str(failure) or "connection lost", errno=code)
    error.__cause__ = failure
    return error


class Router:
    """Multiplexes one connection between clients, threads and monitors.

    :param connection: a :class:`~pyxs.connection.UnixSocketConnection` or
        :class:`~pyxs.connection.XenBusConnection`, owned by the router from
        now on. :meth:`start` opens it, :meth:`terminate` closes it.

    Share one router between clients with ``Client(router=router)``; each
    client (and each thread) keeps its own transaction.
    """

    def __init__(self, connection: PacketConnection) -> None:
        self.connection = connection
        #: guards req_id allocation and the outbox; never held across I/O
        self._send_lock = threading.Lock()
        #: serialises start(): held across connect(), taken before any other
        self._start_lock = threading.Lock()
        self._lock = threading.Lock()
        self._session = _Session(ConnectionError("not connected"))
        self._monitors: Dict[bytes, List[Monitor]] = {}
        # Made now, not at import: under monkey-patching it is greenlet-local.
        self._parkers = threading.local()

    def __repr__(self) -> str:
        return f"Router({self.connection!r})"

    @property
    def is_connected(self) -> bool:
        """Whether the connection is open and usable."""
        return self._session.failure is None and self.connection.is_connected

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        """Open the connection; does nothing when it is open already.

        :raises pyxs.exceptions.ConnectionError: when it cannot be opened.
        """
        with self._start_lock:
            old = self._session
            with self._lock:
                # Under the state lock: _fail() has closed the connection
                # by the time its failure can be seen here.
                if old.failure is None:
                    return
            # A reader (writer) of the failed session may still be on its way
            # out of recv() (send()); it must be gone before the connection
            # object is opened again, or it could read (write) the new
            # connection's bytes. Waited for *without* the send lock, which a
            # writer takes while holding the write lock (_flush). Whoever
            # takes these locks later sees the failure before any I/O, so
            # they are given back once the new session is in place.
            if not old.read_lock.acquire(timeout=_STRAGGLER_WAIT):
                raise ConnectionError("the previous connection is still being read")
            try:
                if not old.write_lock.acquire(timeout=_STRAGGLER_WAIT):
                    raise ConnectionError("the previous connection is still being written")
                try:
                    self.connection.close()
                    self.connection.connect()
                    old.close_waker()
                    with self._send_lock, self._lock:
                        self._session = _Session()
                finally:
                    old.write_lock.release()
            finally:
                old.read_lock.release()

    def send(self, packet: Packet) -> RVar:
        """pyxs 0.4's way to send a packet: deprecated, use :meth:`roundtrip`.

        Unlike 0.4's it waits for the reply before it returns the
        :class:`RVar` holding it; the request id is the connection's own,
        the reply carries the packet's ``rq_id`` back.
        """
        _deprecated("Router.send()", "Router.roundtrip() or Client.execute()")
        reply = self.roundtrip(packet.op, packet.payload, packet.tx_id)
        rvar = RVar()
        rvar.set(reply._replace(req_id=packet.req_id))
        return rvar

    def terminate(self) -> None:
        """Close the connection; pending and later calls raise ConnectionError.

        Does nothing when it is closed already. :meth:`start` opens it again.
        """
        session = self._session
        self._fail(session, ConnectionError("connection closed"))
        # Close the wake-up pair once no reader can be using it.
        if session.read_lock.acquire(timeout=5.0):
            try:
                session.close_waker()
            finally:
                session.read_lock.release()

    def _fail(self, session: _Session, failure: BaseException) -> None:
        """Fail every waiter of ``session`` and close its connection."""
        with self._lock:
            if session.failure is None:
                session.failure = failure
            failure = session.failure
            # A copy: requests register under the send lock only. One that
            # registers after this sees ``failure`` before it waits.
            for waiter in list(session.slots.values()):
                if waiter.reply is None:
                    waiter.reply = failure
                _unpark(waiter)
            session.slots.clear()
            for waiter in session.followers:
                if waiter.reply is None:
                    waiter.reply = failure
                _unpark(waiter)
            for monitors in self._monitors.values():
                for monitor in monitors:
                    monitor._signal(failure)
            if session is self._session:
                # Inside the state lock, so that start() cannot open the new
                # connection in between and have it closed here. (Closing
                # does not block.)
                self.connection.close()
        self._kick(session)

    # -- subscriptions (pyxs 0.4 names) ----------------------------------------

    def subscribe(self, token: bytes, monitor: Monitor) -> None:
        """Deliver events carrying ``token`` to ``monitor``."""
        with self._lock:
            self._monitors.setdefault(token, []).append(monitor)

    def unsubscribe(self, token: bytes, monitor: Monitor) -> None:
        """Stop delivering events carrying ``token`` to ``monitor`` (once)."""
        with self._lock:
            monitors = self._monitors.get(token)
            if monitors and monitor in monitors:
                monitors.remove(monitor)
                if not monitors:
                    del self._monitors[token]

    def _unsubscribe_all(self) -> None:
        with self._lock:
            monitors = {id(m): m for ms in self._monitors.values() for m in ms}
            self._monitors.clear()
        for monitor in monitors.values():
            monitor.unwatch_queue.clear()

    # -- requests --------------------------------------------------------------

    def roundtrip(
        self, op: int, payload: bytes, tx_id: int = 0, timeout: float | None = None
    ) -> Packet:
        """Send one request and return its reply packet (an ERROR is a reply).

        :raises pyxs.exceptions.ConnectionError: the connection is closed or
            failed before the reply came.
        :raises RequestTimeout: no reply within ``timeout`` seconds.
        """
        waiter = _Waiter()
        with self._send_lock:
            session = self._session
            if session.failure is not None:
                raise _connection_error(session.failure)
            req_id, data = session.protocol.request(op, payload, tx_id)
            session.slots[req_id] = waiter
            if session.outbox or not session.write_lock.acquire(False):
                # Somebody is writing: it sends ours too (no thread ever
                # waits for a lock held across I/O).
                session.outbox.append(data)
                data = b""
        if data:
            try:
                self.connection.send(data)
            except ConnectionError as exc:
                self._fail(session, exc)  # our waiter (and all) learn of it
            finally:
                session.write_lock.release()
            # Queued meanwhile by a thread that found us writing?
            if session.outbox:
                self._flush(session)
        else:
            self._flush(session)
        try:
            if timeout is None and session.read_lock.acquire(False):
                # The common case: nobody else is reading, read at once.
                try:
                    self._lead(session, waiter, None, False)
                finally:
                    session.read_lock.release()
                    if session.followers:
                        with self._lock:
                            self._pass_role(session)
                if waiter.reply is None:
                    self._wait(session, waiter, None, False)
            elif not self._wait(
                session, waiter, None if timeout is None else monotonic() + timeout, False
            ) and self._abandon(session, req_id):
                raise RequestTimeout(f"no reply from XenStore within {timeout} s")
        except RequestTimeout:
            raise
        except BaseException:
            self._abandon(session, req_id)
            raise
        reply = waiter.reply
        if reply.__class__ is Packet:
            return reply
        raise _connection_error(reply)

    def _flush(self, session: _Session) -> None:
        """Send the queued packets, unless somebody else is writing.

        The writer looks at the outbox again after giving up the write lock,
        and a thread queues before it tries that lock: so a packet is never
        left behind.
        """
        while session.write_lock.acquire(False):
            try:
                with self._send_lock:
                    batch, session.outbox = session.outbox, []
                # A failed session's packets go nowhere: their callers learn
                # of the failure, and the connection may be a new one by now.
                if batch and session.failure is None:
                    self.connection.send(b"".join(batch))
            except ConnectionError as exc:
                self._fail(session, exc)
            finally:
                session.write_lock.release()
            if not session.outbox:
                return

    def _abandon(self, session: _Session, req_id: int) -> bool:
        """Give up waiting for ``req_id``; False if its reply came meanwhile."""
        with self._lock:
            if session.slots.pop(req_id, None) is None:
                return False
            session.protocol.abandon(req_id)
            return True

    # -- the leader/follower core ----------------------------------------------

    def _wait(
        self, session: _Session, waiter: _Waiter, deadline: float | None, wakeable: bool
    ) -> bool:
        """Block until ``waiter.reply`` is set (True) or ``deadline`` passes."""
        lock = self._lock
        read_lock = session.read_lock
        while waiter.reply is None:
            if session.failure is not None:
                with lock:
                    if waiter.reply is None:
                        waiter.reply = session.failure
                break
            if not read_lock.acquire(False):
                # Somebody reads: sleep as a follower, registered *before*
                # trying the read lock again, so that a reader leaving
                # meanwhile sees us and hands its role over.
                parker = waiter.parker
                if parker is None:
                    parker = waiter.parker = self._parker()
                with lock:
                    if waiter.reply is not None:
                        break  # type: ignore[unreachable]  # answered meanwhile
                    session.followers.add(waiter)
                if not read_lock.acquire(False):
                    if deadline is None:
                        parker.lock.acquire()
                        answer: Any = waiter.reply  # (set by another thread)
                        if answer.__class__ is Packet:
                            # The reader that answered us also took us out
                            # of the followers: nobody else can wake us, so
                            # the wake-up is ours to take without the lock.
                            parker.permit = False
                            break
                    else:
                        remaining = deadline - monotonic()
                        if remaining > 0:
                            parker.lock.acquire(timeout=remaining)
                    with lock:
                        session.followers.discard(waiter)
                        self._consume(parker)
                    if waiter.reply is None and deadline is not None and monotonic() >= deadline:
                        self._hand_over(session)
                        return False
                    continue
                with lock:
                    session.followers.discard(waiter)
                    self._consume(parker)
            # We hold the read lock: we are the reader.
            try:
                done = self._lead(session, waiter, deadline, wakeable)
            finally:
                self._leave(session)
            if not done:
                return waiter.reply is not None
        self._hand_over(session)
        return True

    def _leave(self, session: _Session) -> None:
        """Give up the reader's role; wake a follower to take it over."""
        session.read_lock.release()
        if session.followers:
            with self._lock:
                self._pass_role(session)

    def _hand_over(self, session: _Session) -> None:
        # A follower leaving: if nobody reads, somebody else waiting must.
        if session.followers and not session.read_lock.locked():
            with self._lock:
                self._pass_role(session)

    @staticmethod
    def _pass_role(session: _Session) -> None:
        # With the state lock held: wake one follower still waiting.
        for follower in session.followers:
            if follower.reply is None:
                _unpark(follower)
                return

    def _parker(self) -> _Parker:
        parkers = self._parkers
        try:
            parker: _Parker = parkers.parker
        except AttributeError:
            parker = parkers.parker = _Parker()
        return parker

    @staticmethod
    def _consume(parker: _Parker) -> None:
        # With the state lock held, after sleeping (woken or timed out): take
        # the wake-up if there is one, so the lock is held again.
        if parker.permit:
            parker.permit = False
            parker.lock.acquire(False)

    def _lead(
        self, session: _Session, waiter: _Waiter, deadline: float | None, wakeable: bool
    ) -> bool:
        """Read and dispatch until ``waiter`` is answered (True) or time is up."""
        connection = self.connection
        receive = session.protocol.receive
        slots = session.slots
        lock = self._lock
        poll = wakeable or deadline is not None or connection.needs_poll
        try:
            while waiter.reply is None:
                if session.failure is not None:
                    return True
                if poll:
                    ready = self._poll(session, deadline)
                    if ready is None:
                        return False
                    if not ready:
                        continue
                data = connection.recv(_READ_SIZE)
                with lock:
                    replies, events = receive(data)
                    for packet in replies:
                        owner = slots.pop(packet.req_id, None)
                        if owner is not None:
                            owner.reply = packet
                            if owner.parker is not None:
                                session.followers.discard(owner)
                                _unpark(owner)
                    if events:
                        self._route(events)
        except PyXSError as exc:
            # ConnectionError from the transport, or UnexpectedPacket /
            # PacketTooLarge from the protocol: the stream is unusable.
            self._fail(session, exc)
            return True
        except OSError as exc:  # from select() on a closed descriptor
            self._fail(session, exc)
            return True
        return True

    def _route(self, events: Iterable[WatchEvent]) -> None:
        # Called with the state lock held.
        monitors = self._monitors
        for event in events:
            targets = monitors.get(event.token)
            if not targets:
                continue
            # A monitor watching several paths with one token is subscribed once
            # per watch, yet must see each event once.
            for monitor in targets if len(targets) == 1 else dict.fromkeys(targets):
                monitor._events.append(event)
                monitor._signal(_READY)
                if monitor._notify is not None:
                    monitor._notify()

    def _poll(self, session: _Session, deadline: float | None) -> bool | None:
        """Wait until the connection is readable (True), a wake-up (False),
        or the deadline (None)."""
        waker = session.waker
        if waker is None:
            waker = self._make_waker(session)
        # _fail() sets the failure, then kicks the waker it finds: failing
        # after this check kicks ours, failing before it must not be slept
        # through. And the descriptor is looked up only now: had the
        # connection been closed before the waker was made, the pair could
        # have been given its number.
        if session.failure is not None:
            return False
        fd = self.connection.fileno()
        wake = waker[0]
        wake_fd = wake.fileno()
        timeout = None if deadline is None else max(0.0, deadline - monotonic())
        try:
            readable, _, _ = select.select([fd, wake_fd], [], [], timeout)
        except ValueError:  # a descriptor beyond FD_SETSIZE
            readable = _poll_fallback([fd, wake_fd], timeout)
        if not readable:
            return None
        if wake_fd in readable:
            try:
                while wake.recv(4096):
                    pass
            except OSError:
                pass
        return fd in readable

    def _make_waker(self, session: _Session) -> Tuple[socket.socket, socket.socket]:
        with self._lock:
            if session.waker is None:
                reader, writer = socket.socketpair()
                reader.setblocking(False)
                writer.setblocking(False)
                session.waker = (reader, writer)
            return session.waker

    def _kick(self, session: _Session | None = None) -> None:
        """Wake a reader blocked in select()."""
        waker = (session or self._session).waker
        if waker is not None:
            try:
                waker[1].send(b"\0")
            except OSError:
                pass  # full: a wake-up is pending anyway


def _poll_fallback(fds: List[int], timeout: float | None) -> List[int]:
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    ms = None if timeout is None else int(timeout * 1000)
    return [fd for fd, _ in poller.poll(ms)]


class RVar:
    """pyxs 0.4's reply holder, returned by the deprecated :meth:`Router.send`:
    ``get()`` blocks until ``set()`` gives it a value, then returns it."""

    __slots__ = ("condition", "target")

    def __init__(self) -> None:
        self.condition = threading.Condition()
        self.target: Any = None

    def __repr__(self) -> str:
        return f"RVar({self.target})"

    def get(self) -> Any:
        """The value, once set."""
        with self.condition:
            while self.target is None:
                self.condition.wait()
        return self.target

    def set(self, target: Any) -> None:
        """Set the value; wakes every :meth:`get`."""
        with self.condition:
            self.target = target
            self.condition.notify_all()


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


class _EventQueue:
    """``Monitor.events``: pyxs 0.4's queue of a monitor's events, as a view
    of the monitor (``get``, ``get_nowait``, ``empty``, ``qsize``)."""

    def __init__(self, monitor: Monitor) -> None:
        self._monitor = monitor

    def get(self, block: bool = True, timeout: float | None = None) -> WatchEvent:
        """The next event; :class:`queue.Empty` when none came in time."""
        event = self._monitor.next_event(timeout if block else 0)
        if event is None:
            raise queue.Empty
        return event

    def get_nowait(self) -> WatchEvent:
        """The next event if one is there; else :class:`queue.Empty`."""
        return self.get(False)

    def qsize(self) -> int:
        """How many events are waiting."""
        return len(self._monitor._events)

    def empty(self) -> bool:
        """Whether no event is waiting."""
        return not self._monitor._events


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

    @property
    def _in_transaction(self) -> bool:
        return bool(self._local.tx_id)

    def _op(self, make: Callable[..., Operation[T]], *args: Any) -> T:
        return self._submit(make(*args))  # bad arguments first, before anything else

    def _submit(self, operation: Operation[T]) -> T:
        local = self._local
        tx_id = local.tx_id
        router = self.router
        if tx_id and local.tx_session is not router._session:
            tx_id = self._current_tx()  # raises
        if operation.__class__ is Command:  # _run's first case, one call sooner
            reply = router.roundtrip(operation.op, operation.payload, tx_id, self.timeout)
            return operation.result(reply)
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

        local = self._local

        def exchange(command: Command[Any]) -> Packet:
            # Each step, as each call: not in this thread's transaction once
            # it was lost with its connection (another thread reconnected).
            if tx_id and tx_id == local.tx_id and local.tx_session is not router._session:
                self._current_tx()  # raises
            return router.roundtrip(command.op, command.payload, tx_id, timeout)

        return run_blocking(operation, exchange)

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
        self.router._unsubscribe_all()
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
        session = self.router._session  # the one the request goes on (or a failed one)
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


class Monitor:
    """Watches and their events.

    :param client: the client whose connection the watches use.

    >>> with Client() as c, c.monitor() as m:  # doctest: +SKIP
    ...     m.watch(b"/vm", b"vm")
    ...     for event in m.wait(timeout=5):
    ...         print(event.path, event.token)
    b'/vm' b'vm'

    Events are routed to the monitor by their token, whatever else is in
    flight on the connection; :meth:`wait` yields them. Used as a context
    manager, the monitor removes its watches when the block ends.
    """

    def __init__(self, client: Client) -> None:
        self.client = client
        #: ``(path, token)`` of every watch this monitor added (pyxs 0.4 name)
        self.unwatch_queue: Set[Tuple[bytes, bytes]] = set()
        self._events: Deque[WatchEvent] = deque()
        self._waiters: Set[_Waiter] = set()
        self._woken = False
        self._closed = False
        #: called (state lock held) whenever an event is queued
        self._notify: Callable[[], None] | None = None

    def __repr__(self) -> str:
        return f"Monitor({self.client!r})"

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def events(self) -> _EventQueue:
        """pyxs 0.4's queue of this monitor's events: deprecated, use
        :meth:`next_event` (``events.get(timeout=t)`` is
        ``next_event(t)``, raising :class:`queue.Empty` for None)."""
        _deprecated("Monitor.events", "Monitor.next_event() or Monitor.wait()")
        return _EventQueue(self)

    @property
    def watched(self) -> Set[bytes]:
        """The paths this monitor watches."""
        return {path for path, _ in self.unwatch_queue}

    def watch(self, wpath: PathLike, token: PathLike) -> None:
        """Add a watch on ``wpath`` and everything below it.

        Events come for creation, change, permission change and removal of
        the node or a descendant, and once right after the watch is added;
        they can also be spurious. Changes made in a transaction fire when
        it commits. Special paths: ``@introduceDomain``, ``@releaseDomain``.

        :param token: any ASCII string; events carry it.
        """
        path = validate_watch_path(wpath)
        tok = check_ascii(token, "token")
        router = self.client.router
        # Subscribe first: the first event may come before the OK (XenBus).
        router.subscribe(tok, self)
        try:
            self.client.execute(commands.watch(path, tok), tx_id=0)
        except BaseException:
            router.unsubscribe(tok, self)
            raise
        self._closed = False
        self.unwatch_queue.add((path, tok))

    def unwatch(self, wpath: PathLike, token: PathLike) -> None:
        """Remove a watch added by :meth:`watch`."""
        path = validate_watch_path(wpath)
        tok = check_ascii(token, "token")
        self.client.execute(commands.unwatch(path, tok), tx_id=0)
        self.client.router.unsubscribe(tok, self)
        self.unwatch_queue.discard((path, tok))

    def close(self) -> None:
        """Remove every watch of this monitor, drop the events not yet
        taken, and end every :meth:`wait` (now and later, until the next
        :meth:`watch`).

        Over a closed connection the watches are gone already; they are just
        forgotten.
        """
        router = self.client.router
        for path, token in list(self.unwatch_queue):
            if router.is_connected:
                try:
                    self.unwatch(path, token)
                    continue
                except ConnectionError:
                    pass
                except NoEntryError:
                    pass  # dropped meanwhile (RESET_WATCHES)
            router.unsubscribe(token, self)
            self.unwatch_queue.discard((path, token))
        with router._lock:
            self._closed = True
            self._events.clear()
            self._signal(_READY)
        router._kick()

    def wake(self) -> None:
        """End the current (or the next) :meth:`wait` from any thread."""
        router = self.client.router
        with router._lock:
            self._woken = True
            self._signal(_READY)
        router._kick()

    def _signal(self, reply: Any) -> None:
        # Called with the router's state lock held.
        for waiter in self._waiters:
            if waiter.reply is None:
                waiter.reply = reply
                _unpark(waiter)

    def _is_watched(self, event: WatchEvent) -> bool:
        path, token = event
        for wpath, wtoken in self.unwatch_queue:
            if wtoken == token and watch_matches(wpath, path):
                return True
        return False

    def next_event(self, timeout: float | None = None) -> WatchEvent | None:
        """The next event of any of this monitor's tokens.

        Blocks until one arrives, ``timeout`` seconds pass (``0`` polls
        without blocking), :meth:`wake` is called or the monitor is closed;
        the last three give None.

        :raises pyxs.exceptions.ConnectionError: the connection is closed or
            lost.
        """
        router = self.client.router
        deadline = None if timeout is None else monotonic() + timeout
        while True:
            session = router._session
            waiter = _Waiter()
            with router._lock:
                if self._events:
                    return self._events.popleft()
                if self._woken:
                    self._woken = False
                    return None
                if self._closed:
                    return None
                if session.failure is not None:
                    raise _connection_error(session.failure)
                self._waiters.add(waiter)
            try:
                answered = router._wait(session, waiter, deadline, True)
            finally:
                with router._lock:
                    self._waiters.discard(waiter)
            if not answered:
                with router._lock:
                    if self._events:
                        return self._events.popleft()
                return None
            reply = waiter.reply
            if isinstance(reply, BaseException):
                raise _connection_error(reply)

    def wait(self, unwatched: bool = False, timeout: float | None = None) -> Iterator[WatchEvent]:
        """Yield events ``Event(path, token)`` as they come.

        :param unwatched: also yield events for paths no longer watched
            (they can still arrive after :meth:`unwatch`); dropped by default.
        :param timeout: end the iteration after this many seconds without an
            event. Without it the iteration ends only through :meth:`wake`,
            :meth:`close` or a lost connection (ConnectionError).
        """
        while True:
            event = self.next_event(timeout)
            if event is None:
                return
            if unwatched or self._is_watched(event):
                yield event
