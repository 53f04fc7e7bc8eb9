"""The tracing proxy: a Unix socket that forwards to XenStore and tells a
:class:`~pyxs.trace.tracer.Tracer` what went through.

Theory of operation
-------------------
One thread, one :mod:`selectors` loop, no blocking call but the connect to
UPSTREAM (a Unix socket connect completes or fails at once). For every
client accepted on the listening socket the proxy opens one connection to
UPSTREAM: a *link* of two *sides*. Bytes read from one side are appended,
exactly as read, to the other side's output and sent as far as the socket
takes them; nothing is parsed on that path, so pipelined requests, partial
packets and 4096-byte payloads go through unchanged. Then (forwarded first:
decoding costs no latency when a CPU is free) the same bytes are fed to the
side's own :class:`~pyxs.protocol.Decoder`, and each packet it completes
goes to the tracer, which is flushed after each batch of events.

A side is polled for writing while output waits for it, and for reading
unless it has ended or its peer has 1 MiB of output waiting (back
pressure: a client that does not read its replies holds up only its own
link); with neither, it is not polled at all.

End of a link: when one side reads end of file (or fails), what it sent
before is still delivered to the other side, which is then closed: a client
going away closes its upstream connection, the upstream going away closes
its client. If the side stopped in the middle of a packet, the note says
how many bytes of it were left unfinished.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import selectors
import socket
from typing import Callable

from ..exceptions import InvalidPayload
from ..protocol import Decoder
from .tracer import TO_CLIENT, TO_SERVER, Tracer

__all__ = ["Proxy", "domid_of_socket", "listen_unix"]

_READ_SIZE = 1 << 16
#: stop reading a side while its peer has this much output waiting
_HIGH_WATER = 1 << 20
#: at stop, at most this many more rounds of what is already readable
_LAST_ROUNDS = 100
_GUEST_SOCKET = re.compile(r"domain-(\d+)\.sock\Z")


def domid_of_socket(path: str) -> int | None:
    """The domid of a guest's socket (``domain-<domid>.sock``), else None."""
    match = _GUEST_SOCKET.search(os.path.basename(path))
    return int(match.group(1)) if match else None


class _Side:
    """One socket of a link and the bytes waiting to be sent to it."""

    __slots__ = ("decoder", "direction", "done", "label", "mask", "on_event", "out", "peer", "sock")

    def __init__(self, sock: socket.socket, direction: str, label: str, decoder: Decoder) -> None:
        self.sock = sock
        #: which way the packets this side *sends us* go
        self.direction = direction
        self.label = label
        self.decoder: Decoder | None = decoder
        self.out = bytearray()
        self.done = False  #: read end of file: nothing more comes from it
        self.peer: _Side = self
        #: the selector's events for it (0: not registered), and its callback
        self.mask = 0
        self.on_event: Callable[[object, int], None] | None = None


class _Link:
    __slots__ = ("client", "closed", "number", "upstream")

    def __init__(self, number: int, client: _Side, upstream: _Side) -> None:
        self.number = number
        self.client = client
        self.upstream = upstream
        self.closed = False


