"""The blocking transports: how bytes reach XenStore from a thread.

:class:`UnixSocketConnection` (the xenstored socket, dom0 tools) and
:class:`XenBusConnection` (the XenBus character device, any domain), both
:class:`PacketConnection`, with the byte interface of
:mod:`pyxs.transports`. They use plain blocking sockets and
``os.read``/``os.write``, which is what gevent and eventlet monkey-patching
expect. :func:`default_connection` picks one by libxenstore's rule
(:mod:`.discovery`).

XenBus reads cannot be interrupted by ``close()`` from another thread, so
readers select() on it first (:attr:`~PacketConnection.needs_poll`).
"""

from __future__ import annotations

import os
import socket
import stat

from ..exceptions import ConnectionError
from ..protocol import HEADER, HEADER_SIZE, Packet, encode
from . import discovery
from .discovery import (
    default_socket_path,
    default_xenbus_path,
    open_xenbus_device,
    transport_error,
)

__all__ = [
    "PacketConnection",
    "UnixSocketConnection",
    "Unreachable",
    "XenBusConnection",
    "default_connection",
]


def default_connection(connect: bool = False) -> PacketConnection:
    """The transport to XenStore when nothing names one: libxenstore's rule.

    ``xs_open`` tries the xenstored socket (:func:`default_socket_path`),
    then the XenBus device (``$XENSTORED_PATH`` if set, else
    :func:`default_xenbus_path`), so the same program works in dom0 and in
    a guest (:func:`~.discovery.candidates`). Each candidate that exists is
    used as what it is: a Unix socket through :class:`UnixSocketConnection`,
    anything else (a character device) through :class:`XenBusConnection`.

    :param connect: open it too, and on failure go on to the next candidate
        as ``xs_open`` does; the connection returned is then open.
        Without it nothing is opened: the first candidate that exists is
        chosen, else the socket (whose connect() then says it is missing).
    :raises Unreachable: (with ``connect``) none can be opened; its errno
        is the last attempt's, as libxenstore's.
    """
    paths = discovery.candidates()
    attempts: list[tuple[str, PacketConnection | None, ConnectionError]] = []
    for path in paths:
        try:
            mode = os.stat(path).st_mode
        except OSError as exc:
            missing = transport_error("connecting to", path, exc)
            missing.__cause__ = exc  # as if raised from it, like every other attempt's
            attempts.append((path, None, missing))
            continue
        kind = UnixSocketConnection if stat.S_ISSOCK(mode) else XenBusConnection
        connection: PacketConnection = kind(path)
        if not connect:
            return connection
        try:
            connection.connect()
        except ConnectionError as exc:
            attempts.append((path, connection, exc))
            continue
        return connection
    if not connect:
        return UnixSocketConnection(paths[0])
    message = "; ".join(str(error) for _, _, error in attempts)
    raise Unreachable(f"cannot reach XenStore: {message}", attempts) from None


class Unreachable(ConnectionError):
    """:func:`default_connection` could open none of the candidates.

    :attr:`attempts` says why, in the order tried, for a caller that words
    the failure itself (the ``pyxs`` command names the path a user most
    likely meant); :attr:`errno` is the last attempt's.
    """

    #: ``(path, transport, error)`` per candidate: the transport chosen for
    #: what is at ``path``, or None where nothing is.
    attempts: list[tuple[str, PacketConnection | None, ConnectionError]]

    def __init__(
        self, message: str, attempts: list[tuple[str, PacketConnection | None, ConnectionError]]
    ) -> None:
        super().__init__(message, errno=attempts[-1][2].errno)
        self.attempts = attempts


def _closed(path: str) -> ConnectionError:
    return ConnectionError(f"connection to {path!r} is not open")


class PacketConnection:
    """Base class of the transports (pyxs 0.4's name).

    Besides the byte interface, pyxs 0.4's packet methods are kept:
    ``send`` also takes a :class:`~pyxs.protocol.Packet`, and ``recv()``
    without a size reads one whole packet.
    """

    #: The path given or resolved at construction.
    path: str
    #: True when ``close()`` from another thread cannot wake a blocked
    #: ``recv()``: readers must select() on ``fileno()`` with a wake-up pipe.
    needs_poll = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r})"

    @property
    def is_connected(self) -> bool:
        """Whether the connection is open."""
        raise NotImplementedError

    def connect(self) -> None:
        """Open the connection; does nothing if it is open already."""
        raise NotImplementedError

    def close(self, silent: bool = True) -> None:
        """Close the connection; does nothing if it is closed already.

        With ``silent=False`` an error while closing raises ConnectionError.
        """
        raise NotImplementedError

    def fileno(self) -> int:
        """The file descriptor (raises ConnectionError when closed)."""
        raise NotImplementedError

    def send(self, data: bytes | bytearray | memoryview | Packet) -> None:
        """Write all of ``data``: whole packets, or one :class:`Packet`."""
        raise NotImplementedError

    def recv(self, size: int | None = None) -> bytes:
        """Read at most ``size`` bytes (at least one; EOF raises).

        Without a size, read exactly one packet and return it as a
        :class:`~pyxs.protocol.Packet` (pyxs 0.4's behaviour).
        """
        raise NotImplementedError

    def recv_due(self, size: int, due: int) -> bytes:
        """Read at most ``size`` bytes (at least one), knowing that ``due``
        bytes are on their way (the least the replies still owed make).

        A transport that can wait for them in one system call does: a batch
        of pipelined replies then costs one wake-up, not one per reply. This
        one reads as :meth:`recv` does.
        """
        return self.recv(size)

    def recv_packet(self) -> Packet:
        """Read exactly one packet (do not mix with a client using this)."""
        op, req_id, tx_id, size = HEADER.unpack(self._recv_exact(HEADER_SIZE))
        # Never read 0 bytes: on Linux's XenBus device that blocks.
        payload = self._recv_exact(size) if size else b""
        return Packet(op, req_id, tx_id, payload)

    def _recv_exact(self, size: int) -> bytes:
        chunks = []
        while size > 0:
            chunk = self.recv(size)
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def __enter__(self) -> PacketConnection:
        self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _wire(data: object) -> bytes | bytearray | memoryview:
    if isinstance(data, Packet):
        return encode(data.op, data.req_id, data.tx_id, data.payload)
    if isinstance(data, (bytes, bytearray, memoryview)):
        return data
    raise TypeError(f"expected bytes or a Packet, not {type(data).__name__}")


