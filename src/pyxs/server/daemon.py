"""Sockets and connections: the :class:`Server` API and its two I/O loops.

Theory of operation
-------------------
The privileged socket (:attr:`Server.socket_path`, mode 0600) accepts dom0
connections. When a dom0 client INTRODUCEs a new domain, the server starts
listening on ``<run_dir>/domain-<domid>.sock`` (mode 0600,
:meth:`Server.guest_socket_path`): connections there act as that
unprivileged domain. When the domain is released or dies, that socket and
its connections are closed.

All protocol work happens in the sans-I/O core
(:class:`~pyxs.server.core.XenStore`). An I/O loop only moves bytes: it
feeds what a connection sent to the core, then writes out what the core
queued for every connection (one write per connection per batch).

**What bounds memory.** A connection whose client does not read its
replies is no longer read from once 1 MiB of output waits for it
(``_HIGH_WATER``): its replies are bounded. Watch events are caused by
*other* connections, so they are bounded apart: a guest's unread output
counts in its ``memory`` quota (2.5 MiB), and an event that would bring it
to the quota is dropped, as in cxenstored; a dom0 connection is closed
once 64 MiB wait for it (``XenStore.dom0_backlog_max``). All of it goes
with the connection.

Two loops, equally thin:

* a plain :mod:`selectors` loop, used by ``with Server()`` (in a background
  thread) and by ``pyxs serve`` / ``python -m pyxs.server`` (in the
  foreground). It does not import :mod:`asyncio`, which alone costs a
  dozen megabytes;
* an :mod:`asyncio` loop, used by ``async with Server()`` (on the running
  event loop).

**Domain states from outside.** Besides :meth:`Server.set_domain_state`, a
server reacts as the realxs shim makes the real daemon react: write lines
``<domid> <state>`` (running, shutdown, crashed, dying, gone) to
``<run_dir>/domains``, then write the 4-byte little-endian port number 1
(VIRQ_DOM_EXC) into the FIFO ``<run_dir>/evtchn``. The server re-reads the
file and acts as on the VIRQ. Requests read after the FIFO write are
answered after the VIRQ was handled (the FIFO is checked before each batch
of requests).
"""

from __future__ import annotations

import collections
import contextlib
import errno
import os
import selectors
import socket
import stat
import struct
import threading
import time
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from .core import XenStore
from .domains import DOMAIN_STATES
from .peer import Peer
from .quotas import Quotas, SoftQuotas

if TYPE_CHECKING:
    import asyncio

    from ..trace import Tracer

__all__ = ["Server", "SocketInUse"]

T = TypeVar("T")

_VIRQ_DOM_EXC = 1
#: stop reading from a connection whose unsent output exceeds this
_HIGH_WATER = 1 << 20
_READ_SIZE = 1 << 16
#: accept() errors that mean "no descriptor (or memory) for a new connection"
_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
#: out of descriptors, try accepting again after this many seconds at most
_ACCEPT_RETRY = 1.0


def _make_quotas(quotas: Quotas | Mapping[str, int] | None) -> Quotas:
    if quotas is None:
        return Quotas()
    if isinstance(quotas, Quotas):
        return quotas
    result = Quotas()
    for name, value in quotas.items():
        if not result.set(name, int(value)):
            raise ValueError(f"unknown quota {name!r}")
    return result


class SocketInUse(OSError):
    """A server already answers on the socket path: this one does not start."""


#: a file's identity: the socket file a server made is removed only while
#: the path still names that file (a later server may have replaced it)
FileId = tuple[int, int]