class Proxy:
    """Listen on ``listener`` and forward each connection to ``upstream``.

    :param listener: a bound, listening Unix socket (the caller made it and
        removes its file).
    :param upstream: the path of the XenStore socket to forward to.
    :param tracer: told about every packet and every connection.

    :meth:`serve_forever` runs the loop in the calling thread until
    :meth:`stop` (callable from any thread or a signal handler).
    """

    def __init__(self, listener: socket.socket, upstream: str, tracer: Tracer) -> None:
        self.listener = listener
        self.upstream = upstream
        self.tracer = tracer
        self.domid = domid_of_socket(upstream)
        self._sel = selectors.DefaultSelector()
        self._links: dict[int, _Link] = {}
        self._count = 0
        self._stopping = False
        self._wake_r, self._wake_w = socket.socketpair()
        for sock in (self._wake_r, self._wake_w, listener):
            sock.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, self._on_wake)
        self._accepting = False
        self._listening(True)

    # -- running -------------------------------------------------------------
    def serve_forever(self, ready: Callable[[], None] | None = None) -> None:
        if ready is not None:
            ready()
        select = self._sel.select
        try:
            while not self._stopping:
                for key, mask in select():
                    key.data(key.fileobj, mask)
                self.tracer.flush()
            # What already arrived is still traced (a CMD that has exited
            # closed its connections: their ends are read here); no new
            # connection is taken.
            self._listening(False)
            for _ in range(_LAST_ROUNDS):
                events = select(0)
                if not events:
                    break
                for key, mask in events:
                    key.data(key.fileobj, mask)
        finally:
            self._close()

    def stop(self) -> None:
        self._stopping = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def _on_wake(self, sock: object, mask: int) -> None:
        with contextlib.suppress(OSError):
            while self._wake_r.recv(4096):
                pass

    def _close(self) -> None:
        for link in list(self._links.values()):
            self._end(link, None)
        self._sel.close()
        self._wake_r.close()
        self._wake_w.close()
        self.tracer.flush()

    # -- connections -----------------------------------------------------------
    def _on_accept(self, listener: object, mask: int) -> None:
        for _ in range(64):
            try:
                client, _addr = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                # Out of descriptors: the listener stays readable, so it is
                # not polled again until a link ends (and frees two).
                self._listening(False)
                return
            self._count += 1
            number = self._count
            try:
                upstream = self._connect_upstream()
            except OSError as exc:
                client.close()
                self.tracer.note(
                    number,
                    f"cannot connect to {self.upstream}: {exc.strerror or exc}; client closed",
                    self.domid,
                )
                continue
            client.setblocking(False)
            upstream.setblocking(False)
            near = _Side(client, TO_SERVER, "client", Decoder())
            far = _Side(upstream, TO_CLIENT, "upstream", Decoder(frame_oversized=True))
            near.peer, far.peer = far, near
            link = _Link(number, near, far)
            self._links[number] = link
            for side in (near, far):
                side.on_event = lambda sock, mask, s=side, lk=link: self._on_event(lk, s, mask)
                self._poll(side)
            self.tracer.note(number, "connected", self.domid)

    def _connect_upstream(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.upstream)
        except BaseException:
            sock.close()
            raise
        return sock

    def _listening(self, on: bool) -> None:
        """Poll the listener (``on``) or not."""
        if on != self._accepting:
            self._accepting = on
            if on:
                self._sel.register(self.listener, selectors.EVENT_READ, self._on_accept)
            else:
                self._sel.unregister(self.listener)

    def _on_event(self, link: _Link, side: _Side, mask: int) -> None:
        if link.closed:  # ended by an earlier event of the same select()
            return
        if mask & selectors.EVENT_WRITE:
            self._send(link, side)
        if not link.closed and mask & selectors.EVENT_READ and not side.done:
            self._receive(link, side)

    def _receive(self, link: _Link, side: _Side) -> None:
        try:
            data = side.sock.recv(_READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # a reset: the end, said as such
            self._hang_up(link, side, exc.strerror or str(exc))
            return
        if data:
            # forwarded first, decoded after: the trace costs no latency
            side.peer.out += data
            self._send(link, side.peer)
            self._trace(link, side, data)
            if link.closed:
                self.tracer.closed(link.number)
        else:
            self._hang_up(link, side, None)

    def _trace(self, link: _Link, side: _Side, data: bytes) -> None:
        decoder = side.decoder
        if decoder is None:
            return
        try:
            packets = decoder.feed(data)
        except InvalidPayload as exc:  # a header over 4096 bytes from the client
            side.decoder = None
            self.tracer.note(
                link.number, f"{side.label}: {exc}; the rest is forwarded, not decoded", self.domid
            )
            return
        tracer = self.tracer
        for packet in packets:
            tracer.packet(link.number, side.direction, packet, self.domid)

    def _send(self, link: _Link, side: _Side) -> None:
        """Send what waits for ``side``; then decide what to poll for."""
        if side.out:
            try:
                sent = side.sock.send(side.out)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self._end(link, f"{side.label} failed: {exc.strerror or exc}")
                return
            del side.out[:sent]
        if not side.out and side.peer.done:
            self._end(link, None)  # all the departed side said is delivered
            return
        self._poll(side)
        self._poll(side.peer)

    def _poll(self, side: _Side) -> None:
        """Poll ``side`` for writing while output waits for it, for reading
        unless it ended or its peer has too much waiting; else not at all."""
        mask = 0
        if side.out:
            mask |= selectors.EVENT_WRITE
        if not side.done and len(side.peer.out) < _HIGH_WATER:
            mask |= selectors.EVENT_READ
        if mask == side.mask:
            return
        if side.mask == 0:
            self._sel.register(side.sock, mask, side.on_event)
        elif mask == 0:
            self._sel.unregister(side.sock)
        else:
            self._sel.modify(side.sock, mask, side.on_event)
        side.mask = mask

    def _hang_up(self, link: _Link, side: _Side, error: str | None) -> None:
        side.done = True
        left = side.decoder.pending if side.decoder is not None else 0
        what = f"{side.label} closed"
        if error is not None:
            what += f" ({error})"
        if left:
            what += f" mid-message ({left} bytes of a packet unfinished)"
        self.tracer.note(link.number, what, self.domid)
        if side.peer.out:
            self._poll(side)  # deliver the rest first (_send ends the link)
            self._poll(side.peer)
        else:
            self._end(link, None)

    def _end(self, link: _Link, why: str | None) -> None:
        """Close both sockets of a link."""
        if link.closed:
            return
        link.closed = True
        self._links.pop(link.number, None)
        if why is not None:
            self.tracer.note(link.number, why, self.domid)
        for side in (link.client, link.upstream):
            if side.mask:
                self._sel.unregister(side.sock)
                side.mask = 0
            side.sock.close()
        self.tracer.closed(link.number)
        if not self._stopping:
            self._listening(True)  # (descriptors were freed)


def listen_unix(path: str) -> socket.socket:
    """A listening socket at ``path``; a file already there is left alone
    (:class:`FileExistsError`)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, 0o600)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise FileExistsError(errno.EEXIST, "File exists (left alone)", path) from None
        raise
    return sock