class UnixSocketConnection(PacketConnection):
    """XenStore over the xenstored Unix socket.

    :param path: the socket; by default :func:`default_socket_path`, resolved
        now (``$XENSTORED_PATH``, ``$XENSTORED_RUNDIR/socket``, then
        ``/var/run/xenstored/socket``).
    """

    def __init__(self, path: str | None = None) -> None:
        self.path = os.fspath(path) if path else default_socket_path()
        self._sock: socket.socket | None = None

    @property
    def is_connected(self) -> bool:
        return self._sock is not None

    def connect(self) -> None:
        if self._sock is not None:
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.path)
        except OSError as exc:
            sock.close()
            raise transport_error("connecting to", self.path, exc) from exc
        self._sock = sock

    def close(self, silent: bool = True) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        try:
            # shutdown() wakes a thread blocked in recv() on this socket;
            # close() alone would leave it blocked.
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            sock.close()
        except OSError as exc:
            if not silent:
                raise transport_error("closing", self.path, exc) from exc

    def fileno(self) -> int:
        sock = self._sock
        if sock is None:
            raise _closed(self.path)
        return sock.fileno()

    def send(self, data: bytes | bytearray | memoryview | Packet) -> None:
        if data.__class__ is not bytes:
            data = _wire(data)
        try:
            self._sock.sendall(data)  # type: ignore[union-attr]
        except AttributeError:
            if self._sock is None:
                raise _closed(self.path) from None
            raise
        except OSError as exc:
            raise transport_error("writing to", self.path, exc) from exc

    def recv(self, size: int | None = None) -> bytes:
        if size is None:
            return self.recv_packet()  # type: ignore[return-value]
        try:
            data = self._sock.recv(size)  # type: ignore[union-attr]
        except AttributeError:
            if self._sock is None:
                raise _closed(self.path) from None
            raise
        except OSError as exc:
            raise transport_error("reading from", self.path, exc) from exc
        if not data:
            raise ConnectionError(f"XenStore closed the connection {self.path!r}")
        return data

    def recv_due(self, size: int, due: int) -> bytes:
        # MSG_WAITALL waits for the ``due`` bytes in one system call; what
        # else has arrived by then is taken without waiting.
        if due <= HEADER_SIZE:
            return self.recv(size)
        sock = self._sock
        if sock is None:
            raise _closed(self.path)
        try:
            data = sock.recv(due, socket.MSG_WAITALL)
            if len(data) == due:
                try:
                    data += sock.recv(size - due, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    pass
        except OSError as exc:
            raise transport_error("reading from", self.path, exc) from exc
        if not data:
            raise ConnectionError(f"XenStore closed the connection {self.path!r}")
        return data


class XenBusConnection(PacketConnection):
    """XenStore over the XenBus character device.

    :param path: the device; by default :func:`default_xenbus_path`.
        :meth:`connect` refuses anything but a character device.

    Linux's device handles WATCH and UNWATCH itself (it answers ``OK`` on its
    own and the watch's first event may arrive before that ``OK``); the
    clients route events by token, so this needs no special care.
    """

    needs_poll = True

    def __init__(self, path: str | None = None) -> None:
        self.path = os.fspath(path) if path else default_xenbus_path()
        self._fd: int | None = None

    @property
    def is_connected(self) -> bool:
        return self._fd is not None

    def connect(self) -> None:
        if self._fd is not None:
            return
        self._fd = open_xenbus_device(self.path)

    def close(self, silent: bool = True) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.close(fd)
        except OSError as exc:
            if not silent:
                raise transport_error("closing", self.path, exc) from exc

    def fileno(self) -> int:
        fd = self._fd
        if fd is None:
            raise _closed(self.path)
        return fd

    def send(self, data: bytes | bytearray | memoryview | Packet) -> None:
        fd = self._fd
        if fd is None:
            raise _closed(self.path)
        view = memoryview(_wire(data))
        try:
            while view:
                # The device wants whole messages per write; os.write of a
                # packet (<= 4112 bytes) is not split by the kernel.
                written = os.write(fd, view)
                view = view[written:]
        except OSError as exc:
            raise transport_error("writing to", self.path, exc) from exc

    def recv(self, size: int | None = None) -> bytes:
        if size is None:
            return self.recv_packet()  # type: ignore[return-value]
        fd = self._fd
        if fd is None:
            raise _closed(self.path)
        try:
            data = os.read(fd, size)
        except OSError as exc:
            raise transport_error("reading from", self.path, exc) from exc
        if not data:
            raise ConnectionError(f"XenBus device {self.path!r} reached end of file")
        return data
