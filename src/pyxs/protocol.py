"""The XenStore wire protocol, with no I/O.

Theory of operation
-------------------
Every message on a XenStore connection is a 16-byte header
``struct xsd_sockmsg { uint32 type, req_id, tx_id, len; }`` (little-endian)
followed by ``len`` payload bytes, ``len <= 4096`` in both directions
(``xen/include/public/io/xs_wire.h``).

This module knows that and nothing else about sockets: it turns packets into
bytes (:func:`encode`) and bytes into packets (:class:`Decoder`). The sync
client, the asyncio client and the embedded server all stand on it; none of
them packs a header itself.

:class:`ClientProtocol` is the client half of a connection: it allocates
request ids (32-bit, wrapping, never one still in flight), matches replies to
the requests that are waiting for them and tells watch events apart from
replies. The *reply-routing rule* is: a ``WATCH_EVENT`` packet is always an
event, whatever its req_id; any other packet is the reply to the pending
request with the same req_id, and carries that request's tx_id (both
xenstoreds echo the request's header, and so does Linux's XenBus device); a
reply whose req_id was abandoned (an asyncio call that was cancelled) is
dropped; any other reply, or one with another tx_id, is a protocol
violation (:class:`~pyxs.exceptions.UnexpectedPacket`), which fails the
connection in both clients alike.
"""

from __future__ import annotations

import enum
import struct
from typing import NamedTuple

from .exceptions import InvalidPayload, UnexpectedPacket, XsdError

__all__ = [
    "ABS_PATH_MAX",
    "HEADER",
    "HEADER_SIZE",
    "PAYLOAD_MAX",
    "REL_PATH_MAX",
    "ClientProtocol",
    "Decoder",
    "Event",
    "Op",
    "Packet",
    "PacketTooLarge",
    "WatchEvent",
    "XsdError",
    "decode_watch_event",
    "encode",
    "split_strings",
]

#: ``XENSTORE_PAYLOAD_MAX``: the largest payload either side may send.
PAYLOAD_MAX = 4096
#: ``XENSTORE_ABS_PATH_MAX`` and ``XENSTORE_REL_PATH_MAX`` from xs_wire.h.
ABS_PATH_MAX = 3072
REL_PATH_MAX = 2048

#: ``struct xsd_sockmsg``: type, req_id, tx_id, len.
HEADER = struct.Struct("<IIII")
HEADER_SIZE = HEADER.size

_ERROR = 16  # Op.ERROR
_E2BIG = b"E2BIG\0"

_pack_header = HEADER.pack
_unpack_header = HEADER.unpack_from
_new_tuple = tuple.__new__


class Op(enum.IntEnum):
    """``enum xsd_sockmsg_type`` from ``xen/include/public/io/xs_wire.h``."""

    CONTROL = 0
    DEBUG = 0  # the pre-4.9 name of CONTROL, kept as an alias
    DIRECTORY = 1
    READ = 2
    GET_PERMS = 3
    WATCH = 4
    UNWATCH = 5
    TRANSACTION_START = 6
    TRANSACTION_END = 7
    INTRODUCE = 8
    RELEASE = 9
    GET_DOMAIN_PATH = 10
    WRITE = 11
    MKDIR = 12
    RM = 13
    SET_PERMS = 14
    WATCH_EVENT = 15
    ERROR = 16
    IS_DOMAIN_INTRODUCED = 17
    RESUME = 18
    SET_TARGET = 19
    # 20 was XS_RESTRICT, removed from Xen: it is invalid on the wire.
    RESET_WATCHES = 21
    DIRECTORY_PART = 22
    GET_FEATURE = 23  # Xen 4.21+
    SET_FEATURE = 24  # Xen 4.21+
    GET_QUOTA = 25  # Xen 4.22+
    SET_QUOTA = 26  # Xen 4.22+
    INVALID = 0xFFFF


class Packet(NamedTuple):
    """One message. ``op`` is an int: unknown ops must be representable."""

    op: int
    req_id: int
    tx_id: int
    payload: bytes


