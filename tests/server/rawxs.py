"""A tiny raw-packet XenStore client for server tests (built on pyxs.protocol).

It sends exactly the bytes it is told to and hands back every packet it
receives, so tests can check replies and events byte for byte, on the
embedded server and on the real xenstored alike.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable

from pyxs.protocol import Decoder, Op, Packet, encode

__all__ = ["RawConn", "err", "packets_of"]

SYNC_REQ_ID = 0x5EC0_0000


class RawConn:
    """A blocking connection that speaks raw packets."""

    def __init__(self, path: str, timeout: float = 5.0) -> None:
        self.path = path
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.decoder = Decoder()
        self.pending: list[Packet] = []
        self.next_id = 1
        self.closed = False
        #: watch events (and anything else) received before awaited replies
        self.events: list[Packet] = []

    # -- sending -----------------------------------------------------------
    def send(self, op: int, payload: bytes, tx_id: int = 0, req_id: int | None = None) -> int:
        if req_id is None:
            req_id = self.next_id
            self.next_id += 1
        self.sock.sendall(encode(op, req_id, tx_id, payload))
        return req_id

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    # -- receiving ---------------------------------------------------------
    def _fill(self, timeout: float | None) -> bool:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return False
        finally:
            self.sock.settimeout(self.timeout)
        if not data:
            raise EOFError("server closed the connection")
        self.pending.extend(self.decoder.feed(data))
        return True

    def read_packet(self, timeout: float | None = None) -> Packet:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.pending:
            left = deadline - time.monotonic()
            if left <= 0 or not self._fill(left):
                raise TimeoutError("no packet")
        return self.pending.pop(0)

    def until_reply(self, req_id: int) -> list[Packet]:
        """Every packet up to and including the reply to ``req_id``."""
        got = []
        while True:
            packet = self.read_packet()
            got.append(packet)
            if packet.op != Op.WATCH_EVENT and packet.req_id == req_id:
                return got

    def request(self, op: int, payload: bytes, tx_id: int = 0) -> Packet:
        """Send and return the reply; events that came first stay in ``events``."""
        req_id = self.send(op, payload, tx_id)
        got = self.until_reply(req_id)
        self.events.extend(got[:-1])
        return got[-1]

    def take_events(self) -> list[Packet]:
        """Events received so far (including any the server already sent)."""
        self.sync()
        events, self.events = self.events, []
        return events

    def sync(self) -> list[Packet]:
        """Make a round trip; everything before its reply goes to ``events``."""
        req_id = self.send(Op.GET_DOMAIN_PATH, b"0\0", req_id=SYNC_REQ_ID)
        got = self.until_reply(req_id)
        self.events.extend(got[:-1])
        return got[:-1]

    def quiet(self, timeout: float = 0.05) -> list[Packet]:
        """Packets that arrive within ``timeout`` (for 'nothing more comes')."""
        got = list(self.pending)
        self.pending.clear()
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return got
            try:
                if not self._fill(left):
                    return got + self._drain()
            except EOFError:
                return [*got, *self._drain()]
            got.extend(self._drain())

    def _drain(self) -> list[Packet]:
        got, self.pending = self.pending, []
        return got

    def is_closed(self, timeout: float = 2.0) -> bool:
        """True if the server closed the connection (EOF) within ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self._fill(deadline - time.monotonic())
            except (EOFError, ConnectionResetError):
                return True
        return False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.sock.close()

    def __enter__(self) -> RawConn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- conveniences --------------------------------------------------------
    def ok(self, op: int, payload: bytes, tx_id: int = 0) -> bytes:
        """Request and assert success; return the reply payload."""
        reply = self.request(op, payload, tx_id)
        assert reply.op == op, (Op(op).name, payload, reply)
        return reply.payload

    def error(self, op: int, payload: bytes, tx_id: int = 0) -> str:
        """Request and assert an ERROR reply; return its name."""
        reply = self.request(op, payload, tx_id)
        assert reply.op == Op.ERROR, (Op(op).name, payload, reply)
        return err(reply)


def err(packet: Packet) -> str:
    assert packet.op == Op.ERROR, packet
    return packet.payload.rstrip(b"\0").decode()


def packets_of(packets: Iterable[Packet]) -> list[tuple[int, int, int, bytes]]:
    return [(p.op, p.req_id, p.tx_id, p.payload) for p in packets]