def _file_id(path: str) -> FileId | None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _listen_unix(path: str) -> tuple[socket.socket, FileId]:
    """Listen at ``path``; the socket and the identity of the file it made.

    Only a *stale* socket is replaced (one nobody listens on: connecting is
    refused). A live server's socket raises :class:`SocketInUse`; anything
    else at ``path`` (a regular file, a symlink, a directory) raises
    :class:`FileExistsError`. Neither is touched.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise FileExistsError(errno.EEXIST, "exists and is not a socket (left alone)", path)
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.setblocking(False)  # a live server with a full backlog: EAGAIN
        try:
            live = probe.connect_ex(path) != errno.ECONNREFUSED
        finally:
            probe.close()
        if live:
            raise SocketInUse(errno.EADDRINUSE, "a server is already listening there", path)
        if _file_id(path) == (st.st_dev, st.st_ino):
            os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        made = _file_id(path)
        assert made is not None
        os.chmod(path, 0o600)
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock, made


def _unlink_if(path: str, made: FileId | None) -> None:
    """Remove ``path`` if it is still the file this server made."""
    if made is not None and _file_id(path) == made:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _receive(core: XenStore, conn: Peer, data: bytes) -> bool:
    """Feed the core; a bug while handling one connection's request drops
    that connection (with a traceback on stderr), never the server."""
    try:
        return core.receive(conn, data)
    except Exception:  # noqa: BLE001 - the server must survive its own bugs
        import traceback

        traceback.print_exc()
        return False


class _Future:
    """A minimal thread-safe result holder (concurrent.futures costs imports)."""

    __slots__ = ("_done", "_error", "_value")

    def __init__(self) -> None:
        self._done = threading.Event()
        self._value: Any = None
        self._error: BaseException | None = None

    def run(self, func: Callable[[], Any]) -> None:
        try:
            self._value = func()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            self._error = exc
        self._done.set()

    def result(self) -> Any:
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._value


# ---------------------------------------------------------------------------
# the selectors loop


class _SelConn:
    __slots__ = ("conn", "out", "reading", "sock")

    def __init__(self, sock: socket.socket, conn: Peer) -> None:
        self.sock = sock
        self.conn = conn
        self.out = bytearray()
        self.reading = True


class _Loop:
    """What both I/O loops do the same way. Each loop says how it writes to
    a connection, reads one again, drops one, listens, watches a descriptor
    and runs a call on its own thread; the flush and the handling of
    received bytes are these."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.core = server.core

    # -- what each loop says -------------------------------------------------
    def write(self, seq: int, data: bytes) -> None:
        """Send (or buffer) output for connection ``seq``."""
        raise NotImplementedError

    def read_again(self, seq: int) -> None:
        """Resume reading connection ``seq`` (its held requests are done)."""
        raise NotImplementedError

    def drop(self, seq: int) -> None:
        """Close connection ``seq`` now; the core forgets it."""
        raise NotImplementedError

    def listen(self, domid: int, sock: socket.socket) -> None:
        """Accept connections acting as ``domid`` on ``sock``."""
        raise NotImplementedError

    def unlisten(self, domid: int) -> None:
        raise NotImplementedError

    def add_reader(self, fd: int, callback: Callable[[], None]) -> None:
        raise NotImplementedError

    def remove_reader(self, fd: int) -> None:
        raise NotImplementedError

    def call_soon(self, func: Callable[[], None]) -> None:
        """Run ``func`` on the loop's thread (from any thread)."""
        raise NotImplementedError

    def on_loop_thread(self) -> bool:
        """Whether the caller may touch the core directly."""
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    # -- the same for both ---------------------------------------------------
    def received(self, conn: Peer, data: bytes) -> None:
        """Bytes read from ``conn``: the VIRQ FIFO first (its changes come
        before the requests read after it), then the core, then a flush."""
        server = self.server
        if server._virq_fd is not None:
            server._poll_virq()
        if not _receive(self.core, conn, data):
            self.drop(conn.seq)
        self.flush()

    def flush(self) -> None:
        """Hand every connection's queued output to :meth:`write`; then
        process the requests held back by the "outstanding" quota of
        connections no longer over it (which queues more output), and
        :meth:`read_again` each connection so released."""
        core = self.core
        while True:
            for seq, conn in list(core.dirty.items()):
                data = core.take_output(conn)
                if data:
                    self.write(seq, data)
            if not core.holding:
                return
            held = list(core.holding)
            if not core.resume():
                return
            for seq in held:
                if seq not in core.holding:
                    self.read_again(seq)


