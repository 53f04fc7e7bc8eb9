"""A fake XenStore server, for faults a real server cannot produce.

:class:`FakeServer` listens on a Unix socket and serves one connection at a
time from one thread, with a handler of your own: ``handler(peer)`` runs
until it returns (the connection is then closed) or the peer goes away.
:func:`answer` is the reply a well-behaved server would give, so handlers
can start from it and then break it on purpose.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import struct
import tempfile
import threading
import zlib
from typing import Callable

from pyxs.protocol import Decoder, Op, Packet, encode

__all__ = ["FakeServer", "Peer", "answer", "value_for"]


class Peer:
    """The server side of one connection."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.decoder = Decoder()
        self.queue: list[Packet] = []

    def requests(self, block: bool = True) -> list[Packet]:
        """Every request received so far (waiting for one if ``block``)."""
        while not self.queue:
            if not block:
                self.sock.setblocking(False)
                try:
                    data = self.sock.recv(65536)
                except BlockingIOError:
                    return []
                finally:
                    self.sock.setblocking(True)
            else:
                data = self.sock.recv(65536)
            if not data:
                raise EOFError
            self.queue.extend(self.decoder.feed(data))
        got, self.queue = self.queue, []
        return got

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reset(self) -> None:
        """Close with a TCP-style reset: unread data is discarded (SO_LINGER 0)."""
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


class FakeServer:
    """A Unix socket whose connections ``handler(peer)`` serves, one at a time."""

    def __init__(self, handler: Callable[[Peer], None]) -> None:
        self.dir = tempfile.mkdtemp(prefix="rlf", dir="/tmp")
        self.socket_path = os.path.join(self.dir, "socket")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.socket_path)
        self.listener.listen(16)
        self.handler = handler
        self.errors: list[BaseException] = []
        self.connections = 0
        self._closing = False
        self._peer: Peer | None = None
        self.thread = threading.Thread(target=self._serve, name="rel-fake", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self._closing:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            peer = self._peer = Peer(sock)
            try:
                self.handler(peer)
            except (OSError, EOFError):
                pass
            except BaseException as exc:  # noqa: BLE001 - reported by close()
                self.errors.append(exc)
            finally:
                self._peer = None
                peer.close()

    def close(self) -> None:
        self._closing = True
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        peer = self._peer
        if peer is not None:
            peer.close()
        self.thread.join(5)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> FakeServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def value_for(path: bytes) -> bytes:
    """The value the fake holds at ``path``: names the path, with a checksum,
    so that a reply meant for another path is told apart from a mangled one."""
    return b"v:%s:%08x" % (path, zlib.crc32(path))


def is_value_for(value: bytes, path: bytes) -> bool | None:
    """True: the intact value of ``path``; False: the intact value of another
    path (a reply given to the wrong caller); None: not an intact value."""
    if not value.startswith(b"v:") or len(value) < 12 or value[-9:-8] != b":":
        return None
    named = value[2:-9]
    if value != value_for(named):
        return None
    return named == path


_OK_OPS = frozenset(
    {
        Op.WRITE,
        Op.MKDIR,
        Op.RM,
        Op.SET_PERMS,
        Op.WATCH,
        Op.UNWATCH,
        Op.TRANSACTION_END,
        Op.INTRODUCE,
        Op.RELEASE,
        Op.RESUME,
        Op.SET_TARGET,
        Op.RESET_WATCHES,
    }
)


def answer(request: Packet) -> bytes:
    """The encoded reply a well-behaved server gives to ``request``."""
    op = request.op
    first = request.payload.split(b"\0", 1)[0]
    if op in _OK_OPS:
        payload = b"OK\0"
    elif op == Op.READ:
        payload = value_for(first)
    elif op == Op.DIRECTORY:
        payload = b"a\0bb\0ccc\0"
    elif op == Op.DIRECTORY_PART:
        offset = int(request.payload.split(b"\0")[1] or b"0")
        payload = b"7\0" + b"a\0bb\0ccc\0"[offset:] + b"\0"
    elif op == Op.GET_PERMS:
        payload = b"n0\0r5\0"
    elif op == Op.TRANSACTION_START:
        payload = b"17\0"
    elif op == Op.GET_DOMAIN_PATH:
        payload = b"/local/domain/%s\0" % first
    elif op == Op.IS_DOMAIN_INTRODUCED:
        payload = b"T\0"
    elif op == Op.CONTROL:
        payload = b"OK\0"
    else:
        return encode(Op.ERROR, request.req_id, request.tx_id, b"ENOSYS\0")
    return encode(op, request.req_id, request.tx_id, payload)
