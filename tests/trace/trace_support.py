"""Helpers of the trace tests: a proxy in a thread, a raw client, a fake upstream."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

from pyxs.protocol import Decoder, Packet, encode
from pyxs.trace import Filters, Proxy, Tracer, listen_unix

#: a hang guard on blocking reads, never a synchronisation
TIMEOUT = 20.0


class Traced:
    """A running proxy: clients connect to ``path``; ``text()`` is the trace so far."""

    def __init__(self, path: str, out: io.StringIO, proxy: Proxy) -> None:
        self.path = path
        self.out = out
        self.proxy = proxy

    def text(self) -> str:
        return self.out.getvalue()


@contextlib.contextmanager
def proxy_to(upstream: str, **tracer_options: object) -> Iterator[Traced]:
    """A :class:`Proxy` to ``upstream`` served by a thread, stopped at the end
    of the block (what it already read is traced before it stops)."""
    with tempfile.TemporaryDirectory(prefix="pyxs-tt-", dir="/tmp") as tmp:
        path = os.path.join(tmp, "proxy.sock")
        listener = listen_unix(path)
        out = io.StringIO()
        filters = tracer_options.pop("filters", None)
        assert filters is None or isinstance(filters, Filters)
        tracer = Tracer(out, filters=filters, **tracer_options)  # type: ignore[arg-type]
        proxy = Proxy(listener, upstream, tracer)
        thread = threading.Thread(target=proxy.serve_forever, daemon=True)
        thread.start()
        try:
            yield Traced(path, out, proxy)
        finally:
            proxy.stop()
            thread.join(TIMEOUT)
            listener.close()
            tracer.finish()
        assert not thread.is_alive()


class Raw:
    """A blocking connection speaking raw packets; it records every byte received."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(path)
        self.decoder = Decoder(frame_oversized=True)
        self.received = bytearray()
        self.packets: list[Packet] = []

    def send(self, op: int, req_id: int, payload: bytes, tx_id: int = 0) -> None:
        self.sock.sendall(encode(op, req_id, tx_id, payload))

    def until(self, count: int) -> list[Packet]:
        """Read until ``count`` packets have arrived in all; return them all."""
        while len(self.packets) < count:
            data = self.sock.recv(1 << 16)
            if not data:
                raise EOFError(f"closed after {len(self.packets)} packets")
            self.received += data
            self.packets += self.decoder.feed(data)
        return self.packets

    def read_to_eof(self) -> bytes:
        while True:
            data = self.sock.recv(1 << 16)
            if not data:
                return bytes(self.received)
            self.received += data

    def close(self) -> None:
        self.sock.close()


class FakeUpstream:
    """A listening socket the test drives by hand: accept, read exact bytes, send."""

    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, "upstream.sock")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(8)
        self.listener.settimeout(TIMEOUT)

    def accept(self) -> socket.socket:
        sock, _ = self.listener.accept()
        sock.settimeout(TIMEOUT)
        return sock

    def close(self) -> None:
        self.listener.close()


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError(f"closed after {len(data)} of {size} bytes")
        data += chunk
    return bytes(data)


def recv_to_eof(sock: socket.socket) -> bytes:
    data = bytearray()
    while True:
        chunk = sock.recv(1 << 16)
        if not chunk:
            return bytes(data)
        data += chunk


#: the pyxs console script of the environment under test
PYXS = [os.path.join(os.path.dirname(sys.executable), "pyxs")]


def env_for(socket_path: str | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment with ``XENSTORED_PATH`` (only) naming ``socket_path``."""
    mine = {"XENSTORED_PATH": socket_path} if socket_path is not None else {}
    kept = {k: v for k, v in os.environ.items() if not k.startswith("XENSTORED_")}
    return {**kept, **mine, **(extra or {})}


def start_pyxs(args: list[str], env: dict[str, str], **options: Any) -> subprocess.Popen[str]:
    """``pyxs ARGS...`` started, its stdout and stderr piped, as text."""
    return subprocess.Popen(
        [*PYXS, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **options,
    )