class PacketTooLarge(InvalidPayload):
    """A header announced a payload larger than :data:`PAYLOAD_MAX`."""


def encode(op: int, req_id: int, tx_id: int, payload: bytes) -> bytes:
    """The wire form of one packet."""
    if len(payload) > PAYLOAD_MAX:
        raise InvalidPayload(
            f"payload of {len(payload)} bytes exceeds XenStore's {PAYLOAD_MAX}-byte limit"
        )
    return _pack_header(op, req_id, tx_id, len(payload)) + payload


def split_strings(payload: bytes) -> list[bytes]:
    """Split a payload of NUL-terminated strings: ``b"a\\0b\\0"`` -> ``[a, b]``."""
    if not payload:
        return []
    parts = payload.split(b"\0")
    if parts[-1] == b"":
        parts.pop()
    return parts


class Decoder:
    """Incremental decoder: feed it bytes as they come, get whole packets.

    A header announcing more than :data:`PAYLOAD_MAX` bytes raises
    :class:`PacketTooLarge`; the connection is then beyond repair (the real
    daemon closes it) and the decoder must not be fed again.

    :param frame_oversized: a client's decoder: such a packet is read to
        its end instead (the header frames it, so the stream stays in step)
        and comes out as an ``ERROR`` ``E2BIG`` packet with its req_id and
        tx_id, its payload dropped. oxenstored sends such replies (a
        DIRECTORY of more than 4096 bytes); libxenstore fails that one call
        with E2BIG, and so do the clients, keeping the connection.
    """

    __slots__ = ("_buffer", "_frame_oversized", "_skip", "_skipped")

    def __init__(self, frame_oversized: bool = False) -> None:
        self._buffer = bytearray()
        self._frame_oversized = frame_oversized
        #: payload bytes of an oversized packet still to drop, and its header
        self._skip = 0
        self._skipped: tuple[int, int, int] | None = None

    @property
    def pending(self) -> int:
        """Bytes received that do not make a whole packet yet."""
        return len(self._buffer) + self._skip

    def feed(self, data: bytes) -> list[Packet]:
        """Add ``data`` and return the packets it completes, in order."""
        packets: list[Packet] = []
        if self._skip:
            data = self._drop(data, packets)
            if self._skip:
                return packets
        buf = self._buffer
        if buf:
            buf += data
            data = bytes(buf)
            buf.clear()
        elif data.__class__ is not bytes:
            data = bytes(data)
        end = len(data)
        pos = 0
        # Payloads are sliced out of one bytes object (one copy each), and
        # packets built with tuple.__new__ (the namedtuple's __new__ is a
        # Python function): this loop runs for every packet a client or the
        # server receives.
        while end - pos >= HEADER_SIZE:
            op, req_id, tx_id, size = _unpack_header(data, pos)
            if size > PAYLOAD_MAX:
                if not self._frame_oversized:
                    raise PacketTooLarge(
                        f"header announces {size} payload bytes (limit {PAYLOAD_MAX})"
                    )
                self._skip = size
                self._skipped = (op, req_id, tx_id)
                rest = self._drop(data[pos + HEADER_SIZE :], packets)
                if self._skip:
                    return packets
                data, end, pos = rest, len(rest), 0
                continue
            start = pos + HEADER_SIZE
            stop = start + size
            if stop > end:
                break
            packets.append(_new_tuple(Packet, (op, req_id, tx_id, data[start:stop])))
            pos = stop
        if pos < end:
            buf += data[pos:] if pos else data
        return packets

    def _drop(self, data: bytes, packets: list[Packet]) -> bytes:
        """Drop the oversized payload's bytes from ``data``; return the rest."""
        taken = min(len(data), self._skip)
        self._skip -= taken
        if not self._skip and self._skipped is not None:
            _, req_id, tx_id = self._skipped
            self._skipped = None
            packets.append(_new_tuple(Packet, (_ERROR, req_id, tx_id, _E2BIG)))
        return bytes(data[taken:])


