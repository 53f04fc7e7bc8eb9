"""The asyncio server: sockets, connections, and the :class:`Server` API.

Theory of operation
-------------------
One event loop serves every socket. The privileged socket
(:attr:`Server.socket_path`, mode 0600) accepts dom0 connections. When a
dom0 client INTRODUCEs a new domain, the server starts listening on
``<run_dir>/domain-<domid>.sock`` (mode 0600, :meth:`Server.guest_socket_path`):
connections there act as that unprivileged domain. When the domain is
released or dies, that socket and its connections are closed.

Each connection's bytes go to the sans-I/O core
(:class:`~pyxs.server.core.XenStore`); after every read the replies and
events it queued for any connection are written out, one
``transport.write`` per connection per batch. A connection whose client
does not read is paused (no more requests are read from it) until its
output drains; the server never blocks.

**Domain states from outside.** Besides :meth:`Server.set_domain_state`,
an out-of-process server (``pyxs serve``, ``pyxs run``,
``python -m pyxs.server``) reacts exactly as the realxs shim makes the real
daemon react: write lines ``<domid> <state>`` (running, shutdown, crashed,
dying, gone) to ``<run_dir>/domains``, then write the 4-byte little-endian
port number 1 (VIRQ_DOM_EXC) into the FIFO ``<run_dir>/evtchn``. The server
re-reads the file and acts as on the VIRQ. Any request sent after the
FIFO write is answered after the VIRQ was handled.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import shutil
import socket
import stat
import struct
import tempfile
import threading
from types import TracebackType
from typing import Callable, Mapping, TypeVar

from .core import Connection, XenStore
from .domains import DOMAIN_STATES, Quotas, SoftQuotas

__all__ = ["Server"]

T = TypeVar("T")

_VIRQ_DOM_EXC = 1
_HIGH_WATER = 1 << 20
_LOW_WATER = 1 << 18


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


def _listen_unix(path: str) -> socket.socket:
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, 0o600)
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class _Protocol(asyncio.Protocol):
    """One client connection."""

    def __init__(self, server: Server, domid: int) -> None:
        self.server = server
        self.domid = domid
        self.conn: Connection | None = None
        self.transport: asyncio.Transport | None = None
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        try:
            self.conn = self.server.core.connect(self.domid)
        except LookupError:
            transport.abort()
            return
        self.server._protocols[self.conn.seq] = self

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        if conn is None:
            return
        server = self.server
        if server._virq_fd is not None:
            server._poll_virq()
        if not server.core.receive(conn, data):
            self.close()
        server._flush()

    def eof_received(self) -> bool | None:
        return None

    def pause_writing(self) -> None:
        if self.transport is not None and not self.paused:
            self.paused = True
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and self.paused:
            self.paused = False
            with contextlib.suppress(Exception):
                self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        conn = self.conn
        if conn is not None:
            self.server._protocols.pop(conn.seq, None)
            self.server.core.disconnect(conn)
            self.conn = None

    def close(self) -> None:
        """Drop the connection now (a bad header, or its domain is gone)."""
        conn = self.conn
        if conn is not None:
            self.server._protocols.pop(conn.seq, None)
            self.server.core.disconnect(conn)
            self.conn = None
        if self.transport is not None:
            self.transport.abort()


class Server:
    """An embedded XenStore server that answers like cxenstored 4.17.

    ``with Server() as srv:`` serves from a background thread;
    ``async with Server() as srv:`` serves on the running event loop.

    :param socket_path: the privileged (dom0) socket; default
        ``<run_dir>/socket`` in a new temporary directory.
    :param run_dir: where guest sockets (``domain-<domid>.sock``), the
        ``domains`` file and the ``evtchn`` FIFO live; default the socket's
        directory.
    :param quotas: a :class:`~pyxs.server.domains.Quotas`, or a mapping of
        quota names (``nodes``, ``watches``, ``transactions``,
        ``outstanding``, ``transaction-nodes``, ``memory``, ``node-size``,
        ``path-max``, ``permissions``) to values; unprivileged domains only.
    :param soft_quotas: a :class:`~pyxs.server.domains.SoftQuotas`.
    :param keep_orphans: like ``xenstored -K``: nodes of a domain that goes
        away are given to dom0 instead of being removed.
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
    ) -> None:
        self._tempdir: str | None = None
        if socket_path is None:
            base = run_dir if run_dir is not None else None
            if base is None:
                self._tempdir = tempfile.mkdtemp(prefix="pyxs-", dir="/tmp")
                base = self._tempdir
            socket_path = os.path.join(os.fspath(base), "socket")
        self.socket_path: str = os.fspath(socket_path)
        self.run_dir: str = (
            os.fspath(run_dir)
            if run_dir is not None
            else os.path.dirname(os.path.abspath(self.socket_path))
        )
        self.core = XenStore(_make_quotas(quotas), soft_quotas, keep_orphans=keep_orphans)
        if logfile is not None:
            self.core.set_logfile(logfile)
        self.core.on_introduce = self._on_introduce
        self.core.on_destroy = self._on_destroy
        self.core.on_close = self._on_close
        self._protocols: dict[int, _Protocol] = {}
        self._servers: dict[int, asyncio.AbstractServer] = {}
        self._guest_paths: dict[int, str] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._virq_fd: int | None = None
        self._virq_path: str | None = None
        self._virq_buf = b""
        self._file_states: dict[int, str] = {}
        self._started = False

    # ------------------------------------------------------------------
    # lifecycle
    async def start(self, *, virq_fifo: bool = True) -> None:
        """Start serving on the running loop."""
        if self._started:
            raise RuntimeError("server already started")
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        os.makedirs(self.run_dir, exist_ok=True)
        sock = _listen_unix(self.socket_path)
        self._servers[0] = await self._loop.create_unix_server(
            lambda: _Protocol(self, 0), sock=sock
        )
        if virq_fifo:
            self._open_virq_fifo()
        self._started = True

    async def close(self) -> None:
        """Stop serving: close every socket and connection, remove socket files."""
        if not self._started:
            return
        self._started = False
        for proto in list(self._protocols.values()):
            proto.close()
        servers = list(self._servers.values())
        self._servers.clear()
        for srv in servers:
            srv.close()
        for srv in servers:
            with contextlib.suppress(Exception):
                await srv.wait_closed()
        self._close_virq_fifo()
        for path in [self.socket_path, *self._guest_paths.values()]:
            with contextlib.suppress(OSError):
                os.unlink(path)
        self._guest_paths.clear()
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)
            self._tempdir = None
        if self._stop is not None:
            self._stop.set()

    async def serve_forever(self) -> None:
        """Serve until :meth:`close` (or :meth:`request_stop`)."""
        if not self._started:
            await self.start()
        assert self._stop is not None
        await self._stop.wait()
        await self.close()

    def request_stop(self) -> None:
        """Ask a server running :meth:`serve_forever` to stop (thread-safe)."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            loop.call_soon_threadsafe(stop.set)

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

    def __enter__(self) -> Server:
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()

        def run() -> None:
            loop = asyncio.new_event_loop()
            try:
                loop.run_until_complete(self._thread_main(ready))
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="pyxs-server", daemon=True)
        self._thread.start()
        ready.result()
        return self

    async def _thread_main(self, ready: concurrent.futures.Future[None]) -> None:
        try:
            await self.start()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            ready.set_exception(exc)
            return
        ready.set_result(None)
        await self.serve_forever()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.request_stop()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    # ------------------------------------------------------------------
    # public API
    def guest_socket_path(self, domid: int) -> str:
        """The socket whose connections act as (introduced) domain ``domid``."""
        return os.path.join(self.run_dir, f"domain-{domid}.sock")

    def set_domain_state(self, domid: int, state: str) -> None:
        """Say what the hypervisor reports about ``domid`` and act as on VIRQ_DOM_EXC.

        ``shutdown``/``crashed`` fire ``@releaseDomain`` (the domain stays
        introduced); ``dying``/``gone`` destroy it (its nodes are removed,
        ``@releaseDomain`` fires). Synchronous: done when this returns.
        """
        if state not in DOMAIN_STATES:
            raise ValueError(f"unknown domain state {state!r}; expected one of {DOMAIN_STATES}")
        self._call(lambda: self._set_state(domid, state))

    def _set_state(self, domid: int, state: str) -> None:
        self.core.set_domain_state(domid, state)
        self._flush()

    def _call(self, func: Callable[[], T]) -> T:
        loop = self._loop
        if loop is None or not self._started:
            return func()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            return func()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def call() -> None:
            try:
                future.set_result(func())
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                future.set_exception(exc)

        loop.call_soon_threadsafe(call)
        return future.result()

    def call(self, func: Callable[[XenStore], T]) -> T:
        """Run ``func(core)`` in the server's loop and return its result (tests)."""
        return self._call(lambda: func(self.core))

    # ------------------------------------------------------------------
    # internals
    def _flush(self) -> None:
        core = self.core
        dirty = core.dirty
        if not dirty:
            return
        protocols = self._protocols
        for seq, conn in list(dirty.items()):
            data = core.take_output(conn)
            proto = protocols.get(seq)
            if proto is not None and data and proto.transport is not None:
                proto.transport.write(data)

    def _on_introduce(self, domid: int) -> None:
        loop = self._loop
        if loop is None or not self._started:
            return
        path = self.guest_socket_path(domid)
        try:
            sock = _listen_unix(path)
        except OSError:
            return
        self._guest_paths[domid] = path

        async def serve() -> None:
            srv = await loop.create_unix_server(lambda: _Protocol(self, domid), sock=sock)
            if self._guest_paths.get(domid) == path and self._started:
                self._servers[domid] = srv
            else:
                srv.close()

        loop.create_task(serve())

    def _on_destroy(self, domid: int) -> None:
        srv = self._servers.pop(domid, None)
        if srv is not None:
            srv.close()
        path = self._guest_paths.pop(domid, None)
        if path is not None:
            with contextlib.suppress(OSError):
                os.unlink(path)

    def _on_close(self, conn: Connection) -> None:
        proto = self._protocols.pop(conn.seq, None)
        if proto is not None:
            proto.conn = None
            if proto.transport is not None:
                proto.transport.abort()

    # -- the VIRQ FIFO ----------------------------------------------------
    def _open_virq_fifo(self) -> None:
        path = os.path.join(self.run_dir, "evtchn")
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            os.mkfifo(path, 0o600)
            fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        except OSError:
            return
        self._virq_fd = fd
        self._virq_path = path
        assert self._loop is not None
        self._loop.add_reader(fd, self._poll_virq)

    def _close_virq_fifo(self) -> None:
        fd = self._virq_fd
        if fd is None:
            return
        self._virq_fd = None
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(fd)
        os.close(fd)
        if self._virq_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._virq_path)

    def _poll_virq(self) -> None:
        fd = self._virq_fd
        if fd is None:
            return
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
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
