"""The sync I/O engine: one connection shared by threads that take turns reading it.

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
between threads. A monitor waiting for events (at a :class:`Doorbell`)
takes part as a reader too, so events are read whatever else is (or is not)
in flight.

The reader that hits an error (the connection closed, a malformed or
unexpected packet) *fails the connection*: every waiter gets a
:class:`~pyxs.exceptions.ConnectionError`, the connection is closed, and
later calls raise until :meth:`Router.start` opens it again. A reader that
must be wakeable (a monitor, a call with a timeout, the XenBus device, whose
reads ``close()`` cannot interrupt) first select()s on the connection and on
a wake-up socket pair; ``close()``, and a monitor's ``wake()`` and
``close()`` (:meth:`Doorbell.kick`), write to that pair.

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
"""

from __future__ import annotations

import errno
import select
import socket
import threading
from collections.abc import Iterable
from time import monotonic
from typing import Any, Protocol

from ._deprecation import deprecated
from .connection import PacketConnection
from .exceptions import ConnectionError, PyXSError
from .protocol import ClientProtocol, Packet, WatchEvent

__all__ = ["Doorbell", "RVar", "RequestTimeout", "Router", "Subscriber"]

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

    # Its public home (pyxs 0.4's): how it prints, pickles and is documented.
    __module__ = "pyxs.client"


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
        self.slots: dict[int, _Waiter] = {}
        #: waiters asleep as followers
        self.followers: set[_Waiter] = set()
        #: held by the reader
        self.read_lock = threading.Lock()
        #: held by the writer; packets other threads queued for it to send
        self.write_lock = threading.Lock()
        self.outbox: list[bytes] = []
        #: set when the connection failed or was closed
        self.failure = failure
        #: the wake-up socket pair of wakeable readers, made when first needed
        self.waker: tuple[socket.socket, socket.socket] | None = None

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


class Subscriber(Protocol):
    """What the router hands watch events to (a :class:`~pyxs.client.Monitor`).

    Both methods are called with the router's state lock held, by the
    reader: they must only queue and wake (:meth:`Doorbell.ring`).
    """

    #: ``(path, token)`` of its watches; cleared by :meth:`Router.unsubscribe_all`
    unwatch_queue: set[tuple[bytes, bytes]]

    def _deliver(self, event: WatchEvent) -> None:
        """An event carrying one of its tokens arrived."""

    def _fail(self, failure: BaseException) -> None:
        """The connection failed or was closed."""


class Doorbell:
    """Where threads wait for something other than a reply (a monitor's
    events), reading the connection meanwhile as any waiting thread does.

    Its state is guarded by the router's state lock: hold it (``with
    bell:``) to look at what is awaited and :meth:`register` in one step,
    so that a :meth:`ring` (made with the lock held too, by the reader
    delivering an event or by another thread) cannot be missed. Then
    :meth:`wait`, without the lock. A thread that rings from outside the
    reader calls :meth:`kick` afterwards, without the lock, to wake a
    reader blocked in select().
    """

    __slots__ = ("_router", "_waiters")

    def __init__(self, router: Router) -> None:
        self._router = router
        self._waiters: set[_Waiter] = set()

    def __enter__(self) -> Doorbell:
        self._router._lock.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._router._lock.release()

    def register(self) -> tuple[_Session, _Waiter]:
        """(Lock held) A ticket for :meth:`wait`, on the open connection.

        :raises pyxs.exceptions.ConnectionError: the connection is closed or failed.
        """
        session = self._router._session
        if session.failure is not None:
            raise _connection_error(session.failure)
        waiter = _Waiter()
        self._waiters.add(waiter)
        return session, waiter

    def wait(self, ticket: tuple[_Session, _Waiter], deadline: float | None) -> bool:
        """Block until rung (True) or ``deadline`` passes (False).

        :raises pyxs.exceptions.ConnectionError: the connection failed meanwhile.
        """
        session, waiter = ticket
        router = self._router
        try:
            answered = router._wait(session, waiter, deadline, True)
        finally:
            with router._lock:
                self._waiters.discard(waiter)
        reply = waiter.reply
        if answered and isinstance(reply, BaseException):
            raise _connection_error(reply)
        return answered

    def ring(self, reply: Any = _READY) -> None:
        """(Lock held) Wake every registered waiter (``reply``: a failure
        makes :meth:`wait` raise it)."""
        for waiter in self._waiters:
            if waiter.reply is None:
                waiter.reply = reply
                _unpark(waiter)

    def kick(self) -> None:
        """(Lock not held) Wake a reader blocked in select() on the
        connection, so that a waiter it serves sees the ring."""
        self._router._kick()