class Event(NamedTuple):
    """A WATCH_EVENT as the client sees it: the path that changed and the token.

    Named ``Event`` as in pyxs 0.4, whose repr it keeps.
    """

    path: bytes
    token: bytes


WatchEvent = Event


def decode_watch_event(payload: bytes) -> WatchEvent:
    """``<path>\\0<token>\\0`` -> :class:`WatchEvent`."""
    parts = payload.split(b"\0")
    if len(parts) < 2:
        raise UnexpectedPacket(f"malformed WATCH_EVENT payload {payload!r}")
    return WatchEvent(parts[0], parts[1])


_REQ_ID_MASK = 0xFFFFFFFF
_WATCH_EVENT = int(Op.WATCH_EVENT)


class ClientProtocol:
    """The client side of one connection, without I/O.

    ``request()`` gives the bytes to send and the req_id to wait for;
    ``receive()`` takes bytes read from the connection and returns
    ``(replies, events)``: replies as :class:`Packet` (to hand to whoever
    waits for ``packet.req_id``), events as :class:`WatchEvent`.

    It is not thread-safe by itself: front ends serialise ``request()`` (under
    their send lock) and ``receive()`` (under their read lock).
    """

    __slots__ = ("_abandoned", "_decoder", "_next_id", "pending")

    def __init__(self) -> None:
        self._decoder = Decoder(frame_oversized=True)
        self._next_id = 1
        #: req_ids sent and not yet answered, each with its request's tx_id.
        self.pending: dict[int, int] = {}
        self._abandoned: set[int] = set()

    @property
    def buffered(self) -> int:
        """Bytes received that do not make a whole packet yet."""
        return self._decoder.pending

    def next_req_id(self, tx_id: int = 0) -> int:
        """A 32-bit request id not in flight; ids wrap after 2**32 - 1."""
        pending = self.pending
        req_id = self._next_id
        while req_id in pending or req_id == 0:
            req_id = (req_id + 1) & _REQ_ID_MASK
        self._next_id = (req_id + 1) & _REQ_ID_MASK
        pending[req_id] = tx_id
        return req_id

    def request(self, op: int, payload: bytes, tx_id: int = 0) -> tuple[int, bytes]:
        """Allocate a req_id for a request and encode it."""
        size = len(payload)
        if size > PAYLOAD_MAX:
            raise InvalidPayload(
                f"payload of {size} bytes exceeds XenStore's {PAYLOAD_MAX}-byte limit"
            )
        # next_req_id() inlined for the common case (every request comes here)
        pending = self.pending
        req_id = self._next_id
        if req_id in pending or req_id == 0:
            req_id = self.next_req_id(tx_id)
        else:
            self._next_id = (req_id + 1) & _REQ_ID_MASK
            pending[req_id] = tx_id
        return req_id, _pack_header(op, req_id, tx_id, size) + payload

    def abandon(self, req_id: int) -> None:
        """Forget a request whose caller gave up; its reply will be dropped."""
        if req_id in self.pending:
            self._abandoned.add(req_id)

    def forget(self, req_id: int) -> None:
        """Forget a request that was never sent (sending failed)."""
        self.pending.pop(req_id, None)

    def receive(self, data: bytes) -> tuple[list[Packet], list[WatchEvent]]:
        """Decode ``data``; route each packet by the reply-routing rule."""
        replies: list[Packet] = []
        events: list[WatchEvent] = []
        pending = self.pending
        for packet in self._decoder.feed(data):
            if packet.op == _WATCH_EVENT:
                events.append(decode_watch_event(packet.payload))
                continue
            req_id = packet.req_id
            tx_id = pending.pop(req_id, None)
            if tx_id != packet.tx_id:
                if tx_id is None:
                    raise UnexpectedPacket(
                        f"reply with req_id {req_id} (op {packet.op}) matches no request"
                    )
                raise UnexpectedPacket(
                    f"reply to request {req_id} (op {packet.op}) carries tx_id "
                    f"{packet.tx_id}, the request {tx_id}"
                )
            if req_id in self._abandoned:
                self._abandoned.discard(req_id)
                continue
            replies.append(packet)
        return replies, events