class _SelectorLoop(_Loop):
    """A single-threaded selectors loop serving one :class:`Server`."""

    def __init__(self, server: Server) -> None:
        super().__init__(server)
        self.sel = selectors.DefaultSelector()
        self.conns: dict[int, _SelConn] = {}
        self.listeners: dict[int, socket.socket] = {}
        #: whether the listeners are polled (not while out of descriptors)
        self.accepting = True
        self.accept_retry = 0.0
        self.accept_retry_delay = _ACCEPT_RETRY
        self.running = False
        # Set by stop() and never cleared: a stop() that comes after the
        # loop was made, even before run() starts, ends it.
        self.stopping = False
        self.thread_id: int | None = None
        self.calls: collections.deque[Callable[[], None]] = collections.deque()
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        self.sel.register(self.wake_r, selectors.EVENT_READ, self._on_wake)

    # -- cross-thread ------------------------------------------------------
    def wake(self) -> None:
        with contextlib.suppress(OSError):
            self.wake_w.send(b"\0")

    def call_soon(self, func: Callable[[], None]) -> None:
        self.calls.append(func)
        self.wake()

    def on_loop_thread(self) -> bool:
        return self.thread_id in (None, threading.get_ident()) or not self.running

    def add_reader(self, fd: int, callback: Callable[[], None]) -> None:
        self.sel.register(fd, selectors.EVENT_READ, lambda mask: callback())

    def remove_reader(self, fd: int) -> None:
        with contextlib.suppress(Exception):
            self.sel.unregister(fd)

    def _on_wake(self, _mask: int) -> None:
        with contextlib.suppress(OSError):
            while self.wake_r.recv(4096):
                pass
        calls = self.calls
        while calls:
            calls.popleft()()

    # -- listening -------------------------------------------------------------
    # Out of file descriptors, accept() fails while the listener stays
    # readable: polling it would spin. The listeners are then taken out of
    # the selector until a connection closes (a descriptor is free again),
    # or _ACCEPT_RETRY seconds have passed (one freed elsewhere in the
    # process), as asyncio's own loop does.
    def listen(self, domid: int, sock: socket.socket) -> None:
        self.listeners[domid] = sock
        if self.accepting:
            self._register_listener(domid, sock)

    def _register_listener(self, domid: int, sock: socket.socket) -> None:
        self.sel.register(sock, selectors.EVENT_READ, lambda mask: self._accept(sock, domid))

    def unlisten(self, domid: int) -> None:
        sock = self.listeners.pop(domid, None)
        if sock is not None:
            if self.accepting:
                with contextlib.suppress(Exception):
                    self.sel.unregister(sock)
            sock.close()
            self._resume_accepting()

    def _pause_accepting(self) -> None:
        if not self.accepting:
            return
        self.accepting = False
        self.accept_retry = time.monotonic() + self.accept_retry_delay
        for sock in self.listeners.values():
            with contextlib.suppress(Exception):
                self.sel.unregister(sock)

    def _resume_accepting(self) -> None:
        if self.accepting:
            return
        self.accepting = True
        for domid, sock in self.listeners.items():
            self._register_listener(domid, sock)

    def _accept(self, listener: socket.socket, domid: int) -> None:
        for _ in range(64):
            try:
                sock, _addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _OUT_OF_RESOURCES:
                    self._pause_accepting()
                return
            try:
                conn = self.core.connect(domid)
            except LookupError:
                sock.close()
                continue
            sock.setblocking(False)
            entry = _SelConn(sock, conn)
            conn.unsent = entry.out.__len__
            self.conns[conn.seq] = entry
            self.sel.register(
                sock, selectors.EVENT_READ, lambda mask, e=entry: self._on_event(e, mask)
            )

    # -- connections -----------------------------------------------------------
    def _on_event(self, entry: _SelConn, mask: int) -> None:
        if mask & selectors.EVENT_WRITE:
            self._send_pending(entry)
        if mask & selectors.EVENT_READ and entry.reading:
            self._on_read(entry)

    def _on_read(self, entry: _SelConn) -> None:
        try:
            data = entry.sock.recv(_READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.drop(entry.conn.seq)
            self.flush()
            return
        self.received(entry.conn, data)
        if entry.conn.held:
            self._update(entry)  # too many replies outstanding: stop reading

    def write(self, seq: int, data: bytes) -> None:
        entry = self.conns.get(seq)
        if entry is None:
            return
        if entry.out:
            entry.out += data
        else:
            try:
                sent = entry.sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self.drop(seq)
                return
            if sent == len(data):
                return
            entry.out += data[sent:]
        self._update(entry)

    def _send_pending(self, entry: _SelConn) -> None:
        try:
            sent = entry.sock.send(entry.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.drop(entry.conn.seq)
            return
        del entry.out[:sent]
        self._update(entry)
        if self.core.holding:
            self.flush()  # replies went out: held requests may go on

    def _update(self, entry: _SelConn) -> None:
        entry.reading = len(entry.out) < _HIGH_WATER and not entry.conn.held
        mask = selectors.EVENT_WRITE if entry.out else 0
        if entry.reading:
            mask |= selectors.EVENT_READ
        if mask == 0:
            mask = selectors.EVENT_READ  # keep it registered; reading is off
        with contextlib.suppress(KeyError, ValueError):
            self.sel.modify(entry.sock, mask, self.sel.get_key(entry.sock).data)

    def read_again(self, seq: int) -> None:
        entry = self.conns.get(seq)
        if entry is not None:
            self._update(entry)

    def drop(self, seq: int) -> None:
        entry = self.conns.pop(seq, None)
        if entry is None:
            return
        self.core.disconnect(entry.conn)
        with contextlib.suppress(Exception):
            self.sel.unregister(entry.sock)
        entry.sock.close()
        self._resume_accepting()

    # -- running -------------------------------------------------------------
    def run(self) -> None:
        self.thread_id = threading.get_ident()
        self.running = True
        select = self.sel.select
        try:
            while not self.stopping:
                if self.accepting:
                    events = select()
                else:
                    events = select(max(0.0, self.accept_retry - time.monotonic()))
                    if time.monotonic() >= self.accept_retry:
                        self._resume_accepting()
                for key, mask in events:
                    key.data(mask)
        finally:
            self.running = False

    def stop(self) -> None:
        self.stopping = True
        # A signal handler calling this on the loop's own thread interrupts
        # select(), which resumes and finds this byte waiting.
        self.wake()

    def close(self) -> None:
        for seq in list(self.conns):
            self.drop(seq)
        for domid in list(self.listeners):
            self.unlisten(domid)
        with contextlib.suppress(Exception):
            self.sel.unregister(self.wake_r)
        self.wake_r.close()
        self.wake_w.close()
        self.sel.close()


# ---------------------------------------------------------------------------
# the asyncio loop


class _AsyncLoop(_Loop):
    """The same duties on a running asyncio event loop."""

    def __init__(
        self, server: Server, loop: asyncio.AbstractEventLoop, stopped: asyncio.Event
    ) -> None:
        super().__init__(server)
        self.loop = loop
        #: set by stop(): Server.wait_closed() then closes
        self.stopped = stopped
        self.protocols: dict[int, Any] = {}
        self.listeners: dict[int, asyncio.AbstractServer] = {}
        self.pending: dict[int, socket.socket] = {}

    def call_soon(self, func: Callable[[], None]) -> None:
        self.loop.call_soon_threadsafe(func)

    def on_loop_thread(self) -> bool:
        import asyncio

        try:
            return asyncio.get_running_loop() is self.loop
        except RuntimeError:
            return False

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.stopped.set)

    def add_reader(self, fd: int, callback: Callable[[], None]) -> None:
        self.loop.add_reader(fd, callback)

    def remove_reader(self, fd: int) -> None:
        with contextlib.suppress(Exception):
            self.loop.remove_reader(fd)

    def _protocol_factory(self, domid: int) -> Any:
        import asyncio

        frontend = self
        core = self.core

        class _Protocol(asyncio.Protocol):
            def __init__(self) -> None:
                self.conn: Peer | None = None
                self.transport: asyncio.Transport | None = None
                self.paused = False

            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                assert isinstance(transport, asyncio.Transport)
                self.transport = transport
                try:
                    self.conn = core.connect(domid)
                except LookupError:
                    transport.abort()
                    return
                self.conn.unsent = transport.get_write_buffer_size
                if not self.conn.privileged:
                    # be told whenever its output drains (the outstanding quota)
                    transport.set_write_buffer_limits(high=0)
                frontend.protocols[self.conn.seq] = self

            def data_received(self, data: bytes) -> None:
                conn = self.conn
                if conn is None:
                    return
                frontend.received(conn, data)
                if conn.held and self.transport is not None:
                    self.transport.pause_reading()  # resumed by resume_writing

            def pause_writing(self) -> None:
                if self.transport is not None and not self.paused:
                    self.paused = True
                    self.transport.pause_reading()

            def resume_writing(self) -> None:
                self.paused = False
                frontend.flush()  # replies went out: held requests may go on
                conn = self.conn
                transport = self.transport
                if transport is not None and conn is not None and not conn.held and not self.paused:
                    with contextlib.suppress(Exception):
                        transport.resume_reading()

            def connection_lost(self, exc: Exception | None) -> None:
                conn = self.conn
                if conn is not None:
                    frontend.protocols.pop(conn.seq, None)
                    core.disconnect(conn)
                    self.conn = None
                frontend.flush()

        return _Protocol()

    async def start_listening(self, domid: int, sock: socket.socket) -> None:
        srv = await self.loop.create_unix_server(lambda: self._protocol_factory(domid), sock=sock)
        if self.pending.get(domid) is sock:
            del self.pending[domid]
            self.listeners[domid] = srv
        else:
            srv.close()

    def listen(self, domid: int, sock: socket.socket) -> None:
        self.pending[domid] = sock
        self.loop.create_task(self.start_listening(domid, sock))

    def unlisten(self, domid: int) -> None:
        srv = self.listeners.pop(domid, None)
        if srv is not None:
            srv.close()
        sock = self.pending.pop(domid, None)
        if sock is not None:
            sock.close()

    def write(self, seq: int, data: bytes) -> None:
        proto = self.protocols.get(seq)
        if proto is not None and proto.transport is not None:
            proto.transport.write(data)

    def read_again(self, seq: int) -> None:
        proto = self.protocols.get(seq)
        if proto is not None and not proto.paused:
            with contextlib.suppress(Exception):
                proto.transport.resume_reading()

    def drop(self, seq: int) -> None:
        proto = self.protocols.pop(seq, None)
        if proto is None:
            return
        conn = proto.conn
        proto.conn = None
        if conn is not None:
            self.core.disconnect(conn)
        if proto.transport is not None:
            proto.transport.abort()

    async def close(self) -> None:
        for seq in list(self.protocols):
            self.drop(seq)
        servers = list(self.listeners.values())
        self.listeners.clear()
        for sock in self.pending.values():
            sock.close()
        self.pending.clear()
        for srv in servers:
            srv.close()
        for srv in servers:
            with contextlib.suppress(Exception):
                await srv.wait_closed()


# ---------------------------------------------------------------------------


class Server:
    """An embedded XenStore server that answers like cxenstored 4.17.

    ``with Server() as srv:`` serves from a background thread;
    ``async with Server() as srv:`` serves on the running event loop;
    :meth:`serve_forever` serves in the calling thread.

    :param socket_path: the privileged (dom0) socket; default
        ``<run_dir>/socket`` in a new temporary directory.
    :param run_dir: where guest sockets (``domain-<domid>.sock``), the
        ``domains`` file and the ``evtchn`` FIFO live; default the socket's
        directory.
    :param quotas: a :class:`~pyxs.server.quotas.Quotas`, or a mapping of
        quota names (``nodes``, ``watches``, ``transactions``,
        ``outstanding``, ``transaction-nodes``, ``memory``, ``node-size``,
        ``path-max``, ``permissions``; ``_`` works for ``-``) to values.
        They bind unprivileged domains only.
    :param soft_quotas: a :class:`~pyxs.server.quotas.SoftQuotas`.
    :param keep_orphans: like ``xenstored -K``: the nodes of a domain that
        goes away are given to dom0 instead of being removed.
    :param trace: write every request, reply and watch event, decoded, as
        ``pyxs trace`` does, each connection with its domain: a file name
        (``"-"``: stderr) or a :class:`pyxs.trace.tracer.Tracer`. The trace ends
        (its summary, if kept, is written) when the server stops.
    :param logfile: like ``xenstored -T``: where ``CONTROL print`` and
        friends write.
    """

    def __init__(
        self,
        socket_path: str | os.PathLike[str] | None = None,
        *,
        run_dir: str | os.PathLike[str] | None = None,
        quotas: Quotas | Mapping[str, int] | None = None,
        soft_quotas: SoftQuotas | None = None,
        keep_orphans: bool = False,
        logfile: str | None = None,
        trace: Tracer | str | None = None,
    ) -> None:
        core = XenStore(_make_quotas(quotas), soft_quotas, keep_orphans=keep_orphans)
        self._tempdir: str | None = None
        if socket_path is None:
            if run_dir is None:
                import tempfile  # (lazily: it costs a megabyte of RSS)

                self._tempdir = tempfile.mkdtemp(prefix="pyxs-", dir="/tmp")
                run_dir = self._tempdir
            socket_path = os.path.join(os.fspath(run_dir), "socket")
        #: the privileged (dom0) socket
        self.socket_path: str = os.fspath(socket_path)
        #: where guest sockets, ``domains`` and ``evtchn`` live
        self.run_dir: str = (
            os.fspath(run_dir)
            if run_dir is not None
            else os.path.dirname(os.path.abspath(self.socket_path))
        )
        #: the sans-I/O server state (touch it only from the server's loop)
        self.core = core
        if logfile is not None:
            self.core.set_logfile(logfile)
        if isinstance(trace, str):
            from ..trace import Tracer

            trace = Tracer.to_file(trace)
        self.core.tracer = trace
        self.core.on_introduce = self._on_introduce
        self.core.on_destroy = self._on_destroy
        self.core.on_close = self._on_close
        #: the loop serving (either kind), and the asyncio one if that is it
        self._frontend: _Loop | None = None
        self._aio: _AsyncLoop | None = None
        self._thread: threading.Thread | None = None
        self._guest_paths: dict[int, str] = {}
        #: socket files (and the FIFO) this server made: path -> identity
        self._made: dict[str, FileId] = {}
        self._virq_fd: int | None = None
        self._virq_path: str | None = None
        self._virq_buf = b""
        self._file_states: dict[int, str] = {}

    # ------------------------------------------------------------------
    # running in a thread / in the foreground (selectors)
    def __enter__(self) -> Server:
        frontend = self._start_selector()

        def run() -> None:
            try:
                frontend.run()
            finally:
                self._teardown(frontend)

        self._thread = threading.Thread(target=run, name="pyxs-server", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def serve_forever(self, ready: Callable[[], None] | None = None) -> None:
        """Serve in the calling thread until :meth:`stop` (call it from another
        thread or a signal handler). ``ready()`` is called once the sockets
        exist; a :meth:`stop` from then on, even from ``ready()`` itself or
        before the loop has started, ends the serving."""
        frontend = self._start_selector()
        try:
            if ready is not None:
                ready()
            frontend.run()
        finally:
            self._teardown(frontend)

    def stop(self) -> None:
        """Stop serving (from any thread, or a signal handler)."""
        frontend = self._frontend
        if frontend is not None:
            frontend.stop()

    def _start_selector(self) -> _SelectorLoop:
        if self._frontend is not None:
            raise RuntimeError("server already started")
        frontend = _SelectorLoop(self)
        self._frontend = frontend
        try:
            os.makedirs(self.run_dir, exist_ok=True)
            frontend.listen(0, self._listen(self.socket_path))
            self._open_virq_fifo()
        except BaseException:
            self._teardown(frontend)
            raise
        return frontend

    def _teardown(self, frontend: _SelectorLoop) -> None:
        frontend.close()
        self._frontend = None
        self._close_files()

    def _close_files(self) -> None:
        if self.core.tracer is not None:
            self.core.tracer.finish()
            self.core.tracer = None
        self._close_virq_fifo()
        for path, made in self._made.items():
            _unlink_if(path, made)
        self._made.clear()
        self._guest_paths.clear()
        if self._tempdir is not None:
            import shutil

            shutil.rmtree(self._tempdir, ignore_errors=True)
            self._tempdir = None

    # ------------------------------------------------------------------
    # running on an asyncio loop
    async def start(self) -> None:
        """Start serving on the running asyncio loop."""
        import asyncio

        if self._frontend is not None:
            raise RuntimeError("server already started")
        frontend = _AsyncLoop(self, asyncio.get_running_loop(), asyncio.Event())
        self._frontend = self._aio = frontend
        try:
            os.makedirs(self.run_dir, exist_ok=True)
            sock = self._listen(self.socket_path)
            frontend.pending[0] = sock
            await frontend.start_listening(0, sock)
            self._open_virq_fifo()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Stop serving on the asyncio loop; remove the socket files."""
        frontend = self._aio
        if frontend is None:
            return
        self._frontend = self._aio = None
        await frontend.close()
        self._close_files()
        frontend.stopped.set()

    async def wait_closed(self) -> None:
        """Serve until :meth:`stop` is called, then close."""
        frontend = self._aio
        if frontend is not None:
            await frontend.stopped.wait()
        await self.close()

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _listen(self, path: str) -> socket.socket:
        sock, made = _listen_unix(path)
        self._made[path] = made
        return sock

    # ------------------------------------------------------------------
    # public API
    def guest_socket_path(self, domid: int) -> str:
        """The socket whose connections act as domain ``domid``.

        It exists from the first INTRODUCE of ``domid`` until the domain is
        released or dies."""
        return os.path.join(self.run_dir, f"domain-{domid}.sock")

    def set_domain_state(self, domid: int, state: str) -> None:
        """Say what the hypervisor reports about ``domid``; act as on VIRQ_DOM_EXC.

        ``shutdown``/``crashed`` fire ``@releaseDomain`` (the domain stays
        introduced); ``dying``/``gone`` destroy it (its nodes are removed,
        ``@releaseDomain`` fires); ``running`` makes a domain exist for
        permissions without introducing it. Synchronous: done when this
        returns.
        """
        if state not in DOMAIN_STATES:
            raise ValueError(f"unknown domain state {state!r}; expected one of {DOMAIN_STATES}")

        def apply() -> None:
            self.core.set_domain_state(domid, state)
            self._flush()

        self._call(apply)

    def call(self, func: Callable[[XenStore], T]) -> T:
        """Run ``func(core)`` in the server's loop and return its result."""
        result: T = self._call(lambda: func(self.core))
        return result

    def _call(self, func: Callable[[], Any]) -> Any:
        frontend = self._frontend
        if frontend is None or frontend.on_loop_thread():
            return func()
        future = _Future()
        frontend.call_soon(lambda: future.run(func))
        return future.result()

    # ------------------------------------------------------------------
    # glue between the core and the loops
    def _flush(self) -> None:
        frontend = self._frontend
        if frontend is not None:
            frontend.flush()

    def _on_introduce(self, domid: int) -> None:
        frontend = self._frontend
        if frontend is None:
            return
        path = self.guest_socket_path(domid)
        try:
            sock = self._listen(path)
        except OSError:
            return
        self._guest_paths[domid] = path
        frontend.listen(domid, sock)

    def _on_destroy(self, domid: int) -> None:
        frontend = self._frontend
        if frontend is not None:
            frontend.unlisten(domid)
        path = self._guest_paths.pop(domid, None)
        if path is not None:
            _unlink_if(path, self._made.pop(path, None))

    def _on_close(self, conn: Peer) -> None:
        frontend = self._frontend
        if frontend is not None:
            frontend.drop(conn.seq)

    # -- the VIRQ FIFO ----------------------------------------------------
    def _open_virq_fifo(self) -> None:
        path = os.path.join(self.run_dir, "evtchn")
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISFIFO(st.st_mode):
                return  # not ours to replace: no VIRQ FIFO then
            os.unlink(path)  # a FIFO left by an earlier server
        try:
            os.mkfifo(path, 0o600)
            made = _file_id(path)
            fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        except OSError:
            return
        if made is not None:
            self._made[path] = made
        self._virq_fd = fd
        self._virq_path = path
        frontend = self._frontend
        if frontend is not None:
            frontend.add_reader(fd, self._poll_virq)

    def _close_virq_fifo(self) -> None:
        fd = self._virq_fd
        if fd is None:
            return
        self._virq_fd = None
        frontend = self._frontend
        if frontend is not None:
            frontend.remove_reader(fd)
        os.close(fd)

    def _poll_virq(self) -> None:
        fd = self._virq_fd
        if fd is None:
            return
        try:
            data = os.read(fd, 4096)
        except OSError:
            return
        buf = self._virq_buf + data
        virq = False
        while len(buf) >= 4:
            (port,) = struct.unpack_from("<I", buf)
            buf = buf[4:]
            if port == _VIRQ_DOM_EXC:
                virq = True
        self._virq_buf = buf
        if virq:
            self._read_domains_file()
            self.core.check_domains()
            self._flush()

    def _read_domains_file(self) -> None:
        states: dict[int, str] = {}
        try:
            with open(os.path.join(self.run_dir, "domains")) as f:
                for line in f:
                    words = line.split()
                    if len(words) >= 2 and words[0].isdigit() and words[1] in DOMAIN_STATES:
                        states[int(words[0])] = words[1]
        except OSError:
            pass
        known = self.core.domains.states
        for domid in self._file_states:
            if domid not in states:
                known.pop(domid, None)
        for domid, state in states.items():
            if domid != 0:
                known[domid] = state
        self._file_states = states

    def __repr__(self) -> str:
        return f"Server({self.socket_path!r})"
