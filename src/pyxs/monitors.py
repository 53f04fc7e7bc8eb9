"""Watches and their events: what :class:`~pyxs.client.Monitor` and
:class:`~pyxs.aio.AsyncMonitor` share, and the sync Monitor itself.

Theory of operation
-------------------
A monitor adds watches (``WATCH`` with a path and a token) on its client's
connection and takes the events of its tokens. The connection's reader (the
sync :class:`~pyxs.router.Router`, or the asyncio client's read callback)
routes each event by its token to every monitor subscribed with it, which
queues it; ``next_event`` takes the queue's head, or waits.

:class:`MonitorBase` holds what both kinds keep: the watches added
(``unwatch_queue``, pyxs 0.4's name, and ``watched``), the queued events,
the ``woken`` and ``closed`` flags, the order in which a wait looks at them
(:meth:`MonitorBase._take`: an event first, then a wake-up, then the close)
and the rule by which ``wait`` keeps an event: its token is that of a watch
still added whose path is the event's path or an ancestor of it
(:func:`pyxs.paths.watch_matches`), the rule of the real daemon.

Each kind says only how it blocks. The sync :class:`Monitor` waits at a
:class:`~pyxs.router.Doorbell` of its router, reading the connection
meanwhile; the router rings it, with its state lock held, for every event
delivered and when the connection fails; :meth:`Monitor.wake` and
:meth:`Monitor.close` ring it from any thread. The asyncio monitor awaits a
future (see :mod:`pyxs.aio`).
"""

from __future__ import annotations

import enum
import queue
from collections import deque
from collections.abc import Iterator
from time import monotonic
from typing import TYPE_CHECKING, Any, Final, Protocol

from . import commands
from ._deprecation import deprecated
from .exceptions import ConnectionError, NoEntryError
from .paths import PathLike, check_ascii, validate_watch_path, watch_matches
from .protocol import WatchEvent
from .router import Doorbell

if TYPE_CHECKING:
    from .commands import Operation
    from .router import Router


class WatchingClient(Protocol):
    """What a :class:`Monitor` needs of its client (a
    :class:`~pyxs.client.Client`): its router, and a way to run a command
    outside any transaction."""

    router: Router

    def execute(self, operation: Operation[Any], tx_id: int | None = None) -> Any: ...


__all__ = ["NOTHING_YET", "Monitor", "MonitorBase", "Nothing", "WatchingClient"]


class Nothing(enum.Enum):
    """The type of :data:`NOTHING_YET`."""

    YET = enum.auto()


#: What :meth:`MonitorBase._take` gives when the caller has to wait. (A
#: module constant: looking a member up on its Enum class costs 0.2 us.)
NOTHING_YET: Final = Nothing.YET


class MonitorBase:
    """What every monitor keeps: its watches, its queued events, whether it
    was woken or closed; the rule by which ``wait`` keeps an event."""

    def __init__(self) -> None:
        #: ``(path, token)`` of every watch this monitor added (pyxs 0.4's name)
        self.unwatch_queue: set[tuple[bytes, bytes]] = set()
        self._events: deque[WatchEvent] = deque()
        self._woken = False
        self._closed = False

    @property
    def watched(self) -> set[bytes]:
        """The paths this monitor watches."""
        return {path for path, _ in self.unwatch_queue}

    def _is_watched(self, event: WatchEvent) -> bool:
        path, token = event
        for wpath, wtoken in self.unwatch_queue:
            if wtoken == token and watch_matches(wpath, path):
                return True
        return False

    def _take(self) -> WatchEvent | Nothing | None:
        """The next event; None after a wake-up (taken) or the close;
        :data:`NOTHING_YET` when there is nothing yet (the connection's failure,
        if any, is for the caller to raise)."""
        if self._events:
            return self._events.popleft()
        if self._woken:
            self._woken = False
            return None
        if self._closed:
            return None
        return NOTHING_YET


class Monitor(MonitorBase):
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

    # Its public home (pyxs 0.4's): how it prints, pickles and is documented.
    __module__ = "pyxs.client"

    def __init__(self, client: WatchingClient) -> None:
        super().__init__()
        self.client = client
        self._bell = Doorbell(client.router)

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
        deprecated("Monitor.events", "Monitor.next_event() or Monitor.wait()")
        return _EventQueue(self)

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
        bell = self._bell
        with bell.lock:
            self._closed = True
            self._events.clear()
            bell.ring()
        bell.kick()

    def wake(self) -> None:
        """End the current (or the next) :meth:`wait` from any thread."""
        bell = self._bell
        with bell.lock:
            self._woken = True
            bell.ring()
        bell.kick()

    # -- what the router calls, with its state lock held -----------------------

    def _deliver(self, event: WatchEvent) -> None:
        self._events.append(event)
        self._bell.ring()

    def _fail(self, failure: BaseException) -> None:
        self._bell.ring(failure)

    # -- events ----------------------------------------------------------------

    def next_event(self, timeout: float | None = None) -> WatchEvent | None:
        """The next event of any of this monitor's tokens.

        Blocks until one arrives, ``timeout`` seconds pass (``0`` polls
        without blocking), :meth:`wake` is called or the monitor is closed;
        the last three give None.

        :raises pyxs.exceptions.ConnectionError: the connection is closed or
            lost.
        """
        bell = self._bell
        events = self._events
        deadline = None if timeout is None else monotonic() + timeout
        while True:
            with bell.lock:
                if events:  # _take's first case, one call sooner (after a ring)
                    return events.popleft()
                found = self._take()
                if found is not NOTHING_YET:
                    return found
                ticket = bell.register()
            if not bell.wait(ticket, deadline):
                with bell.lock:
                    if self._events:
                        return self._events.popleft()
                return None

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
