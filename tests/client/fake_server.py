"""A scripted fake XenStore server, for faults a real server cannot produce.

``fake(script)`` (a fixture: import ``fake_fixture`` to use it) starts a
thread behind a real Unix socket; each connection is handled by
``script(peer)``, which reads requests with ``peer.request()`` and answers
with ``peer.reply()`` or raw ``peer.send()``.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator

import pytest

from pyxs.protocol import Decoder, Packet, encode


class FakeServer:
    """A Unix socket whose connections are handled by ``script(peer)``."""

    def __init__(self, script: Callable[[Peer], None]) -> None:
        self.dir = tempfile.mkdtemp(prefix="pyxsf", dir="/tmp")
        self.path = os.path.join(self.dir, "socket")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(4)
        self.script = script
        self.peers: list[Peer] = []
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            peer = Peer(conn)
            self.peers.append(peer)
            threading.Thread(target=self._run, args=(peer,), daemon=True).start()

    def _run(self, peer: Peer) -> None:
        try:
            self.script(peer)
        except (OSError, EOFError):
            pass
        except BaseException as exc:
            self.errors.append(exc)
        finally:
            peer.close()

    def close(self) -> None:
        self.listener.close()
        for peer in self.peers:
            peer.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        assert not self.errors, self.errors


class Peer:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.decoder = Decoder()
        self.queue: list[Packet] = []

    def request(self) -> Packet:
        while not self.queue:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError
            self.queue.extend(self.decoder.feed(data))
        return self.queue.pop(0)

    def reply(self, request: Packet, payload: bytes, op: int | None = None) -> None:
        op = request.op if op is None else op
        self.sock.sendall(encode(op, request.req_id, request.tx_id, payload))

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


@pytest.fixture(name="fake")
def fake_fixture() -> Iterator[Callable[[Callable[[Peer], None]], FakeServer]]:
    servers: list[FakeServer] = []

    def make(script: Callable[[Peer], None]) -> FakeServer:
        servers.append(FakeServer(script))
        return servers[-1]

    yield make
    for server in servers:
        server.close()