class Router:
    """Multiplexes one connection between clients, threads and monitors.

    :param connection: a :class:`~pyxs.connection.UnixSocketConnection` or
        :class:`~pyxs.connection.XenBusConnection`, owned by the router from
        now on. :meth:`start` opens it, :meth:`terminate` closes it.

    Share one router between clients with ``Client(router=router)``; each
    client (and each thread) keeps its own transaction.
    """

    # Its public home (pyxs 0.4's): how it prints, pickles and is documented.
    __module__ = "pyxs.client"

    def __init__(self, connection: PacketConnection) -> None:
        self.connection = connection
        #: guards req_id allocation and the outbox; never held across I/O
        self._send_lock = threading.Lock()
        #: serialises start(): held across connect(), taken before any other
        self._start_lock = threading.Lock()
        self._lock = threading.Lock()
        self._session = _Session(ConnectionError("not connected"))
        self._monitors: dict[bytes, list[Subscriber]] = {}
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
        deprecated("Router.send()", "Router.roundtrip() or Client.execute()")
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
                    monitor._fail(failure)
            if session is self._session:
                # Inside the state lock, so that start() cannot open the new
                # connection in between and have it closed here. (Closing
                # does not block.)
                self.connection.close()
        self._kick(session)

    # -- subscriptions (pyxs 0.4 names) ----------------------------------------

    def subscribe(self, token: bytes, monitor: Subscriber) -> None:
        """Deliver events carrying ``token`` to ``monitor``."""
        with self._lock:
            self._monitors.setdefault(token, []).append(monitor)

    def unsubscribe(self, token: bytes, monitor: Subscriber) -> None:
        """Stop delivering events carrying ``token`` to ``monitor`` (once)."""
        with self._lock:
            monitors = self._monitors.get(token)
            if monitors and monitor in monitors:
                monitors.remove(monitor)
                if not monitors:
                    del self._monitors[token]

    def unsubscribe_all(self) -> None:
        """Forget every subscription (the server dropped every watch:
        RESET_WATCHES); each monitor forgets its watches."""
        with self._lock:
            monitors = {id(m): m for ms in self._monitors.values() for m in ms}
            self._monitors.clear()
        for monitor in monitors.values():
            monitor.unwatch_queue.clear()

    # The name Client.reset_watches calls until it is moved to unsubscribe_all().
    _unsubscribe_all = unsubscribe_all

    @property
    def session(self) -> object:
        """The open connection's identity: a new object each time
        :meth:`start` opens the connection (again). Transaction ids are
        numbered per connection: one is valid only in the session that
        started it."""
        return self._session

    def read_until_closed(self) -> None:
        """Read the connection until it fails or is closed, taking turns
        with the other readers: events reach the monitors while nobody else
        is calling (a reader of last resort, in a thread of its own)."""
        self._wait(self._session, _Waiter(), None, True)

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
                monitor._deliver(event)

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

    def _make_waker(self, session: _Session) -> tuple[socket.socket, socket.socket]:
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


def _poll_fallback(fds: list[int], timeout: float | None) -> list[int]:
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    ms = None if timeout is None else int(timeout * 1000)
    return [fd for fd, _ in poller.poll(ms)]


class RVar:
    """pyxs 0.4's reply holder, returned by the deprecated :meth:`Router.send`:
    ``get()`` blocks until ``set()`` gives it a value, then returns it."""

    # Its public home (pyxs 0.4's): how it prints, pickles and is documented.
    __module__ = "pyxs.client"

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
