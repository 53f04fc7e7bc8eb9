"""One client connection as the server holds it: :class:`Peer`.

A peer acts as one domain: dom0 (privileged) or a guest. It owns its
transactions, its queue of encoded output (replies and watch events) and
the bookkeeping of the "outstanding" quota: where in its output stream each
reply ends, and the requests held back while too many replies wait. Its
watches are in the registry (:mod:`.watches`), its domain in :mod:`.domains`.

(The clients' connections are :mod:`pyxs.connection`; a peer is the
server's end of one.)
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Callable, Protocol

from ..paths import domain_path
from ..protocol import Decoder, Packet
from .transaction import Transaction

__all__ = ["Peer"]


if TYPE_CHECKING:  # for annotations only: no class at run time
    from ..trace import Tracer

    class PeerDomain(Protocol):
        """What a peer knows of its domain (:class:`~pyxs.server.domains.Domain`)."""

        #: SET_TARGET: the domain acts with the rights of ``target``
        target: int | None
        #: every peer acting as the domain
        conns: list[Peer]

        @property
        def transaction_count(self) -> int: ...


class Peer:
    """One client connection: dom0 (privileged) or a guest domain."""

    __slots__ = (
        "appended",
        "closed",
        "decoder",
        "domain",
        "domid",
        "dropped_events",
        "events",
        "held",
        "home",
        "next_tx_id",
        "out",
        "out_bytes",
        "privileged",
        "reply_ends",
        "seq",
        "tracer",
        "transactions",
        "unsent",
    )

    def __init__(self, seq: int, domid: int, domain: PeerDomain | None) -> None:
        #: creation order (watch events reach peers in this order)
        self.seq = seq
        self.domid = domid
        #: the guest domain this connection acts as (None: a dom0 socket)
        self.domain = domain
        self.privileged = domid == 0
        #: where its relative paths live
        self.home = domain_path(domid)
        self.transactions: dict[int, Transaction] = {}
        self.next_tx_id = 1
        #: encoded packets waiting to be sent, and their total size
        self.out: list[bytes] = []
        self.out_bytes = 0
        #: the front end's count of bytes it took and could not send yet
        self.unsent: Callable[[], int] | None = None
        #: watch events dropped because the client did not read (guests)
        self.dropped_events = 0
        #: bytes ever queued, and where in that stream each reply ends (for
        #: the "outstanding" quota: replies not yet sent)
        self.appended = 0
        self.reply_ends: collections.deque[int] = collections.deque()
        #: requests received but not processed: the guest has too many
        #: replies outstanding (the front end stops reading it meanwhile)
        self.held: list[Packet] = []
        #: event payloads queued since the last take (duplicate suppression)
        self.events: set[bytes] | None = None
        self.decoder = Decoder()
        self.closed = False
        #: told about every packet queued here (``Server(trace=...)``)
        self.tracer: Tracer | None = None

    @property
    def target(self) -> int | None:
        domain = self.domain
        return domain.target if domain is not None else None

    def push(self, packet: bytes) -> None:
        """Queue an encoded packet (a reply or a watch event)."""
        self.out.append(packet)
        self.out_bytes += len(packet)
        self.appended += len(packet)
        if self.tracer is not None:
            self.tracer.queued(self.seq, self.domid, packet)

    def backlog(self) -> int:
        """Bytes of output waiting: queued here, or taken by the front end
        and not sent yet."""
        unsent = self.unsent
        return self.out_bytes + (unsent() if unsent is not None else 0)

    def __repr__(self) -> str:
        return f"Peer(#{self.seq}, dom{self.domid})"
