"""pyxs 0.4's module of wire-level names, kept for code that imported them.

``NUL``, ``Op`` (also ``Operations``) and ``Event`` are today's
:data:`pyxs.protocol.Op` and :data:`pyxs.client.Event`. ``Packet`` takes
0.4's argument order, ``Packet(op, payload, rq_id, tx_id=0)``, and has its
``rq_id`` and ``size``; it *is* a :class:`pyxs.protocol.Packet`, so
connections send it as one.

``next_rq_id`` is deprecated: request ids belong to a connection now (see
:class:`pyxs.protocol.ClientProtocol`); it still counts from 0 for code that
numbers its own packets (``Router.send`` replaces their ids anyway).
"""

from __future__ import annotations

import itertools
import sys
import warnings

from . import protocol
from .exceptions import InvalidOperation, InvalidPayload
from .protocol import PAYLOAD_MAX, Op
from .protocol import WatchEvent as Event

__all__ = ["NUL", "Event", "Op", "Operations", "Packet", "next_rq_id"]

#: The NUL byte that ends every string on the wire.
NUL = b"\x00"

#: 0.4's other name of :data:`Op`.
Operations = Op

_OPS = frozenset(int(op) for op in Op if op is not Op.INVALID)


class Packet(protocol.Packet):
    """A message, built with pyxs 0.4's argument order.

    :raises pyxs.exceptions.InvalidOperation: ``op`` is not an operation.
    :raises pyxs.exceptions.InvalidPayload: ``payload`` is over 4096 bytes.
    """

    __slots__ = ()

    def __new__(cls, op: int, payload: bytes, rq_id: int, tx_id: int | None = None) -> Packet:
        if op not in _OPS:
            raise InvalidOperation(op)
        if len(payload) > PAYLOAD_MAX:
            raise InvalidPayload(payload)
        return super().__new__(cls, op, rq_id, tx_id or 0, payload)

    @property
    def rq_id(self) -> int:
        """0.4's name of ``req_id``."""
        return self.req_id

    @property
    def size(self) -> int:
        """The payload's length, as in the header."""
        return len(self.payload)


_rq_ids = itertools.count()


def next_rq_id() -> int:
    """pyxs 0.4's global request counter: deprecated (ids are per connection)."""
    warnings.warn(
        "next_rq_id() is deprecated (pyxs 0.4): request ids belong to the connection",
        DeprecationWarning,
        stacklevel=2,
    )
    return next(_rq_ids) % sys.maxsize
