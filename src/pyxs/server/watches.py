"""Watches: which watches an event reaches, who may see it, what is queued.

Theory of operation
-------------------
Watches are indexed by their (canonical) path. A change of node ``P``
reaches the watches on ``P`` and on every ancestor of ``P`` up to ``/``, so
dispatch looks up ``P``, its parent, ... ``/``: it costs the depth of ``P``
plus the watches that match, not the number of watches. Some events match
exactly only: the descendants of a removed subtree, and the special
``@introduceDomain`` / ``@releaseDomain`` events (a watch on ``/`` does not
see those).

**Order.** cxenstored walks its connections in creation order and, for
each, its watches in creation order. Every watch carries the key
``(connection sequence, watch sequence)`` and each per-path list is kept
sorted by it, so the matches of one path are in order and the matches of
several paths are merged by a sort of the (few) hits.

**Firing** (:class:`WatchEvents`, ``fire_watches`` of cxenstored): for
each watch matched, the peer must be allowed to see the event: a privileged
peer always is; a guest if it may read the node, its parent, or (for a node
a transaction removed) the node as it was before; for ``@introduceDomain``
and ``@releaseDomain``, the permissions SET_PERMS gave those names. The
verdict is reached once per peer and event. A relative watch gets the event
path relative to the peer's home.

**Queueing.** Like cxenstored, an event identical to one still waiting to
be sent on that peer is dropped (``@`` events excepted): here "waiting"
means queued since the front end last took the peer's output. A guest's
waiting output counts in its memory quota: an event that would bring it to
the quota is dropped (counted in ``dropped_events``). A dom0 peer that lets
``dom0_backlog_max`` bytes wait is closed rather than losing events.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from ..paths import parent_of
from ..protocol import PAYLOAD_MAX, Op, XsdError, encode
from .peer import Peer
from .perms import PERM_OWNER, PERM_READ, PERM_WRITE, PERMS_N0, Perms, perm_for
from .store import Fail, Node, Store

if TYPE_CHECKING:
    from .perms import DomainTable
    from .quotas import Quotas

__all__ = [
    "INTRODUCE_DOMAIN",
    "RELEASE_DOMAIN",
    "SPECIAL_PATHS",
    "Watch",
    "WatchEvents",
    "WatchRegistry",
]

_WATCH_EVENT = int(Op.WATCH_EVENT)
RELEASE_DOMAIN = b"@releaseDomain"
INTRODUCE_DOMAIN = b"@introduceDomain"
#: the special watch paths (SET_PERMS may change their permissions)
SPECIAL_PATHS = (RELEASE_DOMAIN, INTRODUCE_DOMAIN)
_NONE: Mapping[tuple[bytes, bytes], Watch] = {}


class Watch:
    """One registered watch."""

    __slots__ = ("conn", "cut", "order", "path", "tail", "token")

    def __init__(self, conn: Peer, path: bytes, token: bytes, cut: int, seq: int) -> None:
        self.conn = conn
        #: the canonical path (absolute, or ``@...``)
        self.path = path
        self.token = token
        #: for a relative watch, how many bytes of an event path to drop
        self.cut = cut
        #: ``b"\\0<token>\\0"``: what follows the path in an event
        self.tail = b"\0" + token + b"\0"
        self.order = (conn.seq << 32) | seq

    def __lt__(self, other: Watch) -> bool:
        return self.order < other.order

    def __repr__(self) -> str:
        return f"Watch({self.path!r}, {self.token!r}, conn={self.conn.seq})"


def _order(watch: Watch) -> int:
    return watch.order


class WatchRegistry:
    """All watches of all peers, indexed by path and by peer."""

    __slots__ = ("by_path", "of_peer", "seq")

    def __init__(self) -> None:
        self.by_path: dict[bytes, list[Watch]] = {}
        #: peer seq -> (path, token) -> watch
        self.of_peer: dict[int, dict[tuple[bytes, bytes], Watch]] = {}
        self.seq = 0

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_path.values())

    def owned(self, conn: Peer) -> Mapping[tuple[bytes, bytes], Watch]:
        """The watches of ``conn``, by (canonical path, token)."""
        return self.of_peer.get(conn.seq, _NONE)

    def count(self, conns: list[Peer]) -> int:
        """How many watches these peers have (a domain's watch quota)."""
        of_peer = self.of_peer
        return sum(len(of_peer.get(c.seq, _NONE)) for c in conns)

    def add(self, conn: Peer, path: bytes, token: bytes, cut: int) -> Watch:
        self.seq += 1
        watch = Watch(conn, path, token, cut, self.seq)
        self.of_peer.setdefault(conn.seq, {})[(path, token)] = watch
        bucket = self.by_path.get(path)
        if bucket is None:
            self.by_path[path] = [watch]
        elif bucket[-1].order < watch.order:
            bucket.append(watch)
        else:
            bisect.insort(bucket, watch)
        return watch

    def drop(self, conn: Peer) -> None:
        """Forget every watch of ``conn``."""
        for watch in list(self.owned(conn).values()):
            self.remove(watch)

    def remove(self, watch: Watch) -> None:
        owned = self.of_peer.get(watch.conn.seq)
        if owned is not None and owned.get((watch.path, watch.token)) is watch:
            del owned[(watch.path, watch.token)]
            if not owned:
                del self.of_peer[watch.conn.seq]
        bucket = self.by_path.get(watch.path)
        if bucket is None:
            return
        try:
            bucket.remove(watch)
        except ValueError:
            return
        if not bucket:
            del self.by_path[watch.path]

    def matches(self, path: bytes, exact: bool) -> Sequence[Watch]:
        """The watches an event on ``path`` reaches, in delivery order."""
        by_path = self.by_path
        if not by_path:
            return ()
        hits = by_path.get(path)
        if exact or path[:1] == b"@":
            return hits or ()
        result: list[Watch] | None = None
        name = path
        while name != b"/":
            cut = name.rfind(b"/")
            name = name[:cut] if cut > 0 else b"/"
            more = by_path.get(name)
            if more:
                if hits is None:
                    hits = more
                else:
                    if result is None:
                        result = list(hits)
                    result.extend(more)
        if result is None:
            return hits or ()
        result.sort(key=_order)
        return result


class WatchEvents:
    """Part of :class:`~pyxs.server.core.XenStore`: firing watches and
    queueing their events (see the module's docstring)."""

    if TYPE_CHECKING:
        store: Store
        quotas: Quotas
        watches: WatchRegistry
        dirty: dict[int, Peer]
        dom0_backlog_max: int

        @property
        def domains(self) -> DomainTable: ...

        def domain_memory(self, domid: int) -> int: ...

        def close(self, conn: Peer) -> None: ...

    #: permissions of the special watch paths, and the generation they
    #: were set at (entries for domains younger than that do not count)
    special_perms: dict[bytes, tuple[Perms, int]]

    def _init_special_perms(self) -> None:
        self.special_perms = {name: (PERMS_N0, 0) for name in SPECIAL_PATHS}

    def fire(self, path: bytes, node: Node | None, exact: bool, old_perms: Perms | None) -> None:
        """Queue the events a change of ``path`` causes (``fire_watches``)."""
        hits = self.watches.matches(path, exact)
        if not hits:
            return
        special = path[:1] == b"@"
        if node is None and old_perms is None and not special:
            # watch_permitted() cannot read a node that is gone and has no
            # old permissions: nobody, not even dom0, gets the event (a node
            # created and removed within one transaction)
            return
        verdict: dict[int, bool] = {}
        queue = self.queue_event
        for watch in hits:
            conn = watch.conn
            if not conn.privileged:
                allowed = verdict.get(conn.seq)
                if allowed is None:
                    if special:
                        allowed = self._special_permitted(conn, path)
                    else:
                        allowed = self._watch_permitted(conn, path, node, old_perms)
                    verdict[conn.seq] = allowed
                if not allowed:
                    continue
            cut = watch.cut
            queue(conn, (path[cut:] if cut else path) + watch.tail)

    def fire_special(self, path: bytes) -> None:
        """Fire ``@introduceDomain`` or ``@releaseDomain``."""
        self.fire(path, None, False, None)

    def queue_event(self, conn: Peer, payload: bytes) -> None:
        """Queue a WATCH_EVENT for ``conn`` unless a duplicate waits or its
        backlog forbids it."""
        if len(payload) > PAYLOAD_MAX or conn.closed:
            return
        events = conn.events
        if events is not None and payload in events:
            return
        backlog = conn.backlog()
        if conn.privileged or not self.quotas.memory:
            if backlog >= self.dom0_backlog_max:
                # a dom0 client this far behind loses its connection rather
                # than its events: it notices, and can read the tree again
                self.close(conn)
                return
        elif self.domain_memory(conn.domid) + backlog + 16 + len(payload) >= self.quotas.memory:
            # as in cxenstored, output waiting for a guest counts in its
            # memory, and an event that would bring it to the quota is dropped
            conn.dropped_events += 1
            return
        if payload[:1] != b"@":
            if events is None:
                conn.events = {payload}
            else:
                events.add(payload)
        if not conn.out:
            self.dirty[conn.seq] = conn
        conn.push(encode(_WATCH_EVENT, 0, 0, payload))

    def set_special_perms(self, conn: Peer, name: bytes, perms: Perms) -> None:
        """SET_PERMS on ``@introduceDomain`` or ``@releaseDomain``."""
        current = self.special_perms.get(name)
        if current is None:
            raise Fail(XsdError.EINVAL)
        wanted = PERM_WRITE | PERM_OWNER
        if perm_for(conn, current[0], current[1], self.domains) & wanted != wanted:
            raise Fail(XsdError.EACCES)
        self.special_perms[name] = (perms, self.store.generation)

    def _special_permitted(self, conn: Peer, path: bytes) -> bool:
        entry = self.special_perms.get(path)
        return (
            entry is not None and perm_for(conn, entry[0], entry[1], self.domains) & PERM_READ != 0
        )

    def _watch_permitted(
        self, conn: Peer, path: bytes, node: Node | None, old_perms: Perms | None
    ) -> bool:
        """A node counts as readable if it or its parent is readable.

        ``node`` is None for a node a transaction removed: then only its
        permissions from before the transaction count."""
        domains = self.domains
        gen = node.gen if node is not None else self.store.generation
        if old_perms is not None and perm_for(conn, old_perms, gen, domains) & PERM_READ:
            return True
        if node is None:
            return False
        if perm_for(conn, node.perms, node.gen, domains) & PERM_READ:
            return True
        parent = self.store.lookup(parent_of(path))
        return (
            parent is not None
            and perm_for(conn, parent.perms, parent.gen, domains) & PERM_READ != 0
        )
